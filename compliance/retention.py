"""Retention: purge message text and moderator notes past policy, leave tombstones, audit the purge.

Policy (days after a case's final decision, per outcome, from settings): dismissed 90, warned / restricted /
banned 365, reported_ncmec 365 and never before the NCMEC preservation expiry (one year after the report).
Open and claimed cases are never purged.

Unit of purge: a conversation. Messages belong to conversations, not cases (a conversation can have a closed
case and a later one), so a conversation's text is purged only when *every* case on it is decided and past its
own retention. Then every stored message text of the conversation and every moderator note on its cases is set
to NULL; what stays is a tombstone per item (kind, where, SHA-256 of the purged text) and, for messages, the
row itself with ``text_sha256`` and ``purged_at`` (the case store's own tombstone columns).

What the audit chain sees: nothing it committed to changes. Entries hold hashes of decision records and
payloads, never message text or notes, and decision records contain no text (rule ids, spans, scores), so
``lifeguard audit verify`` passes after a purge. The purge adds one ``retention.purged`` entry whose payload is
the run record (as-of time, policy, counts, SHA-256 over all tombstones); the record is kept in
``retention_runs`` so anyone can recompute both hashes (``lifeguard retention verify``). A run that finds
nothing to purge writes nothing, so applying twice is a no-op.

Known limits: the purge is one transaction (fine for tens of thousands of messages per run; run it daily);
tombstones are plain SHA-256 as the case store already keeps, so a very short text could be guessed from its
hash by trying candidates.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from audit.chain import canonical, payload_hash, sha256_hex
from audit.log import PendingEntry
from audit.tables import audit_entries
from compliance.ncmec import preservation_expiry
from compliance.tables import retention_runs, retention_tombstones
from pipeline.settings import Settings
from review.models import CaseActionRow, CaseRow, MessageRow
from review.policy import Action, CaseStatus
from review.store import SqlCaseStore

MESSAGE_TEXT = "message_text"
ACTION_NOTE = "action_note"
CHUNK = 500


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    days: Mapping[str, int]  # outcome -> days after the decision

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        return cls({
            Action.DISMISSED.value: settings.retention_dismissed_days,
            Action.WARNED.value: settings.retention_warned_days,
            Action.RESTRICTED.value: settings.retention_restricted_days,
            Action.BANNED.value: settings.retention_banned_days,
            Action.REPORTED_NCMEC.value: max(settings.retention_reported_days, 365),
        })

    def expires_at(self, outcome: str | None, decided_at: datetime | None) -> datetime | None:
        """When a decided case's text may go; None = never (not decided, or an outcome without a policy)."""
        if outcome is None or decided_at is None or outcome not in self.days:
            return None
        expiry = decided_at + timedelta(days=self.days[outcome])
        if outcome == Action.REPORTED_NCMEC.value:
            expiry = max(expiry, preservation_expiry(decided_at))
        return expiry

    def to_json(self) -> dict[str, int]:
        return dict(sorted(self.days.items()))


@dataclass(frozen=True, slots=True)
class Tombstone:
    kind: str
    case_id: str | None
    conversation_id: str
    ref: str
    sha256: str

    def line(self) -> bytes:
        return f"{self.kind}\x1f{self.conversation_id}\x1f{self.ref}\x1f{self.sha256}\n".encode()


@dataclass(frozen=True, slots=True)
class RetentionResult:
    conversations: int
    cases: int
    messages: int
    notes: int
    tombstones_sha256: str | None
    run_id: str | None
    audit_seq: int | None


def tombstones_digest(tombstones: list[Tombstone]) -> str:
    """SHA-256 over every tombstone line in sorted order: one value that commits to the whole purge."""
    digest = hashlib.sha256()
    for line in sorted(t.line() for t in tombstones):
        digest.update(line)
    return digest.hexdigest()


def _eligible(session: Session, policy: RetentionPolicy, now: datetime, *, lock: bool) -> dict[str, list[str]]:
    """Conversation -> its case ids, for conversations whose every case is decided and past retention."""
    stmt = select(CaseRow.id, CaseRow.conversation_id, CaseRow.status, CaseRow.outcome, CaseRow.decided_at)
    by_conv: dict[str, list[tuple[str, bool]]] = {}
    for case_id, conv, status, outcome, decided_at in session.execute(stmt.order_by(CaseRow.conversation_id,
                                                                                    CaseRow.id)):
        settled = status in (CaseStatus.DECIDED.value, CaseStatus.CLOSED.value)
        expiry = policy.expires_at(outcome, decided_at) if settled else None
        by_conv.setdefault(conv, []).append((case_id, expiry is not None and expiry <= now))
    eligible = {conv: [c for c, _ in cases] for conv, cases in by_conv.items() if all(ok for _, ok in cases)}
    if lock and eligible and session.get_bind().dialect.name == "postgresql":
        # Block a concurrent reopen of these cases until the purge commits, then re-check under the lock.
        convs = sorted(eligible)
        for start in range(0, len(convs), CHUNK):
            session.execute(select(CaseRow.id).where(CaseRow.conversation_id.in_(convs[start:start + CHUNK]))
                            .order_by(CaseRow.conversation_id, CaseRow.id).with_for_update()).all()
        return _eligible(session, policy, now, lock=False)
    return eligible


def _collect(session: Session, eligible: Mapping[str, list[str]]) -> list[Tombstone]:
    out: list[Tombstone] = []
    convs = sorted(eligible)
    case_conv = {case_id: conv for conv, ids in eligible.items() for case_id in ids}
    for start in range(0, len(convs), CHUNK):
        part = convs[start:start + CHUNK]
        for conv, event_id, text in session.execute(
                select(MessageRow.conversation_id, MessageRow.event_id, MessageRow.text)
                .where(MessageRow.conversation_id.in_(part), MessageRow.text.is_not(None))
                .order_by(MessageRow.conversation_id, MessageRow.event_id)):
            if text is not None:
                out.append(Tombstone(MESSAGE_TEXT, None, conv, event_id, sha256_hex(text.encode())))
    case_ids = sorted(case_conv)
    for start in range(0, len(case_ids), CHUNK):
        for action_id, case_id, note in session.execute(
                select(CaseActionRow.id, CaseActionRow.case_id, CaseActionRow.note)
                .where(CaseActionRow.case_id.in_(case_ids[start:start + CHUNK]), CaseActionRow.note.is_not(None))
                .order_by(CaseActionRow.id)):
            if note is not None:
                out.append(Tombstone(ACTION_NOTE, case_id, case_conv[case_id], str(action_id),
                                     sha256_hex(note.encode())))
    return out


def _purge(session: Session, tombstones: list[Tombstone], now: datetime) -> None:
    messages = MessageRow.metadata.tables["messages"]
    rows = [{"c": t.conversation_id, "e": t.ref, "h": t.sha256} for t in tombstones if t.kind == MESSAGE_TEXT]
    stmt = (update(messages).where(messages.c.conversation_id == bindparam("c"), messages.c.event_id == bindparam("e"))
            .values(text=None, purged_at=now, text_sha256=bindparam("h")))
    for start in range(0, len(rows), CHUNK):
        session.execute(stmt, rows[start:start + CHUNK])
    notes = [int(t.ref) for t in tombstones if t.kind == ACTION_NOTE]
    for start in range(0, len(notes), CHUNK):
        session.execute(update(CaseActionRow).where(CaseActionRow.id.in_(notes[start:start + CHUNK]))
                        .values(note=None))


def apply_retention(*, store: SqlCaseStore, policy: RetentionPolicy, now: datetime,
                    dry_run: bool = False) -> RetentionResult:
    with store.transaction() as session:
        eligible = _eligible(session, policy, now, lock=not dry_run)
        tombstones = _collect(session, eligible)
        touched = {t.conversation_id for t in tombstones}
        cases = sum(len(ids) for conv, ids in eligible.items() if conv in touched)
        messages = sum(1 for t in tombstones if t.kind == MESSAGE_TEXT)
        notes = len(tombstones) - messages
        if dry_run or not tombstones:
            return RetentionResult(len(touched), cases, messages, notes, None, None, None)
        digest = tombstones_digest(tombstones)
        counts = {"conversations": len(touched), "cases": cases, "message_texts": messages, "action_notes": notes}
        record: dict[str, Any] = {"as_of": now.isoformat(), "policy_days": policy.to_json(), "counts": counts,
                                  "tombstones_sha256": digest}
        run_id = f"ret-{payload_hash(record)[:20]}"
        record["run_id"] = run_id
        _purge(session, tombstones, now)
        session.execute(insert(retention_runs).values(id=run_id, as_of=now.isoformat(),
                                                      record=canonical(record).decode(), audit_seq=None))
        rows = [{"run_id": run_id, "kind": t.kind, "case_id": t.case_id, "conversation_id": t.conversation_id,
                 "ref": t.ref, "sha256": t.sha256} for t in tombstones]
        for start in range(0, len(rows), CHUNK):
            session.execute(insert(retention_tombstones), rows[start:start + CHUNK])
        entry = store.audit.append(session.connection(), [PendingEntry(
            "retention.purged", f"retention:{run_id}", payload=record,
            versions={**counts, "tombstones_sha256": digest})])[0]
        session.execute(update(retention_runs).where(retention_runs.c.id == run_id).values(audit_seq=entry.seq))
    return RetentionResult(len(touched), cases, messages, notes, digest, run_id, entry.seq)


def verify_retention(store: SqlCaseStore) -> tuple[int, list[str]]:
    """(runs checked, problems). See ``lifeguard retention verify``."""
    problems: list[str] = []
    with store.sessions() as session:
        runs = session.execute(select(retention_runs).order_by(retention_runs.c.as_of, retention_runs.c.id)).all()
        for run in runs:
            where = f"retention run {run.id}"
            entry_text = session.scalar(select(audit_entries.c.entry).where(audit_entries.c.seq == run.audit_seq))
            if entry_text is None:
                problems.append(f"{where}: its audit entry (seq {run.audit_seq}) is missing")
                continue
            entry = json.loads(entry_text)
            if entry.get("action") != "retention.purged" or entry.get("payload_hash") != sha256_hex(
                    run.record.encode()):
                problems.append(f"{where}: the stored run record is not the one audit entry seq {run.audit_seq} "
                                "committed to")
            record = json.loads(run.record)
            stones = [Tombstone(r.kind, r.case_id, r.conversation_id, r.ref, r.sha256) for r in session.execute(
                select(retention_tombstones).where(retention_tombstones.c.run_id == run.id))]
            if tombstones_digest(stones) != record.get("tombstones_sha256"):
                problems.append(f"{where}: its tombstones no longer hash to the digest the record states")
            problems.extend(_check_purged(session, where, stones))
    return len(runs), problems


def _check_purged(session: Session, where: str, stones: list[Tombstone]) -> list[str]:
    problems: list[str] = []
    by_conv: dict[str, dict[str, str]] = {}
    for t in stones:
        if t.kind == MESSAGE_TEXT:
            by_conv.setdefault(t.conversation_id, {})[t.ref] = t.sha256
    for conv, refs in sorted(by_conv.items()):
        ids = sorted(refs)
        for start in range(0, len(ids), CHUNK):
            for event_id, text, digest in session.execute(
                    select(MessageRow.event_id, MessageRow.text, MessageRow.text_sha256)
                    .where(MessageRow.conversation_id == conv, MessageRow.event_id.in_(ids[start:start + CHUNK]))):
                if text is not None:
                    problems.append(f"{where}: message {event_id} has text again after its purge")
                elif digest != refs[event_id]:
                    problems.append(f"{where}: message {event_id} lost its tombstone hash")
    notes = [int(t.ref) for t in stones if t.kind == ACTION_NOTE]
    for start in range(0, len(notes), CHUNK):
        for action_id, note in session.execute(select(CaseActionRow.id, CaseActionRow.note)
                                               .where(CaseActionRow.id.in_(notes[start:start + CHUNK]))):
            if note is not None:
                problems.append(f"{where}: the note of case action {action_id} is back after its purge")
    return problems


__all__ = ["RetentionPolicy", "RetentionResult", "Tombstone", "apply_retention", "tombstones_digest",
           "verify_retention"]
