"""The SQL case store: the ``CaseSink`` the Kafka workers and ``replay --persist`` write to.

``apply`` is one transaction: open-or-attach cases, store decision records and transcript messages, append the
audit entries of the automated decisions. It is idempotent under redelivery (every write is keyed: a case
update by (conversation, event), a reason by (case, kind, id, event), a record or message by (conversation,
event)) and safe with several workers writing to PostgreSQL at once (case rows are locked in conversation
order, the audit chain is serialised last).

Transcript policy: decisions carry ids, not text, so ``apply`` also takes the batch's events. Messages are
stored only for conversations that have (or just got) a live case. For context before a case opens, the
store keeps, per process, the last ``context_messages`` events of up to ``context_conversations`` recent
conversations in memory (LRU); when a conversation gets a case, that context is written with it. Nothing is
stored for conversations that never get a case.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Engine, Executable, Table, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from audit.chain import canonical, sha256_hex
from audit.keys import Pseudonymizer, load_pseudonym_key, load_signing_key
from audit.log import PendingEntry, SqlAuditLog
from pipeline.contract import Event
from pipeline.decision import CaseUpdate, Decision, case_id_for
from pipeline.settings import Settings
from review.db import ensure_schema, make_engine, writer
from review.models import (
    Base,
    CaseReasonRow,
    CaseRow,
    CaseSubjectRow,
    CaseUpdateRow,
    DecisionRecordRow,
    MessageRow,
)
from review.policy import REOPENABLE, CaseStatus, band_rank, sla_targets

Clock = Callable[[], datetime]
RISK_EPSILON = 1e-9
CHUNK = 500  # rows per multi-row statement


def utc_now() -> datetime:
    return datetime.now(UTC)


def insert_ignore(dialect: str, model: type[Base], *returning: Any) -> Executable:
    """INSERT ... ON CONFLICT DO NOTHING [RETURNING ...] for PostgreSQL and SQLite, on the Core table: executed
    with a list of rows it is one cached statement sent as batched multi-row INSERTs ("insertmanyvalues")."""
    builder = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = builder(cast(Table, model.__table__)).on_conflict_do_nothing()
    return stmt.returning(*(cast(Table, model.__table__).c[c.key] for c in returning)) if returning else stmt


# A message kept for context (the fields of a ``MessageRow``): a plain tuple of strings, numbers, None and a
# datetime. It costs about 0.4 KB where the parsed event costs about 3 KB, and the cyclic collector stops
# tracking it after one pass. With up to ``context_conversations`` x ``context_messages`` of them alive, kept
# events (a dozen tracked objects each) made every middle-generation collection walk them, and full ones
# eventually walk millions.
ContextMessage = tuple[str, str, datetime, str, str, str, str | None, str | None, int | None, str | None]


def context_message(event: Event) -> ContextMessage:
    target = event.target
    return (event.conversation_id, event.event_id, event.ts, event.type.value, event.actor.user_id,
            event.actor.age_band.value, target.user_id if target is not None else None, event.text, event.amount,
            event.currency)


class TranscriptContext:
    """Bounded in-memory recent messages per conversation (see the module docstring)."""

    def __init__(self, messages: int, conversations: int) -> None:
        self.messages = messages
        self.conversations = conversations
        self._recent: OrderedDict[str, deque[ContextMessage]] = OrderedDict()

    def remember(self, messages: Iterable[ContextMessage]) -> None:
        if self.messages <= 0:
            return
        for message in messages:
            conv = message[0]
            recent = self._recent.get(conv)
            if recent is None:
                recent = self._recent[conv] = deque(maxlen=self.messages)
            else:
                self._recent.move_to_end(conv)
            recent.append(message)
        while len(self._recent) > self.conversations:
            self._recent.popitem(last=False)

    def recent(self, conversation_id: str) -> list[ContextMessage]:
        return list(self._recent.get(conversation_id, ()))


def _sla_due(started: datetime, priority: int) -> tuple[datetime, datetime]:
    first, decision = sla_targets(priority)
    return started + first, started + decision


def _versions(decision: Decision) -> dict[str, Any]:
    rules = sorted({f"{r.id}@{r.version}" for r in (*decision.reasons, *decision.shadow_reasons) if r.kind == "rule"})
    ages = sorted({f"{r.id}@{r.version}" for r in decision.reasons if r.kind == "age"})
    models = [f"{m.get('id')}@{m.get('version')}#{str(m.get('sha256', ''))[:16]}" for m in decision.models]
    if decision.case is not None:
        ages = sorted({*ages, *(f"{r.id}@{r.version}" for r in decision.case.reasons if r.kind == "age")})
    return {"rules": rules, "models": models, "age_policy": ages}


def _parse_ts(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class SqlCaseStore:
    """Implements ``pipeline.cases.CaseSink``; also the session factory and audit log the review services use."""

    accepts_events = True  # replay passes each batch's events to apply(); see pipeline.replay

    def __init__(self, engine: Engine, *, audit: SqlAuditLog, lease_seconds: int, clock: Clock = utc_now,
                 context_messages: int = 20, context_conversations: int = 10_000) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.sessions = sessionmaker(engine, expire_on_commit=False)  # reads
        self.write_sessions = sessionmaker(writer(engine), expire_on_commit=False)
        self.audit = audit
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.context = TranscriptContext(context_messages, context_conversations)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write transaction (committed on success, rolled back on error)."""
        with self.write_sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ CaseSink
    def apply(self, updates: Sequence[CaseUpdate], decisions: Sequence[Decision],
              events: Sequence[Event] = ()) -> int:
        """Write a batch in one transaction; returns how many cases it opened (for the worker's metrics)."""
        messages = [context_message(e) for e in events]
        self.context.remember(messages)
        if not updates and not decisions and not events:
            return 0
        now = self.clock()
        by_key = {(d.conversation_id, d.event_id): d for d in decisions}
        with self.transaction() as session:
            audit: list[PendingEntry] = []
            fresh = self._claim_updates(session, updates, now)
            if fresh:
                self._apply_updates(session, fresh, by_key, now, audit)
            updated = {u.conversation_id for u in updates}
            # One query for the batch: which of its conversations have a live case (opened above included).
            live = self._live_conversations(session, updated | {d.conversation_id for d in decisions}
                                            | {e.conversation_id for e in events})
            decision_entries = self._store_records(session, decisions, live)
            self._store_messages(session, messages, updated, live)
            written = self.audit.append(session.connection(), [*audit, *(p for _, p in decision_entries)])
            seqs = [{"c": conv, "e": event_id, "seq": entry.seq}
                    for ((conv, event_id), _), entry in zip(decision_entries, written[len(audit):], strict=True)]
            if seqs:
                records = cast(Table, DecisionRecordRow.__table__)  # Core executemany: one round trip
                session.execute(update(records).where(records.c.conversation_id == bindparam("c"),
                                                      records.c.event_id == bindparam("e"))
                                .values(audit_seq=bindparam("seq")), seqs)
        return sum(1 for entry in audit if entry.action == "case.opened")

    def _claim_updates(self, session: Session, updates: Sequence[CaseUpdate], now: datetime) -> list[CaseUpdate]:
        """Insert the updates' idempotency keys; return the updates not applied before, in arrival order. A key a
        concurrent worker inserted first is skipped here (PostgreSQL waits for that worker's commit)."""
        keys = {(u.conversation_id, u.event_id): u for u in updates}
        if not keys:
            return []
        # Sorted: every writer takes these unique-key locks in the same order, so overlapping batches from two
        # workers (after a rebalance) wait for each other instead of deadlocking.
        rows = [{"conversation_id": c, "event_id": e, "case_id": None, "applied_at": now} for c, e in sorted(keys)]
        stmt = insert_ignore(self.dialect, CaseUpdateRow, CaseUpdateRow.conversation_id, CaseUpdateRow.event_id)
        claimed = {(r[0], r[1]) for r in session.execute(stmt, rows)}
        return [u for key, u in keys.items() if key in claimed]

    def _lock_live(self, session: Session, convs: Sequence[str]) -> dict[str, CaseRow]:
        """The live case of each conversation, locked in conversation order (the lock order every writer uses,
        so two workers never wait on each other in a cycle)."""
        found: dict[str, CaseRow] = {}
        for start in range(0, len(convs), CHUNK):
            rows = session.scalars(
                select(CaseRow).where(CaseRow.conversation_id.in_(convs[start:start + CHUNK]),
                                      CaseRow.status != CaseStatus.CLOSED)
                .order_by(CaseRow.conversation_id).with_for_update().execution_options(populate_existing=True))
            found.update((r.conversation_id, r) for r in rows)
        return found

    def _apply_updates(self, session: Session, fresh: Sequence[CaseUpdate],
                       by_key: Mapping[tuple[str, str], Decision], now: datetime, audit: list[PendingEntry]) -> None:
        grouped: dict[str, list[CaseUpdate]] = {}
        for item in fresh:
            grouped.setdefault(item.conversation_id, []).append(item)
        convs = sorted(grouped)
        cases = self._lock_live(session, convs)
        missing = [conv for conv in convs if conv not in cases]
        if missing:
            rows = [self._new_case(grouped[conv][0], now) for conv in missing]
            opened = {r[0] for r in session.execute(insert_ignore(self.dialect, CaseRow, CaseRow.id), rows)}
            cases = self._lock_live(session, convs)  # ours, or ones a concurrent worker just opened
            for conv in missing:
                if conv not in cases:
                    raise RuntimeError(f"case for {conv} neither inserted nor found")  # a bug, not bad input
                case, first = cases[conv], grouped[conv][0]
                if case.id in opened:
                    audit.append(PendingEntry("case.opened", f"case:{case.id}", payload={
                        "case_id": case.id, "opened_by_event_id": first.event_id, "priority": first.priority}))
        subjects: list[dict[str, Any]] = []
        reasons: list[dict[str, Any]] = []
        placed: list[dict[str, Any]] = []
        for conv in convs:
            case = cases[conv]
            for item in grouped[conv]:
                self._attach(case, item, by_key.get((conv, item.event_id)), now, audit)
                subjects.extend({"case_id": case.id, "subject": s} for s in item.subjects)
                reasons.extend({"case_id": case.id, "kind": r.kind, "reason_id": r.id, "version": r.version,
                                "event_id": r.event_id, "detail": r.detail} for r in item.reasons)
                placed.append({"c": conv, "e": item.event_id, "cid": case.id})
        for model, rows in ((CaseSubjectRow, subjects), (CaseReasonRow, reasons)):
            if rows:  # multi-row INSERTs in list order: the ids keep arrival order
                session.execute(insert_ignore(self.dialect, model), rows)
        keys = cast(Table, CaseUpdateRow.__table__)
        session.execute(update(keys).where(keys.c.conversation_id == bindparam("c"), keys.c.event_id == bindparam("e"))
                        .values(case_id=bindparam("cid")), placed)
        session.flush()

    @staticmethod
    def _new_case(item: CaseUpdate, now: datetime) -> dict[str, Any]:
        first_due, decision_due = _sla_due(now, item.priority)
        return {
            "id": case_id_for(item.conversation_id, item.event_id), "conversation_id": item.conversation_id,
            "opened_by_event_id": item.event_id, "opened_at": item.ts, "created_at": now, "queued_at": now,
            "sla_started_at": now, "risk": 0.0, "priority": item.priority, "priority_score": 0.0, "stages": [],
            "stage_marks": {}, "youngest_band": item.youngest_band, "band_rank": band_rank(item.youngest_band),
            "escalated": False, "status": CaseStatus.OPEN.value, "first_review_due_at": first_due,
            "decision_due_at": decision_due, "reopen_count": 0,
        }

    def _attach(self, case: CaseRow, item: CaseUpdate, decision: Decision | None, now: datetime,
                audit: list[PendingEntry]) -> None:
        """Merge like ``ReportCase.attach``: risk = max, priority = most urgent, stages/subjects/reasons in
        arrival order without repeats. Then reopen a dismissed/warned case if risk rose or a stage is new."""
        case.risk = max(case.risk, item.risk)
        case.priority_score = max(case.priority_score, item.priority_score)
        if item.priority < case.priority:
            case.priority = item.priority
            first_due, decision_due = _sla_due(case.sla_started_at, item.priority)
            case.first_review_due_at = min(case.first_review_due_at, first_due)
            case.decision_due_at = min(case.decision_due_at, decision_due)
        case.escalated = case.escalated or item.escalate
        if band_rank(item.youngest_band) < case.band_rank:
            case.youngest_band, case.band_rank = item.youngest_band, band_rank(item.youngest_band)
        new_stages = [s for s in item.stages if s not in case.stages]
        if new_stages:
            case.stages = [*case.stages, *new_stages]
        if decision is not None and decision.conversation_id == case.conversation_id:
            marks = dict(case.stage_marks)
            for stage, mark in decision.state.stage_marks.items():
                if stage not in marks or mark.ts < marks[stage][0]:
                    marks[stage] = [mark.ts, mark.event_id]
            if marks != case.stage_marks:
                case.stage_marks = marks
        if case.status == CaseStatus.DECIDED and case.outcome in REOPENABLE:
            risk_rose = item.risk > (case.decided_risk or 0.0) + RISK_EPSILON
            stage_new = bool(set(item.stages) - set(case.decided_stages or []))
            if risk_rose or stage_new:
                previous, fresh = case.outcome, sorted(set(item.stages) - set(case.decided_stages or []))
                case.status, case.outcome = CaseStatus.OPEN.value, None
                case.queued_at = case.sla_started_at = now
                case.first_review_due_at, case.decision_due_at = _sla_due(now, case.priority)
                case.first_reviewed_at = case.decided_at = None
                case.reopen_count += 1
                audit.append(PendingEntry("case.reopened", f"case:{case.id}", payload={
                    "case_id": case.id, "previous_outcome": previous, "by_event_id": item.event_id,
                    "risk": round(item.risk, 4), "new_stages": fresh}))

    def _store_records(self, session: Session, decisions: Sequence[Decision],
                       live: set[str]) -> list[tuple[tuple[str, str], PendingEntry]]:
        """Decision records of every decision that produced a case update or action (audited), and of
        decisions with reasons in conversations that have a live case (context evidence, not audited)."""
        acted = [d for d in decisions if d.case is not None or d.swept_cases or d.actions]
        with_reasons = [d for d in decisions if d.reasons and not (d.case is not None or d.swept_cases or d.actions)]
        context = [d for d in with_reasons if d.conversation_id in live]
        if not acted and not context:
            return []
        records = {(d.conversation_id, d.event_id): (d, canonical(d.to_record())) for d in (*acted, *context)}
        rows = [{"conversation_id": conv, "event_id": event_id, "ts": _parse_ts(d.ts), "record": text.decode(),
                 "audit_seq": None} for (conv, event_id), (d, text) in sorted(records.items(), key=lambda kv: kv[0])]
        stmt = insert_ignore(self.dialect, DecisionRecordRow, DecisionRecordRow.conversation_id,
                             DecisionRecordRow.event_id)
        inserted = {(r[0], r[1]) for r in session.execute(stmt, rows)}
        case_ids = self._case_ids(session, acted)
        entries: list[tuple[tuple[str, str], PendingEntry]] = []
        for decision in acted:  # in decision order, so the chain reads in the order things happened
            key = (decision.conversation_id, decision.event_id)
            if key not in inserted:
                continue  # recorded and audited before (redelivery)
            digest = sha256_hex(records[key][1])  # the canonical bytes just stored: hashed once, not re-serialised
            cases = case_ids.get(key, [])
            subject = f"case:{cases[0]}" if cases else "case:none"
            entries.append(((decision.conversation_id, decision.event_id),
                            PendingEntry("decision.automated", subject, payload_sha256=digest,
                                         versions=_versions(decision))))
            inserted.discard(key)  # the same decision twice in one batch is audited once
        return entries

    def _case_ids(self, session: Session, decisions: Sequence[Decision]) -> dict[tuple[str, str], list[str]]:
        """The cases each decision's updates went into (own conversation first, then swept ones)."""
        wanted: dict[tuple[str, str], tuple[str, str]] = {}
        for d in decisions:
            for item in ([d.case] if d.case is not None else []) + list(d.swept_cases):
                wanted[(item.conversation_id, item.event_id)] = (d.conversation_id, d.event_id)
        found: dict[tuple[str, str], str] = {}
        convs = {conv for conv, _ in wanted}
        if convs:
            rows = session.execute(select(CaseUpdateRow.conversation_id, CaseUpdateRow.event_id,
                                          CaseUpdateRow.case_id)
                                   .where(CaseUpdateRow.conversation_id.in_(convs),
                                          CaseUpdateRow.event_id.in_({e for _, e in wanted})))
            found = {(r.conversation_id, r.event_id): r.case_id for r in rows if r.case_id is not None}
        out: dict[tuple[str, str], list[str]] = {}
        for update_key, decision_key in wanted.items():
            if update_key in found:
                out.setdefault(decision_key, []).append(found[update_key])
        return out

    def case_risks(self, conversation_ids: Iterable[str]) -> dict[str, float]:
        """The highest risk any case of each conversation has recorded (``pipeline.cases.CaseSink``)."""
        convs = sorted(set(conversation_ids))
        found: dict[str, float] = {}
        with self.transaction() as session:
            for start in range(0, len(convs), CHUNK):
                rows = session.execute(
                    select(CaseRow.conversation_id, func.max(CaseRow.risk))
                    .where(CaseRow.conversation_id.in_(convs[start:start + CHUNK]))
                    .group_by(CaseRow.conversation_id))
                found.update((conv, float(risk)) for conv, risk in rows)
        return found

    def _live_conversations(self, session: Session, convs: set[str]) -> set[str]:
        """Which of ``convs`` have a case that is not closed (in chunks, like every list-sized query here)."""
        ordered = sorted(convs)
        live: set[str] = set()
        for start in range(0, len(ordered), CHUNK):
            live.update(session.scalars(
                select(CaseRow.conversation_id).where(CaseRow.conversation_id.in_(ordered[start:start + CHUNK]),
                                                      CaseRow.status != CaseStatus.CLOSED)))
        return live

    def _store_messages(self, session: Session, messages: Sequence[ContextMessage], updated: set[str],
                        live: set[str]) -> None:
        candidates: dict[tuple[str, str], ContextMessage] = {}
        for conv in sorted(updated):
            for message in self.context.recent(conv):
                candidates[(conv, message[1])] = message
        for message in messages:
            candidates.setdefault((message[0], message[1]), message)
        rows = [_message_row(m) for (conv, _), m in sorted(candidates.items(), key=lambda kv: kv[0]) if conv in live]
        if rows:
            session.execute(insert_ignore(self.dialect, MessageRow), rows)

    # ------------------------------------------------------------------ report
    def cases_report(self) -> list[dict[str, Any]]:
        """Every case in the replay report's ``cases`` shape, sorted like ``MemoryCaseSink.report()``."""
        with self.sessions() as session:
            cases = session.scalars(select(CaseRow).order_by(CaseRow.opened_at, CaseRow.id)).all()
            reasons: dict[str, list[dict[str, Any]]] = {}
            for r in session.scalars(select(CaseReasonRow).order_by(CaseReasonRow.id)):
                reasons.setdefault(r.case_id, []).append({"kind": r.kind, "id": r.reason_id, "version": r.version,
                                                          "event_id": r.event_id, "detail": r.detail})
            subjects: dict[str, list[str]] = {}
            for s in session.scalars(select(CaseSubjectRow).order_by(CaseSubjectRow.id)):
                subjects.setdefault(s.case_id, []).append(s.subject)
            return [{
                "case_id": c.id, "conversation_id": c.conversation_id, "opened_by_event_id": c.opened_by_event_id,
                "opened_at": c.opened_at, "risk": round(c.risk, 4), "priority": c.priority, "stages": list(c.stages),
                "subjects": subjects.get(c.id, []), "reasons": reasons.get(c.id, []),
            } for c in cases]


def _message_row(message: ContextMessage) -> dict[str, Any]:
    conv, event_id, ts, event_type, sender, band, target, text, amount, currency = message
    return {
        "conversation_id": conv, "event_id": event_id, "ts": ts.astimezone(UTC), "event_type": event_type,
        "sender_id": sender, "sender_band": band, "target_id": target, "text": text,
        "text_sha256": sha256_hex(text.encode()) if text is not None else None, "amount": amount,
        "currency": currency, "purged_at": None,
    }


def open_case_store(settings: Settings, *, clock: Clock = utc_now) -> SqlCaseStore:
    """Engine for ``settings.effective_database_url()``, schema migrated to head if needed, audit keys loaded."""
    engine = make_engine(settings)
    ensure_schema(engine)
    audit = SqlAuditLog(signing_key=load_signing_key(settings),
                        pseudonyms=Pseudonymizer(load_pseudonym_key(settings)),
                        checkpoint_every=settings.audit_checkpoint_every, clock=clock)
    return SqlCaseStore(engine, audit=audit, lease_seconds=settings.lease_seconds, clock=clock)


__all__ = ["SqlCaseStore", "TranscriptContext", "open_case_store", "utc_now"]
