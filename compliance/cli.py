"""``lifeguard export dsa|ncmec|transparency|verify`` and ``lifeguard retention apply|verify``.

Heavy imports stay inside the commands so the CLI starts fast. Every failure is one line on stderr and a
non-zero exit: 2 for bad input or an unusable environment, 1 when a verification finds a problem.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from pipeline.settings import Settings, load_settings

if TYPE_CHECKING:
    from compliance.wording import RuleWording
    from review.store import SqlCaseStore

err = Console(stderr=True, soft_wrap=True)
export_app = typer.Typer(help="Regulator exports: DSA statements of reasons, NCMEC reports, transparency report.",
                         no_args_is_help=True)
retention_app = typer.Typer(help="Retention: purge message text and notes past policy, leaving hashes.",
                            no_args_is_help=True)

FromOption = Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD (UTC, included).")]
ToOption = Annotated[str, typer.Option("--to", help="Last day, YYYY-MM-DD (UTC, included).")]
OutOption = Annotated[Path, typer.Option("--out", help="Directory to write (empty, new, or an earlier export of "
                                                       "the same kind).")]


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _store(settings: Settings) -> SqlCaseStore:
    from review.cli import open_store_or_fail

    return open_store_or_fail(settings)


def _wording(settings: Settings) -> RuleWording:
    from compliance.wording import RuleWording
    from pipeline.rulebook import RulePackError, load_rulebook

    try:
        return RuleWording.from_book(load_rulebook(settings.rules_dir))
    except RulePackError as exc:
        _fail(f"rule packs (needed for the wording of decision facts): {exc}")
        raise  # unreachable


@export_app.command("dsa")
def export_dsa_command(
    from_: FromOption,
    to: ToOption,
    out: OutOption,
    automated: Annotated[bool, typer.Option("--automated/--no-automated", help="Include the pipeline's interim "
                                            "restrict_dm measures (fully automated decisions).")] = True,
) -> None:
    """One statement of reasons per restrictive decision in the period, in batch files of at most 100."""
    from compliance.dsa import export_dsa
    from compliance.errors import ComplianceError
    from compliance.period import parse_period
    from compliance.pseudonyms import export_pseudonyms

    started = time.perf_counter()
    settings = load_settings()
    try:
        period = parse_period(from_, to)
    except ComplianceError as exc:
        _fail(str(exc))
        return
    wording = _wording(settings)
    store = _store(settings)
    try:
        result = export_dsa(store=store, settings=settings, pseudonyms=export_pseudonyms(settings),
                            wording=wording, period=period, out=out, include_automated=automated)
    except ComplianceError as exc:
        _fail(str(exc))
        return
    finally:
        store.close()
    err.print(f"wrote {result.statements} statements of reasons in {result.batches} batch files -> {out} "
              f"(manifest sha256 {result.manifest_sha256[:16]}..., audit seq {result.audit_seq}) in "
              f"{time.perf_counter() - started:.2f} s")


@export_app.command("ncmec")
def export_ncmec_command(
    out: OutOption,
    case: Annotated[str | None, typer.Option("--case", help="One reported case (case-...).")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="First day of reports, YYYY-MM-DD.")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Last day of reports, YYYY-MM-DD.")] = None,
) -> None:
    """CyberTipline-shaped report bundles (Online Enticement of Children for Sexual Acts), one per reported
    person, with thread CSVs and a one-year preservation record. Files only: nothing is sent anywhere."""
    from compliance.errors import ComplianceError
    from compliance.ncmec import export_ncmec
    from compliance.period import parse_period
    from compliance.pseudonyms import export_pseudonyms

    started = time.perf_counter()
    if (case is None) == (from_ is None and to is None):
        _fail("give either --case ID or both --from and --to")
    if case is None and (from_ is None or to is None):
        _fail("--from and --to go together")
    settings = load_settings()
    try:
        period = parse_period(from_, to) if from_ is not None and to is not None else None
    except ComplianceError as exc:
        _fail(str(exc))
        return
    wording = _wording(settings)
    store = _store(settings)
    try:
        result = export_ncmec(store=store, settings=settings, pseudonyms=export_pseudonyms(settings),
                              wording=wording, out=out, case_id=case, period=period)
    except ComplianceError as exc:
        _fail(str(exc))
        return
    finally:
        store.close()
    err.print(f"wrote {result.reports} report bundles covering {result.cases} cases -> {out} (manifest sha256 "
              f"{result.manifest_sha256[:16]}..., audit seq {result.audit_seq}) in "
              f"{time.perf_counter() - started:.2f} s; nothing was submitted")


@export_app.command("transparency")
def export_transparency_command(from_: FromOption, to: ToOption, out: OutOption) -> None:
    """Counts, times to action, reversals and the DSA Art. 15/24 items, as CSV, JSON and PNG charts."""
    from compliance.errors import ComplianceError
    from compliance.period import parse_period
    from compliance.pseudonyms import export_pseudonyms
    from compliance.transparency import export_transparency

    started = time.perf_counter()
    settings = load_settings()
    try:
        period = parse_period(from_, to)
    except ComplianceError as exc:
        _fail(str(exc))
        return
    store = _store(settings)
    try:
        result = export_transparency(store=store, settings=settings, pseudonyms=export_pseudonyms(settings),
                                     period=period, out=out)
    except ComplianceError as exc:
        _fail(str(exc))
        return
    finally:
        store.close()
    err.print(f"wrote the transparency report ({result.cases} cases, {result.decisions} decisions) -> {out} "
              f"(manifest sha256 {result.manifest_sha256[:16]}..., audit seq {result.audit_seq}) in "
              f"{time.perf_counter() - started:.2f} s")


@export_app.command("verify")
def export_verify_command(
    directory: Annotated[Path, typer.Argument(help="An export directory (holding manifest.json).")],
) -> None:
    """Recompute every file's SHA-256 against the manifest. Exit 1 when anything differs."""
    from compliance.manifest import verify_folder

    problems = verify_folder(directory)
    for problem in problems:
        err.print(f"[red]FAIL[/] {problem}")
    if problems:
        raise typer.Exit(1)
    print(f"OK: every file of {directory} matches its manifest")


@retention_app.command("apply")
def retention_apply_command(
    now: Annotated[str | None, typer.Option("--now", help="Purge as of this instant (RFC 3339, or YYYY-MM-DD "
                                            "= midnight UTC); default: the current time.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be purged; change nothing.")] = False,
) -> None:
    """Purge message text and moderator notes of cases past their retention period (per outcome; open cases
    never), leaving SHA-256 tombstones, and record the purge in the audit trail. Running it again is a no-op."""
    from compliance.errors import ComplianceError
    from compliance.period import parse_instant
    from compliance.retention import RetentionPolicy, apply_retention
    from review.store import utc_now

    started = time.perf_counter()
    settings = load_settings()
    try:
        as_of = parse_instant(now) if now is not None else utc_now()
    except ComplianceError as exc:
        _fail(str(exc))
        return
    store = _store(settings)
    try:
        result = apply_retention(store=store, policy=RetentionPolicy.from_settings(settings), now=as_of,
                                 dry_run=dry_run)
    finally:
        store.close()
    verb = "would purge" if dry_run else "purged"
    audit = f", audit seq {result.audit_seq}" if result.audit_seq is not None else ""
    err.print(f"{verb} {result.messages} message texts and {result.notes} notes in {result.conversations} "
              f"conversations ({result.cases} cases) as of {as_of.isoformat()}{audit} in "
              f"{time.perf_counter() - started:.2f} s")


@retention_app.command("verify")
def retention_verify_command() -> None:
    """Check every recorded purge: its audit entry commits to its record, its tombstones hash to the digest the
    record states, and every purged message still carries its tombstone hash. Exit 1 on any problem."""
    from compliance.retention import verify_retention

    store = _store(load_settings())
    try:
        runs, problems = verify_retention(store)
    finally:
        store.close()
    for problem in problems:
        err.print(f"[red]FAIL[/] {problem}")
    if problems:
        raise typer.Exit(1)
    print(f"OK: {runs} retention runs verified")


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
    app.add_typer(retention_app, name="retention")


__all__ = ["export_app", "register", "retention_app"]
