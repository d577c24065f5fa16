"""Cross-checks between the case store and the audit chain, run by ``lifeguard audit verify``.

The chain proves its own entries; this proves the stored automated decision records are the ones the chain
committed to (each record's SHA-256 equals its entry's ``payload_hash``), so a record edited after the fact is
caught even though records live outside the append-only table.
"""

from __future__ import annotations

import json

from sqlalchemy import Connection, select, text
from sqlalchemy.orm import Session

from audit.chain import sha256_hex
from audit.tables import audit_entries
from review.models import DecisionRecordRow

BATCH = 1000
GUARDED = ("audit_entries", "audit_checkpoints")


def missing_guards(conn: Connection) -> list[str]:
    """Audit tables whose append-only triggers are missing or disabled (someone with DDL rights removed them)."""
    if conn.dialect.name == "postgresql":
        rows = conn.execute(text(
            "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' AND t.tgname LIKE '%append_only'")).scalars()
    else:
        rows = conn.execute(text("SELECT tbl_name FROM sqlite_master WHERE type = 'trigger' "
                                 "AND name LIKE '%no_update'")).scalars()
    present = set(rows)
    return [f"table {t} has no active append-only trigger" for t in GUARDED if t not in present]


def check_decision_records(session: Session) -> list[str]:
    failures: list[str] = []
    after: tuple[str, str] = ("", "")
    while True:
        rows = session.execute(
            select(DecisionRecordRow.conversation_id, DecisionRecordRow.event_id, DecisionRecordRow.record,
                   DecisionRecordRow.audit_seq, audit_entries.c.entry)
            .join(audit_entries, audit_entries.c.seq == DecisionRecordRow.audit_seq)
            .where((DecisionRecordRow.conversation_id > after[0])
                   | ((DecisionRecordRow.conversation_id == after[0]) & (DecisionRecordRow.event_id > after[1])))
            .order_by(DecisionRecordRow.conversation_id, DecisionRecordRow.event_id).limit(BATCH)
        ).all()
        if not rows:
            return failures
        for conv, event_id, record, seq, entry in rows:
            expected = json.loads(entry).get("payload_hash")
            if sha256_hex(record.encode()) != expected:
                failures.append(f"decision record for event {event_id} (entry seq {seq}): the stored record does "
                                "not match the hash its audit entry committed to")
            after = (conv, event_id)
