"""Conversation-level quality of a replay against labels (the backtest's scorecard).

Labels come from ``lifeguard synth`` (or a hand-labelled set in the same shape):
``{"conversations": {conv_id: {"label": "grooming"|"benign", "kind": str, "first_critical_event_id": str|null}}}``.

Metrics: precision, recall, F0.5, false-positive rate, early rate (flagged at or before the first
off-platform or meeting request), events to flag (median, p90), and the latency-weighted F1 of early sexual
predator detection (eSPD; Vogt et al. 2021), with k½ = 10 messages.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from statistics import median
from typing import Any

from pipeline.contract import EventValidationError, parse_event
from pipeline.decision import Decision, Detectors
from pipeline.replay import read_lines, replay

ESPD_HALF_LATENCY = 10


class LabelsError(ValueError):
    """The labels file is missing or malformed. Operators: check the path and its shape."""


@dataclass(frozen=True, slots=True)
class ConversationTimeline:
    event_ids: list[str]
    timestamps: list[float]


@dataclass(slots=True)
class Scorecard:
    conversations: int = 0
    positives: int = 0
    negatives: int = 0
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0
    early: int = 0
    early_eligible: int = 0
    events_to_flag: list[int] = field(default_factory=list)
    per_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    unlabelled_cases: int = 0

    @property
    def precision(self) -> float:
        flagged = self.true_positives + self.false_positives
        return self.true_positives / flagged if flagged else 0.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.positives if self.positives else 0.0

    def f_beta(self, beta: float) -> float:
        p, r = self.precision, self.recall
        if p == 0 and r == 0:
            return 0.0
        return (1 + beta**2) * p * r / (beta**2 * p + r)

    @property
    def false_positive_rate(self) -> float:
        return self.false_positives / self.negatives if self.negatives else 0.0

    @property
    def early_rate(self) -> float:
        return self.early / self.early_eligible if self.early_eligible else 0.0

    def latency_weighted_f1(self) -> float:
        """eSPD: F1 times speed, where speed = 1 - median latency penalty of the true positives."""
        if not self.events_to_flag:
            return 0.0
        p = math.log(3) / (ESPD_HALF_LATENCY - 1)
        penalties = [-1 + 2 / (1 + math.exp(-p * (k - 1))) for k in self.events_to_flag]
        return self.f_beta(1.0) * (1 - median(penalties))

    def to_dict(self) -> dict[str, Any]:
        ordered = sorted(self.events_to_flag)
        return {
            "conversations": self.conversations,
            "grooming": self.positives,
            "benign": self.negatives,
            "true_positives": self.true_positives,
            "false_positives": self.false_positives,
            "false_negatives": self.false_negatives,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f0_5": round(self.f_beta(0.5), 4),
            "f1": round(self.f_beta(1.0), 4),
            "false_positive_rate": round(self.false_positive_rate, 4),
            "early_rate": round(self.early_rate, 4),
            "early_eligible": self.early_eligible,
            "events_to_flag_median": median(ordered) if ordered else None,
            "events_to_flag_p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))] if ordered else None,
            "latency_weighted_f1": round(self.latency_weighted_f1(), 4),
            "per_kind": self.per_kind,
            "cases_outside_labels": self.unlabelled_cases,
        }


def load_labels(path: Path) -> dict[str, dict[str, Any]]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise LabelsError(f"cannot read labels {path}: {exc}") from None
    conversations = raw.get("conversations") if isinstance(raw, dict) else None
    if not isinstance(conversations, dict):
        raise LabelsError(f"{path}: expected an object with a 'conversations' mapping")
    for conv_id, label in conversations.items():
        if not isinstance(label, dict) or label.get("label") not in ("grooming", "benign"):
            raise LabelsError(f"{path}: conversation {conv_id!r} needs label 'grooming' or 'benign'")
    return conversations


def timelines(events_path: Path) -> dict[str, ConversationTimeline]:
    """Every valid event's id and time per conversation, in file order."""
    out: dict[str, ConversationTimeline] = defaultdict(lambda: ConversationTimeline([], []))
    for _, raw in read_lines(events_path):
        try:
            event = parse_event(raw)
        except EventValidationError:
            continue
        line = out[event.conversation_id]
        line.event_ids.append(event.event_id)
        line.timestamps.append(event.ts.timestamp())
    return dict(out)


def events_until_flag(case: dict[str, Any], line: ConversationTimeline) -> int:
    """How many of the conversation's events had happened when its case opened (a case opened by another
    conversation's event, through fan-out, counts the events up to that time)."""
    if case["opened_by_event_id"] in line.event_ids:
        return line.event_ids.index(case["opened_by_event_id"]) + 1
    opened = datetime.fromisoformat(case["opened_at"]).timestamp()
    return max(1, sum(1 for ts in line.timestamps if ts <= opened))


def score(cases: list[dict[str, Any]], labels: dict[str, dict[str, Any]],
          lines: dict[str, ConversationTimeline]) -> Scorecard:
    card = Scorecard()
    by_conversation = {c["conversation_id"]: c for c in cases}
    card.unlabelled_cases = sum(1 for c in by_conversation if c not in labels)
    for conv_id, label in labels.items():
        card.conversations += 1
        kind = str(label.get("kind", "unknown"))
        kind_counts = card.per_kind.setdefault(kind, {"conversations": 0, "flagged": 0})
        kind_counts["conversations"] += 1
        case = by_conversation.get(conv_id)
        flagged = case is not None
        kind_counts["flagged"] += int(flagged)
        if label["label"] == "grooming":
            card.positives += 1
            if not flagged:
                card.false_negatives += 1
                continue
            assert case is not None
            card.true_positives += 1
            line = lines.get(conv_id, ConversationTimeline([], []))
            to_flag = events_until_flag(case, line)
            card.events_to_flag.append(to_flag)
            critical = label.get("first_critical_event_id")
            if critical and critical in line.event_ids:
                card.early_eligible += 1
                if to_flag <= line.event_ids.index(critical) + 1:
                    card.early += 1
        else:
            card.negatives += 1
            card.false_positives += int(flagged)
    return card


# ---- whole-run evaluation (lifeguard eval): the same replay path, plus peak risks for threshold curves ----
@dataclass(slots=True)
class PeakRisks:
    """Highest risk each conversation reached (its own decisions and fan-out sweeps): the score behind the
    precision-recall curve over the case threshold. Pass ``observe`` as replay's ``on_batch``."""

    peaks: dict[str, float] = field(default_factory=dict)

    def observe(self, decisions: list[Decision]) -> None:
        peaks = self.peaks
        for decision in decisions:
            conv = decision.conversation_id
            if decision.risk > peaks.get(conv, 0.0):
                peaks[conv] = decision.risk
            for swept in decision.swept_cases:
                if swept.risk > peaks.get(swept.conversation_id, 0.0):
                    peaks[swept.conversation_id] = swept.risk


def threshold_curve(peaks: dict[str, float], labels: dict[str, dict[str, Any]],
                    thresholds: list[float] | None = None) -> list[dict[str, float]]:
    """Precision, recall and false-positive rate if a case opened whenever peak risk ≥ threshold."""
    grid = thresholds if thresholds is not None else [round(0.05 * i, 2) for i in range(1, 20)] + [0.975, 0.99]
    pos = [peaks.get(c, 0.0) for c, label in labels.items() if label["label"] == "grooming"]
    neg = [peaks.get(c, 0.0) for c, label in labels.items() if label["label"] == "benign"]
    curve: list[dict[str, float]] = []
    for t in grid:
        tp = sum(1 for v in pos if v >= t)
        fp = sum(1 for v in neg if v >= t)
        curve.append({"threshold": t, "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
                      "recall": round(tp / len(pos), 4) if pos else 0.0,
                      "false_positive_rate": round(fp / len(neg), 4) if neg else 0.0})
    return curve


@dataclass(slots=True)
class Evaluation:
    card: Scorecard
    timing: dict[str, float]
    events: int
    invalid: int
    curve: list[dict[str, float]]
    peaks: dict[str, float]


def evaluate(events_path: Path, labels_path: Path, detectors: Detectors) -> Evaluation:
    """Replay ``events_path`` with ``detectors`` (the same path as ``lifeguard replay``) and score it."""
    labels = load_labels(labels_path)
    tracker = PeakRisks()
    result = replay(events_path, detectors, on_batch=tracker.observe)
    card = score(result.cases, labels, timelines(events_path))
    return Evaluation(card, result.timing, result.events, len(result.invalid),
                      threshold_curve(tracker.peaks, labels), tracker.peaks)
