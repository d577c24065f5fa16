"""Stage classifier: char + word n-gram TF-IDF, one calibrated logistic model per grooming stage.

Multi-label: each stage gets its own probability (a message may probe age *and* ask for secrecy). It is the
cheap first layer of the cascade: ``prime`` scores the runner's whole batch in one sparse matrix product and
memoises the result, so ``score`` is a dictionary lookup; an unprimed text is scored the same way on its own
(each row's arithmetic does not depend on the other rows, so batch and single agree).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file

from models.manifest import Manifest, ModelArtifactError
from models.ngram import CalibratedLinear, NgramModel, TfidfBlock
from pipeline.decision import ClassifierContext, StageScores
from pipeline.normalise import NormalisedText

STAGE_MODEL_ID = "stage-ngram"
VOCABULARY_FILE = "stage/vocabulary.json"
WEIGHTS_FILE = "stage/weights.safetensors"
CACHE_LIMIT = 100_000  # memoised texts; cleared wholesale when full (results never depend on the cache)
# Relations with a real age difference. Between peers of one band "older" and "younger" are arbitrary, and an
# adult posing as the child's peer must not lose their messages' evidence to that coin toss.
AGE_GAP_RELATIONS = frozenset({"adult_minor", "unknown_minor", "older_minor"})


class StageClassifier:
    """``MessageClassifier`` over the six grooming stages plus age deception."""

    def __init__(self, model: NgramModel, *, name: str = STAGE_MODEL_ID, version: str, sha256: str) -> None:
        self.model = model
        self.name = name
        self.version = version
        self.sha256 = sha256
        self.labels = model.linear.labels
        self._cache: dict[str, _Scored] = {}

    def prime(self, texts: Sequence[NormalisedText],
              forecast: Callable[[int], ClassifierContext] | None = None) -> None:
        missing = list(dict.fromkeys(t.text for t in texts if t.text not in self._cache))
        if missing:
            self._store(missing)

    def probabilities(self, text: str) -> tuple[float, ...]:
        """Rounded probability per label (in ``self.labels`` order) for a folded text."""
        return self._scored(text).probabilities

    def peak(self, text: str) -> float:
        """The highest stage probability of a folded text (the cascade's gate input)."""
        return self._scored(text).peak

    def score(self, text: NormalisedText, context: ClassifierContext) -> StageScores | None:
        if context.sender_role == "younger" and context.pair.relation in AGE_GAP_RELATIONS:
            return None  # grooming stages are the older party's behaviour; a child's replies are not evidence
        return self._scored(text.text).scores

    def _scored(self, text: str) -> _Scored:
        cached = self._cache.get(text)
        if cached is None:
            self._store([text])
            cached = self._cache[text]
        return cached

    def _store(self, texts: list[str]) -> None:
        if len(self._cache) + len(texts) > CACHE_LIMIT:
            self._cache.clear()
        probs = np.round(self.model.probabilities(texts), 4)
        for text, row in zip(texts, probs.tolist(), strict=True):  # tolist() gives Python floats
            values = tuple(row)
            scores = StageScores(self.name, self.version, self.sha256, dict(zip(self.labels, values, strict=True)))
            self._cache[text] = _Scored(values, max(values, default=0.0), scores)


@dataclass(slots=True)  # not frozen: a frozen __init__ sets each field through object.__setattr__, slower
class _Scored:
    """One memoised text: its probabilities, their maximum, and the ``StageScores`` handed to ``decide`` (shared
    between calls; nothing downstream mutates it, nor this record)."""

    probabilities: tuple[float, ...]
    peak: float
    scores: StageScores


def export_ngram(model: NgramModel, root: Path) -> list[str]:
    """Write ``model`` as JSON (vocabularies, settings) + safetensors (numbers). Returns the relative paths."""
    (root / "stage").mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "labels": list(model.linear.labels),
        "n_features": model.n_features,
        "blocks": [
            {"analyzer": b.analyzer, "min_n": b.min_n, "max_n": b.max_n, "offset": b.offset,
             "vocabulary": dict(sorted(b.vocabulary.items(), key=lambda kv: kv[1]))}
            for b in model.blocks
        ],
    }
    (root / VOCABULARY_FILE).write_text(json.dumps(meta, separators=(",", ":"), ensure_ascii=True) + "\n",
                                        encoding="utf-8")
    tensors = {f"idf_{i}": np.ascontiguousarray(b.idf, dtype=np.float64) for i, b in enumerate(model.blocks)}
    tensors.update(coef=np.ascontiguousarray(model.linear.coef, dtype=np.float64),
                   intercept=np.ascontiguousarray(model.linear.intercept, dtype=np.float64),
                   platt_a=np.ascontiguousarray(model.linear.platt_a, dtype=np.float64),
                   platt_b=np.ascontiguousarray(model.linear.platt_b, dtype=np.float64))
    from safetensors.numpy import save_file

    save_file(tensors, str(root / WEIGHTS_FILE))
    return [VOCABULARY_FILE, WEIGHTS_FILE]


def read_ngram(vocabulary_path: Path, weights_path: Path) -> NgramModel:
    try:
        meta = json.loads(vocabulary_path.read_text(encoding="utf-8"))
        tensors = load_file(str(weights_path))
        blocks = tuple(
            TfidfBlock(b["analyzer"], int(b["min_n"]), int(b["max_n"]), _vocabulary(b["vocabulary"]),
                       tensors[f"idf_{i}"], int(b["offset"]))
            for i, b in enumerate(meta["blocks"])
        )
        linear = CalibratedLinear(tuple(meta["labels"]), tensors["coef"], tensors["intercept"], tensors["platt_a"],
                                  tensors["platt_b"])
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise ModelArtifactError(f"stage model in {vocabulary_path.parent} is malformed: {exc}") from None
    if linear.coef.shape != (int(meta["n_features"]), len(linear.labels)):
        raise ModelArtifactError(f"stage model in {vocabulary_path.parent}: coefficient shape mismatch")
    return NgramModel(blocks, linear)


def _vocabulary(raw: Mapping[str, Any]) -> dict[str, int]:
    return {str(k): int(v) for k, v in raw.items()}


def load_stage_classifier(manifest: Manifest) -> StageClassifier:
    model = read_ngram(manifest.verified_path(VOCABULARY_FILE), manifest.verified_path(WEIGHTS_FILE))
    entry = manifest.models.get(STAGE_MODEL_ID, {})
    return StageClassifier(model, version=str(entry.get("version", manifest.version)),
                           sha256=manifest.model_sha256(STAGE_MODEL_ID))
