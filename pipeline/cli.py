"""The ``lifeguard`` command. Each sub-command builds its settings once and hands them down."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.decision import Detectors
from pipeline.detectors import load_detectors
from pipeline.replay import ReplayInputError, replay
from pipeline.rulebook import RulePackError
from pipeline.runner import freeze_startup_heap
from pipeline.settings import load_settings

app = typer.Typer(help="Lifeguard: early grooming detection for game platforms.", no_args_is_help=True,
                  add_completion=False)
rules_app = typer.Typer(help="Rule packs: validate and run golden cases.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")

err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def build_detectors(rules_dir: Path | None, *, with_models: bool = True) -> Detectors:
    from models.manifest import ModelArtifactError

    try:
        return load_detectors(load_settings(rules_dir=rules_dir), with_models=with_models)
    except RulePackError as exc:
        fail(f"rule packs: {exc}")
    except ModelArtifactError as exc:
        fail(f"models: {exc}")
    raise AssertionError("unreachable: fail() exits")


@app.command("replay")
def replay_command(
    events: Annotated[Path, typer.Argument(help="Events JSONL (event-v1, one object per line).")],
    report: Annotated[Path, typer.Option("--report", help="Where to write the JSON report.")],
    rules_dir: Annotated[Path | None, typer.Option("--rules", help="Rule pack folder (default: rules/).")] = None,
    persist: Annotated[bool, typer.Option("--persist", help="Also write cases, decision records and messages to the "
                                          "case store (LIFEGUARD_DATABASE_URL; default: embedded SQLite).")] = False,
    no_models: Annotated[bool, typer.Option("--no-models", help="Rules and age policy only (the baseline).")] = False,
) -> None:
    """Run every event through the decision core with in-memory state and write a report."""
    if not events.is_file():
        fail(f"cannot read {events}: no such file")
    detectors = build_detectors(rules_dir, with_models=not no_models)
    freeze_startup_heap()
    show_progress = sys.stderr.isatty()
    sink = None
    if persist:
        from review.cli import open_store_or_fail

        sink = open_store_or_fail(load_settings(rules_dir=rules_dir))
    try:
        if show_progress:
            total = _count_lines(events)
            with Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=err) as progress:
                task = progress.add_task("replay", total=total)
                result = replay(events, detectors, sink=sink, on_progress=lambda n: progress.advance(task, n))
        else:
            result = replay(events, detectors, sink=sink)
    except ReplayInputError as exc:
        fail(str(exc))
        return
    finally:
        if sink is not None:
            sink.close()
    try:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result.report(), indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {report}: {exc.strerror or exc}")
    err.print(
        f"replayed {result.events} events ({len(result.invalid)} invalid lines) in {result.timing['seconds']} s "
        f"= {result.timing['events_per_second']:.0f} events/s; {len(result.cases)} cases -> {report}"
        + ("; cases, decision records and messages persisted to the case store" if persist else "")
    )


@app.command("synth")
def synth_command(
    out: Annotated[Path, typer.Option("--out", help="Events JSONL to write.")],
    seed: Annotated[int, typer.Option("--seed")] = 1,
    conversations: Annotated[int, typer.Option("--conversations", min=1)] = 200,
    bank: Annotated[str, typer.Option("--bank", help="Phrase bank: train or holdout.")] = "train",
    grooming_share: Annotated[float, typer.Option("--grooming-share", min=0.0, max=1.0)] = 0.3,
    malformed: Annotated[int, typer.Option("--malformed", min=0, help="Malformed records to mix in.")] = 0,
    labels: Annotated[Path | None, typer.Option("--labels", help="Labels JSON (default: OUT.labels.json).")] = None,
) -> None:
    """Generate labelled synthetic conversations (non-explicit) for tests, demo, training and evaluation."""
    from pipeline.synth import generate, write_jsonl

    if bank not in ("train", "holdout"):
        fail("--bank must be 'train' or 'holdout'")
    result = generate(seed=seed, conversations=conversations, bank=bank,  # type: ignore[arg-type]
                      grooming_share=grooming_share, malformed=malformed)
    write_jsonl(result, out, labels)
    grooming = sum(1 for c in result.labels["conversations"].values() if c["label"] == "grooming")
    err.print(f"wrote {len(result.events)} events in {conversations} conversations ({grooming} grooming), "
              f"{len(result.malformed)} malformed records -> {out}")


@rules_app.command("check")
def rules_check(
    rules_dir: Annotated[Path | None, typer.Option("--rules", help="Rule pack folder (default: rules/).")] = None,
) -> None:
    """Validate the rule packs and run every rule's golden cases."""
    from pipeline.golden import run_golden

    detectors = build_detectors(rules_dir)
    count, failures = run_golden(detectors.rules, detectors)
    for failure in failures:
        err.print(f"[red]FAIL[/] {failure}")
    rules = detectors.rules.rules
    shadow = sum(1 for r in rules if r.rule.mode == "shadow")
    err.print(f"{len(rules)} rules ({shadow} shadow), {count} golden cases, {len(failures)} failures")
    if failures:
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover - console entry point
    app()


# --- sub-command registration (each package owns its commands; register them here) ---
from pipeline.streaming.cli import register as _register_streaming  # noqa: E402  (run, produce, cases, demo, stack)

_register_streaming(app)
from audit.cli import register as _register_audit  # noqa: E402  (audit verify, export, public-key, checkpoint)
from review.cli import register as _register_review  # noqa: E402  (db upgrade, token, serve)

_register_review(app)
_register_audit(app)
from models.cli import register as _register_models  # noqa: E402  (train, eval)

_register_models(app)
from compliance.cli import register as _register_compliance  # noqa: E402  (export dsa|ncmec|transparency, retention)

_register_compliance(app)
