"""Review policy as data: case statuses, moderator actions, the closed list of policy reason codes, SLA targets.

Lifecycle::

    open --claim--> claimed --decision--> decided (dismissed | warned)   --risk rises again--> open
                       |                  closed  (restricted | banned | reported_ncmec)
                       |--release / lease lapses--> open
                       '--escalate--> open, escalated (senior queue only)

A dismissed or warned case stays ``decided`` and watches its conversation: a later case update with higher
risk or a new grooming stage reopens it. Restricted, banned and reported cases are closed for good; a later
update on that conversation opens a new case (its id derives from the update's event).
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

POLICY_VERSION = "1"


class CaseStatus(StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    DECIDED = "decided"
    CLOSED = "closed"


class Action(StrEnum):
    DISMISSED = "dismissed"
    WARNED = "warned"
    RESTRICTED = "restricted"
    BANNED = "banned"
    ESCALATED = "escalated"
    REPORTED_NCMEC = "reported_ncmec"


REOPENABLE = frozenset({Action.DISMISSED, Action.WARNED})
CLOSING = frozenset({Action.RESTRICTED, Action.BANNED, Action.REPORTED_NCMEC})


class ReasonCode(StrEnum):
    """Policy reason codes a moderator may cite (the rule packs' ``policy`` sections, plus no-violation)."""

    NO_VIOLATION = "NV-1"  # reviewed, nothing against policy
    INSUFFICIENT_EVIDENCE = "NV-2"  # possibly concerning, not enough to act
    AGE_ASSURANCE = "AGE-1.1"
    AGE_MISREPRESENTATION = "AGE-2.1"
    GROOMING_TRUST = "CSE-1.1"
    GROOMING_PROBING = "CSE-1.2"
    GROOMING_GIFTS = "CSE-1.3"
    GROOMING_SECRECY = "CSE-1.4"
    OFF_PLATFORM = "CSE-2.1"
    ISOLATION = "CSE-2.2"
    MEETING = "CSE-3.1"
    IMAGE_SOLICITATION = "CSE-3.2"
    SAFETY_SIGNALS = "CSE-4.1"
    FANOUT = "CSE-5.1"


NO_VIOLATION_CODES = frozenset({ReasonCode.NO_VIOLATION, ReasonCode.INSUFFICIENT_EVIDENCE})


def reason_code_problem(action: Action, code: ReasonCode) -> str | None:
    """Why ``code`` cannot justify ``action``, or None. A dismissal cites a no-violation code, an
    enforcement cites the violated policy."""
    if action is Action.DISMISSED and code not in NO_VIOLATION_CODES:
        return f"a dismissal needs a no-violation code ({', '.join(sorted(NO_VIOLATION_CODES))}), not {code}"
    if action is not Action.DISMISSED and action is not Action.ESCALATED and code in NO_VIOLATION_CODES:
        return f"'{action}' needs the violated policy's code, not the no-violation code {code}"
    return None


# Time to first review and time to decision, by priority (1 = most urgent). Anchored on the public bar of a
# 10-minute median time to action for the most urgent reports.
SLA_TARGETS: dict[int, tuple[timedelta, timedelta]] = {
    1: (timedelta(minutes=5), timedelta(minutes=15)),
    2: (timedelta(minutes=30), timedelta(hours=2)),
    3: (timedelta(hours=4), timedelta(hours=24)),
    4: (timedelta(hours=24), timedelta(hours=72)),
}

# Queue order among equal priority and risk: the youngest party first.
BAND_RANK: dict[str, int] = {"under_9": 0, "9_12": 1, "13_15": 2, "16_17": 3, "unknown": 4, "18_20": 5,
                             "21_plus": 6}


def band_rank(band: str) -> int:
    return BAND_RANK.get(band, BAND_RANK["unknown"])


def sla_targets(priority: int) -> tuple[timedelta, timedelta]:
    return SLA_TARGETS.get(priority, SLA_TARGETS[4])
