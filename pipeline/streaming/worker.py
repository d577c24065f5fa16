"""``lifeguard run``: the Kafka worker. At-least-once delivery with idempotent effects.

One batch at a time (``poll`` up to ``max_poll_records``), in this order:

1. parse every record; poison ones become dead letters (never dropped, never fatal);
2. ``DecisionRunner.decide_batch``: the same dedupe + ``decide`` path as ``lifeguard replay``;
3. the case store: cases, decision records and audit entries in one database transaction (idempotent);
4. ``actions.v1`` records and dead letters, flushed until the broker acknowledges them;
5. ``DecisionRunner.commit_state``: Redis state and the dedupe markers, in one ``MULTI``;
6. the consumer offsets, committed without waiting for the broker's answer (a failed commit stays pending
   and is sent again; what is pending at shutdown is committed synchronously).

A crash anywhere before 5 leaves the events un-marked: they are redelivered and decided again from the same
state, to the same result, and 3-4 are idempotent. A crash between 5 and the broker's acknowledgement of 6
redelivers events that are now marked: they are skipped. So redelivery never changes a result.

A dependency fault in 3-5 pauses the partitions, retries the batch with exponential backoff (polling while
paused, so the group membership stays alive) and resumes by itself; after ``dependency_retry_seconds`` the
worker gives up with ``DependencyRetryExhaustedError`` and commits nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from kafka.structs import OffsetAndMetadata

from models.exemplar import CascadeStats
from pipeline.cases import raising, updates_of
from pipeline.contract import Event, EventValidationError, parse_event
from pipeline.decision import Detectors
from pipeline.detectors import close_detectors
from pipeline.runner import DecisionRunner, collect_between_batches, freeze_startup_heap
from pipeline.settings import Settings
from pipeline.streaming.case_store import CaseStore
from pipeline.streaming.deadletter import DeadLetter
from pipeline.streaming.faults import (
    Backoff,
    DependencyRetryExhaustedError,
    WorkerStoppedError,
    dependency_of,
)
from pipeline.streaming.kafka_clients import CLIENT_TIMEOUT_MS, Publisher
from pipeline.streaming.metrics import WorkerMetrics

log = logging.getLogger(__name__)

_REBALANCED = (CommitFailedError, RebalanceInProgressError, IllegalGenerationError, UnknownMemberIdError)
MAX_KEPT_REASONS = 1000


@dataclass(slots=True)
class Batch:
    """Records of one poll by partition (partitions sorted), each partition's records in offset order."""

    by_partition: dict[TopicPartition, list[Any]]
    records: list[Any] = field(init=False)

    def __post_init__(self) -> None:
        self.records = [r for records in self.by_partition.values() for r in records]

    @classmethod
    def from_poll(cls, polled: dict[TopicPartition, list[Any]]) -> Batch:
        return cls({tp: polled[tp] for tp in sorted(polled, key=lambda t: (t.topic, t.partition)) if polled[tp]})

    def offsets(self) -> dict[TopicPartition, OffsetAndMetadata]:
        """The offset to commit per partition: one past its last record."""
        return {tp: OffsetAndMetadata(records[-1].offset + 1, "", -1) for tp, records in self.by_partition.items()}

    def partitions(self) -> set[TopicPartition]:
        return set(self.by_partition)

    def only(self, partitions: set[TopicPartition]) -> Batch:
        return Batch({tp: records for tp, records in self.by_partition.items() if tp in partitions})


@dataclass(slots=True)
class Parsed:
    events: list[Event]
    event_records: list[Any]  # the record each event came from, same order
    letters: list[DeadLetter]


@dataclass(slots=True)
class WorkerStats:
    """Totals for this process, read by the demo and the benchmark (the metrics endpoint has the same)."""

    consumed: int = 0
    decided: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    case_updates: int = 0
    actions: int = 0
    retries: int = 0
    batches: int = 0
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    dead_letter_reasons: list[tuple[str, int, int, str]] = field(default_factory=list)  # topic, part, offset
    latencies_ms: list[float] | None = None  # ingest -> durable decision, kept only when asked for
    first_record_at: float | None = None
    last_commit_at: float | None = None


def parse_records(records: Iterable[Any]) -> Parsed:
    parsed = Parsed([], [], [])
    for record in records:
        if record.value is None:
            reason, path = "empty record (no value)", ""
        else:
            try:
                event = parse_event(record.value)
            except EventValidationError as exc:
                reason, path = str(exc), exc.path
            else:
                parsed.events.append(event)
                parsed.event_records.append(record)
                continue
        parsed.letters.append(DeadLetter(record.topic, record.partition, record.offset, record.timestamp,
                                         record.key, record.value, list(record.headers or ()), reason, path))
    return parsed


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Runs on kafka-python's IO thread, inside ``poll``: it must not block, so it commits asynchronously."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.worker._on_revoked(set(revoked))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.worker._on_assigned(set(assigned))

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self.worker._on_lost(set(lost))


class Worker:
    def __init__(
        self,
        settings: Settings,
        *,
        consumer: Any,
        runner: DecisionRunner,
        cases: CaseStore,
        publisher: Publisher,
        metrics: WorkerMetrics | None = None,
        backoff: Backoff | None = None,
        keep_latencies: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.consumer = consumer
        self.runner = runner
        self.cases = cases
        self.publisher = publisher
        self.metrics = metrics or WorkerMetrics()
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.stats = WorkerStats(latencies_ms=[] if keep_latencies else None)
        self._stop = threading.Event()
        self._paused = False
        self._pending: dict[TopicPartition, OffsetAndMetadata] = {}  # effects durable, commit not acknowledged
        self._lock = threading.Lock()  # _pending is also read by the rebalance listener on the IO thread
        self._stage_times: dict[str, float] = {}  # the current batch's, for the slow-batch log
        self._commits_in_flight = 0  # asynchronous offset commits kafka-python has not answered yet
        self._commit_retry_at: float | None = None  # when to resend offsets a failed commit left pending
        self._commit_failures = 0  # failed commits in a row, for the resend backoff

    # -- lifecycle -----------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to finish its current batch, commit and return (safe from a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, stop_when: Callable[[Worker], bool] | None = None) -> None:
        """Consume until ``stop()`` (or ``stop_when(self)`` is true after a batch). Raises
        ``DependencyRetryExhaustedError`` when a dependency stays down too long."""
        self.consumer.subscribe(topics=[self.settings.topic_events], listener=_Listener(self))
        log.info("worker started", extra={"ctx": {"topic": self.settings.topic_events,
                                                  "group": self.settings.consumer_group}})
        gave_up = False
        try:
            while not self._stop.is_set():
                self.metrics.loop_tick()
                polled = self.consumer.poll(timeout_ms=self.settings.poll_timeout_ms)
                if polled:
                    self._handle(Batch.from_poll(polled))
                    del polled  # the batch's records too: the collector's pass walks only what outlives them
                    collect_between_batches()
                else:
                    self._retry_commit_when_idle()
                if stop_when is not None and stop_when(self):
                    break
        except DependencyRetryExhaustedError:
            gave_up = True
            raise
        except WorkerStoppedError as exc:
            log.warning("stopped during a dependency outage; the held batch was not committed and will be "
                        "redelivered", extra={"ctx": {"detail": str(exc)}})
        finally:
            self._shutdown(commit=not gave_up)

    def _shutdown(self, *, commit: bool) -> None:
        with self._lock:
            if not commit:
                self._pending.clear()
            pending = dict(self._pending)
        if pending:
            try:
                self.consumer.commit(offsets=pending, timeout_ms=CLIENT_TIMEOUT_MS)
                self._committed(pending, None, sent=False)
            except KafkaError as exc:
                log.warning("final offset commit failed; those records will be redelivered (dedupe skips them)",
                            extra={"ctx": {"error": str(exc)}})
        try:
            self.consumer.close(autocommit=False, timeout_ms=CLIENT_TIMEOUT_MS)
        finally:
            self.publisher.close()
            self.cases.close()
            close_detectors(self.runner.detectors)
            log.info("worker stopped", extra={"ctx": self._summary()})

    def _summary(self) -> dict[str, Any]:
        s = self.stats
        return {"consumed": s.consumed, "decided": s.decided, "duplicates": s.duplicates,
                "dead_lettered": s.dead_lettered, "case_updates": s.case_updates, "retries": s.retries}

    # -- one batch -----------------------------------------------------------------------------------------
    def _handle(self, batch: Batch) -> None:
        started = time.perf_counter()
        if self.stats.first_record_at is None:
            self.stats.first_record_at = time.time()
            self.metrics.first_record.set(self.stats.first_record_at)
        self.stats.consumed += len(batch.records)
        self.metrics.consumed.inc(len(batch.records))
        for tp, om in batch.offsets().items():
            self.metrics.record_read(tp.topic, tp.partition, om.offset)
        outage_started: float | None = None
        attempt = 0
        parsed = parse_records(batch.records)
        self._stage_times = {"parse": time.perf_counter() - started}
        while True:
            owned = set(self.consumer.assignment())
            if not batch.partitions() <= owned:
                # Partitions were revoked while we waited out an outage: their new owner re-reads them.
                batch = batch.only(owned)
                parsed = parse_records(batch.records)
            if not batch.records:
                break
            try:
                self._apply_effects(parsed)
                with self._lock:
                    self._pending.update(batch.offsets())
                self._commit_pending()
                break
            except Exception as exc:
                dependency = dependency_of(exc)
                if dependency is None:
                    raise  # a bug: crash loudly, commit nothing
                now = self.clock()
                if outage_started is None:
                    outage_started = now
                    self._pause()
                waited = now - outage_started
                if waited >= self.settings.dependency_retry_seconds:
                    log.error("dependency still unavailable; giving up without committing",
                              extra={"ctx": {"dependency": dependency, "waited_s": round(waited, 1),
                                             "error": str(exc)}})
                    limit = self.settings.dependency_retry_seconds
                    raise DependencyRetryExhaustedError(
                        f"{dependency} unavailable for {waited:.0f} s (limit {limit:.0f} s): {exc}. Offsets were "
                        f"not committed; restore {dependency} and restart the worker"
                    ) from exc
                delay = min(self.backoff.delay(attempt), self.settings.dependency_retry_seconds - waited)
                attempt += 1
                self.stats.retries += 1
                self.metrics.retries.labels(dependency).inc()
                log.warning("dependency unavailable; partitions paused, retrying the batch",
                            extra={"ctx": {"dependency": dependency, "attempt": attempt,
                                           "retry_in_s": round(delay, 2), "error": str(exc)}})
                self._idle(delay)
        if outage_started is not None:
            self._resume()
            log.info("dependency back; partitions resumed",
                     extra={"ctx": {"outage_s": round(self.clock() - outage_started, 1), "retries": attempt}})
        self._record_done(parsed, time.perf_counter() - started)

    def _apply_effects(self, parsed: Parsed) -> None:
        started = time.perf_counter()
        decided = self.runner.decide_batch(parsed.events)
        decide_done = time.perf_counter()
        if decided.decisions:
            self.metrics.decide_per_event.observe((decide_done - started) / len(decided.decisions))
        self._stage("decide", decide_done - started)
        self._record_cascade()
        duplicate_ids = {id(e) for e in decided.duplicates}
        decided_events = [e for e in parsed.events if id(e) not in duplicate_ids]
        updates = updates_of(decided.decisions)
        if decided.decisions:
            opened = self.cases.apply(updates, decided.decisions, decided_events)
            if isinstance(opened, int):
                self.metrics.cases_opened.inc(opened)
        cases_done = time.perf_counter()
        self._stage("cases", cases_done - decide_done)
        actions = [a for d in decided.decisions for a in d.actions]
        self.publisher.send_actions(actions)
        for letter in parsed.letters:
            self.publisher.send_dead_letter(letter)
        self.publisher.flush()
        publish_done = time.perf_counter()
        self._stage("publish", publish_done - cases_done)
        self.runner.commit_state(decided)
        # Re-score the touched subjects' conversations from the profiles as now stored (see
        # DecisionRunner.reconcile_subjects): fan-out flags then do not depend on partition order.
        reconciled = self.runner.reconcile_subjects(decided)
        if reconciled:
            reconciled = raising(reconciled, self.cases.case_risks(u.conversation_id for u in reconciled))
        if reconciled:
            opened_late = self.cases.apply(reconciled, [], [])
            if isinstance(opened_late, int):
                self.metrics.cases_opened.inc(opened_late)
            updates = updates + reconciled
        self._stage("state", time.perf_counter() - publish_done)
        # Counted once the effects are durable (a retried batch is not counted twice).
        self.stats.decided += len(decided.decisions)
        self.stats.duplicates += len(decided.duplicates)
        self.stats.case_updates += len(updates)
        self.stats.actions += len(actions)
        self.stats.dead_lettered += len(parsed.letters)
        self.metrics.decided.inc(len(decided.decisions))
        self.metrics.duplicates.inc(len(decided.duplicates))
        self.metrics.case_updates.inc(len(updates))
        self.metrics.actions.inc(len(actions))
        for letter in parsed.letters:
            kind = "encoding" if letter.reason.startswith(("not UTF-8", "not JSON", "expected a JSON", "empty")) \
                else "contract"
            self.metrics.dead_lettered.labels(kind).inc()
            log.warning("record dead-lettered", extra={"ctx": {
                "topic": letter.topic, "partition": letter.partition, "offset": letter.offset,
                "reason": letter.reason}})
            if len(self.stats.dead_letter_reasons) < MAX_KEPT_REASONS:
                self.stats.dead_letter_reasons.append((letter.topic, letter.partition, letter.offset, letter.reason))
        misrouted = [(e, r) for e, r in zip(parsed.events, parsed.event_records, strict=True)
                     if r.key != e.conversation_id.encode("utf-8")]
        if misrouted:
            self.metrics.misrouted.inc(len(misrouted))
            event, record = misrouted[0]
            log.warning("events not keyed by their conversation id: their conversation may be split across "
                        "partitions and workers, so its order is not guaranteed; fix the producer's key",
                        extra={"ctx": {"count": len(misrouted), "first_event_id": event.event_id,
                                       "partition": record.partition, "offset": record.offset}})

    def _stage(self, name: str, seconds: float) -> None:
        """One stage of the current batch: into the metrics and into the slow-batch log's breakdown."""
        self.metrics.stage_seconds.labels(name).inc(seconds)
        self._stage_times[name] = seconds

    def _record_cascade(self) -> None:
        """Copy the embedding cascade's counts (process totals kept by the classifier) into the metrics."""
        for classifier in self.runner.detectors.classifiers:
            stats = getattr(classifier, "stats", None)
            if isinstance(stats, CascadeStats):
                self.metrics.record_cascade(stats.scored, stats.admitted, stats.encoded)

    def _commit_pending(self) -> None:
        """Commit every durable offset of an owned partition, without waiting for the broker.

        The effects are durable before this is called, so the commit is only bookkeeping: were it lost, a
        restart would redeliver those records and dedupe would skip them. Waiting for the broker cost about
        3 ms per batch, idle time on the decision thread. kafka-python answers in ``_committed`` on this
        thread, inside a later ``poll`` or commit. A failed commit stays pending and goes out again with the
        next batch's, or from the idle loop; ``_shutdown`` commits what is left synchronously."""
        owned = set(self.consumer.assignment())
        with self._lock:
            mine = {tp: om for tp, om in self._pending.items() if tp in owned}
        if not mine:
            return
        self._commit_retry_at = None
        self._commits_in_flight += 1
        try:
            self.consumer.commit_async(offsets=mine, callback=self._committed)
        except KafkaError as exc:  # refused before it was sent (no coordinator, fenced, ...)
            self._committed(mine, exc)

    def _committed(self, offsets: dict[TopicPartition, OffsetAndMetadata], response: Any, *,
                   sent: bool = True) -> None:
        """kafka-python's answer to a commit (``response`` is an exception when it failed)."""
        if sent:
            self._commits_in_flight -= 1
        if isinstance(response, Exception):
            self._commit_retry_at = self.clock() + self.backoff.delay(self._commit_failures)
            self._commit_failures += 1
            if isinstance(response, _REBALANCED):
                log.warning("offsets not committed: the group rebalanced; records of partitions that moved are "
                            "re-read by their new owner and dedupe skips them", extra={"ctx": {"error": str(response)}})
                return
            self.stats.retries += 1
            self.metrics.retries.labels("kafka").inc()
            log.warning("offset commit failed; the offsets stay pending and are committed again (the effects are "
                        "durable, so at worst those records are redelivered and skipped)",
                        extra={"ctx": {"error": str(response), "partitions": _names(offsets)}})
            return
        self._commit_failures = 0
        with self._lock:
            for tp, om in offsets.items():
                if (held := self._pending.get(tp)) is not None and held.offset <= om.offset:
                    del self._pending[tp]
        for tp, om in offsets.items():
            if om.offset > self.stats.committed.get(tp, -1):
                self.stats.committed[tp] = om.offset
                self.metrics.record_committed(tp.topic, tp.partition, om.offset)
        self.stats.last_commit_at = time.time()
        self.metrics.last_commit.set(self.stats.last_commit_at)

    def _retry_commit_when_idle(self) -> None:
        """Offsets left pending by a failed commit, with no batch coming to carry them: send them again."""
        if self._commits_in_flight or self._commit_retry_at is None or self.clock() < self._commit_retry_at:
            return
        self._commit_pending()

    def _record_done(self, parsed: Parsed, seconds: float) -> None:
        self.stats.batches += 1
        self.metrics.batch_seconds.observe(seconds)
        if seconds * 1000 >= self.settings.slow_batch_ms:
            log.info("slow batch", extra={"ctx": {
                "records": len(parsed.event_records) + len(parsed.letters), "ms": round(seconds * 1000, 1),
                "stages_ms": {k: round(v * 1000, 1) for k, v in self._stage_times.items()},
                "first_event_id": parsed.events[0].event_id if parsed.events else None}})
        now_ms = time.time() * 1000
        latencies = self.stats.latencies_ms
        for record in parsed.event_records:
            latency_ms = max(0.0, now_ms - record.timestamp)
            self.metrics.ingest_latency.observe(latency_ms / 1000)
            if latencies is not None:
                latencies.append(latency_ms)

    # -- outage handling -----------------------------------------------------------------------------------
    def _pause(self) -> None:
        self._paused = True
        self.metrics.set_paused(True)
        assigned = list(self.consumer.assignment())
        if assigned:
            self.consumer.pause(*assigned)

    def _resume(self) -> None:
        self._paused = False
        self.metrics.set_paused(False)
        paused = list(self.consumer.paused())
        if paused:
            self.consumer.resume(*paused)

    def _idle(self, seconds: float) -> None:
        """Wait while paused, polling so heartbeats and rebalances proceed. Records from partitions assigned
        during the wait are put back (seek) and those partitions paused too."""
        deadline = self.clock() + seconds
        while True:
            if self._stop.is_set():
                raise WorkerStoppedError("stop requested while waiting for a dependency")
            remaining = deadline - self.clock()
            if remaining <= 0:
                return
            polled = self.consumer.poll(timeout_ms=max(1, int(min(remaining, 0.5) * 1000)))
            self.metrics.loop_tick()
            for tp, records in (polled or {}).items():
                if records:
                    self.consumer.seek(tp, records[0].offset)
                    self.consumer.pause(tp)

    # -- rebalance callbacks (IO thread) -------------------------------------------------------------------
    def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        with self._lock:
            pending = {tp: om for tp, om in self._pending.items() if tp in revoked}
            for tp in pending:
                self._pending.pop(tp, None)
        if pending:
            self.consumer.commit_async(offsets=pending)
        self.metrics.set_assigned(max(0, self.metrics.assigned_count - len(revoked)))
        log.info("partitions revoked", extra={"ctx": {"partitions": _names(revoked),
                                                      "committed_on_revoke": len(pending)}})

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        if self._paused and assigned:
            self.consumer.pause(*assigned)
        self.metrics.set_assigned(len(self.consumer.assignment()))
        log.info("partitions assigned", extra={"ctx": {"partitions": _names(assigned)}})

    def _on_lost(self, lost: set[TopicPartition]) -> None:
        with self._lock:
            for tp in lost:
                self._pending.pop(tp, None)
        self.metrics.set_assigned(len(self.consumer.assignment()))
        log.warning("partitions lost (session expired); their records go to the new owner",
                    extra={"ctx": {"partitions": _names(lost)}})


def _names(partitions: Iterable[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}/{tp.partition}" for tp in partitions)


def build_worker(settings: Settings, *, detectors: Detectors | None = None, cases: CaseStore | None = None,
                 metrics: WorkerMetrics | None = None, keep_latencies: bool = False) -> Worker:
    """A worker wired to the configured services (``settings`` must already name them: see
    ``embedded.with_services``). Everything the worker needs is created here, once; ``detectors`` defaults to
    ``load_detectors(settings)``, the loader replay uses too."""
    from pipeline.detectors import load_detectors
    from pipeline.streaming.case_store import GuardedCaseStore, open_case_store
    from pipeline.streaming.kafka_clients import new_consumer, new_producer
    from pipeline.streaming.redis_store import RedisStateStore

    if settings.redis_url is None:
        raise ValueError("build_worker needs settings.redis_url; resolve services first")
    store = RedisStateStore.from_url(settings.redis_url, prefix=settings.redis_key_prefix,
                                     state_ttl_seconds=settings.state_ttl_seconds,
                                     dedupe_ttl_seconds=settings.dedupe_ttl_seconds)
    store.ping()
    metrics = metrics or WorkerMetrics()
    metrics.add_probe("redis", store.ping)
    runner = DecisionRunner(store, detectors if detectors is not None else load_detectors(settings))
    case_store = GuardedCaseStore(cases if cases is not None else open_case_store(settings))
    publisher = Publisher(new_producer(settings), settings)
    worker = Worker(settings, consumer=new_consumer(settings), runner=runner, cases=case_store,
                    publisher=publisher, metrics=metrics, keep_latencies=keep_latencies)
    # Last: the database, Kafka and Redis clients (and the modules they import) are long-lived too.
    freeze_startup_heap()
    return worker


def committed_all(targets: dict[TopicPartition, int]) -> Callable[[Worker], bool]:
    """A ``stop_when`` for the demo and the benchmark: every target offset committed by this worker."""

    def done(worker: Worker) -> bool:
        return all(worker.stats.committed.get(tp, 0) >= end for tp, end in targets.items())

    return done


__all__: Sequence[str] = ["Batch", "Worker", "WorkerStats", "build_worker", "committed_all", "parse_records"]
