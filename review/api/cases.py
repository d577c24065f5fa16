"""Case routes: queue listing, detail, claims and decisions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query

from review import casework, evidence, queue
from review.api.deps import NowDep, PrincipalDep, StoreDep, errors
from review.api.schemas import (
    CaseDetailOut,
    CasePageOut,
    CaseSummaryOut,
    ClaimNextOut,
    DecisionIn,
    EscalateDecisionIn,
    EscalateIn,
)
from review.policy import Action, CaseStatus, ReasonCode

router = APIRouter(prefix="/v1", tags=["cases"])

CaseId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^case-[0-9a-f]{20}$",
                             description="A case id as listed, e.g. case-0123456789abcdef0123")]


@router.get("/cases", response_model=CasePageOut, responses=errors(401, 403))
def list_cases(
    store: StoreDep, principal: PrincipalDep, now: NowDep,
    status: Annotated[CaseStatus | None, Query(description="open includes claimed cases whose lease lapsed")] = None,
    priority: Annotated[int | None, Query(ge=1, le=4)] = None,
    stage: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="e.g. secrecy")] = None,
    escalated: Annotated[bool | None, Query(description="senior, auditor and admin only")] = None,
    limit: Annotated[int, Query(ge=1, le=queue.MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=queue.MAX_OFFSET)] = 0,
) -> queue.CasePage:
    """Cases in queue order: priority, risk, youngest party, waiting time."""
    return queue.list_cases(store=store, principal=principal, now=now, status=status, priority=priority,
                            stage=stage, escalated=escalated, limit=limit, offset=offset)


@router.post("/queue/claim", response_model=ClaimNextOut, responses=errors(401, 403))
def claim_next(store: StoreDep, principal: PrincipalDep, now: NowDep,
               priority: Annotated[int | None, Query(ge=1, le=4)] = None) -> ClaimNextOut:
    """Claim the next case in queue order (the usual way to work the queue)."""
    claimed = queue.claim_next(store=store, principal=principal, now=now, priority=priority)
    return ClaimNextOut(case=None if claimed is None else CaseSummaryOut.model_validate(claimed))


@router.get("/cases/{case_id}", response_model=CaseDetailOut, responses=errors(401, 403, 404))
def case_detail(store: StoreDep, principal: PrincipalDep, now: NowDep, case_id: CaseId,
                window: Annotated[int, Query(ge=1, le=evidence.MAX_WINDOW)] = 50) -> evidence.CaseDetail:
    """Everything needed to decide: transcript window with highlighted evidence, stage timeline, rule hits,
    model scores and nearest exemplars, age signals, the subject's other cases. This read is audited."""
    return evidence.case_detail(store=store, principal=principal, case_id=case_id, now=now, window=window)


@router.post("/cases/{case_id}/claim", response_model=CaseSummaryOut, responses=errors(401, 403, 404, 409))
def claim(store: StoreDep, principal: PrincipalDep, now: NowDep, case_id: CaseId) -> queue.CaseSummary:
    """Claim a case: a lease of `lease_seconds`, renewed by heartbeat."""
    return queue.claim_case(store=store, principal=principal, case_id=case_id, now=now)


@router.post("/cases/{case_id}/heartbeat", response_model=CaseSummaryOut, responses=errors(401, 403, 404, 409))
def heartbeat(store: StoreDep, principal: PrincipalDep, now: NowDep, case_id: CaseId) -> queue.CaseSummary:
    return queue.heartbeat(store=store, principal=principal, case_id=case_id, now=now)


@router.post("/cases/{case_id}/release", response_model=CaseSummaryOut, responses=errors(401, 403, 404, 409))
def release(store: StoreDep, principal: PrincipalDep, now: NowDep, case_id: CaseId) -> queue.CaseSummary:
    return queue.release(store=store, principal=principal, case_id=case_id, now=now)


@router.post("/cases/{case_id}/decision", response_model=CaseSummaryOut,
             responses=errors(400, 401, 403, 404, 409))
def decide(store: StoreDep, principal: PrincipalDep, now: NowDep, case_id: CaseId,
           body: Annotated[DecisionIn, Body()]) -> queue.CaseSummary:
    """Decide a case you hold. Dismissed and warned cases reopen if the conversation's risk rises again;
    restricted, banned and reported cases close. reported_ncmec needs a senior."""
    if isinstance(body, EscalateDecisionIn):
        return casework.escalate_case(store=store, principal=principal, case_id=case_id,
                                      reason_code=body.reason_code, note=body.note, now=now)
    return casework.record_decision(store=store, principal=principal, case_id=case_id, action=Action(body.action),
                                    reason_code=ReasonCode(body.reason_code), note=body.note, now=now)


@router.post("/cases/{case_id}/escalate", response_model=CaseSummaryOut,
             responses=errors(400, 401, 403, 404, 409))
def escalate(store: StoreDep, principal: PrincipalDep, now: NowDep, case_id: CaseId,
             body: Annotated[EscalateIn, Body()]) -> queue.CaseSummary:
    """Send a case you hold to the senior queue."""
    return casework.escalate_case(store=store, principal=principal, case_id=case_id,
                                  reason_code=body.reason_code, note=body.note, now=now)
