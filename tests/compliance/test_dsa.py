"""DSA statements of reasons: the mapping per decision, batching, byte-identical re-exports, refusal to write
anything invalid or personal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import compliance.dsa
from compliance.dsa import export_dsa
from compliance.errors import OutputDirError, PersonalDataLeakError, StatementInvalidError
from compliance.period import parse_period
from compliance.pseudonyms import export_pseudonyms
from compliance.validator import validate_batch
from compliance.wording import RuleWording
from pipeline.rulebook import load_rulebook
from review.models import CaseActionRow
from review.store import open_case_store
from tests.compliance.conftest import World
from tests.compliance.outputs import check_manifest, files_of, personal_data_in
from tests.review import conversations as conv
from tests.review.databases import FakeClock, settings_for

MARCH = parse_period("2026-03-01", "2026-03-31")


def _export(world: World, out: Path, **kwargs: Any) -> list[dict[str, Any]]:
    export_dsa(store=world.store, settings=world.settings, pseudonyms=export_pseudonyms(world.settings),
               wording=RuleWording.from_book(load_rulebook(None)), period=kwargs.pop("period", MARCH), out=out,
               **kwargs)
    return [s for name, data in files_of(out).items() if name.startswith("statements-")
            for s in json.loads(data)["statements"]]


def _by_case(world: World, statements: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Human-decision statements keyed by fixture role, via the puid the export derives from case + action."""
    pseudonyms = export_pseudonyms(world.settings)
    by_puid = {s["puid"]: s for s in statements}
    out: dict[str, list[dict[str, Any]]] = {}
    with world.store.sessions() as session:
        for role, case_id in world.cases.items():
            for action_id in session.scalars(select(CaseActionRow.id).where(CaseActionRow.case_id == case_id)):
                puid = pseudonyms.statement_puid("human", case_id, str(action_id))
                if puid in by_puid:
                    out.setdefault(role, []).append(by_puid[puid])
    return out


def test_mapping_follows_how_each_case_was_detected_and_decided(world: World, tmp_path: Path) -> None:
    statements = _export(world, tmp_path / "dsa")
    assert validate_batch(statements) == []
    human = _by_case(world, statements)
    assert set(human) == {"meet", "secret", "mild", "report", "synth_banned"}  # warned/dismissed: no restriction
    [reported] = human["meet"]
    assert reported["decision_ground"] == "DECISION_GROUND_ILLEGAL_CONTENT"
    assert "2011/93/EU" in reported["illegal_content_legal_ground"]
    assert (reported["decision_account"], reported["decision_provision"]) == (
        "DECISION_ACCOUNT_TERMINATED", "DECISION_PROVISION_TOTAL_TERMINATION")
    assert reported["automated_detection"] == "Yes"
    assert reported["automated_decision"] == "AUTOMATED_DECISION_PARTIALLY"
    assert reported["source_type"] == "SOURCE_VOLUNTARY"
    assert reported["category"] == "STATEMENT_CATEGORY_PROTECTION_OF_MINORS"
    assert reported["category_specification"] == ["KEYWORD_GROOMING_SEXUAL_ENTICEMENT_MINORS"]
    assert reported["content_date"] == "2026-03-02" and reported["application_date"] == "2026-03-20"
    [noticed] = human["report"]  # opened by a child's report: a notice, decided by a person
    assert noticed["source_type"] == "SOURCE_ARTICLE_16"
    assert noticed["automated_detection"] == "No"
    assert noticed["automated_decision"] == "AUTOMATED_DECISION_NOT_AUTOMATED"
    assert noticed["decision_provision"] == "DECISION_PROVISION_PARTIAL_SUSPENSION"
    assert noticed["decision_ground"] == "DECISION_GROUND_INCOMPATIBLE_CONTENT"
    assert noticed["incompatible_content_illegal"] == "No"  # CSE-4.1 safety signals: a breach, not a crime
    [overturned] = human["mild"]
    assert overturned["incompatible_content_illegal"] == "Yes"  # CSE-3.1 solicitation to meet a minor
    assert overturned["decision_provision"] == "DECISION_PROVISION_PARTIAL_SUSPENSION"
    automated = [s for s in statements if s["automated_decision"] == "AUTOMATED_DECISION_FULLY"]
    assert automated and all(s["source_type"] == "SOURCE_VOLUNTARY" and s["automated_detection"] == "Yes"
                             for s in automated)
    assert all(s["territorial_scope"] == ["DE", "FR", "NL", "IE"] for s in statements)
    assert personal_data_in(tmp_path / "dsa", world.user_ids, world.texts, world.conversation_ids) == []


def test_without_automated_measures_only_human_decisions_remain(world: World, tmp_path: Path) -> None:
    statements = _export(world, tmp_path / "dsa", include_automated=False)
    assert len(statements) == 5
    assert {s["automated_decision"] for s in statements} == {"AUTOMATED_DECISION_PARTIALLY",
                                                             "AUTOMATED_DECISION_NOT_AUTOMATED"}


def test_period_outside_the_decisions_is_empty_but_still_manifested(world: World, tmp_path: Path) -> None:
    statements = _export(world, tmp_path / "dsa", period=parse_period("2026-05-01", "2026-05-31"))
    assert statements == []
    manifest = check_manifest(tmp_path / "dsa", world.store, "dsa")
    assert manifest["row_counts"]["statements"] == 0 and manifest["files"] == []


def test_same_inputs_give_byte_identical_outputs(world: World, tmp_path: Path) -> None:
    _export(world, tmp_path / "a")
    _export(world, tmp_path / "b")
    first = files_of(tmp_path / "a")
    assert first == files_of(tmp_path / "b")
    _export(world, tmp_path / "a")  # re-export into the same folder replaces it
    assert files_of(tmp_path / "a") == first
    check_manifest(tmp_path / "a", world.store, "dsa")


def test_batches_hold_at_most_100_statements(tmp_path: Path) -> None:
    clock = FakeClock()
    clock.now = clock.now.replace(day=20)
    settings = settings_for("sqlite", tmp_path / "data")
    store = open_case_store(settings, clock=clock)
    try:
        conv.run(conv.write(tmp_path / "e.jsonl", conv.many(105)), sink=store)
        world = World(store, settings, clock, conv.many(105), {}, tmp_path)
        statements = _export(world, tmp_path / "dsa")
    finally:
        store.close()
    sizes = [len(json.loads(d)["statements"]) for n, d in files_of(tmp_path / "dsa").items() if n != "manifest.json"]
    assert sorted(sizes) == [5, 100] and len(statements) == 105
    assert validate_batch(statements[:100]) == []


def test_an_invalid_statement_stops_the_export_before_writing(world: World, tmp_path: Path) -> None:
    broken = world.settings.model_copy(update={"territorial_scope": ["DE", "US"]})
    with pytest.raises(StatementInvalidError, match="territorial_scope: 'US'"):
        export_dsa(store=world.store, settings=broken, pseudonyms=export_pseudonyms(world.settings),
                   wording=RuleWording.from_book(load_rulebook(None)), period=MARCH, out=tmp_path / "dsa")
    assert not (tmp_path / "dsa").exists()


def test_personal_data_in_a_statement_stops_the_export(world: World, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    leaky = dict(compliance.dsa.RESTRICTIONS)
    leaky["banned"] = compliance.dsa.Restriction(provision="DECISION_PROVISION_TOTAL_TERMINATION",
                                                 account="DECISION_ACCOUNT_TERMINATED",
                                                 wording="account adult-2 was terminated")
    monkeypatch.setattr(compliance.dsa, "RESTRICTIONS", leaky)
    with pytest.raises(PersonalDataLeakError, match="user or conversation id"):
        _export(world, tmp_path / "dsa")
    assert not (tmp_path / "dsa").exists()


def test_refuses_a_folder_holding_something_else(world: World, tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirError, match="not empty"):
        _export(world, tmp_path / "busy")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
