"""Rule packs: the YAML schema, loading and validation, and evaluation against the condition registry.

A rule file that names an unknown field or condition, a bad regex, a stage that does not exist or a rule
without golden cases fails to load with ``RulePackError`` naming the file and the path inside it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from pipeline.conditions import EVENT_CONDITIONS, SUBJECT_CONDITIONS, RuleContext, SubjectContext, TextPatterns
from pipeline.contract import AgeBand, ChannelKind, EventType, Verification
from pipeline.pattern_screen import PatternScreen


class Stage(StrEnum):
    """Grooming stages (the documented process signals) plus the cues that are not a stage themselves."""

    TRUST_BUILDING = "trust_building"
    AGE_PROBING = "age_probing"
    GIFTS = "gifts"
    SECRECY = "secrecy"
    ISOLATION = "isolation"
    MEETING_REQUEST = "meeting_request"
    AGE_DECEPTION = "age_deception"
    REPORTED = "reported"
    FANOUT = "fanout"


GROOMING_STAGES: tuple[Stage, ...] = (
    Stage.TRUST_BUILDING,
    Stage.AGE_PROBING,
    Stage.GIFTS,
    Stage.SECRECY,
    Stage.ISOLATION,
    Stage.MEETING_REQUEST,
)


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


SEVERITY_WEIGHT: dict[Severity, float] = {
    Severity.INFO: 0.1,
    Severity.LOW: 0.22,
    Severity.MEDIUM: 0.4,
    Severity.HIGH: 0.6,
    Severity.CRITICAL: 0.8,
}


class RuleAction(StrEnum):
    OPEN_CASE = "open_case"  # let the hit count toward opening a review case
    RESTRICT_DM = "restrict_dm"  # ask the platform to hold the sender's DMs to minors pending review
    ESCALATE = "escalate"  # route the case to senior moderators


class RuleEffect(StrEnum):
    REVEAL_ADULT = "reveal_adult"  # the sender's text shows they are an adult: treat them as one here
    REVEAL_STATED_AGE = "reveal_stated_age"  # the sender stated their age: use it over the platform band


def _compile(value: object) -> object:
    if isinstance(value, str):
        try:
            return re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


Pattern = Annotated[re.Pattern[str], BeforeValidator(_compile)]
Sender = Literal["any", "older", "younger", "adult", "minor", "adult_or_unknown"]
Relation = Literal["adult_minor", "unknown_minor", "older_minor", "peers", "adults", "adult_unknown",
                   "parent_child", "undetermined"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class When(_Strict):
    """Conditions of an event-scope rule; all given ones must hold (AND). ``any_of`` holds when one branch does."""

    event_type: list[EventType] | None = None
    channel_kind_in: list[ChannelKind] | None = None
    sender: Sender | None = None
    relation_in: list[Relation] | None = None
    actor_band_in: list[AgeBand] | None = None
    target_band_in: list[AgeBand] | None = None
    age_gap_min: float | None = None
    actor_verification_at_most: Verification | None = None
    first_contact_within_events: int | None = Field(None, ge=1)
    amount_min: int | None = Field(None, ge=0)
    counter_min: dict[EventType, int] | None = None
    stage_seen: list[Stage] | None = None
    stated_age_below: int | None = None
    stated_age_at_least: int | None = None
    reports_against_actor_min: int | None = Field(None, ge=1)
    text_none: list[Pattern] | None = None
    text_any: list[Pattern] | None = None
    any_of: list[When] | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> When:
        if not self.model_fields_set:
            raise ValueError("a condition block needs at least one condition")
        return self


class SubjectWhen(_Strict):
    """Conditions of a subject-scope rule, evaluated on a user's profile across conversations."""

    minor_conversations_24h_min: int | None = Field(None, ge=1)
    minor_conversations_min: int | None = Field(None, ge=1)
    youngest_contact_band_in: list[AgeBand] | None = None
    reports_against_min: int | None = Field(None, ge=1)
    blocks_against_min: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _not_empty(self) -> SubjectWhen:
        if not self.model_fields_set:
            raise ValueError("a condition block needs at least one condition")
        return self


class GoldenStep(_Strict):
    """One event of a golden case, written compactly; ``from``/``to`` name personas of the pack."""

    from_: str = Field(alias="from")
    to: str | None = None
    type: EventType = EventType.CHAT_MESSAGE
    text: str | None = None
    amount: int | None = None
    channel: ChannelKind = ChannelKind.DIRECT
    conversation: str | None = None  # name; defaults to the from/to pair
    minutes: float = 1.0  # minutes after the previous step

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class GoldenCases(_Strict):
    positive: list[list[GoldenStep]] = Field(min_length=1)
    negative: list[list[GoldenStep]] = Field(min_length=1)


class Persona(_Strict):
    age_band: AgeBand
    age_verified: Verification = Verification.SELF_DECLARED
    parent_of: list[str] = []


class Rule(_Strict):
    id: str = Field(pattern=r"^[a-z0-9_.-]+$", min_length=3, max_length=80)
    version: int = Field(ge=1)
    description: str = Field(min_length=10)
    stage: Stage
    severity: Severity
    policy: str = Field(min_length=2, description="policy reference, e.g. CSE-3.2 off-platform solicitation")
    mode: Literal["enforce", "shadow"] = "enforce"
    scope: Literal["event", "subject"] = "event"
    actions: list[RuleAction] = [RuleAction.OPEN_CASE]
    effects: list[RuleEffect] = []
    when: dict[str, Any]
    golden: GoldenCases


class PackFile(_Strict):
    pack: str = Field(pattern=r"^[a-z0-9_-]+$")
    description: str
    rules: list[Rule] = Field(min_length=1)


class PersonaFile(_Strict):
    personas: dict[str, Persona] = Field(min_length=2)


PERSONA_FILE = "personas.yaml"


M = TypeVar("M", bound=BaseModel)


class _Yaml12Loader(yaml.SafeLoader):
    """Safe loader with YAML 1.2 integers: YAML 1.1 reads age bands such as ``13_15`` as the number 1315."""


_Yaml12Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:int"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789")
)


class RulePackError(ValueError):
    """A rule file failed validation. Operators: the message names the file and the path; fix the YAML."""


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule: Rule
    pack: str
    conditions: tuple[tuple[str, Any], ...]  # (registry name, typed argument) in evaluation order
    branches: tuple[tuple[tuple[str, Any], ...], ...]  # any_of branches, flattened the same way
    weight: float
    checks: tuple[tuple[str, Any], ...] = ()  # conditions left per event once the gate index selected the rule

    @property
    def id(self) -> str:
        return self.rule.id

    @property
    def version(self) -> int:
        return self.rule.version


# Conditions decided by the event's shape alone (type, channel, sender role, relation, actor band). The rule
# book indexes rules by them, so per event only the rules that can still match are evaluated.
GATE_CONDITIONS = ("event_type", "channel_kind_in", "sender", "relation_in", "actor_band_in")


class GateKey(NamedTuple):
    """The memo key of ``RuleBook.candidates`` (a named tuple: hashed in C on every event)."""

    event_type: EventType
    channel_kind: ChannelKind | None
    sender_role: str  # older | younger | other
    actor_is_adult: bool
    actor_is_minor: bool
    actor_band: AgeBand
    relation: str


@dataclass(frozen=True, slots=True)
class RuleBook:
    event_rules: tuple[CompiledRule, ...]
    subject_rules: tuple[CompiledRule, ...]
    personas: dict[str, Persona]
    by_type: dict[EventType, tuple[CompiledRule, ...]]
    screen: PatternScreen = field(default_factory=PatternScreen)  # of the text conditions' patterns
    _candidates: dict[GateKey, tuple[CompiledRule, ...]] = field(default_factory=dict, repr=False, compare=False)

    def candidates(self, key: GateKey) -> tuple[CompiledRule, ...]:
        """Event rules whose gate conditions hold for events of this shape (memoised; the key space is small)."""
        cached = self._candidates.get(key)
        if cached is None:
            cached = tuple(r for r in self.by_type[key.event_type] if _gates_pass(r, key))
            self._candidates[key] = cached
        return cached

    @property
    def rules(self) -> tuple[CompiledRule, ...]:
        return self.event_rules + self.subject_rules

    def text_conditions(self) -> tuple[TextPatterns, ...]:
        """Every text condition of the event rules, ``any_of`` branches included (what ``screen`` covers)."""
        return tuple(value for rule in self.event_rules
                     for _, value in (*rule.conditions, *(c for branch in rule.branches for c in branch))
                     if isinstance(value, TextPatterns))

    def version_map(self) -> dict[str, int]:
        return {r.id: r.version for r in self.rules}


def _flatten(when: When | SubjectWhen, registry: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    values = {name: getattr(when, name) for name in when.model_fields_set if name != "any_of"}
    return tuple((name, values[name]) for name in registry if name in values)


def _compile_rule(rule: Rule, pack: str, file_name: str, screen: PatternScreen) -> CompiledRule:
    # `when` is parsed by scope: a subject rule may not use event conditions and the reverse.
    model: type[When] | type[SubjectWhen] = When if rule.scope == "event" else SubjectWhen
    try:
        when = model.model_validate(rule.when)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        raise RulePackError(f"{file_name}: rule {rule.id!r}: when.{where}: {err['msg']} "
                            f"({rule.scope}-scope conditions)") from None
    registry: dict[str, Any] = EVENT_CONDITIONS if rule.scope == "event" else SUBJECT_CONDITIONS
    branches: tuple[tuple[tuple[str, Any], ...], ...] = ()
    if isinstance(when, When) and when.any_of:
        branches = tuple(tuple((n, TextPatterns(v, screen) if n in PATTERN_CONDITIONS else v)
                               for n, v in _flatten(b, registry)) for b in when.any_of)
    conditions = tuple((n, TextPatterns(_merge_patterns(v), screen) if n in PATTERN_CONDITIONS else v)
                       for n, v in _flatten(when, registry))
    checks = tuple((n, v) for n, v in conditions if n not in GATE_CONDITIONS)
    return CompiledRule(rule, pack, conditions, branches, SEVERITY_WEIGHT[rule.severity], checks)


PATTERN_CONDITIONS = ("text_any", "text_none")


def _merge_patterns(patterns: list[re.Pattern[str]]) -> list[re.Pattern[str]]:
    """One alternation per condition: one regex scan per rule instead of one per listed pattern. (Not in
    ``any_of`` branches: there each pattern keeps its own first match, as the evidence spans always have.)"""
    if len(patterns) <= 1:
        return patterns
    return [re.compile("|".join(f"(?:{p.pattern})" for p in patterns))]


def default_rules_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "rules"


def load_rulebook(directory: Path | None = None) -> RuleBook:
    directory = directory or default_rules_dir()
    files = sorted(p for p in directory.glob("*.yaml") if p.name != PERSONA_FILE)
    if not files:
        raise RulePackError(f"{directory}: no rule files (*.yaml)")
    persona_path = directory / PERSONA_FILE
    personas = _load_yaml(persona_path, PersonaFile).personas if persona_path.is_file() else {}
    event_rules: list[CompiledRule] = []
    subject_rules: list[CompiledRule] = []
    seen: dict[str, str] = {}
    screen = PatternScreen()
    for path in files:
        pack = _load_yaml(path, PackFile)
        for rule in pack.rules:
            if rule.id in seen:
                raise RulePackError(f"{path.name}: rule id {rule.id!r} already defined in {seen[rule.id]}")
            seen[rule.id] = path.name
            compiled = _compile_rule(rule, pack.pack, path.name, screen)
            (event_rules if rule.scope == "event" else subject_rules).append(compiled)
    screen.seal()
    by_type: dict[EventType, tuple[CompiledRule, ...]] = {}
    for event_type in EventType:
        by_type[event_type] = tuple(r for r in event_rules if _may_apply(r, event_type))
    return RuleBook(tuple(event_rules), tuple(subject_rules), personas, by_type, screen)


def _may_apply(rule: CompiledRule, event_type: EventType) -> bool:
    for name, value in rule.conditions:
        if name == "event_type":
            return event_type in value
    return True


def _load_yaml(path: Path, model: type[M]) -> M:
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_Yaml12Loader)
    except (OSError, yaml.YAMLError) as exc:
        raise RulePackError(f"{path.name}: cannot read YAML: {exc}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        rule_hint = _rule_id_at(raw, err["loc"])
        raise RulePackError(f"{path.name}: {rule_hint}{where}: {err['msg']}") from None


def _rule_id_at(raw: Any, loc: tuple[int | str, ...]) -> str:
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int) and isinstance(raw, dict):
        rules = raw.get("rules") or []
        if loc[1] < len(rules) and isinstance(rules[loc[1]], dict):
            return f"rule {rules[loc[1]].get('id', '?')!r}: "
    return ""


def _gates_pass(rule: CompiledRule, key: GateKey) -> bool:
    for name, value in rule.conditions:
        if name == "event_type" and key.event_type not in value:
            return False
        if name == "channel_kind_in" and key.channel_kind not in value:
            return False
        if name == "relation_in" and key.relation not in value:
            return False
        if name == "actor_band_in" and key.actor_band not in value:
            return False
        if name == "sender" and not _sender_gate(value, key):
            return False
    return True


def _sender_gate(role: str, key: GateKey) -> bool:
    if role in ("older", "younger"):
        return key.sender_role == role
    if role == "adult":
        return key.actor_is_adult
    if role == "minor":
        return key.actor_is_minor
    if role == "adult_or_unknown":
        return key.actor_is_adult or key.actor_band is AgeBand.UNKNOWN
    return True


def event_rule_matches(rule: CompiledRule, ctx: RuleContext) -> bool:
    """Full check of a rule's non-gate conditions (gates are checked by ``RuleBook.candidates``)."""
    for name, value in rule.checks:
        if not EVENT_CONDITIONS[name](value, ctx):
            return False
    if rule.branches:
        return any(all(EVENT_CONDITIONS[n](v, ctx) for n, v in branch) for branch in rule.branches)
    return True


def subject_rule_matches(rule: CompiledRule, ctx: SubjectContext) -> bool:
    return all(SUBJECT_CONDITIONS[name](value, ctx) for name, value in rule.conditions)


def rules_by_id(book: RuleBook, ids: Iterable[str]) -> list[CompiledRule]:
    index = {r.id: r for r in book.rules}
    return [index[i] for i in ids]
