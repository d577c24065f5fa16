"""What the console's templates draw, built from the review services' results (no queries here).

Presentation only: SLA timers as text, which controls a role gets, redacted transcript pieces, model scores
with their nearest exemplars, the age verification strength, the reason codes each action may cite.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from pipeline.contract import Verification
from review.access import Permission, Principal
from review.console.redaction import LABELS, Piece, find_pii, mask, pieces
from review.evidence import CaseDetail, ModelScore, RuleHit, TranscriptMessage
from review.policy import NO_VIOLATION_CODES, Action, CaseStatus, ReasonCode, reason_code_problem, sla_targets
from review.queue import CaseSummary

# Number keys 1..6 choose these, in this order (a role that may not take an action simply lacks its key).
ACTION_KEYS: Final = (Action.DISMISSED, Action.WARNED, Action.RESTRICTED, Action.BANNED, Action.ESCALATED,
                      Action.REPORTED_NCMEC)
ACTION_LABELS: Final = {Action.DISMISSED: "Dismiss", Action.WARNED: "Warn", Action.RESTRICTED: "Restrict",
                        Action.BANNED: "Ban", Action.ESCALATED: "Escalate to senior",
                        Action.REPORTED_NCMEC: "Report to NCMEC"}
CODE_LABELS: Final = {
    ReasonCode.NO_VIOLATION: "no violation", ReasonCode.INSUFFICIENT_EVIDENCE: "not enough evidence to act",
    ReasonCode.AGE_ASSURANCE: "age assurance", ReasonCode.AGE_MISREPRESENTATION: "age misrepresentation",
    ReasonCode.GROOMING_TRUST: "grooming: trust building", ReasonCode.GROOMING_PROBING: "grooming: age probing",
    ReasonCode.GROOMING_GIFTS: "grooming: gifts", ReasonCode.GROOMING_SECRECY: "grooming: secrecy",
    ReasonCode.OFF_PLATFORM: "moving to another app", ReasonCode.ISOLATION: "isolation",
    ReasonCode.MEETING: "meeting request", ReasonCode.IMAGE_SOLICITATION: "picture request",
    ReasonCode.SAFETY_SIGNALS: "safety signals (report)", ReasonCode.FANOUT: "contacting many minors",
}
# The policy codes the rule packs cite for each stage (tests/review/test_console.py checks this against rules/).
STAGE_CODES: Final[dict[str, tuple[ReasonCode, ...]]] = {
    "trust_building": (ReasonCode.GROOMING_TRUST,),
    "age_probing": (ReasonCode.GROOMING_PROBING, ReasonCode.AGE_ASSURANCE),
    "gifts": (ReasonCode.GROOMING_GIFTS,),
    "secrecy": (ReasonCode.GROOMING_SECRECY,),
    "isolation": (ReasonCode.OFF_PLATFORM, ReasonCode.ISOLATION),
    "meeting_request": (ReasonCode.MEETING, ReasonCode.IMAGE_SOLICITATION),
    "age_deception": (ReasonCode.AGE_MISREPRESENTATION,),
    "reported": (ReasonCode.SAFETY_SIGNALS,),
    "fanout": (ReasonCode.FANOUT,),
}
STAGE_NAMES: Final = ("trust_building", "age_probing", "gifts", "secrecy", "isolation", "meeting_request",
                      "age_deception", "reported", "fanout")
VERIFIED_BY = re.compile(r"verified by ([a-z_]+)")


def duration(seconds: float) -> str:
    seconds = int(abs(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


@dataclass(frozen=True, slots=True)
class SlaCell:
    """One SLA timer. ``state``: met, missed (done), ok, soon, overdue (running); ``due`` drives the live
    countdown in console.js while the timer runs."""

    label: str
    state: str
    text: str
    due: str | None


def sla_cell(label: str, target: timedelta, due: datetime, done_at: datetime | None, started: datetime,
             now: datetime) -> SlaCell:
    if done_at is not None:
        took = duration((done_at - started).total_seconds())
        return SlaCell(label, "met" if done_at <= due else "missed",
                       f"done in {took}" + ("" if done_at <= due else " (late)"), None)
    left = (due - now).total_seconds()
    if left < 0:
        return SlaCell(label, "overdue", f"overdue {duration(left)}", due.isoformat())
    state = "soon" if left < target.total_seconds() / 4 else "ok"
    return SlaCell(label, state, f"due in {duration(left)}", due.isoformat())


def sla_cells(case: CaseSummary, now: datetime) -> tuple[SlaCell, SlaCell]:
    first, decision = sla_targets(case.priority)
    started = case.sla.first_review_due_at - first
    return (sla_cell("first review", first, case.sla.first_review_due_at, case.sla.first_reviewed_at, started, now),
            sla_cell("decision", decision, case.sla.decision_due_at, case.sla.decided_at, started, now))


@dataclass(frozen=True, slots=True)
class QueueRow:
    case: CaseSummary
    first_review: SlaCell
    decision: SlaCell
    claimable: bool


def queue_rows(items: Sequence[CaseSummary], principal: Principal, now: datetime) -> list[QueueRow]:
    work = principal.can(Permission.WORK_CASES)
    senior = principal.can(Permission.WORK_ESCALATED)
    rows = []
    for case in items:
        first, decision = sla_cells(case, now)
        claimable = work and case.status == CaseStatus.OPEN and (senior or not case.escalated)
        rows.append(QueueRow(case, first, decision, claimable))
    return rows


@dataclass(frozen=True, slots=True)
class MessageView:
    message: TranscriptMessage
    pieces: tuple[Piece, ...]
    redacted: tuple[str, ...]  # labels of the kinds hidden, e.g. ("phone number",)
    side: str  # "older", "younger" or "other"


def message_view(message: TranscriptMessage, *, older: str | None, younger: str | None,
                 revealed: bool = False) -> MessageView:
    side = "older" if message.sender_id == older else "younger" if message.sender_id == younger else "other"
    found = () if revealed or message.text is None else find_pii(message.text)
    labels = tuple(sorted({LABELS[r.kind] for r in found}))
    return MessageView(message, pieces(message.segments, found), labels, side)


@dataclass(frozen=True, slots=True)
class ModelView:
    score: ModelScore
    top: tuple[tuple[str, float], ...]
    exemplars: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AgeView:
    verification: str
    strength: int  # 0 (none/unknown) .. 4 (id document)
    strength_max: int


@dataclass(frozen=True, slots=True)
class ActionChoice:
    key: int
    action: str
    label: str
    codes: str  # "nv", "violation" or "any": which reason codes the action may cite


@dataclass(frozen=True, slots=True)
class CodeChoice:
    code: str
    label: str
    kind: str  # "nv" or "violation"
    suggested: bool


@dataclass(frozen=True, slots=True)
class CasePage:
    detail: CaseDetail
    first_review: SlaCell
    decision: SlaCell
    messages: tuple[MessageView, ...]
    rule_hits: tuple[RuleHit, ...]
    models: tuple[ModelView, ...]
    age: AgeView
    actions: tuple[ActionChoice, ...]
    codes: tuple[CodeChoice, ...]
    held_by_me: bool
    can_claim: bool
    can_work: bool


def _age(detail: CaseDetail) -> AgeView:
    levels = list(Verification)
    found = VERIFIED_BY.search(detail.age.detail or "")
    if found is None or found.group(1) not in {v.value for v in levels}:
        return AgeView("not stated", 0, len(levels) - 1)
    level = Verification(found.group(1))
    return AgeView(level.value.replace("_", " "), levels.index(level), len(levels) - 1)


def _codes(detail: CaseDetail) -> tuple[CodeChoice, ...]:
    stages = {*detail.case.stages, *(h.stage for h in detail.rule_hits if h.stage and not h.shadow)}
    suggested = {code for stage in stages for code in STAGE_CODES.get(stage, ())}
    ordered = sorted(ReasonCode, key=lambda c: (c in NO_VIOLATION_CODES, c not in suggested,
                                                list(ReasonCode).index(c)))
    return tuple(CodeChoice(c.value, f"{c.value} — {CODE_LABELS[c]}", "nv" if c in NO_VIOLATION_CODES else "violation",
                            c in suggested) for c in ordered)


def _actions(principal: Principal, case: CaseSummary) -> tuple[ActionChoice, ...]:
    out = []
    for key, action in enumerate(ACTION_KEYS, start=1):
        if action is Action.REPORTED_NCMEC and not principal.can(Permission.REPORT_NCMEC):
            continue
        if action is Action.ESCALATED and case.escalated:
            continue
        if action is Action.ESCALATED:
            codes = "any"
        else:
            codes = "violation" if reason_code_problem(action, ReasonCode.NO_VIOLATION) else "nv"
        out.append(ActionChoice(key, action.value, ACTION_LABELS[action], codes))
    return tuple(out)


def case_page(detail: CaseDetail, principal: Principal, now: datetime) -> CasePage:
    case = detail.case
    first, decision = sla_cells(case, now)
    messages = tuple(message_view(m, older=detail.age.older, younger=detail.age.younger)
                     for m in detail.transcript.messages)
    models = tuple(ModelView(s, tuple(sorted(s.scores.items(), key=lambda kv: -kv[1])[:3]),
                             tuple(mask(e) for e in s.nearest_exemplars)) for s in detail.model_scores)
    work = principal.can(Permission.WORK_CASES) and (not case.escalated or principal.can(Permission.WORK_ESCALATED))
    held = case.status == CaseStatus.CLAIMED and case.claimed_by == principal.name
    can_claim = work and case.status == CaseStatus.OPEN
    return CasePage(detail, first, decision, messages,
                    tuple(h for h in detail.rule_hits if h.kind != "model"), models, _age(detail),
                    _actions(principal, case) if work else (), _codes(detail) if work else (), held, can_claim, work)
