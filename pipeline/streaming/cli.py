"""Streaming commands: ``run``, ``produce``, ``cases``, ``demo`` and ``stack up|down|status``.

Registered on the main ``lifeguard`` app by ``register``. Each command builds its settings once, fills in the
embedded services for whatever is not configured, and hands both down.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.settings import Settings, load_settings

err = Console(stderr=True)
log = logging.getLogger("pipeline.streaming")
T = TypeVar("T")

EXIT_DEPENDENCY = 3


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _services(settings: Settings) -> Settings:
    from pipeline.streaming.embedded import EmbeddedServiceError, with_services

    try:
        return with_services(settings)
    except EmbeddedServiceError as exc:
        _fail(str(exc))
        raise  # unreachable


def retry_dependency(what: str, settings: Settings, action: Callable[[], T]) -> T:
    """Start-up needs the services too: retry ``action`` with backoff for ``dependency_retry_seconds``."""
    from pipeline.streaming.faults import Backoff, dependency_of

    backoff = Backoff()
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            return action()
        except Exception as exc:
            dependency = dependency_of(exc)
            waited = time.monotonic() - started
            if dependency is None:
                raise
            if waited >= settings.dependency_retry_seconds:
                log.error(f"{what}: {dependency} still unavailable; giving up",
                          extra={"ctx": {"dependency": dependency, "error": str(exc)}})
                raise typer.Exit(EXIT_DEPENDENCY) from exc
            delay = min(backoff.delay(attempt), settings.dependency_retry_seconds - waited)
            attempt += 1
            log.warning(f"{what}: {dependency} unavailable, retrying",
                        extra={"ctx": {"dependency": dependency, "attempt": attempt, "retry_in_s": round(delay, 2),
                                       "error": str(exc)}})
            time.sleep(delay)


def run_command(
    metrics_port: Annotated[int | None, typer.Option("--metrics-port",
                                                     help="Serve /metrics, /healthz, /readyz here.")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Embedded stack and SQLite files.")] = None,
) -> None:
    """Consume the events topic in the consumer group and decide every event.

    SIGTERM or Ctrl-C finishes the current batch, commits and exits 0. With LIFEGUARD_KAFKA_BOOTSTRAP or
    LIFEGUARD_REDIS_URL unset, the embedded broker / Redis start (see `lifeguard stack`)."""
    from pipeline.detectors import load_detectors
    from pipeline.streaming.faults import DependencyRetryExhaustedError
    from pipeline.streaming.kafka_clients import ensure_topics
    from pipeline.streaming.logs import configure_logging
    from pipeline.streaming.metrics import MetricsServer, WorkerMetrics
    from pipeline.streaming.worker import build_worker

    configure_logging()
    settings = _services(load_settings(metrics_port=metrics_port, data_dir=data_dir))
    detectors = load_detectors(settings)  # a broken rule pack or model is a bug to fix, not an outage to wait out
    metrics = WorkerMetrics()
    server = MetricsServer(metrics, "0.0.0.0", settings.metrics_port).start() if settings.metrics_port else None
    retry_dependency("topic setup", settings, lambda: ensure_topics(settings))
    worker = retry_dependency("worker start", settings,
                              lambda: build_worker(settings, detectors=detectors, metrics=metrics))

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stop requested; finishing the current batch", extra={"ctx": {"signal": signum}})
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        worker.run()
    except DependencyRetryExhaustedError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(EXIT_DEPENDENCY) from None
    finally:
        if server is not None:
            server.close()


def produce_command(
    events: Annotated[Path, typer.Argument(help="Events JSONL to publish (lines are sent as they are).")],
    topic: Annotated[str | None, typer.Option("--topic", help="Default: LIFEGUARD_TOPIC_EVENTS.")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
) -> None:
    """Publish an events file to Kafka keyed by conversation id (invalid lines too: they get dead-lettered)."""
    from pipeline.streaming.faults import DependencyUnavailableError
    from pipeline.streaming.kafka_clients import ensure_topics
    from pipeline.streaming.logs import configure_logging
    from pipeline.streaming.produce import ProduceResult, produce_file

    if not events.is_file():
        _fail(f"cannot read {events}: no such file")
    configure_logging("WARNING")
    settings = _services(load_settings(data_dir=data_dir))
    try:
        ensure_topics(settings)
        if sys.stderr.isatty():
            with events.open("rb") as handle:
                total = sum(1 for line in handle if line.strip())
            with Progress(TextColumn("produce"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=err) as progress:
                task = progress.add_task("produce", total=total)
                result: ProduceResult = produce_file(events, settings, topic=topic,
                                                     on_progress=lambda n: progress.advance(task, n))
        else:
            result = produce_file(events, settings, topic=topic)
    except DependencyUnavailableError as exc:
        _fail(str(exc), EXIT_DEPENDENCY)
        return
    rate = result.records / result.seconds if result.seconds else 0.0
    err.print(f"published {result.records} records to {topic or settings.topic_events} at "
              f"{settings.kafka_bootstrap} in {result.seconds:.2f} s ({rate:,.0f}/s); "
              f"{result.unkeyed} without a conversation key")


def cases_command(
    fmt: Annotated[str, typer.Option("--format", help="json (the replay report's `cases` shape) or table.")]
    = "table",
    data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
) -> None:
    """Print the cases stored in the case database."""
    from pipeline.streaming.case_store import CaseStoreMissingError, open_case_store

    if fmt not in ("json", "table"):
        _fail("--format must be json or table")
    try:
        cases = open_case_store(load_settings(data_dir=data_dir)).cases_report()
    except CaseStoreMissingError as exc:
        _fail(str(exc))
        return
    if fmt == "json":
        sys.stdout.write(json.dumps(cases, indent=2, ensure_ascii=False) + "\n")
    else:
        Console().print(cases_table(cases, title=f"{len(cases)} cases"))


def cases_table(cases: list[dict[str, Any]], *, title: str, limit: int | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("conversation", no_wrap=True)
    table.add_column("risk", justify="right")
    table.add_column("priority", justify="center")
    table.add_column("stages")
    table.add_column("top reasons (rule ids)")
    for case in rank_cases(cases)[:limit]:
        table.add_row(case["conversation_id"], f"{case['risk']:.2f}", f"P{case['priority']}",
                      ", ".join(case["stages"]), "\n".join(top_reason_ids(case)))
    return table


def rank_cases(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(cases, key=lambda c: (c["priority"], -c["risk"], c["conversation_id"]))


def top_reason_ids(case: dict[str, Any], n: int = 3) -> list[str]:
    """Distinct rule/model ids in the order they fired; the age-pairing reason only when nothing else."""
    ids = list(dict.fromkeys(r["id"] for r in case["reasons"] if r["kind"] != "age"))
    return ids[:n] or [r["id"] for r in case["reasons"][:1]]


def demo_command(
    conversations: Annotated[int, typer.Option("--conversations", min=1)] = 300,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    malformed: Annotated[int, typer.Option("--malformed", min=0)] = 8,
    serve: Annotated[bool | None, typer.Option("--serve/--no-serve",
                                               help="Keep the review API up afterwards (default: on a terminal)")]
    = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
) -> None:
    """Start the embedded stack, stream synthetic conversations through a worker, show what was flagged."""
    from pipeline.streaming.demo import run_demo
    from pipeline.streaming.logs import configure_logging

    configure_logging("ERROR")  # the demo reports dead letters and retries itself
    settings = load_settings(data_dir=data_dir)
    code = run_demo(settings, conversations=conversations, seed=seed, malformed=malformed,
                    serve=sys.stdout.isatty() if serve is None else serve)
    raise typer.Exit(code)


stack_app = typer.Typer(help="The embedded stack (broker + Redis) used when no services are configured.",
                        no_args_is_help=True)


@stack_app.command("up")
def stack_up(data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None) -> None:
    """Start the embedded broker and Redis in the background (if not running) and create the topics."""
    from pipeline.streaming.kafka_clients import ensure_topics
    from pipeline.streaming.logs import configure_logging

    configure_logging("WARNING")
    embedded = load_settings(data_dir=data_dir).model_copy(update={"kafka_bootstrap": None, "redis_url": None})
    settings = _services(embedded)
    ensure_topics(settings)
    err.print(f"embedded broker  LIFEGUARD_KAFKA_BOOTSTRAP={settings.kafka_bootstrap}\n"
              f"embedded redis   LIFEGUARD_REDIS_URL={settings.redis_url}\n"
              "the embedded broker keeps everything in memory: a restart loses topics, records and offsets")


@stack_app.command("down")
def stack_down(data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None) -> None:
    """Stop the embedded broker and Redis (their data is in memory and is lost)."""
    from pipeline.streaming.embedded import EmbeddedStack

    stopped = EmbeddedStack(load_settings(data_dir=data_dir).data_dir).stop()
    err.print("stopped " + ", ".join(stopped) if stopped else "nothing was running")


@stack_app.command("status")
def stack_status(data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None) -> None:
    from pipeline.streaming.embedded import EmbeddedStack

    for name, record in EmbeddedStack(load_settings(data_dir=data_dir).data_dir).status().items():
        err.print(f"{name:6} " + (f"pid {record.pid} on {record.address}" if record else "not running"))


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command("produce")(produce_command)
    app.command("cases")(cases_command)
    app.command("demo")(demo_command)
    app.add_typer(stack_app, name="stack")
