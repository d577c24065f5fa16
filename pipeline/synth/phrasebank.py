"""Phrase banks: the YAML data the synthetic generator draws its chat lines and vocabulary from.

A bank is a folder ``banks/<name>/`` of YAML files. Every file may hold:

* ``sections``: ``{section: {stage, critical?, lines: [template, ...]}}``; a section is addressed as
  ``"<file stem>.<section>"`` (for example ``"grooming_stages.offplatform"``);
* ``fillers``: ``{placeholder: [value, ...]}`` (vocabulary for ``{game}``, ``{item}``...);
* ``obfuscation``: the evasion data the ``obfuscated`` kind uses.

The ``train`` and ``holdout`` banks have the same sections and stages but no template line in common, so a
model trained on one can be evaluated on the other. See ``banks/README.md`` (the data card).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Literal

import yaml

BankName = Literal["train", "holdout"]
BANK_NAMES: tuple[BankName, ...] = ("train", "holdout")

#: Per-message stage labels (the stage classifier's classes).
STAGES: tuple[str, ...] = (
    "trust_building",
    "age_probing",
    "gifts",
    "secrecy",
    "isolation",
    "meeting_request",
    "age_deception",
    "benign",
)

#: Placeholders a template may use; the generator fills every one of them.
PLACEHOLDERS: frozenset[str] = frozenset(
    {
        "name",
        "game",
        "item",
        "app",
        "city",
        "place",
        "ingame_place",
        "job",
        "handle",
        "phone",
        "age",
        "adult_age",
        "amount",
    }
)
#: Placeholders whose values come from the bank's ``fillers`` (the others are computed by the generator).
FILLER_KEYS: tuple[str, ...] = (
    "name",
    "game",
    "item",
    "app",
    "city",
    "place",
    "ingame_place",
    "job",
    "handle_suffixes",
    "emoji_tails",
)

_PLACEHOLDER_RE = re.compile(r"\{(\w+)\}")


class BankError(ValueError):
    """A phrase bank file is missing or malformed: fix the YAML under ``pipeline/synth/banks/``."""


@dataclass(frozen=True)
class Section:
    """One list of templates and the stage label every line drawn from it carries."""

    stage: str
    critical: bool
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Obfuscation:
    """Evasion data: character maps, separators and aliases used to disguise risky words."""

    leet: Mapping[str, str]
    homoglyphs: Mapping[str, str]
    zero_width: tuple[str, ...]
    spaced_separators: tuple[str, ...]
    dotted_separators: tuple[str, ...]
    app_aliases: Mapping[str, tuple[str, ...]]
    number_words: tuple[str, ...]
    tens_words: Mapping[str, str]
    sensitive_words: frozenset[str]


@dataclass(frozen=True)
class PhraseBank:
    name: BankName
    sections: Mapping[str, Section]
    fillers: Mapping[str, tuple[str, ...]]
    obfuscation: Obfuscation

    def section(self, key: str) -> Section:
        try:
            return self.sections[key]
        except KeyError:
            raise BankError(f"bank {self.name!r} has no section {key!r}") from None

    def templates(self) -> list[str]:
        """Every template line of the bank, in file order."""
        return [line for sec in self.sections.values() for line in sec.lines]


def placeholders_in(template: str) -> list[str]:
    return _PLACEHOLDER_RE.findall(template)


def render(template: str, values: Mapping[str, str]) -> str:
    """Replace each ``{placeholder}`` with its value (no other brace handling, unlike ``str.format``)."""
    return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], template)


def _banks_root() -> Traversable:
    return resources.files("pipeline.synth").joinpath("banks")


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise BankError(f"{where}: expected a non-empty list of non-empty strings")
    return tuple(value)


def _str_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise BankError(f"{where}: expected a mapping of strings to strings")
    return dict(value)


def _parse_obfuscation(raw: Any, where: str) -> Obfuscation:
    if not isinstance(raw, dict):
        raise BankError(f"{where}: obfuscation must be a mapping")
    aliases_raw = raw.get("app_aliases")
    if not isinstance(aliases_raw, dict):
        raise BankError(f"{where}: obfuscation.app_aliases must be a mapping")
    number_words = _str_list(raw.get("number_words"), f"{where}: number_words")
    if len(number_words) != 20:
        raise BankError(f"{where}: number_words must list zero..nineteen")
    return Obfuscation(
        leet=_str_map(raw.get("leet"), f"{where}: leet"),
        homoglyphs=_str_map(raw.get("homoglyphs"), f"{where}: homoglyphs"),
        zero_width=_str_list(raw.get("zero_width"), f"{where}: zero_width"),
        spaced_separators=_str_list(raw.get("spaced_separators"), f"{where}: spaced_separators"),
        dotted_separators=_str_list(raw.get("dotted_separators"), f"{where}: dotted_separators"),
        app_aliases={str(k): _str_list(v, f"{where}: app_aliases.{k}") for k, v in aliases_raw.items()},
        number_words=number_words,
        tens_words=_str_map(raw.get("tens_words"), f"{where}: tens_words"),
        sensitive_words=frozenset(w.lower() for w in _str_list(raw.get("sensitive_words"), f"{where}: words")),
    )


def load_bank(name: BankName) -> PhraseBank:
    """Load and validate one bank (cached: the files are package data and never change at run time).

    Raises ``BankError`` (a ValueError) for an unknown bank name or a malformed bank file.
    """
    return _load_bank(name)


@cache
def _load_bank(name: BankName) -> PhraseBank:
    if name not in BANK_NAMES:
        raise BankError(f"unknown bank {name!r}; expected one of {BANK_NAMES}")
    folder = _banks_root().joinpath(name)
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".yaml")), key=lambda f: f.name)
    if not files:
        raise BankError(f"bank {name!r}: no YAML files found in {folder}")
    sections: dict[str, Section] = {}
    fillers: dict[str, tuple[str, ...]] = {}
    obfuscation: Obfuscation | None = None
    seen_lines: dict[str, str] = {}
    for f in files:
        where = f"{name}/{f.name}"
        doc = yaml.load(f.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        if not isinstance(doc, dict):
            raise BankError(f"{where}: top level must be a mapping")
        stem = f.name.removesuffix(".yaml")
        for sec_name, sec in (doc.get("sections") or {}).items():
            key = f"{stem}.{sec_name}"
            if not isinstance(sec, dict):
                raise BankError(f"{where}: section {sec_name!r} must be a mapping")
            stage = sec.get("stage")
            if stage not in STAGES:
                raise BankError(f"{where}: section {sec_name!r} has unknown stage {stage!r}")
            lines = _str_list(sec.get("lines"), f"{where}: {sec_name}.lines")
            for line in lines:
                unknown = set(placeholders_in(line)) - PLACEHOLDERS
                if unknown:
                    raise BankError(f"{where}: {line!r} uses unknown placeholders {sorted(unknown)}")
                if "\n" in line or line != line.strip():
                    raise BankError(f"{where}: {line!r} has a newline or surrounding whitespace")
                if line in seen_lines:
                    raise BankError(f"{where}: {line!r} duplicates a line of {seen_lines[line]}")
                seen_lines[line] = key
            sections[key] = Section(stage=str(stage), critical=bool(sec.get("critical", False)), lines=lines)
        for fkey, values in (doc.get("fillers") or {}).items():
            fillers[str(fkey)] = _str_list(values, f"{where}: fillers.{fkey}")
        if "obfuscation" in doc:
            obfuscation = _parse_obfuscation(doc["obfuscation"], where)
    missing = [k for k in FILLER_KEYS if k not in fillers]
    if missing:
        raise BankError(f"bank {name!r}: fillers missing {missing}")
    if obfuscation is None:
        raise BankError(f"bank {name!r}: no obfuscation data")
    unaliased = [app for app in fillers["app"] if app not in obfuscation.app_aliases]
    if unaliased:
        raise BankError(f"bank {name!r}: apps without obfuscation.app_aliases: {unaliased}")
    return PhraseBank(name=name, sections=sections, fillers=fillers, obfuscation=obfuscation)
