"""The closed, typed registry of conditions a rule may use.

Rules are data (``rules/*.yaml``); the only behaviour they can reach is the predicates registered here. Each
predicate takes the rule's typed argument and a ``RuleContext`` (event-scope rules) or a ``SubjectContext``
(subject-scope rules). ``rulebook.When`` and ``rulebook.SubjectWhen`` have exactly one field per registered
name, which a test checks, so a rule file cannot name a condition that has no code behind it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.age import PairAssessment, Party, is_adult, is_minor
from pipeline.contract import AgeBand, Event, Verification
from pipeline.normalise import NormalisedText
from pipeline.pattern_screen import PatternScreen
from pipeline.state import ConversationState, SubjectProfile

DAY_SECONDS = 24 * 3600.0

# "i'm 11", "im 11 yrs", "i am eleven" after normalisation (number words become digits), "11 years old", "11yo".
_NOT_AN_AGE = r"(?!\s*(?:min|mins|minutes|hours|hrs|k|x|%|robux|gems))"
_STATED_AGE = re.compile(
    r"\b(?:i\s?'?\s?a?m|i am|im|age is|turning|turn)\s+(\d{1,2})\b" + _NOT_AN_AGE
    + r"|\b(\d{1,2})\s*(?:years? old|yrs? old|yo|y/o)\b"
)


@dataclass(slots=True)
class RuleContext:
    """What an event-scope rule can see: the event, its folded text, the age pairing and the conversation so far."""

    event: Event
    text: NormalisedText | None
    pair: PairAssessment
    actor: Party
    target: Party | None
    conversation: ConversationState  # before this event
    evidence: Mapping[str, float]  # stage evidence decayed to this event's time
    profile: SubjectProfile | None  # the actor's
    spans: list[tuple[int, int]] = field(default_factory=list)  # matched spans in normalised text

    @property
    def sender_role(self) -> str:
        if self.pair.older == self.actor.user_id:
            return "older"
        if self.pair.younger == self.actor.user_id:
            return "younger"
        return "other"


@dataclass(slots=True)
class SubjectContext:
    profile: SubjectProfile


@functools.lru_cache(maxsize=65536)  # several rules ask per message, and chat lines repeat
def stated_age(text: str) -> int | None:
    """The age a message states for its sender ("i'm 11", "11 years old"), if any."""
    match = _STATED_AGE.search(text)
    if match is None:
        return None
    value = int(match.group(1) or match.group(2))
    return value if 5 <= value <= 80 else None


MATCH_CACHE_LIMIT = 65_536  # texts remembered per pattern; cleared wholesale when full
_UNSEEN = (-1, -1)  # memo miss marker (a lookup with a default is cheaper than a KeyError on first-seen lines)


class TextPatterns:
    """The regexes of one ``text_any``/``text_none`` condition. Each one's first match in a folded text is
    memoised per text (chat lines repeat, and a pattern's answer for a text never changes) and skipped when the
    rule book's ``PatternScreen`` shows the pattern cannot match (most lines match none)."""

    __slots__ = ("_memos", "_screen", "_slots", "patterns")

    def __init__(self, patterns: Sequence[re.Pattern[str]], screen: PatternScreen | None = None) -> None:
        self.patterns = tuple(patterns)
        self._screen = screen
        self._slots = tuple(screen.add(p) for p in self.patterns) if screen is not None else ()
        self._memos: tuple[dict[str, tuple[int, int] | None], ...] = tuple({} for _ in self.patterns)

    def first_match(self, text: str) -> tuple[int, int] | None:
        """Span of the first match of the first pattern that matches ``text``, like ``re.search`` in turn."""
        for index in range(len(self.patterns)):
            span = self._search(index, text)
            if span is not None:
                return span
        return None

    def _search(self, index: int, text: str) -> tuple[int, int] | None:
        memo = self._memos[index]
        known = memo.get(text, _UNSEEN)
        if known is not _UNSEEN:
            return known
        if len(memo) >= MATCH_CACHE_LIMIT:
            memo.clear()
        if self._screen is not None and not (self._screen.possible(text) >> self._slots[index]) & 1:
            span = None
        else:
            match = self.patterns[index].search(text)
            span = None if match is None else match.span()
        memo[text] = span
        return span


def _text_any(patterns: TextPatterns, ctx: RuleContext) -> bool:
    if ctx.text is None:
        return False
    span = patterns.first_match(ctx.text.text)
    if span is None:
        return False
    ctx.spans.append(span)
    return True


def _text_none(patterns: TextPatterns, ctx: RuleContext) -> bool:
    return ctx.text is None or patterns.first_match(ctx.text.text) is None


def _sender(role: str, ctx: RuleContext) -> bool:
    if role == "any":
        return True
    if role in ("older", "younger"):
        return ctx.sender_role == role
    if role == "adult":
        return is_adult(ctx.actor.band)
    if role == "minor":
        return is_minor(ctx.actor.band)
    if role == "adult_or_unknown":
        return is_adult(ctx.actor.band) or ctx.actor.band is AgeBand.UNKNOWN
    raise ValueError(role)  # unreachable: the rule schema restricts the values


def _minor_conversations_24h(profile: SubjectProfile) -> int:
    """Most distinct minor conversations whose first contact falls in any 24-hour window. Computed from the
    whole set, so the answer does not depend on the order conversations were processed in."""
    times = sorted(entry.first_ts for entry in profile.contacts.values())
    best = 0
    lo = 0
    for hi, ts in enumerate(times):
        while ts - times[lo] > DAY_SECONDS:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def _distinct_reporters(profile: SubjectProfile) -> int:
    return len(profile.reporters)


EventPredicate = Callable[[Any, RuleContext], bool]
SubjectPredicate = Callable[[Any, SubjectContext], bool]

# Cheap structural checks first, text last: rules stop at the first failing condition.
EVENT_CONDITIONS: dict[str, EventPredicate] = {
    "event_type": lambda types, ctx: ctx.event.type in types,
    "channel_kind_in": lambda kinds, ctx: ctx.event.channel is not None and ctx.event.channel.kind in kinds,
    "sender": _sender,
    "relation_in": lambda relations, ctx: ctx.pair.relation in relations,
    "actor_band_in": lambda bands, ctx: ctx.actor.band in bands,
    "target_band_in": lambda bands, ctx: ctx.target is not None and ctx.target.band in bands,
    "age_gap_min": lambda years, ctx: ctx.pair.gap_years >= years,
    "actor_verification_at_most": lambda level, ctx: _verification_at_most(ctx.actor.verification, level),
    "first_contact_within_events": lambda n, ctx: ctx.conversation.events < n,
    "amount_min": lambda amount, ctx: (ctx.event.amount or 0) >= amount,
    "counter_min": lambda limits, ctx: all(ctx.conversation.counters.get(k, 0) + _counts_now(k, ctx) >= v
                                           for k, v in limits.items()),
    "stage_seen": lambda stages, ctx: any(ctx.evidence.get(s, 0.0) >= 0.15 for s in stages),
    "stated_age_below": lambda limit, ctx: ctx.text is not None and (stated_age(ctx.text.text) or 99) < limit,
    "stated_age_at_least": lambda limit, ctx: ctx.text is not None and (stated_age(ctx.text.text) or 0) >= limit,
    "reports_against_actor_min": lambda n, ctx: ctx.profile is not None and _distinct_reporters(ctx.profile) >= n,
    "text_none": _text_none,
    "text_any": _text_any,
}

SUBJECT_CONDITIONS: dict[str, SubjectPredicate] = {
    "minor_conversations_24h_min": lambda n, ctx: _minor_conversations_24h(ctx.profile) >= n,
    "minor_conversations_min": lambda n, ctx: len(ctx.profile.contacts) >= n,
    "youngest_contact_band_in": lambda bands, ctx: any(e.younger_band in bands for e in ctx.profile.contacts.values()),
    "reports_against_min": lambda n, ctx: len(ctx.profile.reporters) >= n,
    "blocks_against_min": lambda n, ctx: len(ctx.profile.blockers) >= n,
}


def _verification_at_most(actual: Verification, limit: Verification) -> bool:
    order = list(Verification)
    return order.index(actual) <= order.index(limit)


def _counts_now(counter: str, ctx: RuleContext) -> int:
    """Counters include the event being evaluated (a rule on 'second gift' fires on the second gift)."""
    return 1 if counter == ctx.event.type.value else 0

