"""Worker metrics (Prometheus) and the HTTP endpoint serving them with liveness and readiness.

``/metrics``  Prometheus text format.
``/healthz``  200 while the consume loop is turning (it ran within the last ``stall_seconds``), else 503.
``/readyz``   200 when the worker owns partitions, is not paused for a dependency outage and every dependency
              probe (Redis ping, ...) answers, else 503 naming what is missing.

Consumer lag is ``lifeguard_partition_read_offset - lifeguard_partition_committed_offset`` per partition (also
exported as ``lifeguard_consumer_lag``): records read but not yet durably decided. It is computed from what the
worker read and committed, not from the broker's end offsets (Tansu's ListOffsets answer is not the log end).

Each worker has its own registry, so several workers can live in one process (tests, the demo).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5,
                   2.5, 5.0, 10.0, 30.0, 60.0)
EVENT_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2.5e-3, 1e-2)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.consumed = Counter("lifeguard_events_consumed", "Records read from the events topic", registry=r)
        self.decided = Counter("lifeguard_events_decided", "Events run through decide()", registry=r)
        self.duplicates = Counter("lifeguard_events_duplicate", "Events skipped as already processed", registry=r)
        self.dead_lettered = Counter("lifeguard_events_dead_lettered", "Records sent to the dead-letter topic",
                                     ["reason_kind"], registry=r)
        self.misrouted = Counter("lifeguard_events_misrouted", "Events whose record key is not their conversation id",
                                 registry=r)
        self.case_updates = Counter("lifeguard_case_updates", "Case open/attach updates written", registry=r)
        self.cases_opened = Counter("lifeguard_cases_opened", "Conversations whose first case update was written",
                                    registry=r)
        self.actions = Counter("lifeguard_actions_published", "Platform actions published", registry=r)
        self.retries = Counter("lifeguard_dependency_retries",
                               "Retries after a dependency fault: batches, and offset commits (kafka)",
                               ["dependency"], registry=r)
        self.batch_seconds = Histogram("lifeguard_batch_seconds",
                                       "Wall time from poll to durable effects (offsets sent, not awaited)",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.ingest_latency = Histogram("lifeguard_ingest_to_decision_seconds",
                                        "Record timestamp to durable decision", buckets=LATENCY_BUCKETS, registry=r)
        self.decide_per_event = Histogram("lifeguard_decide_seconds_per_event",
                                          "decide_batch wall time divided by the events decided, one sample a batch",
                                          buckets=EVENT_BUCKETS, registry=r)
        self.stage_seconds = Counter("lifeguard_batch_stage_seconds", "Wall time spent per batch stage",
                                     ["stage"], registry=r)
        self.classified = Counter("lifeguard_classifier_messages", "Messages offered to the embedding cascade gate",
                                  registry=r)
        self.embedded = Counter("lifeguard_embedding_stage_messages", "Messages admitted to the embedding stage",
                                registry=r)
        self.encoded = Counter("lifeguard_embedding_encoded", "Distinct texts the sentence encoder ran on",
                               registry=r)
        self.embedding_share = Gauge("lifeguard_embedding_stage_share",
                                     "Share of messages that reached the embedding stage (process lifetime)",
                                     registry=r)
        self.read_offset = Gauge("lifeguard_partition_read_offset", "Next offset after the last record read",
                                 ["topic", "partition"], registry=r)
        self.committed_offset = Gauge("lifeguard_partition_committed_offset", "Offset this worker last committed",
                                      ["topic", "partition"], registry=r)
        self.lag = Gauge("lifeguard_consumer_lag", "Records read but not committed (read - committed offset)",
                         ["topic", "partition"], registry=r)
        self.first_record = Gauge("lifeguard_first_record_timestamp_seconds", "Unix time of the first record read",
                                  registry=r)
        self.last_commit = Gauge("lifeguard_last_commit_timestamp_seconds", "Unix time of the last offset commit",
                                 registry=r)
        ProcessCollector(registry=r)  # process_resident_memory_bytes, CPU seconds
        self.probes: dict[str, Callable[[], object]] = {}
        self._read: dict[tuple[str, int], int] = {}
        self._committed: dict[tuple[str, int], int] = {}
        self._cascade = (0, 0, 0)
        self.assigned = Gauge("lifeguard_assigned_partitions", "Partitions this worker owns", registry=r)
        self.paused = Gauge("lifeguard_paused", "1 while consumption is paused for a dependency outage", registry=r)
        self.last_loop = time.monotonic()
        self.assigned_count = 0
        self.is_paused = False

    def loop_tick(self) -> None:
        self.last_loop = time.monotonic()

    def set_assigned(self, count: int) -> None:
        self.assigned_count = count
        self.assigned.set(count)

    def set_paused(self, paused: bool) -> None:
        self.is_paused = paused
        self.paused.set(1 if paused else 0)

    def add_probe(self, name: str, probe: Callable[[], object]) -> None:
        """A dependency check for ``/readyz``: it passes when ``probe()`` returns without raising."""
        self.probes[name] = probe

    def record_read(self, topic: str, partition: int, next_offset: int) -> None:
        key = (topic, partition)
        if next_offset > self._read.get(key, -1):
            self._read[key] = next_offset
            self.read_offset.labels(topic, str(partition)).set(next_offset)
            self._set_lag(key)

    def record_committed(self, topic: str, partition: int, offset: int) -> None:
        key = (topic, partition)
        self._committed[key] = offset
        self.committed_offset.labels(topic, str(partition)).set(offset)
        self._set_lag(key)

    def _set_lag(self, key: tuple[str, int]) -> None:
        read = self._read.get(key)
        if read is not None:
            self.lag.labels(key[0], str(key[1])).set(max(0, read - self._committed.get(key, 0)))

    def record_cascade(self, scored: int, admitted: int, encoded: int) -> None:
        """Cumulative cascade counts from the classifier (process totals); the counters get the increments."""
        last_scored, last_admitted, last_encoded = self._cascade
        self.classified.inc(max(0, scored - last_scored))
        self.embedded.inc(max(0, admitted - last_admitted))
        self.encoded.inc(max(0, encoded - last_encoded))
        self._cascade = (scored, admitted, encoded)
        self.embedding_share.set(admitted / scored if scored else 0.0)

    def unready_reasons(self) -> list[str]:
        reasons = []
        if self.assigned_count <= 0:
            reasons.append("no partitions assigned")
        if self.is_paused:
            reasons.append("paused for a dependency outage")
        for name, probe in self.probes.items():
            try:
                probe()
            except Exception as exc:  # a readiness answer, not scoring: any failure means "not ready"
                reasons.append(f"{name} unreachable ({type(exc).__name__})")
        return reasons

    @property
    def ready(self) -> bool:
        return not self.unready_reasons()


class MetricsServer:
    def __init__(self, metrics: WorkerMetrics, host: str, port: int, *, stall_seconds: float = 60.0) -> None:
        self.metrics = metrics
        self.stall_seconds = stall_seconds
        handler = self._handler()
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                m = server.metrics
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(m.registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok = time.monotonic() - m.last_loop < server.stall_seconds
                    self._send(200 if ok else 503, b"ok\n" if ok else b"consume loop stalled\n")
                elif path == "/readyz":
                    missing = m.unready_reasons()
                    body = ("not ready: " + "; ".join(missing) + "\n").encode() if missing else b"ready\n"
                    self._send(503 if missing else 200, body)
                else:
                    self._send(404, b"not found\n")

            def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # scrapes are not worth a log line
                return

        return Handler
