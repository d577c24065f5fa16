"""The transparency report: counts, times to action, reversals and the DSA Art. 15/24 items, for one period.

What is counted (README "Transparency report" has the long form):

- cases: opened in the period (by the time of the opening event), by detection source: ``automated`` (the
  pipeline's rules or classifiers opened it), ``user_report`` (a user's report opened it), ``human`` (a moderator
  opened it: there is no such path in Lifeguard, so always 0);
- decisions: moderator decisions recorded in the period, by action, policy code, DSA category and detection
  source; escalations separately; automated decisions are the pipeline's interim ``restrict_dm`` measures;
- time to action: a decision's ``waited_seconds`` (from the case entering, or re-entering, the queue to the
  decision); median and p90 by nearest rank;
- reversals: ``reopened`` = the pipeline reopened a dismissed or warned case in the period (new risk or stage),
  split by the outcome it reopened; ``overturned`` = a restrictive decision in the period on a case whose
  earlier decision was a dismissal or warning. Appeals by users (Art. 20 complaints) are not tracked.

Only enumerations, counts and durations leave: no ids, no text. The personal-data guard checks the rendered
JSON and CSV anyway.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compliance.casefacts import (
    DECISIONS,
    ActionFact,
    CaseFact,
    actions_in,
    automated_restrictions,
    case_history,
    load_cases,
    reopenings,
    snapshot,
)
from compliance.dsa import CATEGORY, RESTRICTIVE_HUMAN
from compliance.manifest import ExportFolder, Manifest, covered_head, json_bytes, record_export
from compliance.period import Period
from compliance.privacy import PersonalDataGuard
from compliance.pseudonyms import ExportPseudonyms
from compliance.wording import STAGE_ORDER, policy_family
from pipeline.settings import Settings
from review.policy import Action
from review.store import SqlCaseStore

NOT_TRACKED = "not tracked"
NOT_APPLICABLE = "not applicable"
SOURCES = ("automated", "user_report", "human")
ACTIONS = (Action.DISMISSED.value, Action.WARNED.value, Action.RESTRICTED.value, Action.BANNED.value,
           Action.REPORTED_NCMEC.value)
LENIENT = frozenset({Action.DISMISSED.value, Action.WARNED.value})
KEYWORD_OF_FAMILY = {"CSE": "KEYWORD_GROOMING_SEXUAL_ENTICEMENT_MINORS",
                     "AGE": "KEYWORD_AGE_SPECIFIC_RESTRICTIONS_MINORS", "NV": "no_violation"}


@dataclass(frozen=True, slots=True)
class TransparencyExport:
    manifest: Manifest
    manifest_sha256: str
    audit_seq: int
    cases: int
    decisions: int


def _source(case: CaseFact) -> str:
    return "user_report" if case.opened_by_notice else "automated"


def nearest_rank(values: Sequence[float], share: float) -> float | None:
    """The smallest value with at least ``share`` of the values at or below it (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(share * len(ordered))) - 1]


def _durations(values: Iterable[float | None]) -> dict[str, Any]:
    seconds = [v for v in values if v is not None]
    median = nearest_rank(seconds, 0.5)
    p90 = nearest_rank(seconds, 0.9)
    return {"decisions": len(seconds), "median_seconds": None if median is None else round(median, 1),
            "p90_seconds": None if p90 is None else round(p90, 1)}


def _counts(keys: Iterable[str], order: Sequence[str] = ()) -> dict[str, int]:
    counted = Counter(keys)
    out = {k: counted.get(k, 0) for k in order}
    out.update({k: v for k, v in sorted(counted.items()) if k not in out})
    return out


def build_report(*, cases: Mapping[str, CaseFact], period: Period, decisions: Sequence[ActionFact],
                 escalations: Sequence[ActionFact], automated: int, history: Mapping[str, Sequence[ActionFact]],
                 reopened: Sequence[tuple[str, str | None]], settings: Settings) -> dict[str, Any]:
    """The report as one JSON-ready mapping (pure: everything comes in as arguments)."""
    opened = [c for c in cases.values() if period.contains(c.opened_at)]
    decided = [(d, cases[d.case_id]) for d in decisions]
    restrictive = [(d, c) for d, c in decided if d.action in RESTRICTIVE_HUMAN]
    notice_decisions = [d for d, c in decided if c.opened_by_notice]
    overturned: list[str] = []
    for d, _ in restrictive:
        earlier = [h for h in history.get(d.case_id, []) if (h.at, h.id) < (d.at, d.id)]
        if earlier and earlier[-1].action in LENIENT:
            overturned.append(f"{earlier[-1].action}->{d.action}")
    automated_cases = [c for d, c in decided if not c.opened_by_notice]
    dismissed_automated = sum(1 for d, c in decided if not c.opened_by_notice and d.action == Action.DISMISSED.value)
    by_category: Counter[str] = Counter()
    for d, _ in decided:
        family = policy_family(d.reason_code)
        by_category[KEYWORD_OF_FAMILY.get(family or "", "other")] += 1
    statements = len(restrictive) + automated
    counts: dict[str, Any] = {
        "cases_opened": {
            "total": len(opened),
            "by_detection_source": _counts((_source(c) for c in opened), SOURCES),
            "by_stage": _counts((s for c in opened for s in c.stages), STAGE_ORDER),
            "by_youngest_band": _counts(c.youngest_band for c in opened),
            "by_priority": _counts(str(c.priority) for c in opened),
            "escalated": sum(1 for c in opened if c.escalated),
        },
        "decisions": {
            "total": len(decided),
            "by_action": _counts((d.action for d, _ in decided), ACTIONS),
            "by_reason_code": _counts(d.reason_code or "none" for d, _ in decided),
            "by_category": {CATEGORY: dict(sorted(by_category.items()))},
            "by_detection_source_and_action": {
                source: _counts((d.action for d, c in decided if _source(c) == source), ACTIONS)
                for source in SOURCES},
            "escalations": len(escalations),
        },
        "automated_vs_human": {
            "automated_decisions": automated,
            "human_decisions": len(decided),
            "note": "automated decisions are the pipeline's interim restrict_dm measures (first per case and "
                    "account); every final decision is a moderator's",
        },
    }
    time_to_action = {
        "definition": "seconds from a case entering (or re-entering) the review queue to the moderator's decision; "
                      "median and p90 by nearest rank",
        "all_decisions": _durations(d.waited_seconds for d, _ in decided),
        "restrictive_decisions": _durations(d.waited_seconds for d, _ in restrictive),
        "by_priority": {str(p): _durations(d.waited_seconds for d, c in decided if c.priority == p)
                        for p in sorted({c.priority for _, c in decided})},
        "by_detection_source": {s: _durations(d.waited_seconds for d, c in decided if _source(c) == s)
                                for s in SOURCES},
        "automated_decisions": "applied when the triggering event is processed (no queue)",
    }
    reversals = {
        "definition": "reopened: the pipeline reopened a dismissed or warned case in the period because risk rose "
                      "or a new grooming stage appeared; overturned: a restrictive decision in the period on a "
                      "case whose previous decision was a dismissal or warning",
        "reopened": {"total": len(reopened),
                     "after_dismissal": sum(1 for _, prior in reopened if prior == Action.DISMISSED.value),
                     "after_warning": sum(1 for _, prior in reopened if prior == Action.WARNED.value)},
        "overturned": {"total": len(overturned), "by_change": _counts(overturned)},
        "appeals": NOT_TRACKED,
    }
    notice_median = _durations(d.waited_seconds for d in notice_decisions)["median_seconds"]
    error_rate = (round(dismissed_automated / len(automated_cases), 4) if automated_cases else None)
    items = [
        _item("15(1)(a)", "orders from Member State authorities (Art. 9 and 10), by type, and median time to act",
              NOT_TRACKED, "Lifeguard has no intake for authority orders"),
        _item("15(1)(b)", "notices submitted under Art. 16 that opened a review case",
              counts["cases_opened"]["by_detection_source"]["user_report"],
              "user reports about child safety; reports that only added to an existing case are not counted "
              "separately"),
        _item("15(1)(b)", "notices by type of alleged illegal content", {CATEGORY: counts["cases_opened"]
              ["by_detection_source"]["user_report"]}, "every report Lifeguard handles concerns protection of minors"),
        _item("15(1)(b)", "notices submitted by trusted flaggers", NOT_TRACKED,
              "no trusted-flagger intake is wired to Lifeguard"),
        _item("15(1)(b)", "actions taken on notices", _counts((d.action for d in notice_decisions), ACTIONS), None),
        _item("15(1)(b)", "notices processed by automated means", 0,
              "every notice goes to human review; automation only prioritises the queue"),
        _item("15(1)(b)", "median time to take action on notices (seconds)",
              notice_median if notice_median is not None else NOT_APPLICABLE,
              None if notice_median is not None else "no decision on a notice in the period"),
        _item("15(1)(c)", "own-initiative measures, by type of restriction",
              {**_counts((d.action for d, c in restrictive if not c.opened_by_notice), RESTRICTIVE_HUMAN),
               "restrict_dm (automated interim)": automated}, None),
        _item("15(1)(c)", "own-initiative measures, by category", {CATEGORY: len(
            [d for d, c in restrictive if not c.opened_by_notice]) + automated}, None),
        _item("15(1)(c)", "use of automated tools in own-initiative moderation",
              "rule packs (regular expressions over normalised text, platform signals, age policy) and text "
              "classifiers score conversations; cases above the threshold are queued for human review; rules "
              "marked restrict_dm hold the account's DMs to minors until review", None),
        _item("15(1)(c)", "training and assistance given to moderators", NOT_TRACKED, None),
        _item("15(1)(d)", "complaints received through the internal complaint-handling system (Art. 20)",
              NOT_TRACKED, "Lifeguard has no user appeal intake; see reversals for internal re-reviews"),
        _item("15(1)(d)", "decisions reversed following a complaint, and median handling time", NOT_TRACKED, None),
        _item("15(1)(e)", "indicator of the accuracy of automated detection: share of automatically detected "
              "cases decided in the period that moderators dismissed", error_rate if error_rate is not None
              else NOT_APPLICABLE, "a false-positive proxy; dismissals include cases with too little evidence"),
        _item("15(1)(e)", "safeguards for automated means",
              "every automated flag is reviewed by a moderator; automated measures are interim; every automated "
              "and human decision is in the hash-chained audit trail", None),
        _item("24(1)(a)", "disputes submitted to out-of-court dispute settlement bodies", NOT_TRACKED, None),
        _item("24(1)(b)", "suspensions imposed under Art. 23 (misuse)", NOT_TRACKED, None),
        _item("24(2)", "average monthly active recipients in the Union", NOT_TRACKED,
              "Lifeguard does not see platform usage figures"),
        _item("24(5)", "statements of reasons for the period (submitted to the Transparency Database)", statements,
              "what `lifeguard export dsa` produces for the same period; submission happens outside Lifeguard"),
    ]
    return {
        "report": "lifeguard-transparency/1",
        "period": period.to_json(),
        "platform": settings.platform_name,
        "territorial_scope": list(settings.territorial_scope),
        "counts": counts,
        "time_to_action": time_to_action,
        "reversals": reversals,
        "dsa_items": items,
    }


def _item(article: str, item: str, value: Any, note: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"article": article, "item": item, "value": value}
    if note is not None:
        out["note"] = note
    return out


def report_csv(report: Mapping[str, Any]) -> tuple[str, int]:
    """Every scalar of counts, time_to_action and reversals as (section, metric, dimension, value) rows."""
    rows: list[tuple[str, str, str, str]] = []

    def walk(section: str, path: list[str], value: Any) -> None:
        if isinstance(value, Mapping):
            for key in sorted(value):
                walk(section, [*path, str(key)], value[key])
        elif not (isinstance(value, str) and path and path[-1] in ("definition", "note")):
            rows.append((section, path[0] if path else "", ".".join(path[1:]), "" if value is None else str(value)))

    for section in ("counts", "time_to_action", "reversals"):
        walk(section, [], report[section])
    for entry in report["dsa_items"]:
        value = entry["value"]
        rendered = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
        rows.append(("dsa_items", f"Art. {entry['article']}", entry["item"], rendered))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("section", "metric", "dimension", "value"))
    writer.writerows(rows)
    return buffer.getvalue(), len(rows)


def _bar_chart(title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]], ylabel: str) -> bytes:
    """A bar chart as PNG bytes, identical for identical input: drawn on an Agg canvas of its own (the process's
    pyplot backend is left alone), in matplotlib's default style, without the Software metadata."""
    import matplotlib
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.style.context("default"), matplotlib.rc_context({"svg.hashsalt": "lifeguard",
                                                                       "font.family": "DejaVu Sans"}):
        figure = Figure(figsize=(7, 4), dpi=100)
        FigureCanvasAgg(figure)
        axes = figure.subplots()
        width = 0.8 / max(1, len(series))
        for index, (name, values) in enumerate(series.items()):
            positions = [i + (index - (len(series) - 1) / 2) * width for i in range(len(labels))]
            axes.bar(positions, values, width=width, label=name)
        axes.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
        axes.set_title(title)
        axes.set_ylabel(ylabel)
        if len(series) > 1:
            axes.legend()
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def charts(report: Mapping[str, Any]) -> dict[str, bytes]:
    counts = report["counts"]
    by_action = counts["decisions"]["by_action"]
    sources = counts["cases_opened"]["by_detection_source"]
    priorities = report["time_to_action"]["by_priority"]
    minutes = {
        "median": [(priorities[p]["median_seconds"] or 0.0) / 60 for p in priorities],
        "p90": [(priorities[p]["p90_seconds"] or 0.0) / 60 for p in priorities],
    }
    return {
        "charts/decisions_by_action.png": _bar_chart("Moderator decisions by action", list(by_action),
                                                     {"decisions": list(by_action.values())}, "decisions"),
        "charts/cases_by_detection_source.png": _bar_chart("Cases opened by detection source", list(sources),
                                                           {"cases": list(sources.values())}, "cases"),
        "charts/time_to_action.png": _bar_chart("Time to action by case priority (1 = most urgent)",
                                                [f"priority {p}" for p in priorities], minutes, "minutes"),
    }


def export_transparency(*, store: SqlCaseStore, settings: Settings, pseudonyms: ExportPseudonyms, period: Period,
                        out: Path) -> TransparencyExport:
    with snapshot(store) as session:
        head = covered_head(session.connection())
        cases = load_cases(session)
        decisions = actions_in(session, period, DECISIONS)
        escalations = actions_in(session, period, [Action.ESCALATED.value])
        automated = automated_restrictions(session, period)
        history = case_history(session, {d.case_id for d in decisions} | {r.case_id for r in reopenings(session,
                                                                                                         period)})
        reopened: list[tuple[str, str | None]] = []
        for reopen in reopenings(session, period):
            before = [h for h in history.get(reopen.case_id, []) if h.at <= reopen.at]
            reopened.append((reopen.case_id, before[-1].action if before else None))
        in_period = {c.case_id for c in cases.values() if period.contains(c.opened_at)}
        guard = PersonalDataGuard.for_cases(session, in_period | {d.case_id for d in decisions})
    report = build_report(cases=cases, period=period, decisions=decisions, escalations=escalations,
                          automated=len(automated), history=history, reopened=reopened, settings=settings)
    body = json_bytes(report)
    table, rows = report_csv(report)
    guard.check([("transparency.json", body.decode()), ("transparency.csv", table)])
    folder = ExportFolder(out, "transparency")
    folder.write_bytes("transparency.json", body, rows=None)
    folder.write_text("transparency.csv", table, rows=rows)
    for name, png in charts(report).items():
        folder.write_bytes(name, png)
    manifest, digest = folder.finish(
        parameters=period.to_json(), platform=settings.platform_name, pseudonym_key_id=pseudonyms.key_id,
        head=head, row_counts={"cases_opened": report["counts"]["cases_opened"]["total"],
                               "decisions": len(decisions), "csv_rows": rows})
    seq = record_export(store, manifest, digest)
    return TransparencyExport(manifest, digest, seq, report["counts"]["cases_opened"]["total"], len(decisions))


__all__ = ["TransparencyExport", "build_report", "charts", "export_transparency", "nearest_rank", "report_csv"]
