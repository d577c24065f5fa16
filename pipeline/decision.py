"""The decision core: ``decide(event, snapshot, detectors) -> Decision``.

Pure and deterministic: no Kafka, no Redis, no clock, no randomness. Everything it needs arrives as
arguments (the conversation's state before the event, the subject profiles of the parties, the rule book and
the classifiers); everything it concludes leaves in the returned ``Decision``, which is a self-contained
record (event id, reasons with rule/model ids and versions, age factors, scores, stage evidence) and carries
the new state for the caller to store. Replay and the Kafka workers both call it through ``DecisionRunner``.

Records built for every event (``Decision``, ``Snapshot``, ``ClassifierContext``, ``FusionInputs``,
``ConversationState``) are plain slotted dataclasses, not frozen ones: a frozen dataclass's ``__init__`` sets each
field through ``object.__setattr__``, about 6x slower. They are treated as immutable all the same: nothing
assigns to one after construction.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pipeline.age import PairAssessment, Party, assess_pair, band_for_age, is_adult, is_minor, youngest
from pipeline.conditions import RuleContext, SubjectContext, stated_age
from pipeline.contract import AgeBand, ChannelKind, Event, EventType, Verification
from pipeline.normalise import NormalisedText, normalise
from pipeline.risk import (
    CASE_THRESHOLD,
    REPEAT_DAMPING,
    add_evidence,
    combine,
    decay,
    priority,
    stage_score,
)
from pipeline.rulebook import (
    CompiledRule,
    GateKey,
    RuleAction,
    RuleBook,
    RuleEffect,
    event_rule_matches,
    subject_rule_matches,
)
from pipeline.state import (
    ContactEntry,
    ConversationState,
    ParticipantInfo,
    ProfileOp,
    StageMark,
    SubjectProfile,
)

AGE_POLICY_VERSION = 1
MAX_PARTICIPANTS = 8  # bounded state: a busy group channel keeps its most recent speakers
RISKY_RELATIONS = frozenset({"adult_minor", "unknown_minor", "older_minor"})
PRIVATE_CHANNELS = frozenset({ChannelKind.DIRECT, ChannelKind.PARTY})
TEXT_EVENTS = frozenset({EventType.CHAT_MESSAGE, EventType.USER_REPORT})
# ``Enum.value`` is a Python-level descriptor; these lookups are on the per-event path.
_TYPE_NAME: dict[EventType, str] = {t: t.value for t in EventType}
_CHANNEL_NAME: dict[ChannelKind, str] = {k: k.value for k in ChannelKind}


@dataclass(frozen=True, slots=True)
class Reason:
    kind: Literal["rule", "model", "age"]
    id: str
    version: str
    event_id: str
    detail: str
    stage: str | None = None
    weight: float = 0.0
    spans: tuple[tuple[int, int], ...] = ()  # evidence spans in the ORIGINAL text

    def to_report(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "version": self.version, "event_id": self.event_id,
                "detail": self.detail}

    def to_record(self) -> dict[str, Any]:
        return {**self.to_report(), "stage": self.stage, "weight": round(self.weight, 4),
                "spans": [list(s) for s in self.spans]}


@dataclass(frozen=True, slots=True)
class StageScores:
    """What a message classifier says about one message: probability per stage, with evidence to show."""

    model_id: str
    version: str
    sha256: str
    scores: Mapping[str, float]
    evidence: tuple[str, ...] = ()  # e.g. nearest exemplars


class MessageClassifier(Protocol):
    """A detector ``decide`` may consult per message. Must be deterministic (same text -> same scores).

    ``prime`` is a cache warm-up the runner calls once per batch with every text in it, so a model can
    score in one vectorised call; ``score`` must return the same result whether or not the text was primed.
    ``forecast(i)``, when given, is the context ``texts[i]`` will most likely be scored in (computed from the
    state at the start of the batch, see ``forecast_context``): a hint for what to warm, never an input to
    scores.
    """

    name: str
    version: str
    sha256: str

    def prime(self, texts: Sequence[NormalisedText],
              forecast: Callable[[int], ClassifierContext] | None = None) -> None: ...

    def score(self, text: NormalisedText, context: ClassifierContext) -> StageScores | None: ...


# Not frozen (per-event record): see the module docstring.
@dataclass(slots=True)
class ClassifierContext:
    """What a classifier may use besides the text, e.g. to decide whether an expensive stage runs (cascade)."""

    pair: PairAssessment
    sender_role: str
    conversation_risk: float
    events_so_far: int


# Not frozen (per-event record): see the module docstring.
@dataclass(slots=True)
class FusionInputs:
    """What a learned fusion may use for a conversation's local risk: only what ``decide`` already has."""

    evidence: Mapping[str, float]  # decayed stage evidence after this event
    pair: PairAssessment
    rule_hits: int  # enforce-mode rule hits in the conversation so far, this event's included
    events: int  # events in the conversation so far, this one included
    # Deliberately no cross-conversation input (e.g. the older party's other contacts): it would depend on the
    # order partitions are processed in. Fan-out reaches the risk through subject rules, combine and the sweep.


class RiskFusion(Protocol):
    """Replaces the hand-tuned ``pair.factor * stage_score(evidence)`` with a learned local risk in [0, 1].

    Must be deterministic. Its output feeds ``combine`` and the fan-out sweep exactly like the hand-tuned value.
    """

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def sha256(self) -> str: ...

    def local_risk(self, inputs: FusionInputs) -> float: ...


@dataclass(frozen=True, slots=True)
class Detectors:
    rules: RuleBook
    classifiers: tuple[MessageClassifier, ...] = ()
    case_threshold: float = CASE_THRESHOLD
    model_weight: float = 0.55  # how much a classifier probability counts as stage evidence
    fusion: RiskFusion | None = None  # None: the hand-tuned weights of pipeline.risk


# Not frozen (per-event record): see the module docstring.
@dataclass(slots=True)
class Snapshot:
    """State the caller loaded for one event."""

    conversation: ConversationState | None
    profiles: Mapping[str, SubjectProfile]


@dataclass(frozen=True, slots=True)
class CaseUpdate:
    """Open a review case for a conversation, or attach new evidence to its open case."""

    conversation_id: str
    event_id: str
    ts: str
    risk: float
    priority: int
    priority_score: float
    stages: tuple[str, ...]
    subjects: tuple[str, ...]
    youngest_band: str
    reasons: tuple[Reason, ...]
    escalate: bool = False


@dataclass(frozen=True, slots=True)
class PlatformAction:
    action: str  # e.g. restrict_dm
    subject: str
    conversation_id: str
    event_id: str
    reason: str


# Not frozen (per-event record): see the module docstring.
@dataclass(slots=True)
class Decision:
    event_id: str
    conversation_id: str
    ts: str
    event_type: str
    reasons: tuple[Reason, ...]
    shadow_reasons: tuple[Reason, ...]
    stage_evidence: Mapping[str, float]
    pair: PairAssessment
    local_risk: float
    subject_bonus: float
    risk: float
    case: CaseUpdate | None
    swept_cases: tuple[CaseUpdate, ...]
    actions: tuple[PlatformAction, ...]
    state: ConversationState = field(repr=False)
    profile_ops: tuple[ProfileOp, ...] = field(repr=False)
    models: tuple[dict[str, str], ...] = ()
    model_scores: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """The self-contained decision record kept with cases and in the audit trail."""
        return {
            "event_id": self.event_id,
            "conversation_id": self.conversation_id,
            "ts": self.ts,
            "event_type": self.event_type,
            "reasons": [r.to_record() for r in self.reasons],
            "shadow_reasons": [r.to_record() for r in self.shadow_reasons],
            "stage_evidence": {k: round(v, 4) for k, v in sorted(self.stage_evidence.items())},
            "pair": {"relation": self.pair.relation, "factor": self.pair.factor, "older": self.pair.older,
                     "younger": self.pair.younger, "gap_years": self.pair.gap_years, "detail": self.pair.detail},
            "local_risk": round(self.local_risk, 4),
            "subject_bonus": round(self.subject_bonus, 4),
            "risk": round(self.risk, 4),
            "case": None if self.case is None else {"opens_or_attaches": self.case.conversation_id,
                                                    "priority": self.case.priority},
            "actions": [a.action for a in self.actions],
            "models": list(self.models),
            "model_scores": {m: {k: round(v, 4) for k, v in s.items()} for m, s in self.model_scores.items()},
        }


def case_id_for(conversation_id: str, opened_by_event_id: str) -> str:
    digest = hashlib.sha256(f"{conversation_id}\x1f{opened_by_event_id}".encode()).hexdigest()
    return f"case-{digest[:20]}"


def normalised_text_of(event: Event) -> NormalisedText | None:
    """The folded text detectors see, for the event types whose text is analysed."""
    return normalise(event.text) if event.text is not None and event.type in TEXT_EVENTS else None


def forecast_context(event: Event, conversation: ConversationState | None) -> ClassifierContext:
    """The classifier context ``decide`` would give ``event`` if it were decided against ``conversation`` (age
    cues in the event itself aside). The runner computes it from the state at the start of a batch, for
    ``MessageClassifier.prime`` to warm what will most likely be needed."""
    before = conversation or ConversationState(conversation_id=event.conversation_id)
    participants = _merge_participants(before.participants, event)
    channel_kind = event.channel.kind if event.channel is not None else None
    pair = assess_pair(_parties(participants, before.revealed_bands), channel_kind)
    return ClassifierContext(pair, _role(pair, event.actor.user_id), before.peak_risk, before.events)


def decide(event: Event, snapshot: Snapshot, detectors: Detectors, text: NormalisedText | None = None) -> Decision:
    """Decide one event. ``text`` may carry the already normalised text (the runner folds a batch at once);
    it must equal ``normalised_text_of(event)``."""
    conv_id = event.conversation_id
    ts = event.ts.timestamp()
    before = snapshot.conversation or ConversationState(conversation_id=conv_id, first_ts=ts, last_ts=ts)
    if text is None:
        text = normalised_text_of(event)

    participants = _merge_participants(before.participants, event)
    revealed = dict(before.revealed_bands)
    evidence = decay(before.evidence, ts - before.last_ts)
    # With classifiers on, rule evidence is also kept apart, so the hand-tuned score can stand on rules alone.
    rule_evidence = decay(before.rule_evidence, ts - before.last_ts) if detectors.classifiers else {}
    channel_kind = event.channel.kind if event.channel is not None else None
    parties = _parties(participants, revealed)
    pair = assess_pair(parties, channel_kind)
    actor = _party(event.actor.user_id, participants, revealed)
    target = _party(event.target.user_id, participants, revealed) if event.target is not None else None
    actor_profile = snapshot.profiles.get(event.actor.user_id)

    ctx = RuleContext(event, text, pair, actor, target, before, evidence, actor_profile)
    gate = GateKey(event.type, channel_kind, _role(pair, actor.user_id), is_adult(actor.band), is_minor(actor.band),
                   actor.band, pair.relation)
    hits: list[tuple[CompiledRule, tuple[tuple[int, int], ...]]] = []
    shadow: list[Reason] = []
    for rule in detectors.rules.candidates(gate):
        ctx.spans = []
        if not event_rule_matches(rule, ctx):
            continue
        spans = tuple(text.original_span(s, e) for s, e in ctx.spans if e > s) if text is not None else ()
        if rule.rule.mode == "shadow":
            shadow.append(_rule_reason(rule, event, spans, 0.0))
        else:
            hits.append((rule, spans))

    # Effects of age cues change who counts as the adult, so the pairing is assessed again. A cue never makes
    # someone an adult while an adult is already in the conversation: that could only remove a child's protection
    # (a child writing "my mom is at work" must stay a child).
    adult_present: bool | None = None  # computed when a hit reveals an age (rare)
    for rule, _ in hits:
        effects = rule.rule.effects
        if not effects:
            continue
        if adult_present is None:
            adult_present = any(is_adult(p.band) for p in parties if p.user_id != actor.user_id)
        if RuleEffect.REVEAL_ADULT in effects and not is_adult(actor.band) and not adult_present:
            revealed[actor.user_id] = AgeBand.AGE_18_20.value
        if RuleEffect.REVEAL_STATED_AGE in effects and text is not None:
            age = stated_age(text.text)
            if age is None or actor.user_id in revealed:
                continue
            band = band_for_age(age)
            if not (is_adult(band) and adult_present):
                revealed[actor.user_id] = band.value
    if revealed != before.revealed_bands:
        parties = _parties(participants, revealed)
        pair = assess_pair(parties, channel_kind)

    hit_counts = dict(before.rule_hits)
    reasons: list[Reason] = []
    stage_marks = dict(before.stage_marks)
    for rule, spans in hits:
        prior = hit_counts.get(rule.id, 0)
        weight = rule.weight * (REPEAT_DAMPING**prior)
        hit_counts[rule.id] = prior + 1
        stage = rule.rule.stage.value
        evidence[stage] = add_evidence(evidence.get(stage, 0.0), weight)
        if detectors.classifiers:
            rule_evidence[stage] = add_evidence(rule_evidence.get(stage, 0.0), weight)
        reasons.append(_rule_reason(rule, event, spans, weight))

    model_info: list[dict[str, str]] = []
    model_scores: dict[str, dict[str, float]] = {}
    if text is not None and detectors.classifiers:
        classifier_ctx = ClassifierContext(pair, _role(pair, event.actor.user_id), before.peak_risk, before.events)
        for classifier in detectors.classifiers:
            scored = classifier.score(text, classifier_ctx)
            if scored is None:
                continue
            model_info.append({"id": scored.model_id, "version": scored.version, "sha256": scored.sha256})
            model_scores[scored.model_id] = dict(scored.scores)
            for stage, probability in scored.scores.items():
                if probability < 0.5:
                    continue
                weight = detectors.model_weight * probability
                evidence[stage] = add_evidence(evidence.get(stage, 0.0), weight)
                reasons.append(Reason("model", scored.model_id, scored.version, event.event_id,
                                      f"{stage} p={probability:.2f}" + _nearest(scored.evidence), stage, weight))

    for reason in reasons:
        if reason.stage is not None and reason.stage not in stage_marks and evidence.get(reason.stage, 0) > 0:
            stage_marks[reason.stage] = StageMark(ts, event.event_id)

    counters = dict(before.counters)
    type_name = _TYPE_NAME[event.type]
    counters[type_name] = counters.get(type_name, 0) + 1
    messages_by_user = dict(before.messages_by_user)
    if event.type is EventType.CHAT_MESSAGE:
        messages_by_user[event.actor.user_id] = messages_by_user.get(event.actor.user_id, 0) + 1

    # With a learned fusion, the hand-tuned score on rule evidence still counts and the higher of the two wins:
    # a pattern a rule author wrote down is never outvoted by a model trained on other phrasings.
    if detectors.fusion is None:
        local_risk = pair.factor * stage_score(evidence)
    else:
        local_risk = pair.factor * stage_score(rule_evidence)
        fusion = detectors.fusion
        fused = fusion.local_risk(FusionInputs(evidence, pair, sum(hit_counts.values()), before.events + 1))
        # Capped by the pair factor, as the hand-tuned score is: the age policy bounds how much any evidence can
        # weigh between near-peers (a 14-year-old trading pets with a 10-year-old is not an adult doing it).
        local_risk = max(local_risk, min(fused, pair.factor))
        model_info.append({"id": fusion.name, "version": fusion.version, "sha256": fusion.sha256})
    # Rounded as the subject profile stores it, so a re-score from the profile gives exactly the same risk.
    peak_local = round(max(before.peak_local, local_risk), 6)

    profile_ops = _profile_ops(event, pair, before, peak_local, ts, snapshot.profiles)
    subject_bonus, subject_reasons, swept = _subject_scoring(
        event, pair, snapshot.profiles, profile_ops, detectors, conv_id
    )
    risk = combine(peak_local, subject_bonus, pair.factor)

    state = ConversationState(
        conversation_id=conv_id,
        channel_kind=_CHANNEL_NAME[channel_kind] if channel_kind is not None else before.channel_kind,
        first_ts=before.first_ts if snapshot.conversation is not None else ts,
        last_ts=max(ts, before.last_ts),
        events=before.events + 1,
        messages_by_user=messages_by_user,
        participants=participants,
        revealed_bands=revealed,
        evidence=evidence,
        rule_evidence=rule_evidence,
        stage_marks=stage_marks,
        rule_hits=hit_counts,
        counters=counters,
        peak_local=peak_local,
        peak_risk=max(before.peak_risk, risk),
    )

    case: CaseUpdate | None = None
    actions: list[PlatformAction] = []
    all_reasons = reasons + subject_reasons
    if risk >= detectors.case_threshold and (all_reasons or risk > before.peak_risk + 1e-9):
        age_reason = Reason("age", f"age.pair.{pair.relation}", str(AGE_POLICY_VERSION), event.event_id,
                            f"{pair.detail} (factor {pair.factor:.2f})")
        case = _case_update(conv_id, event, risk, state, pair, parties, (*all_reasons, age_reason), hits)
        actions = _platform_actions(case, hits, event)

    return Decision(
        event_id=event.event_id,
        conversation_id=conv_id,
        ts=event.ts.isoformat(),
        event_type=type_name,
        reasons=tuple(all_reasons),
        shadow_reasons=tuple(shadow),
        stage_evidence=evidence,
        pair=pair,
        local_risk=local_risk,
        subject_bonus=subject_bonus,
        risk=risk,
        case=case,
        swept_cases=swept,
        actions=tuple(actions),
        state=state,
        profile_ops=profile_ops,
        models=tuple(model_info),
        model_scores=model_scores,
    )


def _nearest(evidence: Sequence[str]) -> str:
    return f"; nearest: {evidence[0]!r}" if evidence else ""


def _role(pair: PairAssessment, user_id: str) -> str:
    return "older" if pair.older == user_id else "younger" if pair.younger == user_id else "other"


def _rule_reason(rule: CompiledRule, event: Event, spans: tuple[tuple[int, int], ...], weight: float) -> Reason:
    detail = rule.rule.description if rule.rule.mode == "enforce" else f"[shadow] {rule.rule.description}"
    return Reason("rule", rule.id, str(rule.version), event.event_id, detail, rule.rule.stage.value, weight, spans)


def _merge_participants(current: Mapping[str, ParticipantInfo], event: Event) -> dict[str, ParticipantInfo]:
    merged = dict(current)
    for user in (event.actor, event.target):
        if user is None:
            continue
        info = _participant_info(user.age_band, user.age_verified, user.parent_of)
        merged.pop(user.user_id, None)
        merged[user.user_id] = info  # most recent last
    while len(merged) > MAX_PARTICIPANTS:
        merged.pop(next(iter(merged)))
    return merged


@functools.lru_cache(maxsize=4096)
def _participant_info(band: AgeBand, verification: Verification, parent_of: tuple[str, ...]) -> ParticipantInfo:
    return ParticipantInfo(band.value, verification.value, tuple(parent_of))


def _party(user_id: str, participants: Mapping[str, ParticipantInfo], revealed: Mapping[str, str]) -> Party:
    return _party_of(user_id, participants[user_id], revealed.get(user_id))


@functools.lru_cache(maxsize=65536)
def _party_of(user_id: str, info: ParticipantInfo, revealed_band: str | None) -> Party:
    band = AgeBand(revealed_band or info.band)
    return Party(user_id, band, Verification(info.verification), frozenset(info.parent_of), revealed_band is not None)


def _parties(participants: Mapping[str, ParticipantInfo], revealed: Mapping[str, str]) -> list[Party]:
    return [_party(u, participants, revealed) for u in participants]


def _profile_ops(event: Event, pair: PairAssessment, before: ConversationState, peak_local: float,
                 ts: float, profiles: Mapping[str, SubjectProfile]) -> tuple[ProfileOp, ...]:
    ops: list[ProfileOp] = []
    # Fan-out counts private conversations only: an adult speaking in a public experience chat full of
    # children is normal.
    private = event.channel is None or event.channel.kind in PRIVATE_CHANNELS
    if private and pair.relation in RISKY_RELATIONS and pair.older is not None and pair.younger is not None:
        younger_band = _band_of(pair.younger, event, before)
        first_ts = before.first_ts if before.events else ts
        entry = ContactEntry(first_ts, round(peak_local, 6), pair.factor, younger_band)
        known = profiles.get(pair.older)
        current = known.contacts.get(event.conversation_id) if known is not None else None
        if current is None or current.encode() != entry.encode():  # unchanged entries are not rewritten
            ops.append(ProfileOp(pair.older, "contact", event.conversation_id, entry.encode()))
    if event.target is not None and event.type is EventType.USER_REPORT:
        ops.append(ProfileOp(event.target.user_id, "reporter", event.actor.user_id))
    if event.target is not None and event.type is EventType.BLOCK:
        ops.append(ProfileOp(event.target.user_id, "blocker", event.actor.user_id))
    return tuple(ops)


def _band_of(user_id: str, event: Event, before: ConversationState) -> str:
    if user_id in before.revealed_bands:
        return before.revealed_bands[user_id]
    for user in (event.actor, event.target):
        if user is not None and user.user_id == user_id:
            return user.age_band.value
    info = before.participants.get(user_id)
    return info.band if info is not None else AgeBand.UNKNOWN.value


def _subject_hits(book: RuleBook, profile: SubjectProfile) -> tuple[CompiledRule, ...]:
    """Enforce-mode subject rules firing on ``profile``, memoised on the profile (immutable) per rule book: an
    adult's profile is consulted on every event of each of their minor conversations."""
    key = ("subject_hits", id(book))
    entry: tuple[RuleBook, tuple[CompiledRule, ...]] | None = profile.derived.get(key)
    if entry is None or entry[0] is not book:  # the book is kept in the entry, so its id cannot be reused
        ctx = SubjectContext(profile)
        entry = (book, tuple(r for r in book.subject_rules
                             if r.rule.mode == "enforce" and subject_rule_matches(r, ctx)))
        profile.derived[key] = entry
    return entry[1]


def _subject_scoring(
    event: Event,
    pair: PairAssessment,
    profiles: Mapping[str, SubjectProfile],
    ops: tuple[ProfileOp, ...],
    detectors: Detectors,
    conv_id: str,
) -> tuple[float, list[Reason], tuple[CaseUpdate, ...]]:
    """Subject-scope rules on the older party's profile. When this event makes a new subject rule fire, every
    other minor conversation of that party is re-scored (the sweep), so the outcome does not depend on which
    conversation happened to be processed last."""
    older = pair.older
    if older is None or pair.relation not in RISKY_RELATIONS or not detectors.rules.subject_rules:
        if not ops:
            return 0.0, [], ()
        touched = sorted({op.user_id for op in ops if op.kind != "contact"})
        swept_others = [
            update
            for user_id in touched
            for update in _sweep_for(user_id, profiles, ops, detectors, exclude=conv_id, event=event)
        ]
        return 0.0, [], tuple(swept_others)
    before_profile = profiles.get(older, SubjectProfile(older))
    after_profile = before_profile.with_ops(ops)
    hits = _subject_hits(detectors.rules, after_profile)
    bonus = 0.0
    reasons: list[Reason] = []
    for rule in hits:
        bonus = add_evidence(bonus, rule.weight)
        reasons.append(Reason("rule", rule.id, str(rule.version), event.event_id,
                              f"{rule.rule.description} (user {older})", rule.rule.stage.value, rule.weight))
    swept = tuple(_sweep_for(older, profiles, ops, detectors, exclude=conv_id, event=event)) if ops else ()
    return bonus, reasons, swept


def _sweep_for(user_id: str, profiles: Mapping[str, SubjectProfile], ops: tuple[ProfileOp, ...],
               detectors: Detectors, *, exclude: str, event: Event) -> list[CaseUpdate]:
    if not any(op.user_id == user_id for op in ops):
        return []  # the profile is unchanged, so no subject rule can newly fire (the common case: skip the rules)
    before_profile = profiles.get(user_id, SubjectProfile(user_id))
    after_profile = before_profile.with_ops(ops)
    new_hits = _subject_hits(detectors.rules, after_profile)
    if not new_hits:
        return []
    old_ids = {r.id for r in _subject_hits(detectors.rules, before_profile)}
    if {r.id for r in new_hits} <= old_ids:
        return []
    return subject_case_updates(after_profile, detectors, event_id=event.event_id, ts=event.ts.isoformat(),
                                exclude=exclude, hits=new_hits)


def subject_case_updates(profile: SubjectProfile, detectors: Detectors, *, event_id: str, ts: str,
                         exclude: str | None = None, hits: Sequence[CompiledRule] | None = None) -> list[CaseUpdate]:
    """Case updates for every minor conversation of a subject whose risk, with the subject rules that fire on
    this profile, reaches the case threshold: ``combine(peak local risk, subject bonus, pair factor)``.

    Workers call it again after their state writes land (``DecisionRunner.reconcile_subjects``) on the freshly
    read profile, so whichever worker writes last sees every conversation's final peak and the final set of
    subject hits: the flagged set and risks then equal a sequential replay's whatever the partition order."""
    hits = _subject_hits(detectors.rules, profile) if hits is None else hits
    if not hits:
        return []
    bonus = 0.0
    for rule in hits:
        bonus = add_evidence(bonus, rule.weight)
    reasons = tuple(
        Reason("rule", r.id, str(r.version), event_id, f"{r.rule.description} (user {profile.user_id})",
               r.rule.stage.value, r.weight)
        for r in hits
    )
    stages = tuple(sorted({r.rule.stage.value for r in hits}))
    updates: list[CaseUpdate] = []
    for conversation_id, entry in sorted(profile.contacts.items()):
        if conversation_id == exclude:
            continue
        risk = combine(entry.peak_local, bonus, entry.pair_factor)
        if risk < detectors.case_threshold:
            continue
        level, score = priority(risk, entry.younger_band, list(stages))
        updates.append(CaseUpdate(conversation_id, event_id, ts, round(risk, 6), level, score, stages,
                                  (profile.user_id,), entry.younger_band, reasons))
    return updates


def _case_update(conv_id: str, event: Event, risk: float, state: ConversationState, pair: PairAssessment,
                 parties: list[Party], reasons: tuple[Reason, ...],
                 hits: list[tuple[CompiledRule, tuple[tuple[int, int], ...]]]) -> CaseUpdate:
    stages = [s for s in state.stage_marks if state.evidence.get(s, 0.0) > 0.0]
    stages.extend(r.stage for r in reasons if r.stage is not None and r.stage not in stages)
    stages.sort(key=lambda s: state.stage_marks[s].ts if s in state.stage_marks else float("inf"))
    minors = [p.band for p in parties if is_minor(p.band)]
    young = youngest(minors) if minors else AgeBand.UNKNOWN
    level, score = priority(risk, young.value, stages)
    subjects = (pair.older,) if pair.older is not None else (event.actor.user_id,)
    escalate = any(RuleAction.ESCALATE in rule.rule.actions for rule, _ in hits)
    return CaseUpdate(conv_id, event.event_id, event.ts.isoformat(), round(risk, 6), level, score, tuple(stages),
                      subjects, young.value, reasons, escalate)


def _platform_actions(case: CaseUpdate, hits: list[tuple[CompiledRule, tuple[tuple[int, int], ...]]],
                      event: Event) -> list[PlatformAction]:
    actions: list[PlatformAction] = []
    for rule, _ in hits:
        if RuleAction.RESTRICT_DM in rule.rule.actions:
            for subject in case.subjects:
                actions.append(PlatformAction("restrict_dm", subject, case.conversation_id, event.event_id, rule.id))
            break
    return actions


__all__ = [
    "CaseUpdate",
    "ClassifierContext",
    "Decision",
    "Detectors",
    "FusionInputs",
    "MessageClassifier",
    "PlatformAction",
    "Reason",
    "RiskFusion",
    "Snapshot",
    "StageScores",
    "case_id_for",
    "decide",
    "forecast_context",
]
