"""Throwaway databases for the review and audit suites.

PostgreSQL: one database ``lifeguard_test_<random>`` per test process, migrated once, emptied between tests
(audit tables refuse DELETE, so the reset runs with ``session_replication_role = replica``, which only a
superuser may set — the test role is one; the application's role must not be), dropped at the end.
SQLite: a fresh file per test under tmp_path, the embedded default.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from sqlalchemy import create_engine, text

from pipeline.settings import Settings
from review.db import make_engine, upgrade

ADMIN_DSN = os.environ.get("LIFEGUARD_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test")


@dataclass
class FakeClock:
    now: datetime = field(default_factory=lambda: datetime(2026, 3, 2, 16, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class ThrowawayPostgres:
    def __init__(self) -> None:
        self.name = f"lifeguard_test_{secrets.token_hex(5)}"
        self.users = 0
        self.url: str | None = None

    def acquire(self) -> str:
        if self.url is None:
            with psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'CREATE DATABASE "{self.name}"')
            params = psycopg.conninfo.conninfo_to_dict(ADMIN_DSN)
            self.url = (f"postgresql+psycopg://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}:"
                        f"{params.get('port', 5432)}/{self.name}")
            engine = make_engine(Settings(database_url=self.url))
            upgrade(engine)
            engine.dispose()
        self.users += 1
        return self.url

    def release(self) -> None:
        self.users -= 1
        if self.users > 0 or self.url is None:
            return
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                         "AND pid <> pg_backend_pid()", (self.name,))
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}"')
        self.url = None

    def reset(self) -> None:
        assert self.url is not None
        engine = create_engine(self.url)
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            tables = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                                       "AND tablename <> 'alembic_version'")).scalars().all()
            for table in sorted(tables, key=lambda t: t == "cases"):  # rows pointing at cases go first
                conn.execute(text(f'DELETE FROM "{table}"'))  # DELETE beats TRUNCATE on tables this small
        engine.dispose()


POSTGRES = ThrowawayPostgres()


def postgres_available() -> str | None:
    """None if PostgreSQL answers, else why not."""
    try:
        with psycopg.connect(ADMIN_DSN, connect_timeout=3):
            return None
    except psycopg.OperationalError as exc:
        return f"PostgreSQL unavailable ({ADMIN_DSN}): {exc}"


def settings_for(backend: str, data_dir: Path, **overrides: object) -> Settings:
    url = POSTGRES.url if backend == "postgresql" else None
    return Settings(data_dir=data_dir, database_url=url, **overrides)  # type: ignore[arg-type]
