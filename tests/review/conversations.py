"""Small event files for review tests. Cases always come from the real decision core (pipeline.replay), never
from hand-made rows."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.decision import Detectors
from pipeline.replay import ReplayResult, replay
from pipeline.rulebook import load_rulebook

START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)

# (sender, text): "a" = the adult, "k" = the child
MEETING = [("a", "hey nice build"), ("k", "thanks"), ("a", "ur so mature, not like other kids"),
           ("a", "how old are you?"), ("k", "11"), ("a", "don't tell ur parents we talk ok"),
           ("a", "add me on snap"), ("a", "we could meet at the mall saturday")]
SECRECY = [("a", "hey"), ("k", "hi"), ("a", "ur so mature, not like other kids"),
           ("a", "don't tell ur parents we talk ok"), ("a", "add me on snap")]
MILD = [("a", "hey"), ("k", "hi"), ("a", "delete our chats after ok"), ("a", "you can trust me")]
LATER = [("a", "whats ur discord"), ("a", "we could meet at the mall saturday")]
BANDS = {"kid": "9_12", "teen": "13_15", "small": "under_9"}


def _user(user_id: str, band: str) -> dict[str, str]:
    return {"user_id": user_id, "age_band": band, "age_verified": "self_declared"}


def conversation(conv: str, script: Sequence[tuple[str, str]], *, adult: str = "adult-1", child: str = "kid-1",
                 band: str = "9_12", start: datetime = START, first: int = 0) -> list[dict[str, Any]]:
    grown, young = _user(adult, "21_plus"), _user(child, band)
    out = []
    for i, (who, text) in enumerate(script, start=first):
        actor, target = (grown, young) if who == "a" else (young, grown)
        out.append({"schema_version": 1, "event_id": f"{conv}-e{i}", "type": "chat_message",
                    "ts": (start + timedelta(minutes=i)).isoformat().replace("+00:00", "Z"), "platform": "test",
                    "channel": {"kind": "direct", "id": conv}, "actor": actor, "target": target, "text": text})
    return out


def write(path: Path, events: Iterable[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return path


def detectors() -> Detectors:
    return Detectors(rules=load_rulebook(None))


def run(path: Path, sink: Any = None) -> ReplayResult:
    return replay(path, detectors(), sink=sink, keep_decisions=True)


def mixed_queue() -> list[dict[str, Any]]:
    """Four conversations: one escalated (meeting request), three ordinary ones of different urgency."""
    return [
        *conversation("dm-meet", MEETING, adult="adult-1", child="kid-1"),
        *conversation("dm-secret", SECRECY, adult="adult-2", child="kid-2", band="13_15"),
        *conversation("dm-small", SECRECY, adult="adult-2", child="kid-3", band="under_9"),
        *conversation("dm-mild", MILD, adult="adult-3", child="kid-4", band="13_15"),
    ]


def many(count: int) -> list[dict[str, Any]]:
    return [e for i in range(count) for e in conversation(f"dm-{i:03d}", SECRECY, adult=f"adult-{i}",
                                                           child=f"kid-{i}", band="13_15")]
