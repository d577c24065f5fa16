"""Age policy: bands, verification strength, and how much an age pairing raises a conversation's risk.

The pair factor is the multiplier that turns stage evidence into risk. It is highest for an adult (or an
account whose age is unknown) talking one-to-one with a young child, lower in public channels and between
peers, and zero between a parent-linked adult and their child.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from pipeline.contract import AgeBand, ChannelKind, Verification

MINOR_BANDS = frozenset({AgeBand.UNDER_9, AgeBand.AGE_9_12, AgeBand.AGE_13_15, AgeBand.AGE_16_17})
ADULT_BANDS = frozenset({AgeBand.AGE_18_20, AgeBand.AGE_21_PLUS})

# A representative age per band; 21_plus is taken at 25 so a gap is never overstated.
BAND_AGE: dict[AgeBand, float] = {
    AgeBand.UNDER_9: 7.0,
    AgeBand.AGE_9_12: 10.5,
    AgeBand.AGE_13_15: 14.0,
    AgeBand.AGE_16_17: 16.5,
    AgeBand.AGE_18_20: 19.0,
    AgeBand.AGE_21_PLUS: 25.0,
}

VERIFICATION_STRENGTH: dict[Verification, int] = {v: i for i, v in enumerate(Verification)}

# An adult whose age is only declared is less accountable than one who showed an ID.
_ADULT_VERIFICATION_WEIGHT: dict[Verification, float] = {
    Verification.NONE: 1.0,
    Verification.SELF_DECLARED: 1.0,
    Verification.PARENTAL: 0.95,
    Verification.FACIAL_ESTIMATION: 0.9,
    Verification.ID_DOCUMENT: 0.85,
}

_CHANNEL_WEIGHT: dict[ChannelKind | None, float] = {
    ChannelKind.DIRECT: 1.0,
    ChannelKind.PARTY: 0.9,
    ChannelKind.GROUP: 0.85,
    ChannelKind.EXPERIENCE: 0.6,
    None: 0.9,
}


def band_for_age(age: int) -> AgeBand:
    if age < 9:
        return AgeBand.UNDER_9
    if age <= 12:
        return AgeBand.AGE_9_12
    if age <= 15:
        return AgeBand.AGE_13_15
    if age <= 17:
        return AgeBand.AGE_16_17
    if age <= 20:
        return AgeBand.AGE_18_20
    return AgeBand.AGE_21_PLUS


def is_minor(band: AgeBand) -> bool:
    return band in MINOR_BANDS


def is_adult(band: AgeBand) -> bool:
    return band in ADULT_BANDS


def age_gap(older: AgeBand, younger: AgeBand) -> float:
    """Years between two bands' representative ages; 0 when either is unknown."""
    if older is AgeBand.UNKNOWN or younger is AgeBand.UNKNOWN:
        return 0.0
    return BAND_AGE[older] - BAND_AGE[younger]


def youngest(bands: list[AgeBand]) -> AgeBand:
    known = [b for b in bands if b is not AgeBand.UNKNOWN]
    return min(known, key=BAND_AGE.__getitem__) if known else AgeBand.UNKNOWN


class Party(NamedTuple):
    """A participant as the policy sees them: the band in force (after age cues) and how it was established.

    A named tuple rather than a dataclass: ``assess_pair`` memoises on tuples of parties, and a tuple's hash and
    equality run in C."""

    user_id: str
    band: AgeBand
    verification: Verification
    parent_of: frozenset[str] = frozenset()
    revealed: bool = False  # band comes from what the user wrote, not from the platform


@dataclass(frozen=True, slots=True)
class PairAssessment:
    factor: float  # multiplier on stage evidence, in [0, 1]
    relation: str  # adult_minor | unknown_minor | older_minor | peers | adults | parent_child | undetermined
    older: str | None  # user id of the party the risk is about
    younger: str | None
    gap_years: float
    detail: str


def assess_pair(parties: Sequence[Party], channel: ChannelKind | None) -> PairAssessment:
    """Find the riskiest (older, younger) pairing among a conversation's participants and weigh it."""
    return _assess_pair_cached(tuple(parties), channel)


@functools.lru_cache(maxsize=65536)
def _assess_pair_cached(parties: tuple[Party, ...], channel: ChannelKind | None) -> PairAssessment:
    best = PairAssessment(0.15, "undetermined", None, None, 0.0, "fewer than two known participants")
    channel_weight = _CHANNEL_WEIGHT.get(channel, 0.9)
    for older in parties:
        for younger in parties:
            if older.user_id == younger.user_id:
                continue
            assessed = _assess(older, younger, channel_weight)
            if assessed.factor > best.factor or best.relation == "undetermined":
                best = assessed
    return best


@functools.lru_cache(maxsize=65536)  # group channels re-assess the same pairs whenever their speakers reorder
def _assess(older: Party, younger: Party, channel_weight: float) -> PairAssessment:
    def result(factor: float, relation: str, detail: str) -> PairAssessment:
        gap = age_gap(older.band, younger.band)
        return PairAssessment(round(min(1.0, factor), 4), relation, older.user_id, younger.user_id, gap, detail)

    if younger.user_id in older.parent_of or older.user_id in younger.parent_of:
        return result(0.0, "parent_child", "accounts linked by parental controls")
    if not is_minor(younger.band):
        if younger.band is AgeBand.UNKNOWN and is_adult(older.band):
            return result(0.2 * channel_weight, "adult_unknown", "adult with a user of unknown age")
        return result(0.08, "adults", "no minor in the pair")
    gap = age_gap(older.band, younger.band)
    young_weight = 1.0 if younger.band in (AgeBand.UNDER_9, AgeBand.AGE_9_12) else 0.92
    if is_adult(older.band):
        base = 0.72 + 0.025 * max(gap, 0.0)
        factor = base * _ADULT_VERIFICATION_WEIGHT[older.verification] * young_weight * channel_weight
        how = "revealed in chat" if older.revealed else f"verified by {older.verification.value}"
        return result(factor, "adult_minor", f"adult ({older.band.value}, {how}) with a minor "
                      f"({younger.band.value}), gap ≈{gap:.0f} years, {_channel_word(channel_weight)}")
    if older.band is AgeBand.UNKNOWN:
        factor = 0.7 * young_weight * channel_weight
        return result(factor, "unknown_minor", f"user of unknown age with a minor ({younger.band.value})")
    if gap >= 3.0:
        weak = VERIFICATION_STRENGTH[older.verification] <= VERIFICATION_STRENGTH[Verification.SELF_DECLARED]
        factor = (0.3 + 0.05 * gap) * (1.0 if weak else 0.75) * channel_weight
        return result(factor, "older_minor", f"older minor ({older.band.value}, age {older.verification.value}) "
                      f"with a younger one ({younger.band.value})")
    return result(0.12 * channel_weight, "peers", f"peers ({older.band.value}, {younger.band.value})")


def _channel_word(weight: float) -> str:
    return "one-to-one" if weight >= 1.0 else "shared channel"
