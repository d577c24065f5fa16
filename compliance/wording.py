"""The generic wording exports use to say why: policy code names, grooming stage descriptions, rule descriptions.

Nothing here is taken from a case's own text: reason ``detail`` strings in the case store can name users (subject
rules append "(user ...)"), so rule wording comes from the rule packs by rule id, never from stored details.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pipeline.rulebook import RuleBook

POLICY_NAMES: Mapping[str, str] = {
    "NV-1": "no violation",
    "NV-2": "insufficient evidence",
    "AGE-1.1": "age assurance from context",
    "AGE-2.1": "age misrepresentation",
    "CSE-1.1": "grooming - trust building and first contact",
    "CSE-1.2": "grooming - age and supervision probing",
    "CSE-1.3": "grooming - gifts and inducements",
    "CSE-1.4": "grooming - secrecy",
    "CSE-2.1": "off-platform solicitation of a minor",
    "CSE-2.2": "isolation on platform",
    "CSE-3.1": "solicitation to meet a minor",
    "CSE-3.2": "solicitation of images from a minor",
    "CSE-4.1": "user safety signals",
    "CSE-5.1": "adult contacting many minors",
}

STAGE_WORDING: Mapping[str, str] = {
    "trust_building": "trust building (flattery, an exclusive bond, first contact)",
    "age_probing": "probing the minor's age and supervision",
    "gifts": "gifts or in-game currency given to the minor",
    "secrecy": "asking the minor to keep the contact secret",
    "isolation": "moving the minor to private spaces or other apps",
    "meeting_request": "asking the minor to meet or for pictures",
    "age_deception": "an account misrepresenting its age",
    "reported": "a report or block by the younger party",
    "fanout": "an adult account contacting many minors",
}
STAGE_ORDER = tuple(STAGE_WORDING)

EVENT_WORDING: Mapping[str, str] = {
    "gift": "gifts", "trade": "trades", "friend_request": "friend requests", "friend_accept": "accepted friend "
    "requests", "server_invite": "server invitations", "follow_join": "following into game servers",
    "block": "blocks", "age_signal": "age signals",
}
TEXT_EVENTS = frozenset({"chat_message", "user_report"})


def policy_family(code: str | None) -> str | None:
    """CSE (child sexual exploitation: grooming), AGE (age policy), NV (no violation), or None."""
    return None if code is None else code.split("-", 1)[0]


def policy_label(code: str) -> str:
    return f"{code} ({POLICY_NAMES.get(code, 'policy code')})"


def stages_text(stages: Iterable[str]) -> str:
    known = [s for s in STAGE_ORDER if s in set(stages)]
    return "; ".join(STAGE_WORDING[s] for s in known) if known else "no grooming stage recorded"


@dataclass(frozen=True, slots=True)
class RuleWording:
    """Rule id -> (description, policy code) from the rule packs in force."""

    rules: Mapping[str, tuple[str, str]]

    @classmethod
    def from_book(cls, book: RuleBook) -> RuleWording:
        return cls({r.id: (r.rule.description, r.rule.policy.split(" ", 1)[0]) for r in book.rules})

    def describe(self, rule_id: str) -> str:
        found = self.rules.get(rule_id)
        return f"{rule_id}: {found[0]}" if found else f"{rule_id}: (rule no longer in the rule packs)"

    def policy_of(self, rule_id: str) -> str | None:
        found = self.rules.get(rule_id)
        return found[1] if found else None


__all__ = ["EVENT_WORDING", "POLICY_NAMES", "STAGE_ORDER", "STAGE_WORDING", "TEXT_EVENTS", "RuleWording",
           "policy_family", "policy_label", "stages_text"]
