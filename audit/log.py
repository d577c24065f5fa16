"""The audit log in the database: append (one linear chain across processes), checkpoints, reads, verify.

Appends run inside the caller's transaction, so an audited change and its entry commit together or not at
all. The chain head is serialised with ``pg_advisory_xact_lock`` in PostgreSQL (held to commit, so two workers
never both extend the same head); SQLite transactions are already serialised (the store begins them
IMMEDIATE). Callers append as the *last* step of a transaction, after their own row locks, so the lock order
is always rows then chain and two writers cannot deadlock on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Connection, Engine, func, insert, select, text

from audit.chain import (
    GENESIS,
    AuditEntry,
    Checkpoint,
    StoredCheckpoint,
    StoredEntry,
    VerifyReport,
    payload_hash,
    verify_chain,
)
from audit.keys import Pseudonymizer
from audit.tables import audit_checkpoints, audit_entries

CHAIN_LOCK_KEY = 0x4C47_4155_4454  # "LGAUDT": the advisory lock that serialises appends
READ_BATCH = 2000


@dataclass(frozen=True, slots=True)
class PendingEntry:
    """What a caller wants recorded. ``actor_id`` is the real identity (None = the pipeline itself); it is
    pseudonymised before it reaches the entry. ``payload`` is hashed, never stored in the entry."""

    action: str
    subject: str
    actor_id: str | None = None
    payload: Any = None
    versions: Mapping[str, Any] = field(default_factory=dict)
    payload_sha256: str | None = None  # instead of ``payload`` when the caller already has its canonical hash

    def digest(self) -> str | None:
        if self.payload_sha256 is not None:
            return self.payload_sha256
        return None if self.payload is None else payload_hash(self.payload)


class SqlAuditLog:
    def __init__(self, *, signing_key: Ed25519PrivateKey, pseudonyms: Pseudonymizer, checkpoint_every: int,
                 clock: Callable[[], datetime]) -> None:
        self.signing_key = signing_key
        self.pseudonyms = pseudonyms
        self.checkpoint_every = checkpoint_every
        self.clock = clock

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.signing_key.public_key()

    def _lock(self, conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CHAIN_LOCK_KEY})

    def head(self, conn: Connection) -> tuple[int, str]:
        row = conn.execute(
            select(audit_entries.c.seq, audit_entries.c.entry_hash).order_by(audit_entries.c.seq.desc()).limit(1)
        ).first()
        return (0, GENESIS) if row is None else (int(row.seq), str(row.entry_hash))

    def append(self, conn: Connection, pending: Sequence[PendingEntry]) -> list[AuditEntry]:
        """Append entries in order at the head of the chain; sign a checkpoint whenever a multiple of
        ``checkpoint_every`` is reached."""
        if not pending:
            return []
        self._lock(conn)
        seq, prev = self.head(conn)
        now = self.clock().isoformat()
        written: list[AuditEntry] = []
        rows: list[dict[str, Any]] = []
        checkpoints: list[Checkpoint] = []
        for item in pending:
            seq += 1
            entry = AuditEntry(
                seq=seq, time=now, actor=self.pseudonyms(item.actor_id), action=item.action,
                subject=item.subject, payload_hash=item.digest(),
                versions=dict(item.versions), prev=prev,
            )
            prev = entry.digest()
            rows.append({"seq": seq, "entry": entry.canonical().decode(), "entry_hash": prev,
                         "action": entry.action, "subject": entry.subject})
            written.append(entry)
            if seq % self.checkpoint_every == 0:
                checkpoints.append(Checkpoint.sign(self.signing_key, seq=seq, head=prev, time=now))
        conn.execute(insert(audit_entries), rows)
        if checkpoints:
            conn.execute(insert(audit_checkpoints), [c.to_json() for c in checkpoints])
        return written

    def checkpoint(self, conn: Connection) -> Checkpoint | None:
        """Sign the current head on demand; None when the log is empty or the head is already signed."""
        self._lock(conn)
        seq, head = self.head(conn)
        if seq == 0:
            return None
        last = conn.execute(select(func.max(audit_checkpoints.c.seq))).scalar()
        if last is not None and int(last) >= seq:
            return None
        cp = Checkpoint.sign(self.signing_key, seq=seq, head=head, time=self.clock().isoformat())
        conn.execute(insert(audit_checkpoints).values(**cp.to_json()))
        return cp

    def checkpoints(self, conn: Connection, *, after_seq: int = 0, limit: int = 100) -> list[Checkpoint]:
        rows = conn.execute(
            select(audit_checkpoints).where(audit_checkpoints.c.seq > after_seq)
            .order_by(audit_checkpoints.c.seq).limit(limit)
        )
        return [_checkpoint(dict(r._mapping)) for r in rows]

    def entries(self, conn: Connection, *, after_seq: int = 0, limit: int = 100) -> list[tuple[str, str]]:
        """(canonical entry JSON, hash) in sequence order."""
        rows = conn.execute(
            select(audit_entries.c.entry, audit_entries.c.entry_hash).where(audit_entries.c.seq > after_seq)
            .order_by(audit_entries.c.seq).limit(limit)
        )
        return [(str(r.entry), str(r.entry_hash)) for r in rows]

    def stored(self, conn: Connection) -> Iterator[StoredEntry | StoredCheckpoint]:
        """Every entry in sequence order, each followed by the checkpoints that sign it."""
        pending = {cp.seq: cp for cp in self.checkpoints(conn, limit=10**9)}
        after = 0
        while True:
            rows = conn.execute(
                select(audit_entries.c.seq, audit_entries.c.entry, audit_entries.c.entry_hash)
                .where(audit_entries.c.seq > after).order_by(audit_entries.c.seq).limit(READ_BATCH)
            ).all()
            if not rows:
                break
            for row in rows:
                seq = int(row.seq)
                yield StoredEntry(f"seq {seq}", seq, str(row.entry), str(row.entry_hash))
                cp = pending.pop(seq, None)
                if cp is not None:
                    yield StoredCheckpoint(f"row seq {seq}", cp)
                after = seq
        for seq, cp in sorted(pending.items()):
            yield StoredCheckpoint(f"row seq {seq}", cp)

    def verify(self, conn: Connection, public_key: Ed25519PublicKey | None = None) -> VerifyReport:
        return verify_chain(self.stored(conn), public_key or self.public_key)


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """One consistent view for a multi-query read (export, verify) while workers keep appending: without it,
    entries appended mid-read could appear after the checkpoint list was taken."""
    level = "REPEATABLE READ" if engine.dialect.name == "postgresql" else "SERIALIZABLE"
    with engine.connect().execution_options(isolation_level=level) as conn, conn.begin():
        yield conn


def _checkpoint(row: Mapping[str, Any]) -> Checkpoint:
    return Checkpoint(int(row["seq"]), str(row["head"]), str(row["time"]), str(row["key_id"]),
                      str(row["signature"]))
