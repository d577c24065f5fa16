"""Conversation risk arithmetic: stage evidence with decay, progression, pair weighting, case priority.

These weights are the hand-tuned baseline of the detection core. They are data-like constants kept in one
place so the learned fusion (models/) can be compared against them on the same replay.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.contract import AgeBand
from pipeline.rulebook import GROOMING_STAGES, Stage

EVIDENCE_HALF_LIFE_SECONDS = 14 * 24 * 3600.0
CASE_THRESHOLD = 0.5
PROGRESSION_LEVEL = 0.25  # a stage counts toward progression once its evidence reaches this
REPEAT_DAMPING = 0.6  # each repeat hit of the same rule counts this much less than the previous one

# How much full evidence of a stage says about grooming on its own. A meeting or picture request is the
# strongest single signal; flattery alone is weak.
STAGE_WEIGHT: dict[str, float] = {
    Stage.TRUST_BUILDING: 0.3,
    Stage.AGE_PROBING: 0.5,
    Stage.GIFTS: 0.45,
    Stage.SECRECY: 0.7,
    Stage.ISOLATION: 0.88,
    Stage.MEETING_REQUEST: 0.95,
    Stage.AGE_DECEPTION: 0.55,
    Stage.REPORTED: 0.7,
    Stage.FANOUT: 0.65,
}

# Urgency of a stage for the review queue (a meeting request outranks flattery).
STAGE_URGENCY: dict[str, float] = {
    Stage.MEETING_REQUEST: 1.0,
    Stage.ISOLATION: 0.85,
    Stage.SECRECY: 0.7,
    Stage.FANOUT: 0.65,
    Stage.REPORTED: 0.65,
    Stage.AGE_DECEPTION: 0.6,
    Stage.GIFTS: 0.5,
    Stage.AGE_PROBING: 0.45,
    Stage.TRUST_BUILDING: 0.25,
}

BAND_URGENCY: dict[str, float] = {
    AgeBand.UNDER_9: 1.0,
    AgeBand.AGE_9_12: 0.9,
    AgeBand.AGE_13_15: 0.7,
    AgeBand.AGE_16_17: 0.55,
    AgeBand.UNKNOWN: 0.6,
    AgeBand.AGE_18_20: 0.2,
    AgeBand.AGE_21_PLUS: 0.2,
}


def decay(evidence: Mapping[str, float], elapsed_seconds: float) -> dict[str, float]:
    if not evidence:
        return {}
    if elapsed_seconds <= 0:
        return dict(evidence)
    factor = 0.5 ** (elapsed_seconds / EVIDENCE_HALF_LIFE_SECONDS)
    return {stage: value * factor for stage, value in evidence.items() if value * factor >= 1e-4}


def add_evidence(current: float, weight: float) -> float:
    """Noisy-or: independent pieces of evidence for one stage accumulate toward 1."""
    return 1.0 - (1.0 - current) * (1.0 - min(max(weight, 0.0), 1.0))


def stage_score(evidence: Mapping[str, float]) -> float:
    """Combined grooming evidence in [0, 1], boosted when several stages show (progression)."""
    if not evidence:
        return 0.0
    remaining = 1.0
    for stage, value in evidence.items():
        remaining *= 1.0 - STAGE_WEIGHT.get(stage, 0.3) * value
    score = 1.0 - remaining
    return min(1.0, score * progression_multiplier(evidence))


def progressed_stages(evidence: Mapping[str, float]) -> list[str]:
    return [s.value for s in GROOMING_STAGES if evidence.get(s, 0.0) >= PROGRESSION_LEVEL]


def progression_multiplier(evidence: Mapping[str, float]) -> float:
    stages = len(progressed_stages(evidence))
    return 1.0 + 0.12 * max(0, min(stages, 5) - 1)


def combine(local: float, subject_bonus: float, pair_factor: float) -> float:
    """Conversation risk from its own evidence and what is known about its older party elsewhere."""
    return 1.0 - (1.0 - local) * (1.0 - subject_bonus * pair_factor)


def priority(risk: float, youngest_band: str, stages: list[str]) -> tuple[int, float]:
    """Queue priority 1 (most urgent) .. 4, and the score it came from."""
    urgency = max((STAGE_URGENCY.get(s, 0.3) for s in stages), default=0.3)
    score = 0.5 * risk + 0.25 * BAND_URGENCY.get(youngest_band, 0.6) + 0.25 * urgency
    level = 1 if score >= 0.82 else 2 if score >= 0.7 else 3 if score >= 0.55 else 4
    return level, round(score, 4)
