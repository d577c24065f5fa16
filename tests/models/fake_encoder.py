"""A deterministic stand-in for the sentence encoder: hashed character trigrams, L2-normalised.

Fast and dependency-free, so unit tests of the exemplar logic never load ONNX. Similar texts get similar
vectors (shared trigrams), which is all the exemplar arithmetic needs to be exercised.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from models.encoder import F32


class FakeEncoder:
    def __init__(self, dim: int = 64) -> None:
        self.name = "fake-trigram"
        self.dim = dim
        self.calls = 0

    def encode(self, texts: Sequence[str]) -> F32:
        self.calls += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            padded = f"  {text.lower()}  "
            for j in range(len(padded) - 2):
                digest = hashlib.blake2b(padded[j : j + 3].encode(), digest_size=4).digest()
                out[i, int.from_bytes(digest, "little") % self.dim] += 1.0
            norm = float(np.linalg.norm(out[i]))
            if norm > 0:
                out[i] /= norm
        return out
