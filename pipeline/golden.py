"""Golden cases: every rule carries positive and negative event sequences, run through the real ``decide``.

A positive sequence must make the rule fire on at least one of its events; a negative one must never make it
fire. ``lifeguard rules check`` and the test suite both run them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.contract import ChannelKind, Event, EventType, parse_event
from pipeline.decision import Decision, Detectors
from pipeline.rulebook import CompiledRule, GoldenStep, Persona, RuleBook
from pipeline.runner import DecisionRunner
from pipeline.state import MemoryStateStore

GOLDEN_START = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class GoldenFailure:
    rule_id: str
    polarity: str
    index: int
    problem: str

    def __str__(self) -> str:
        return f"{self.rule_id} {self.polarity}[{self.index}]: {self.problem}"


def expand_steps(steps: list[GoldenStep], personas: dict[str, Persona], case_tag: str) -> list[Event]:
    events: list[Event] = []
    at = GOLDEN_START
    names = list(personas)
    for n, step in enumerate(steps):
        at += timedelta(minutes=step.minutes)
        sender = step.from_
        receiver = step.to or _default_receiver(sender, steps, names)
        for name in (sender, receiver):
            if name not in personas:
                raise ValueError(f"unknown persona {name!r} (known: {', '.join(names)})")
        conversation = step.conversation or "-".join(sorted((sender, receiver)))
        raw: dict[str, Any] = {
            "schema_version": 1,
            "event_id": f"golden-{case_tag}-{n}",
            "type": step.type.value,
            "ts": at.isoformat().replace("+00:00", "Z"),
            "platform": "golden",
            "channel": {"kind": step.channel.value, "id": f"{case_tag}:{conversation}"},
            "actor": _user(sender, personas[sender]),
            "target": _user(receiver, personas[receiver]),
        }
        if step.text is not None:
            raw["text"] = step.text
        if step.type in (EventType.GIFT, EventType.TRADE):
            raw["amount"] = step.amount if step.amount is not None else 400
            raw["currency"] = "gems"
        if step.type is EventType.CHAT_MESSAGE and "text" not in raw:
            raise ValueError(f"step {n}: chat_message needs text")
        if step.channel is not ChannelKind.DIRECT and step.type is EventType.CHAT_MESSAGE:
            raw["target"] = None
        events.append(parse_event(raw))
    return events


def _default_receiver(sender: str, steps: list[GoldenStep], names: list[str]) -> str:
    others = [s.from_ for s in steps if s.from_ != sender] + [s.to for s in steps if s.to and s.to != sender]
    if others:
        return others[0]
    return next(n for n in names if n != sender)


def _user(name: str, persona: Persona) -> dict[str, Any]:
    return {"user_id": f"u-{name}", "age_band": persona.age_band.value, "age_verified": persona.age_verified.value,
            "parent_of": [f"u-{child}" for child in persona.parent_of]}


def fired(rule: CompiledRule, decisions: list[Decision]) -> bool:
    for decision in decisions:
        reasons = list(decision.reasons) + list(decision.shadow_reasons)
        for swept in decision.swept_cases:
            reasons.extend(swept.reasons)
        if any(r.kind == "rule" and r.id == rule.id for r in reasons):
            return True
    return False


def run_golden(book: RuleBook, detectors: Detectors | None = None) -> tuple[int, list[GoldenFailure]]:
    detectors = detectors or Detectors(rules=book)
    failures: list[GoldenFailure] = []
    count = 0
    for rule in book.rules:
        for polarity, sequences in (("positive", rule.rule.golden.positive), ("negative", rule.rule.golden.negative)):
            for index, steps in enumerate(sequences):
                count += 1
                try:
                    events = expand_steps(steps, book.personas, f"{rule.id}-{polarity}-{index}")
                except ValueError as exc:
                    failures.append(GoldenFailure(rule.id, polarity, index, f"bad golden case: {exc}"))
                    continue
                runner = DecisionRunner(MemoryStateStore(), detectors)
                batch = runner.decide_batch(events)
                hit = fired(rule, batch.decisions)
                if polarity == "positive" and not hit:
                    failures.append(GoldenFailure(rule.id, polarity, index, "rule did not fire"))
                if polarity == "negative" and hit:
                    failures.append(GoldenFailure(rule.id, polarity, index, "rule fired"))
    return count, failures
