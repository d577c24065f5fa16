"""Decision processes run the cyclic collector between batches: the pass the interpreter would pick, only once
enough objects have been kept since the last one, with the interpreter's own trigger left as a distant backstop."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.runner import GC_BACKSTOP, GC_THRESHOLDS, collect_between_batches


@pytest.fixture()
def passes() -> Iterator[list[int]]:
    """The generations of the passes that start while the test runs, under the decision processes' thresholds."""
    saved = gc.get_threshold()
    started: list[int] = []

    def watch(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started.append(info["generation"])

    young, middle, old = GC_THRESHOLDS
    gc.set_threshold(young * GC_BACKSTOP, middle, old)
    gc.collect()  # every generation's count back to zero
    gc.callbacks.append(watch)
    try:
        yield started
    finally:
        gc.callbacks.remove(watch)
        gc.set_threshold(*saved)


def test_nothing_runs_below_the_young_threshold(passes: list[int]) -> None:
    kept: list[list[int]] = [[] for _ in range(GC_THRESHOLDS[0] // 2)]
    collect_between_batches()
    assert passes == []
    assert kept


def test_young_passes_then_a_middle_one_as_the_interpreter_would(passes: list[int]) -> None:
    kept: list[list[list[int]]] = []
    for _ in range(GC_THRESHOLDS[1] + 2):
        kept.append([[] for _ in range(GC_THRESHOLDS[0] + 1_000)])  # a batch leaves this many objects behind
        collect_between_batches()
    assert passes == [0] * (GC_THRESHOLDS[1] + 1) + [1]
