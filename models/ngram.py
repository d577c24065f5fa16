"""TF-IDF n-gram features and a calibrated linear layer, in plain numpy/scipy.

Training uses scikit-learn (``TfidfVectorizer`` + ``LogisticRegression`` + ``CalibratedClassifierCV``); the
fitted vocabulary, idf and coefficients are exported to JSON + safetensors and scored here, so a deployed
worker loads no pickle and runs no scikit-learn code. The analyzers reproduce scikit-learn's ``char_wb`` and
``word`` analyzers exactly (same n-grams, same order); ``tests/models/test_ngram.py`` checks the features and
the probabilities against scikit-learn's own ``transform`` and ``predict_proba``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import sparse

WORD_TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # scikit-learn's default token_pattern
_WORD_TOKEN = re.compile(WORD_TOKEN_PATTERN)

FloatArray = npt.NDArray[np.float64]


def char_wb_ngrams(text: str, min_n: int, max_n: int) -> list[str]:
    """scikit-learn's ``char_wb`` analyzer (lowercase, no accent stripping)."""
    grams: list[str] = []
    append = grams.append
    for word in text.lower().split():
        padded = f" {word} "
        length = len(padded)
        for n in range(min_n, max_n + 1):
            if length <= n:  # a short word counts once, as a whole
                append(padded)
                break
            grams.extend(padded[i : i + n] for i in range(length - n + 1))
    return grams


def word_ngrams(text: str, min_n: int, max_n: int) -> list[str]:
    """scikit-learn's ``word`` analyzer (lowercase, default token pattern, no stop words)."""
    tokens = _WORD_TOKEN.findall(text.lower())
    out = list(tokens) if min_n == 1 else []
    for n in range(max(min_n, 2), min(max_n, len(tokens)) + 1):
        out.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return out


@dataclass(frozen=True, slots=True)
class TfidfBlock:
    """One fitted ``TfidfVectorizer`` (sublinear tf, l2 norm): analyzer settings, vocabulary and idf."""

    analyzer: str  # "char_wb" | "word"
    min_n: int
    max_n: int
    vocabulary: Mapping[str, int]
    idf: FloatArray
    offset: int  # column offset of this block in the stacked feature matrix
    _idf: list[float] = field(init=False, repr=False, compare=False)  # idf as Python floats: indexed per gram

    def __post_init__(self) -> None:
        object.__setattr__(self, "_idf", [float(v) for v in self.idf])

    def grams(self, text: str) -> list[str]:
        if self.analyzer == "char_wb":
            return char_wb_ngrams(text, self.min_n, self.max_n)
        return word_ngrams(text, self.min_n, self.max_n)

    def row(self, text: str) -> tuple[list[int], list[float]]:
        """Column indices and tf-idf values of one text, l2-normalised within this block."""
        counts: Counter[int | None] = Counter(map(self.vocabulary.get, self.grams(text)))  # counted in C
        counts.pop(None, None)  # grams outside the vocabulary
        if not counts:
            return [], []
        cols: list[int] = sorted(counts)  # type: ignore[arg-type]  # None was removed above
        idf = self._idf
        values = [(1.0 + math.log(counts[j])) * idf[j] for j in cols]
        norm = math.sqrt(sum(v * v for v in values))
        return [j + self.offset for j in cols], [v / norm for v in values]


@dataclass(frozen=True, slots=True)
class CalibratedLinear:
    """Per label: ``p = 1 / (1 + exp(a * (x . w + b0) + b))`` (Platt scaling as scikit-learn fits it)."""

    labels: tuple[str, ...]
    coef: FloatArray  # (n_features, n_labels)
    intercept: FloatArray  # (n_labels,)
    platt_a: FloatArray  # (n_labels,)
    platt_b: FloatArray  # (n_labels,)


@dataclass(frozen=True, slots=True)
class NgramModel:
    blocks: tuple[TfidfBlock, ...]
    linear: CalibratedLinear

    @property
    def n_features(self) -> int:
        return int(self.linear.coef.shape[0])

    def features(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """The stacked tf-idf matrix of ``texts`` (one row each; rows do not depend on each other)."""
        indptr = [0]
        indices: list[int] = []
        data: list[float] = []
        for text in texts:
            for block in self.blocks:
                cols, values = block.row(text)
                indices.extend(cols)
                data.extend(values)
            indptr.append(len(indices))
        return sparse.csr_matrix(
            (np.asarray(data, dtype=np.float64), np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
            shape=(len(texts), self.n_features),
        )

    def decision(self, texts: Sequence[str]) -> FloatArray:
        out: FloatArray = np.asarray(self.features(texts) @ self.linear.coef) + self.linear.intercept
        return out

    def probabilities(self, texts: Sequence[str]) -> FloatArray:
        """Calibrated probability per text (rows) and label (columns)."""
        z = self.decision(texts)
        out: FloatArray = 1.0 / (1.0 + np.exp(self.linear.platt_a * z + self.linear.platt_b))
        return out
