"""The worker's delivery logic with an in-memory consumer, store and publisher (no services): ordering of
effects, dead letters, pause + backoff + resume on a dependency fault, giving up without committing,
redelivery after a crash between the state write and the offset commit, rebalances during an outage."""

from __future__ import annotations

import contextlib
from collections import namedtuple
from collections.abc import Iterable
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError

from pipeline.cases import MemoryCaseSink, updates_of
from pipeline.contract import EventValidationError, parse_event
from pipeline.decision import Detectors, PlatformAction
from pipeline.detectors import load_detectors
from pipeline.runner import DecisionRunner
from pipeline.settings import Settings
from pipeline.state import EventKey, MemoryStateStore, StateStoreError, StateWrites
from pipeline.streaming.case_store import MemoryCaseStore
from pipeline.streaming.deadletter import DeadLetter
from pipeline.streaming.faults import Backoff, DependencyRetryExhaustedError
from pipeline.streaming.produce import conversation_key
from pipeline.streaming.worker import Worker
from pipeline.synth import generate

Record = namedtuple("Record", "topic partition offset timestamp key value headers")
TOPIC = "events.v1"


@pytest.fixture(scope="module")
def detectors() -> Detectors:
    return load_detectors(Settings(), with_models=False)


MALFORMED: list[bytes] = []


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    import json

    synth = generate(seed=5, conversations=40, grooming_share=0.5, malformed=6)
    out = [json.dumps(e, sort_keys=True).encode() for e in synth.events]
    for i, bad in enumerate(synth.malformed):
        out.insert(7 + 31 * i, bad)
    MALFORMED[:] = synth.malformed
    return out


def replay_cases(lines: list[bytes], detectors: Detectors) -> list[dict[str, Any]]:
    events = []
    for line in lines:
        try:
            events.append(parse_event(line))
        except EventValidationError:
            continue
    runner = DecisionRunner(MemoryStateStore(), detectors)
    sink = MemoryCaseSink()
    decided = runner.decide_batch(events)
    sink.apply(updates_of(decided.decisions), decided.decisions)
    return sink.report()


def flagged(cases: list[dict[str, Any]]) -> dict[str, float]:
    """What must equal replay: the conversations flagged and their risk. (Which event opened a fan-out case
    can differ: partitions interleave differently from file order, and the subject sweep reconciles the risk.)"""
    return {c["conversation_id"]: c["risk"] for c in cases}


class FakeConsumer:
    """Partitions by key hash like Kafka; ``poll`` returns up to ``batch`` records from unpaused partitions."""

    def __init__(self, lines: Iterable[bytes], partitions: int = 3, batch: int = 25,
                 clock: list[float] | None = None) -> None:
        self.logs: dict[TopicPartition, list[Record]] = {TopicPartition(TOPIC, p): [] for p in range(partitions)}
        for i, line in enumerate(lines):
            key = conversation_key(line)
            tp = TopicPartition(TOPIC, (sum(key) if key else i) % partitions)
            log = self.logs[tp]
            log.append(Record(TOPIC, tp.partition, len(log), 1_700_000_000_000 + i, key, line, []))
        self.positions = dict.fromkeys(self.logs, 0)
        self.owned = set(self.logs)
        self.paused_set: set[TopicPartition] = set()
        self.committed: dict[TopicPartition, int] = {}
        self.commit_calls: list[dict[TopicPartition, int]] = []
        self.fail_commits = 0
        self.batch = batch
        self.listener: Any = None
        self.closed = False
        self.clock = clock
        self.polls_while_paused = 0

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.listener = listener
        listener.on_partitions_assigned(set(self.owned))

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)

    def poll(self, timeout_ms: int = 0) -> dict[TopicPartition, list[Record]]:
        out: dict[TopicPartition, list[Record]] = {}
        budget = self.batch
        for tp in sorted(self.owned - self.paused_set, key=lambda t: t.partition):
            records = self.logs[tp][self.positions[tp]:self.positions[tp] + budget]
            if records:
                out[tp] = records
                self.positions[tp] += len(records)
                budget -= len(records)
            if budget <= 0:
                break
        if self.paused_set:
            self.polls_while_paused += 1
        if not out and self.clock is not None:
            self.clock[0] += timeout_ms / 1000
        return out

    def pause(self, *tps: TopicPartition) -> None:
        self.paused_set.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused_set.difference_update(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_set)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def commit(self, offsets: dict[TopicPartition, Any], timeout_ms: int | None = None) -> None:
        if self.fail_commits:
            self.fail_commits -= 1
            raise KafkaTimeoutError("broker away")
        self.commit_calls.append({tp: om.offset for tp, om in offsets.items()})
        self.committed.update({tp: om.offset for tp, om in offsets.items()})

    def commit_async(self, offsets: dict[TopicPartition, Any], callback: Any = None) -> None:
        try:
            self.commit(offsets)
        except KafkaTimeoutError as exc:
            if callback is None:
                raise
            callback(offsets, exc)
        else:
            if callback is not None:
                callback(offsets, None)

    def close(self, autocommit: bool = True, timeout_ms: int | None = None) -> None:
        self.closed = True

    def revoke(self, *tps: TopicPartition) -> None:
        self.listener.on_partitions_revoked(set(tps))
        self.owned.difference_update(tps)

    def ends(self) -> dict[TopicPartition, int]:
        return {tp: len(log) for tp, log in self.logs.items() if log}


class FakePublisher:
    def __init__(self) -> None:
        self.actions: list[PlatformAction] = []
        self.letters: list[DeadLetter] = []
        self.flushes = 0
        self.closed = False

    def send_actions(self, actions: Iterable[PlatformAction]) -> int:
        batch = list(actions)
        self.actions.extend(batch)
        return len(batch)

    def send_dead_letter(self, letter: DeadLetter) -> None:
        self.letters.append(letter)

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.closed = True


class FlakyStore(MemoryStateStore):
    """Redis stand-in that is down for the next ``failures`` applies (or for good with ``down``)."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0
        self.down = False
        self.attempts = 0

    def apply(self, writes: StateWrites) -> None:
        self.attempts += 1
        if self.down or self.failures > 0:
            self.failures -= 1
            raise StateStoreError("Redis unavailable during write state (ConnectionError)")
        super().apply(writes)


def make_worker(consumer: FakeConsumer, store: MemoryStateStore, detectors: Detectors,
                cases: MemoryCaseStore | None = None, clock: list[float] | None = None,
                **settings: Any) -> tuple[Worker, MemoryCaseStore, FakePublisher]:
    cases = cases or MemoryCaseStore()
    publisher = FakePublisher()
    worker = Worker(Settings(topic_events=TOPIC, **settings), consumer=consumer,
                    runner=DecisionRunner(store, detectors), cases=cases, publisher=publisher,  # type: ignore[arg-type]
                    backoff=Backoff(first=0.5, cap=2.0), clock=(lambda: clock[0]) if clock else (lambda: 0.0))
    return worker, cases, publisher


def until_drained(consumer: FakeConsumer) -> Any:
    return lambda worker: all(consumer.committed.get(tp, 0) >= end for tp, end in consumer.ends().items())


def test_every_record_is_decided_or_dead_lettered_then_committed(lines: list[bytes], detectors: Detectors) -> None:
    consumer = FakeConsumer(lines)
    worker, cases, publisher = make_worker(consumer, MemoryStateStore(), detectors)
    worker.run(stop_when=until_drained(consumer))

    assert consumer.committed == consumer.ends()
    assert flagged(cases.cases_report()) == flagged(replay_cases(lines, detectors))
    assert sorted(letter.value or b"" for letter in publisher.letters) == sorted(MALFORMED)
    assert worker.stats.decided + worker.stats.dead_lettered == len(lines)
    assert all(letter.reason for letter in publisher.letters)
    assert consumer.closed and publisher.closed
    # The metrics say the same: everything read is committed (lag 0 on every partition), counters add up.
    registry = worker.metrics.registry
    for tp, end in consumer.ends().items():
        labels = {"topic": tp.topic, "partition": str(tp.partition)}
        assert registry.get_sample_value("lifeguard_consumer_lag", labels) == 0
        assert registry.get_sample_value("lifeguard_partition_committed_offset", labels) == end
    assert registry.get_sample_value("lifeguard_events_consumed_total") == len(lines)
    assert registry.get_sample_value("lifeguard_events_decided_total") == worker.stats.decided


def test_state_store_outage_pauses_retries_and_resumes_without_committing_early(
        lines: list[bytes], detectors: Detectors) -> None:
    clock = [0.0]
    consumer = FakeConsumer(lines, clock=clock)
    store = FlakyStore()
    worker, cases, _ = make_worker(consumer, store, detectors, clock=clock, dependency_retry_seconds=60)
    store.failures = 4
    original_commit = consumer.commit

    def commit(offsets: dict[TopicPartition, Any], timeout_ms: int | None = None) -> None:
        assert store.failures <= 0, "nothing may be committed while the store is down"
        original_commit(offsets, timeout_ms)

    consumer.commit = commit  # type: ignore[method-assign]
    worker.run(stop_when=until_drained(consumer))

    assert store.attempts > 4 and worker.stats.retries == 4
    assert consumer.polls_while_paused > 0, "the group must be kept alive while paused"
    assert not consumer.paused_set and not worker.metrics.is_paused
    assert clock[0] >= 0.5 + 1 + 2 + 2  # exponential backoff, capped
    assert flagged(cases.cases_report()) == flagged(replay_cases(lines, detectors))


def test_gives_up_after_the_retry_budget_without_committing(lines: list[bytes], detectors: Detectors) -> None:
    clock = [0.0]
    consumer = FakeConsumer(lines, clock=clock)
    store = FlakyStore()
    store.down = True
    worker, _, _ = make_worker(consumer, store, detectors, clock=clock, dependency_retry_seconds=5)
    with pytest.raises(DependencyRetryExhaustedError, match="redis unavailable"):
        worker.run()
    assert consumer.committed == {} and consumer.commit_calls == []
    assert consumer.closed
    assert 5 <= clock[0] < 8


def test_broker_commit_failure_is_retried_without_redoing_effects(lines: list[bytes], detectors: Detectors) -> None:
    clock = [0.0]
    consumer = FakeConsumer(lines, clock=clock)
    consumer.fail_commits = 2
    store = FlakyStore()
    worker, cases, _ = make_worker(consumer, store, detectors, clock=clock)
    worker.run(stop_when=until_drained(consumer))
    assert worker.stats.retries == 2
    assert worker.stats.duplicates == 0  # the effects were applied once, only the commit was retried
    assert flagged(cases.cases_report()) == flagged(replay_cases(lines, detectors))


def test_offsets_a_failed_commit_left_pending_are_sent_again_while_idle(
        lines: list[bytes], detectors: Detectors) -> None:
    # One poll takes the whole log, so no later batch carries the offsets: the idle loop must resend them,
    # after the backoff, and count each failure as a retry.
    clock = [0.0]
    consumer = FakeConsumer(lines, clock=clock, batch=10_000)
    consumer.fail_commits = 3
    worker, _, _ = make_worker(consumer, MemoryStateStore(), detectors, clock=clock)
    worker.run(stop_when=until_drained(consumer))
    assert worker.stats.batches == 1 and worker.stats.retries == 3
    assert consumer.committed == consumer.ends() == worker.stats.committed
    assert len(consumer.commit_calls) == 1 and clock[0] >= 0.5 + 1.0 + 2.0  # the resends backed off


def test_crash_between_state_and_offset_commit_redelivers_and_dedupe_skips(
        lines: list[bytes], detectors: Detectors) -> None:
    store = MemoryStateStore()
    cases = MemoryCaseStore()
    crashed = FakeConsumer(lines)
    crashed.commit = lambda offsets, timeout_ms=None: None  # type: ignore[method-assign]  # "dies" before it
    first, _, first_pub = make_worker(crashed, store, detectors, cases=cases)
    first.run(stop_when=lambda w: all(crashed.positions[tp] >= end for tp, end in crashed.ends().items()))

    again = FakeConsumer(lines)  # the next worker starts from the last committed offsets: none
    second, _, second_pub = make_worker(again, store, detectors, cases=cases)
    second.run(stop_when=until_drained(again))

    assert second.stats.decided == 0 and second.stats.duplicates == first.stats.decided
    assert second_pub.actions == []  # no action is re-issued for an event that was already decided
    assert len(second_pub.letters) == len(first_pub.letters)  # poison is dead-lettered again, identically
    assert [lt.to_record() for lt in second_pub.letters] == [lt.to_record() for lt in first_pub.letters]
    assert flagged(cases.cases_report()) == flagged(replay_cases(lines, detectors))


def test_partitions_revoked_during_an_outage_are_left_to_their_new_owner(
        lines: list[bytes], detectors: Detectors) -> None:
    clock = [0.0]
    consumer = FakeConsumer(lines, clock=clock, batch=10_000)
    store = FlakyStore()
    store.failures = 2
    worker, _, _ = make_worker(consumer, store, detectors, clock=clock)
    gone = TopicPartition(TOPIC, 2)
    original_pause = consumer.pause

    def pause_then_revoke(*tps: TopicPartition) -> None:
        original_pause(*tps)
        if consumer.owned and gone in consumer.owned:
            consumer.revoke(gone)

    consumer.pause = pause_then_revoke  # type: ignore[method-assign]
    worker.run(stop_when=lambda w: bool(consumer.committed))
    assert gone not in consumer.committed
    assert set(consumer.committed) == {TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)}
    gone_events = []
    for record in consumer.logs[gone]:
        with contextlib.suppress(EventValidationError):
            event = parse_event(record.value)
            gone_events.append(EventKey(event.conversation_id, event.event_id))
    assert gone_events and store.seen_events(gone_events) == set()  # not decided here: the new owner will


def test_stop_during_an_outage_returns_without_committing(lines: list[bytes], detectors: Detectors) -> None:
    clock = [0.0]
    consumer = FakeConsumer(lines, clock=clock)
    store = FlakyStore()
    store.down = True
    worker, _, _ = make_worker(consumer, store, detectors, clock=clock, dependency_retry_seconds=60)
    original_poll = consumer.poll

    def poll(timeout_ms: int = 0) -> dict[TopicPartition, list[Record]]:
        if consumer.paused_set:
            worker.stop()  # SIGTERM arrives while waiting
        return original_poll(timeout_ms)

    consumer.poll = poll  # type: ignore[method-assign]
    worker.run()
    assert consumer.committed == {} and consumer.closed


def test_a_bug_is_not_retried(lines: list[bytes], detectors: Detectors) -> None:
    consumer = FakeConsumer(lines)
    store = MemoryStateStore()

    def broken(writes: StateWrites) -> None:
        raise ValueError("a bug")

    store.apply = broken  # type: ignore[method-assign]
    worker, _, _ = make_worker(consumer, store, detectors)
    with pytest.raises(ValueError, match="a bug"):
        worker.run()
    assert consumer.committed == {} and worker.stats.retries == 0


def test_slow_batches_are_logged_with_their_stage_times_and_no_text(
        lines: list[bytes], detectors: Detectors, caplog: pytest.LogCaptureFixture) -> None:
    consumer = FakeConsumer(lines)
    worker, _, _ = make_worker(consumer, MemoryStateStore(), detectors, slow_batch_ms=0.001)
    with caplog.at_level("INFO", logger="pipeline.streaming.worker"):
        worker.run(stop_when=until_drained(consumer))
    slow = [r for r in caplog.records if r.getMessage() == "slow batch"]
    assert len(slow) == worker.stats.batches
    ctx = slow[0].ctx  # type: ignore[attr-defined]
    assert set(ctx["stages_ms"]) == {"parse", "decide", "cases", "publish", "state"}
    assert ctx["records"] > 0 and ctx["ms"] >= 0 and ctx["first_event_id"]
    texts = {parse_event(line).text for line in lines if line not in MALFORMED} - {None}
    logged = " ".join(str(r.__dict__) for r in slow)
    assert not any(text in logged for text in texts if text and len(text) > 8)


def test_fast_batches_are_not_logged(lines: list[bytes], detectors: Detectors,
                                     caplog: pytest.LogCaptureFixture) -> None:
    consumer = FakeConsumer(lines)
    worker, _, _ = make_worker(consumer, MemoryStateStore(), detectors, slow_batch_ms=600_000)
    with caplog.at_level("INFO", logger="pipeline.streaming.worker"):
        worker.run(stop_when=until_drained(consumer))
    assert not [r for r in caplog.records if r.getMessage() == "slow batch"]
