"""Dead-letter records: what a worker publishes to ``events.deadletter.v1`` for input it cannot use.

The value is a JSON envelope (schema ``lifeguard.deadletter.v1``) carrying the original bytes (base64, plus
the text when it is valid UTF-8 and small), the reason, and where the record came from; the key is the
original key. Records too big to travel base64-encoded keep only their sha256 (``original_truncated``).
Reason and source are also Kafka headers, so tools can filter without parsing. The envelope is deterministic:
a record dead-lettered twice (redelivery after a crash) produces identical copies, which readers collapse on
``source`` (topic, partition, offset). To reprocess after fixing a producer, re-publish ``original_b64``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SCHEMA = "lifeguard.deadletter.v1"
TEXT_COPY_LIMIT = 64 * 1024  # the readable copy is only for small records
ENVELOPE_LIMIT = 900 * 1024  # stay under Kafka's default 1 MB message size


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]
    reason: str
    path: str = ""

    def envelope(self) -> dict[str, Any]:
        original = self.value or b""
        text: str | None = None
        if self.value is not None and len(original) <= TEXT_COPY_LIMIT:
            try:
                text = original.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        return {
            "schema": SCHEMA,
            "reason": self.reason,
            "field": self.path or None,
            "source": {"topic": self.topic, "partition": self.partition, "offset": self.offset,
                       "timestamp_ms": self.timestamp_ms},
            "key_b64": None if self.key is None else base64.b64encode(self.key).decode("ascii"),
            "original_b64": None if self.value is None else base64.b64encode(original).decode("ascii"),
            "original": text,
            "original_sha256": hashlib.sha256(original).hexdigest(),
            "headers": [[k, None if v is None else base64.b64encode(v).decode("ascii")] for k, v in self.headers],
        }

    def to_record(self) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
        """(key, value, headers) to produce."""
        envelope = self.envelope()
        value = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if len(value) > ENVELOPE_LIMIT:
            # A near-1 MB poison record cannot travel base64-encoded; keep its digest so it can be matched.
            envelope.update(original_b64=None, original=None, original_truncated=True)
            value = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = [
            ("lifeguard.reason", self.reason.encode("utf-8")),
            ("lifeguard.source", f"{self.topic}/{self.partition}/{self.offset}".encode()),
        ]
        return self.key, value, headers


def read_dead_letter(value: bytes) -> dict[str, Any]:
    """Decode an envelope; ``original_bytes`` is added with the exact bytes of the rejected record."""
    envelope: dict[str, Any] = json.loads(value)
    raw = envelope.get("original_b64")
    envelope["original_bytes"] = None if raw is None else base64.b64decode(raw)
    return envelope
