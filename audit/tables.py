"""Audit tables. The schema itself is created by the database's one migration history (review/migrations).

``audit_entries`` keeps each entry's canonical JSON exactly as hashed, with the hash beside it; ``action`` and
``subject`` are copies for queries. In PostgreSQL a trigger refuses UPDATE, DELETE and TRUNCATE on both tables.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, MetaData, String, Table, Text

metadata = MetaData()

audit_entries = Table(
    "audit_entries",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("entry", Text, nullable=False),
    Column("entry_hash", String(64), nullable=False, unique=True),
    Column("action", String(64), nullable=False, index=True),
    Column("subject", String(200), nullable=False, index=True),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("head", String(64), nullable=False),
    Column("time", String(40), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("signature", Text, nullable=False),
)
