"""Worker metrics (Prometheus) and the HTTP endpoint serving them with liveness and readiness.

``/metrics``  Prometheus text format.
``/healthz``  200 while the consume loop is turning (it ran within the last ``stall_seconds``), else 503.
``/readyz``   200 when the worker owns partitions and is not paused for a dependency outage, else 503.

Each worker has its own registry, so several workers can live in one process (tests, the demo).
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


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
        self.retries = Counter("lifeguard_dependency_retries", "Batch retries after a dependency fault",
                               ["dependency"], registry=r)
        self.batch_seconds = Histogram("lifeguard_batch_seconds", "Wall time from poll to committed offsets",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.ingest_latency = Histogram("lifeguard_ingest_to_decision_seconds",
                                        "Record timestamp to durable decision", buckets=LATENCY_BUCKETS, registry=r)
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

    @property
    def ready(self) -> bool:
        return self.assigned_count > 0 and not self.is_paused


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
                    ready = m.ready
                    self._send(200 if ready else 503, b"ready\n" if ready else b"not ready\n")
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
