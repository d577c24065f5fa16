"""Transparency report: what is counted, reversals, Art. 15/24 items, stable bytes (charts included)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from compliance.period import parse_period
from compliance.pseudonyms import export_pseudonyms
from compliance.transparency import NOT_APPLICABLE, NOT_TRACKED, export_transparency, nearest_rank
from tests.compliance.conftest import World
from tests.compliance.outputs import check_manifest, files_of, personal_data_in


def _export(world: World, out: Path, first: str = "2026-03-01", last: str = "2026-03-31") -> dict[str, Any]:
    export_transparency(store=world.store, settings=world.settings, pseudonyms=export_pseudonyms(world.settings),
                        period=parse_period(first, last), out=out)
    report: dict[str, Any] = json.loads((out / "transparency.json").read_bytes())
    return report


def test_counts_reversals_and_times(world: World, tmp_path: Path) -> None:
    report = _export(world, tmp_path / "t")
    counts = report["counts"]
    opened = counts["cases_opened"]
    assert opened["by_detection_source"]["user_report"] == 1 and opened["by_detection_source"]["human"] == 0
    assert opened["total"] == sum(opened["by_detection_source"].values())
    decisions = counts["decisions"]
    assert decisions["by_action"] == {"dismissed": 2, "warned": 1, "restricted": 2, "banned": 2, "reported_ncmec": 1}
    assert decisions["by_detection_source_and_action"]["user_report"]["restricted"] == 1
    assert decisions["by_category"]["STATEMENT_CATEGORY_PROTECTION_OF_MINORS"] == {
        "KEYWORD_GROOMING_SEXUAL_ENTICEMENT_MINORS": 6, "no_violation": 2}
    assert counts["automated_vs_human"]["human_decisions"] == 8
    assert counts["automated_vs_human"]["automated_decisions"] > 0
    reversals = report["reversals"]
    assert reversals["reopened"] == {"total": 1, "after_dismissal": 1, "after_warning": 0}
    assert reversals["overturned"] == {"total": 1, "by_change": {"dismissed->restricted": 1}}
    assert reversals["appeals"] == NOT_TRACKED
    times = report["time_to_action"]["all_decisions"]
    assert times["decisions"] == 8 and 0 < times["median_seconds"] <= times["p90_seconds"]
    items = {(i["article"], i["item"]): i["value"] for i in report["dsa_items"]}
    assert items[("24(5)", "statements of reasons for the period (submitted to the Transparency Database)")] == (
        5 + counts["automated_vs_human"]["automated_decisions"])
    assert items[("24(2)", "average monthly active recipients in the Union")] == NOT_TRACKED
    assert all(i["value"] not in (None, "") for i in report["dsa_items"])
    rows = list(csv.DictReader(io.StringIO((tmp_path / "t" / "transparency.csv").read_text())))
    assert {"counts", "time_to_action", "reversals", "dsa_items"} <= {r["section"] for r in rows}
    assert personal_data_in(tmp_path / "t", world.user_ids, world.texts, world.conversation_ids) == []
    check_manifest(tmp_path / "t", world.store, "transparency")


def test_empty_period_reports_zeros_and_not_applicable(world: World, tmp_path: Path) -> None:
    report = _export(world, tmp_path / "t", "2025-01-01", "2025-01-31")
    assert report["counts"]["cases_opened"]["total"] == 0
    assert report["time_to_action"]["all_decisions"] == {"decisions": 0, "median_seconds": None, "p90_seconds": None}
    items = {i["item"]: i["value"] for i in report["dsa_items"]}
    assert items["median time to take action on notices (seconds)"] == NOT_APPLICABLE


def test_reexport_is_byte_identical_including_charts(world: World, tmp_path: Path) -> None:
    _export(world, tmp_path / "a")
    _export(world, tmp_path / "b")
    first, second = files_of(tmp_path / "a"), files_of(tmp_path / "b")
    assert first == second
    assert {n for n in first if n.endswith(".png")} == {"charts/decisions_by_action.png",
                                                         "charts/cases_by_detection_source.png",
                                                         "charts/time_to_action.png"}
    assert all(first[n].startswith(b"\x89PNG") for n in first if n.endswith(".png"))


def test_nearest_rank() -> None:
    assert nearest_rank([], 0.5) is None
    assert nearest_rank([5.0], 0.9) == 5.0
    assert nearest_rank([float(v) for v in range(1, 11)], 0.5) == 5.0
    assert nearest_rank([float(v) for v in range(1, 11)], 0.9) == 9.0
