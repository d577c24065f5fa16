"""``python -m bench.components`` runs end to end on a small workload and reports every figure it promises."""

from __future__ import annotations

import json
from pathlib import Path

from bench.components import main


def test_component_bench_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "components.json"
    results = main(["--conversations", "20", "--encoder-lines", "5", "--out", str(out)])
    assert json.loads(out.read_text()) == results
    for replay in (results["replay_first_seen"], results["replay_repeated"]):
        assert replay["events"] > 200 and replay["us_per_event"] > 0
    rules = results["rule_patterns"]
    assert 0 < rules["screened_patterns"] <= rules["patterns"]
    assert rules["screened_us_per_line"] > 0 and rules["searched_us_per_line"] > 0
    assert results["fold_us_per_line"] > 0 and results["lines"] > 100
    for name in ("stage_model_us_per_line", "encoder_ms_per_line", "exemplar_comparison_us_per_line"):
        assert results[name] > 0, name
