"""The pydantic event types and the JSON schema file must agree on every fixture."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from pipeline.contract import EventType, EventValidationError, parse_event

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "pipeline" / "event-v1.schema.json"
SHARED_SCHEMA = Path(__file__).resolve().parents[3] / "shared" / "contracts" / "event-v1.schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)

ADULT = {"user_id": "u-1", "age_band": "21_plus", "age_verified": "none"}
CHILD = {"user_id": "u-2", "age_band": "9_12", "age_verified": "parental", "account_created": "2025-01-02T03:04:05Z"}
BASE: dict[str, Any] = {
    "schema_version": 1,
    "event_id": "e-1",
    "type": "chat_message",
    "ts": "2026-03-02T15:00:00Z",
    "platform": "blockverse",
    "channel": {"kind": "direct", "id": "dm-u-1-u-2"},
    "actor": ADULT,
    "target": CHILD,
    "text": "hi",
}


def variant(**changes: Any) -> dict[str, Any]:
    event = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is ...:
            event.pop(key, None)
        else:
            event[key] = value
    return event


VALID = {
    "chat": BASE,
    "extra_unknown_field": variant(extra_field={"anything": 1}),
    "offset_time": variant(ts="2026-03-02T17:00:00+02:00"),
    "fractional_seconds": variant(ts="2026-03-02T15:00:00.123456Z"),
    "null_target_group": variant(channel={"kind": "group", "id": "g-1"}, target=None),
    "gift": variant(type="gift", text=..., amount=500, currency="gems"),
    "trade_zero": variant(type="trade", text=..., amount=0),
    "block_no_channel": variant(type="block", text=..., channel=...),
    "report": variant(type="user_report", text="he asked for my address", report_category="child_safety"),
    "age_signal_actor_only": variant(type="age_signal", text=..., target=..., channel=...),
    "parent_of": variant(actor={**ADULT, "parent_of": ["u-2"]}),
    "nulls": variant(experience_id=None, server_id=None),
    "max_text": variant(text="a" * 4096),
    "locale": variant(locale="pt-BR"),
    "unicode": variant(text="hola 👻 ѕnар"),
}

INVALID = {
    "wrong_version": (variant(schema_version=2), "schema_version"),
    "bool_version": (variant(schema_version=True), "schema_version"),
    "missing_event_id": (variant(event_id=...), "event_id"),
    "empty_event_id": (variant(event_id=""), "event_id"),
    "long_event_id": (variant(event_id="x" * 129), "event_id"),
    "bad_type": (variant(type="voice_message"), "type"),
    "bad_ts": (variant(ts="yesterday"), "ts"),
    "date_only_ts": (variant(ts="2026-03-02"), "ts"),
    "naive_ts": (variant(ts="2026-03-02T15:00:00"), "ts"),
    "numeric_ts": (variant(ts=1767225600), "ts"),
    "ts_without_seconds": (variant(ts="2026-03-02T15:00+02:00"), "ts"),
    "ts_offset_without_colon": (variant(ts="2026-03-02T15:00:00+0200"), "ts"),
    "impossible_ts": (variant(ts="2026-13-02T15:00:00Z"), "ts"),
    "string_version": (variant(schema_version="1"), "schema_version"),
    "missing_platform": (variant(platform=...), "platform"),
    "empty_platform": (variant(platform=""), "platform"),
    "missing_actor": (variant(actor=...), "actor"),
    "bad_band": (variant(actor={**ADULT, "age_band": "adult"}), "actor.age_band"),
    "bad_verification": (variant(actor={**ADULT, "age_verified": "passport"}), "actor.age_verified"),
    "actor_missing_band": (variant(actor={"user_id": "u", "age_verified": "none"}), "actor.age_band"),
    "numeric_user_id": (variant(actor={**ADULT, "user_id": 12}), "actor.user_id"),
    "chat_without_text": (variant(text=...), "text"),
    "chat_without_channel": (variant(channel=...), "channel"),
    "text_too_long": (variant(text="a" * 4097), "text"),
    "gift_without_amount": (variant(type="gift", text=...), "amount"),
    "gift_without_target": (variant(type="gift", amount=5, target=...), "target"),
    "negative_amount": (variant(type="gift", amount=-1), "amount"),
    "string_amount": (variant(type="gift", amount="5"), "amount"),
    "block_without_target": (variant(type="block", target=...), "target"),
    "bad_channel_kind": (variant(channel={"kind": "voice", "id": "c"}), "channel.kind"),
    "channel_without_id": (variant(channel={"kind": "direct"}), "channel.id"),
    "bad_account_created": (variant(actor={**ADULT, "account_created": "last year"}), "actor.account_created"),
    "parent_of_not_strings": (variant(actor={**ADULT, "parent_of": [1]}), "actor.parent_of"),
    "long_locale": (variant(locale="x" * 36), "locale"),
}


def test_vendored_schema_matches_shared_contract() -> None:
    if not SHARED_SCHEMA.is_file():
        pytest.skip("shared contract folder not beside the checkout")
    assert json.loads(SHARED_SCHEMA.read_text()) == SCHEMA


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_fixture_accepted_by_schema_and_types(name: str) -> None:
    event = VALID[name]
    VALIDATOR.validate(event)
    parsed = parse_event(json.dumps(event).encode())
    assert parsed.event_id == event["event_id"]
    assert parsed.type == EventType(event["type"])


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_fixture_rejected_by_both_with_field_path(name: str) -> None:
    event, path = INVALID[name]
    assert not VALIDATOR.is_valid(event), f"schema accepted {name}"
    with pytest.raises(EventValidationError) as caught:
        parse_event(json.dumps(event).encode())
    assert caught.value.path.startswith(path), (caught.value.path, caught.value.problem)
    assert caught.value.problem


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe not utf8", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b"null", "expected a JSON object"),
    ],
)
def test_unparseable_records_name_the_problem(raw: bytes, message: str) -> None:
    with pytest.raises(EventValidationError, match=message):
        parse_event(raw)


def test_conversation_id_is_channel_or_sorted_pair() -> None:
    assert parse_event(BASE).conversation_id == "dm-u-1-u-2"
    block = parse_event(VALID["block_no_channel"])
    assert block.conversation_id == "pair:u-1:u-2"
