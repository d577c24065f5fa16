"""Dependency outages with real services: a Redis that stops answering (SIGSTOP) pauses the worker without
committing past unprocessed events, and it resumes by itself when Redis answers again; a Redis that never
comes (nor a database) makes ``lifeguard run`` give up with exit code 3, committing nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from pipeline.streaming.case_store import open_case_store
from pipeline.streaming.embedded import free_port, port_open, redis_binary
from pipeline.streaming.kafka_clients import ensure_topics
from pipeline.streaming.produce import produce_file
from pipeline.streaming.worker import build_worker
from tests.streaming.conftest import Stream, World

pytestmark = [pytest.mark.services, pytest.mark.slow]


@pytest.fixture
def own_redis() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A Redis server this test may freeze and thaw."""
    port = free_port()
    proc = subprocess.Popen([redis_binary(), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not port_open("127.0.0.1", port):
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    yield proc, f"redis://127.0.0.1:{port}/0"
    os.kill(proc.pid, signal.SIGCONT)
    proc.kill()
    proc.wait(10)


def test_redis_outage_pauses_then_resumes_by_itself(world: World, stream: Stream,
                                                    own_redis: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, url = own_redis
    settings = world.settings.model_copy(update={"redis_url": url, "dependency_retry_seconds": 120, "partitions": 1,
                                                 "topic_events": world.settings.topic_events + "-p1"})
    ensure_topics(settings)  # one partition: the file's order, so even case details must equal replay
    world.settings = settings
    worker = build_worker(settings)
    crashed: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:
            crashed.append(exc)
            raise

    def alive() -> None:
        assert not crashed, f"the worker died: {crashed[0]!r}"

    thread = threading.Thread(target=run, name="worker", daemon=True)
    thread.start()
    half = len(stream.lines) // 2
    first = produce_file(stream.chunk(world.tmp, "first", 0, half), settings)
    world.wait_committed(first.end_offsets, timeout=60, alive=alive)

    os.kill(proc.pid, signal.SIGSTOP)  # Redis stops answering: calls time out
    second = produce_file(stream.chunk(world.tmp, "second", half), settings)
    deadline = time.monotonic() + 30
    while worker.stats.retries < 2:
        assert time.monotonic() < deadline, "the worker should be retrying"
        time.sleep(0.2)
    assert worker.metrics.is_paused
    committed = world.committed()
    assert all(committed.get(p, 0) <= first.end_offsets.get(p, 0) for p in range(settings.partitions)), \
        "nothing past the unprocessed events may be committed"

    os.kill(proc.pid, signal.SIGCONT)
    ends = {p: max(first.end_offsets.get(p, 0), second.end_offsets.get(p, 0)) for p in range(settings.partitions)}
    world.wait_committed(ends, timeout=60, alive=alive)
    assert not worker.metrics.is_paused
    worker.stop()
    thread.join(30)
    assert not thread.is_alive() and not crashed

    store = open_case_store(settings)
    try:
        assert store.cases_report() == stream.replay_cases
    finally:
        store.close()


@pytest.mark.parametrize("dependency", ["redis", "database"])
def test_run_gives_up_with_exit_code_3_when_a_dependency_never_comes(world: World, dependency: str) -> None:
    nowhere = {"redis": {"redis_url": f"redis://127.0.0.1:{free_port()}/0"},
               "database": {"database_url": f"postgresql://postgres@127.0.0.1:{free_port()}/lifeguard"}}
    world.settings = world.settings.model_copy(update={**nowhere[dependency], "dependency_retry_seconds": 2})
    started = time.monotonic()
    proc = world.start_worker("w")
    assert proc.wait(60) == 3
    assert time.monotonic() - started < 30
    messages = [e.get("msg", "") for e in world.worker_log("w")]
    assert any(f"{dependency} unavailable, retrying" in m for m in messages)
    assert any("giving up" in m for m in messages)
    assert world.committed() == {}
