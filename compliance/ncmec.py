"""NCMEC CyberTipline report bundles for Online Enticement of Children for Sexual Acts. Files only: Lifeguard
never submits anything; a person files the report (web form or the CyberTipline API) from the bundle.

One bundle per reported person (a subject of a case decided ``reported_ncmec``)::

    <subject-ref>/report.json         the report, with the CyberTipline API's element names (camelCase)
    <subject-ref>/threads/<case>.csv  each conversation: time, event id and type, sender id and age band,
                                      recipient id, text (or its tombstone hash once purged)
    <subject-ref>/preservation.json   what is preserved, from when, until when (one year after the report)

This is the one export that carries raw platform user ids and message text: the report must identify the
reported person and the child, and the law (18 U.S.C. 2258A) requires it. Folder names are keyed pseudonyms so
a directory listing reveals nobody.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from sqlalchemy.orm import Session

from compliance.casefacts import (
    ActionFact,
    CaseFact,
    MessageFact,
    actions_in,
    case_history,
    load_cases,
    messages_of,
    snapshot,
)
from compliance.errors import ReportCaseError
from compliance.manifest import ExportFolder, Manifest, covered_head, record_export
from compliance.period import Period
from compliance.pseudonyms import ExportPseudonyms
from compliance.wording import RuleWording, stages_text
from pipeline.settings import Settings
from review.policy import Action
from review.store import SqlCaseStore

INCIDENT_TYPE = "Online Enticement of Children for Sexual Acts"
PRESERVATION_BASIS = ("18 U.S.C. 2258A(h) as amended by the REPORT Act (2024): the contents of a CyberTipline "
                      "report are preserved for one year after the report is made")
IMAGE_SOLICITATION = "CSE-3.2"  # the policy code of picture requests: the report's csamSolicitation annotation
MINOR_BANDS = frozenset({"under_9", "9_12", "13_15", "16_17"})
THREAD_COLUMNS = ("timestamp", "event_id", "event_type", "sender_id", "sender_age_band", "recipient_id", "text",
                  "text_sha256", "text_purged", "amount", "currency")


def preservation_expiry(reported_at: datetime) -> datetime:
    """One calendar year after the report (29 February reports expire on 1 March)."""
    moment = reported_at.astimezone(UTC)
    try:
        return moment.replace(year=moment.year + 1)
    except ValueError:
        return datetime.combine(date(moment.year + 1, 3, 1), time(0), tzinfo=UTC)


class _Tip(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)


class ReportAnnotations(_Tip):
    minor_to_minor_interaction: bool
    csam_solicitation: bool


class IncidentSummary(_Tip):
    incident_type: str = INCIDENT_TYPE
    platform: str
    escalate_to_high_priority: str | None = None  # text only when escalating
    report_annotations: ReportAnnotations
    incident_date_time: str
    incident_date_time_description: str


class ChatImIncident(_Tip):
    chat_client: str
    chat_room_name: str
    content: str
    additional_info: str


class InternetDetails(_Tip):
    chat_im_incident: ChatImIncident


class Email(_Tip):
    value: str
    type: str = "Business"


class ReportingPerson(_Tip):
    first_name: str
    email: list[Email]


class Reporter(_Tip):
    reporting_person: ReportingPerson
    company_template: str


class AccountPermanentlyDisabled(_Tip):
    value: bool
    disabled_date: str


class PersonOrUserReported(_Tip):
    esp_identifier: str
    esp_service: str
    account_permanently_disabled: AccountPermanentlyDisabled
    additional_info: str


class Victim(_Tip):
    esp_identifier: str
    esp_service: str
    additional_info: str


class CyberTiplineReport(_Tip):
    incident_summary: IncidentSummary
    internet_details: list[InternetDetails]
    reporter: Reporter
    person_or_user_reported: PersonOrUserReported
    victim: list[Victim]
    additional_info: str


class PreservedCase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    case_id: str
    conversation_id: str
    reported_at: str
    preserve_until: str
    decision_audit_seq: int | None
    thread_file: str
    thread_sha256: str
    messages: int
    purged_messages: int


class PreservationRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    legal_basis: str = PRESERVATION_BASIS
    subject_esp_identifier: str
    reported_at: str
    preserve_until: str
    cases: list[PreservedCase]
    held_by: str
    retention: str


@dataclass(frozen=True, slots=True)
class Reported:
    action: ActionFact
    case: CaseFact
    messages: tuple[MessageFact, ...]


@dataclass(frozen=True, slots=True)
class NcmecExport:
    manifest: Manifest
    manifest_sha256: str
    audit_seq: int
    reports: int
    cases: int


def thread_csv(messages: Sequence[MessageFact]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(THREAD_COLUMNS)
    for m in messages:
        writer.writerow([m.ts.astimezone(UTC).isoformat(), m.event_id, m.event_type, m.sender_id, m.sender_band,
                         m.target_id or "", m.text if m.text is not None else "", m.text_sha256 or "",
                         "yes" if m.purged else "no", "" if m.amount is None else m.amount, m.currency or ""])
    return buffer.getvalue()


def _escalation(items: Sequence[Reported]) -> str | None:
    reasons: list[str] = []
    if any("meeting_request" in r.case.stages for r in items):
        reasons.append("the reported person asked a minor to meet or for pictures")
    if any(r.case.escalated for r in items):
        reasons.append("the case was escalated to senior review as urgent")
    if len({r.case.conversation_id for r in items}) > 1:
        reasons.append("the reported person was in contact with several minors")
    return ("Possible imminent risk to a child: " + "; ".join(reasons) + ".") if reasons else None


def _band_of(user_id: str, items: Sequence[Reported]) -> str | None:
    """The reported person's platform age band, as their own messages carry it."""
    for item in items:
        for m in item.messages:
            if m.sender_id == user_id:
                return m.sender_band
    return None


def _victims(subject: str, items: Sequence[Reported], platform: str) -> list[Victim]:
    bands: dict[str, str] = {}
    for item in items:
        for m in item.messages:
            if m.sender_id != subject and m.sender_band in MINOR_BANDS:
                bands.setdefault(m.sender_id, m.sender_band)
    return [Victim(esp_identifier=user, esp_service=platform,
                   additional_info=f"Platform age band {band} (as the account states or the platform verified).")
            for user, band in sorted(bands.items())]


def build_bundle(subject: str, items: Sequence[Reported], settings: Settings, wording: RuleWording,
                 folder_name: str) -> tuple[CyberTiplineReport, PreservationRecord, list[tuple[str, str, int]]]:
    """The report, the preservation record and the thread files (name, CSV text, rows) for one person."""
    platform = settings.platform_name
    items = sorted(items, key=lambda r: (r.action.at, r.case.case_id))
    reported_at = max(r.action.at for r in items)
    expiry = preservation_expiry(reported_at)
    threads = [(f"{folder_name}/threads/{r.case.case_id}.csv", thread_csv(r.messages), len(r.messages))
               for r in items]
    first = min(items, key=lambda r: (r.case.opened_at, r.case.case_id))
    details = []
    for item, (name, _, rows) in zip(items, threads, strict=True):
        rules = sorted({x.reason_id for x in item.case.reasons if x.kind == "rule"})
        details.append(InternetDetails(chat_im_incident=ChatImIncident(
            chat_client=platform, chat_room_name=item.case.conversation_id,
            content=f"The conversation is attached as {name.split('/', 1)[1]} ({rows} messages, UTF-8 CSV).",
            additional_info=f"Signals recorded: {stages_text(item.case.stages)}. Detection rules matched: "
                            + ("; ".join(wording.describe(r) for r in rules) or "none")
                            + f". Moderator decision {item.action.at.isoformat()} under policy "
                              f"{item.action.reason_code}.")))
    victims = _victims(subject, items, platform)
    report = CyberTiplineReport(
        incident_summary=IncidentSummary(
            platform=platform, escalate_to_high_priority=_escalation(items),
            report_annotations=ReportAnnotations(
                minor_to_minor_interaction=_band_of(subject, items) in MINOR_BANDS,
                csam_solicitation=any(wording.policy_of(x.reason_id) == IMAGE_SOLICITATION
                                      for r in items for x in r.case.reasons if x.kind == "rule")),
            incident_date_time=first.case.opened_at.astimezone(UTC).isoformat(),
            incident_date_time_description="Time of the event that opened the first review case on this person; "
                                           "every message time is in the thread files."),
        internet_details=details,
        reporter=Reporter(
            reporting_person=ReportingPerson(first_name=settings.reporter_name,
                                             email=[Email(value=settings.reporter_email)]),
            company_template=f"Report prepared by {settings.reporter_name} of {platform} with Lifeguard. The "
                             f"reported content is preserved until {expiry.date().isoformat()}."),
        person_or_user_reported=PersonOrUserReported(
            esp_identifier=subject, esp_service=platform,
            account_permanently_disabled=AccountPermanentlyDisabled(value=True,
                                                                    disabled_date=reported_at.isoformat()),
            additional_info=f"Reported after human review of {len(items)} conversation(s) with minors."),
        victim=victims,
        additional_info=f"{len(items)} conversation(s) attached as thread CSV files; text purged under retention "
                        "appears as its SHA-256 only.",
    )
    preserved = PreservationRecord(
        subject_esp_identifier=subject, reported_at=reported_at.isoformat(), preserve_until=expiry.isoformat(),
        cases=[PreservedCase(case_id=r.case.case_id, conversation_id=r.case.conversation_id,
                             reported_at=r.action.at.isoformat(),
                             preserve_until=preservation_expiry(r.action.at).isoformat(),
                             decision_audit_seq=r.action.audit_seq, thread_file=name.split("/", 1)[1],
                             thread_sha256=_sha256(text), messages=rows,
                             purged_messages=sum(1 for m in r.messages if m.purged))
               for r, (name, text, rows) in zip(items, threads, strict=True)],
        held_by=f"{settings.reporter_name}, {platform} ({settings.reporter_email})",
        retention=f"`lifeguard retention apply` keeps reported cases' text until at least "
                  f"{max(settings.retention_reported_days, 365)} days after the report and never before "
                  "preserve_until.",
    )
    return report, preserved, threads


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _selected(session: Session, case_id: str | None, period: Period | None) -> list[Reported]:
    if case_id is not None:
        cases = load_cases(session, [case_id])
        case = cases.get(case_id)
        if case is None:
            raise ReportCaseError(f"no case {case_id}")
        if case.outcome != Action.REPORTED_NCMEC.value:
            state = f"decided {case.outcome!r}" if case.outcome else f"{case.status} (not decided)"
            raise ReportCaseError(f"case {case_id} is {state}, not reported_ncmec; only cases a senior "
                                  "moderator reported are exported for NCMEC")
        history = case_history(session, [case_id]).get(case_id, [])
        actions = [a for a in history if a.action == Action.REPORTED_NCMEC.value][-1:]
    else:
        assert period is not None
        actions = actions_in(session, period, [Action.REPORTED_NCMEC.value])
        cases = load_cases(session, {a.case_id for a in actions})
    transcripts = {conv: tuple(messages_of(session, conv)) for conv in sorted({cases[a.case_id].conversation_id
                                                                               for a in actions})}
    return [Reported(a, cases[a.case_id], transcripts[cases[a.case_id].conversation_id]) for a in actions]


def export_ncmec(*, store: SqlCaseStore, settings: Settings, pseudonyms: ExportPseudonyms, wording: RuleWording,
                 out: Path, case_id: str | None = None, period: Period | None = None) -> NcmecExport:
    if (case_id is None) == (period is None):
        raise ReportCaseError("give either a case id or a period")
    with snapshot(store) as session:
        head = covered_head(session.connection())
        selected = _selected(session, case_id, period)
    by_subject: dict[str, list[Reported]] = {}
    for item in selected:
        if not item.case.subjects:
            raise ReportCaseError(f"case {item.case.case_id} records no reported person (no case subject); "
                                  "it cannot be reported from the store")
        for subject in item.case.subjects:
            by_subject.setdefault(subject, []).append(item)
    folder = ExportFolder(out, "ncmec")
    messages = 0
    for subject in sorted(by_subject, key=pseudonyms.subject_ref):
        name = pseudonyms.subject_ref(subject)
        report, preserved, threads = build_bundle(subject, by_subject[subject], settings, wording, name)
        folder.write_json(f"{name}/report.json", {"report": report.model_dump(mode="json", by_alias=True,
                                                                               exclude_none=True)}, rows=1)
        for path, text, rows in threads:
            folder.write_text(path, text, rows=rows)
            messages += rows
        folder.write_json(f"{name}/preservation.json", {"preservation": preserved.model_dump(mode="json")},
                          rows=len(preserved.cases))
    parameters: dict[str, object] = {"case": case_id} if case_id is not None else dict(period.to_json()
                                                                                      if period else {})
    manifest, digest = folder.finish(
        parameters={**parameters, "incident_type": INCIDENT_TYPE}, platform=settings.platform_name,
        pseudonym_key_id=pseudonyms.key_id, head=head,
        row_counts={"reports": len(by_subject), "cases": len({i.case.case_id for i in selected}),
                    "thread_messages": messages})
    seq = record_export(store, manifest, digest)
    return NcmecExport(manifest, digest, seq, len(by_subject), len({i.case.case_id for i in selected}))


__all__ = ["INCIDENT_TYPE", "CyberTiplineReport", "NcmecExport", "PreservationRecord", "build_bundle",
           "export_ncmec", "preservation_expiry", "thread_csv"]
