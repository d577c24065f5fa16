"""Rule packs: schema validation at load, the closed condition registry, and every golden case."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.conditions import EVENT_CONDITIONS, SUBJECT_CONDITIONS
from pipeline.golden import run_golden
from pipeline.rulebook import RulePackError, SubjectWhen, When, default_rules_dir, load_rulebook

RULE = """
pack: test-pack
description: a pack for tests
rules:
  - id: test.rule
    version: 1
    description: a rule used only by tests
    stage: secrecy
    severity: high
    policy: TEST-1
    when:
      event_type: [chat_message]
      {condition}
    golden:
      positive:
        - [{{from: adult, to: child, text: "keep this secret"}}]
      negative:
        - [{{from: child, to: adult, text: "hello"}}]
"""


@pytest.fixture()
def pack_dir(tmp_path: Path) -> Path:
    shutil.copy(default_rules_dir() / "personas.yaml", tmp_path / "personas.yaml")
    return tmp_path


def write_pack(directory: Path, condition: str) -> None:
    (directory / "test.yaml").write_text(RULE.format(condition=condition))


def test_shipped_rule_packs_load() -> None:
    book = load_rulebook()
    assert len(book.event_rules) >= 20
    assert book.subject_rules, "fan-out and report rules are subject-scope"
    assert any(r.rule.mode == "shadow" for r in book.rules)


def test_every_rule_has_positive_and_negative_golden_cases_that_pass() -> None:
    book = load_rulebook()
    count, failures = run_golden(book)
    assert count >= 2 * len(book.rules)
    assert not failures, "\n".join(str(f) for f in failures)


def test_condition_models_and_registry_match_exactly() -> None:
    assert set(When.model_fields) - {"any_of"} == set(EVENT_CONDITIONS)
    assert set(SubjectWhen.model_fields) == set(SUBJECT_CONDITIONS)


def test_valid_custom_pack_loads(pack_dir: Path) -> None:
    write_pack(pack_dir, "text_any: ['secret']")
    book = load_rulebook(pack_dir)
    assert [r.id for r in book.rules] == ["test.rule"]


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("text_matches_magic: ['x']", "text_matches_magic"),
        ("text_any: ['(unclosed']", "invalid regular expression"),
        ("sender: grandparent", "sender"),
        ("actor_band_in: [adult]", "actor_band_in"),
        ("minor_conversations_24h_min: 3", "minor_conversations_24h_min"),
        ("first_contact_within_events: 0", "first_contact_within_events"),
    ],
)
def test_bad_conditions_fail_at_load_naming_the_problem(pack_dir: Path, condition: str, message: str) -> None:
    write_pack(pack_dir, condition)
    with pytest.raises(RulePackError, match=message) as caught:
        load_rulebook(pack_dir)
    assert "test.yaml" in str(caught.value)


def test_unknown_rule_field_and_missing_golden_cases_fail(pack_dir: Path) -> None:
    text = RULE.format(condition="text_any: ['secret']")
    (pack_dir / "test.yaml").write_text(text.replace("    mode_typo: x\n", "").replace(
        "    policy: TEST-1\n", "    policy: TEST-1\n    priority_boost: 3\n"))
    with pytest.raises(RulePackError, match="priority_boost"):
        load_rulebook(pack_dir)
    negative_removed = text.split("      negative:")[0]
    (pack_dir / "test.yaml").write_text(negative_removed)
    with pytest.raises(RulePackError, match="negative"):
        load_rulebook(pack_dir)


def test_duplicate_rule_ids_across_files_fail(pack_dir: Path) -> None:
    write_pack(pack_dir, "text_any: ['secret']")
    shutil.copy(pack_dir / "test.yaml", pack_dir / "test-copy.yaml")
    with pytest.raises(RulePackError, match="already defined"):
        load_rulebook(pack_dir)


def test_golden_runner_reports_a_rule_that_stops_matching(pack_dir: Path) -> None:
    write_pack(pack_dir, "text_any: ['never matches anything xyz']")
    _, failures = run_golden(load_rulebook(pack_dir))
    assert [f.polarity for f in failures] == ["positive"]


def test_golden_runner_reports_a_negative_that_matches(pack_dir: Path) -> None:
    write_pack(pack_dir, "text_any: ['.']")
    _, failures = run_golden(load_rulebook(pack_dir))
    assert [f.polarity for f in failures] == ["negative"]


def test_yaml_age_bands_are_not_read_as_numbers(pack_dir: Path) -> None:
    write_pack(pack_dir, "actor_band_in: [13_15, 18_20]\n      text_any: ['secret']")
    rule = load_rulebook(pack_dir).event_rules[0]
    bands = dict(rule.conditions)["actor_band_in"]
    assert [b.value for b in bands] == ["13_15", "18_20"]
