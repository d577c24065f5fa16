"""The decision core: purity, age policy, conversation risk, cases, fan-out, shadow rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline.cases import MemoryCaseSink, raising, updates_of
from pipeline.contract import Event
from pipeline.decision import Decision, Detectors, Snapshot, decide
from pipeline.golden import expand_steps
from pipeline.rulebook import GoldenStep, RuleBook, load_rulebook
from pipeline.runner import DecisionRunner
from pipeline.state import MemoryStateStore


@pytest.fixture(scope="module")
def book() -> RuleBook:
    return load_rulebook()


@pytest.fixture(scope="module")
def detectors(book: RuleBook) -> Detectors:
    return Detectors(rules=book)


def events_of(book: RuleBook, steps: list[dict[str, Any]], tag: str = "t") -> list[Event]:
    return expand_steps([GoldenStep.model_validate(s) for s in steps], book.personas, tag)


def run(detectors: Detectors, events: list[Event]) -> tuple[list[Decision], MemoryCaseSink]:
    runner = DecisionRunner(MemoryStateStore(), detectors)
    sink = MemoryCaseSink()
    batch = runner.decide_batch(events)
    sink.apply(updates_of(batch.decisions), batch.decisions)
    runner.commit_state(batch)
    return batch.decisions, sink


PROGRESSIVE = [
    {"from": "adult", "to": "child", "text": "hey ur really good at this game"},
    {"from": "child", "to": "adult", "text": "thanks lol"},
    {"from": "adult", "to": "child", "text": "how old r u"},
    {"from": "child", "to": "adult", "text": "11"},
    {"from": "adult", "to": "child", "text": "are ur parents strict? do they check ur phone"},
    {"from": "adult", "to": "child", "text": "i can send u some robux if u want"},
    {"from": "adult", "to": "child", "text": "dont tell anyone we talk ok, our secret"},
    {"from": "adult", "to": "child", "text": "add me on snap its easier"},
    {"from": "adult", "to": "child", "text": "we could meet at the mall saturday"},
]


def test_decide_is_deterministic_and_does_not_mutate_its_input(book: RuleBook, detectors: Detectors) -> None:
    events = events_of(book, PROGRESSIVE)
    decisions, _ = run(detectors, events[:-1])
    state = decisions[-1].state
    before = state.to_json()
    first = decide(events[-1], Snapshot(state, {}), detectors)
    second = decide(events[-1], Snapshot(state, {}), detectors)
    assert state.to_json() == before
    assert first.to_record() == second.to_record()
    assert first.state.to_json() == second.state.to_json()
    json.dumps(first.to_record())  # self-contained and serialisable


def test_grooming_progression_opens_one_case_before_the_off_platform_request(
    book: RuleBook, detectors: Detectors
) -> None:
    events = events_of(book, PROGRESSIVE)
    decisions, sink = run(detectors, events)
    cases = sink.report()
    assert len(cases) == 1, "later evidence attaches to the open case"
    case = cases[0]
    offplatform_index = next(i for i, e in enumerate(events) if "snap" in (e.text or ""))
    opened_index = next(i for i, e in enumerate(events) if e.event_id == case["opened_by_event_id"])
    assert opened_index < offplatform_index
    assert case["subjects"] == ["u-adult"]
    assert {"age_probing", "secrecy", "isolation", "meeting_request"} <= set(case["stages"])
    assert case["priority"] == 1
    rule_ids = {r["id"] for r in case["reasons"] if r["kind"] == "rule"}
    assert {"isolation.offplatform_request", "meeting.in_person", "secrecy.dont_tell"} <= rule_ids
    assert any(r["kind"] == "age" for r in case["reasons"])
    assert all(r["version"] for r in case["reasons"])
    restrict = [a for d in decisions for a in d.actions if a.action == "restrict_dm"]
    assert restrict and restrict[0].subject == "u-adult"


def test_evidence_spans_point_into_the_original_text(book: RuleBook, detectors: Detectors) -> None:
    events = events_of(book, [{"from": "adult", "to": "child", "text": "pls add me on Ѕ n a p 👍"}])
    decisions, _ = run(detectors, events)
    reason = next(r for r in decisions[0].reasons if r.id == "isolation.offplatform_request")
    start, end = reason.spans[0]
    assert "n a p" in events[0].text[start:end]  # type: ignore[index]


def test_parent_linked_accounts_are_not_strangers(book: RuleBook, detectors: Detectors) -> None:
    steps = [{"from": "parent", "to": "child", "text": t} for t in (
        "dont tell anyone, its our secret", "are you home alone?", "i'll pick you up after school",
        "send me a pic of your project", "add me on whatsapp")]
    decisions, sink = run(detectors, events_of(book, steps))
    assert sink.report() == []
    assert decisions[-1].pair.relation == "parent_child"


def test_peers_swapping_discord_names_open_no_case(book: RuleBook, detectors: Detectors) -> None:
    steps = [
        {"from": "teen", "to": "teen2", "text": "whats ur discord"},
        {"from": "teen2", "to": "teen", "text": "add me on discord its gamer_kid#22"},
        {"from": "teen", "to": "teen2", "text": "dont tell anyone my main acc lol"},
    ]
    _, sink = run(detectors, events_of(book, steps))
    assert sink.report() == []


def test_adult_posing_as_teen_is_treated_as_adult_once_revealed(book: RuleBook, detectors: Detectors) -> None:
    steps = [
        {"from": "liar", "to": "child", "text": "hey wanna team up"},
        {"from": "liar", "to": "child", "text": "just got off my shift at work, so tired"},
        {"from": "liar", "to": "child", "text": "whats ur snap"},
    ]
    decisions, sink = run(detectors, events_of(book, steps))
    assert decisions[0].pair.relation == "older_minor"
    assert decisions[1].pair.relation == "adult_minor"
    assert decisions[1].state.revealed_bands["u-liar"] == "18_20"
    assert len(sink.report()) == 1


def test_child_on_an_adult_account_is_protected_after_stating_age(book: RuleBook, detectors: Detectors) -> None:
    steps = [
        {"from": "adult_friend", "to": "unknown", "text": "hey"},
        {"from": "unknown", "to": "adult_friend", "text": "hi im 11"},
        {"from": "adult_friend", "to": "unknown", "text": "cool, add me on snap"},
    ]
    decisions, _ = run(detectors, events_of(book, steps))
    assert decisions[0].pair.relation == "adult_unknown"
    assert decisions[2].pair.relation == "adult_minor"
    assert any(r.id == "isolation.offplatform_request" for r in decisions[2].reasons)


def test_meeting_request_outranks_flattery_in_priority(book: RuleBook, detectors: Detectors) -> None:
    meeting = run(detectors, events_of(book, [
        {"from": "adult", "to": "child", "text": "how old r u"},
        {"from": "adult", "to": "child", "text": "we could meet at the park tomorrow"},
    ], "m"))[1].report()
    flattery = run(detectors, events_of(book, [
        {"from": "adult", "to": "child", "text": "how old r u"},
        {"from": "adult", "to": "child", "text": "ur so mature for ur age, not like other kids"},
        {"from": "adult", "to": "child", "text": "ur really special, u can tell me anything"},
        {"from": "adult", "to": "child", "text": "i can send u robux"},
    ], "f"))[1].report()
    assert meeting and flattery
    assert meeting[0]["priority"] < flattery[0]["priority"] or meeting[0]["risk"] > flattery[0]["risk"]


def fanout_steps() -> list[dict[str, Any]]:
    return [{"from": "adult", "to": child, "text": "hey ur good at this, how old r u"}
            for child in ("child", "child2", "child3", "child4")]


def test_fanout_flags_every_minor_conversation_whatever_the_order(book: RuleBook, detectors: Detectors) -> None:
    forward = events_of(book, fanout_steps(), "fan")
    _, sink_forward = run(detectors, forward)
    backward = list(reversed(forward))
    _, sink_backward = run(detectors, backward)
    flagged_forward = {c["conversation_id"]: c["risk"] for c in sink_forward.report()}
    flagged_backward = {c["conversation_id"]: c["risk"] for c in sink_backward.report()}
    assert len(flagged_forward) == 4
    assert flagged_forward == flagged_backward
    case = sink_forward.report()[0]
    assert "fanout" in case["stages"]


def test_single_adult_minor_opener_is_not_a_case(book: RuleBook, detectors: Detectors) -> None:
    _, sink = run(detectors, events_of(book, fanout_steps()[:1]))
    assert sink.report() == []


def test_shadow_rule_is_recorded_but_opens_nothing(book: RuleBook, detectors: Detectors) -> None:
    decisions, sink = run(detectors, events_of(book, [{"from": "adult", "to": "child", "text": "i miss u"}]))
    assert [r.id for r in decisions[0].shadow_reasons] == ["experimental.emotional_dependency"]
    assert decisions[0].reasons == ()
    assert sink.report() == []


def test_redelivered_events_change_nothing(book: RuleBook, detectors: Detectors) -> None:
    events = events_of(book, PROGRESSIVE)
    store = MemoryStateStore()
    runner = DecisionRunner(store, detectors)
    sink = MemoryCaseSink()
    for chunk in (events[:5], events[3:], events):  # overlapping redeliveries
        batch = runner.decide_batch(chunk)
        sink.apply(updates_of(batch.decisions), batch.decisions)
        runner.commit_state(batch)
    _, clean = run(detectors, events)
    assert sink.report() == clean.report()
    state = store.get_conversations([events[0].conversation_id])[events[0].conversation_id]
    assert state.events == len(events)


def test_reports_from_the_child_raise_risk(book: RuleBook, detectors: Detectors) -> None:
    steps = [
        {"from": "adult", "to": "child", "text": "hey how old r u"},
        {"from": "child", "to": "adult", "type": "user_report", "text": "he keeps asking weird stuff"},
    ]
    decisions, sink = run(detectors, events_of(book, steps))
    assert decisions[1].risk > decisions[0].risk
    assert sink.report() and sink.report()[0]["subjects"] == ["u-adult"]


def test_concurrent_workers_with_stale_profiles_reconcile_to_the_replay_result(
    book: RuleBook, detectors: Detectors
) -> None:
    """Two workers decide their partitions' batches from the same state snapshot (neither sees the other's
    profile writes), then commit and reconcile: the flagged set and risks must equal a sequential run."""
    steps = [
        *fanout_steps(),
        {"from": "adult", "to": "child", "text": "dont tell ur parents we talk, our secret"},
        {"from": "adult", "to": "child3", "text": "ur so mature for ur age"},
    ]
    events = events_of(book, steps, "rec")
    _, sequential = run(detectors, events)
    expected = {c["conversation_id"]: c["risk"] for c in sequential.report()}

    store = MemoryStateStore()
    sink = MemoryCaseSink()
    worker_a, worker_b = DecisionRunner(store, detectors), DecisionRunner(store, detectors)
    first = {events[0].conversation_id, events[1].conversation_id}
    part_a = [e for e in events if e.conversation_id in first]
    part_b = [e for e in events if e.conversation_id not in first]
    batch_a, batch_b = worker_a.decide_batch(part_a), worker_b.decide_batch(part_b)  # both before any commit
    for worker, batch in ((worker_a, batch_a), (worker_b, batch_b)):
        sink.apply(updates_of(batch.decisions), batch.decisions)
        worker.commit_state(batch)
    for worker, batch in ((worker_a, batch_a), (worker_b, batch_b)):
        candidates = worker.reconcile_subjects(batch)
        sink.apply(raising(candidates, sink.case_risks(u.conversation_id for u in candidates)), [])
    assert {c["conversation_id"]: c["risk"] for c in sink.report()} == expected
    assert len(expected) == 4


class _RecordingClassifier:
    """Records the context ``decide`` scores each text in, and the forecast ``prime`` was given for it."""

    name, version, sha256 = "recorder", "1", "0" * 64

    def __init__(self) -> None:
        self.forecast: dict[str, Any] = {}
        self.seen: dict[str, Any] = {}

    def prime(self, texts: Any, forecast: Any = None) -> None:
        for i, text in enumerate(texts):
            self.forecast.setdefault(text.text, forecast(i) if forecast is not None else None)

    def score(self, text: Any, context: Any) -> None:
        self.seen.setdefault(text.text, context)


def test_forecast_is_the_context_decide_gives_when_state_does_not_move(book: RuleBook) -> None:
    """One event per conversation in the batch: the runner's forecast equals the context decide then uses."""
    recorder = _RecordingClassifier()
    detectors = Detectors(rules=book, classifiers=(recorder,))  # type: ignore[arg-type]
    steps = [{"from": "adult", "to": "child", "text": "ur really good at this game"}]
    first = events_of(book, steps, "f1")
    runner = DecisionRunner(MemoryStateStore(), detectors)
    runner.commit_state(runner.decide_batch(first))
    later = events_of(book, [{"from": "adult", "to": "child", "text": "how old r u btw"}], "f1")
    runner.commit_state(runner.decide_batch(later))
    for text, context in recorder.seen.items():
        assert recorder.forecast[text] == context, text


def test_profile_with_no_op_of_its_own_is_itself_and_derived_answers_are_not_its_value() -> None:
    from pipeline.state import ProfileOp, SubjectProfile

    profile = SubjectProfile("u-1", reporters=frozenset({"u-2"}))
    assert profile.with_ops([ProfileOp("u-9", "reporter", "u-3")]) is profile
    changed = profile.with_ops([ProfileOp("u-1", "reporter", "u-3")])
    assert changed is not profile and changed.reporters == {"u-2", "u-3"}
    profile.derived["anything"] = 1
    assert profile == SubjectProfile("u-1", reporters=frozenset({"u-2"}))
