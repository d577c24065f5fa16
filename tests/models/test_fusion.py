"""The learned fusion: pure, guarded, wired into decide through the hook, fan-out sweep intact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.fusion import LogisticRiskFusion, feature_names, features, load_fusion
from models.loader import MODELS_DIR, load_models
from models.manifest import read_manifest
from pipeline.age import PairAssessment
from pipeline.decision import Detectors, FusionInputs
from pipeline.replay import replay
from pipeline.rulebook import load_rulebook
from pipeline.synth import generate, write_jsonl

ADULT_MINOR = PairAssessment(1.0, "adult_minor", "u-a", "u-b", 14.5, "adult with a minor")
PARENT = PairAssessment(0.0, "parent_child", "u-a", "u-b", 25.0, "linked")


@pytest.fixture(scope="module")
def fusion() -> LogisticRiskFusion:
    return load_fusion(read_manifest(MODELS_DIR))


def _inputs(evidence: dict[str, float], pair: PairAssessment = ADULT_MINOR, hits: int = 2) -> FusionInputs:
    return FusionInputs(evidence, pair, hits, 10)


def test_features_match_names() -> None:
    assert len(features(_inputs({"secrecy": 0.6}))) == len(feature_names())


def test_pure_and_bounded(fusion: LogisticRiskFusion) -> None:
    inputs = _inputs({"secrecy": 0.6, "isolation": 0.7})
    risks = {fusion.local_risk(inputs) for _ in range(5)}
    assert len(risks) == 1
    assert 0.0 <= risks.pop() <= 1.0


def test_guards_zero_the_risk(fusion: LogisticRiskFusion) -> None:
    assert fusion.local_risk(_inputs({})) == 0.0
    assert fusion.local_risk(_inputs({"trust_building": 0.95})) == 0.0  # flattery alone opens no case
    assert fusion.local_risk(_inputs({"meeting_request": 0.9, "secrecy": 0.9}, PARENT)) == 0.0


def test_more_evidence_more_risk(fusion: LogisticRiskFusion) -> None:
    weak = fusion.local_risk(_inputs({"age_probing": 0.3}))
    strong = fusion.local_risk(_inputs({"age_probing": 0.6, "secrecy": 0.7, "isolation": 0.8,
                                        "meeting_request": 0.8}, hits=6))
    assert strong > weak
    assert strong >= 0.5  # a progressed adult-minor conversation is a case


def test_operating_point_maps_to_half(fusion: LogisticRiskFusion) -> None:
    inputs = _inputs({"secrecy": 0.5, "isolation": 0.4})
    raw = fusion.raw_probability(inputs)
    assert (fusion.local_risk(inputs) >= 0.5) == (raw >= fusion.threshold)


def test_manifest_records_validation_figures() -> None:
    raw = json.loads((MODELS_DIR / "fusion" / "fusion.json").read_text())
    validation = raw["validation"]
    assert validation["threshold_choice"]["target_false_positive_rate"] == 0.005
    assert {"validation_handtuned", "validation_fused", "validation_rules_only", "adopted"} <= set(validation)


@pytest.fixture(scope="module")
def fanout_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, object]]]:
    result = generate(seed=5, conversations=80, bank="holdout", grooming_share=0.5)
    path = tmp_path_factory.mktemp("fusion") / "events.jsonl"
    write_jsonl(result, path)
    return path, result.labels["conversations"]


def test_decide_uses_the_fusion_and_records_it(fanout_file: tuple[Path, dict[str, dict[str, object]]]) -> None:
    path, labels = fanout_file
    loaded = load_models(fusion=True)
    assert loaded.fusion is not None
    detectors = Detectors(rules=load_rulebook(None), classifiers=loaded.classifiers, fusion=loaded.fusion)
    first = replay(path, detectors, keep_decisions=True)
    second = replay(path, detectors, keep_decisions=True)
    assert [d.to_record() for d in first.decisions] == [d.to_record() for d in second.decisions]  # deterministic
    assert all(any(m["id"] == loaded.fusion.name for m in d.models) for d in first.decisions)
    flagged = {c["conversation_id"] for c in first.cases}
    fanout = [c for c, label in labels.items() if label["kind"] == "fanout"]
    assert fanout and set(fanout) <= flagged  # fan-out conversations still flagged (sweep + combine intact)
    benign = [c for c, label in labels.items() if label["label"] == "benign"]
    assert not flagged & set(benign)


def test_default_detectors_keep_hand_tuned_weights() -> None:
    assert Detectors(rules=load_rulebook(None)).fusion is None
