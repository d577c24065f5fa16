"""The bench's worker throughput: records handled once over first record → last commit, read from metrics."""

from __future__ import annotations

import pytest

from bench.streaming import Scrape, throughput


def _scrape(first: float, last: float, consumed: float, duplicates: float, decided: float) -> Scrape:
    return {"lifeguard_first_record_timestamp_seconds": [({}, first)],
            "lifeguard_last_commit_timestamp_seconds": [({}, last)],
            "lifeguard_events_consumed_total": [({}, consumed)],
            "lifeguard_events_duplicate_total": [({}, duplicates)],
            "lifeguard_events_decided_total": [({}, decided)]}


def test_redelivered_records_do_not_count_as_throughput() -> None:
    # Two workers; a rebalance redelivered 300 records of the first to the second, which skipped them.
    result = throughput([_scrape(100.0, 101.5, 1_300, 0, 1_300), _scrape(100.5, 102.0, 1_000, 300, 700)])
    assert result["events"] == 2_000
    assert result["redelivered"] == 300
    assert result["decided"] == 2_000
    assert result["seconds"] == 2.0
    assert result["events_per_s"] == pytest.approx(1_000.0)
