"""What the exports read from the case store, as frozen facts. Only the review tables' public models are used;
nothing here writes.

Timestamps: a case's ``opened_at`` is the time of the event that opened it (data time); a human decision's
``at`` is when the moderator recorded it; an automated restriction's ``at`` is the time of the event whose
decision asked for it (the worker emits the action as it processes that event).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.tables import audit_entries
from compliance.period import Period, parse_stored_ts
from review.models import (
    CaseActionRow,
    CaseReasonRow,
    CaseRow,
    CaseSubjectRow,
    CaseUpdateRow,
    DecisionRecordRow,
    MessageRow,
)
from review.policy import Action
from review.store import SqlCaseStore

DECISIONS = frozenset({Action.DISMISSED, Action.WARNED, Action.RESTRICTED, Action.BANNED, Action.REPORTED_NCMEC})
NOTICE_EVENT = "user_report"
AUTOMATED_RESTRICTION = "restrict_dm"
CHUNK = 500


@dataclass(frozen=True, slots=True)
class ReasonFact:
    kind: str  # rule | model | age
    reason_id: str
    version: str
    event_id: str


@dataclass(frozen=True, slots=True)
class CaseFact:
    case_id: str
    conversation_id: str
    opened_at: datetime
    opened_by_event_id: str
    opened_by_type: str | None  # event type of the opening event; None when the store kept no trace of it
    status: str
    outcome: str | None
    priority: int
    escalated: bool
    stages: tuple[str, ...]
    youngest_band: str
    reopen_count: int
    decided_at: datetime | None
    reasons: tuple[ReasonFact, ...]
    subjects: tuple[str, ...]
    evidence_types: frozenset[str]  # event types of the events its reasons cite

    @property
    def opened_by_notice(self) -> bool:
        """Opened by a user's report (a notice) rather than by the platform's own detection."""
        return self.opened_by_type == NOTICE_EVENT


@dataclass(frozen=True, slots=True)
class ActionFact:
    id: int
    case_id: str
    action: str
    reason_code: str | None
    at: datetime
    waited_seconds: float | None
    audit_seq: int | None


@dataclass(frozen=True, slots=True)
class AutomatedRestriction:
    """The first ``restrict_dm`` the pipeline asked for against one subject within one case."""

    case_id: str
    conversation_id: str
    event_id: str
    at: datetime
    subject: str
    rule_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReopenFact:
    case_id: str
    at: datetime
    seq: int


@dataclass(frozen=True, slots=True)
class MessageFact:
    conversation_id: str
    event_id: str
    ts: datetime
    event_type: str
    sender_id: str
    sender_band: str
    target_id: str | None
    text: str | None
    text_sha256: str | None
    purged: bool
    amount: int | None
    currency: str | None


@contextmanager
def snapshot(store: SqlCaseStore) -> Iterator[Session]:
    """A read session that sees one consistent state of the store (REPEATABLE READ on PostgreSQL, so workers
    writing meanwhile cannot make the chain head, cases and decisions of one export disagree; SQLite read
    transactions are snapshots already)."""
    with store.sessions() as session:
        if store.dialect == "postgresql":
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        yield session


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), CHUNK):
        yield values[start:start + CHUNK]


def event_types(session: Session, event_ids: Iterable[str]) -> dict[str, str]:
    """Event type per event id, from the stored transcript first, else from the decision records."""
    wanted = sorted(set(event_ids))
    found: dict[str, str] = {}
    for part in _chunks(wanted):
        for event_id, kind in session.execute(select(MessageRow.event_id, MessageRow.event_type)
                                              .where(MessageRow.event_id.in_(part))):
            found.setdefault(event_id, kind)
    missing = [e for e in wanted if e not in found]
    for part in _chunks(missing):
        for event_id, record in session.execute(select(DecisionRecordRow.event_id, DecisionRecordRow.record)
                                                .where(DecisionRecordRow.event_id.in_(part))):
            kind = json.loads(record).get("event_type")
            if isinstance(kind, str):
                found.setdefault(event_id, kind)
    return found


def load_cases(session: Session, case_ids: Iterable[str] | None = None) -> dict[str, CaseFact]:
    """Cases by id (all cases when ``case_ids`` is None), with their reasons and subjects."""
    wanted = None if case_ids is None else sorted(set(case_ids))
    rows: list[CaseRow] = []
    if wanted is None:
        rows = list(session.scalars(select(CaseRow).order_by(CaseRow.id)))
    else:
        for part in _chunks(wanted):
            rows.extend(session.scalars(select(CaseRow).where(CaseRow.id.in_(part))))
    ids = [r.id for r in rows]
    reasons: dict[str, list[ReasonFact]] = {}
    subjects: dict[str, list[str]] = {}
    for part in _chunks(ids):
        for r in session.scalars(select(CaseReasonRow).where(CaseReasonRow.case_id.in_(part))
                                 .order_by(CaseReasonRow.id)):
            reasons.setdefault(r.case_id, []).append(ReasonFact(r.kind, r.reason_id, r.version, r.event_id))
        for s in session.scalars(select(CaseSubjectRow).where(CaseSubjectRow.case_id.in_(part))
                                 .order_by(CaseSubjectRow.id)):
            subjects.setdefault(s.case_id, []).append(s.subject)
    cited = {f.event_id for facts in reasons.values() for f in facts} | {r.opened_by_event_id for r in rows}
    types = event_types(session, cited)
    out: dict[str, CaseFact] = {}
    for row in rows:
        facts = tuple(reasons.get(row.id, ()))
        out[row.id] = CaseFact(
            case_id=row.id, conversation_id=row.conversation_id, opened_at=parse_stored_ts(row.opened_at),
            opened_by_event_id=row.opened_by_event_id, opened_by_type=types.get(row.opened_by_event_id),
            status=row.status, outcome=row.outcome, priority=row.priority, escalated=row.escalated,
            stages=tuple(row.stages), youngest_band=row.youngest_band, reopen_count=row.reopen_count,
            decided_at=row.decided_at, reasons=facts, subjects=tuple(subjects.get(row.id, ())),
            evidence_types=frozenset(types[f.event_id] for f in facts if f.event_id in types),
        )
    return out


def _action(row: CaseActionRow) -> ActionFact:
    return ActionFact(row.id, row.case_id, row.action, row.reason_code, row.at, row.waited_seconds, row.audit_seq)


def actions_in(session: Session, period: Period, actions: Iterable[str]) -> list[ActionFact]:
    """Case history rows of the given actions recorded within the period, in time order."""
    rows = session.scalars(select(CaseActionRow)
                           .where(CaseActionRow.action.in_(sorted(set(actions))),
                                  CaseActionRow.at >= period.start, CaseActionRow.at < period.end)
                           .order_by(CaseActionRow.at, CaseActionRow.id))
    return [_action(r) for r in rows]


def case_history(session: Session, case_ids: Iterable[str]) -> dict[str, list[ActionFact]]:
    """Every human decision (not claims or releases) of the given cases, in time order."""
    out: dict[str, list[ActionFact]] = {}
    for part in _chunks(sorted(set(case_ids))):
        for row in session.scalars(select(CaseActionRow)
                                   .where(CaseActionRow.case_id.in_(part),
                                          CaseActionRow.action.in_(sorted(DECISIONS)))
                                   .order_by(CaseActionRow.at, CaseActionRow.id)):
            out.setdefault(row.case_id, []).append(_action(row))
    return out


def automated_restrictions(session: Session, period: Period) -> list[AutomatedRestriction]:
    """First automated ``restrict_dm`` per (case, subject) whose triggering event lies in the period.

    The decision core repeats the request on every later hit in the conversation; the platform enforces it
    once, so only the first request per case and subject is a restriction decision."""
    rows = session.execute(select(DecisionRecordRow.conversation_id, DecisionRecordRow.event_id,
                                  DecisionRecordRow.ts, DecisionRecordRow.record)
                           .where(DecisionRecordRow.record.like(f'%"{AUTOMATED_RESTRICTION}"%'))
                           .order_by(DecisionRecordRow.ts, DecisionRecordRow.conversation_id,
                                     DecisionRecordRow.event_id)).all()
    if not rows:
        return []
    case_of: dict[tuple[str, str], str] = {}
    for conv_part in _chunks(sorted({r.conversation_id for r in rows})):
        for update in session.execute(select(CaseUpdateRow.conversation_id, CaseUpdateRow.event_id,
                                             CaseUpdateRow.case_id)
                                      .where(CaseUpdateRow.conversation_id.in_(conv_part))):
            if update.case_id is not None:
                case_of[(update.conversation_id, update.event_id)] = update.case_id
    senders: dict[tuple[str, str], str] = {
        (m.conversation_id, m.event_id): m.sender_id
        for conv_part in _chunks(sorted({r.conversation_id for r in rows}))
        for m in session.execute(select(MessageRow.conversation_id, MessageRow.event_id, MessageRow.sender_id)
                                 .where(MessageRow.conversation_id.in_(conv_part)))
    }
    seen: set[tuple[str, str]] = set()
    out: list[AutomatedRestriction] = []
    for conv, event_id, ts, text in rows:
        record = json.loads(text)
        if AUTOMATED_RESTRICTION not in record.get("actions", []):
            continue
        case_id = case_of.get((conv, event_id))
        if case_id is None:
            continue
        pair = record.get("pair") or {}
        subject = pair.get("older") or senders.get((conv, event_id))
        if not isinstance(subject, str) or (case_id, subject) in seen:
            continue
        seen.add((case_id, subject))
        if not period.contains(ts):
            continue
        rules = tuple(sorted({r["id"] for r in record.get("reasons", []) if r.get("kind") == "rule"}))
        out.append(AutomatedRestriction(case_id, conv, event_id, ts, subject, rules))
    return out


def reopenings(session: Session, period: Period) -> list[ReopenFact]:
    """Cases the pipeline reopened (new risk after a dismissal or warning), from the audit trail."""
    out: list[ReopenFact] = []
    for seq, subject, entry in session.execute(select(audit_entries.c.seq, audit_entries.c.subject,
                                                      audit_entries.c.entry)
                                               .where(audit_entries.c.action == "case.reopened")
                                               .order_by(audit_entries.c.seq)):
        at = parse_stored_ts(json.loads(entry)["time"])
        if period.contains(at) and subject.startswith("case:"):
            out.append(ReopenFact(subject.removeprefix("case:"), at, int(seq)))
    return out


def messages_of(session: Session, conversation_id: str) -> list[MessageFact]:
    rows = session.scalars(select(MessageRow).where(MessageRow.conversation_id == conversation_id)
                           .order_by(MessageRow.ts, MessageRow.event_id))
    return [MessageFact(m.conversation_id, m.event_id, m.ts, m.event_type, m.sender_id, m.sender_band, m.target_id,
                        m.text, m.text_sha256, m.purged_at is not None, m.amount, m.currency) for m in rows]


__all__ = [
    "DECISIONS",
    "ActionFact",
    "AutomatedRestriction",
    "CaseFact",
    "MessageFact",
    "ReasonFact",
    "ReopenFact",
    "actions_in",
    "automated_restrictions",
    "case_history",
    "event_types",
    "load_cases",
    "messages_of",
    "reopenings",
    "snapshot",
]
