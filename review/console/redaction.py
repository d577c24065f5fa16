"""PII and contact details in transcripts: found, redacted by default, revealed one message at a time (audited).

Detection deliberately over-matches: a redacted word costs the moderator one keypress, a leaked phone number
of a child cannot be taken back. Patterns run on the original text and on its evasion-folded form
(``pipeline.normalise``: "s n a p", leetspeak, spelt-out or split digits), whose spans map back to the original.
Phone numbers are found by digit runs rather than with a phone-number library: libphonenumber validates per
region and drops partial, foreign or obfuscated numbers, which is the opposite of what redaction needs.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from audit.log import PendingEntry
from pipeline.normalise import APP_ALIASES, normalise
from review.access import Permission, Principal
from review.errors import CaseNotFoundError
from review.evidence import Segment, TranscriptMessage, message_detail
from review.queue import check_visible, load_case
from review.store import SqlCaseStore

LABELS: Final = {"phone": "phone number", "email": "email address", "handle": "username on another app",
                 "address": "street address", "link": "link"}

_APPS = "|".join(sorted({*APP_ALIASES.values(), "skype", "wechat", "viber", "steam", "xbox", "psn", "roblox",
                          "twitch", "youtube", "twitter", "facebook", "fb", "messenger", "imessage", "line",
                          "gamertag", "epic"}, key=len, reverse=True))
_HANDLE = r"@?[a-z0-9_][a-z0-9_.#-]{1,31}"
_STREET = (r"(?:street|st|road|rd|avenue|ave|lane|ln|drive|dr|close|way|court|ct|boulevard|blvd|place|pl|"
           r"crescent|cres|terrace|gardens|grove|row|square|sq|parkway|pkwy|highway|hwy)\b\.?")
# Words after "snapchat is ..." that are not a username; everything else there is treated as one.
_NOT_HANDLES: Final = frozenset({"better", "easier", "more", "private", "safer", "fine", "good", "ok", "okay",
                                 "cool", "the", "a", "an", "down", "dead", "blocked", "banned", "not", "so",
                                 "way", "instead", "me", "my", "ur", "your", "it", "is", "on", "and", "or",
                                 "too", "for", "what", "whats", "u", "you", "name", "username", "id", "tag"})

# (kind, pattern, group holding the PII); on the original text, case-insensitive
_RAW: Final[tuple[tuple[str, re.Pattern[str], int | str], ...]] = (
    ("email", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.I), 0),
    ("link", re.compile(r"\b(?:https?://|www\.)\S+|\b(?:discord\.gg|t\.me|wa\.me|snapchat\.com/add|"
                        r"instagram\.com|tiktok\.com/@?)/?\S+", re.I), 0),
    ("handle", re.compile(r"(?<![\w@.])@[a-z0-9_][a-z0-9_.]{1,30}", re.I), 0),
    ("handle", re.compile(r"\b[a-z0-9_.]{2,32}#\d{4}\b", re.I), 0),
    ("phone", re.compile(r"\+?\(?\d[\d\s().-]{5,}\d"), 0),  # kept only with 7+ digits, see _digits_ok
    ("address", re.compile(rf"\b\d{{1,5}}[a-z]?,?\s+(?:[a-z'-]+\s+){{0,3}}?{_STREET}", re.I), 0),
    ("address", re.compile(r"\b(?:apt|apartment|flat|unit|suite)\s*#?\s*\d+[a-z]?\b", re.I), 0),
    ("address", re.compile(r"\b[a-z]{1,2}\d[a-z\d]?\s*\d[a-z]{2}\b", re.I), 0),  # UK postcode
    ("address", re.compile(r"\b[A-Z]{2}\s+\d{5}(?:-\d{4})?\b"), 0),  # US state + ZIP
)
# On the folded text (lowercase ASCII, app code words resolved, digits joined)
_FOLDED: Final[tuple[tuple[str, re.Pattern[str], int | str], ...]] = (
    ("phone", re.compile(r"\+?\d{7,}"), 0),
    ("handle", re.compile(rf"\b(?:{_APPS})\b(?:\s*(?:user ?name|user|name|tag|handle|id|acc(?:ount)?|addy|is|"
                          rf"=|:|-)\s*)+(?P<h>{_HANDLE})"), "h"),
    ("handle", re.compile(rf"\b(?:add|follow|friend|find)\s+(?P<h>{_HANDLE})\s+(?:on|in)\s+(?:{_APPS})\b"), "h"),
    ("email", re.compile(r"\b[a-z0-9_+-]+(?:\s*(?:\.|dot)\s*[a-z0-9_+-]+)*\s*(?:\(at\)|\[at\]|\sat\s)\s*"
                         r"[a-z0-9-]+\s*(?:\.|\(dot\)|\[dot\]|\sdot\s)\s*(?:com|net|org|co|uk|de|fr|io|me|edu)\b"), 0),
    ("address", re.compile(rf"\b(?:live|living|house|home|address)\s+(?:is\s+)?(?:at|on|in)\s+"
                           rf"(?P<a>(?:[a-z'-]+\s+){{1,3}}{_STREET})"), "a"),
)


@dataclass(frozen=True, slots=True)
class Redaction:
    start: int
    end: int
    kind: str


@dataclass(frozen=True, slots=True)
class Piece:
    """A run of a message as the console draws it: plain, highlighted evidence, or a redaction placeholder."""

    text: str
    evidence: bool
    reasons: tuple[str, ...]
    redacted: str | None  # the kind, e.g. "phone"; None = shown as written


def _digits_ok(text: str) -> bool:
    return sum(ch.isdigit() for ch in text) >= 7


def find_pii(text: str) -> tuple[Redaction, ...]:
    """Spans of the original text to redact, merged where they touch or overlap."""
    found: list[Redaction] = []
    for kind, pattern, group in _RAW:
        for m in pattern.finditer(text):
            if kind == "phone" and not _digits_ok(m.group()):
                continue
            found.append(Redaction(m.start(group), m.end(group), kind))
    folded = normalise(text)
    for kind, pattern, group in _FOLDED:
        for m in pattern.finditer(folded.text):
            start, end = m.span(group)
            if start >= end or (kind == "handle" and m.group(group).lstrip("@") in _NOT_HANDLES):
                continue
            a, b = folded.original_span(start, end)
            found.append(Redaction(a, b, kind))
    merged: list[Redaction] = []
    for r in sorted(found, key=lambda r: (r.start, -r.end)):
        if merged and r.start <= merged[-1].end:
            last = merged[-1]
            merged[-1] = Redaction(last.start, max(last.end, r.end), last.kind)
        else:
            merged.append(r)
    return tuple(merged)


def pieces(segments: Sequence[Segment], redactions: Sequence[Redaction]) -> tuple[Piece, ...]:
    """Overlay redactions on the evidence segments: each redaction becomes one placeholder piece that keeps
    the evidence marking of the text it hides."""
    out: list[Piece] = []
    pos = 0
    for seg in segments:
        seg_end = pos + len(seg.text)
        cuts = sorted({pos, seg_end, *(x for r in redactions for x in (r.start, r.end) if pos < x < seg_end)})
        for a, b in itertools.pairwise(cuts):
            covering = next((r for r in redactions if r.start <= a and b <= r.end), None)
            if covering is None:
                out.append(Piece(seg.text[a - pos:b - pos], seg.evidence, seg.reasons, None))
            elif a == covering.start or not out or out[-1].redacted is None:
                out.append(Piece(covering.kind, seg.evidence, seg.reasons, covering.kind))
            else:  # the same redaction continuing into the next segment: widen the placeholder's marking
                last = out[-1]
                out[-1] = Piece(last.text, last.evidence or seg.evidence,
                                tuple(sorted({*last.reasons, *seg.reasons})), last.redacted)
        pos = seg_end
    return tuple(out)


def mask(text: str) -> str:
    """Text with every PII span replaced by ``[kind]`` (rule details, exemplars: shown, never revealable)."""
    out, pos = [], 0
    for r in find_pii(text):
        out.append(text[pos:r.start])
        out.append(f"[{r.kind}]")
        pos = r.end
    out.append(text[pos:])
    return "".join(out)


def reveal_message(*, store: SqlCaseStore, principal: Principal, case_id: str, event_id: str,
                   now: datetime) -> TranscriptMessage:
    """The message unredacted, after recording who revealed which message of which case, and when.

    The entry is ``case.pii_revealed`` on ``case:<id>``; its ``versions`` name the message and the kinds of
    detail it held, so the trail shows what was revealed without holding the detail itself."""
    principal.require(Permission.READ_CASES)
    with store.transaction() as session:
        case = load_case(session, case_id)
        check_visible(principal, case)
        message = message_detail(session, case_id, case.conversation_id, event_id)
        if message is None:
            raise CaseNotFoundError(f"case {case_id} has no message {event_id}")
        kinds = sorted({r.kind for r in find_pii(message.text or "")})
        store.audit.append(session.connection(), [PendingEntry(
            "case.pii_revealed", f"case:{case_id}", actor_id=principal.name,
            payload={"case_id": case_id, "event_id": event_id, "kinds": kinds, "role": principal.role.value,
                     "at": now.isoformat()},
            versions={"message": event_id, "kinds": ",".join(kinds)})])
        return message
