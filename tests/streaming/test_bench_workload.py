"""The bench's fresh-text workload: deterministic, every text made new, nothing else touched."""

from __future__ import annotations

import copy

from bench.streaming import freshen_texts
from pipeline.synth import generate


def test_fresh_texts_change_every_text_and_nothing_else() -> None:
    events = generate(seed=7, conversations=40, grooming_share=0.1).events
    fresh = copy.deepcopy(events)
    freshen_texts(fresh, seed=7)
    again = copy.deepcopy(events)
    freshen_texts(again, seed=7)
    assert fresh == again  # the same seed gives the same workload
    texts = 0
    for before, after in zip(events, fresh, strict=True):
        if before.get("text"):
            texts += 1
            head, _, word = after["text"].rpartition(" ")
            assert head == before["text"] and 6 <= len(word) <= 9 and word.isalpha()
            assert {k: v for k, v in after.items() if k != "text"} == {k: v for k, v in before.items() if k != "text"}
        else:
            assert after == before
    assert texts > 100
    distinct_before = len({e["text"] for e in events if e.get("text")})
    distinct_after = len({e["text"] for e in fresh if e.get("text")})
    assert distinct_before < 0.7 * texts < 0.9 * texts < distinct_after  # synthetic chat repeats; fresh mostly not
