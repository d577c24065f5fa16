"""Fixtures: every store test runs on the embedded default (SQLite) and on PostgreSQL (marked services)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.settings import Settings
from review.store import SqlCaseStore, open_case_store
from tests.review.databases import POSTGRES, FakeClock, postgres_available, settings_for

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.services)]


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    reason = postgres_available()
    if reason is not None:
        pytest.skip(reason)
    url = POSTGRES.acquire()
    yield url
    POSTGRES.release()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "postgresql":
        request.getfixturevalue("postgres")
        POSTGRES.reset()
    return name


@pytest.fixture
def pg_backend(postgres: str) -> str:
    """PostgreSQL only (concurrency, triggers)."""
    POSTGRES.reset()
    return "postgresql"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(backend: str, tmp_path: Path) -> Settings:
    return settings_for(backend, tmp_path / "data", lease_seconds=60, audit_checkpoint_every=10)


@pytest.fixture
def store(settings: Settings, clock: FakeClock) -> Iterator[SqlCaseStore]:
    opened = open_case_store(settings, clock=clock)
    yield opened
    opened.close()
