"""Engine construction and programmatic migrations for the case store (PostgreSQL or embedded SQLite)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from pipeline.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK_KEY = 0x4C47_4D49_4752  # "LGMIGR": one migrator at a time when several processes start


class DatabaseError(RuntimeError):
    """The case database is unreachable or its schema cannot be brought to the current version. Operators:
    check LIFEGUARD_DATABASE_URL and that the database is up; then run `lifeguard db upgrade`."""


def make_engine(settings: Settings) -> Engine:
    url = make_url(settings.effective_database_url())
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _sqlite_transactions(engine)
        return engine
    if url.get_backend_name() == "postgresql" and url.get_driver_name() in ("", "psycopg2"):
        url = url.set(drivername="postgresql+psycopg")
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def writer(engine: Engine) -> Engine:
    """The same pool, but SQLite transactions begin IMMEDIATE: a writer takes the write lock up front, so two
    writers queue on busy_timeout instead of failing with 'database is locked' when a reader upgrades to a
    writer. Read transactions stay DEFERRED and, with WAL, never wait for writers."""
    return engine.execution_options(sqlite_begin="IMMEDIATE")


def _sqlite_transactions(engine: Engine) -> None:

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy's begin event issue BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get("sqlite_begin") == "IMMEDIATE" else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")


def _config(conn: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    return cfg


def head_revision() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot read the schema version: {exc.__class__.__name__}: {exc}") from None


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Migrate to head; returns (revision before, revision after). Safe when several processes start at once:
    PostgreSQL migrations hold an advisory lock, SQLite ones the write lock."""
    try:
        with writer(engine).begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            before = MigrationContext.configure(conn).get_current_revision()
            command.upgrade(_config(conn), "head")
        return before, head_revision()
    except SQLAlchemyError as exc:
        raise DatabaseError(f"migration failed: {exc.__class__.__name__}: {exc}") from None


def ensure_schema(engine: Engine) -> None:
    if current_revision(engine) != head_revision():
        upgrade(engine)
