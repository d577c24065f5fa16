"""The personal-data guard of the DSA and transparency exports: before anything is written, every output text is
searched for the user ids, conversation ids and message texts of the cases it covers. A hit is a bug (the
exports are built from rule descriptions, enumerations and counts), so it stops the export.

Message texts shorter than ``MIN_TEXT`` characters are not searched: "ok" or "11" also occur in generic text
and numbers, and a text that short identifies no one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance.errors import PersonalDataLeakError
from review.models import CaseRow, CaseSubjectRow, MessageRow

MIN_TEXT = 12
CHUNK = 500
ID_EDGE = r"A-Za-z0-9_\-"


@dataclass(frozen=True, slots=True)
class PersonalDataGuard:
    identifiers: frozenset[str]
    texts: tuple[tuple[str, str], ...]  # (event id, text)

    @classmethod
    def for_cases(cls, session: Session, case_ids: Iterable[str]) -> PersonalDataGuard:
        """Everything personal the store holds about the given cases' conversations."""
        ids: set[str] = set()
        texts: dict[str, str] = {}
        wanted = sorted(set(case_ids))
        convs: set[str] = set()
        for start in range(0, len(wanted), CHUNK):
            part = wanted[start:start + CHUNK]
            convs.update(session.scalars(select(CaseRow.conversation_id).where(CaseRow.id.in_(part))))
            ids.update(session.scalars(select(CaseSubjectRow.subject).where(CaseSubjectRow.case_id.in_(part))))
        ordered = sorted(convs)
        for start in range(0, len(ordered), CHUNK):
            part = ordered[start:start + CHUNK]
            for m in session.execute(select(MessageRow.event_id, MessageRow.sender_id, MessageRow.target_id,
                                            MessageRow.text).where(MessageRow.conversation_id.in_(part))):
                ids.add(m.sender_id)
                if m.target_id is not None:
                    ids.add(m.target_id)
                if m.text is not None and len(m.text.strip()) >= MIN_TEXT:
                    texts[m.event_id] = m.text.strip()
        ids.update(convs)
        return cls(frozenset(i for i in ids if i), tuple(sorted(texts.items())))

    def _pattern(self) -> re.Pattern[str] | None:
        if not self.identifiers:
            return None
        alternatives = "|".join(re.escape(i) for i in sorted(self.identifiers, key=lambda s: (-len(s), s)))
        return re.compile(f"(?<![{ID_EDGE}])(?:{alternatives})(?![{ID_EDGE}])")

    def check(self, outputs: Sequence[tuple[str, str]]) -> None:
        """Raise ``PersonalDataLeakError`` naming the first output (name, text) that holds personal data."""
        pattern = self._pattern()
        for name, text in outputs:
            if pattern is not None and pattern.search(text):
                raise PersonalDataLeakError(f"{name} contains a user or conversation id of the exported cases; "
                                            "nothing was written")
            for event_id, message in self.texts:
                if message in text:
                    raise PersonalDataLeakError(f"{name} contains the text of message {event_id}; nothing was "
                                                "written")


__all__ = ["MIN_TEXT", "PersonalDataGuard"]
