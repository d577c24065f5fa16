"""The review queue: listing, and claims as leases.

Order: priority (1 = most urgent), then risk (highest first), then the youngest party's band, then waiting
time (longest first). A claim is a lease until ``now + lease_seconds``; heartbeats extend it; a lapsed lease
puts the case back in the queue without anyone having to notice (listings and claims treat a claimed case
whose lease has expired as open). Exclusivity comes from the database: a claim is one conditional UPDATE
(``... WHERE status = 'open' OR lease lapsed``), and ``claim_next`` picks with ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL (SQLite serialises writers), so two moderators can never hold the same case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, String, and_, cast, func, not_, or_, select, update
from sqlalchemy.orm import Session

from audit.log import PendingEntry
from review.access import Permission, Principal
from review.errors import CaseConflictError, CaseNotFoundError, PermissionDeniedError
from review.models import CaseActionRow, CaseRow
from review.policy import CaseStatus
from review.store import SqlCaseStore

MAX_PAGE = 100
MAX_OFFSET = 100_000
STAGE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True, slots=True)
class SlaClock:
    first_review_due_at: datetime
    decision_due_at: datetime
    first_reviewed_at: datetime | None
    decided_at: datetime | None
    time_to_first_review_seconds: float | None
    time_to_decision_seconds: float | None
    first_review_breached: bool
    decision_breached: bool


@dataclass(frozen=True, slots=True)
class CaseSummary:
    case_id: str
    conversation_id: str
    status: str  # effective: a claimed case whose lease lapsed is "open"
    outcome: str | None
    priority: int
    risk: float
    stages: tuple[str, ...]
    youngest_band: str
    escalated: bool
    claimed_by: str | None
    lease_expires_at: datetime | None
    opened_at: str
    queued_at: datetime
    waiting_seconds: float
    reopen_count: int
    sla: SlaClock


@dataclass(frozen=True, slots=True)
class CasePage:
    items: tuple[CaseSummary, ...]
    total: int
    limit: int
    offset: int
    next_offset: int | None


def lease_lapsed(now: datetime) -> ColumnElement[bool]:
    return and_(CaseRow.status == CaseStatus.CLAIMED, CaseRow.lease_expires_at < now)


def claimable(now: datetime) -> ColumnElement[bool]:
    return or_(CaseRow.status == CaseStatus.OPEN, lease_lapsed(now))


QUEUE_ORDER = (CaseRow.priority.asc(), CaseRow.risk.desc(), CaseRow.band_rank.asc(), CaseRow.queued_at.asc(),
               CaseRow.id.asc())


def effective_status(case: CaseRow, now: datetime) -> str:
    if case.status == CaseStatus.CLAIMED and case.lease_expires_at is not None and case.lease_expires_at < now:
        return CaseStatus.OPEN.value
    return case.status


def sla_clock(case: CaseRow, now: datetime) -> SlaClock:
    reviewed, decided = case.first_reviewed_at, case.decided_at
    return SlaClock(
        first_review_due_at=case.first_review_due_at,
        decision_due_at=case.decision_due_at,
        first_reviewed_at=reviewed,
        decided_at=decided,
        time_to_first_review_seconds=None if reviewed is None else (reviewed - case.sla_started_at).total_seconds(),
        time_to_decision_seconds=None if decided is None else (decided - case.sla_started_at).total_seconds(),
        first_review_breached=(reviewed or now) > case.first_review_due_at,
        decision_breached=(decided or now) > case.decision_due_at,
    )


def summary(case: CaseRow, now: datetime) -> CaseSummary:
    status = effective_status(case, now)
    held = status == CaseStatus.CLAIMED
    return CaseSummary(
        case_id=case.id, conversation_id=case.conversation_id, status=status, outcome=case.outcome,
        priority=case.priority, risk=round(case.risk, 4), stages=tuple(case.stages),
        youngest_band=case.youngest_band, escalated=case.escalated,
        claimed_by=case.claimed_by if held else None, lease_expires_at=case.lease_expires_at if held else None,
        opened_at=case.opened_at, queued_at=case.queued_at,
        waiting_seconds=max(0.0, ((case.decided_at or now) - case.queued_at).total_seconds()),
        reopen_count=case.reopen_count, sla=sla_clock(case, now),
    )


def list_cases(*, store: SqlCaseStore, principal: Principal, now: datetime, status: CaseStatus | None = None,
               priority: int | None = None, stage: str | None = None, escalated: bool | None = None,
               limit: int = 50, offset: int = 0) -> CasePage:
    """Cases in queue order. Moderators never see escalated cases (asking for them is refused)."""
    principal.require(Permission.READ_CASES)
    if not 1 <= limit <= MAX_PAGE or not 0 <= offset <= MAX_OFFSET:
        raise ValueError(f"limit must be 1..{MAX_PAGE} and offset 0..{MAX_OFFSET}")
    where: list[ColumnElement[bool]] = []
    if not principal.can(Permission.READ_ESCALATED):
        if escalated:
            principal.require(Permission.READ_ESCALATED)
        where.append(CaseRow.escalated.is_(False))
    elif escalated is not None:
        where.append(CaseRow.escalated.is_(escalated))
    if status == CaseStatus.OPEN:
        where.append(claimable(now))
    elif status == CaseStatus.CLAIMED:
        where.append(and_(CaseRow.status == CaseStatus.CLAIMED, not_(lease_lapsed(now))))
    elif status is not None:
        where.append(CaseRow.status == status)
    if priority is not None:
        where.append(CaseRow.priority == priority)
    if stage is not None:
        if not STAGE_NAME.fullmatch(stage):
            raise ValueError("stage must be a stage name such as secrecy or meeting_request")
        # Stages are a JSON list; matching its text with the quoted name works the same on both databases.
        escaped = stage.replace("_", "\\_")
        where.append(cast(CaseRow.stages, String).like(f'%"{escaped}"%', escape="\\"))
    with store.sessions() as session:
        total = session.scalar(select(func.count()).select_from(CaseRow).where(*where)) or 0
        page = list(session.scalars(select(CaseRow).where(*where).order_by(*QUEUE_ORDER).offset(offset).limit(limit)))
    items = tuple(summary(r, now) for r in page)
    next_offset = offset + limit if offset + limit < total else None
    return CasePage(items, total, limit, offset, next_offset)


def _load(session: Session, case_id: str, *, lock: bool = False) -> CaseRow:
    stmt = select(CaseRow).where(CaseRow.id == case_id).execution_options(populate_existing=True)
    case = session.scalars(stmt.with_for_update() if lock else stmt).first()
    if case is None:
        raise CaseNotFoundError(f"no case {case_id}")
    return case


def check_visible(principal: Principal, case: CaseRow) -> None:
    if case.escalated:
        principal.require(Permission.READ_ESCALATED)


def check_workable(principal: Principal, case: CaseRow) -> None:
    principal.require(Permission.WORK_CASES)
    if case.escalated:
        principal.require(Permission.WORK_ESCALATED)


def _explain_unclaimable(case: CaseRow, now: datetime) -> CaseConflictError:
    status = effective_status(case, now)
    if status == CaseStatus.CLAIMED:
        return CaseConflictError(f"case {case.id} is held by another moderator until "
                                 f"{case.lease_expires_at.isoformat() if case.lease_expires_at else '?'}")
    return CaseConflictError(f"case {case.id} is {status}; only open cases can be claimed")


def record_action(session: Session, store: SqlCaseStore, *, case: CaseRow, principal: Principal, action: str,
            now: datetime, reason_code: str | None = None, note: str | None = None,
            waited_seconds: float | None = None, payload_extra: dict[str, object] | None = None) -> None:
    """Append the case history row and its audit entry (last, after the row locks; see audit.log)."""
    row = CaseActionRow(case_id=case.id, actor=principal.name, role=principal.role.value, action=action,
                        reason_code=reason_code, note=note, at=now, waited_seconds=waited_seconds)
    session.add(row)
    session.flush()
    payload: dict[str, object] = {"case_id": case.id, "action": action, "role": principal.role.value,
                                  "history_id": row.id, **(payload_extra or {})}
    entry = store.audit.append(session.connection(), [PendingEntry(f"case.{action}", f"case:{case.id}",
                                                                   actor_id=principal.name, payload=payload)])
    row.audit_seq = entry[0].seq


def _lease_until(store: SqlCaseStore, now: datetime) -> datetime:
    return now + timedelta(seconds=store.lease_seconds)


def claim_case(*, store: SqlCaseStore, principal: Principal, case_id: str, now: datetime) -> CaseSummary:
    """Claim one case. Re-claiming a case you hold renews the lease."""
    principal.require(Permission.WORK_CASES)
    with store.transaction() as session:
        case = _load(session, case_id)
        check_workable(principal, case)
        mine = and_(CaseRow.status == CaseStatus.CLAIMED, CaseRow.claimed_by == principal.name)
        allowed = [] if principal.can(Permission.WORK_ESCALATED) else [CaseRow.escalated.is_(False)]
        done = session.execute(
            update(CaseRow).where(CaseRow.id == case_id, or_(claimable(now), mine), *allowed)
            .values(status=CaseStatus.CLAIMED.value, claimed_by=principal.name,
                    lease_expires_at=_lease_until(store, now),
                    first_reviewed_at=func.coalesce(CaseRow.first_reviewed_at, now))
            .returning(CaseRow.id)
        ).first()
        case = _load(session, case_id)
        if done is None:
            check_workable(principal, case)  # escalated meanwhile
            raise _explain_unclaimable(case, now)
        record_action(session, store, case=case, principal=principal, action="claimed", now=now)
        return summary(case, now)


def claim_next(*, store: SqlCaseStore, principal: Principal, now: datetime, priority: int | None = None
               ) -> CaseSummary | None:
    """Claim the first claimable case in queue order, skipping rows other claimers are locking right now."""
    principal.require(Permission.WORK_CASES)
    where = [claimable(now)]
    if not principal.can(Permission.WORK_ESCALATED):
        where.append(CaseRow.escalated.is_(False))
    if priority is not None:
        where.append(CaseRow.priority == priority)
    with store.transaction() as session:
        picked = session.scalars(select(CaseRow.id).where(*where).order_by(*QUEUE_ORDER).limit(1)
                                 .with_for_update(skip_locked=True)).first()
        if picked is None:
            return None
        session.execute(update(CaseRow).where(CaseRow.id == picked)
                        .values(status=CaseStatus.CLAIMED.value, claimed_by=principal.name,
                                lease_expires_at=_lease_until(store, now),
                                first_reviewed_at=func.coalesce(CaseRow.first_reviewed_at, now)))
        case = _load(session, picked)
        record_action(session, store, case=case, principal=principal, action="claimed", now=now)
        return summary(case, now)


def held_by(principal: Principal, now: datetime) -> ColumnElement[bool]:
    return and_(CaseRow.status == CaseStatus.CLAIMED, CaseRow.claimed_by == principal.name,
                CaseRow.lease_expires_at >= now)


def not_held_error(case: CaseRow, principal: Principal, now: datetime) -> CaseConflictError:
    if case.status == CaseStatus.CLAIMED and case.claimed_by == principal.name and case.lease_expires_at is not None:
        return CaseConflictError(f"your lease on case {case.id} lapsed at {case.lease_expires_at.isoformat()}; "
                                 "claim it again")
    return CaseConflictError(f"you do not hold case {case.id}; claim it first")


def heartbeat(*, store: SqlCaseStore, principal: Principal, case_id: str, now: datetime) -> CaseSummary:
    """Extend your lease. Not audited: a heartbeat changes no decision and would flood the trail."""
    principal.require(Permission.WORK_CASES)
    with store.transaction() as session:
        case = _load(session, case_id)
        check_workable(principal, case)
        done = session.execute(update(CaseRow).where(CaseRow.id == case_id, held_by(principal, now))
                               .values(lease_expires_at=_lease_until(store, now)).returning(CaseRow.id)).first()
        case = _load(session, case_id)
        if done is None:
            raise not_held_error(case, principal, now)
        return summary(case, now)


def release(*, store: SqlCaseStore, principal: Principal, case_id: str, now: datetime) -> CaseSummary:
    principal.require(Permission.WORK_CASES)
    with store.transaction() as session:
        case = _load(session, case_id)
        check_workable(principal, case)
        done = session.execute(update(CaseRow).where(CaseRow.id == case_id, held_by(principal, now))
                               .values(status=CaseStatus.OPEN.value, claimed_by=None, lease_expires_at=None)
                               .returning(CaseRow.id)).first()
        case = _load(session, case_id)
        if done is None:
            raise not_held_error(case, principal, now)
        record_action(session, store, case=case, principal=principal, action="released", now=now)
        return summary(case, now)


def load_case(session: Session, case_id: str, *, lock: bool = False) -> CaseRow:
    return _load(session, case_id, lock=lock)


__all__ = [
    "MAX_PAGE",
    "CasePage",
    "CaseSummary",
    "PermissionDeniedError",
    "SlaClock",
    "check_visible",
    "check_workable",
    "claim_case",
    "claim_next",
    "heartbeat",
    "list_cases",
    "load_case",
    "release",
]
