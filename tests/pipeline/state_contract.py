"""The ``StateStore`` contract: every implementation inherits ``StateStoreContract`` and provides ``store``.

A store must hand back exactly what it was given (float bits and mapping order included: both feed the
decision core), answer dedupe questions per conversation, and apply profile ops idempotently in any order.
"""

from __future__ import annotations

import random
from typing import Any

from pipeline.state import (
    ContactEntry,
    ConversationState,
    EventKey,
    ParticipantInfo,
    ProfileOp,
    StageMark,
    StateStore,
    StateWrites,
    SubjectProfile,
)

ODD_IDS = ["dm-1", "grp:{brace}}", "pair:u-1:u-2", "ü-💬-チャット", "a" * 128, "{", "}", "x}:d"]


def conversation(conv_id: str, **changes: Any) -> ConversationState:
    base = ConversationState(
        conversation_id=conv_id,
        channel_kind="direct",
        first_ts=1772463600.0,
        last_ts=1772467200.125,
        events=7,
        messages_by_user={"u-2": 3, "u-1": 4},  # deliberately not sorted: order is part of the state
        participants={
            "u-2": ParticipantInfo("9_12", "parental", ("p-9",)),
            "u-1": ParticipantInfo("21_plus", "none"),
        },
        revealed_bands={"u-1": "18_20"},
        evidence={"secrecy": 0.1 + 0.2, "trust_building": 1 / 3, "age_probing": 2.5e-05},
        stage_marks={"trust_building": StageMark(1772463600.0, "e-1"), "secrecy": StageMark(1772467200.125, "e-7")},
        rule_hits={"secrecy.dont_tell": 1, "trust.flattery": 2},
        counters={"chat_message": 7},
        peak_local=0.6180339887498949,
        peak_risk=0.7071067811865476,
    )
    return base.evolve(**changes)


def writes(conversations: dict[str, ConversationState] | None = None, ops: tuple[ProfileOp, ...] = (),
           seen: tuple[EventKey, ...] = ()) -> StateWrites:
    return StateWrites(conversations or {}, ops, seen)


def contact(user: str, conv: str, peak: float = 0.4) -> ProfileOp:
    return ProfileOp(user, "contact", conv, ContactEntry(1772463600.0, peak, 0.78, "9_12").encode())


class StateStoreContract:
    """Subclasses provide a fixture ``store`` returning an empty store (and cleaning up after it)."""

    def test_empty_store_knows_nothing(self, store: StateStore) -> None:
        assert store.get_conversations(["dm-1"]) == {}
        assert store.get_profiles(["u-1"]) == {}
        assert store.seen_events([EventKey("dm-1", "e-1")]) == set()
        assert store.get_conversations([]) == {}
        assert store.seen_events([]) == set()

    def test_conversation_round_trips_exactly(self, store: StateStore) -> None:
        state = conversation("dm-1")
        store.apply(writes({"dm-1": state}))
        got = store.get_conversations(["dm-1", "dm-unknown"])
        assert list(got) == ["dm-1"]
        assert got["dm-1"] == state
        for field in ("messages_by_user", "participants", "evidence", "stage_marks", "rule_hits"):
            assert list(getattr(got["dm-1"], field)) == list(getattr(state, field)), field
        assert got["dm-1"].evidence["secrecy"] == 0.1 + 0.2  # the exact float, not a rounded one

    def test_minimal_state_round_trips(self, store: StateStore) -> None:
        state = ConversationState(conversation_id="pair:u-1:u-2")
        store.apply(writes({state.conversation_id: state}))
        assert store.get_conversations([state.conversation_id]) == {state.conversation_id: state}

    def test_odd_identifiers_stay_apart(self, store: StateStore) -> None:
        states = {conv: conversation(conv, events=i) for i, conv in enumerate(ODD_IDS)}
        store.apply(writes(states, seen=tuple(EventKey(c, f"e-{c}") for c in ODD_IDS)))
        assert store.get_conversations(ODD_IDS) == states
        for conv in ODD_IDS:
            others = [EventKey(o, f"e-{conv}") for o in ODD_IDS if o != conv]
            assert store.seen_events([EventKey(conv, f"e-{conv}"), *others]) == {EventKey(conv, f"e-{conv}")}

    def test_a_later_write_replaces_the_whole_state(self, store: StateStore) -> None:
        store.apply(writes({"dm-1": conversation("dm-1")}))
        smaller = conversation("dm-1", evidence={}, stage_marks={}, events=8)
        store.apply(writes({"dm-1": smaller}))
        assert store.get_conversations(["dm-1"])["dm-1"] == smaller

    def test_dedupe_markers_are_scoped_to_their_conversation(self, store: StateStore) -> None:
        store.apply(writes(seen=(EventKey("dm-1", "e-1"), EventKey("dm-1", "e-2"))))
        asked = [EventKey("dm-1", "e-1"), EventKey("dm-1", "e-3"), EventKey("dm-2", "e-1"), EventKey("dm-1", "e-2")]
        assert store.seen_events(asked) == {EventKey("dm-1", "e-1"), EventKey("dm-1", "e-2")}

    def test_repeated_keys_in_one_question(self, store: StateStore) -> None:
        store.apply(writes(seen=(EventKey("dm-1", "e-1"),)))
        assert store.seen_events([EventKey("dm-1", "e-1")] * 3) == {EventKey("dm-1", "e-1")}

    def test_profile_ops_build_a_profile(self, store: StateStore) -> None:
        ops = (
            contact("u-1", "dm-1", 0.4),
            contact("u-1", "dm-2", 0.2),
            ProfileOp("u-1", "reporter", "u-7"),
            ProfileOp("u-1", "blocker", "u-8"),
            ProfileOp("u-9", "reporter", "u-1"),
        )
        store.apply(writes(ops=ops))
        profiles = store.get_profiles(["u-1", "u-9", "u-none"])
        assert set(profiles) == {"u-1", "u-9"}
        assert profiles["u-1"] == SubjectProfile("u-1").with_ops(ops)
        assert profiles["u-1"].contacts["dm-1"] == ContactEntry(1772463600.0, 0.4, 0.78, "9_12")
        assert profiles["u-1"].reporters == frozenset({"u-7"})
        assert profiles["u-1"].blockers == frozenset({"u-8"})
        assert profiles["u-9"] == SubjectProfile("u-9", {}, frozenset({"u-1"}), frozenset())

    def test_profile_ops_are_idempotent_and_order_free(self, store: StateStore) -> None:
        ops = [contact("u-1", f"dm-{i}", i / 10) for i in range(5)]
        ops += [ProfileOp("u-1", "reporter", f"u-r{i}") for i in range(3)]
        ops += [ProfileOp("u-1", "blocker", "u-b"), ProfileOp("u-1", "blocker", "u-b")]
        shuffled = list(ops)
        random.Random(7).shuffle(shuffled)
        store.apply(writes(ops=tuple(shuffled[:4])))
        store.apply(writes(ops=tuple(shuffled[4:])))
        store.apply(writes(ops=tuple(ops)))  # redelivery of everything
        assert store.get_profiles(["u-1"])["u-1"] == SubjectProfile("u-1").with_ops(ops)

    def test_a_contact_entry_is_replaced_by_its_conversation(self, store: StateStore) -> None:
        store.apply(writes(ops=(contact("u-1", "dm-1", 0.3),)))
        store.apply(writes(ops=(contact("u-1", "dm-1", 0.6),)))
        assert store.get_profiles(["u-1"])["u-1"].contacts["dm-1"].peak_local == 0.6

    def test_applying_a_batch_twice_changes_nothing(self, store: StateStore) -> None:
        batch = writes({"dm-1": conversation("dm-1")}, (contact("u-1", "dm-1"),), (EventKey("dm-1", "e-7"),))
        store.apply(batch)
        first = (store.get_conversations(["dm-1"]), store.get_profiles(["u-1"]),
                 store.seen_events([EventKey("dm-1", "e-7")]))
        store.apply(batch)
        assert (store.get_conversations(["dm-1"]), store.get_profiles(["u-1"]),
                store.seen_events([EventKey("dm-1", "e-7")])) == first

    def test_an_empty_batch_is_harmless(self, store: StateStore) -> None:
        store.apply(writes())
        assert store.get_conversations(["dm-1"]) == {}

    def test_many_conversations_in_one_batch(self, store: StateStore) -> None:
        states = {f"dm-{i}": conversation(f"dm-{i}", events=i) for i in range(300)}
        seen = tuple(EventKey(f"dm-{i}", f"e-{j}") for i in range(300) for j in range(3))
        store.apply(writes(states, seen=seen))
        assert store.get_conversations(states) == states
        assert store.seen_events(seen) == set(seen)

    def test_a_batch_read_answers_like_the_separate_reads(self, store: StateStore) -> None:
        states = {c: conversation(c, events=i) for i, c in enumerate(ODD_IDS[:5])}
        marked = tuple(EventKey(c, f"e-{j}") for c in ODD_IDS[:3] for j in range(2))
        store.apply(writes(states, (contact("u-1", ODD_IDS[0]), ProfileOp("u-2", "reporter", "u-1")), marked))
        asked = [*marked, EventKey(ODD_IDS[0], "e-9"), EventKey("dm-unknown", "e-1"), marked[0]]
        users = ["u-2", "u-none", "u-1"]
        read = store.read_batch(asked, users)
        assert read.seen == store.seen_events(asked) == set(marked)
        assert read.conversations == store.get_conversations(k.conversation_id for k in asked)
        assert set(read.conversations) == set(ODD_IDS[:3])
        assert read.profiles == store.get_profiles(users) and set(read.profiles) == {"u-1", "u-2"}
        assert store.read_batch([], []) == (set(), {}, {})
