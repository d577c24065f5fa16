"""Exemplar similarity (Sentinel's idea, improved): compare a message with positive exemplars of each grooming
stage and with negative exemplars (benign chat, hard negatives first), top-k contrast, calibrated per stage.

Per stage ``s``: ``contrast = topk(s) - max(topk(negatives), max over other stages t of topk(t))``, where
``topk(x)`` is the mean cosine similarity to the k nearest exemplars of ``x``; then
``p = 1 / (1 + exp(-(a_s * contrast + b_s)))`` with ``a_s, b_s`` fitted on messages that are not in the banks.
The nearest positive exemplars are returned as evidence so a moderator sees *why* a paraphrase scored.

Cascade (the encoder is ~50x dearer than the n-gram model, so it never sees most messages). A message is
embedded only when all of these hold (``CascadePolicy``):

1. the conversation's age pair is risky: ``adult_minor``, ``unknown_minor`` or ``older_minor``;
2. the sender is the older party of that pair;
3. the n-gram stage model gives some stage ≥ ``min_stage_probability``, or the conversation carries risk
   (peak risk ≥ ``min_conversation_risk``) but is not yet at case level (peak risk < ``case_level``): the
   encoder's job is to find paraphrases the n-gram model misses *before* a case exists; once it does, the
   n-gram model keeps adding evidence on its own.

The gate is a pure function of the text and the ``ClassifierContext``, so ``score`` gives the same result with
or without ``prime``. Embeddings are memoised per text. ``prime`` starts embedding, on one background thread,
the batch's texts the gate would admit in their forecast context (the runner's forecast from the state at the
start of the batch; without a forecast, every text passing condition 3's stage probability). onnxruntime
releases the GIL, so the encoder runs on a second core while the decision thread goes on (which compares
the embeddings with the banks, and hands the GIL over more often while prefetches are queued). ``score`` takes a
prefetched result when it is there, waits when it is being computed and otherwise computes it itself; an
embedding is a pure function of its text, so the result is the same either way. ``stats`` counts how many
messages reach the encoder (the cascade share) and how many texts were embedded.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.encoder import F32, OnnxSentenceEncoder, SentenceEncoder
from models.manifest import Manifest, ModelArtifactError
from models.stage import StageClassifier
from pipeline.decision import ClassifierContext, StageScores
from pipeline.normalise import NormalisedText

EXEMPLAR_MODEL_ID = "exemplar-minilm"
BANKS_FILE = "exemplar/banks.json"
EMBEDDINGS_FILE = "exemplar/embeddings.safetensors"
ENCODER_FILE = "exemplar/minilm-l6-int8.onnx"
TOKENIZER_FILE = "exemplar/tokenizer.json"
RISKY_RELATIONS = frozenset({"adult_minor", "unknown_minor", "older_minor"})
CACHE_LIMIT = 100_000
# While prefetches are queued, the interpreter offers the GIL to another thread every 0.5 ms instead of its default
# 5 ms: the prefetch thread needs it back after every encoder call, and waiting out 5 ms for each let the decision
# thread catch up and embed half the batch's texts itself (measured on 2 cores: prefetched share 50 -> 65 %).
PREFETCH_SWITCH_INTERVAL = 0.0005
_DEFAULT_SWITCH_INTERVAL = sys.getswitchinterval()


@dataclass(frozen=True, slots=True)
class CascadePolicy:
    relations: frozenset[str] = RISKY_RELATIONS
    older_only: bool = True
    min_conversation_risk: float = 0.2
    min_stage_probability: float = 0.3
    case_level: float = 0.5

    def admits(self, context: ClassifierContext, stage_max: float) -> bool:
        if context.pair.relation not in self.relations:
            return False
        if self.older_only and context.sender_role != "older":
            return False
        if stage_max >= self.min_stage_probability:
            return True
        return self.min_conversation_risk <= context.conversation_risk < self.case_level

    def to_dict(self) -> dict[str, Any]:
        return {"relations": sorted(self.relations), "older_only": self.older_only,
                "min_conversation_risk": self.min_conversation_risk,
                "min_stage_probability": self.min_stage_probability, "case_level": self.case_level}


@dataclass(frozen=True, slots=True)
class ExemplarBank:
    stages: tuple[str, ...]
    positives: dict[str, F32]  # stage -> (n, dim) unit rows
    positive_texts: dict[str, tuple[str, ...]]
    negatives: F32
    negative_texts: tuple[str, ...]
    k: int
    calibration: dict[str, tuple[float, float]]  # stage -> (a, b)
    _matrix: F32 = field(init=False, repr=False, compare=False)  # every exemplar stacked: one product per text
    _bounds: tuple[int, ...] = field(init=False, repr=False, compare=False)  # column range of each group
    _a: npt.NDArray[np.float64] = field(init=False, repr=False, compare=False)  # calibration, in stage order
    _b: npt.NDArray[np.float64] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        stacked = np.vstack([*(self.positives[s] for s in self.stages), self.negatives]).astype(np.float32)
        object.__setattr__(self, "_matrix", np.ascontiguousarray(stacked))
        sizes = [len(self.positive_texts[s]) for s in self.stages] + [len(self.negative_texts)]
        object.__setattr__(self, "_bounds", tuple(int(b) for b in np.cumsum([0, *sizes])))
        object.__setattr__(self, "_a", np.asarray([self.calibration[s][0] for s in self.stages], dtype=np.float64))
        object.__setattr__(self, "_b", np.asarray([self.calibration[s][1] for s in self.stages], dtype=np.float64))

    def contrasts(self, vectors: F32) -> F32:
        """(n, stages) top-k similarity to each stage's positives minus the best competing top-k similarity
        (the negatives or any other stage), so a message resembling grooming in general does not score on
        every stage at once."""
        sims = vectors @ self._matrix.T  # one product against every exemplar, then sliced per group
        bounds = self._bounds
        stages = len(self.stages)
        pos = np.stack([_top_k_mean(sims[:, bounds[j] : bounds[j + 1]], self.k) for j in range(stages)], axis=1)
        neg = _top_k_mean(sims[:, bounds[-2] :], self.k)
        if stages > 1:
            # The best other stage: the row's maximum, or its runner-up in the column holding that maximum
            # (a tie leaves both equal, as it should).
            ranked = np.sort(pos, axis=1)
            others = np.where(pos == ranked[:, -1:], ranked[:, -2:-1], ranked[:, -1:])
        else:
            others = neg[:, None]
        out: F32 = (pos - np.maximum(neg[:, None], others)).astype(np.float32)
        return out

    def probabilities(self, contrasts: F32) -> F32:
        out: F32 = (1.0 / (1.0 + np.exp(-(self._a * contrasts.astype(np.float64) + self._b)))).astype(np.float32)
        return out

    def nearest(self, vector: F32, stage: str, count: int = 2) -> tuple[tuple[str, float], ...]:
        sims = self.positives[stage] @ vector
        order = np.argsort(-sims, kind="stable")[:count]
        return tuple((self.positive_texts[stage][i], round(float(sims[i]), 4)) for i in order)


def _top_k_mean(sims: F32, k: int) -> F32:
    k = min(k, sims.shape[1])
    part = np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:]
    out: F32 = part.mean(axis=1)
    return out


@dataclass(slots=True)
class CascadeStats:
    scored: int = 0  # score() calls
    admitted: int = 0  # passed the cascade gate (the encoder's view of the stream)
    encoded: int = 0  # distinct texts actually embedded (cache misses), prefetched ones included
    prefetched: int = 0  # texts embedded ahead of need by ``prime`` (some are never admitted)
    by_relation: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        share = self.admitted / self.scored if self.scored else 0.0
        return {"messages": self.scored, "admitted": self.admitted, "encoded": self.encoded,
                "prefetched": self.prefetched, "share": round(share, 4),
                "admitted_by_relation": dict(sorted(self.by_relation.items()))}


class ExemplarClassifier:
    """``MessageClassifier``: calibrated top-k exemplar contrast per stage, behind the cascade gate."""

    def __init__(self, encoder: SentenceEncoder, bank: ExemplarBank, stage_model: StageClassifier, *,
                 policy: CascadePolicy | None = None, name: str = EXEMPLAR_MODEL_ID, version: str,
                 sha256: str) -> None:
        self.encoder = encoder
        self.bank = bank
        self.stage_model = stage_model
        self.policy = policy or CascadePolicy()
        self.name = name
        self.version = version
        self.sha256 = sha256
        self.stats = CascadeStats()
        self._cache: dict[str, _Embedded] = {}
        self._pending: dict[str, Future[F32]] = {}  # prefetched embeddings submitted and not yet harvested
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()  # stats.encoded is also counted on the prefetch thread

    def prime(self, texts: Sequence[NormalisedText],
              forecast: Callable[[int], ClassifierContext] | None = None) -> None:
        """Harvest finished prefetches, then queue this batch's likely admissions (see the module docstring):
        texts the gate would admit in their forecast context, or, without a forecast, every text passing the
        gate's stage-probability condition."""
        self._harvest()
        if not self._pending:
            sys.setswitchinterval(_DEFAULT_SWITCH_INTERVAL)
        threshold = self.policy.min_stage_probability
        wanted: dict[str, None] = {}
        for index, text in enumerate(texts):
            folded = text.text
            if folded in wanted or folded in self._cache or folded in self._pending:
                continue
            peak = self.stage_model.peak(folded)
            if peak < threshold if forecast is None else not self.policy.admits(forecast(index), peak):
                continue
            wanted[folded] = None
        if not wanted:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="exemplar-prefetch")
        # Last needed first: the decision thread embeds from the front of the batch itself when it gets there
        # before the prefetch, so the two meet in the middle instead of racing for the same texts.
        sys.setswitchinterval(PREFETCH_SWITCH_INTERVAL)
        for folded in reversed(list(wanted)):
            self._pending[folded] = self._executor.submit(self._encode, folded, True)

    def score(self, text: NormalisedText, context: ClassifierContext) -> StageScores | None:
        self.stats.scored += 1
        stage_max = self.stage_model.peak(text.text)
        if not self.policy.admits(context, stage_max):
            return None
        self.stats.admitted += 1
        relation = context.pair.relation
        self.stats.by_relation[relation] = self.stats.by_relation.get(relation, 0) + 1
        cached = self._cache.get(text.text)
        if cached is None:
            cached = self._take_or_compute(text.text)
        probs, evidence = cached
        return StageScores(self.name, self.version, self.sha256, dict(zip(self.bank.stages, probs, strict=True)),
                           evidence)

    def close(self) -> None:
        """Stop the prefetch thread (queued prefetches are dropped; nothing depends on them)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._pending.clear()
        sys.setswitchinterval(_DEFAULT_SWITCH_INTERVAL)

    def _take_or_compute(self, text: str) -> _Embedded:
        future = self._pending.pop(text, None)
        # A prefetch already running (or done) is waited for: that costs less than embedding again.
        vector = future.result() if future is not None and not future.cancel() else self._encode(text, False)
        result = self.compare(vector)
        self._remember(text, result)
        return result

    def _harvest(self) -> None:
        for text, future in list(self._pending.items()):
            if future.done():
                del self._pending[text]
                if not future.cancelled():
                    self._remember(text, self.compare(future.result()))

    def _remember(self, text: str, result: _Embedded) -> None:
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[text] = result

    def _encode(self, text: str, prefetch: bool) -> F32:
        vector = self.encoder.encode([text])
        with self._lock:
            self.stats.encoded += 1
            self.stats.prefetched += prefetch
        return vector

    def compare(self, vector: F32) -> _Embedded:
        """Calibrated stage probabilities and nearest-exemplar evidence of one embedding. Runs on the decision
        thread: its matrix product releases the GIL, and each release would cost the prefetch thread a wait of up
        to the interpreter's switch interval to take it back."""
        probs = np.round(self.bank.probabilities(self.bank.contrasts(vector))[0].astype(np.float64), 4)
        best = self.bank.stages[int(np.argmax(probs))]
        evidence = tuple(f"{best}: {t!r} (cos {s:.2f})" for t, s in self.bank.nearest(vector[0], best))
        return tuple(float(p) for p in probs), evidence


_Embedded = tuple[tuple[float, ...], tuple[str, ...]]  # per-stage probabilities, nearest-exemplar evidence


def export_bank(bank: ExemplarBank, root: Path) -> list[str]:
    from safetensors.numpy import save_file

    (root / "exemplar").mkdir(parents=True, exist_ok=True)
    meta = {"stages": list(bank.stages), "k": bank.k,
            "positive_texts": {s: list(bank.positive_texts[s]) for s in bank.stages},
            "negative_texts": list(bank.negative_texts),
            "calibration": {s: list(bank.calibration[s]) for s in bank.stages}}
    (root / BANKS_FILE).write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tensors = {f"pos_{s}": np.ascontiguousarray(bank.positives[s], dtype=np.float32) for s in bank.stages}
    tensors["neg"] = np.ascontiguousarray(bank.negatives, dtype=np.float32)
    save_file(tensors, str(root / EMBEDDINGS_FILE))
    return [BANKS_FILE, EMBEDDINGS_FILE]


def read_bank(banks_path: Path, embeddings_path: Path) -> ExemplarBank:
    from safetensors.numpy import load_file

    try:
        meta = json.loads(banks_path.read_text(encoding="utf-8"))
        tensors = load_file(str(embeddings_path))
        stages = tuple(str(s) for s in meta["stages"])
        return ExemplarBank(
            stages=stages,
            positives={s: tensors[f"pos_{s}"] for s in stages},
            positive_texts={s: tuple(meta["positive_texts"][s]) for s in stages},
            negatives=tensors["neg"],
            negative_texts=tuple(meta["negative_texts"]),
            k=int(meta["k"]),
            calibration={s: (float(meta["calibration"][s][0]), float(meta["calibration"][s][1])) for s in stages},
        )
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise ModelArtifactError(f"exemplar banks in {banks_path.parent} are malformed: {exc}") from None


def load_exemplar_classifier(manifest: Manifest, stage_model: StageClassifier,
                             policy: CascadePolicy | None = None) -> ExemplarClassifier:
    bank = read_bank(manifest.verified_path(BANKS_FILE), manifest.verified_path(EMBEDDINGS_FILE))
    encoder = OnnxSentenceEncoder(manifest.verified_path(ENCODER_FILE), manifest.verified_path(TOKENIZER_FILE),
                                  name="all-MiniLM-L6-v2-int8")
    entry = manifest.models.get(EXEMPLAR_MODEL_ID, {})
    if policy is None and isinstance(entry.get("cascade"), dict):
        raw = entry["cascade"]
        policy = CascadePolicy(frozenset(raw["relations"]), bool(raw["older_only"]),
                               float(raw["min_conversation_risk"]), float(raw["min_stage_probability"]),
                               float(raw["case_level"]))
    return ExemplarClassifier(encoder, bank, stage_model, policy=policy,
                              version=str(entry.get("version", manifest.version)),
                              sha256=manifest.model_sha256(EXEMPLAR_MODEL_ID))
