"""DSA statements of reasons (Art. 17, Transparency Database format): one per restrictive decision.

Which decisions restrict, and how (the mapping is data, ``RESTRICTIONS``; README "DSA mapping" explains it):

=================  ==========================================  ===========================  ==================
decision           restriction fields                          ground                       automated_decision
=================  ==========================================  ===========================  ==================
restrict_dm        provision PARTIAL_SUSPENSION (DMs to minors  incompatible (policy code    FULLY
(pipeline)         held pending review)                        of the rule hit)
restricted         provision PARTIAL_SUSPENSION                incompatible (moderator's    PARTIALLY or NOT
banned             account TERMINATED, provision TOTAL_TERM.   policy code)                 (see below)
reported_ncmec     account TERMINATED, provision TOTAL_TERM.   illegal (Dir. 2011/93/EU
                                                               Art. 6, solicitation)
dismissed, warned  no statement: nothing was restricted
=================  ==========================================  ===========================  ==================

automated_detection is "Yes" when the pipeline's detection opened the case, "No" when a user report (a notice)
did. A moderator's decision on an automatically detected case is PARTIALLY automated (the detection chose,
prioritised and pre-scored what the moderator saw, the moderator decided); on a case opened by a notice it is
NOT_AUTOMATED. source_type is SOURCE_VOLUNTARY for own detection and ``settings.dsa_notice_source`` for notices.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from compliance.casefacts import (
    ActionFact,
    AutomatedRestriction,
    CaseFact,
    actions_in,
    automated_restrictions,
    load_cases,
    snapshot,
)
from compliance.errors import StatementInvalidError
from compliance.manifest import ExportFolder, Manifest, covered_head, record_export
from compliance.period import Period
from compliance.privacy import PersonalDataGuard
from compliance.pseudonyms import ExportPseudonyms
from compliance.validator import MAX_BATCH, DsaEnums, dsa_enums, validate_statement
from compliance.wording import (
    EVENT_WORDING,
    TEXT_EVENTS,
    RuleWording,
    policy_family,
    policy_label,
    stages_text,
)
from pipeline.settings import Settings
from review.policy import Action
from review.store import SqlCaseStore

AUTOMATED_ACTION = "restrict_dm"
GROOMING_KEYWORD = "KEYWORD_GROOMING_SEXUAL_ENTICEMENT_MINORS"
AGE_KEYWORD = "KEYWORD_AGE_SPECIFIC_RESTRICTIONS_MINORS"
CATEGORY = "STATEMENT_CATEGORY_PROTECTION_OF_MINORS"
LEGAL_GROUND = ("Directive 2011/93/EU, Article 6 (solicitation of children for sexual purposes), as transposed into "
                "the criminal law of the Member States")
MAX_FACT_RULES = 12
# Policy codes whose conduct is also a crime under Directive 2011/93/EU Art. 6 (solicitation to meet a child, or of
# images from a child): incompatible_content_illegal "Yes". The earlier grooming stages, safety signals and fan-out
# breach the terms of service but are not by themselves an offence.
ALSO_ILLEGAL = frozenset({"CSE-3.1", "CSE-3.2"})


@dataclass(frozen=True, slots=True)
class Restriction:
    visibility: tuple[str, ...] = ()
    provision: str | None = None
    account: str | None = None
    wording: str = ""


RESTRICTIONS: dict[str, Restriction] = {
    AUTOMATED_ACTION: Restriction(provision="DECISION_PROVISION_PARTIAL_SUSPENSION",
                                  wording="the account's direct messages to minors were held pending human review"),
    Action.RESTRICTED.value: Restriction(provision="DECISION_PROVISION_PARTIAL_SUSPENSION",
                                         wording="the account's ability to contact minors was restricted"),
    Action.BANNED.value: Restriction(provision="DECISION_PROVISION_TOTAL_TERMINATION",
                                     account="DECISION_ACCOUNT_TERMINATED", wording="the account was terminated"),
    Action.REPORTED_NCMEC.value: Restriction(provision="DECISION_PROVISION_TOTAL_TERMINATION",
                                             account="DECISION_ACCOUNT_TERMINATED",
                                             wording="the account was terminated and reported to NCMEC's "
                                                     "CyberTipline as apparent online enticement of a child"),
}
RESTRICTIVE_HUMAN = tuple(a for a in RESTRICTIONS if a != AUTOMATED_ACTION)


class StatementOfReasons(BaseModel):
    """One statement as the Transparency Database API takes it (unset optional fields are left out)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    decision_visibility: list[str] | None = None
    decision_monetary: str | None = None
    decision_provision: str | None = None
    decision_account: str | None = None
    account_type: str | None = None
    decision_ground: str
    illegal_content_legal_ground: str | None = None
    illegal_content_explanation: str | None = None
    incompatible_content_ground: str | None = None
    incompatible_content_explanation: str | None = None
    incompatible_content_illegal: Literal["Yes", "No"] | None = None
    content_type: list[str]
    content_type_other: str | None = None
    category: str
    category_specification: list[str] | None = None
    territorial_scope: list[str]
    content_date: str
    application_date: str
    decision_facts: str
    source_type: str
    automated_detection: Literal["Yes", "No"]
    automated_decision: str
    puid: str

    def to_json(self) -> dict[str, object]:
        return self.model_dump(mode="json", exclude_none=True)


@dataclass(frozen=True, slots=True)
class DsaExport:
    manifest: Manifest
    manifest_sha256: str
    audit_seq: int
    statements: int
    batches: int


class StatementBuilder:
    def __init__(self, settings: Settings, pseudonyms: ExportPseudonyms, wording: RuleWording,
                 enums: DsaEnums) -> None:
        self.settings = settings
        self.pseudonyms = pseudonyms
        self.wording = wording
        self.enums = enums

    def _keywords(self, codes: Sequence[str | None]) -> list[str] | None:
        families = {policy_family(c) for c in codes}
        wanted = [k for k, family in ((GROOMING_KEYWORD, "CSE"), (AGE_KEYWORD, "AGE")) if family in families]
        present = [k for k in wanted if k in self.enums.allowed("KEYWORDS")]
        return present or None

    def _content_type(self, case: CaseFact) -> tuple[list[str], str | None]:
        types = set(case.evidence_types)
        other = sorted(EVENT_WORDING[t] for t in types if t in EVENT_WORDING)
        content = ["CONTENT_TYPE_TEXT"] if types & TEXT_EVENTS or not other else []
        if other:
            content.append("CONTENT_TYPE_OTHER")
            return content, "in-game interactions: " + ", ".join(other)
        return content, None

    def _rules_text(self, rule_ids: Sequence[str]) -> str:
        unique = sorted(set(rule_ids))
        shown = [self.wording.describe(r) for r in unique[:MAX_FACT_RULES]]
        more = len(unique) - len(shown)
        return "; ".join(shown) + (f"; and {more} more rules" if more > 0 else "") if shown else "none"

    def _restriction_fields(self, action: str) -> dict[str, object]:
        restriction = RESTRICTIONS[action]
        return {"decision_visibility": list(restriction.visibility) or None,
                "decision_provision": restriction.provision, "decision_account": restriction.account}

    def for_human(self, action: ActionFact, case: CaseFact) -> StatementOfReasons:
        platform = self.settings.platform_name
        code = action.reason_code or ""
        notice = case.opened_by_notice
        detection = (f"A user report (notice) about a conversation with a minor on {platform} opened a review case."
                     if notice else
                     f"Lifeguard's automated detection flagged a conversation between an older account and a minor "
                     f"on {platform} and opened a review case.")
        reviewer = "A senior trust and safety moderator" if case.escalated else "A trust and safety moderator"
        rules = [r.reason_id for r in case.reasons if r.kind == "rule"]
        models = sorted({r.reason_id for r in case.reasons if r.kind == "model"})
        facts = (f"{detection} Signals recorded: {stages_text(case.stages)}. Detection rules matched: "
                 f"{self._rules_text(rules)}."
                 + (f" Classifiers contributing: {', '.join(models)}." if models else "")
                 + f" {reviewer} reviewed the conversation and the detection evidence and decided under policy "
                   f"{policy_label(code)}: {RESTRICTIONS[action.action].wording}.")
        content_type, content_other = self._content_type(case)
        ground: dict[str, object]
        if action.action == Action.REPORTED_NCMEC.value:
            ground = {"decision_ground": "DECISION_GROUND_ILLEGAL_CONTENT",
                      "illegal_content_legal_ground": LEGAL_GROUND,
                      "illegal_content_explanation":
                          "A moderator judged the account's messages to a minor to be apparent solicitation of a "
                          f"child for sexual purposes and reported them to NCMEC. Signals: {stages_text(case.stages)}."}
        else:
            ground = {"decision_ground": "DECISION_GROUND_INCOMPATIBLE_CONTENT",
                      "incompatible_content_ground": f"{platform} terms of service, child-safety policy "
                                                     f"{policy_label(code)}",
                      "incompatible_content_explanation":
                          "The account's conduct towards a minor matches what the policy prohibits; the measure "
                          f"protects the minor. Signals: {stages_text(case.stages)}.",
                      "incompatible_content_illegal": "Yes" if code in ALSO_ILLEGAL else "No"}
        return StatementOfReasons.model_validate({
            **self._restriction_fields(action.action), "account_type": "ACCOUNT_TYPE_PRIVATE", **ground,
            "content_type": content_type, "content_type_other": content_other, "category": CATEGORY,
            "category_specification": self._keywords([code]),
            "territorial_scope": list(self.settings.territorial_scope),
            "content_date": case.opened_at.date().isoformat(), "application_date": action.at.date().isoformat(),
            "decision_facts": facts,
            "source_type": self.settings.dsa_notice_source if notice else "SOURCE_VOLUNTARY",
            "automated_detection": "No" if notice else "Yes",
            "automated_decision": "AUTOMATED_DECISION_NOT_AUTOMATED" if notice else "AUTOMATED_DECISION_PARTIALLY",
            "puid": self.pseudonyms.statement_puid("human", action.case_id, str(action.id)),
        })

    def for_automated(self, restriction: AutomatedRestriction, case: CaseFact) -> StatementOfReasons:
        platform = self.settings.platform_name
        codes = sorted({c for c in (self.wording.policy_of(r) for r in restriction.rule_ids) if c})
        facts = (f"Lifeguard's automated detection found grooming signals in a conversation between an older "
                 f"account and a minor on {platform}. Signals recorded so far: {stages_text(case.stages)}. "
                 f"Detection rules that requested the measure: {self._rules_text(restriction.rule_ids)}. As an "
                 f"interim measure applied without human involvement, "
                 f"{RESTRICTIONS[AUTOMATED_ACTION].wording}; a moderator reviews the case.")
        policies = ", ".join(policy_label(c) for c in codes) or "child-safety policy"
        day = restriction.at.date().isoformat()
        return StatementOfReasons.model_validate({
            **self._restriction_fields(AUTOMATED_ACTION), "account_type": "ACCOUNT_TYPE_PRIVATE",
            "decision_ground": "DECISION_GROUND_INCOMPATIBLE_CONTENT",
            "incompatible_content_ground": f"{platform} terms of service, child-safety policy {policies}",
            "incompatible_content_explanation": "Messages from the account to a minor matched detection rules for "
                                                "grooming; direct messages to minors are held until a moderator "
                                                "has reviewed the case.",
            "incompatible_content_illegal": "Yes" if ALSO_ILLEGAL & set(codes) else "No",
            "content_type": ["CONTENT_TYPE_TEXT"], "category": CATEGORY,
            "category_specification": self._keywords(codes) or self._keywords(["CSE"]),
            "territorial_scope": list(self.settings.territorial_scope), "content_date": day,
            "application_date": day, "decision_facts": facts, "source_type": "SOURCE_VOLUNTARY",
            "automated_detection": "Yes", "automated_decision": "AUTOMATED_DECISION_FULLY",
            "puid": self.pseudonyms.statement_puid("automated", restriction.case_id,
                                                   f"{restriction.event_id}\x1f{restriction.subject}"),
        })


def export_dsa(*, store: SqlCaseStore, settings: Settings, pseudonyms: ExportPseudonyms, wording: RuleWording,
               period: Period, out: Path, include_automated: bool = True) -> DsaExport:
    """Build, validate and privacy-check every statement, then write the batches, the manifest and the audit
    entry. Nothing is written when one statement is invalid or holds personal data."""
    enums = dsa_enums()
    builder = StatementBuilder(settings, pseudonyms, wording, enums)
    with snapshot(store) as session:
        head = covered_head(session.connection())
        human = actions_in(session, period, RESTRICTIVE_HUMAN)
        automated = automated_restrictions(session, period) if include_automated else []
        case_ids = {a.case_id for a in human} | {r.case_id for r in automated}
        cases = load_cases(session, case_ids)
        guard = PersonalDataGuard.for_cases(session, case_ids)
    keyed: list[tuple[str, str, StatementOfReasons]] = []
    for action in human:
        statement = builder.for_human(action, cases[action.case_id])
        keyed.append((action.at.isoformat(), statement.puid, statement))
    for restriction in automated:
        statement = builder.for_automated(restriction, cases[restriction.case_id])
        keyed.append((restriction.at.isoformat(), statement.puid, statement))
    keyed.sort(key=lambda item: (item[0], item[1]))
    statements = [s.to_json() for _, _, s in keyed]
    problems = [f"statement {s['puid']}: {p}" for s in statements for p in validate_statement(s, enums)]
    if problems:
        raise StatementInvalidError("statements break the DSA field rules; nothing was written:\n  "
                                    + "\n  ".join(problems[:20]))
    batches = [statements[i:i + MAX_BATCH] for i in range(0, len(statements), MAX_BATCH)]
    bodies = [(f"statements-{n:04d}.json", {"statements": batch}) for n, batch in enumerate(batches, start=1)]
    guard.check([(name, json.dumps(body, ensure_ascii=False)) for name, body in bodies])
    folder = ExportFolder(out, "dsa")
    for name, body in bodies:
        folder.write_json(name, body, rows=len(body["statements"]))
    by_kind = {k: sum(1 for s in statements if s["automated_decision"] == k)
               for k in sorted(enums.allowed("AUTOMATED_DECISIONS"))}
    manifest, digest = folder.finish(
        parameters={**period.to_json(), "include_automated": include_automated,
                    "territorial_scope": list(settings.territorial_scope)},
        platform=settings.platform_name, pseudonym_key_id=pseudonyms.key_id, head=head,
        row_counts={"statements": len(statements), "batches": len(batches), **by_kind})
    seq = record_export(store, manifest, digest)
    return DsaExport(manifest, digest, seq, len(statements), len(batches))


__all__ = ["RESTRICTIONS", "DsaExport", "StatementBuilder", "StatementOfReasons", "export_dsa"]
