"""Tests for the seeded synthetic conversation generator (pipeline.synth)."""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from pipeline.synth import (
    BENIGN_KINDS,
    GROOMING_KINDS,
    MALFORMED_KINDS,
    STAGES,
    BankError,
    SynthResult,
    default_labels_path,
    generate,
    load_bank,
    write_jsonl,
)

REPO = Path(__file__).resolve().parents[2]
_RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_MINOR_BANDS = {"under_9", "9_12", "13_15", "16_17"}
_ADULT_BANDS = {"18_20", "21_plus"}
_CRITICAL_STAGES = {"isolation", "meeting_request"}
# Content policy sanity check: none of these may ever appear in a bank or in generated text.
_DENY = re.compile(
    r"\b(sex|sexy|sexual|nude|nudes|naked|porn|nsfw|horny|undress|underwear|lingerie|boobs|genitals?|"
    r"explicit|onlyfans|kiss|kissing|body|bodies)\b"
)
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))


def _schema_path() -> Path:
    """The contract copy vendored in the package (a test in test_contract checks it equals the shared one)."""
    return REPO / "pipeline" / "event-v1.schema.json"


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(_schema_path().read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


@pytest.fixture(scope="module", params=["train", "holdout"])
def result(request: pytest.FixtureRequest) -> SynthResult:
    return generate(seed=7, conversations=300, bank=request.param, malformed=16)


def _by_conversation(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        out[e["channel"]["id"]].append(e)
    return out


def _norm(line: str) -> str:
    return " ".join(line.lower().split())


def _parse_ts(value: str) -> datetime:
    assert _RFC3339_Z.match(value), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# ---- determinism -------------------------------------------------------------------------------------
def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    outs = []
    for run in ("a", "b"):
        out = tmp_path / run / "events.jsonl"
        write_jsonl(generate(seed=42, conversations=120, bank="holdout", malformed=9), out)
        outs.append((out.read_bytes(), default_labels_path(out).read_bytes()))
    assert outs[0] == outs[1]
    other = tmp_path / "c.jsonl"
    write_jsonl(generate(seed=43, conversations=120, bank="holdout", malformed=9), other)
    assert other.read_bytes() != outs[0][0]


def test_malformed_count_does_not_change_the_events() -> None:
    a = generate(seed=5, conversations=40)
    b = generate(seed=5, conversations=40, malformed=8)
    assert a.events == b.events and a.labels == b.labels


def test_write_jsonl_layout(tmp_path: Path) -> None:
    res = generate(seed=3, conversations=30, malformed=8)
    out = tmp_path / "nested" / "s.jsonl"
    labels_out = tmp_path / "custom-labels.json"
    write_jsonl(res, out, labels_out)
    assert not default_labels_path(out).exists()
    assert json.loads(labels_out.read_text(encoding="utf-8")) == res.labels
    lines = out.read_bytes().split(b"\n")
    assert lines[-1] == b""
    lines = lines[:-1]
    assert len(lines) == len(res.events) + len(res.malformed)
    assert sorted(line for line in lines if line in res.malformed) == sorted(res.malformed)
    good = [json.loads(line) for line in lines if line not in res.malformed]
    assert good == res.events
    first = json.dumps(res.events[0], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert lines.index(first.encode("utf-8")) >= 0
    assert default_labels_path(Path("x/run.jsonl")) == Path("x/run.labels.json")
    assert default_labels_path(Path("x/run.out")) == Path("x/run.out.labels.json")


# ---- contract --------------------------------------------------------------------------------------------
def test_every_event_validates_against_event_v1(result: SynthResult, validator: Draft202012Validator) -> None:
    for event in result.events:
        errors = [e.message for e in validator.iter_errors(event)]
        assert not errors, (event["event_id"], errors)
        # jsonschema checks "date-time" only when rfc3339-validator is installed: check explicitly too.
        _parse_ts(event["ts"])
        for user in (event["actor"], event.get("target")):
            if user is not None:
                _parse_ts(user["account_created"])
        assert event["platform"] == "blockverse"
        if event["type"] in ("gift", "trade"):
            assert event["currency"] == "gems" and event["amount"] > 0
        if event["type"] == "user_report":
            assert event["report_category"]


def test_event_ids_unique_and_stream_sorted(result: SynthResult) -> None:
    ids = [e["event_id"] for e in result.events]
    assert len(ids) == len(set(ids))
    assert all(i.startswith("evt-7-") for i in ids)
    stamps = [_parse_ts(e["ts"]) for e in result.events]
    assert stamps == sorted(stamps)
    assert stamps[0] >= datetime(2026, 3, 2, 15, tzinfo=UTC)


def test_conversations_are_coherent(result: SynthResult) -> None:
    for conv_id, events in _by_conversation(result.events).items():
        stamps = [_parse_ts(e["ts"]) for e in events]
        assert all(a < b for a, b in pairwise(stamps)), conv_id
        assert stamps[-1] - stamps[0] < timedelta(days=1), conv_id
        assert 4 <= len(events) <= 45, (conv_id, len(events))
        kinds = {e["channel"]["kind"] for e in events}
        assert len(kinds) == 1, conv_id
        for e in events:
            assert _parse_ts(e["actor"]["account_created"]) < _parse_ts(e["ts"])
        if kinds == {"direct"}:
            assert conv_id.startswith("dm-")
            a, b = conv_id.removeprefix("dm-").split("-")
            assert a < b
            for e in events:
                pair = {e["actor"]["user_id"], e["target"]["user_id"]} if e.get("target") else None
                assert e["actor"]["user_id"] in (a, b)
                assert pair is None or pair == {a, b}
        else:
            assert conv_id.startswith("grp-")
            assert events[0]["experience_id"] and events[0]["server_id"]


def test_custom_start_shifts_the_stream() -> None:
    start = datetime(2030, 1, 1, 8, 30, tzinfo=UTC)
    res = generate(seed=1, conversations=10, start=start)
    assert min(_parse_ts(e["ts"]) for e in res.events) >= start
    with pytest.raises(ValueError):
        generate(seed=1, conversations=10, start=datetime(2030, 1, 1))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"conversations": -1},
        {"conversations": 5, "grooming_share": 1.5},
        {"conversations": 5, "malformed": -2},
        {"conversations": 5, "bank": "test"},
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        generate(seed=1, **kwargs)


def test_zero_conversations() -> None:
    res = generate(seed=1, conversations=0, malformed=3)
    assert res.events == [] and res.labels["conversations"] == {} and len(res.malformed) == 3


# ---- labels -----------------------------------------------------------------------------------------------
def test_labels_cover_every_conversation_and_message(result: SynthResult) -> None:
    labels = result.labels
    assert labels["generator"] == "lifeguard-synth" and labels["version"] == 1 and labels["seed"] == 7
    convs = labels["conversations"]
    grouped = _by_conversation(result.events)
    assert set(convs) == set(grouped)
    assert len(convs) == 300
    for conv_id, lab in convs.items():
        events = grouped[conv_id]
        by_id = {e["event_id"]: e for e in events}
        chat_ids = [e["event_id"] for e in events if e["type"] == "chat_message"]
        assert [m["event_id"] for m in lab["messages"]] == chat_ids
        assert all(m["stage"] in STAGES for m in lab["messages"])
        present = [m["stage"] for m in lab["messages"] if m["stage"] != "benign"]
        assert lab["stages"] == list(dict.fromkeys(present))
        actors = {e["actor"]["user_id"] for e in events}
        if lab["label"] == "benign":
            assert lab["kind"] in BENIGN_KINDS
            assert lab["subjects"] == [] and lab["stages"] == []
            assert lab["first_critical_event_id"] is None
        else:
            assert lab["label"] == "grooming" and lab["kind"] in GROOMING_KINDS
            assert len(lab["subjects"]) == 1 and lab["subjects"][0] in actors
            assert lab["stages"], conv_id
            crit = lab["first_critical_event_id"]
            if crit is not None:
                stage_of = {m["event_id"]: m["stage"] for m in lab["messages"]}
                assert stage_of[crit] in _CRITICAL_STAGES
                assert by_id[crit]["actor"]["user_id"] == lab["subjects"][0]
            # only the subject's messages carry grooming stages
            for m in lab["messages"]:
                if m["stage"] != "benign":
                    assert by_id[m["event_id"]]["actor"]["user_id"] == lab["subjects"][0]


@pytest.mark.parametrize("share", [0.0, 0.1, 0.3, 0.5, 1.0])
def test_grooming_share_is_honoured(share: float) -> None:
    res = generate(seed=11, conversations=400, grooming_share=share)
    labels = [c["label"] for c in res.labels["conversations"].values()]
    assert abs(labels.count("grooming") / len(labels) - share) <= 0.01


@pytest.mark.parametrize("bank", ["train", "holdout"])
def test_every_kind_appears_from_200_conversations(bank: str) -> None:
    res = generate(seed=2, conversations=200, bank=bank)  # type: ignore[arg-type]
    kinds = Counter(c["kind"] for c in res.labels["conversations"].values())
    assert set(kinds) == set(GROOMING_KINDS) | set(BENIGN_KINDS)


def test_every_grooming_stage_appears() -> None:
    res = generate(seed=4, conversations=300)
    seen = {m["stage"] for c in res.labels["conversations"].values() for m in c["messages"]}
    assert seen == set(STAGES)
    crit = [c for c in res.labels["conversations"].values() if c["first_critical_event_id"]]
    partial = [c for c in res.labels["conversations"].values() if c["label"] == "grooming" and c not in crit]
    assert crit and partial  # some grooming is caught before (or stops before) the critical move


def test_kind_semantics() -> None:
    res = generate(seed=9, conversations=600)
    grouped = _by_conversation(res.events)
    fanout_convs: dict[str, list[datetime]] = defaultdict(list)
    for conv_id, lab in res.labels["conversations"].items():
        events = grouped[conv_id]
        users = {u["user_id"]: u for e in events for u in (e["actor"], e.get("target")) if u is not None}
        kind = lab["kind"]
        if lab["label"] == "grooming":
            subject = users[lab["subjects"][0]]
            others = [u for uid, u in users.items() if uid != subject["user_id"]]
            assert others and all(u["age_band"] in _MINOR_BANDS for u in others), conv_id
            if kind == "age_liar":
                assert subject["age_band"] in ("13_15", "16_17")
                assert subject["age_verified"] == "self_declared"
                assert "age_deception" in lab["stages"]
            elif kind == "unknown_age":
                assert subject["age_band"] == "unknown"
            else:
                assert subject["age_band"] in _ADULT_BANDS
            if kind == "fanout":
                fanout_convs[subject["user_id"]].append(_parse_ts(events[0]["ts"]))
            if kind == "gift_lure":
                assert any(e["type"] in ("gift", "trade") for e in events)
        elif kind == "parent_child":
            parent = next(u for u in users.values() if u.get("parent_of"))
            child = next(u for u in users.values() if not u.get("parent_of"))
            assert parent["parent_of"] == [child["user_id"]] and parent["age_band"] == "21_plus"
        elif kind in ("creator_helping", "tutor_help"):
            assert events[0]["channel"]["kind"] in ("experience", "group")
            assert any(u["age_band"] == "21_plus" for u in users.values())
            assert "secrecy" not in lab["stages"]
        elif kind == "adults_chatting":
            assert all(u["age_band"] in _ADULT_BANDS for u in users.values())
    assert fanout_convs
    for starts in fanout_convs.values():
        assert 5 <= len(starts) <= 12
        assert max(starts) - min(starts) <= timedelta(hours=24)


def test_obfuscated_kind_disguises_risky_messages() -> None:
    res = generate(seed=13, conversations=400, bank="train")
    texts = {e["event_id"]: e.get("text", "") for e in res.events}
    plain = re.compile(r"^[a-z0-9 '?!.,]*$")
    bank = load_bank("train")
    tails = tuple(f" {t}" for t in bank.fillers["emoji_tails"])
    aliases = {a for names in bank.obfuscation.app_aliases.values() for a in names}
    for lab in res.labels["conversations"].values():
        if lab["kind"] != "obfuscated":
            continue
        risky = [texts[m["event_id"]] for m in lab["messages"] if m["stage"] in ("age_probing", "secrecy")]
        risky += [texts[m["event_id"]] for m in lab["messages"] if m["stage"] in _CRITICAL_STAGES]
        assert risky
        risky = [next((t[: -len(x)] for x in tails if t.endswith(x)), t) for t in risky]  # drop style tails
        # every risky line was altered: non-ASCII (homoglyph, zero-width, emoji), leet digits or separators
        tell = re.compile(r"\b\w( \w){2,}\b|\w\.\w\.|[a-z]\d|\d[a-z]")
        for text in risky:
            alias = any(a in text for a in aliases)
            assert alias or not plain.match(text) or tell.search(text), text


# ---- malformed records ------------------------------------------------------------------------------------
def _rejection(record: bytes, validator: Draft202012Validator) -> str:
    try:
        text = record.decode("utf-8")
    except UnicodeDecodeError:
        return "utf8"
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return "json"
    if not isinstance(obj, dict):
        return "not_object"
    if not validator.is_valid(obj):
        return "schema"
    return "ACCEPTED"


def test_malformed_records_are_all_rejected(result: SynthResult, validator: Draft202012Validator) -> None:
    assert len(result.malformed) == 16
    reasons = Counter(_rejection(r, validator) for r in result.malformed)
    assert "ACCEPTED" not in reasons
    assert {"utf8", "json", "not_object", "schema"} <= set(reasons)
    assert all(b"\n" not in r for r in result.malformed)
    assert len(MALFORMED_KINDS) == 8
    ids = {e["event_id"] for e in result.events}
    for r in result.malformed:
        try:
            obj = json.loads(r)
        except ValueError:
            continue
        if isinstance(obj, dict) and "event_id" in obj:
            assert obj["event_id"] not in ids


# ---- banks ------------------------------------------------------------------------------------------------
def test_banks_are_package_data() -> None:
    root = resources.files("pipeline.synth").joinpath("banks")
    assert root.joinpath("README.md").is_file()
    for bank in ("train", "holdout"):
        assert any(f.name.endswith(".yaml") for f in root.joinpath(bank).iterdir())
    with pytest.raises(BankError):
        load_bank("nope")  # type: ignore[arg-type]


def test_banks_have_several_hundred_lines_and_same_structure() -> None:
    train, holdout = load_bank("train"), load_bank("holdout")
    assert len(train.templates()) >= 300 and len(holdout.templates()) >= 300
    assert {k: (s.stage, s.critical) for k, s in train.sections.items()} == {
        k: (s.stage, s.critical) for k, s in holdout.sections.items()
    }
    assert set(train.fillers) == set(holdout.fillers)


def test_train_and_holdout_share_no_template_or_filler() -> None:
    train, holdout = load_bank("train"), load_bank("holdout")
    shared = {_norm(t) for t in train.templates()} & {_norm(t) for t in holdout.templates()}
    assert not shared, sorted(shared)
    for key in train.fillers:
        common = set(train.fillers[key]) & set(holdout.fillers[key])
        assert not common, (key, common)
    assert not set(train.obfuscation.app_aliases) & set(holdout.obfuscation.app_aliases)
    assert set(train.obfuscation.homoglyphs.values()).isdisjoint(holdout.obfuscation.homoglyphs.values())
    assert set(train.obfuscation.zero_width).isdisjoint(holdout.obfuscation.zero_width)


@pytest.mark.parametrize("bank", ["train", "holdout"])
def test_homoglyphs_are_real_confusables(bank: str) -> None:
    from confusable_homoglyphs import confusables

    for latin, glyph in load_bank(bank).obfuscation.homoglyphs.items():  # type: ignore[arg-type]
        assert glyph != latin and not glyph.isascii()
        found = confusables.is_confusable(glyph, preferred_aliases=["latin"], greedy=True) or []
        assert any(latin in [h["c"] for h in hit["homoglyphs"]] for hit in found), (latin, glyph)


@pytest.mark.parametrize("bank", ["train", "holdout"])
def test_content_stays_non_explicit(bank: str) -> None:
    b = load_bank(bank)  # type: ignore[arg-type]
    corpus = list(b.templates()) + [v for values in b.fillers.values() for v in values]
    res = generate(seed=21, conversations=400, bank=bank)  # type: ignore[arg-type]
    corpus += [e["text"] for e in res.events if "text" in e]
    for text in corpus:
        folded = unicodedata.normalize("NFKC", text).translate(_ZERO_WIDTH).lower()
        for latin, glyph in b.obfuscation.homoglyphs.items():
            folded = folded.replace(glyph, latin)
        assert not _DENY.search(folded), text


# ---- performance ------------------------------------------------------------------------------------------
def test_two_thousand_conversations_take_seconds(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    res = generate(seed=99, conversations=2000, malformed=8)
    write_jsonl(res, tmp_path / "big.jsonl")
    elapsed = time.perf_counter() - t0
    assert len(res.labels["conversations"]) == 2000
    assert elapsed < 10.0, elapsed
