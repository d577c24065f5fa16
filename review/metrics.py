"""Prometheus metrics read from the case store at scrape time, so every API replica reports the same numbers
and nothing is lost on restart."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import case, func, select

from review.models import CaseActionRow, CaseRow
from review.policy import CLOSING, REOPENABLE, SLA_TARGETS, Action, CaseStatus
from review.queue import claimable
from review.store import SqlCaseStore

TIME_TO_ACTION_BUCKETS = (60.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 4 * 3600.0, 24 * 3600.0, 72 * 3600.0)
DECISION_ACTIONS = tuple(a.value for a in (*sorted(REOPENABLE), *sorted(CLOSING)))


class ReviewCollector(Collector):
    def __init__(self, store: SqlCaseStore, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        now = self.clock()
        depth = GaugeMetricFamily("lifeguard_review_queue_depth", "Cases waiting for a moderator (open or lease "
                                  "lapsed), by priority and escalation.", labels=["priority", "escalated"])
        oldest = GaugeMetricFamily("lifeguard_review_oldest_case_age_seconds",
                                   "Waiting time of the oldest case in the queue, by priority.", labels=["priority"])
        breached = GaugeMetricFamily("lifeguard_review_sla_breached_cases", "Live cases past an SLA deadline, by "
                                     "priority and clock.", labels=["priority", "clock"])
        decisions = CounterMetricFamily("lifeguard_review_decisions", "Moderator actions recorded, by action.",
                                        labels=["action"])
        histogram = HistogramMetricFamily("lifeguard_review_time_to_action_seconds",
                                          "Time from a case entering review to its decision.", labels=[])
        with self.store.sessions() as session:
            counts = {(int(p), bool(e)): (int(n), q) for p, e, n, q in session.execute(
                select(CaseRow.priority, CaseRow.escalated, func.count(), func.min(CaseRow.queued_at))
                .where(claimable(now)).group_by(CaseRow.priority, CaseRow.escalated))}
            for priority in sorted(SLA_TARGETS):
                waiting_since = [q for (p, _), (_, q) in counts.items() if p == priority and q is not None]
                for escalated in (False, True):
                    depth.add_metric([str(priority), str(escalated).lower()],
                                     counts.get((priority, escalated), (0, None))[0])
                age = (now - min(waiting_since)).total_seconds() if waiting_since else 0.0
                oldest.add_metric([str(priority)], max(0.0, age))
            live = CaseRow.status.in_([CaseStatus.OPEN.value, CaseStatus.CLAIMED.value])
            for clock_name, column, done in (("first_review", CaseRow.first_review_due_at, CaseRow.first_reviewed_at),
                                             ("decision", CaseRow.decision_due_at, CaseRow.decided_at)):
                rows = {int(p): int(n) for p, n in session.execute(select(CaseRow.priority, func.count()).where(
                    live, column < now, done.is_(None)).group_by(CaseRow.priority))}
                for priority in sorted(SLA_TARGETS):
                    breached.add_metric([str(priority), clock_name], rows.get(priority, 0))
            by_action = {str(a): int(n) for a, n in session.execute(
                select(CaseActionRow.action, func.count()).group_by(CaseActionRow.action))}
            for action in Action:
                decisions.add_metric([action.value], by_action.get(action.value, 0))
            waited = CaseActionRow.waited_seconds
            decided = CaseActionRow.action.in_(DECISION_ACTIONS)
            bucket_cols = [func.sum(case((waited <= b, 1), else_=0)) for b in TIME_TO_ACTION_BUCKETS]
            row = session.execute(select(func.count(), func.coalesce(func.sum(waited), 0.0), *bucket_cols)
                                  .where(decided, waited.is_not(None))).one()
            total, seconds = int(row[0]), float(row[1])
            buckets = [(_le(b), int(n or 0)) for b, n in zip(TIME_TO_ACTION_BUCKETS, row[2:], strict=True)]
            histogram.add_metric([], [*buckets, ("+Inf", total)], seconds)
        yield depth
        yield oldest
        yield breached
        yield decisions
        yield histogram


def _le(bound: float) -> str:
    return str(int(bound)) if bound.is_integer() else str(bound)


def review_registry(store: SqlCaseStore, clock: Callable[[], datetime]) -> CollectorRegistry:
    """A registry of its own per app, so tests can build several apps in one process."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReviewCollector(store, clock))
    return registry
