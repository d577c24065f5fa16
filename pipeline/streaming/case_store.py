"""The worker's view of the case store (the review package owns the tables): a ``CaseStore`` port, the way to
open the configured one, and the guard that turns database outages into retryable dependency faults."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from pipeline.cases import MemoryCaseSink
from pipeline.contract import Event
from pipeline.decision import CaseUpdate, Decision
from pipeline.settings import Settings
from pipeline.streaming.faults import DatabaseUnavailableError


class CaseStoreMissingError(RuntimeError):
    """The review package's case store is not installed. Operators: install the full ``lifeguard`` package."""


class CaseStore(Protocol):
    """Writes cases, their decision records and audit entries in one transaction, idempotently: applying the
    same updates again (redelivery) changes nothing. ``cases_report`` has the replay report's ``cases`` shape."""

    def apply(self, updates: Sequence[CaseUpdate], decisions: Sequence[Decision],
              events: Sequence[Event] = ()) -> Any: ...

    def case_risks(self, conversation_ids: Iterable[str]) -> dict[str, float]: ...

    def cases_report(self) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


class MemoryCaseStore:
    """Replay's in-memory sink behind the ``CaseStore`` port, for single-process tests. Not durable."""

    def __init__(self) -> None:
        self.sink = MemoryCaseSink()
        self._applied: set[tuple[str, str]] = set()

    def apply(self, updates: Sequence[CaseUpdate], decisions: Sequence[Decision],
              events: Sequence[Event] = ()) -> None:
        fresh = [u for u in updates if (u.conversation_id, u.event_id) not in self._applied]
        self._applied.update((u.conversation_id, u.event_id) for u in fresh)
        self.sink.apply(fresh, decisions)

    def case_risks(self, conversation_ids: Iterable[str]) -> dict[str, float]:
        return self.sink.case_risks(conversation_ids)

    def cases_report(self) -> list[dict[str, Any]]:
        return self.sink.report()

    def close(self) -> None:
        return None


def _outage_types() -> tuple[type[BaseException], ...]:
    from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError, TimeoutError

    types: list[type[BaseException]] = [OperationalError, InterfaceError, DisconnectionError, TimeoutError]
    try:
        from review.db import DatabaseError
    except ImportError:
        pass
    else:
        types.append(DatabaseError)
    return tuple(types)


class GuardedCaseStore:
    """Delegates to the real store; a connection-level database failure becomes ``DatabaseUnavailableError``
    so the worker pauses and retries instead of crashing. Anything else (a bug) propagates unchanged."""

    def __init__(self, inner: CaseStore) -> None:
        self.inner = inner
        self._outages = _outage_types()

    def apply(self, updates: Sequence[CaseUpdate], decisions: Sequence[Decision],
              events: Sequence[Event] = ()) -> Any:
        try:
            return self.inner.apply(updates, decisions, events)
        except self._outages as exc:
            raise DatabaseUnavailableError(f"case store write failed ({type(exc).__name__}: {exc}); check the "
                                           "database behind LIFEGUARD_DATABASE_URL (or the SQLite file)") from exc

    def case_risks(self, conversation_ids: Iterable[str]) -> dict[str, float]:
        try:
            return self.inner.case_risks(conversation_ids)
        except self._outages as exc:
            raise DatabaseUnavailableError(f"case store read failed ({type(exc).__name__}: {exc}); check the "
                                           "database behind LIFEGUARD_DATABASE_URL (or the SQLite file)") from exc

    def cases_report(self) -> list[dict[str, Any]]:
        return self.inner.cases_report()

    def close(self) -> None:
        self.inner.close()


def open_case_store(settings: Settings) -> CaseStore:
    """The review package's store for ``settings.effective_database_url()`` (SQLite under data_dir by default)."""
    try:
        from review.store import open_case_store as open_review_store
    except ImportError as exc:
        raise CaseStoreMissingError(f"review.store is not importable ({exc}); install the complete lifeguard "
                                    "package") from exc
    try:
        store: CaseStore = open_review_store(settings)
    except _outage_types() as exc:
        raise DatabaseUnavailableError(f"cannot open the case database ({type(exc).__name__}: {exc}); check "
                                       "LIFEGUARD_DATABASE_URL and that the database is up") from exc
    return store
