"""Alembic environment. Migrations run programmatically (``review.db.upgrade``), on a connection the caller
opened inside a transaction; there is no alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from audit.tables import metadata as audit_metadata
from review.models import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations through `lifeguard db upgrade` (review.db.upgrade), not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=[Base.metadata, audit_metadata],
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
