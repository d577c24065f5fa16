"""Platform benchmark: ``python -m bench`` (or ``python -m bench.streaming``) prints a Rich table and writes JSON
(and a PNG of latency percentiles against rate when matplotlib is present).

All phases run on the same broker in the same run (a private embedded stack unless LIFEGUARD_KAFKA_BOOTSTRAP /
LIFEGUARD_REDIS_URL / LIFEGUARD_DATABASE_URL point elsewhere; fresh topics and key prefix either way), on a
``lifeguard synth`` workload at a realistic mix (default 3 % grooming conversations, so ≥ 95 % benign):

a. replay: the same file through ``lifeguard replay``'s path with the models (decide only, in-memory state);
b. one ``lifeguard run`` worker (a separate process, built like the command) drains a backlog produced before it
   starts (as for c, so no producer shares the cores with it): events/s from its first record to its last
   commit; then fresh workers consume the same file produced at 50 % and 90 % of that rate: p50/p95/p99 ingest
   (record timestamp) → durable decision;
c. a plain kafka-python group consumer reads a backlog of the same stream: records/s, and the ratio (b)/(c);
d. Redis bytes per active conversation (``MEMORY USAGE`` of state + dedupe keys) and the worker's RSS;
e. two workers in one group, started together, drain the same backlog: events/s together;
f. the share of messages that reach the embedding stage of the cascade.

Every worker figure is READ FROM THE WORKER'S PROMETHEUS ENDPOINT (``/metrics``), so the metrics are tested by
use: throughput from ``lifeguard_events_decided_total`` and the first-record / last-commit timestamps,
percentiles from the ``lifeguard_ingest_to_decision_seconds`` histogram (linear within a bucket; the exact
percentiles from the worker's own samples are in the JSON beside them), RSS from
``process_resident_memory_bytes``, completion from ``lifeguard_partition_committed_offset``, the embedding
share from ``lifeguard_embedding_stage_messages_total / lifeguard_classifier_messages_total``.

Figures, not assertions: nothing here fails on a slow machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import platform
import queue
import random
import shutil
import statistics
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer
from prometheus_client.parser import text_string_to_metric_families
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


_SYLLABLES = ("ka", "lo", "mi", "ru", "te", "po", "za", "ne", "fi", "do", "gu", "sha")


def freshen_texts(events: list[dict[str, Any]], seed: int) -> None:
    """Append a made-up three-syllable word (one of 1,728) to every text, in place: almost every line becomes one
    no memo has seen, while what the detectors look for stays in it."""
    rng = random.Random(seed)
    for event in events:
        if event.get("text"):
            event["text"] += " " + "".join(rng.choice(_SYLLABLES) for _ in range(3))


def worker_child(settings_json: str, ready: Any, stop: Any, results: Any, port: Any) -> None:
    """Runs in its own process: one worker, built like ``lifeguard run`` with its metrics endpoint on a free
    port (sent back through ``port``), until ``stop`` is set."""
    from pipeline.streaming.metrics import MetricsServer, WorkerMetrics
    from pipeline.streaming.worker import build_worker

    settings = Settings.model_validate_json(settings_json)
    metrics = WorkerMetrics()
    server = MetricsServer(metrics, "127.0.0.1", 0).start()
    port.put(server.port)
    worker = build_worker(settings, metrics=metrics, keep_latencies=True)
    announced = False

    def stop_when(w: Any) -> bool:
        nonlocal announced
        if not announced and w.metrics.assigned_count > 0:
            announced = True
            ready.set()
        return bool(stop.is_set())

    try:
        worker.run(stop_when=stop_when)
    finally:
        server.close()
    results.put({"latencies_ms": worker.stats.latencies_ms or [], "rss_peak_bytes": proc_status("VmHWM")})


Scrape = dict[str, list[tuple[dict[str, str], float]]]


def scrape(port: int) -> Scrape:
    """The worker's ``/metrics`` as ``{sample name: [(labels, value)]}``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    out: Scrape = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return out


def metric(m: Scrape, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for lab, v in m.get(name, []) if all(lab.get(k) == x for k, x in labels.items()))


def histogram_quantile(m: Scrape, name: str, q: float) -> float:
    """Like PromQL's ``histogram_quantile``: linear interpolation inside the bucket holding the quantile."""
    buckets = sorted((float(lab["le"]), v) for lab, v in m.get(f"{name}_bucket", []))
    if not buckets or buckets[-1][1] <= 0:
        return float("nan")
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            width = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / width if width else 0.0)
        lower_bound, lower_count = bound, count
    return lower_bound


class WorkerProcess:
    def __init__(self, settings: Settings) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.ready = ctx.Event()
        self.stop = ctx.Event()
        self.results: Any = ctx.Queue()
        ports: Any = ctx.Queue()
        self.process = ctx.Process(target=worker_child, name="bench-worker",
                                   args=(settings.model_dump_json(), self.ready, self.stop, self.results, ports))
        self.process.start()
        self.port: int = ports.get(timeout=120)

    def metrics(self) -> Scrape:
        return scrape(self.port)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.5):
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError("the worker did not get partitions")

    def check_alive(self) -> None:
        if not self.process.is_alive():
            raise RuntimeError(f"the worker process exited with {self.process.exitcode}")

    def finish(self) -> dict[str, Any]:
        self.stop.set()
        try:
            result: dict[str, Any] = self.results.get(timeout=60)
        except queue.Empty:
            raise RuntimeError(f"the worker process exited with {self.process.exitcode} and no results") from None
        self.process.join(30)
        return result


def wait_committed(workers: Iterable[WorkerProcess], topic: str, targets: dict[int, int],
                   timeout: float) -> list[Scrape]:
    """Poll the workers' ``lifeguard_partition_committed_offset`` until every partition reaches its target;
    returns the last scrape of each worker."""
    group = list(workers)
    deadline = time.monotonic() + timeout
    while True:
        scrapes = [w.metrics() for w in group]
        done = {p: max(metric(m, "lifeguard_partition_committed_offset", topic=topic, partition=str(p))
                       for m in scrapes) for p in targets}
        if all(done[p] >= end for p, end in targets.items()):
            return scrapes
        for w in group:
            w.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"workers committed {done}, not {targets}, within {timeout:.0f} s")
        time.sleep(0.2)


def throughput(scrapes: list[Scrape]) -> dict[str, float]:
    """Events/s of one or more workers from their metrics: records handled once (consumed, less redeliveries
    skipped as duplicates) over first record → last commit."""
    first = min(metric(m, "lifeguard_first_record_timestamp_seconds") for m in scrapes)
    last = max(metric(m, "lifeguard_last_commit_timestamp_seconds") for m in scrapes)
    consumed = sum(metric(m, "lifeguard_events_consumed_total") for m in scrapes)
    redelivered = sum(metric(m, "lifeguard_events_duplicate_total") for m in scrapes)
    decided = sum(metric(m, "lifeguard_events_decided_total") for m in scrapes)
    seconds = last - first
    events = consumed - redelivered
    return {"events": events, "decided": decided, "redelivered": redelivered, "seconds": round(seconds, 3),
            "events_per_s": round(events / seconds, 1) if seconds > 0 else 0.0}


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
    """Send ``lines`` at ``rate`` records/s; returns each written partition's end offset.

    The producer stands in for game servers on other machines, so its own pauses must not count as the worker's
    latency: it keeps no future per record (a delivery callback keeps the end offsets) and its collector is off
    while it sends. With a future kept per record and the collector on, this process's full passes paused the
    producer's I/O thread for 100-300 ms every few seconds with stamped records in its buffer, and those pauses
    made the worker's p99."""
    producer = new_producer(settings, role="bench")
    ends: dict[int, int] = {}
    failures: list[Exception] = []

    def delivered(meta: Any) -> None:  # on the producer's I/O thread, one at a time
        ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)

    collector_was_on = gc.isenabled()
    gc.disable()
    try:
        started = time.perf_counter()
        for i, line in enumerate(lines):
            due = started + i / rate
            delay = due - time.perf_counter()
            if delay > 0.002:
                producer.flush()
                time.sleep(delay)
            future = producer.send(settings.topic_events, key=conversation_key(line), value=line)
            future.add_callback(delivered).add_errback(failures.append)
        producer.flush()
    finally:
        if collector_was_on:
            gc.enable()
        producer.close()
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(lines)} paced records were not delivered: {failures[0]}")
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


def drain(settings: Settings, path: Path, workers: int) -> tuple[list[Scrape], list[dict[str, Any]]]:
    """``workers`` workers of one group drain ``path``, produced as a backlog before they start: as for the raw
    consume (c), no producer shares the cores with them. Started together, they normally join the group together;
    a late joiner's rebalance shows as redelivered records in ``throughput``."""
    ensure_topics(settings)
    produced = produce_file(path, settings)
    group = [WorkerProcess(settings) for _ in range(workers)]
    scrapes = wait_committed(group, settings.topic_events, produced.end_offsets, timeout=900)
    return scrapes, [w.finish() for w in group]


def paced(settings: Settings, lines: list[bytes], rate: float) -> dict[str, Any]:
    """A fresh worker (fresh state) consumes ``lines`` produced at ``rate`` events/s."""
    ensure_topics(settings)
    cleanup_redis(settings)  # the paced stream is the same conversations again
    worker = WorkerProcess(settings)
    worker.wait_ready()
    ends = produce_paced(settings, lines, rate)
    m = wait_committed([worker], settings.topic_events, ends, timeout=600)[0]
    exact = worker.finish()["latencies_ms"]
    name = "lifeguard_ingest_to_decision_seconds"
    out: dict[str, Any] = {"rate_events_per_s": round(rate, 1), "events": int(metric(m, f"{name}_count"))}
    for q in (50, 95, 99):
        out[f"p{q}_ms"] = round(1000 * histogram_quantile(m, name, q / 100), 1)
        out[f"exact_p{q}_ms"] = round(percentile(exact, q), 1)
    out["max_ms"] = round(max(exact), 1) if exact else None
    # A fresh worker starts cold (almost every line new to the memos and the encoder): its tail sits in the first
    # seconds. The second half of the stream shows the same worker warm.
    out["warm_p99_ms"] = round(percentile(exact[len(exact) // 2:], 99), 1)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=2000, help="synthetic conversations (~15 events each)")
    parser.add_argument("--grooming-share", type=float, default=0.03, help="≤ 0.05 keeps the mix ≥ 95 %% benign")
    parser.add_argument("--seed", type=int, default=42)
    # Long enough to stream the whole file at both rates: the paced workers then meet the same mix of first-seen
    # and repeated texts as the draining worker whose rate they are paced at (a prefix is mostly first-seen).
    parser.add_argument("--paced-seconds", type=float, default=40.0, help="longest paced phase (capped by the file)")
    parser.add_argument("--raw-records", type=int, default=200_000, help="backlog for the raw consume phase")
    parser.add_argument("--fresh-texts", action="store_true",
                        help="append a random made-up word to every message, so almost every line is new to the "
                             "memos (the synthetic chat repeats its lines)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/streaming.json"))
    parser.add_argument("--plot", type=Path, default=Path("bench/results/latency.png"))
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
                "topic_actions": f"bench-{name}-act-{run_id}", "consumer_group": f"bench-{name}-{run_id}",
                "redis_key_prefix": f"bench-{name}-{run_id}"})

        path = tmp / "events.jsonl"
        synth = generate(seed=args.seed, conversations=args.conversations, grooming_share=args.grooming_share)
        if args.fresh_texts:
            freshen_texts(synth.events, args.seed)
        write_jsonl(synth, path)
        lines = path.read_bytes().splitlines()
        conversations = sorted({e["channel"]["id"] if e.get("channel") else "" for e in synth.events} - {""})
        console.print(f"{len(lines)} events in {args.conversations} conversations ({args.grooming_share:.0%} "
                      f"grooming{', fresh texts' if args.fresh_texts else ''}); broker {settings.kafka_bootstrap}, "
                      f"redis {settings.redis_url}")

        with console.status("(a) replay with models"):
            from pipeline.detectors import load_detectors
            from pipeline.replay import replay
            from pipeline.runner import freeze_startup_heap

            detectors = load_detectors(settings)
            freeze_startup_heap()  # as `lifeguard replay` and the worker do
            started = time.perf_counter()
            replayed = replay(path, detectors)
            seconds = time.perf_counter() - started
            results["replay"] = {"events": replayed.events, "seconds": round(seconds, 3),
                                 "events_per_s": round(replayed.events / seconds, 1),
                                 "models": [c.name for c in detectors.classifiers]}

        with console.status("(c) raw kafka-python consume"):
            raw = phase("raw")
            ensure_topics(raw)
            copies = max(1, -(-args.raw_records // len(lines)))  # a backlog long enough to time
            raw_path = tmp / "raw.jsonl"
            raw_path.write_bytes(path.read_bytes() * copies)
            produce_file(raw_path, raw)
            results["raw_consume"] = raw_consume(raw, len(lines) * copies)

        with console.status("(b) one worker drains the backlog"):
            one = phase("drain1")
            (m,), (child,) = drain(one, path, 1)
            results["worker"] = throughput([m])
            admitted = metric(m, "lifeguard_embedding_stage_messages_total")
            offered = metric(m, "lifeguard_classifier_messages_total")
            decided = max(1.0, metric(m, "lifeguard_events_decided_total"))
            results["worker"].update({
                "rss_mb": round(metric(m, "process_resident_memory_bytes") / 2**20, 1),
                "rss_peak_mb": round(child["rss_peak_bytes"] / 2**20, 1),
                "batches": int(metric(m, "lifeguard_batch_seconds_count")),
                "cases_opened": int(metric(m, "lifeguard_cases_opened_total")),
                "case_updates": int(metric(m, "lifeguard_case_updates_total")),
                "dead_lettered": int(metric(m, "lifeguard_events_dead_lettered_total")),
                "lag_after": int(metric(m, "lifeguard_consumer_lag")),
                "decide_us_per_event": round(1e6 * metric(m, "lifeguard_batch_stage_seconds_total", stage="decide")
                                             / decided, 1),
                "stage_seconds": {lab["stage"]: round(v, 3)
                                  for lab, v in m.get("lifeguard_batch_stage_seconds_total", [])},
            })
            results["embedding"] = {"messages": int(offered), "admitted": int(admitted),
                                    "encoded": int(metric(m, "lifeguard_embedding_encoded_total")),
                                    "share": round(admitted / offered, 4) if offered else 0.0}
            results["redis"] = redis_footprint(one, conversations)

        rate = results["worker"]["events_per_s"]
        results["latency"] = []
        for fraction in (0.5, 0.9):
            target = max(50.0, rate * fraction)
            with console.status(f"(b) latency at {fraction:.0%} of that rate ({target:,.0f} events/s)"):
                count = min(len(lines), int(target * args.paced_seconds))
                row = paced(phase(f"paced{int(fraction * 100)}"), lines[:count], target)
                row["fraction"] = fraction
                results["latency"].append(row)

        with console.status("(e) two workers in one group drain the backlog"):
            scrapes, _ = drain(phase("drain2"), path, 2)
            results["two_workers"] = throughput(scrapes)
            results["two_workers"]["per_worker_events"] = [int(metric(m, "lifeguard_events_consumed_total"))
                                                           for m in scrapes]
        cleanup_redis(settings)
    finally:
        stack.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    raw_rate = results["raw_consume"]["records_per_s"]
    results["ratio_worker_to_raw"] = round(results["worker"]["events_per_s"] / raw_rate, 4) if raw_rate else None
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    results["settings"] = {"max_poll_records": settings.max_poll_records, "partitions": settings.partitions,
                           "conversations": args.conversations, "grooming_share": args.grooming_share,
                           "events": len(lines), "fresh_texts": args.fresh_texts}
    print_table(console, results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"wrote {args.out}")
    if plot_latency(results["latency"], args.plot):
        console.print(f"wrote {args.plot}")
    return results


def plot_latency(rows: list[dict[str, Any]], out: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rates = [r["rate_events_per_s"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    for q in (50, 95, 99):
        ax.plot(rates, [r[f"p{q}_ms"] for r in rows], marker="o", label=f"p{q}")
    ax.set_xlabel("offered rate (events/s, one worker)")
    ax.set_ylabel("ingest → durable decision (ms)")
    ax.set_title("Lifeguard worker latency vs rate")
    ax.grid(True, alpha=0.3)
    ax.legend()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return True


def print_table(console: Console, r: dict[str, Any]) -> None:
    cpus = r["machine"]["cpus"]
    table = Table(title=f"Lifeguard platform benchmark ({cpus} cores, one embedded broker, one run)",
                  title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    w, raw, red, two, emb = r["worker"], r["raw_consume"], r["redis"], r["two_workers"], r["embedding"]
    table.add_row("(a) replay with models", f"{r['replay']['events_per_s']:,.0f} events/s")
    table.add_row("(b) one worker end-to-end", f"{w['events_per_s']:,.0f} events/s")
    for row in r["latency"]:
        table.add_row(f"(b) ingest→decision p50/p95/p99 at {row['rate_events_per_s']:,.0f} events/s "
                      f"({row['fraction']:.0%})", f"{row['p50_ms']:,.0f} / {row['p95_ms']:,.0f} / "
                      f"{row['p99_ms']:,.0f} ms")
        table.add_row(f"(b) p99 in the second half of that stream ({row['fraction']:.0%})",
                      f"{row['warm_p99_ms']:,.0f} ms")
    table.add_row("(c) raw kafka-python consume", f"{raw['records_per_s']:,.0f} records/s")
    table.add_row("(c) ratio worker / raw", f"{r['ratio_worker_to_raw']:.3f}")
    table.add_row("(d) Redis bytes per active conversation", f"{red['bytes_per_conversation']:,.0f} B")
    table.add_row("(d) worker RSS (end / peak)", f"{w['rss_mb']:,.0f} / {w['rss_peak_mb']:,.0f} MB")
    redelivered = f" ({two['redelivered']:,.0f} redelivered)" if two.get("redelivered") else ""
    table.add_row("(e) two workers, one group", f"{two['events_per_s']:,.0f} events/s{redelivered}")
    table.add_row("(f) messages reaching the embedding stage", f"{emb['share']:.2%}")
    table.add_row("decide per event (worker)", f"{w['decide_us_per_event']:,.0f} µs")
    console.print(table)


if __name__ == "__main__":
    main()
