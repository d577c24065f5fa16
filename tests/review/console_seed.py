"""A console test world: cases from the real decision core (rules and the shipped models) over a synthetic file,
persisted by ``SqlCaseStore`` exactly as ``replay --persist`` does, plus one token per role."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.detectors import load_detectors
from pipeline.replay import replay
from review.access import Role, create_token
from review.store import SqlCaseStore, open_case_store, utc_now
from tests.review import conversations as conv
from tests.review.databases import settings_for

# Contact details in the adult's messages: the console must hide them until a reveal.
PHONE = "07700 900123"
HANDLE = "sk8rboi_09"
CONTACT = [("a", "hey nice build"), ("k", "thanks"), ("a", "ur so mature, not like other kids"),
           ("a", "don't tell ur parents we talk ok"), ("a", f"add me on snap: {HANDLE}"),
           ("a", f"or text me {PHONE}"), ("k", "ok")]


def earlier_events() -> list[dict[str, Any]]:
    """Stored 20 minutes ago: past their first-review SLA when the test starts."""
    return conv.mixed_queue()


def events() -> list[dict[str, Any]]:
    return [
        *conv.conversation("dm-contact", CONTACT, adult="adult-7", child="kid-7"),
        *conv.conversation("dm-other", conv.SECRECY, adult="adult-7", child="kid-8", band="13_15"),
        *conv.many(3),
    ]


@dataclass
class ShiftedClock:
    """Real time minus ``behind``: seeds cases that entered the store a while ago."""

    behind: timedelta = timedelta(0)

    def __call__(self) -> datetime:
        return utc_now() - self.behind


@dataclass
class World:
    store: SqlCaseStore
    tokens: dict[str, str]  # role -> token
    names: dict[str, str]  # role -> person name
    cases: dict[str, str]  # conversation id -> case id


def build_world(data_dir: Path, *, with_models: bool = True) -> World:
    settings = settings_for("sqlite", data_dir, lease_seconds=300, audit_checkpoint_every=20)
    clock = ShiftedClock(timedelta(minutes=20))
    store = open_case_store(settings, clock=clock)
    detectors = load_detectors(settings, with_models=with_models)
    replay(conv.write(data_dir / "earlier.jsonl", earlier_events()), detectors, sink=store, keep_decisions=True)
    clock.behind = timedelta(0)
    replay(conv.write(data_dir / "events.jsonl", events()), detectors, sink=store, keep_decisions=True)
    tokens, names = {}, {}
    for role in (Role.MODERATOR, Role.SENIOR, Role.AUDITOR):
        names[role.value] = f"{role.value}-{'mia' if role is Role.MODERATOR else 'sam'}"
        tokens[role.value] = create_token(store=store, role=role, name=names[role.value], now=utc_now())[1]
    cases = {c["conversation_id"]: c["case_id"] for c in store.cases_report()}
    return World(store, tokens, names, cases)
