"""Every ``StateStore`` implementation runs the same contract suite, plus its own technology-specific checks."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from pipeline.state import EventKey, MemoryStateStore, StateWrites
from pipeline.streaming.redis_store import RedisStateStore
from tests.pipeline.state_contract import StateStoreContract, contact, conversation

REDIS_URL = os.environ.get("LIFEGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class TestMemoryStateStore(StateStoreContract):
    @pytest.fixture
    def store(self) -> MemoryStateStore:
        return MemoryStateStore()


def _redis_store(**kwargs: object) -> Iterator[RedisStateStore]:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is not running ({exc}); start it (see .ci/run)")
    store = RedisStateStore(client, prefix=f"lgtest-{uuid.uuid4().hex[:10]}", **kwargs)  # type: ignore[arg-type]
    yield store
    keys = store.scan_keys("*")
    if keys:
        client.delete(*keys)
    client.close()


@pytest.mark.services
class TestRedisStateStore(StateStoreContract):
    @pytest.fixture
    def store(self) -> Iterator[RedisStateStore]:
        yield from _redis_store()


@pytest.fixture
def redis_store() -> Iterator[RedisStateStore]:
    yield from _redis_store(state_ttl_seconds=3600, dedupe_ttl_seconds=600)


@pytest.mark.services
def test_every_key_carries_a_ttl_and_a_hash_tag(redis_store: RedisStateStore) -> None:
    redis_store.apply(StateWrites({"dm-1": conversation("dm-1")}, (contact("u-1", "dm-1"),),
                                  (EventKey("dm-1", "e-1"),)))
    keys = redis_store.scan_keys("*")
    assert sorted(k.split(":", 2)[1] for k in keys) == ["c", "d", "u"]
    ttls = {k.split(":", 2)[1]: int(redis_store.client.ttl(k)) for k in keys}
    assert 3500 < ttls["c"] <= 3600 and 3500 < ttls["u"] <= 3600
    assert 500 < ttls["d"] <= 600
    assert all("{dm-1}" in k or "{u-1}" in k for k in keys)


@pytest.mark.services
def test_old_dedupe_markers_are_trimmed() -> None:
    now = [1_000_000.0]
    store_iter = _redis_store(dedupe_ttl_seconds=600, clock=lambda: now[0])
    store = next(store_iter)
    try:
        store.apply(StateWrites({}, (), (EventKey("dm-1", "old"),)))
        now[0] += 601
        store.apply(StateWrites({}, (), (EventKey("dm-1", "new"),)))
        assert store.seen_events([EventKey("dm-1", "old"), EventKey("dm-1", "new")]) == {EventKey("dm-1", "new")}
    finally:
        next(store_iter, None)


@pytest.mark.services
def test_unreachable_redis_raises_state_store_error() -> None:
    from pipeline.state import StateStoreError

    store = RedisStateStore.from_url("redis://127.0.0.1:1/0", timeout_seconds=0.5)
    with pytest.raises(StateStoreError, match="Redis unavailable"):
        store.get_conversations(["dm-1"])
    with pytest.raises(StateStoreError):
        store.apply(StateWrites({"dm-1": conversation("dm-1")}, (), ()))
