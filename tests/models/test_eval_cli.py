"""`lifeguard eval` end to end on a small held-out set, and the detectors the processes load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from models.manifest import ModelArtifactError
from pipeline.cli import app
from pipeline.detectors import load_detectors
from pipeline.settings import load_settings
from pipeline.synth import generate, write_jsonl


@pytest.fixture(scope="module")
def holdout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("eval") / "holdout.jsonl"
    write_jsonl(generate(seed=31, conversations=60, bank="holdout"), path)
    return path


def test_eval_writes_metrics_report_and_plots(holdout: Path, tmp_path: Path) -> None:
    labels = holdout.with_name("holdout.labels.json")
    result = CliRunner().invoke(app, ["eval", str(holdout), "--labels", str(labels), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    quality = metrics["quality"]
    for key in ("precision", "recall", "f0_5", "false_positive_rate", "early_rate", "events_to_flag_median",
                "events_to_flag_p90", "latency_weighted_f1"):
        assert key in quality
    assert quality["false_positive_rate"] <= 0.05 and quality["recall"] >= 0.8
    assert 0.0 < metrics["cascade"]["share"] < 0.5
    assert metrics["throughput"]["events_per_second"] > 0
    assert {m["id"] for m in metrics["models"]} == {"stage-ngram", "exemplar-minilm", "fusion-logistic"}
    assert set(metrics["per_kind"]) and all("label" in k for k in metrics["per_kind"].values())
    assert len(metrics["threshold_curve"]) > 5
    for name in ("precision_recall.png", "events_to_flag.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "F0.5" in (tmp_path / "report.md").read_text()


def test_eval_rules_only_baseline(holdout: Path, tmp_path: Path) -> None:
    labels = holdout.with_name("holdout.labels.json")
    result = CliRunner().invoke(app, ["eval", str(holdout), "--labels", str(labels), "--out", str(tmp_path),
                                      "--no-models"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["models"] == [] and metrics["cascade"] is None


def test_eval_reports_a_broken_models_folder(holdout: Path, tmp_path: Path) -> None:
    labels = holdout.with_name("holdout.labels.json")
    result = CliRunner().invoke(app, ["eval", str(holdout), "--labels", str(labels), "--out", str(tmp_path),
                                      "--models", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "never trained" in result.output


def test_load_detectors_ships_models_and_fails_closed(tmp_path: Path) -> None:
    detectors = load_detectors(load_settings())
    assert [c.name for c in detectors.classifiers] == ["stage-ngram", "exemplar-minilm"]
    assert detectors.fusion is not None
    with pytest.raises(ModelArtifactError):
        load_detectors(load_settings(models_dir=tmp_path))
    assert load_detectors(load_settings(), with_models=False).classifiers == ()
