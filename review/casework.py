"""Moderator decisions and escalations on a case the moderator holds (see review.policy for the lifecycle)."""

from __future__ import annotations

from datetime import datetime

from audit.chain import sha256_hex
from review.access import Permission, Principal
from review.errors import CaseConflictError, InvalidDecisionError
from review.policy import CLOSING, POLICY_VERSION, Action, CaseStatus, ReasonCode, reason_code_problem
from review.queue import CaseSummary, check_workable, load_case, not_held_error, record_action, summary
from review.store import SqlCaseStore

MAX_NOTE = 4000


def _note_hash(note: str) -> str | None:
    return sha256_hex(note.encode()) if note else None


def record_decision(*, store: SqlCaseStore, principal: Principal, case_id: str, action: Action,
                    reason_code: ReasonCode, note: str, now: datetime) -> CaseSummary:
    """Decide a case you hold. ``escalated`` is routed to ``escalate_case``. The note stays in case history;
    the audit entry commits to it by hash only."""
    if action is Action.ESCALATED:
        return escalate_case(store=store, principal=principal, case_id=case_id, reason_code=reason_code,
                             note=note, now=now)
    principal.require(Permission.WORK_CASES)
    if action is Action.REPORTED_NCMEC:
        principal.require(Permission.REPORT_NCMEC)
    problem = reason_code_problem(action, reason_code)
    if problem is not None:
        raise InvalidDecisionError(problem)
    if len(note) > MAX_NOTE:
        raise InvalidDecisionError(f"note is longer than {MAX_NOTE} characters")
    with store.transaction() as session:
        case = load_case(session, case_id, lock=True)
        check_workable(principal, case)
        if not (case.status == CaseStatus.CLAIMED and case.claimed_by == principal.name
                and case.lease_expires_at is not None and case.lease_expires_at >= now):
            raise not_held_error(case, principal, now)
        waited = (now - case.sla_started_at).total_seconds()
        case.outcome = action.value
        case.decided_at = now
        case.decided_risk = case.risk
        case.decided_stages = list(case.stages)
        case.claimed_by = None
        case.lease_expires_at = None
        if action in CLOSING:
            case.status, case.closed_at = CaseStatus.CLOSED.value, now
        else:
            case.status = CaseStatus.DECIDED.value
        session.flush()
        record_action(session, store, case=case, principal=principal, action=action.value, now=now,
                      reason_code=reason_code.value, note=note or None, waited_seconds=waited,
                      payload_extra={"reason_code": reason_code.value, "note_sha256": _note_hash(note),
                                     "policy_version": POLICY_VERSION, "status": case.status})
        return summary(case, now)


def escalate_case(*, store: SqlCaseStore, principal: Principal, case_id: str, reason_code: ReasonCode | None,
                  note: str, now: datetime) -> CaseSummary:
    """Hand a case you hold to the senior queue: it returns to the queue flagged escalated, unclaimed."""
    principal.require(Permission.WORK_CASES)
    if len(note) > MAX_NOTE:
        raise InvalidDecisionError(f"note is longer than {MAX_NOTE} characters")
    with store.transaction() as session:
        case = load_case(session, case_id, lock=True)
        check_workable(principal, case)
        if not (case.status == CaseStatus.CLAIMED and case.claimed_by == principal.name
                and case.lease_expires_at is not None and case.lease_expires_at >= now):
            raise not_held_error(case, principal, now)
        if case.escalated:
            raise CaseConflictError(f"case {case.id} is already escalated; decide it or release it")
        case.escalated = True
        case.status = CaseStatus.OPEN.value
        case.claimed_by = None
        case.lease_expires_at = None
        session.flush()
        code = reason_code.value if reason_code is not None else None
        record_action(session, store, case=case, principal=principal, action=Action.ESCALATED.value, now=now,
                      reason_code=code, note=note or None,
                      payload_extra={"reason_code": code, "note_sha256": _note_hash(note)})
        return summary(case, now)


__all__ = ["MAX_NOTE", "escalate_case", "record_decision"]
