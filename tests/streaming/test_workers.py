"""``lifeguard run`` workers against the real broker, Redis and the case database.

The reference for every run is ``lifeguard replay`` of the same file: whatever happens to the workers (a
SIGKILL mid-stream, a restart, a rebalance, a resend of every event), the conversations flagged and their
risk must come out the same, and every malformed record must be in the dead-letter topic with its reason.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from typing import Any

import pytest

from pipeline.streaming.case_store import open_case_store
from pipeline.streaming.deadletter import read_dead_letter
from pipeline.streaming.embedded import free_port
from pipeline.streaming.kafka_clients import ensure_topics
from pipeline.streaming.produce import produce_file
from tests.streaming.conftest import Stream, World

pytestmark = [pytest.mark.services, pytest.mark.slow]


def stored_cases(world: World) -> list[dict[str, Any]]:
    store = open_case_store(world.settings)
    try:
        return store.cases_report()
    finally:
        store.close()


def stored_flagged(world: World) -> dict[str, float]:
    return {c["conversation_id"]: c["risk"] for c in stored_cases(world)}


def single_partition(world: World) -> None:
    """One partition: the worker sees the file's order exactly, so even which event opened each case and the
    order of reasons must equal replay (with several partitions, conversations of one adult interleave
    differently; only the flagged conversations and their risk are then required to match)."""
    world.settings = world.settings.model_copy(update={
        "partitions": 1, "topic_events": world.settings.topic_events + "-p1"})
    ensure_topics(world.settings)


class RiskDriftError(AssertionError):
    """Same conversations flagged, but some risk differs from replay."""


def assert_same_as_replay(got: dict[str, float], expected: dict[str, float]) -> None:
    assert set(got) == set(expected), (f"flagged only by the stream: {sorted(set(got) - set(expected))}; "
                                       f"only by replay: {sorted(set(expected) - set(got))}")
    differing = {c: (got[c], expected[c]) for c in got if got[c] != expected[c]}
    if differing:
        raise RiskDriftError(
            f"stream vs replay (stream, replay) for {len(differing)} conversations: {differing}. If only "
            "conversations of an adult with several minor contacts differ, look for a decision input that "
            "depends on the order conversations of different partitions were processed in (e.g. a count of the "
            "adult's contacts at the time of the event).")


def assigned_partitions(world: World, name: str) -> list[list[str]]:
    return [entry["partitions"] for entry in world.worker_log(name)
            if entry.get("msg") == "partitions assigned" and entry.get("partitions")]


def alive(*procs: Any) -> Any:
    def check() -> None:
        for proc in procs:
            assert proc.poll() is None, f"worker exited early with {proc.returncode}"
    return check


def test_produce_to_cases_dead_letters_and_sigterm(world: World, stream: Stream) -> None:
    single_partition(world)
    worker = world.start_worker("w1")
    produced = produce_file(stream.path, world.settings)
    assert produced.records == len(stream.lines)
    world.wait_committed(produced.end_offsets, timeout=90, alive=alive(worker))

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0

    assert stored_cases(world) == stream.replay_cases

    letters = [read_dead_letter(r.value) for r in world.read_topic(world.settings.topic_deadletter,
                                                                   len(stream.malformed))]
    assert sorted(letter["original_bytes"] for letter in letters) == sorted(stream.malformed)
    for letter in letters:
        assert letter["reason"]
        assert letter["source"]["topic"] == world.settings.topic_events
        assert letter["source"]["offset"] < produced.end_offsets[letter["source"]["partition"]]

    actions = [json.loads(r.value) for r in world.read_topic(world.settings.topic_actions, 1, timeout=5)]
    assert all(a["action"] == "restrict_dm" and a["action_id"].startswith("act-") for a in actions)
    assert {a["conversation_id"] for a in actions} <= set(stream.flagged())


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_sigkill_mid_stream_and_restart_equals_replay(world: World, stream: Stream, database: str,
                                                      request: pytest.FixtureRequest) -> None:
    updates: dict[str, Any] = {"max_poll_records": 40}
    if database == "postgresql":
        updates["database_url"] = request.getfixturevalue("postgres_url")
    world.settings = world.settings.model_copy(update=updates)
    third = len(stream.lines) // 3

    a = world.start_worker("a")
    b = world.start_worker("b")
    deadline = time.monotonic() + 30
    while not (assigned_partitions(world, "a") and assigned_partitions(world, "b")):
        assert time.monotonic() < deadline, "both workers should get partitions"
        time.sleep(0.2)
    first = produce_file(stream.chunk(world.tmp, "first", 0, third), world.settings)
    world.wait_committed(first.end_offsets, timeout=60, alive=alive(a, b))
    owned_by_a = {int(p.rsplit("/", 1)[1]) for p in assigned_partitions(world, "a")[-1]}
    owned_by_b = {int(p.rsplit("/", 1)[1]) for p in assigned_partitions(world, "b")[-1]}
    assert owned_by_a and owned_by_b and not owned_by_a & owned_by_b, "the two workers share the partitions"

    second = produce_file(stream.chunk(world.tmp, "second", third, 2 * third), world.settings)
    # Kill a while it works through its share of the second chunk (effects written, offsets not all committed).
    start = world.committed()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = world.committed()
        if any(now.get(p, 0) > start.get(p, 0) for p in owned_by_a):
            break
        time.sleep(0.02)
    a.send_signal(signal.SIGKILL)
    a.wait(10)
    ends = {p: max(first.end_offsets.get(p, 0), second.end_offsets.get(p, 0)) for p in range(4)}
    world.wait_committed(ends, timeout=60, alive=alive(b))  # b took over a's partitions
    assert len(assigned_partitions(world, "b")[-1]) == 4

    a2 = world.start_worker("a2")  # the restart: it joins and takes its share back
    deadline = time.monotonic() + 30
    while not assigned_partitions(world, "a2") or len(assigned_partitions(world, "b")[-1]) != 2:
        assert time.monotonic() < deadline, "the restarted worker should get partitions back"
        time.sleep(0.2)
    last = produce_file(stream.chunk(world.tmp, "last", 2 * third), world.settings)
    ends = {p: max(ends[p], last.end_offsets.get(p, 0)) for p in range(4)}
    world.wait_committed(ends, timeout=60, alive=alive(b, a2))
    for proc in (a2, b):
        proc.send_signal(signal.SIGTERM)
    assert [a2.wait(30), b.wait(30)] == [0, 0]
    summary = next(e for e in world.worker_log("a2") if e.get("msg") == "worker stopped")
    assert summary["consumed"] > 0

    letters = world.read_topic(world.settings.topic_deadletter, len(stream.malformed))
    # Redelivery after the kill may dead-letter a record twice; every malformed record is there.
    assert {read_dead_letter(r.value)["original_bytes"] for r in letters} == set(stream.malformed)
    assert_same_as_replay(stored_flagged(world), stream.flagged())


def test_resent_events_change_nothing_and_metrics_say_so(world: World, stream: Stream) -> None:
    single_partition(world)
    port = free_port()
    worker = world.start_worker("w", "--metrics-port", str(port))
    first = produce_file(stream.path, world.settings)
    world.wait_committed(first.end_offsets, timeout=90, alive=alive(worker))
    before = stored_flagged(world)

    again = produce_file(stream.path, world.settings)  # every event resent with its event id
    world.wait_committed(again.end_offsets, timeout=90, alive=alive(worker))
    assert stored_flagged(world) == before == stream.flagged()
    assert stored_cases(world) == stream.replay_cases

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        metrics = {line.split(" ")[0]: float(line.split(" ")[1]) for line in response.read().decode().splitlines()
                   if line and not line.startswith("#")}
    assert metrics["lifeguard_events_consumed_total"] == 2 * len(stream.lines)
    assert metrics["lifeguard_events_decided_total"] == stream.events
    assert metrics["lifeguard_events_duplicate_total"] == stream.events
    assert sum(v for k, v in metrics.items() if k.startswith("lifeguard_events_dead_lettered_total")) == \
        2 * len(stream.malformed)
    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            assert response.status == 200
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
