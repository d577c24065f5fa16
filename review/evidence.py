"""Case detail: what a moderator needs to decide, assembled from stored decision records and messages (never
live state). Every read is itself audited: who saw which case and which messages, when."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit.log import PendingEntry
from review.access import Permission, Principal
from review.models import CaseActionRow, CaseReasonRow, CaseRow, CaseSubjectRow, DecisionRecordRow, MessageRow
from review.queue import CaseSummary, check_visible, load_case, summary
from review.store import SqlCaseStore

MAX_WINDOW = 200
CONTEXT_AROUND_EVIDENCE = 5  # messages shown before and after each evidence message
TAIL = 10  # the latest messages are always shown
MAX_MESSAGES_SCANNED = 2000
FANOUT_SHOWN = 20
NEAREST_MARK = "; nearest: "


@dataclass(frozen=True, slots=True)
class Highlight:
    start: int
    end: int
    kind: str
    reason_id: str
    stage: str | None


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    evidence: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TranscriptMessage:
    event_id: str
    ts: datetime
    event_type: str
    sender_id: str
    sender_band: str
    target_id: str | None
    text: str | None  # None once purged by retention
    text_sha256: str | None
    purged: bool
    amount: int | None
    currency: str | None
    evidence: bool
    highlights: tuple[Highlight, ...]
    segments: tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class Transcript:
    messages: tuple[TranscriptMessage, ...]
    total: int  # messages stored for the conversation
    omitted: int  # stored but outside the window


@dataclass(frozen=True, slots=True)
class StageMarkView:
    stage: str
    first_seen: datetime | None
    event_id: str | None


@dataclass(frozen=True, slots=True)
class ReasonView:
    kind: str
    id: str
    version: str
    event_id: str
    detail: str


@dataclass(frozen=True, slots=True)
class RuleHit:
    event_id: str
    ts: datetime
    kind: str
    id: str
    version: str
    stage: str | None
    weight: float
    detail: str
    spans: tuple[tuple[int, int], ...]
    shadow: bool


@dataclass(frozen=True, slots=True)
class ModelScore:
    event_id: str
    model_id: str
    version: str | None
    sha256: str | None
    scores: Mapping[str, float]
    nearest_exemplars: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AgeSignals:
    youngest_band: str
    relation: str | None
    factor: float | None
    older: str | None
    younger: str | None
    gap_years: float | None
    detail: str | None
    signals: tuple[RuleHit, ...]  # age-policy reasons and age-cue rule hits


@dataclass(frozen=True, slots=True)
class FanoutCase:
    case_id: str
    status: str
    priority: int
    risk: float
    escalated: bool


@dataclass(frozen=True, slots=True)
class SubjectFanout:
    subject: str
    other_cases: tuple[FanoutCase, ...]
    total_other_cases: int


@dataclass(frozen=True, slots=True)
class HistoryItem:
    at: datetime
    actor: str
    role: str
    action: str
    reason_code: str | None
    note: str | None


@dataclass(frozen=True, slots=True)
class CaseDetail:
    case: CaseSummary
    subjects: tuple[str, ...]
    reasons: tuple[ReasonView, ...]
    transcript: Transcript
    stage_timeline: tuple[StageMarkView, ...]
    rule_hits: tuple[RuleHit, ...]
    model_scores: tuple[ModelScore, ...]
    age: AgeSignals
    fanout: tuple[SubjectFanout, ...]
    history: tuple[HistoryItem, ...]


def _ts(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _hits(record: Mapping[str, Any]) -> list[RuleHit]:
    ts = _ts(str(record["ts"]))
    out: list[RuleHit] = []
    for key, shadow in (("reasons", False), ("shadow_reasons", True)):
        for r in record.get(key, []):
            spans = tuple((int(s[0]), int(s[1])) for s in r.get("spans", []))
            out.append(RuleHit(str(r["event_id"]), ts, str(r["kind"]), str(r["id"]), str(r["version"]),
                               r.get("stage"), float(r.get("weight", 0.0)), str(r["detail"]), spans, shadow))
    return out


def _model_scores(record: Mapping[str, Any], hits: Sequence[RuleHit]) -> list[ModelScore]:
    info = {str(m.get("id")): m for m in record.get("models", [])}
    out: list[ModelScore] = []
    for model_id, scores in sorted(record.get("model_scores", {}).items()):
        nearest = tuple(h.detail.split(NEAREST_MARK, 1)[1] for h in hits
                        if h.kind == "model" and h.id == model_id and NEAREST_MARK in h.detail)
        meta = info.get(model_id, {})
        out.append(ModelScore(str(record["event_id"]), model_id, meta.get("version"), meta.get("sha256"),
                              {k: float(v) for k, v in scores.items()}, nearest))
    return out


def _segments(text: str, highlights: Sequence[Highlight]) -> tuple[Segment, ...]:
    """Split text at highlight boundaries; each piece knows which reasons cover it."""
    cuts = sorted({0, len(text), *(h.start for h in highlights), *(h.end for h in highlights)})
    out: list[Segment] = []
    for start, end in itertools.pairwise(cuts):
        if end <= start:
            continue
        covering = tuple(sorted({h.reason_id for h in highlights if h.start <= start and end <= h.end}))
        out.append(Segment(text[start:end], bool(covering), covering))
    return tuple(out)


def _window(messages: Sequence[MessageRow], evidence: set[str], size: int) -> list[int]:
    """Indices to show: every evidence message with context around it, plus the latest messages."""
    if len(messages) <= size:
        return list(range(len(messages)))
    keep: set[int] = set(range(max(0, len(messages) - TAIL), len(messages)))
    for i, m in enumerate(messages):
        if m.event_id in evidence:
            keep.update(range(max(0, i - CONTEXT_AROUND_EVIDENCE), min(len(messages), i + CONTEXT_AROUND_EVIDENCE + 1)))
    return sorted(keep)[-size:]


def _transcript(session: Session, conv: str, hits: Sequence[RuleHit], evidence_ids: set[str],
                size: int) -> Transcript:
    total = session.scalar(select(func.count()).select_from(MessageRow).where(MessageRow.conversation_id == conv)) or 0
    rows = list(reversed(session.scalars(
        select(MessageRow).where(MessageRow.conversation_id == conv)
        .order_by(MessageRow.ts.desc(), MessageRow.event_id.desc()).limit(MAX_MESSAGES_SCANNED)).all()))
    by_event: dict[str, list[Highlight]] = {}
    for h in hits:
        for start, end in h.spans:
            by_event.setdefault(h.event_id, []).append(Highlight(start, end, h.kind, h.id, h.stage))
    shown: list[TranscriptMessage] = []
    for i in _window(rows, evidence_ids, size):
        m = rows[i]
        text = m.text
        marks = tuple(Highlight(max(0, h.start), min(len(text), h.end), h.kind, h.reason_id, h.stage)
                      for h in by_event.get(m.event_id, []) if text is not None and h.start < len(text))
        shown.append(TranscriptMessage(
            m.event_id, m.ts, m.event_type, m.sender_id, m.sender_band, m.target_id, text, m.text_sha256,
            m.purged_at is not None, m.amount, m.currency, m.event_id in evidence_ids, marks,
            _segments(text, marks) if text is not None else ()))
    return Transcript(tuple(shown), total, total - len(shown))


def _fanout(session: Session, case_id: str, subjects: Iterable[str]) -> tuple[SubjectFanout, ...]:
    out: list[SubjectFanout] = []
    for subject in subjects:
        others = CaseSubjectRow.subject == subject, CaseSubjectRow.case_id != case_id
        total = session.scalar(select(func.count()).select_from(CaseSubjectRow).where(*others)) or 0
        rows = session.execute(
            select(CaseRow).join(CaseSubjectRow, CaseSubjectRow.case_id == CaseRow.id).where(*others)
            .order_by(CaseRow.priority, CaseRow.risk.desc(), CaseRow.id).limit(FANOUT_SHOWN)).scalars()
        out.append(SubjectFanout(subject, tuple(FanoutCase(c.id, c.status, c.priority, round(c.risk, 4), c.escalated)
                                                for c in rows), total))
    return tuple(out)


def case_detail(*, store: SqlCaseStore, principal: Principal, case_id: str, now: datetime,
                window: int = 50) -> CaseDetail:
    principal.require(Permission.READ_CASES)
    if not 1 <= window <= MAX_WINDOW:
        raise ValueError(f"window must be 1..{MAX_WINDOW}")
    with store.transaction() as session:
        case: CaseRow = load_case(session, case_id)
        check_visible(principal, case)
        conv = case.conversation_id
        reasons = tuple(ReasonView(r.kind, r.reason_id, r.version, r.event_id, r.detail) for r in session.scalars(
            select(CaseReasonRow).where(CaseReasonRow.case_id == case_id).order_by(CaseReasonRow.id)))
        subjects = tuple(session.scalars(select(CaseSubjectRow.subject).where(CaseSubjectRow.case_id == case_id)
                                         .order_by(CaseSubjectRow.id)))
        records = [json.loads(r) for r in session.scalars(
            select(DecisionRecordRow.record).where(DecisionRecordRow.conversation_id == conv)
            .order_by(DecisionRecordRow.ts, DecisionRecordRow.event_id))]
        hits = [h for record in records for h in _hits(record)]
        scores = [s for record in records for s in _model_scores(record, _hits(record))]
        evidence_ids = {h.event_id for h in hits if not h.shadow} | {r.event_id for r in reasons}
        transcript = _transcript(session, conv, hits, evidence_ids, window)
        timeline = sorted((StageMarkView(stage, datetime.fromtimestamp(float(mark[0]), UTC), str(mark[1]))
                           for stage, mark in case.stage_marks.items()),
                          key=lambda s: (s.first_seen or datetime.max.replace(tzinfo=UTC), s.stage))
        timeline += [StageMarkView(s, None, None) for s in case.stages if s not in case.stage_marks]
        pair = records[-1]["pair"] if records else {}
        age = AgeSignals(case.youngest_band, pair.get("relation"), pair.get("factor"), pair.get("older"),
                         pair.get("younger"), pair.get("gap_years"), pair.get("detail"),
                         tuple(h for h in hits if h.kind == "age" or h.id.startswith("age.")))
        history = tuple(HistoryItem(a.at, a.actor, a.role, a.action, a.reason_code, a.note) for a in session.scalars(
            select(CaseActionRow).where(CaseActionRow.case_id == case_id).order_by(CaseActionRow.id)))
        detail = CaseDetail(summary(case, now), subjects, reasons, transcript, tuple(timeline), tuple(hits),
                            tuple(scores), age, _fanout(session, case_id, subjects), history)
        store.audit.append(session.connection(), [PendingEntry(
            "case.viewed", f"case:{case_id}", actor_id=principal.name,
            payload={"case_id": case_id, "role": principal.role.value,
                     "messages": [m.event_id for m in transcript.messages],
                     "records": sorted({h.event_id for h in hits})})])
        return detail


def message_detail(session: Session, case_id: str, conversation_id: str, event_id: str) -> TranscriptMessage | None:
    """One stored message with its evidence highlights, as ``case_detail``'s transcript shows it (the console
    reveals redacted messages one at a time with this). Not audited here: the caller records why it read it."""
    row = session.get(MessageRow, (conversation_id, event_id))
    if row is None:
        return None
    records = [json.loads(r) for r in session.scalars(
        select(DecisionRecordRow.record).where(DecisionRecordRow.conversation_id == conversation_id)
        .order_by(DecisionRecordRow.ts, DecisionRecordRow.event_id))]
    hits = [h for record in records for h in _hits(record)]
    evidence_ids = {h.event_id for h in hits if not h.shadow} | set(session.scalars(
        select(CaseReasonRow.event_id).where(CaseReasonRow.case_id == case_id)))
    text = row.text
    marks = tuple(Highlight(max(0, start), min(len(text), end), h.kind, h.id, h.stage)
                  for h in hits if h.event_id == event_id and text is not None
                  for start, end in h.spans if start < len(text))
    return TranscriptMessage(
        row.event_id, row.ts, row.event_type, row.sender_id, row.sender_band, row.target_id, text, row.text_sha256,
        row.purged_at is not None, row.amount, row.currency, event_id in evidence_ids, marks,
        _segments(text, marks) if text is not None else ())
