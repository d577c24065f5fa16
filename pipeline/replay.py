"""``lifeguard replay``: the backtest, shadow mode and evaluation harness.

Streams a JSONL file of events through the same ``DecisionRunner`` as the Kafka worker, with in-memory state.
Invalid lines are reported with their line number and reason, never fatal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pipeline.cases import CaseSink, MemoryCaseSink, raising, updates_of
from pipeline.contract import Event, EventValidationError, parse_event
from pipeline.decision import CaseUpdate, Decision, Detectors
from pipeline.runner import DecisionRunner, collect_between_batches
from pipeline.state import MemoryStateStore

BATCH_SIZE = 1000


@runtime_checkable
class TranscriptSink(Protocol):
    """A ``CaseSink`` that also keeps the events' text for case transcripts (the review store)."""

    accepts_events: bool

    def apply(self, updates: Sequence[CaseUpdate], decisions: Sequence[Decision],
              events: Sequence[Event] = ()) -> None: ...


class ReplayInputError(RuntimeError):
    """The events file cannot be read. Operators: check the path and permissions."""


@dataclass(slots=True)
class ReplayResult:
    events: int = 0
    duplicates: int = 0
    invalid: list[dict[str, Any]] = field(default_factory=list)
    cases: list[dict[str, Any]] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return {"events": self.events, "invalid": self.invalid, "cases": self.cases, "timing": self.timing}


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ReplayInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            stripped = line.rstrip(b"\r\n")
            if stripped.strip():
                yield number, stripped


def replay(
    path: Path,
    detectors: Detectors,
    *,
    sink: CaseSink | None = None,
    keep_decisions: bool = False,
    on_progress: Callable[[int], None] | None = None,
    on_batch: Callable[[list[Decision]], None] | None = None,
) -> ReplayResult:
    """Decide every event of ``path`` in file order. ``sink`` receives case updates as they happen (the
    in-memory report sink is always used as well, for the report's ``cases``)."""
    if not path.is_file():
        raise ReplayInputError(f"cannot read {path}: no such file")
    memory_sink = MemoryCaseSink()
    runner = DecisionRunner(MemoryStateStore(), detectors)
    result = ReplayResult()
    started = time.perf_counter()
    decide_seconds = 0.0
    batch: list[Event] = []

    def flush() -> None:
        nonlocal decide_seconds
        t0 = time.perf_counter()
        decided = runner.decide_batch(batch)
        decide_seconds += time.perf_counter() - t0
        updates = updates_of(decided.decisions)
        memory_sink.apply(updates, decided.decisions)
        if isinstance(sink, TranscriptSink):
            sink.apply(updates, decided.decisions, events=tuple(batch))
        elif sink is not None:
            sink.apply(updates, decided.decisions)
        runner.commit_state(decided)
        reconciled = runner.reconcile_subjects(decided)
        if reconciled:
            memory_sink.apply(raising(reconciled, memory_sink.case_risks(u.conversation_id for u in reconciled)), [])
            if sink is not None:
                sink.apply(raising(reconciled, sink.case_risks(u.conversation_id for u in reconciled)), [])
        result.duplicates += len(decided.duplicates)
        if keep_decisions:
            result.decisions.extend(decided.decisions)
        if on_batch is not None:
            on_batch(decided.decisions)
        if on_progress is not None:
            on_progress(len(batch))
        batch.clear()

    for number, raw in read_lines(path):
        try:
            event = parse_event(raw)
        except EventValidationError as exc:
            result.invalid.append({"line": number, "reason": str(exc)})
            continue
        result.events += 1
        batch.append(event)
        if len(batch) >= BATCH_SIZE:
            flush()
            collect_between_batches()
    if batch:
        flush()
    elapsed = time.perf_counter() - started
    result.cases = memory_sink.report()
    result.timing = {
        "seconds": round(elapsed, 3),
        "decide_seconds": round(decide_seconds, 3),
        "events_per_second": round(result.events / elapsed, 1) if elapsed > 0 else 0.0,
        "duplicates_skipped": float(result.duplicates),
    }
    return result
