"""Retention purge: policy per outcome, open cases never, tombstones, audited, idempotent, chain still verifies."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select, update

from audit.tables import audit_entries
from compliance.retention import RetentionPolicy, RetentionResult, apply_retention, verify_retention
from compliance.tables import retention_runs, retention_tombstones
from pipeline.settings import Settings
from review.integrity import check_decision_records
from review.models import CaseActionRow, CaseRow, MessageRow
from tests.compliance.conftest import DECIDED_AT, World


def _apply(world: World, now: datetime, *, dry_run: bool = False) -> RetentionResult:
    return apply_retention(store=world.store, policy=RetentionPolicy.from_settings(world.settings), now=now,
                           dry_run=dry_run)


def _texts(world: World, role: str) -> list[str | None]:
    with world.store.sessions() as s:
        conv = s.scalar(select(CaseRow.conversation_id).where(CaseRow.id == world.cases[role]))
        return list(s.scalars(select(MessageRow.text).where(MessageRow.conversation_id == conv,
                                                            MessageRow.event_type == "chat_message")))


def _entries(world: World) -> int:
    with world.store.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(audit_entries)) or 0)


def _chain_ok(world: World) -> None:
    with world.store.sessions() as s:
        report = world.store.audit.verify(s.connection())
        assert report.ok, report.failures
        assert check_decision_records(s) == []


def test_policy_per_outcome_and_open_cases_never(world: World) -> None:
    assert _apply(world, DECIDED_AT + timedelta(days=30)).messages == 0
    early = _apply(world, DECIDED_AT + timedelta(days=91))  # only dismissals are past 90 days
    assert early.messages > 0 and early.audit_seq is not None
    assert all(t is None for t in _texts(world, "synth_dismissed"))
    for role in ("small", "secret", "meet", "mild", "report", "synth_open"):  # warned/closed: 365 days
        assert all(t is not None for t in _texts(world, role)), role
    _apply(world, DECIDED_AT + timedelta(days=364))
    assert all(t is not None for t in _texts(world, "meet"))  # reported: kept a year after the report
    late = _apply(world, DECIDED_AT + timedelta(days=367))
    assert late.notes >= 2  # the moderators' notes go with the text
    for role in ("small", "secret", "meet", "mild", "report", "synth_banned"):
        assert all(t is None for t in _texts(world, role)), role
    assert all(t is not None for t in _texts(world, "synth_open"))  # open: never
    with world.store.sessions() as s:
        assert s.scalar(select(func.count()).select_from(CaseActionRow).where(CaseActionRow.note.is_not(None))) == 0
    _chain_ok(world)
    assert verify_retention(world.store) == (2, [])  # the day-364 run found nothing and wrote nothing


def test_tombstones_and_audit_entry_commit_to_the_purge(world: World) -> None:
    with world.store.sessions() as s:
        before = {(m.conversation_id, m.event_id): m.text for m in s.scalars(select(MessageRow))
                  if m.text is not None}
    result = _apply(world, DECIDED_AT + timedelta(days=400))
    with world.store.sessions() as s:
        stones = s.execute(select(retention_tombstones)).all()
        run = s.execute(select(retention_runs)).one()
        entry = json.loads(s.scalar(select(audit_entries.c.entry).where(audit_entries.c.seq == result.audit_seq))
                           or "{}")
        purged = {(m.conversation_id, m.event_id): m for m in s.scalars(select(MessageRow))
                  if m.purged_at is not None}
    messages = [t for t in stones if t.kind == "message_text"]
    assert len(messages) == result.messages == len(purged)
    for stone in messages:
        text = before[(stone.conversation_id, stone.ref)]
        assert stone.sha256 == hashlib.sha256(text.encode()).hexdigest()
        assert purged[(stone.conversation_id, stone.ref)].text_sha256 == stone.sha256
    assert entry["action"] == "retention.purged" and entry["subject"] == f"retention:{run.id}"
    assert entry["payload_hash"] == hashlib.sha256(run.record.encode()).hexdigest()
    assert entry["versions"]["message_texts"] == result.messages
    assert entry["versions"]["tombstones_sha256"] == json.loads(run.record)["tombstones_sha256"]
    assert run.audit_seq == result.audit_seq
    _chain_ok(world)


def test_applying_twice_and_dry_runs_change_nothing(world: World) -> None:
    later = DECIDED_AT + timedelta(days=400)
    preview = _apply(world, later, dry_run=True)
    assert preview.messages > 0 and preview.audit_seq is None
    assert all(t is not None for t in _texts(world, "meet"))
    first = _apply(world, later)
    assert (first.messages, first.notes) == (preview.messages, preview.notes)
    entries = _entries(world)
    again = _apply(world, later)
    assert (again.messages, again.notes, again.audit_seq) == (0, 0, None)
    assert _entries(world) == entries
    _chain_ok(world)


def test_verify_catches_text_restored_after_a_purge(world: World) -> None:
    _apply(world, DECIDED_AT + timedelta(days=400))
    with world.store.transaction() as s:
        victim = s.scalars(select(MessageRow).where(MessageRow.purged_at.is_not(None))).first()
        assert victim is not None
        s.execute(update(MessageRow).where(MessageRow.conversation_id == victim.conversation_id,
                                           MessageRow.event_id == victim.event_id).values(text="restored"))
    runs, problems = verify_retention(world.store)
    assert runs == 1 and problems == [f"retention run {_run_id(world)}: message {victim.event_id} has text again "
                                      "after its purge"]


def _run_id(world: World) -> str:
    with world.store.sessions() as s:
        return str(s.scalar(select(retention_runs.c.id)))


def test_reported_cases_outlive_shorter_policies_until_preservation_ends(world: World) -> None:
    short = world.settings.model_copy(update={"retention_warned_days": 1, "retention_restricted_days": 1,
                                              "retention_banned_days": 1})
    policy = RetentionPolicy.from_settings(short)
    apply_retention(store=world.store, policy=policy, now=DECIDED_AT + timedelta(days=30))
    assert all(t is None for t in _texts(world, "secret"))
    assert all(t is not None for t in _texts(world, "meet"))
    with pytest.raises(ValidationError, match="retention_reported_days"):
        Settings(retention_reported_days=100)  # type: ignore[call-arg]
