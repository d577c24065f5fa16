"""The SQL case store as the workers and replay --persist use it: same cases as the replay report, idempotent,
transcripts, lifecycle against new evidence, concurrent writers."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

import pipeline.replay
from pipeline.cases import updates_of
from pipeline.contract import parse_event
from review.access import Principal, Role
from review.casework import record_decision
from review.integrity import check_decision_records
from review.models import CaseRow, DecisionRecordRow, MessageRow
from review.policy import Action, ReasonCode
from review.queue import claim_case
from review.store import SqlCaseStore, open_case_store
from tests.review import conversations as conv
from tests.review.databases import FakeClock

MOD = Principal("tok-m", "mia", Role.MODERATOR)
SENIOR = Principal("tok-s", "sam", Role.SENIOR)
COUNTED = ("cases", "case_updates", "case_reasons", "case_subjects", "decision_records", "messages",
           "audit_entries")


def counts(store: SqlCaseStore) -> dict[str, int]:
    with store.engine.connect() as c:
        return {t: int(c.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in COUNTED}


def snapshot(store: SqlCaseStore) -> list[Any]:
    with store.engine.connect() as c:
        return [c.execute(text(f"SELECT * FROM {t}")).all() for t in COUNTED if t != "audit_entries"]


def test_report_matches_replay_and_chain_verifies(store: SqlCaseStore, tmp_path: Path) -> None:
    events = [*conv.mixed_queue(), *conv.conversation("dm-chat", [("a", "gg"), ("k", "gg wp")], adult="a-9",
                                                      child="k-9")]
    result = conv.run(conv.write(tmp_path / "e.jsonl", events), sink=store)
    assert store.cases_report() == result.cases
    assert len(result.cases) == 4
    with store.sessions() as s:
        stored_convs = set(s.scalars(select(MessageRow.conversation_id)))
        acted = [d for d in result.decisions if d.case is not None or d.actions]
        audited = s.scalar(select(func.count()).select_from(DecisionRecordRow)
                           .where(DecisionRecordRow.audit_seq.is_not(None)))
        assert audited == len(acted)
        assert check_decision_records(s) == []
        report = store.audit.verify(s.connection())
    # Messages only for conversations with a case; the whole conversation (context before the case opened).
    assert stored_convs == {"dm-meet", "dm-secret", "dm-small", "dm-mild"}
    assert counts(store)["messages"] == len(events) - 2
    assert report.ok, report.failures
    assert report.entries == len(acted) + 4  # one per automated decision + one case.opened per case


def test_apply_twice_changes_nothing(store: SqlCaseStore, tmp_path: Path) -> None:
    path = conv.write(tmp_path / "e.jsonl", conv.mixed_queue())
    conv.run(path, sink=store)
    before, rows = counts(store), snapshot(store)
    conv.run(path, sink=store)  # a full redelivery: same updates, decisions and events
    assert counts(store) == before
    assert snapshot(store) == rows


def test_redelivered_updates_applied_directly(store: SqlCaseStore, tmp_path: Path) -> None:
    result = conv.run(conv.write(tmp_path / "e.jsonl", conv.mixed_queue()))
    events = [parse_event(e) for e in conv.mixed_queue()]
    updates = updates_of(result.decisions)
    store.apply(updates, result.decisions, events)
    before = counts(store)
    store.apply(updates[:3], result.decisions[:5], events[:4])
    store.apply(updates, result.decisions, events)
    assert counts(store) == before
    assert store.cases_report() == result.cases


def test_context_from_earlier_batches_is_kept(store: SqlCaseStore, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline.replay, "BATCH_SIZE", 2)  # the case opens several batches after the chat began
    events = conv.conversation("dm-meet", conv.MEETING)
    conv.run(conv.write(tmp_path / "e.jsonl", events), sink=store)
    with store.sessions() as s:
        stored = list(s.scalars(select(MessageRow.event_id).order_by(MessageRow.ts)))
    assert stored == [e["event_id"] for e in events]


def test_dismissed_case_reopens_when_risk_rises(store: SqlCaseStore, clock: FakeClock, tmp_path: Path) -> None:
    mild = conv.conversation("dm-mild", conv.MILD, band="13_15")
    conv.run(conv.write(tmp_path / "a.jsonl", mild), sink=store)
    [case] = store.cases_report()
    claim_case(store=store, principal=MOD, case_id=case["case_id"], now=clock())
    done = record_decision(store=store, principal=MOD, case_id=case["case_id"], action=Action.DISMISSED,
                           reason_code=ReasonCode.NO_VIOLATION, note="banter", now=clock())
    assert (done.status, done.outcome) == ("decided", "dismissed")
    # The same events again change nothing: the dismissal stands.
    conv.run(conv.write(tmp_path / "a.jsonl", mild), sink=store)
    with store.sessions() as s:
        assert s.get_one(CaseRow, case["case_id"]).status == "decided"
    clock.advance(3600)
    later = conv.conversation("dm-mild", conv.LATER, band="13_15", first=len(conv.MILD))
    conv.run(conv.write(tmp_path / "b.jsonl", mild + later), sink=store)
    with store.sessions() as s:
        row = s.get_one(CaseRow, case["case_id"])
        assert (row.status, row.outcome, row.reopen_count) == ("open", None, 1)
        assert row.sla_started_at == clock()
        assert "meeting_request" in row.stages
        actions = list(s.execute(text("SELECT action FROM audit_entries ORDER BY seq")).scalars())
    assert "case.reopened" in actions
    assert len(store.cases_report()) == 1


def test_closed_case_is_final_and_new_evidence_opens_a_new_case(store: SqlCaseStore, clock: FakeClock,
                                                                 tmp_path: Path) -> None:
    mild = conv.conversation("dm-mild", conv.MILD, band="13_15")
    conv.run(conv.write(tmp_path / "a.jsonl", mild), sink=store)
    [case] = store.cases_report()
    claim_case(store=store, principal=MOD, case_id=case["case_id"], now=clock())
    done = record_decision(store=store, principal=MOD, case_id=case["case_id"], action=Action.RESTRICTED,
                           reason_code=ReasonCode.GROOMING_SECRECY, note="", now=clock())
    assert done.status == "closed"
    later = conv.conversation("dm-mild", conv.LATER, band="13_15", first=len(conv.MILD))
    conv.run(conv.write(tmp_path / "b.jsonl", mild + later), sink=store)
    report = store.cases_report()
    assert [c["conversation_id"] for c in report] == ["dm-mild", "dm-mild"]
    assert report[1]["opened_by_event_id"] == later[0]["event_id"]
    with store.sessions() as s:
        assert s.get_one(CaseRow, case["case_id"]).status == "closed"


def test_edited_decision_record_is_caught(store: SqlCaseStore, tmp_path: Path) -> None:
    conv.run(conv.write(tmp_path / "e.jsonl", conv.mixed_queue()), sink=store)
    with store.transaction() as s:
        first = s.scalars(select(DecisionRecordRow).where(DecisionRecordRow.audit_seq.is_not(None))).first()
        assert first is not None
        s.execute(update(DecisionRecordRow).where(DecisionRecordRow.event_id == first.event_id)
                  .values(record=first.record.replace('"risk":', '"risk":0.1,"x":')))
    with store.sessions() as s:
        failures = check_decision_records(s)
    assert len(failures) == 1 and first.event_id in failures[0]


@pytest.mark.services
def test_two_workers_apply_the_same_batches_concurrently(pg_backend: str, tmp_path: Path) -> None:
    """Two worker processes after a rebalance may write the same updates at once: one case per conversation,
    each update, record and audit entry once, one linear chain."""
    from tests.review.databases import settings_for

    settings = settings_for(pg_backend, tmp_path / "data")
    events = conv.many(12)
    result = conv.run(conv.write(tmp_path / "e.jsonl", events))
    parsed = [parse_event(e) for e in events]
    updates = updates_of(result.decisions)
    stores = [open_case_store(settings) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def work(store: SqlCaseStore, reverse: bool) -> None:
        try:
            barrier.wait()
            chunks = [(updates[i:i + 3], result.decisions, parsed) for i in range(0, len(updates), 3)]
            for chunk in reversed(chunks) if reverse else chunks:
                store.apply(*chunk)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s, i % 2 == 1)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    reference = stores[0]
    assert reference.cases_report() == result.cases
    assert counts(reference)["case_updates"] == len(updates)
    with reference.sessions() as s:
        report = reference.audit.verify(s.connection())
    assert report.ok and report.entries == len(result.cases) + len(updates), report.failures
    for s in stores:
        s.close()
