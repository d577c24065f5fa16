"""`lifeguard replay`: the report's public shape, invalid lines, and clear failures."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.golden import expand_steps
from pipeline.rulebook import GoldenStep, load_rulebook

runner = CliRunner()


def write_events(path: Path, extra_lines: list[str]) -> None:
    book = load_rulebook()
    steps = [
        {"from": "adult", "to": "child", "text": "how old r u"},
        {"from": "adult", "to": "child", "text": "dont tell ur parents ok"},
        {"from": "adult", "to": "child", "text": "add me on snap"},
        {"from": "teen", "to": "teen2", "text": "gg"},
    ]
    events = expand_steps([GoldenStep.model_validate(s) for s in steps], book.personas, "cli")
    lines = [e.model_dump_json(exclude_none=True) for e in events]
    path.write_text("\n".join(lines[:2] + extra_lines + lines[2:]) + "\n")


def test_replay_writes_the_report_shape(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    write_events(events, ["{not json", '{"schema_version": 1}', ""])
    report_path = tmp_path / "out" / "report.json"
    result = runner.invoke(app, ["replay", str(events), "--report", str(report_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert set(report) == {"events", "invalid", "cases", "timing"}
    assert report["events"] == 4
    assert [i["line"] for i in report["invalid"]] == [3, 4]
    assert "not JSON" in report["invalid"][0]["reason"]
    assert "event_id" in report["invalid"][1]["reason"]
    [case] = report["cases"]
    assert set(case) == {"case_id", "conversation_id", "opened_by_event_id", "opened_at", "risk", "priority",
                         "stages", "subjects", "reasons"}
    assert case["subjects"] == ["u-adult"]
    assert 0.5 <= case["risk"] <= 1.0
    for reason in case["reasons"]:
        assert set(reason) == {"kind", "id", "version", "event_id", "detail"}
        assert reason["kind"] in ("rule", "model", "age")
    assert report["timing"]["events_per_second"] > 0


def test_missing_file_fails_with_a_clear_message(tmp_path: Path) -> None:
    result = runner.invoke(app, ["replay", str(tmp_path / "nope.jsonl"), "--report", str(tmp_path / "r.json")])
    assert result.exit_code != 0
    assert "no such file" in result.output
    assert not (tmp_path / "r.json").exists()


def test_missing_report_flag_fails(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    write_events(events, [])
    result = runner.invoke(app, ["replay", str(events)])
    assert result.exit_code != 0
    assert "--report" in result.output


def test_bad_rules_folder_fails_with_a_clear_message(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    write_events(events, [])
    result = runner.invoke(app, ["replay", str(events), "--report", str(tmp_path / "r.json"),
                                 "--rules", str(tmp_path)])
    assert result.exit_code != 0
    assert "no rule files" in result.output


def test_rules_check_command_passes() -> None:
    result = runner.invoke(app, ["rules", "check"])
    assert result.exit_code == 0, result.output
    assert "0 failures" in result.output
