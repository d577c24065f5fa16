"""The bench's paced producer on the real broker: every record delivered, end offsets from delivery callbacks."""

from __future__ import annotations

import gc
import json
from collections import Counter

from bench.streaming import produce_paced
from pipeline.synth import generate
from tests.streaming.conftest import World


def test_paced_producer_reports_the_end_offset_of_every_partition(world: World) -> None:
    events = generate(seed=5, conversations=30, grooming_share=0.1).events
    lines = [json.dumps(e, sort_keys=True).encode() for e in events]
    ends = produce_paced(world.settings, lines, rate=5_000.0)
    records = world.read_topic(world.settings.topic_events, expected=len(lines))
    assert len(records) == len(lines)
    per_partition = Counter(r.partition for r in records)
    assert ends == dict(per_partition)  # a fresh topic: the end offset is the record count
    assert gc.isenabled()  # the collector is back on once the producer is done
