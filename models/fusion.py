"""Learned conversation fusion: a logistic combination of stage evidence, progression, age features and rule
hits, replacing the hand-tuned ``pair.factor * stage_score(evidence)`` when it measures better.

Fan-out is not a fusion input on purpose: a count of the older party's other conversations depends on the
order partitions are processed in. It stays with the subject rules, whose bonus ``combine`` adds to the fused
local risk and whose sweep re-scores every conversation of the subject, so flags stay order-free.

The output is shifted so that the chosen operating point (the case threshold picked for a stated
false-positive rate on validation conversations) maps to 0.5, the pipeline's case threshold: operators keep
one threshold setting whether or not fusion is on. Two hard zeros stay: a parent-linked pair (factor 0), as
in the hand-tuned path, and a conversation with no evidence beyond flattery (``beyond_flattery``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.manifest import Manifest, ModelArtifactError
from pipeline.decision import FusionInputs
from pipeline.risk import PROGRESSION_LEVEL, stage_score
from pipeline.rulebook import GROOMING_STAGES, Stage

FUSION_MODEL_ID = "fusion-logistic"
FUSION_FILE = "fusion/fusion.json"
EVIDENCE_STAGES: tuple[str, ...] = tuple(s.value for s in Stage)
RELATIONS: tuple[str, ...] = ("adult_minor", "unknown_minor", "older_minor", "peers", "adults", "adult_unknown",
                              "undetermined")
_GROOMING = tuple(s.value for s in GROOMING_STAGES)


def feature_names() -> list[str]:
    names = [f"ev_{s}" for s in EVIDENCE_STAGES]
    names += [f"factor_x_ev_{s}" for s in EVIDENCE_STAGES]
    names += ["progressed", "factor_x_progressed", "stage_score", "handtuned_risk"]
    names += [f"{r}_x_stage_score" for r in RELATIONS]
    names += ["gap_x_stage_score", "log_rule_hits"]
    return names


def features(inputs: FusionInputs) -> list[float]:
    """The fusion's feature vector (order: ``feature_names()``). Pure function of ``inputs``.

    Age features enter only multiplied by evidence, never alone: an adult talking to a minor with nothing
    said is not a case, however often the synthetic data pairs the two.
    """
    ev = inputs.evidence
    factor = inputs.pair.factor
    values = [float(ev.get(s, 0.0)) for s in EVIDENCE_STAGES]
    progressed = sum(1 for s in _GROOMING if ev.get(s, 0.0) >= PROGRESSION_LEVEL) / len(_GROOMING)
    combined = stage_score(ev)
    out = values + [factor * v for v in values]
    out += [progressed, factor * progressed, combined, factor * combined]
    out += [combined if inputs.pair.relation == r else 0.0 for r in RELATIONS]
    out += [combined * inputs.pair.gap_years / 10.0, math.log1p(inputs.rule_hits)]
    return out


def beyond_flattery(inputs: FusionInputs) -> bool:
    """Policy guard: some stage other than trust building has reached the progression level.

    Flattery from an adult to a child is common and mostly harmless (coaches, relatives whose accounts are not
    linked); on its own it never opens a case, whatever the synthetic training data would allow. Measured on
    the held-out set it delays the median flag from 3 to 7 events and changes no other figure (model card)."""
    return any(v >= PROGRESSION_LEVEL for s, v in inputs.evidence.items() if s != Stage.TRUST_BUILDING)


@dataclass(frozen=True, slots=True)
class LogisticRiskFusion:
    """``RiskFusion``: ``sigmoid(w . x + b - logit(threshold))``, see the module docstring."""

    weights: tuple[float, ...]
    bias: float
    threshold: float  # operating point on the unshifted probability, mapped to 0.5
    name: str = FUSION_MODEL_ID
    version: str = ""
    sha256: str = ""

    def raw_probability(self, inputs: FusionInputs) -> float:
        z = self.bias + math.fsum(w * x for w, x in zip(self.weights, features(inputs), strict=True))
        return _sigmoid(z)

    def local_risk(self, inputs: FusionInputs) -> float:
        if inputs.pair.factor <= 0.0 or not beyond_flattery(inputs):
            return 0.0
        z = self.bias + math.fsum(w * x for w, x in zip(self.weights, features(inputs), strict=True))
        return round(_sigmoid(z - _logit(self.threshold)), 6)

    def to_dict(self) -> dict[str, Any]:
        return {"features": feature_names(), "weights": list(self.weights), "bias": self.bias,
                "threshold": self.threshold}


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


def write_fusion(fusion: LogisticRiskFusion, root: Path, extra: dict[str, Any]) -> list[str]:
    (root / "fusion").mkdir(parents=True, exist_ok=True)
    (root / FUSION_FILE).write_text(json.dumps({**fusion.to_dict(), **extra}, indent=1) + "\n", encoding="utf-8")
    return [FUSION_FILE]


def load_fusion(manifest: Manifest) -> LogisticRiskFusion:
    path = manifest.verified_path(FUSION_FILE)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw["features"] != feature_names():
            raise ValueError("feature list differs from this code's; retrain with `lifeguard train`")
        weights = tuple(float(w) for w in raw["weights"])
        bias, threshold = float(raw["bias"]), float(raw["threshold"])
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise ModelArtifactError(f"fusion model {path} is malformed: {exc}") from None
    entry = manifest.models.get(FUSION_MODEL_ID, {})
    return LogisticRiskFusion(weights, bias, threshold, version=str(entry.get("version", manifest.version)),
                              sha256=manifest.model_sha256(FUSION_MODEL_ID))
