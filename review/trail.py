"""The audit trail as the API serves it: checkpoints, entries, the public key, signing on demand."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from audit.chain import Checkpoint, key_id, public_key_b64
from review.access import Permission, Principal
from review.store import SqlCaseStore

MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class EntryView:
    entry: dict[str, Any]
    hash: str


def list_checkpoints(*, store: SqlCaseStore, principal: Principal, after_seq: int, limit: int) -> list[Checkpoint]:
    principal.require(Permission.READ_AUDIT)
    with store.sessions() as session:
        return store.audit.checkpoints(session.connection(), after_seq=after_seq, limit=min(limit, MAX_PAGE))


def list_entries(*, store: SqlCaseStore, principal: Principal, after_seq: int, limit: int) -> list[EntryView]:
    principal.require(Permission.READ_AUDIT)
    with store.sessions() as session:
        rows = store.audit.entries(session.connection(), after_seq=after_seq, limit=min(limit, MAX_PAGE))
    return [EntryView(json.loads(text), digest) for text, digest in rows]


def sign_checkpoint(*, store: SqlCaseStore, principal: Principal) -> Checkpoint | None:
    """Sign the current head now (None when the log is empty or the head is already signed)."""
    principal.require(Permission.SIGN_CHECKPOINT)
    with store.transaction() as session:
        return store.audit.checkpoint(session.connection())


def public_key(*, store: SqlCaseStore) -> tuple[str, str]:
    """(base64 raw Ed25519 public key, key id)."""
    return public_key_b64(store.audit.public_key), key_id(store.audit.public_key)
