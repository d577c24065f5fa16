"""kafka-python clients configured from ``Settings``: the worker's consumer and producer, topic creation, and
the ``Publisher`` that sends actions and dead letters and makes them durable before offsets are committed.

Timeouts are deliberately short (seconds, not kafka-python's minutes): a dependency outage must surface as an
error the worker can pause on and retry, not as a call that blocks for two minutes.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import asdict
from hashlib import sha256
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from pipeline.decision import PlatformAction
from pipeline.settings import Settings
from pipeline.streaming.deadletter import DeadLetter
from pipeline.streaming.faults import BrokerUnavailableError

log = logging.getLogger(__name__)

CLIENT_TIMEOUT_MS = 10_000


def client_id(role: str) -> str:
    return f"lifeguard-{role}-{socket.gethostname()}-{os.getpid()}"


def bootstrap_of(settings: Settings) -> str:
    if settings.kafka_bootstrap is None:
        raise BrokerUnavailableError("no Kafka bootstrap address: set LIFEGUARD_KAFKA_BOOTSTRAP or let the "
                                     "embedded stack start (see `lifeguard stack up`)")
    return settings.kafka_bootstrap


def consumer_config(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap_servers": bootstrap_of(settings),
        "group_id": settings.consumer_group,
        "client_id": client_id("worker"),
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": settings.max_poll_records,
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        # A batch plus a dependency outage must fit: the worker keeps polling (paused) while it retries.
        "max_poll_interval_ms": max(300_000, int(settings.dependency_retry_seconds * 1000) + 60_000),
        "request_timeout_ms": CLIENT_TIMEOUT_MS + settings.session_timeout_ms,
        "bootstrap_timeout_ms": CLIENT_TIMEOUT_MS,
        "reconnect_backoff_max_ms": 2_000,
    }


def producer_config(settings: Settings, role: str = "worker") -> dict[str, Any]:
    return {
        "bootstrap_servers": bootstrap_of(settings),
        "client_id": client_id(role),
        "acks": "all",
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "request_timeout_ms": CLIENT_TIMEOUT_MS,
        "delivery_timeout_ms": 2 * CLIENT_TIMEOUT_MS,
        "max_block_ms": CLIENT_TIMEOUT_MS,
        "bootstrap_timeout_ms": CLIENT_TIMEOUT_MS,
        "reconnect_backoff_max_ms": 2_000,
    }


def new_consumer(settings: Settings) -> KafkaConsumer:
    try:
        return KafkaConsumer(**consumer_config(settings))
    except KafkaError as exc:
        raise BrokerUnavailableError(f"cannot reach Kafka at {settings.kafka_bootstrap} ({exc}); "
                                     "check the brokers and LIFEGUARD_KAFKA_BOOTSTRAP") from exc


def new_producer(settings: Settings, role: str = "worker") -> KafkaProducer:
    try:
        return KafkaProducer(**producer_config(settings, role))
    except KafkaError as exc:
        raise BrokerUnavailableError(f"cannot reach Kafka at {settings.kafka_bootstrap} ({exc}); "
                                     "check the brokers and LIFEGUARD_KAFKA_BOOTSTRAP") from exc


def ensure_topics(settings: Settings, *, timeout_seconds: float = 30.0) -> None:
    """Create the events, dead-letter and actions topics with ``settings.partitions`` partitions if missing.
    Existing topics are left alone (a partition-count mismatch is logged: repartitioning moves conversations
    between partitions and is an operator's decision)."""
    wanted = [settings.topic_events, settings.topic_deadletter, settings.topic_actions]
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap_of(settings), client_id=client_id("admin"),
                                 request_timeout_ms=CLIENT_TIMEOUT_MS, bootstrap_timeout_ms=CLIENT_TIMEOUT_MS)
    except KafkaError as exc:
        raise BrokerUnavailableError(f"cannot reach Kafka at {settings.kafka_bootstrap} to create topics ({exc}); "
                                     "check the brokers and LIFEGUARD_KAFKA_BOOTSTRAP") from exc
    try:
        existing = set(admin.list_topics())
        for name in wanted:
            if name in existing:
                continue
            try:
                admin.create_topics([NewTopic(name, settings.partitions, 1)])
                log.info("created topic", extra={"ctx": {"topic": name, "partitions": settings.partitions}})
            except TopicAlreadyExistsError:
                pass  # another worker created it first
        deadline = time.monotonic() + timeout_seconds
        consumer = KafkaConsumer(bootstrap_servers=bootstrap_of(settings), client_id=client_id("admin"),
                                 bootstrap_timeout_ms=CLIENT_TIMEOUT_MS)
        try:
            for name in wanted:
                while not consumer.partitions_for_topic(name):
                    if time.monotonic() > deadline:
                        raise BrokerUnavailableError(f"topic {name} did not appear within {timeout_seconds:.0f} s; "
                                                     "check the broker's logs")
                    time.sleep(0.1)
                count = len(consumer.partitions_for_topic(name))
                if name == settings.topic_events and count != settings.partitions:
                    log.warning("events topic has a different partition count than configured",
                                extra={"ctx": {"topic": name, "partitions": count,
                                               "configured": settings.partitions}})
        finally:
            consumer.close()
    except KafkaError as exc:
        raise BrokerUnavailableError(f"topic setup on {settings.kafka_bootstrap} failed ({exc}); "
                                     "check the brokers") from exc
    finally:
        admin.close()


def action_record(action: PlatformAction) -> tuple[bytes, bytes]:
    """(key, value) of one ``actions.v1`` record. ``action_id`` is deterministic so the platform can drop the
    duplicates at-least-once delivery produces."""
    body = asdict(action)
    digest = sha256(f"{action.event_id}\x1f{action.action}\x1f{action.subject}".encode()).hexdigest()[:24]
    body = {"schema": "lifeguard.action.v1", "action_id": f"act-{digest}", **body}
    value = json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return action.conversation_id.encode("utf-8"), value


class Publisher:
    """Sends the worker's outgoing records; ``flush`` returns only when every one is acknowledged."""

    def __init__(self, producer: KafkaProducer, settings: Settings) -> None:
        self.producer = producer
        self.topic_actions = settings.topic_actions
        self.topic_deadletter = settings.topic_deadletter
        self._pending: list[Any] = []

    def send_actions(self, actions: Iterable[PlatformAction]) -> int:
        n = 0
        for action in actions:
            key, value = action_record(action)
            self._send(self.topic_actions, key, value, [])
            n += 1
        return n

    def send_dead_letter(self, letter: DeadLetter) -> None:
        key, value, headers = letter.to_record()
        self._send(self.topic_deadletter, key, value, headers)

    def _send(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        try:
            self._pending.append(self.producer.send(topic, key=key, value=value, headers=headers))
        except KafkaError as exc:
            self._pending.clear()
            raise BrokerUnavailableError(f"cannot publish to {topic} ({exc}); check the brokers") from exc

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            self.producer.flush(timeout=CLIENT_TIMEOUT_MS * 2 / 1000)
            for future in pending:
                future.get(timeout=0)
        except KafkaError as exc:
            raise BrokerUnavailableError(f"Kafka did not acknowledge {len(pending)} outgoing records ({exc}); "
                                         "check the brokers") from exc

    def close(self) -> None:
        self.producer.close(timeout=5)
