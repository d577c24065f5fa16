"""What can go wrong around a worker, and the one retry policy for it.

Poison input is not here: it is dead-lettered and committed (see ``deadletter``). A *dependency* fault (Redis,
the database or the broker unreachable) pauses consumption and retries the whole batch with exponential
backoff; every effect is idempotent, so a retry after a partial write is harmless. When the outage outlasts
``settings.dependency_retry_seconds`` the worker stops with ``DependencyRetryExhaustedError`` *without*
committing, so the uncommitted events are redelivered to whichever worker runs next.
"""

from __future__ import annotations

from dataclasses import dataclass

from kafka.errors import KafkaError

from pipeline.state import StateStoreError


class DependencyUnavailableError(RuntimeError):
    """A service the worker needs did not answer. Operators: check the named service; the worker retries."""

    dependency = "dependency"


class BrokerUnavailableError(DependencyUnavailableError):
    """Kafka did not accept a produce or an offset commit. Operators: check the brokers and
    LIFEGUARD_KAFKA_BOOTSTRAP; the batch is retried and its offsets are not committed until it succeeds."""

    dependency = "kafka"


class DatabaseUnavailableError(DependencyUnavailableError):
    """The case database refused a transaction. Operators: check PostgreSQL (LIFEGUARD_DATABASE_URL) or the
    SQLite file's disk; the batch is retried and nothing is committed until it succeeds."""

    dependency = "database"


class DependencyRetryExhaustedError(RuntimeError):
    """A dependency stayed down longer than ``dependency_retry_seconds``. The worker exits non-zero without
    committing the batch it held. Operators: restore the dependency and restart the worker; nothing is lost."""


class WorkerStoppedError(RuntimeError):
    """The worker was asked to stop while it was waiting out a dependency outage; its batch stays uncommitted
    and is redelivered to the next worker."""


def dependency_of(exc: BaseException) -> str | None:
    """Name of the dependency a failure points at, or None when it is not a dependency fault (a bug)."""
    if isinstance(exc, DependencyUnavailableError):
        return exc.dependency
    if isinstance(exc, StateStoreError):
        return "redis"
    if isinstance(exc, KafkaError) and getattr(exc, "retriable", False):
        return "kafka"
    return None


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: ``first``, doubling, at most ``cap`` seconds between attempts."""

    first: float = 0.25
    cap: float = 8.0

    def delay(self, attempt: int) -> float:
        return float(min(self.cap, self.first * 2.0 ** min(attempt, 30)))
