"""Streaming benchmark: ``python -m bench.streaming`` prints figures (Rich table) and writes them as JSON.

All phases run on the same broker in the same run (a private embedded stack unless LIFEGUARD_KAFKA_BOOTSTRAP /
LIFEGUARD_REDIS_URL / LIFEGUARD_DATABASE_URL point elsewhere; fresh topics and key prefix either way):

0. replay: the same file through ``lifeguard replay``'s path (decide only, in-memory state), for scale;
1. raw consume: a plain kafka-python group consumer reads a backlog of the synthetic stream: records/s, the
   ceiling for any worker on this broker and machine;
2. worker throughput: one ``lifeguard run`` worker (a separate process, built exactly like the command) drains
   the same backlog: events/s from its first record to its last commit, and its peak RSS;
3. latency: the worker consumes a stream produced at a fixed fraction of that throughput: p50/p99 from the
   record timestamp (ingest) to the decision being durable (cases, actions, state and offsets written);
4. Redis bytes per active conversation (``MEMORY USAGE`` of state + dedupe keys) and per subject profile.

Figures, not assertions: nothing here fails on a slow machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import queue
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer
from rich.console import Console
from rich.table import Table

from pipeline.settings import Settings, load_settings
from pipeline.streaming.embedded import EmbeddedStack, with_services
from pipeline.streaming.kafka_clients import consumer_config, ensure_topics, new_producer
from pipeline.streaming.produce import conversation_key, produce_file


def proc_status(field: str) -> int:
    """A ``/proc/self/status`` memory field in bytes (0 where there is no /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def worker_child(settings_json: str, ready: Any, stop: Any, results: Any) -> None:
    """Runs in its own process: one worker, built like ``lifeguard run``, until ``stop`` is set."""
    from pipeline.streaming.worker import build_worker

    settings = Settings.model_validate_json(settings_json)
    worker = build_worker(settings, keep_latencies=True)
    announced = False

    def stop_when(w: Any) -> bool:
        nonlocal announced
        if not announced and w.metrics.assigned_count > 0:
            announced = True
            ready.set()
        return bool(stop.is_set())

    worker.run(stop_when=stop_when)
    s = worker.stats
    results.put({
        "consumed": s.consumed, "decided": s.decided, "duplicates": s.duplicates, "dead_lettered": s.dead_lettered,
        "case_updates": s.case_updates, "batches": s.batches, "first_record_at": s.first_record_at,
        "last_commit_at": s.last_commit_at, "latencies_ms": s.latencies_ms or [],
        "rss_peak_bytes": proc_status("VmHWM"), "rss_bytes": proc_status("VmRSS"),
    })


def committed(settings: Settings) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        offsets = admin.list_group_offsets(settings.consumer_group).get(settings.consumer_group, {})
    finally:
        admin.close()
    return {tp.partition: om.offset for tp, om in offsets.items() if tp.topic == settings.topic_events}


def wait_committed(settings: Settings, targets: dict[int, int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = committed(settings)
        if all(got.get(p, 0) >= end for p, end in targets.items()):
            return
        time.sleep(0.25)
    raise TimeoutError(f"worker did not commit {targets} within {timeout:.0f} s")


class WorkerProcess:
    def __init__(self, settings: Settings) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.ready = ctx.Event()
        self.stop = ctx.Event()
        self.results: Any = ctx.Queue()
        self.process = ctx.Process(target=worker_child, name="bench-worker",
                                   args=(settings.model_dump_json(), self.ready, self.stop, self.results))
        self.process.start()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.5):
            if not self.process.is_alive():
                raise RuntimeError(f"the worker process exited with {self.process.exitcode}")
            if time.monotonic() > deadline:
                raise TimeoutError("the worker did not get partitions")

    def finish(self) -> dict[str, Any]:
        self.stop.set()
        try:
            result: dict[str, Any] = self.results.get(timeout=60)
        except queue.Empty:
            raise RuntimeError(f"the worker process exited with {self.process.exitcode} and no results") from None
        self.process.join(30)
        return result


def raw_consume(settings: Settings, records: int, timeout: float = 120) -> dict[str, float]:
    config = consumer_config(settings)
    consumer = KafkaConsumer(settings.topic_events, **config)
    seen = 0
    first = last = 0.0
    deadline = time.monotonic() + timeout
    try:
        while seen < records and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                if not first:
                    first = time.perf_counter()
                seen += len(batch)
                last = time.perf_counter()
    finally:
        consumer.close(autocommit=False)
    seconds = last - first
    return {"records": seen, "seconds": round(seconds, 3), "records_per_s": round(seen / seconds, 1) if seconds else 0}


def produce_paced(settings: Settings, lines: list[bytes], rate: float) -> dict[int, int]:
    producer = new_producer(settings, role="bench")
    futures = []
    started = time.perf_counter()
    for i, line in enumerate(lines):
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0.002:
            producer.flush()
            time.sleep(delay)
        futures.append(producer.send(settings.topic_events, key=conversation_key(line), value=line))
    producer.flush()
    ends: dict[int, int] = {}
    for future in futures:
        meta = future.get(timeout=30)
        ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    producer.close()
    return ends


def redis_footprint(settings: Settings, conversations: list[str]) -> dict[str, float]:
    from pipeline.streaming.redis_store import RedisStateStore

    assert settings.redis_url is not None
    store = RedisStateStore.from_url(settings.redis_url, prefix=settings.redis_key_prefix)
    present = [c for c in conversations if store.client.exists(store.state_key(c))]
    conv_bytes = store.memory_usage(present)
    profiles = store.scan_keys("u")
    pipe = store.client.pipeline(transaction=False)
    for key in profiles:
        pipe.memory_usage(key, samples=0)
    profile_bytes = sum(int(n or 0) for n in pipe.execute())
    state_json = [len(raw) for raw in store.client.mget([store.state_key(c) for c in present[:2000]]) if raw]
    return {
        "conversations": len(present),
        "bytes_per_conversation": round(conv_bytes / len(present), 1) if present else 0.0,
        "state_value_bytes_mean": round(statistics.fmean(state_json), 1) if state_json else 0.0,
        "profiles": len(profiles),
        "bytes_per_profile": round(profile_bytes / len(profiles), 1) if profiles else 0.0,
    }


def cleanup_redis(settings: Settings) -> None:
    import redis

    assert settings.redis_url is not None
    client = redis.Redis.from_url(settings.redis_url)
    keys = list(client.scan_iter(match=f"{settings.redis_key_prefix}:*", count=5000))
    for start in range(0, len(keys), 5000):
        client.delete(*keys[start:start + 5000])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.streaming", description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=1500, help="synthetic conversations (~15 events each)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rate-fraction", type=float, default=0.5,
                        help="paced phase: produce at this fraction of the measured worker throughput")
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument("--raw-records", type=int, default=200_000, help="backlog for the raw consume phase")
    parser.add_argument("--out", type=Path, default=Path("bench/results/streaming.json"))
    args = parser.parse_args(argv)

    from pipeline.synth import generate, write_jsonl

    console = Console()
    tmp = Path(tempfile.mkdtemp(prefix="lifeguard-bench-"))
    run_id = uuid.uuid4().hex[:8]
    base = load_settings(data_dir=tmp)
    if base.database_url is None:
        base = base.model_copy(update={"database_url": f"sqlite:///{tmp / 'bench.db'}"})
    stack = EmbeddedStack(tmp)
    results: dict[str, Any] = {}
    try:
        settings = with_services(base).model_copy(update={"redis_key_prefix": f"bench-{run_id}"})

        def phase(name: str) -> Settings:
            return settings.model_copy(update={
                "topic_events": f"bench-{name}-{run_id}", "topic_deadletter": f"bench-{name}-dl-{run_id}",
                "topic_actions": f"bench-{name}-act-{run_id}", "consumer_group": f"bench-{name}-{run_id}"})

        path = tmp / "events.jsonl"
        synth = generate(seed=args.seed, conversations=args.conversations, grooming_share=0.3)
        write_jsonl(synth, path)
        lines = path.read_bytes().splitlines()
        conversations = sorted({e["channel"]["id"] if e.get("channel") else "" for e in synth.events} - {""})
        console.print(f"{len(lines)} events in {args.conversations} conversations; broker {settings.kafka_bootstrap}"
                      f", redis {settings.redis_url}")

        with console.status("replay (the same decide path, in-memory state, no services)"):
            from pipeline.detectors import load_detectors
            from pipeline.replay import replay

            detectors = load_detectors(settings)
            started = time.perf_counter()
            replayed = replay(path, detectors)
            seconds = time.perf_counter() - started
            results["replay"] = {"events": replayed.events, "seconds": round(seconds, 3),
                                 "events_per_s": round(replayed.events / seconds, 1)}

        with console.status("raw kafka-python consume"):
            raw = phase("raw")
            ensure_topics(raw)
            copies = max(1, -(-args.raw_records // len(lines)))  # a backlog long enough to time
            raw_path = tmp / "raw.jsonl"
            raw_path.write_bytes(path.read_bytes() * copies)
            produce_file(raw_path, raw)
            results["raw_consume"] = raw_consume(raw, len(lines) * copies)

        with console.status("worker throughput (draining a backlog)"):
            drain = phase("drain")
            ensure_topics(drain)
            produced = produce_file(path, drain)
            worker = WorkerProcess(drain)
            wait_committed(drain, produced.end_offsets, timeout=900)
            stats = worker.finish()
            seconds = stats["last_commit_at"] - stats["first_record_at"]
            results["worker"] = {
                "events": stats["consumed"], "decided": stats["decided"], "seconds": round(seconds, 3),
                "events_per_s": round(stats["consumed"] / seconds, 1), "batches": stats["batches"],
                "case_updates": stats["case_updates"], "rss_peak_mb": round(stats["rss_peak_bytes"] / 2**20, 1),
                "rss_end_mb": round(stats["rss_bytes"] / 2**20, 1),
            }
            results["redis"] = redis_footprint(drain, conversations)

        rate = max(50.0, results["worker"]["events_per_s"] * args.rate_fraction)
        with console.status(f"latency at {rate:.0f} events/s"):
            paced = phase("paced")
            ensure_topics(paced)
            cleanup_redis(paced)  # a fresh state: the paced stream is the same conversations again
            count = min(len(lines), int(rate * args.paced_seconds))
            worker = WorkerProcess(paced)
            worker.wait_ready()
            ends = produce_paced(paced, lines[:count], rate)
            wait_committed(paced, ends, timeout=600)
            stats = worker.finish()
            latencies = stats["latencies_ms"]
            results["latency"] = {
                "rate_events_per_s": round(rate, 1), "events": len(latencies),
                "p50_ms": round(percentile(latencies, 50), 1), "p99_ms": round(percentile(latencies, 99), 1),
                "max_ms": round(max(latencies), 1) if latencies else None,
            }
        cleanup_redis(settings)
    finally:
        stack.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    raw_rate = results["raw_consume"]["records_per_s"]
    results["ratio_worker_to_raw"] = round(results["worker"]["events_per_s"] / raw_rate, 4) if raw_rate else None
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    results["settings"] = {"max_poll_records": settings.max_poll_records, "partitions": settings.partitions,
                           "conversations": args.conversations, "events": len(lines)}
    print_table(console, results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"wrote {args.out}")
    return results


def print_table(console: Console, r: dict[str, Any]) -> None:
    table = Table(title="Lifeguard streaming benchmark (one worker, same broker, same run)", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    w, raw, lat, red = r["worker"], r["raw_consume"], r["latency"], r["redis"]
    table.add_row("raw kafka-python consume", f"{raw['records_per_s']:,.0f} records/s")
    table.add_row("worker end-to-end", f"{w['events_per_s']:,.0f} events/s")
    table.add_row("worker / raw consume", f"{r['ratio_worker_to_raw']:.3f}")
    table.add_row("replay (same decide, in-memory state)", f"{r['replay']['events_per_s']:,.0f} events/s")
    table.add_row(f"ingest→decision p50 at {lat['rate_events_per_s']:,.0f} events/s", f"{lat['p50_ms']:,.1f} ms")
    table.add_row(f"ingest→decision p99 at {lat['rate_events_per_s']:,.0f} events/s", f"{lat['p99_ms']:,.1f} ms")
    table.add_row("Redis bytes per active conversation", f"{red['bytes_per_conversation']:,.0f} B")
    table.add_row("Redis bytes per subject profile", f"{red['bytes_per_profile']:,.0f} B")
    table.add_row("worker peak RSS", f"{w['rss_peak_mb']:,.1f} MB")
    console.print(table)


if __name__ == "__main__":
    main()
