"""Fixtures for the streaming tests: a real broker (the embedded Tansu, started once per session on a free
port), the real Redis on 127.0.0.1:6379 (a key prefix per test, cleaned up), and an isolated "world" per test
(its own topics, consumer group, key prefix and case database)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from pipeline.settings import Settings
from pipeline.streaming.embedded import EmbeddedStack
from pipeline.streaming.kafka_clients import ensure_topics

REDIS_URL = os.environ.get("LIFEGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("LIFEGUARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LIFEGUARD = str(Path(sys.executable).parent / "lifeguard")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    stack = EmbeddedStack(tmp_path_factory.mktemp("broker"))
    address = stack.broker()
    yield address
    stack.stop()


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is not running ({exc}); start it (see .ci/run)")
    yield client
    client.close()


@dataclass
class World:
    """One test's isolated topics, group, Redis prefix and case database on the shared broker."""

    settings: Settings
    tmp: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        s = self.settings
        values = {
            "LIFEGUARD_KAFKA_BOOTSTRAP": s.kafka_bootstrap, "LIFEGUARD_REDIS_URL": s.redis_url,
            "LIFEGUARD_REDIS_KEY_PREFIX": s.redis_key_prefix, "LIFEGUARD_DATABASE_URL": s.database_url,
            "LIFEGUARD_DATA_DIR": str(s.data_dir), "LIFEGUARD_TOPIC_EVENTS": s.topic_events,
            "LIFEGUARD_TOPIC_DEADLETTER": s.topic_deadletter, "LIFEGUARD_TOPIC_ACTIONS": s.topic_actions,
            "LIFEGUARD_CONSUMER_GROUP": s.consumer_group, "LIFEGUARD_PARTITIONS": str(s.partitions),
            "LIFEGUARD_MAX_POLL_RECORDS": str(s.max_poll_records),
            "LIFEGUARD_DEPENDENCY_RETRY_SECONDS": str(s.dependency_retry_seconds),
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIFEGUARD_")}
        env.update({k: v for k, v in values.items() if v is not None})
        return env

    def start_worker(self, name: str, *extra: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("ab")
        proc = subprocess.Popen([LIFEGUARD, "run", *extra], env=self.env(), stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL)
        self.workers.append(proc)
        return proc

    def worker_log(self, name: str) -> list[dict[str, Any]]:
        lines = (self.tmp / f"{name}.log").read_text(errors="replace").splitlines()
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"msg": line})
        return out

    def committed(self) -> dict[int, int]:
        admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
        try:
            offsets = admin.list_group_offsets(self.settings.consumer_group).get(self.settings.consumer_group, {})
        finally:
            admin.close()
        return {tp.partition: om.offset for tp, om in offsets.items()
                if tp.topic == self.settings.topic_events and om.offset >= 0}

    def wait_committed(self, targets: dict[int, int], timeout: float,
                       alive: Callable[[], None] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while True:
            got = self.committed()
            if all(got.get(p, 0) >= end for p, end in targets.items()):
                return
            if alive is not None:
                alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"offsets not committed in {timeout} s: {got} < {targets}")
            time.sleep(0.3)

    def read_topic(self, topic: str, expected: int, timeout: float = 20.0) -> list[Any]:
        """Every record of ``topic`` (no group; from the beginning) until ``expected`` arrived and the topic
        stayed quiet for a second (end offsets cannot be trusted on this broker)."""
        consumer = KafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap, enable_auto_commit=False)
        try:
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            records: list[Any] = []
            deadline = time.monotonic() + timeout
            quiet_since = time.monotonic()
            while time.monotonic() < deadline:
                polled = consumer.poll(timeout_ms=200)
                if polled:
                    quiet_since = time.monotonic()
                    for batch in polled.values():
                        records.extend(batch)
                elif len(records) >= expected and time.monotonic() - quiet_since > 1.0:
                    break
            return records
        finally:
            consumer.close()

    def stop_workers(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def world(broker: str, redis_client: redis.Redis, tmp_path: Path) -> Iterator[World]:
    name = uuid.uuid4().hex[:10]
    settings = Settings(
        kafka_bootstrap=broker, redis_url=REDIS_URL, redis_key_prefix=f"lgt-{name}",
        database_url=f"sqlite:///{tmp_path / 'cases.db'}", data_dir=tmp_path,
        topic_events=f"ev-{name}", topic_deadletter=f"dl-{name}", topic_actions=f"act-{name}",
        consumer_group=f"g-{name}", partitions=4, max_poll_records=500, poll_timeout_ms=100,
        dependency_retry_seconds=30,
    )
    ensure_topics(settings)
    w = World(settings, tmp_path)
    yield w
    w.stop_workers()
    keys = list(redis_client.scan_iter(match=f"{settings.redis_key_prefix}:*", count=1000))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    import psycopg

    name = f"lg_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is not running ({exc}); start it (see .ci/run)")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass(frozen=True)
class Stream:
    """A synthetic events file (with malformed records mixed in) and what ``replay`` makes of it."""

    path: Path
    lines: list[bytes]
    malformed: list[bytes]
    events: int
    replay_cases: list[dict[str, Any]]

    def flagged(self) -> dict[str, float]:
        return {c["conversation_id"]: c["risk"] for c in self.replay_cases}

    def chunk(self, tmp: Path, name: str, start: int, end: int | None = None) -> Path:
        path = tmp / f"{name}.jsonl"
        path.write_bytes(b"".join(line + b"\n" for line in self.lines[start:end]))
        return path


@pytest.fixture(scope="session")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Stream:
    from pipeline.detectors import load_detectors
    from pipeline.replay import replay
    from pipeline.synth import generate, write_jsonl

    path = tmp_path_factory.mktemp("stream") / "events.jsonl"
    synth = generate(seed=11, conversations=160, grooming_share=0.35, malformed=12)
    write_jsonl(synth, path)
    result = replay(path, load_detectors(Settings()))
    assert result.cases, "the synthetic stream should flag some conversations"
    return Stream(path, path.read_bytes().splitlines(), synth.malformed, result.events, result.cases)
