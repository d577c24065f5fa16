"""The review suite's fixtures: SQLite and PostgreSQL (marked services) stores with a fake clock."""

from tests.review.conftest import backend, clock, pg_backend, postgres, settings, store

__all__ = ["backend", "clock", "pg_backend", "postgres", "settings", "store"]
