"""NCMEC CyberTipline bundles: one per reported person, thread CSV, escalation, preservation for a year."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from compliance.errors import ReportCaseError
from compliance.ncmec import INCIDENT_TYPE, export_ncmec, preservation_expiry
from compliance.pseudonyms import export_pseudonyms
from compliance.wording import RuleWording
from pipeline.rulebook import load_rulebook
from tests.compliance.conftest import DECIDED_AT, World
from tests.compliance.outputs import check_manifest, files_of
from tests.review import conversations as conv


def _export(world: World, out: Path, case_id: str) -> dict[str, bytes]:
    export_ncmec(store=world.store, settings=world.settings, pseudonyms=export_pseudonyms(world.settings),
                 wording=RuleWording.from_book(load_rulebook(None)), out=out, case_id=case_id)
    return files_of(out)


def test_bundle_for_a_reported_case(world: World, tmp_path: Path) -> None:
    files = _export(world, tmp_path / "nc", world.cases["meet"])
    subject = export_pseudonyms(world.settings).subject_ref("adult-1")
    assert sorted(files) == ["manifest.json", f"{subject}/preservation.json", f"{subject}/report.json",
                             f"{subject}/threads/{world.cases['meet']}.csv"]
    report = json.loads(files[f"{subject}/report.json"])["report"]
    summary = report["incidentSummary"]
    assert summary["incidentType"] == INCIDENT_TYPE == "Online Enticement of Children for Sexual Acts"
    assert summary["platform"] == world.settings.platform_name
    assert summary["incidentDateTime"].startswith("2026-03-02T15:0")
    assert "meet" in summary["escalateToHighPriority"]
    assert report["reporter"]["reportingPerson"]["email"][0]["value"] == world.settings.reporter_email
    assert report["reporter"]["reportingPerson"]["firstName"] == world.settings.reporter_name
    reported = report["personOrUserReported"]
    assert reported["espIdentifier"] == "adult-1" and reported["accountPermanentlyDisabled"]["value"] is True
    assert [v["espIdentifier"] for v in report["victim"]] == ["kid-1"]
    chat = report["internetDetails"][0]["chatImIncident"]
    assert chat["chatRoomName"] == "dm-meet" and "threads/" in chat["content"]

    rows = list(csv.DictReader(io.StringIO(files[f"{subject}/threads/{world.cases['meet']}.csv"].decode())))
    assert [r["text"] for r in rows] == [text for _, text in conv.MEETING]
    assert {r["sender_id"] for r in rows} == {"adult-1", "kid-1"}
    assert [r["timestamp"] for r in rows] == sorted(r["timestamp"] for r in rows)

    preservation = json.loads(files[f"{subject}/preservation.json"])["preservation"]
    reported_at = datetime.fromisoformat(preservation["reported_at"])
    assert reported_at >= DECIDED_AT and preservation["preserve_until"] == preservation_expiry(reported_at).isoformat()
    assert preservation["preserve_until"].startswith("2027-03-20")
    assert preservation["cases"][0]["messages"] == len(conv.MEETING)
    check_manifest(tmp_path / "nc", world.store, "ncmec")


def test_period_export_groups_by_reported_person_and_is_reproducible(world: World, tmp_path: Path) -> None:
    from compliance.period import parse_period

    for name in ("a", "b"):
        export_ncmec(store=world.store, settings=world.settings, pseudonyms=export_pseudonyms(world.settings),
                     wording=RuleWording.from_book(load_rulebook(None)), out=tmp_path / name,
                     period=parse_period("2026-03-20", "2026-03-20"))
    assert files_of(tmp_path / "a") == files_of(tmp_path / "b")
    manifest = json.loads(files_of(tmp_path / "a")["manifest.json"])
    assert manifest["row_counts"] == {"cases": 1, "reports": 1, "thread_messages": len(conv.MEETING)}


@pytest.mark.parametrize(("role", "message"), [("secret", "decided 'banned', not reported_ncmec"),
                                               ("synth_open", "(not decided)")])
def test_only_reported_cases_export(world: World, tmp_path: Path, role: str, message: str) -> None:
    with pytest.raises(ReportCaseError, match=message):
        _export(world, tmp_path / "nc", world.cases[role])
    with pytest.raises(ReportCaseError, match="no case case-nope"):
        _export(world, tmp_path / "nc", "case-nope")


def test_preservation_expiry_is_one_calendar_year() -> None:
    assert preservation_expiry(datetime(2026, 3, 20, 9, 0, tzinfo=UTC)) == datetime(2027, 3, 20, 9, 0, tzinfo=UTC)
    assert preservation_expiry(datetime(2028, 2, 29, 12, 0, tzinfo=UTC)) == datetime(2029, 3, 1, tzinfo=UTC)
