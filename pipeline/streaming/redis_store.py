"""``RedisStateStore``: the production ``StateStore``; passes the same contract suite as ``MemoryStateStore``.

Key layout (``prefix`` defaults to ``lg``; every key carries a TTL; the braces are Redis-Cluster hash tags so
all keys of one conversation, or of one user, live in one slot):

- ``lg:c:{conv}``  STRING  conversation state, a lossless positional JSON array (``SET EX state_ttl``)
- ``lg:d:{conv}``  ZSET    dedupe markers: member = event id, score = when it was marked; members older than
                           ``dedupe_ttl`` are trimmed on write and the key expires ``dedupe_ttl`` after the last one
- ``lg:u:{user}``  HASH    subject profile: ``c:<conv>`` -> contact entry, ``r:<user>`` reporter, ``b:<user>``
                           blocker. Profile ops are plain ``HSET`` of a field, so they are idempotent and order-free.

``apply`` writes one batch in a single ``MULTI``/``EXEC``: the new states and their dedupe markers land
together or not at all, which is what makes redelivery after a crash safe.

The state codec is our own rather than ``ConversationState.to_json``: that one rounds evidence and sorts keys,
and the store must hand back exactly what it was given (mapping order included: it decides which participant
is evicted first and the float summation order), or a worker would drift from ``lifeguard replay``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis
from redis.exceptions import BusyLoadingError, ReadOnlyError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pipeline.state import (
    DEFAULT_DEDUPE_TTL_SECONDS,
    DEFAULT_STATE_TTL_SECONDS,
    BatchRead,
    ContactEntry,
    ConversationState,
    EventKey,
    ParticipantInfo,
    StageMark,
    StateStoreError,
    StateWrites,
    SubjectProfile,
)

CODEC_VERSION = 1
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, BusyLoadingError, ReadOnlyError)
_PROFILE_KIND = {"contact": "c:", "reporter": "r:", "blocker": "b:"}


def encode_state(state: ConversationState) -> bytes:
    """Positional JSON (no field names) keeps a conversation's state small; floats round-trip exactly."""
    return json.dumps(
        [
            CODEC_VERSION,
            state.conversation_id,
            state.channel_kind,
            state.first_ts,
            state.last_ts,
            state.events,
            state.messages_by_user,
            [[u, p.band, p.verification, *p.parent_of] for u, p in state.participants.items()],
            state.revealed_bands,
            state.evidence,
            [[s, m.ts, m.event_id] for s, m in state.stage_marks.items()],
            state.rule_hits,
            state.counters,
            state.peak_local,
            state.peak_risk,
            state.rule_evidence,
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")


def decode_state(raw: bytes) -> ConversationState:
    d: list[Any] = json.loads(raw)
    if d[0] != CODEC_VERSION:
        raise StateStoreError(f"conversation state has codec version {d[0]}, this worker reads {CODEC_VERSION}; "
                              "deploy a worker that understands it")
    return ConversationState(
        conversation_id=d[1],
        channel_kind=d[2],
        first_ts=d[3],
        last_ts=d[4],
        events=d[5],
        messages_by_user=d[6],
        participants={p[0]: ParticipantInfo(p[1], p[2], tuple(p[3:])) for p in d[7]},
        revealed_bands=d[8],
        evidence=d[9],
        stage_marks={m[0]: StageMark(m[1], m[2]) for m in d[10]},
        rule_hits=d[11],
        counters=d[12],
        peak_local=d[13],
        peak_risk=d[14],
        rule_evidence=d[15] if len(d) > 15 else {},
    )


class RedisStateStore:
    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "lg",
        state_ttl_seconds: int = DEFAULT_STATE_TTL_SECONDS,
        dedupe_ttl_seconds: int = DEFAULT_DEDUPE_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.state_ttl = state_ttl_seconds
        self.dedupe_ttl = dedupe_ttl_seconds
        self._clock = clock

    @classmethod
    def from_url(cls, url: str, *, timeout_seconds: float = 5.0, **kwargs: Any) -> RedisStateStore:
        client = redis.Redis.from_url(url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds,
                                      health_check_interval=30)
        return cls(client, **kwargs)

    # -- keys ----------------------------------------------------------------------------------------------
    def state_key(self, conversation_id: str) -> str:
        return f"{self.prefix}:c:{{{conversation_id}}}"

    def dedupe_key(self, conversation_id: str) -> str:
        return f"{self.prefix}:d:{{{conversation_id}}}"

    def profile_key(self, user_id: str) -> str:
        return f"{self.prefix}:u:{{{user_id}}}"

    # -- StateStore ----------------------------------------------------------------------------------------
    def get_conversations(self, conversation_ids: Iterable[str]) -> dict[str, ConversationState]:
        return self._read({}, list(dict.fromkeys(conversation_ids)), [], "read conversation state").conversations

    def get_profiles(self, user_ids: Iterable[str]) -> dict[str, SubjectProfile]:
        return self._read({}, [], list(dict.fromkeys(user_ids)), "read subject profiles").profiles

    def seen_events(self, keys: Iterable[EventKey]) -> set[EventKey]:
        return self._read(_by_conversation(keys), [], [], "read dedupe markers").seen

    def read_batch(self, keys: Iterable[EventKey], user_ids: Iterable[str]) -> BatchRead:
        markers = _by_conversation(keys)
        return self._read(markers, list(markers), list(dict.fromkeys(user_ids)), "read the batch's state")

    def _read(self, markers: dict[str, list[str]], conversations: list[str], users: list[str], what: str) -> BatchRead:
        """One pipeline: the dedupe markers asked per conversation, conversation states, subject profiles."""
        if not (markers or conversations or users):
            return BatchRead(set(), {}, {})
        pipe = self.client.pipeline(transaction=False)
        for conv, event_ids in markers.items():
            pipe.zmscore(self.dedupe_key(conv), event_ids)
        for conv in conversations:
            pipe.get(self.state_key(conv))
        for user in users:
            pipe.hgetall(self.profile_key(user))
        replies = self._execute(pipe, what)
        m, c = len(markers), len(markers) + len(conversations)
        seen: set[EventKey] = set()
        for (conv, event_ids), scores in zip(markers.items(), replies[:m], strict=True):
            seen.update(EventKey(conv, e) for e, score in zip(event_ids, scores, strict=True) if score is not None)
        states = {conv: decode_state(raw) for conv, raw in zip(conversations, replies[m:c], strict=True)
                  if raw is not None}
        profiles = {user: _profile(user, fields) for user, fields in zip(users, replies[c:], strict=True) if fields}
        return BatchRead(seen, states, profiles)

    def apply(self, writes: StateWrites) -> None:
        if not (writes.conversations or writes.profile_ops or writes.seen):
            return
        now = int(self._clock())
        pipe = self.client.pipeline(transaction=True)
        for conv, state in writes.conversations.items():
            pipe.set(self.state_key(conv), encode_state(state), ex=self.state_ttl)
        by_user: dict[str, dict[Any, Any]] = {}
        for op in writes.profile_ops:
            by_user.setdefault(op.user_id, {})[_PROFILE_KIND[op.kind] + op.key] = op.value
        for user, fields in by_user.items():
            key = self.profile_key(user)
            pipe.hset(key, mapping=fields)
            pipe.expire(key, self.state_ttl)
        markers: dict[str, list[str]] = {}
        for event_key in writes.seen:
            markers.setdefault(event_key.conversation_id, []).append(event_key.event_id)
        for conv, event_ids in markers.items():
            key = self.dedupe_key(conv)
            pipe.zadd(key, dict.fromkeys(event_ids, now))
            pipe.zremrangebyscore(key, "-inf", now - self.dedupe_ttl)
            pipe.expire(key, self.dedupe_ttl)
        self._execute(pipe, "write state")

    # -- operations ----------------------------------------------------------------------------------------
    def ping(self) -> None:
        try:
            self.client.ping()
        except _UNAVAILABLE as exc:
            raise StateStoreError(f"Redis unreachable ({exc}); check LIFEGUARD_REDIS_URL and the server") from exc

    def memory_usage(self, conversation_ids: Iterable[str]) -> int:
        """Bytes Redis spends on these conversations' keys (``MEMORY USAGE``; profiles are not included)."""
        pipe = self.client.pipeline(transaction=False)
        for conv in conversation_ids:
            pipe.memory_usage(self.state_key(conv), samples=0)
            pipe.memory_usage(self.dedupe_key(conv), samples=0)
        return sum(int(n or 0) for n in self._execute(pipe, "measure memory"))

    def scan_keys(self, kind: str) -> list[str]:
        """Keys of one kind (``c``, ``d`` or ``u``) under this store's prefix; for measurement and cleanup."""
        return [k.decode() if isinstance(k, bytes) else str(k)
                for k in self.client.scan_iter(match=f"{self.prefix}:{kind}:*", count=1000)]

    def _execute(self, pipe: Any, what: str) -> list[Any]:
        try:
            result: list[Any] = pipe.execute()
        except _UNAVAILABLE as exc:
            raise StateStoreError(f"Redis unavailable during {what} ({type(exc).__name__}: {exc}); "
                                  "check the Redis server and LIFEGUARD_REDIS_URL") from exc
        return result


def _by_conversation(keys: Iterable[EventKey]) -> dict[str, list[str]]:
    by_conv: dict[str, list[str]] = {}
    for key in keys:
        by_conv.setdefault(key.conversation_id, []).append(key.event_id)
    return by_conv


def _profile(user_id: str, fields: dict[bytes, bytes]) -> SubjectProfile:
    contacts: dict[str, ContactEntry] = {}
    reporters: set[str] = set()
    blockers: set[str] = set()
    for raw_field, raw_value in fields.items():
        field = raw_field.decode("utf-8")
        kind, name = field[:2], field[2:]
        if kind == "c:":
            contacts[name] = ContactEntry.decode(raw_value.decode("utf-8"))
        elif kind == "r:":
            reporters.add(name)
        elif kind == "b:":
            blockers.add(name)
    return SubjectProfile(user_id, contacts, frozenset(reporters), frozenset(blockers))
