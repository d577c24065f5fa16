"""The streaming package's parts on their own: dead-letter envelopes, producer keys, batches, action records,
the metrics endpoint, structured logs, fault classification, and the embedded stack."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections import namedtuple
from pathlib import Path

import pytest
from kafka import TopicPartition
from kafka.errors import CommitFailedError, KafkaTimeoutError

from pipeline.contract import parse_event
from pipeline.decision import PlatformAction
from pipeline.settings import Settings
from pipeline.state import StateStoreError
from pipeline.streaming.deadletter import ENVELOPE_LIMIT, DeadLetter, read_dead_letter
from pipeline.streaming.embedded import EmbeddedStack, port_open, with_services
from pipeline.streaming.faults import Backoff, BrokerUnavailableError, DatabaseUnavailableError, dependency_of
from pipeline.streaming.kafka_clients import action_record
from pipeline.streaming.logs import JsonFormatter
from pipeline.streaming.metrics import MetricsServer, WorkerMetrics
from pipeline.streaming.produce import conversation_key
from pipeline.streaming.worker import Batch, parse_records
from pipeline.synth import generate

Record = namedtuple("Record", "topic partition offset timestamp key value headers")


def letter(value: bytes | None, reason: str = "not JSON", key: bytes | None = b"dm-1") -> DeadLetter:
    return DeadLetter("events.v1", 3, 41, 1_700_000_000_123, key, value, [("trace", b"abc")], reason)


def test_dead_letter_envelope_keeps_the_original_bytes_reason_and_source() -> None:
    raw = b'{"event_id": "e-1", \xff broken'
    key, value, headers = letter(raw, "not UTF-8 (byte 20)").to_record()
    envelope = read_dead_letter(value)
    assert key == b"dm-1"
    assert envelope["original_bytes"] == raw and envelope["original"] is None  # not UTF-8: bytes only
    assert envelope["reason"] == "not UTF-8 (byte 20)"
    assert envelope["source"] == {"topic": "events.v1", "partition": 3, "offset": 41,
                                  "timestamp_ms": 1_700_000_000_123}
    assert dict(headers) == {"lifeguard.reason": b"not UTF-8 (byte 20)", "lifeguard.source": b"events.v1/3/41"}
    assert letter(raw, "not UTF-8 (byte 20)").to_record() == (key, value, headers)  # deterministic


def test_dead_letter_of_an_empty_record_and_of_a_huge_one() -> None:
    assert read_dead_letter(letter(None, "empty record (no value)").to_record()[1])["original_bytes"] is None
    huge = b"x" * 800_000
    _, value, _ = letter(huge).to_record()
    envelope = json.loads(value)
    assert len(value) < ENVELOPE_LIMIT
    assert envelope["original_truncated"] is True and envelope["original_b64"] is None
    assert len(envelope["original_sha256"]) == 64


def test_parse_records_sorts_poison_from_events() -> None:
    good = json.dumps(generate(seed=1, conversations=1).events[0]).encode()
    records = [Record("t", 0, 0, 0, None, good, []), Record("t", 0, 1, 0, None, None, []),
               Record("t", 0, 2, 0, None, b"\xff", []), Record("t", 0, 3, 0, None, b'{"schema_version": 1}', [])]
    parsed = parse_records(records)
    assert [e.event_id for e in parsed.events] == [json.loads(good)["event_id"]]
    assert [(lt.offset, lt.reason.split(" (")[0]) for lt in parsed.letters] == [
        (1, "empty record"), (2, "not UTF-8"), (3, "event_id: field required")]
    assert parsed.letters[2].path == "event_id"


def test_producer_key_is_the_conversation_id() -> None:
    for event in generate(seed=3, conversations=30).events:
        assert conversation_key(json.dumps(event).encode()) == parse_event(event).conversation_id.encode()
    pair = {"actor": {"user_id": "u-9"}, "target": {"user_id": "u-1"}}
    assert conversation_key(json.dumps(pair).encode()) == b"pair:u-1:u-9"
    assert conversation_key(json.dumps({"actor": {"user_id": "u-9"}}).encode()) == b"user:u-9"
    for junk in (b"not json", b"[1]", b"\xff\xfe", b'{"actor": 3}'):
        assert conversation_key(junk) is None


def test_batch_keeps_partition_order_and_commits_next_offsets() -> None:
    tp0, tp1 = TopicPartition("t", 0), TopicPartition("t", 1)
    polled = {tp1: [Record("t", 1, 5, 0, None, b"", []), Record("t", 1, 6, 0, None, b"", [])],
              tp0: [Record("t", 0, 9, 0, None, b"", [])]}
    batch = Batch.from_poll(polled)
    assert [(r.partition, r.offset) for r in batch.records] == [(0, 9), (1, 5), (1, 6)]
    assert {tp: om.offset for tp, om in batch.offsets().items()} == {tp0: 10, tp1: 7}
    assert [r.offset for r in batch.only({tp1}).records] == [5, 6]


def test_action_records_are_keyed_by_conversation_and_deduplicable() -> None:
    action = PlatformAction("restrict_dm", "u-1", "dm-1", "e-7", "isolation.offplatform_request")
    key, value = action_record(action)
    body = json.loads(value)
    assert key == b"dm-1"
    assert body["action"] == "restrict_dm" and body["subject"] == "u-1" and body["event_id"] == "e-7"
    assert action_record(action) == (key, value)
    other = action_record(PlatformAction("restrict_dm", "u-2", "dm-1", "e-7", "x"))
    assert json.loads(other[1])["action_id"] != body["action_id"]


def test_faults_are_classified_and_backoff_is_capped() -> None:
    assert dependency_of(StateStoreError("down")) == "redis"
    assert dependency_of(DatabaseUnavailableError("down")) == "database"
    assert dependency_of(BrokerUnavailableError("down")) == "kafka"
    assert dependency_of(KafkaTimeoutError()) == "kafka"
    assert dependency_of(CommitFailedError()) is None
    assert dependency_of(ValueError("bug")) is None
    assert [Backoff(0.25, 2.0).delay(n) for n in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]


def test_metrics_endpoint_serves_metrics_health_and_readiness() -> None:
    metrics = WorkerMetrics()
    server = MetricsServer(metrics, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        metrics.consumed.inc(3)
        metrics.dead_lettered.labels("contract").inc()
        with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
            text = response.read().decode()
        assert "lifeguard_events_consumed_total 3.0" in text
        assert 'lifeguard_events_dead_lettered_total{reason_kind="contract"} 1.0' in text
        with urllib.request.urlopen(base + "/healthz", timeout=5) as response:
            assert response.status == 200
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(base + "/readyz", timeout=5)
        assert not_ready.value.code == 503
        metrics.set_assigned(2)
        with urllib.request.urlopen(base + "/readyz", timeout=5) as response:
            assert response.status == 200
        metrics.set_paused(True)
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(base + "/readyz", timeout=5)
    finally:
        server.close()


def test_json_logs_carry_context_fields() -> None:
    record = logging.LogRecord("pipeline.streaming.worker", logging.WARNING, __file__, 1, "record dead-lettered",
                               None, None)
    record.ctx = {"partition": 3, "offset": 41, "reason": "not JSON"}
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "record dead-lettered" and line["level"] == "warning"
    assert (line["partition"], line["offset"], line["reason"]) == (3, 41, "not JSON")


def test_database_outages_become_retryable_and_bugs_do_not() -> None:
    from sqlalchemy.exc import IntegrityError, OperationalError

    from pipeline.streaming.case_store import GuardedCaseStore, MemoryCaseStore

    class Failing(MemoryCaseStore):
        error: Exception = OperationalError("INSERT", {}, Exception("server closed the connection"))

        def apply(self, updates: object, decisions: object, events: object = ()) -> None:
            raise self.error

    store = Failing()
    with pytest.raises(DatabaseUnavailableError, match="check the database"):
        GuardedCaseStore(store).apply([], [], [])
    store.error = IntegrityError("INSERT", {}, Exception("duplicate key"))
    with pytest.raises(IntegrityError):
        GuardedCaseStore(store).apply([], [], [])


@pytest.mark.services
def test_embedded_stack_starts_once_is_found_again_and_stops(tmp_path: Path) -> None:
    stack = EmbeddedStack(tmp_path)
    try:
        settings = with_services(Settings(data_dir=tmp_path))
        assert settings.kafka_bootstrap and settings.redis_url
        again = with_services(Settings(data_dir=tmp_path))  # another process would find the same services
        assert (again.kafka_bootstrap, again.redis_url) == (settings.kafka_bootstrap, settings.redis_url)
        status = stack.status()
        assert status["kafka"] is not None and status["redis"] is not None
        host, port = settings.kafka_bootstrap.split(":")
        assert port_open(host, int(port))
        import redis

        assert redis.Redis.from_url(settings.redis_url).ping()
    finally:
        stopped = stack.stop()
    assert len(stopped) == 2
    assert stack.status() == {"kafka": None, "redis": None}
    assert not port_open(host, int(port))


def test_lag_readiness_probes_and_embedding_share_metrics() -> None:
    metrics = WorkerMetrics()
    metrics.set_assigned(1)
    metrics.record_read("events.v1", 0, 120)
    metrics.record_committed("events.v1", 0, 100)
    metrics.record_cascade(scored=200, admitted=10, encoded=8)
    metrics.record_cascade(scored=400, admitted=30, encoded=20)  # cumulative totals: counters get the increments
    server = MetricsServer(metrics, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
            text = response.read().decode()
        assert 'lifeguard_consumer_lag{partition="0",topic="events.v1"} 20.0' in text
        assert "lifeguard_classifier_messages_total 400.0" in text
        assert "lifeguard_embedding_stage_messages_total 30.0" in text
        assert "lifeguard_embedding_stage_share 0.075" in text
        assert "process_resident_memory_bytes" in text
        with urllib.request.urlopen(base + "/readyz", timeout=5) as response:
            assert response.status == 200

        def redis_down() -> None:
            raise ConnectionError("refused")

        metrics.add_probe("redis", redis_down)
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(base + "/readyz", timeout=5)
        assert not_ready.value.code == 503
        assert b"redis unreachable" in not_ready.value.read()
    finally:
        server.close()
