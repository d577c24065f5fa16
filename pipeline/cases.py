"""Cases as the detection core reports them, and the ``CaseSink`` port the runner writes case updates to.

One open case per conversation: the first update that crosses the threshold opens it, later ones attach
evidence (risk only rises, reasons accumulate). ``MemoryCaseSink`` serves replay; the review package's
database store implements the same port for the moderator queue.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.decision import CaseUpdate, Decision, case_id_for


class CaseSink(Protocol):
    def apply(self, updates: Sequence[CaseUpdate], decisions: Sequence[Decision]) -> int:
        """Open or attach; return how many cases were opened."""
        ...

    def case_risks(self, conversation_ids: Iterable[str]) -> dict[str, float]:
        """The highest risk recorded by any case of each conversation that has one."""
        ...


def raising(updates: Sequence[CaseUpdate], known: Mapping[str, float]) -> list[CaseUpdate]:
    """The reconciliation updates that change something: no case yet, or a higher risk than recorded. In a
    sequential run the decisions already recorded every such risk, so reconciliation adds nothing there."""
    return [u for u in updates if u.risk > known.get(u.conversation_id, -1.0) + 1e-9]


@dataclass(slots=True)
class ReportCase:
    case_id: str
    conversation_id: str
    opened_by_event_id: str
    opened_at: str
    risk: float
    priority: int
    stages: list[str]
    subjects: list[str]
    reasons: list[dict[str, Any]]
    youngest_band: str
    escalate: bool = False
    _reason_keys: set[tuple[str, str, str]] = field(default_factory=set, repr=False)

    @classmethod
    def open(cls, update: CaseUpdate) -> ReportCase:
        case = cls(case_id_for(update.conversation_id, update.event_id), update.conversation_id, update.event_id,
                   update.ts, 0.0, 4, [], [], [], update.youngest_band)
        case.attach(update)
        return case

    def attach(self, update: CaseUpdate) -> None:
        self.risk = max(self.risk, update.risk)
        self.priority = min(self.priority, update.priority)
        self.escalate = self.escalate or update.escalate
        self.stages.extend(s for s in update.stages if s not in self.stages)
        self.subjects.extend(s for s in update.subjects if s not in self.subjects)
        for reason in update.reasons:
            key = (reason.kind, reason.id, reason.event_id)
            if key not in self._reason_keys:
                self._reason_keys.add(key)
                self.reasons.append(reason.to_report())

    def to_report(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "conversation_id": self.conversation_id,
            "opened_by_event_id": self.opened_by_event_id,
            "opened_at": self.opened_at,
            "risk": round(self.risk, 4),
            "priority": self.priority,
            "stages": list(self.stages),
            "subjects": list(self.subjects),
            "reasons": list(self.reasons),
        }


class MemoryCaseSink:
    def __init__(self) -> None:
        self.cases: dict[str, ReportCase] = {}  # by conversation id (the open case)

    def apply(self, updates: Sequence[CaseUpdate], decisions: Sequence[Decision]) -> int:
        opened = 0
        for update in updates:
            case = self.cases.get(update.conversation_id)
            if case is None:
                self.cases[update.conversation_id] = ReportCase.open(update)
                opened += 1
            else:
                case.attach(update)
        return opened

    def case_risks(self, conversation_ids: Iterable[str]) -> dict[str, float]:
        return {c: self.cases[c].risk for c in conversation_ids if c in self.cases}

    def report(self) -> list[dict[str, Any]]:
        return [c.to_report() for c in sorted(self.cases.values(), key=lambda c: (c.opened_at, c.case_id))]


def updates_of(decisions: Iterable[Decision]) -> list[CaseUpdate]:
    out: list[CaseUpdate] = []
    for decision in decisions:
        if decision.case is not None:
            out.append(decision.case)
        out.extend(decision.swept_cases)
    return out
