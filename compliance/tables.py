"""Retention tables (SQLAlchemy Core, like audit/tables.py). Created by the review migration history
(review/migrations/versions/0002_retention.py); compliance owns them.

- ``retention_runs``: one row per purge that changed something: the canonical JSON record its audit entry
  (``retention.purged``) commits to, and that entry's sequence number.
- ``retention_tombstones``: one row per purged item: what it was (message text or moderator note), where it was,
  and the SHA-256 of the purged text. No foreign keys, so the review tables can be truncated or rebuilt freely.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text, UniqueConstraint

metadata = MetaData()

retention_runs = Table(
    "retention_runs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("as_of", String(40), nullable=False),
    Column("record", Text, nullable=False),
    Column("audit_seq", BigInteger, nullable=True),
)

retention_tombstones = Table(
    "retention_tombstones",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("run_id", String(40), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("case_id", String(40), nullable=True),
    Column("conversation_id", String(200), nullable=False),
    Column("ref", String(128), nullable=False),
    Column("sha256", String(64), nullable=False),
    UniqueConstraint("kind", "conversation_id", "ref", name="uq_retention_tombstones_item"),
)

TABLES = ("retention_runs", "retention_tombstones")

__all__ = ["TABLES", "metadata", "retention_runs", "retention_tombstones"]
