"""``lifeguard demo``: the whole streaming path on a laptop, in well under a minute.

A private embedded stack under ``data_dir/demo`` (fresh each run, stopped at the end) → synthetic labelled
conversations plus malformed records → ``lifeguard produce`` → one ``lifeguard run`` worker until every
record is committed → the stored cases (SQLite), the dead letters, and a check that the cases equal
``lifeguard replay`` of the same file. The review API is started on the demo database when it is available.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import threading
import time

from kafka import TopicPartition
from rich.console import Console

from pipeline.settings import Settings
from pipeline.streaming.embedded import EmbeddedStack, free_port, port_open, with_services


def run_demo(settings: Settings, *, conversations: int, seed: int, malformed: int, serve: bool) -> int:
    from pipeline.detectors import load_detectors
    from pipeline.replay import replay
    from pipeline.streaming.cli import cases_table, rank_cases
    from pipeline.streaming.kafka_clients import ensure_topics
    from pipeline.streaming.produce import produce_file
    from pipeline.streaming.worker import Worker, build_worker, committed_all
    from pipeline.synth import generate, write_jsonl

    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # piped or captured: do not squeeze the table into 80 columns
    started = time.perf_counter()
    root = (settings.data_dir / "demo").resolve()
    stack = EmbeddedStack(root)
    stack.stop()  # a previous demo interrupted before its clean-up
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    demo = settings.model_copy(update={"data_dir": root, "kafka_bootstrap": None, "redis_url": None,
                                       "database_url": None, "consumer_group": "lifeguard-demo",
                                       "metrics_port": None})
    api: ReviewApi | None = None
    try:
        with console.status("starting the embedded stack (Kafka-compatible broker, Redis, SQLite)"):
            demo = with_services(demo)
            ensure_topics(demo)
        console.print(f"[green]✓[/] embedded stack: broker {demo.kafka_bootstrap}, redis {demo.redis_url}, "
                      f"sqlite {demo.sqlite_path()}")

        api = start_review_api(demo, console)

        events_path = root / "events.jsonl"
        synth = generate(seed=seed, conversations=conversations, bank="train", grooming_share=0.3,
                         malformed=malformed)
        write_jsonl(synth, events_path)
        grooming = {c for c, v in synth.labels["conversations"].items() if v["label"] == "grooming"}
        console.print(f"[green]✓[/] generated {len(synth.events)} events in {conversations} synthetic "
                      f"conversations ({len(grooming)} grooming) + {len(synth.malformed)} malformed records")

        produced = produce_file(events_path, demo)
        console.print(f"[green]✓[/] produced {produced.records} records to {demo.topic_events} "
                      f"({demo.partitions} partitions, key = conversation id) in {produced.seconds:.1f} s")

        targets = {TopicPartition(demo.topic_events, p): end for p, end in produced.end_offsets.items()}
        done = committed_all(targets)
        worker = build_worker(demo)
        with console.status("worker: joining the consumer group") as status:
            def progress(w: Worker) -> bool:
                if w.stats.consumed:
                    status.update(f"worker: {w.stats.consumed}/{produced.records} records, "
                                  f"{w.stats.dead_lettered} dead-lettered")
                return done(w)

            t0 = time.perf_counter()
            worker.run(stop_when=progress)
        stats = worker.stats
        console.print(f"[green]✓[/] worker consumed {stats.consumed} records in {time.perf_counter() - t0:.1f} s "
                      f"(group join included): {stats.decided} decided, {stats.duplicates} duplicates, "
                      f"{stats.dead_lettered} dead-lettered, {stats.actions} platform actions")

        cases = worker.cases.cases_report()
        flagged = {c["conversation_id"] for c in cases}
        console.print()
        console.print(cases_table(cases, title=f"Flagged: {len(cases)} conversations (highest priority first)",
                                  limit=15))
        if len(cases) > 15:
            console.print(f"  … and {len(cases) - 15} more: [bold]lifeguard cases --data-dir {root}[/]")
        if cases:
            top = rank_cases(cases)[0]
            console.print(f"\nWhy {top['conversation_id']} is first (each reason names its rule and version and "
                          "the event that triggered it):")
            for reason in top["reasons"][:8]:
                console.print(f"  {reason['event_id']:>12}  {reason['id']}@{reason['version']}: {reason['detail']}")
        console.print(f"Of {len(grooming)} grooming conversations, {len(flagged & grooming)} were flagged; "
                      f"{len(flagged - grooming)} other conversations were flagged too.")

        console.print(f"\nDead letters: {stats.dead_lettered} records in {demo.topic_deadletter} "
                      f"(of {len(synth.malformed)} malformed produced)")
        for topic, partition, offset, reason in stats.dead_letter_reasons[:10]:
            console.print(f"  {topic}/{partition}@{offset}: {reason[:100]}")

        expected = {c["conversation_id"]: c["risk"] for c in replay(events_path, load_detectors(demo)).cases}
        got = {c["conversation_id"]: c["risk"] for c in cases}
        if expected == got:
            console.print(f"\n[green]✓[/] identical to `lifeguard replay` of the same file: same {len(got)} "
                          "conversations flagged, same risks")
        else:
            differing = sorted(c for c in set(expected) | set(got) if expected.get(c) != got.get(c))
            console.print(f"\n[yellow]![/] `lifeguard replay` of the same file differs for {len(differing)} "
                          f"conversation(s) (flagged {len(expected)} there, {len(got)} here): "
                          + ", ".join(f"{c} {got.get(c)} vs {expected.get(c)}" for c in differing[:5]))
        console.print(f"\ndone in {time.perf_counter() - started:.1f} s. Files: {root}")
        if api is not None and serve:
            console.print(f"review API still on {api.url}: Ctrl-C to stop")
            stack.stop()  # the API reads only the database
            api.wait()
        return 0 if stats.dead_lettered == len(synth.malformed) else 1
    finally:
        if api is not None:
            api.close()
        stack.stop()


class ReviewApi:
    """The review API on the demo database, in a background thread, with a moderator token to try it."""

    def __init__(self, settings: Settings) -> None:
        import uvicorn

        from review.access import Role, create_token
        from review.api import create_app
        from review.store import open_case_store, utc_now

        self.store = open_case_store(settings)
        _, self.token = create_token(store=self.store, role=Role.MODERATOR, name="demo moderator", now=utc_now())
        port = settings.api_port if not port_open(settings.api_host, settings.api_port) else free_port()
        self.url = f"http://{settings.api_host}:{port}"
        config = uvicorn.Config(create_app(self.store), host=settings.api_host, port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="review-api", daemon=True)
        self.thread.start()

    def wait(self) -> None:
        """Serve until Ctrl-C."""
        with contextlib.suppress(KeyboardInterrupt):
            while self.thread.is_alive():
                self.thread.join(0.5)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.store.close()


def start_review_api(settings: Settings, console: Console) -> ReviewApi | None:
    if importlib.util.find_spec("review.api") is None:
        return None
    api = ReviewApi(settings)
    console.print(f"[green]✓[/] review API on {api.url} (OpenAPI at {api.url}/docs); a moderator token:\n"
                  f"    curl -H 'Authorization: Bearer {api.token}' {api.url}/v1/cases")
    return api


__all__ = ["run_demo"]
