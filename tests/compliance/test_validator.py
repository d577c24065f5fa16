"""The statement validator against the field rules, and the vendored reference against the shared one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from compliance.validator import REFERENCE_DIR, dsa_enums, validate_batch, validate_statement

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "reference"


def valid() -> dict[str, Any]:
    return {
        "decision_provision": "DECISION_PROVISION_PARTIAL_SUSPENSION",
        "decision_ground": "DECISION_GROUND_INCOMPATIBLE_CONTENT",
        "incompatible_content_ground": "terms of service, policy CSE-1.4",
        "incompatible_content_explanation": "grooming signals",
        "incompatible_content_illegal": "Yes",
        "content_type": ["CONTENT_TYPE_TEXT"],
        "category": "STATEMENT_CATEGORY_PROTECTION_OF_MINORS",
        "category_specification": ["KEYWORD_GROOMING_SEXUAL_ENTICEMENT_MINORS"],
        "territorial_scope": ["DE", "NO"],
        "content_date": "2026-03-02",
        "application_date": "2026-03-20",
        "decision_facts": "generic facts",
        "source_type": "SOURCE_VOLUNTARY",
        "automated_detection": "Yes",
        "automated_decision": "AUTOMATED_DECISION_PARTIALLY",
        "account_type": "ACCOUNT_TYPE_PRIVATE",
        "puid": "lg-sor-abc_123",
    }


@pytest.mark.skipif(not SHARED.is_dir(), reason="no ../shared/reference beside this checkout")
@pytest.mark.parametrize("name", ["dsa-sor-enums.json", "dsa-statement-of-reasons.md"])
def test_vendored_reference_equals_the_shared_one(name: str) -> None:
    assert (REFERENCE_DIR / name).read_bytes() == (SHARED / name).read_bytes()


def test_a_complete_statement_is_valid() -> None:
    assert validate_statement(valid()) == []
    assert "KEYWORD_GROOMING_SEXUAL_ENTICEMENT_MINORS" in dsa_enums().allowed("KEYWORDS")


@pytest.mark.parametrize(("change", "problem"), [
    ({"decision_provision": None}, "at least one is required"),
    ({"decision_ground": None}, "decision_ground: required"),
    ({"incompatible_content_ground": None}, "incompatible_content_ground: required"),
    ({"decision_ground": "DECISION_GROUND_ILLEGAL_CONTENT"}, "illegal_content_legal_ground: required"),
    ({"category": "STATEMENT_CATEGORY_GROOMING"}, "category: 'STATEMENT_CATEGORY_GROOMING' is not an allowed"),
    ({"category_specification": ["KEYWORD_NOPE"]}, "category_specification: 'KEYWORD_NOPE'"),
    ({"decision_visibility": "DECISION_VISIBILITY_CONTENT_REMOVED"}, "decision_visibility: must be a non-empty"),
    ({"decision_visibility": ["DECISION_VISIBILITY_OTHER"]}, "decision_visibility_other: required"),
    ({"content_type": ["CONTENT_TYPE_OTHER"]}, "content_type_other: required"),
    ({"territorial_scope": ["DE", "US"]}, "territorial_scope: 'US'"),
    ({"content_date": "1999-12-31", "application_date": "2000-01-02"}, "content_date: before 2000-01-01"),
    ({"content_date": "2026-03-21"}, "application_date: before content_date"),
    ({"application_date": "2026-02-30"}, "not a calendar date"),
    ({"automated_detection": True}, "automated_detection: True is not an allowed value"),
    ({"automated_decision": "AUTOMATED_DECISION_SOMEWHAT"}, "automated_decision"),
    ({"source_type": "SOURCE_USER"}, "source_type"),
    ({"puid": "has space"}, "puid: must be"),
    ({"puid": "x" * 501}, "puid: must be"),
    ({"decision_facts": "x" * 5001}, "decision_facts: 5001 characters, at most 5000"),
    ({"incompatible_content_ground": "x" * 501}, "incompatible_content_ground: 501 characters"),
    ({"content_language": "en"}, "content_language"),
    ({"user_id": "u1"}, "user_id: not a field"),
])
def test_each_rule_is_enforced(change: dict[str, Any], problem: str) -> None:
    statement = {**valid(), **change}
    statement = {k: v for k, v in statement.items() if v is not None}
    problems = validate_statement(statement)
    assert any(problem in p for p in problems), problems


def test_batches_are_limited_to_100_with_unique_puids() -> None:
    batch = [{**valid(), "puid": f"p-{i}"} for i in range(101)]
    assert validate_batch(batch) == ["batch: 101 statements, at most 100 per submission"]
    assert validate_batch([valid(), valid()]) == ["statement 1: puid lg-sor-abc_123 repeated"]
