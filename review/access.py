"""Roles, permissions and bearer API tokens.

Tokens are 256-bit random strings shown once; the database keeps only their SHA-256 (a high-entropy token
needs no slow hash: there is nothing to brute-force). The token's ``name`` is the person's identity in case
history; in the audit trail it appears only as a keyed pseudonym.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select, update

from audit.log import PendingEntry
from review.errors import PermissionDeniedError
from review.models import ApiTokenRow
from review.store import SqlCaseStore

TOKEN_PREFIX = "lgt_"


class Role(StrEnum):
    MODERATOR = "moderator"
    SENIOR = "senior"  # sees escalations, may report to NCMEC
    AUDITOR = "auditor"  # read-only: a regulator's seat
    ADMIN = "admin"


class Permission(StrEnum):
    READ_CASES = "read_cases"
    READ_ESCALATED = "read_escalated"
    WORK_CASES = "work_cases"  # claim, heartbeat, release, decide, escalate
    WORK_ESCALATED = "work_escalated"
    REPORT_NCMEC = "report_ncmec"
    READ_AUDIT = "read_audit"
    SIGN_CHECKPOINT = "sign_checkpoint"


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.MODERATOR: frozenset({Permission.READ_CASES, Permission.WORK_CASES}),
    Role.SENIOR: frozenset({Permission.READ_CASES, Permission.READ_ESCALATED, Permission.WORK_CASES,
                            Permission.WORK_ESCALATED, Permission.REPORT_NCMEC}),
    Role.AUDITOR: frozenset({Permission.READ_CASES, Permission.READ_ESCALATED, Permission.READ_AUDIT}),
    Role.ADMIN: frozenset(Permission),
}

WHY: dict[Permission, str] = {
    Permission.READ_CASES: "reading cases",
    Permission.READ_ESCALATED: "escalated cases are for senior moderators",
    Permission.WORK_CASES: "working cases (claim, decide, escalate) needs a moderator, senior or admin token",
    Permission.WORK_ESCALATED: "escalated cases are worked by senior moderators",
    Permission.REPORT_NCMEC: "reporting to NCMEC needs a senior moderator",
    Permission.READ_AUDIT: "the audit trail is readable by auditors and admins",
    Permission.SIGN_CHECKPOINT: "signing audit checkpoints needs an admin token",
}


@dataclass(frozen=True, slots=True)
class Principal:
    token_id: str
    name: str
    role: Role

    def can(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]

    def require(self, permission: Permission) -> None:
        if not self.can(permission):
            raise PermissionDeniedError(f"role '{self.role}' may not do this: {WHY[permission]}")


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(*, store: SqlCaseStore, role: Role, name: str, now: datetime) -> tuple[Principal, str]:
    """Create a token; returns the principal and the token, which is never stored or shown again."""
    name = name.strip()
    if not name or len(name) > 128:
        raise ValueError("name must be 1..128 characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = "tok-" + secrets.token_hex(8)
    with store.transaction() as session:
        session.add(ApiTokenRow(id=token_id, name=name, role=role.value, token_sha256=token_sha256(token),
                                created_at=now))
        session.flush()
        store.audit.append(session.connection(), [PendingEntry(
            "token.created", f"token:{token_id}", payload={"token_id": token_id, "role": role.value})])
    return Principal(token_id, name, role), token


def revoke_token(*, store: SqlCaseStore, token_id: str, now: datetime) -> bool:
    with store.transaction() as session:
        done = session.execute(update(ApiTokenRow).where(ApiTokenRow.id == token_id,
                                                         ApiTokenRow.revoked_at.is_(None))
                               .values(revoked_at=now).returning(ApiTokenRow.id)).first()
        if done is not None:
            store.audit.append(session.connection(), [PendingEntry(
                "token.revoked", f"token:{token_id}", payload={"token_id": token_id})])
        return done is not None


def list_tokens(*, store: SqlCaseStore) -> list[tuple[str, str, Role, datetime, datetime | None]]:
    with store.sessions() as session:
        rows = session.scalars(select(ApiTokenRow).order_by(ApiTokenRow.created_at))
        return [(r.id, r.name, Role(r.role), r.created_at, r.revoked_at) for r in rows]


def authenticate(*, store: SqlCaseStore, token: str) -> Principal | None:
    """The principal of a live token, or None (unknown, malformed or revoked)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    with store.sessions() as session:
        row = session.scalars(select(ApiTokenRow).where(ApiTokenRow.token_sha256 == token_sha256(token),
                                                        ApiTokenRow.revoked_at.is_(None))).first()
        return None if row is None else Principal(row.id, row.name, Role(row.role))


def principal_by_token_id(*, store: SqlCaseStore, token_id: str) -> Principal | None:
    """The principal of a live token by its id: the browser console's session keeps the id, never the token,
    so a revoked token ends its console sessions on the next request."""
    with store.sessions() as session:
        row = session.get(ApiTokenRow, token_id)
        return None if row is None or row.revoked_at is not None else Principal(row.id, row.name, Role(row.role))
