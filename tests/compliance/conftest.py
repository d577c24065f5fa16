"""Fixtures: ``world`` (SQLite) and ``any_world`` (SQLite and PostgreSQL, marked services): cases built through
the real path (synthetic + scripted events -> replay into the SQL store -> moderator decisions through review's
services, including a notice, a reopen and an overturn), with a clock set after the last event. PostgreSQL uses
the review suite's throwaway database."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner, Result

from compliance.tables import TABLES
from pipeline.settings import Settings
from pipeline.synth import generate
from review.access import Principal, Role
from review.casework import record_decision
from review.models import CaseRow
from review.policy import Action, ReasonCode
from review.queue import claim_case
from review.store import SqlCaseStore, open_case_store
from tests.review import conversations as conv
from tests.review.conftest import BACKENDS, postgres
from tests.review.databases import POSTGRES, FakeClock, settings_for

__all__ = ["World", "any_world", "postgres", "run_cli", "sqlite_template", "world"]

SENIOR = Principal("tok-s", "sam-senior", Role.SENIOR)
DECIDED_AT = datetime(2026, 3, 20, 9, 0, tzinfo=UTC)  # after every event of the fixture
REPORT_SCRIPT = [("a", "hey wanna play"), ("k", "ok")]


@dataclass
class World:
    store: SqlCaseStore
    settings: Settings
    clock: FakeClock
    events: list[dict[str, Any]]
    cases: dict[str, str]  # role in the fixture -> case id
    tmp: Path

    @property
    def user_ids(self) -> set[str]:
        return {e[side]["user_id"] for e in self.events for side in ("actor", "target") if e.get(side)}

    @property
    def texts(self) -> set[str]:
        return {e["text"] for e in self.events if e.get("text")}

    @property
    def conversation_ids(self) -> set[str]:
        return {e["channel"]["id"] for e in self.events if e.get("channel")}

    def env(self) -> dict[str, str]:
        env = {"LIFEGUARD_DATA_DIR": str(self.settings.data_dir)}
        if self.settings.database_url:
            env["LIFEGUARD_DATABASE_URL"] = self.settings.database_url
        return env


def user_report(conv_id: str, *, reporter: str, reported: str, at: str, text: str) -> dict[str, Any]:
    return {"schema_version": 1, "event_id": f"{conv_id}-report", "type": "user_report", "ts": at,
            "platform": "test", "channel": {"kind": "direct", "id": conv_id},
            "actor": {"user_id": reporter, "age_band": "9_12", "age_verified": "self_declared"},
            "target": {"user_id": reported, "age_band": "21_plus", "age_verified": "self_declared"},
            "text": text, "report_category": "child_safety"}


def scripted() -> list[dict[str, Any]]:
    report_chat = conv.conversation("dm-report", REPORT_SCRIPT, adult="adult-5", child="kid-5")
    return [
        *conv.mixed_queue(),  # dm-meet, dm-secret, dm-small, dm-mild
        *report_chat,
        user_report("dm-report", reporter="kid-5", reported="adult-5", at="2026-03-02T15:10:00Z",
                    text="he keeps asking me to meet him alone"),
    ]


def _decide(store: SqlCaseStore, clock: FakeClock, case_id: str, action: Action, code: ReasonCode,
            note: str = "") -> None:
    claim_case(store=store, principal=SENIOR, case_id=case_id, now=clock())
    clock.advance(45)  # within the 60 s lease of the review suite's settings
    record_decision(store=store, principal=SENIOR, case_id=case_id, action=action, reason_code=code, note=note,
                    now=clock())
    clock.advance(300)


def _case_of(store: SqlCaseStore, conversation: str) -> str:
    with store.sessions() as session:
        ids = list(session.scalars(select(CaseRow.id).where(CaseRow.conversation_id == conversation)
                                   .order_by(CaseRow.created_at, CaseRow.id)))
    assert ids, f"no case for {conversation}"
    return ids[-1]


def build(store: SqlCaseStore, clock: FakeClock, tmp: Path) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Replay the fixture's events into ``store`` and decide cases as moderators would; returns the case ids by
    role and every event replayed."""
    synthetic = generate(seed=11, conversations=30, grooming_share=0.4).events
    first = [*synthetic, *scripted()]
    conv.run(conv.write(tmp / "events.jsonl", first), sink=store)
    cases = {name: _case_of(store, c) for name, c in (("meet", "dm-meet"), ("secret", "dm-secret"),
                                                      ("small", "dm-small"), ("mild", "dm-mild"),
                                                      ("report", "dm-report"))}
    with store.sessions() as session:
        synth_cases = list(session.scalars(select(CaseRow.id).where(CaseRow.conversation_id.not_in(
            ["dm-meet", "dm-secret", "dm-small", "dm-mild", "dm-report"])).order_by(CaseRow.id)))
    assert len(synth_cases) >= 3
    _decide(store, clock, cases["meet"], Action.REPORTED_NCMEC, ReasonCode.MEETING,
            note="asks to meet at the mall, child is 11")
    _decide(store, clock, cases["secret"], Action.BANNED, ReasonCode.GROOMING_SECRECY)
    _decide(store, clock, cases["small"], Action.WARNED, ReasonCode.GROOMING_SECRECY)
    _decide(store, clock, cases["mild"], Action.DISMISSED, ReasonCode.NO_VIOLATION, note="banter")
    _decide(store, clock, cases["report"], Action.RESTRICTED, ReasonCode.SAFETY_SIGNALS)
    _decide(store, clock, synth_cases[0], Action.BANNED, ReasonCode.OFF_PLATFORM)
    _decide(store, clock, synth_cases[1], Action.DISMISSED, ReasonCode.INSUFFICIENT_EVIDENCE)
    cases["synth_banned"], cases["synth_dismissed"], cases["synth_open"] = synth_cases[:3]
    # The dismissed conversation goes on: risk rises, the case reopens, and a second look restricts it.
    clock.advance(3600)
    later = conv.conversation("dm-mild", conv.LATER, adult="adult-3", child="kid-4", band="13_15",
                              first=len(conv.MILD))
    conv.run(conv.write(tmp / "later.jsonl", [*first, *later]), sink=store)
    _decide(store, clock, cases["mild"], Action.RESTRICTED, ReasonCode.MEETING)
    return cases, [*first, *later]


@dataclass(frozen=True)
class Template:
    data_dir: Path
    cases: dict[str, str]
    events: list[dict[str, Any]]
    now: datetime


def _settings(backend: str, data_dir: Path) -> Settings:
    return settings_for(backend, data_dir, lease_seconds=60, audit_checkpoint_every=10)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """The SQLite world is built once per session; each test gets its own copy of the database and keys."""
    root = tmp_path_factory.mktemp("world")
    clock = FakeClock(DECIDED_AT)
    store = open_case_store(_settings("sqlite", root / "data"), clock=clock)
    try:
        cases, events = build(store, clock, root)
    finally:
        store.close()
    return Template(root / "data", cases, events, clock.now)


def _copy(template: Template, tmp: Path) -> World:
    shutil.copytree(template.data_dir, tmp / "data")
    settings = _settings("sqlite", tmp / "data")
    clock = FakeClock(template.now)
    return World(open_case_store(settings, clock=clock), settings, clock, template.events, dict(template.cases),
                 tmp)


@pytest.fixture
def world(sqlite_template: Template, tmp_path: Path) -> Iterator[World]:
    """The fixture world on SQLite (the embedded default)."""
    made = _copy(sqlite_template, tmp_path)
    yield made
    made.store.close()


@pytest.fixture(params=BACKENDS)
def any_world(request: pytest.FixtureRequest, sqlite_template: Template, tmp_path: Path) -> Iterator[World]:
    """The fixture world on SQLite and on PostgreSQL (marked services; a throwaway database per session)."""
    if request.param == "sqlite":
        made = _copy(sqlite_template, tmp_path)
    else:
        request.getfixturevalue("postgres")
        POSTGRES.reset()
        settings = _settings("postgresql", tmp_path / "data")
        clock = FakeClock(DECIDED_AT)
        store = open_case_store(settings, clock=clock)
        with store.engine.begin() as c:  # review's reset does not know the retention tables
            c.execute(text(f"TRUNCATE {', '.join(TABLES)}"))
        cases, events = build(store, clock, tmp_path)
        made = World(store, settings, clock, events, cases, tmp_path)
    yield made
    made.store.close()


def run_cli(world: World, *args: str) -> Result:
    from pipeline.cli import app

    return CliRunner().invoke(app, list(args), env=world.env())
