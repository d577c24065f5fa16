"""Audit trail routes: checkpoints, entries, the public key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from audit.chain import Checkpoint
from review import trail
from review.api.deps import PrincipalDep, StoreDep, errors
from review.api.schemas import CheckpointOut, EntryOut, PublicKeyOut, SignOut

router = APIRouter(prefix="/v1/audit", tags=["audit"])

AfterSeq = Annotated[int, Query(ge=0, le=2**62, description="Only items with a larger sequence number")]
Limit = Annotated[int, Query(ge=1, le=trail.MAX_PAGE)]


@router.get("/checkpoints", response_model=list[CheckpointOut], responses=errors(401, 403))
def checkpoints(store: StoreDep, principal: PrincipalDep, after_seq: AfterSeq = 0,
                limit: Limit = 100) -> list[Checkpoint]:
    """Signed checkpoints: Ed25519 over the canonical JSON of {seq, head, time, key_id}."""
    return trail.list_checkpoints(store=store, principal=principal, after_seq=after_seq, limit=limit)


@router.post("/checkpoints", response_model=SignOut, responses=errors(401, 403))
def sign(store: StoreDep, principal: PrincipalDep) -> SignOut:
    """Sign the current head now (admin)."""
    signed = trail.sign_checkpoint(store=store, principal=principal)
    return SignOut(checkpoint=None if signed is None else CheckpointOut.model_validate(signed))


@router.get("/entries", response_model=list[EntryOut], responses=errors(401, 403))
def entries(store: StoreDep, principal: PrincipalDep, after_seq: AfterSeq = 0,
            limit: Limit = 100) -> list[trail.EntryView]:
    return trail.list_entries(store=store, principal=principal, after_seq=after_seq, limit=limit)


@router.get("/public-key", response_model=PublicKeyOut)
def public_key(store: StoreDep) -> PublicKeyOut:
    """The key that verifies checkpoints. Public: anyone may check an exported trail with it."""
    key, key_id = trail.public_key(store=store)
    return PublicKeyOut(public_key=key, key_id=key_id)
