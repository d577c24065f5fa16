"""``lifeguard produce FILE``: publish an events JSONL to the events topic, keyed by conversation id.

Lines are sent byte-for-byte as they are in the file. Each line is parsed only to find its key; a line that is
not JSON (or has no usable ids) is still sent, with no key, so it reaches the workers and their dead-letter
path like any bad record from a real producer would.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka.errors import KafkaError

from pipeline.replay import read_lines
from pipeline.settings import Settings
from pipeline.streaming.faults import BrokerUnavailableError
from pipeline.streaming.kafka_clients import CLIENT_TIMEOUT_MS, new_producer


@dataclass(slots=True)
class ProduceResult:
    records: int = 0
    unkeyed: int = 0  # lines with no conversation id to key by (not JSON, or ids missing)
    end_offsets: dict[int, int] = field(default_factory=dict)  # partition -> last offset + 1
    seconds: float = 0.0


def conversation_key(raw: bytes) -> bytes | None:
    """The conversation id ``Event.conversation_id`` would give, read from the JSON alone (no validation)."""
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(obj, dict):
        return None
    channel = obj.get("channel")
    if isinstance(channel, dict) and isinstance(channel.get("id"), str):
        return str(channel["id"]).encode("utf-8")
    actor = _user_id(obj.get("actor"))
    if actor is None:
        return None
    target = _user_id(obj.get("target"))
    if target is not None:
        first, second = sorted((actor, target))
        return f"pair:{first}:{second}".encode()
    return f"user:{actor}".encode()


def _user_id(user: Any) -> str | None:
    if isinstance(user, dict) and isinstance(user.get("user_id"), str):
        return str(user["user_id"])
    return None


def produce_file(path: Path, settings: Settings, *, on_progress: Callable[[int], None] | None = None,
                 topic: str | None = None) -> ProduceResult:
    topic = topic or settings.topic_events
    producer = new_producer(settings, role="producer")
    result = ProduceResult()
    started = time.perf_counter()
    futures: list[Any] = []
    try:
        for _, line in read_lines(path):
            key = conversation_key(line)
            if key is None:
                result.unkeyed += 1
            futures.append(producer.send(topic, key=key, value=line))
            result.records += 1
            if on_progress is not None and result.records % 1000 == 0:
                on_progress(1000)
        producer.flush(timeout=CLIENT_TIMEOUT_MS * 3 / 1000)
        for future in futures:
            meta = future.get(timeout=0)
            result.end_offsets[meta.partition] = max(result.end_offsets.get(meta.partition, 0), meta.offset + 1)
    except KafkaError as exc:
        raise BrokerUnavailableError(f"publishing {path} to {topic} failed after {result.records} records "
                                     f"({exc}); check the brokers and LIFEGUARD_KAFKA_BOOTSTRAP") from exc
    finally:
        producer.close(timeout=5)
    if on_progress is not None:
        on_progress(result.records % 1000)
    result.seconds = time.perf_counter() - started
    return result
