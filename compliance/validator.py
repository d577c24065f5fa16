"""Checks a statement of reasons against the DSA Transparency Database field rules and enumerations.

The enumerations come from the vendored ``reference/dsa-sor-enums.json`` (a copy of the shared reference; a test
keeps them equal). The field rules are those of ``reference/dsa-statement-of-reasons.md``, written here as code
because the reference is prose. The export runs every statement through ``validate_statement`` before writing
anything; the tests run the written files through it again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

from compliance.errors import ReferenceDataError

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
ENUMS_FILE = "dsa-sor-enums.json"
RULES_FILE = "dsa-statement-of-reasons.md"
MAX_BATCH = 100

# The reference says "EU/EEA 2-letter country codes" without listing them: the 27 EU members plus IS, LI, NO.
EEA_COUNTRIES = frozenset({
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT", "LT", "LU",
    "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK", "IS", "LI", "NO",
})
PUID = re.compile(r"^[a-zA-Z0-9_-]{1,500}$")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
LANGUAGE = re.compile(r"^[A-Z]{2}$")
YES_NO = ("Yes", "No")
REQUIRED = ("decision_ground", "decision_facts", "content_type", "category", "territorial_scope", "content_date",
            "application_date", "source_type", "automated_detection", "automated_decision", "puid")
RESTRICTIONS = ("decision_visibility", "decision_monetary", "decision_provision", "decision_account")
END_DATES = ("end_date_visibility_restriction", "end_date_monetary_restriction",
             "end_date_service_restriction", "end_date_account_restriction")
KNOWN_FIELDS = frozenset({
    *REQUIRED, *RESTRICTIONS, *END_DATES, "decision_visibility_other", "decision_monetary_other",
    "illegal_content_legal_ground", "illegal_content_explanation", "incompatible_content_ground",
    "incompatible_content_explanation", "incompatible_content_illegal", "content_type_other",
    "category_addition", "category_specification", "category_specification_other", "content_language",
    "source_identity", "account_type",
})


@dataclass(frozen=True, slots=True)
class DsaEnums:
    """The allowed values of every enumerated field (keys as in the reference file)."""

    values: Mapping[str, frozenset[str]]

    def allowed(self, key: str) -> frozenset[str]:
        return self.values[key]


def _load_enums(path: Path) -> DsaEnums:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ReferenceDataError(f"cannot read {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise ReferenceDataError(f"{path}: expected a JSON object of enumerations")
    values: dict[str, frozenset[str]] = {}
    for key, entries in raw.items():
        if isinstance(entries, dict):
            values[key] = frozenset(entries)
        elif isinstance(entries, list):
            values[key] = frozenset(str(e) for e in entries)
        else:
            raise ReferenceDataError(f"{path}: {key} is neither an object nor a list")
    expected = ("SOURCE_TYPES", "CONTENT_TYPES", "AUTOMATED_DETECTIONS", "AUTOMATED_DECISIONS", "DECISION_GROUNDS",
                "DECISION_VISIBILITIES", "DECISION_MONETARIES", "DECISION_PROVISIONS", "DECISION_ACCOUNTS",
                "ACCOUNT_TYPES", "STATEMENT_CATEGORIES", "KEYWORDS")
    missing = [k for k in expected if k not in values]
    if missing:
        raise ReferenceDataError(f"{path}: missing enumerations {', '.join(missing)}")
    return DsaEnums(values)


@cache
def dsa_enums() -> DsaEnums:
    """The vendored enumerations (read once per process)."""
    return _load_enums(REFERENCE_DIR / ENUMS_FILE)


def _text(statement: Mapping[str, Any], name: str, limit: int, problems: list[str], *, required: bool) -> None:
    value = statement.get(name)
    if value is None:
        if required:
            problems.append(f"{name}: required")
        return
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{name}: must be non-empty text")
    elif len(value) > limit:
        problems.append(f"{name}: {len(value)} characters, at most {limit}")


def _one_of(statement: Mapping[str, Any], name: str, allowed: frozenset[str], problems: list[str]) -> None:
    value = statement.get(name)
    if value is not None and value not in allowed:
        problems.append(f"{name}: {value!r} is not an allowed value")


def _array_of(statement: Mapping[str, Any], name: str, allowed: frozenset[str], problems: list[str]) -> None:
    value = statement.get(name)
    if value is None:
        return
    if not isinstance(value, list) or not value:
        problems.append(f"{name}: must be a non-empty array")
        return
    for item in value:
        if item not in allowed:
            problems.append(f"{name}: {item!r} is not an allowed value")
    if len(set(map(str, value))) != len(value):
        problems.append(f"{name}: repeated values")


def _date(statement: Mapping[str, Any], name: str, problems: list[str], *, required: bool) -> date | None:
    value = statement.get(name)
    if value is None:
        if required:
            problems.append(f"{name}: required")
        return None
    if not isinstance(value, str) or not ISO_DATE.match(value):
        problems.append(f"{name}: {value!r} is not YYYY-MM-DD")
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        problems.append(f"{name}: {value!r} is not a calendar date")
        return None


def validate_statement(statement: Mapping[str, Any], enums: DsaEnums | None = None) -> list[str]:
    """Every rule the statement breaks (empty when valid), each naming its field."""
    enums = enums or dsa_enums()
    problems: list[str] = [f"{name}: not a field of the statement schema"
                           for name in sorted(set(statement) - KNOWN_FIELDS)]
    for name in REQUIRED:
        if statement.get(name) is None:
            problems.append(f"{name}: required")

    # Restrictions: at least one of the four; visibility is an array; *_OTHER needs its text.
    if all(statement.get(name) is None for name in RESTRICTIONS):
        problems.append("decision_visibility/decision_monetary/decision_provision/decision_account: at least one "
                        "is required")
    _array_of(statement, "decision_visibility", enums.allowed("DECISION_VISIBILITIES"), problems)
    _one_of(statement, "decision_monetary", enums.allowed("DECISION_MONETARIES"), problems)
    _one_of(statement, "decision_provision", enums.allowed("DECISION_PROVISIONS"), problems)
    _one_of(statement, "decision_account", enums.allowed("DECISION_ACCOUNTS"), problems)
    visibility = statement.get("decision_visibility")
    if isinstance(visibility, list) and "DECISION_VISIBILITY_OTHER" in visibility:
        _text(statement, "decision_visibility_other", 500, problems, required=True)
    if statement.get("decision_monetary") == "DECISION_MONETARY_OTHER":
        _text(statement, "decision_monetary_other", 500, problems, required=True)

    # Ground and its explanations.
    _one_of(statement, "decision_ground", enums.allowed("DECISION_GROUNDS"), problems)
    ground = statement.get("decision_ground")
    if ground == "DECISION_GROUND_ILLEGAL_CONTENT":
        _text(statement, "illegal_content_legal_ground", 500, problems, required=True)
        _text(statement, "illegal_content_explanation", 2000, problems, required=True)
    elif ground == "DECISION_GROUND_INCOMPATIBLE_CONTENT":
        _text(statement, "incompatible_content_ground", 500, problems, required=True)
        _text(statement, "incompatible_content_explanation", 2000, problems, required=True)
        _one_of(statement, "incompatible_content_illegal", frozenset(YES_NO), problems)
    _text(statement, "decision_facts", 5000, problems, required=True)

    # Content, category, scope.
    _array_of(statement, "content_type", enums.allowed("CONTENT_TYPES"), problems)
    content_type = statement.get("content_type")
    if isinstance(content_type, list) and "CONTENT_TYPE_OTHER" in content_type:
        _text(statement, "content_type_other", 500, problems, required=True)
    _one_of(statement, "category", enums.allowed("STATEMENT_CATEGORIES"), problems)
    _array_of(statement, "category_addition", enums.allowed("STATEMENT_CATEGORIES"), problems)
    _array_of(statement, "category_specification", enums.allowed("KEYWORDS"), problems)
    specification = statement.get("category_specification")
    if isinstance(specification, list) and "KEYWORD_OTHER" in specification:
        _text(statement, "category_specification_other", 500, problems, required=True)
    _array_of(statement, "territorial_scope", EEA_COUNTRIES, problems)
    language = statement.get("content_language")
    if language is not None and (not isinstance(language, str) or not LANGUAGE.match(language)):
        problems.append(f"content_language: {language!r} is not an uppercase ISO 639-1 code")

    # Dates.
    content_date = _date(statement, "content_date", problems, required=True)
    application_date = _date(statement, "application_date", problems, required=True)
    if content_date is not None and content_date < date(2000, 1, 1):
        problems.append("content_date: before 2000-01-01")
    if content_date is not None and application_date is not None and application_date < content_date:
        problems.append("application_date: before content_date")
    for name in END_DATES:
        _date(statement, name, problems, required=False)

    # Source and automation.
    _one_of(statement, "source_type", enums.allowed("SOURCE_TYPES"), problems)
    _text(statement, "source_identity", 500, problems, required=False)
    _one_of(statement, "automated_detection", enums.allowed("AUTOMATED_DETECTIONS"), problems)
    _one_of(statement, "automated_decision", enums.allowed("AUTOMATED_DECISIONS"), problems)
    _one_of(statement, "account_type", enums.allowed("ACCOUNT_TYPES"), problems)

    puid = statement.get("puid")
    if puid is not None and (not isinstance(puid, str) or not PUID.match(puid)):
        problems.append("puid: must be 1..500 characters of [a-zA-Z0-9_-]")
    return sorted(set(problems))


def validate_batch(statements: Sequence[Mapping[str, Any]], enums: DsaEnums | None = None) -> list[str]:
    """Problems of a whole batch file: size, unique puids, and each statement's own problems (prefixed)."""
    problems: list[str] = []
    if len(statements) > MAX_BATCH:
        problems.append(f"batch: {len(statements)} statements, at most {MAX_BATCH} per submission")
    seen: set[str] = set()
    for index, statement in enumerate(statements):
        puid = statement.get("puid")
        if isinstance(puid, str):
            if puid in seen:
                problems.append(f"statement {index}: puid {puid} repeated")
            seen.add(puid)
        problems.extend(f"statement {index}: {p}" for p in validate_statement(statement, enums))
    return problems


__all__ = ["EEA_COUNTRIES", "MAX_BATCH", "DsaEnums", "dsa_enums", "validate_batch", "validate_statement"]
