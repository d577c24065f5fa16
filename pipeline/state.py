"""Conversation and subject state, and the ``StateStore`` port that keeps it between events.

State is scoped two ways:
- ``ConversationState``: owned by the conversation's Kafka partition (key = conversation id), replaced whole.
- ``SubjectProfile``: what is known about one user across conversations (the minor conversations they are the
  older party in, who reported or blocked them). Several workers may touch one profile, so it only changes
  through idempotent, order-free operations (``ProfileOp``): set a contact entry, add a reporter or blocker.
  That makes redelivery and partition interleaving harmless.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple, Protocol

# One day; every state key carries a TTL so idle conversations leave the store by themselves.
DEFAULT_STATE_TTL_SECONDS = 30 * 24 * 3600
DEFAULT_DEDUPE_TTL_SECONDS = 7 * 24 * 3600


class ParticipantInfo(NamedTuple):
    """A named tuple (hash and equality in C): it is compared and hashed on every event."""

    band: str
    verification: str
    parent_of: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StageMark:
    """When a grooming stage first showed in a conversation, for the stage timeline."""

    ts: float
    event_id: str


# Not frozen (per-event record): see the docstring of pipeline.decision.
@dataclass(slots=True)
class ConversationState:
    conversation_id: str
    channel_kind: str | None = None
    first_ts: float = 0.0
    last_ts: float = 0.0
    events: int = 0
    messages_by_user: Mapping[str, int] = field(default_factory=dict)
    participants: Mapping[str, ParticipantInfo] = field(default_factory=dict)
    revealed_bands: Mapping[str, str] = field(default_factory=dict)
    evidence: Mapping[str, float] = field(default_factory=dict)  # per stage, decayed to last_ts
    rule_evidence: Mapping[str, float] = field(default_factory=dict)  # rules only; kept when classifiers run
    stage_marks: Mapping[str, StageMark] = field(default_factory=dict)
    rule_hits: Mapping[str, int] = field(default_factory=dict)
    counters: Mapping[str, int] = field(default_factory=dict)  # gifts, follow_joins, blocks, reports ...
    peak_local: float = 0.0
    peak_risk: float = 0.0

    def to_json(self) -> str:
        return json.dumps(
            {
                "c": self.conversation_id,
                "k": self.channel_kind,
                "f": self.first_ts,
                "l": self.last_ts,
                "n": self.events,
                "m": self.messages_by_user,
                "p": {u: [p.band, p.verification, list(p.parent_of)] for u, p in self.participants.items()},
                "r": self.revealed_bands,
                "e": {s: round(v, 5) for s, v in self.evidence.items()},
                "re": {s: round(v, 5) for s, v in self.rule_evidence.items()},
                "s": {s: [m.ts, m.event_id] for s, m in self.stage_marks.items()},
                "h": self.rule_hits,
                "x": self.counters,
                "pl": round(self.peak_local, 6),
                "pr": round(self.peak_risk, 6),
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> ConversationState:
        d: dict[str, Any] = json.loads(raw)
        return cls(
            conversation_id=d["c"],
            channel_kind=d["k"],
            first_ts=d["f"],
            last_ts=d["l"],
            events=d["n"],
            messages_by_user=d["m"],
            participants={u: ParticipantInfo(p[0], p[1], tuple(p[2])) for u, p in d["p"].items()},
            revealed_bands=d["r"],
            evidence=d["e"],
            rule_evidence=d.get("re", {}),
            stage_marks={s: StageMark(m[0], m[1]) for s, m in d["s"].items()},
            rule_hits=d["h"],
            counters=d["x"],
            peak_local=d["pl"],
            peak_risk=d["pr"],
        )

    def evolve(self, **changes: Any) -> ConversationState:
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class ContactEntry:
    """One conversation in which the subject is the older party and the other is a minor."""

    first_ts: float
    peak_local: float
    pair_factor: float
    younger_band: str

    def encode(self) -> str:
        return f"{self.first_ts:.3f}|{self.peak_local:.6f}|{self.pair_factor:.4f}|{self.younger_band}"

    @classmethod
    def decode(cls, raw: str) -> ContactEntry:
        ts, peak, factor, band = raw.split("|")
        return cls(float(ts), float(peak), float(factor), band)


@dataclass(frozen=True, slots=True)
class SubjectProfile:
    user_id: str
    contacts: Mapping[str, ContactEntry] = field(default_factory=dict)
    reporters: frozenset[str] = frozenset()
    blockers: frozenset[str] = frozenset()
    # Answers derived from this (immutable) profile, memoised by whoever derives them: see
    # ``decision._subject_hits``. Not part of the value: no effect on equality, hashing or repr.
    derived: dict[Any, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def with_ops(self, ops: Iterable[ProfileOp]) -> SubjectProfile:
        """This profile with ``ops`` applied (ops for other users are ignored; with none left, ``self``)."""
        mine = [op for op in ops if op.user_id == self.user_id]
        if not mine:
            return self
        contacts = dict(self.contacts)
        reporters = set(self.reporters)
        blockers = set(self.blockers)
        for op in mine:
            if op.kind == "contact":
                contacts[op.key] = ContactEntry.decode(op.value)
            elif op.kind == "reporter":
                reporters.add(op.key)
            else:
                blockers.add(op.key)
        return SubjectProfile(self.user_id, contacts, frozenset(reporters), frozenset(blockers))


@dataclass(frozen=True, slots=True)
class ProfileOp:
    """An idempotent change to a subject profile: set ``contacts[key] = value`` or add ``key`` to a set."""

    user_id: str
    kind: Literal["contact", "reporter", "blocker"]
    key: str
    value: str = ""


class EventKey(NamedTuple):
    """An event id scoped to its conversation, so dedupe markers live beside the conversation's state. A named
    tuple: it is hashed several times per event, and a tuple's hash runs in C."""

    conversation_id: str
    event_id: str


@dataclass(frozen=True, slots=True)
class StateWrites:
    """Everything one batch of decisions changes in the state store, applied together."""

    conversations: Mapping[str, ConversationState]
    profile_ops: tuple[ProfileOp, ...]
    seen: tuple[EventKey, ...]


class StateStoreError(RuntimeError):
    """The state store cannot be reached or refused a write. Operators: check the store; the worker retries,
    then stops without committing offsets, so no event is lost."""


class BatchRead(NamedTuple):
    """What a batch needs before it is decided, read at once (``StateStore.read_batch``)."""

    seen: set[EventKey]
    conversations: dict[str, ConversationState]
    profiles: dict[str, SubjectProfile]


class StateStore(Protocol):
    """Port for per-conversation and per-subject state. Implementations: ``MemoryStateStore`` (replay, tests)
    and ``RedisStateStore`` (production); both pass ``tests/pipeline/state_contract.py``."""

    def get_conversations(self, conversation_ids: Iterable[str]) -> dict[str, ConversationState]: ...

    def get_profiles(self, user_ids: Iterable[str]) -> dict[str, SubjectProfile]: ...

    def seen_events(self, keys: Iterable[EventKey]) -> set[EventKey]: ...

    def read_batch(self, keys: Iterable[EventKey], user_ids: Iterable[str]) -> BatchRead:
        """``seen_events(keys)``, ``get_conversations`` of the keys' conversations and ``get_profiles(user_ids)``
        in one go (one round trip for Redis)."""
        ...

    def apply(self, writes: StateWrites) -> None: ...


class MemoryStateStore:
    """In-process state for replay and unit tests. No TTL expiry: a replay is bounded."""

    def __init__(self) -> None:
        self._conversations: dict[str, ConversationState] = {}
        self._profiles: dict[str, SubjectProfile] = {}
        self._seen: set[EventKey] = set()

    def get_conversations(self, conversation_ids: Iterable[str]) -> dict[str, ConversationState]:
        return {c: self._conversations[c] for c in conversation_ids if c in self._conversations}

    def get_profiles(self, user_ids: Iterable[str]) -> dict[str, SubjectProfile]:
        return {u: self._profiles[u] for u in user_ids if u in self._profiles}

    def seen_events(self, keys: Iterable[EventKey]) -> set[EventKey]:
        return {k for k in keys if k in self._seen}

    def read_batch(self, keys: Iterable[EventKey], user_ids: Iterable[str]) -> BatchRead:
        keys = list(keys)
        return BatchRead(self.seen_events(keys), self.get_conversations(dict.fromkeys(k.conversation_id for k in keys)),
                         self.get_profiles(user_ids))

    def apply(self, writes: StateWrites) -> None:
        self._conversations.update(writes.conversations)
        by_user: dict[str, list[ProfileOp]] = {}
        for op in writes.profile_ops:
            by_user.setdefault(op.user_id, []).append(op)
        for user_id, ops in by_user.items():
            current = self._profiles.get(user_id, SubjectProfile(user_id))
            self._profiles[user_id] = current.with_ops(ops)
        self._seen.update(writes.seen)

    def conversation_ids(self) -> list[str]:
        return sorted(self._conversations)
