"""Event contract v1: pydantic types mirroring ``shared/contracts/event-v1.schema.json``.

Producers write exactly that schema; ``parse_event`` is the one gate every consumer (replay, Kafka worker)
passes raw records through. An invalid record raises ``EventValidationError`` naming the field path and
the problem, so it can be dead-lettered with a reason.
"""

from __future__ import annotations

import functools
import json
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    Strict,
    StrictInt,
    ValidationError,
    model_validator,
)
from pydantic_core import core_schema


class EventType(StrEnum):
    CHAT_MESSAGE = "chat_message"
    FRIEND_REQUEST = "friend_request"
    FRIEND_ACCEPT = "friend_accept"
    GIFT = "gift"
    TRADE = "trade"
    SERVER_INVITE = "server_invite"
    FOLLOW_JOIN = "follow_join"
    BLOCK = "block"
    USER_REPORT = "user_report"
    AGE_SIGNAL = "age_signal"


class AgeBand(StrEnum):
    UNDER_9 = "under_9"
    AGE_9_12 = "9_12"
    AGE_13_15 = "13_15"
    AGE_16_17 = "16_17"
    AGE_18_20 = "18_20"
    AGE_21_PLUS = "21_plus"
    UNKNOWN = "unknown"


class Verification(StrEnum):
    """How an age band was established, weakest first (declaration order is the strength order)."""

    NONE = "none"
    SELF_DECLARED = "self_declared"
    PARENTAL = "parental"
    FACIAL_ESTIMATION = "facial_estimation"
    ID_DOCUMENT = "id_document"


class ChannelKind(StrEnum):
    DIRECT = "direct"
    GROUP = "group"
    EXPERIENCE = "experience"
    PARTY = "party"


_TARGET_REQUIRED = frozenset(
    {
        EventType.FRIEND_REQUEST,
        EventType.FRIEND_ACCEPT,
        EventType.SERVER_INVITE,
        EventType.FOLLOW_JOIN,
        EventType.BLOCK,
        EventType.USER_REPORT,
        EventType.GIFT,
        EventType.TRADE,
    }
)

Id128 = Annotated[str, Field(min_length=1, max_length=128)]


# RFC 3339 (the schema's "date-time"): a full date, "T" (or "t" or a space), a time with seconds and an offset.
# pydantic's own parser would also take bare dates, epoch numbers, "+0200" and times without seconds. Checked by
# pydantic-core before it parses the datetime (both in Rust: no Python call per timestamp).
RFC3339_PATTERN = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$"


class _Rfc3339:
    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.chain_schema([core_schema.str_schema(pattern=RFC3339_PATTERN), handler(source)])


Timestamp = Annotated[AwareDatetime, _Rfc3339()]
SchemaVersion = Annotated[int, Strict(), Field(ge=1, le=1)]  # strict: JSON true is not the number 1


class _Open(BaseModel):
    """Unknown extra fields are accepted and ignored, as the contract requires."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=False)


class User(_Open):
    user_id: Id128
    age_band: AgeBand
    age_verified: Verification
    account_created: Timestamp | None = None
    parent_of: tuple[str, ...] = ()


class Channel(_Open):
    kind: ChannelKind
    id: Id128


class Event(_Open):
    schema_version: SchemaVersion
    event_id: Id128
    type: EventType
    ts: Timestamp
    platform: Annotated[str, Field(min_length=1, max_length=64)]
    experience_id: Annotated[str, Field(max_length=128)] | None = None
    server_id: Annotated[str, Field(max_length=128)] | None = None
    channel: Channel | None = None
    actor: User
    target: User | None = None
    text: Annotated[str, Field(max_length=4096)] | None = None
    locale: Annotated[str, Field(max_length=35)] | None = None
    amount: Annotated[StrictInt, Field(ge=0)] | None = None
    currency: Annotated[str, Field(max_length=32)] | None = None
    report_category: Annotated[str, Field(max_length=64)] | None = None

    @model_validator(mode="after")
    def _conditional_requirements(self) -> Event:
        if self.type is EventType.CHAT_MESSAGE:
            if self.channel is None:
                raise ValueError("channel: required for chat_message")
            if self.text is None:
                raise ValueError("text: required for chat_message")
        if self.type in _TARGET_REQUIRED and self.target is None:
            raise ValueError(f"target: required for {self.type.value}")
        if self.type in (EventType.GIFT, EventType.TRADE) and self.amount is None:
            raise ValueError(f"amount: required for {self.type.value}")
        return self

    @functools.cached_property
    def conversation_id(self) -> str:
        """The conversation the event belongs to: its channel, else the (sorted) actor/target pair."""
        if self.channel is not None:
            return self.channel.id
        if self.target is not None:
            first, second = sorted((self.actor.user_id, self.target.user_id))
            return f"pair:{first}:{second}"
        return f"user:{self.actor.user_id}"


class EventValidationError(ValueError):
    """A record that breaks the event contract. ``path`` is the field path (``actor.age_band``), ``problem``
    says what is wrong. Operators: the record goes to the dead-letter topic; fix the producer."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


def _first_error(exc: ValidationError) -> EventValidationError:
    err = exc.errors(include_url=False)[0]
    path = ".".join(str(part) for part in err["loc"])
    message = str(err["msg"])
    message = message.removeprefix("Value error, ")
    if err["type"] == "value_error" and not err["loc"]:
        # The model-level conditional checks carry "field: problem" in the message.
        field, _, problem = message.partition(": ")
        return EventValidationError(field, problem or message)
    if err["type"] == "missing":
        return EventValidationError(path, "field required")
    if err["type"] == "string_pattern_mismatch" and (err.get("ctx") or {}).get("pattern") == RFC3339_PATTERN:
        return EventValidationError(path, "not an RFC 3339 date-time")
    if err["loc"] and err["loc"][-1] in ("ts", "account_created") and err["type"] == "string_type":
        return EventValidationError(path, "not an RFC 3339 date-time string")
    if err["loc"] == ("schema_version",):
        return EventValidationError(path, "must be the integer 1")
    return EventValidationError(path, message)


def parse_event(raw: bytes | str | dict[str, Any]) -> Event:
    """Parse one record (raw bytes from Kafka, a JSONL line, or a decoded dict) into an ``Event``."""
    if isinstance(raw, (bytes, str)):
        # Fast path: pydantic parses the JSON itself (no intermediate dicts). A record it rejects takes the
        # path below, which names the problem (not UTF-8, not JSON, the first field error) as it always has.
        try:
            return Event.model_validate_json(raw)
        except ValidationError:
            pass
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EventValidationError("", f"not UTF-8 (byte {exc.start})") from None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise EventValidationError("", f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(raw, dict):
        raise EventValidationError("", f"expected a JSON object, got {type(raw).__name__}")
    try:
        return Event.model_validate(raw)
    except ValidationError as exc:
        raise _first_error(exc) from None

