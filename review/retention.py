"""Retention: purge stored message text after its retention period. The purge is itself audited, and because
audit entries only ever hold hashes, purging text leaves the chain intact (``text_sha256`` stays, so an
exported transcript can still be matched against what was shown)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update

from audit.log import PendingEntry
from review.access import Permission, Principal
from review.models import MessageRow
from review.store import SqlCaseStore


def purge_message_text(*, store: SqlCaseStore, older_than: datetime, now: datetime,
                       principal: Principal | None = None) -> int:
    """Null the text of messages sent before ``older_than``; returns how many. ``principal`` None = the
    scheduled system job; a person running it needs admin rights."""
    if principal is not None:
        principal.require(Permission.SIGN_CHECKPOINT)  # admin only
    with store.transaction() as session:
        purged = session.execute(update(MessageRow).where(MessageRow.ts < older_than, MessageRow.text.is_not(None))
                                 .values(text=None, purged_at=now).returning(MessageRow.event_id)).all()
        store.audit.append(session.connection(), [PendingEntry(
            "retention.purged", "messages", actor_id=principal.name if principal else None,
            payload={"older_than": older_than.isoformat(), "messages": len(purged)})])
        return len(purged)
