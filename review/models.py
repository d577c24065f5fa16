"""Case store tables (SQLAlchemy 2). The schema is created and evolved only by review/migrations.

- ``cases``: one row per case; at most one non-closed case per conversation (partial unique index).
- ``case_updates``: which CaseUpdate (conversation, event) went into which case; the idempotency key that
  makes a redelivered update a no-op.
- ``case_reasons`` / ``case_subjects``: merged in arrival order, unique per case.
- ``decision_records``: ``Decision.to_record()`` as canonical JSON, the evidence the API shows.
- ``messages``: the transcript of conversations that have a case (text may later be purged; its hash stays).
- ``case_actions``: the human decisions, claims and escalations, in order.
- ``api_tokens``: bearer tokens, stored as SHA-256 of the token only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite has no time zones: stored naive UTC, so string
    comparison in SQL still orders correctly)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class CaseRow(Base):
    __tablename__ = "cases"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(200), index=True)
    opened_by_event_id: Mapped[str] = mapped_column(String(128))
    opened_at: Mapped[str] = mapped_column(String(40))  # the opening event's ts, as the report shows it
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)  # when the store first saw the case
    queued_at: Mapped[datetime] = mapped_column(UtcDateTime)  # waiting time counts from here
    sla_started_at: Mapped[datetime] = mapped_column(UtcDateTime)  # reset when a case reopens
    risk: Mapped[float] = mapped_column(Float)
    priority: Mapped[int] = mapped_column(Integer)
    priority_score: Mapped[float] = mapped_column(Float)
    stages: Mapped[list[str]] = mapped_column(JSON)
    stage_marks: Mapped[dict[str, Any]] = mapped_column(JSON)  # stage -> [ts, event_id], first sighting
    youngest_band: Mapped[str] = mapped_column(String(16))
    band_rank: Mapped[int] = mapped_column(Integer)  # 0 = youngest, for queue order
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str | None] = mapped_column(String(32))
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    first_reviewed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    first_review_due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    decision_due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    decided_risk: Mapped[float | None] = mapped_column(Float)
    decided_stages: Mapped[list[str] | None] = mapped_column(JSON)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        Index("uq_cases_one_live_per_conversation", "conversation_id", unique=True,
              postgresql_where=text("status <> 'closed'"), sqlite_where=text("status <> 'closed'")),
        Index("ix_cases_queue", "status", "escalated", "priority", "risk", "band_rank", "queued_at"),
    )


class CaseUpdateRow(Base):
    __tablename__ = "case_updates"

    conversation_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    case_id: Mapped[str | None] = mapped_column(String(40))
    applied_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CaseReasonRow(Base):
    __tablename__ = "case_reasons"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    reason_id: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(128))
    detail: Mapped[str] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("case_id", "kind", "reason_id", "event_id", name="uq_case_reasons_key"),)


class CaseSubjectRow(Base):
    __tablename__ = "case_subjects"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    subject: Mapped[str] = mapped_column(String(128), index=True)

    __table_args__ = (UniqueConstraint("case_id", "subject", name="uq_case_subjects_key"),)


class DecisionRecordRow(Base):
    __tablename__ = "decision_records"

    conversation_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime)
    record: Mapped[str] = mapped_column(Text)  # canonical JSON of Decision.to_record()
    audit_seq: Mapped[int | None] = mapped_column(BigInteger)  # the entry that commits to it (automated ones)

    __table_args__ = (Index("ix_decision_records_conv_ts", "conversation_id", "ts"),)


class MessageRow(Base):
    __tablename__ = "messages"

    conversation_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime)
    event_type: Mapped[str] = mapped_column(String(32))
    sender_id: Mapped[str] = mapped_column(String(128))
    sender_band: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str | None] = mapped_column(String(128))
    text: Mapped[str | None] = mapped_column(Text)  # None once purged
    text_sha256: Mapped[str | None] = mapped_column(String(64))
    amount: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(32))
    purged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_messages_conv_ts", "conversation_id", "ts"),)


class CaseActionRow(Base):
    __tablename__ = "case_actions"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    actor: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))
    reason_code: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    waited_seconds: Mapped[float | None] = mapped_column(Float)  # since the case (re)entered review: time to action
    audit_seq: Mapped[int | None] = mapped_column(BigInteger)


class ApiTokenRow(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
