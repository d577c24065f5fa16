"""Pydantic models at the API edge. Inputs forbid unknown fields so a typo is a precise 422, not ignored."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from review.casework import MAX_NOTE
from review.policy import ReasonCode


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorOut(BaseModel):
    detail: str = Field(description="What went wrong and, where it helps, what to do.")


class SlaOut(_Out):
    first_review_due_at: datetime
    decision_due_at: datetime
    first_reviewed_at: datetime | None
    decided_at: datetime | None
    time_to_first_review_seconds: float | None
    time_to_decision_seconds: float | None
    first_review_breached: bool
    decision_breached: bool


class CaseSummaryOut(_Out):
    case_id: str
    conversation_id: str
    status: str = Field(description="open, claimed, decided or closed; a claimed case whose lease lapsed is open")
    outcome: str | None
    priority: int = Field(description="1 = most urgent .. 4")
    risk: float
    stages: list[str]
    youngest_band: str
    escalated: bool
    claimed_by: str | None
    lease_expires_at: datetime | None
    opened_at: str
    queued_at: datetime
    waiting_seconds: float
    reopen_count: int
    sla: SlaOut


class CasePageOut(_Out):
    items: list[CaseSummaryOut]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class ClaimNextOut(_Out):
    case: CaseSummaryOut | None = Field(description="null when nothing is waiting")


class HighlightOut(_Out):
    start: int
    end: int
    kind: str
    reason_id: str
    stage: str | None


class SegmentOut(_Out):
    text: str
    evidence: bool
    reasons: list[str]


class MessageOut(_Out):
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
    evidence: bool
    highlights: list[HighlightOut]
    segments: list[SegmentOut]


class TranscriptOut(_Out):
    messages: list[MessageOut]
    total: int
    omitted: int


class StageMarkOut(_Out):
    stage: str
    first_seen: datetime | None
    event_id: str | None


class ReasonOut(_Out):
    kind: str
    id: str
    version: str
    event_id: str
    detail: str


class RuleHitOut(_Out):
    event_id: str
    ts: datetime
    kind: str
    id: str
    version: str
    stage: str | None
    weight: float
    detail: str
    spans: list[tuple[int, int]]
    shadow: bool


class ModelScoreOut(_Out):
    event_id: str
    model_id: str
    version: str | None
    sha256: str | None
    scores: dict[str, float]
    nearest_exemplars: list[str]


class AgeSignalsOut(_Out):
    youngest_band: str
    relation: str | None
    factor: float | None
    older: str | None
    younger: str | None
    gap_years: float | None
    detail: str | None
    signals: list[RuleHitOut]


class FanoutCaseOut(_Out):
    case_id: str
    status: str
    priority: int
    risk: float
    escalated: bool


class SubjectFanoutOut(_Out):
    subject: str
    other_cases: list[FanoutCaseOut]
    total_other_cases: int


class HistoryOut(_Out):
    at: datetime
    actor: str
    role: str
    action: str
    reason_code: str | None
    note: str | None


class CaseDetailOut(_Out):
    case: CaseSummaryOut
    subjects: list[str]
    reasons: list[ReasonOut]
    transcript: TranscriptOut
    stage_timeline: list[StageMarkOut]
    rule_hits: list[RuleHitOut]
    model_scores: list[ModelScoreOut]
    age: AgeSignalsOut
    fanout: list[SubjectFanoutOut]
    history: list[HistoryOut]


Note = Annotated[str, Field(max_length=MAX_NOTE, description="Free text kept in case history; the audit "
                                                             "trail keeps only its hash.")]


# Plain string literals (not enum members) so validation messages read "Input should be 'NV-1' or 'NV-2'".
# tests/review/test_api.py checks they partition review.policy.ReasonCode and Action exactly.
NoViolationCode = Literal["NV-1", "NV-2"]
ViolationCode = Literal["AGE-1.1", "AGE-2.1", "CSE-1.1", "CSE-1.2", "CSE-1.3", "CSE-1.4", "CSE-2.1", "CSE-2.2",
                        "CSE-3.1", "CSE-3.2", "CSE-4.1", "CSE-5.1"]
EnforcementAction = Literal["warned", "restricted", "banned", "reported_ncmec"]


class DismissIn(_In):
    """A dismissal cites a no-violation code."""

    action: Literal["dismissed"]
    reason_code: NoViolationCode
    note: Note = ""


class EnforceIn(_In):
    """An enforcement cites the violated policy. reported_ncmec needs a senior."""

    action: EnforcementAction
    reason_code: ViolationCode
    note: Note = ""


class EscalateDecisionIn(_In):
    """Same as POST /escalate."""

    action: Literal["escalated"]
    reason_code: ReasonCode | None = None
    note: Note = ""


# The policy rule "dismissals cite NV-*, enforcement cites a violation" lives in the schema itself, so every
# schema-valid body is acceptable and the OpenAPI document tells clients exactly what to send.
DecisionIn = Annotated[DismissIn | EnforceIn | EscalateDecisionIn, Field(discriminator="action")]


class EscalateIn(_In):
    reason_code: ReasonCode | None = None
    note: Note = ""


class CheckpointOut(_Out):
    seq: int
    head: str
    time: str
    key_id: str
    signature: str


class SignOut(_Out):
    checkpoint: CheckpointOut | None = Field(description="null when the head was already signed or the log is empty")


class EntryOut(_Out):
    entry: dict[str, object]
    hash: str


class PublicKeyOut(_Out):
    algorithm: str = "Ed25519"
    public_key: str = Field(description="base64 of the 32 raw key bytes")
    key_id: str


class HealthOut(_Out):
    status: str
    detail: str | None = None
