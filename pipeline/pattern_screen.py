"""A screen in front of the rule book's text patterns: one multi-pattern scan per folded text tells which
patterns can match it at all, so Python's ``re`` searches only those. Most chat lines match no rule pattern. In a
replay of first-seen chat (2 cores, collector off) the rules' searches cost 13.6-16.4 µs per event, the screen
5.7-7.0 µs. The scan's cost hardly grows with the number of patterns, the searches' grows with each: for 22, 44
and 88 patterns one scan took 3.2, 2.3 and 4.7 µs per line, searching them all 47, 93 and 202 µs.

The scan runs Vectorscan (the ``hyperscan`` package) over a translation of each pattern made from Python's own
parse of it, never from its source text, so no difference between the two regex dialects can creep in:

- every zero-width assertion except ``\\b`` and ``\\B`` (lookarounds, ``^``, ``$``) is dropped, lazy, atomic and
  possessive forms become plain ones: each change can only widen what matches;
- characters, classes and ``\\d \\w \\s`` become explicit ASCII byte sets with Python's meaning, and ``\\b``/``\\B``
  agree between the two engines on ASCII text.

So the translated pattern matches every ASCII text the original matches (and perhaps a few more): a pattern the
screen rules out cannot match, and every answer and span still comes from ``re``. Texts that are not ASCII are not
screened (the folded text always is ASCII). A pattern the translation does not cover (backreferences, flags) or
that Vectorscan rejects is searched every time, as is everything when the package is missing.
"""

from __future__ import annotations

import ctypes
import logging
import re
import threading
import time
from collections.abc import Iterable
from re import _constants as sre  # type: ignore[attr-defined]  # Python's regex parser: no public API
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

log = logging.getLogger(__name__)

SCREEN_MEMO_LIMIT = 65_536  # texts remembered; cleared wholesale when full (answers never depend on it)
ALL_SLOTS = -1  # as a bit mask: every slot set

_ASCII = 128
_ASCII_SETS: dict[Any, frozenset[int]] = {
    sre.CATEGORY_DIGIT: frozenset(range(0x30, 0x3A)),
    sre.CATEGORY_WORD: frozenset([*range(0x30, 0x3A), *range(0x41, 0x5B), 0x5F, *range(0x61, 0x7B)]),
    # str.isspace() on ASCII: \t \n \v \f \r, the separators \x1c-\x1f, and the space
    sre.CATEGORY_SPACE: frozenset([*range(0x09, 0x0E), *range(0x1C, 0x21)]),
}
_EVERYTHING = frozenset(range(_ASCII))
_ASCII_SETS[sre.CATEGORY_NOT_DIGIT] = _EVERYTHING - _ASCII_SETS[sre.CATEGORY_DIGIT]
_ASCII_SETS[sre.CATEGORY_NOT_WORD] = _EVERYTHING - _ASCII_SETS[sre.CATEGORY_WORD]
_ASCII_SETS[sre.CATEGORY_NOT_SPACE] = _EVERYTHING - _ASCII_SETS[sre.CATEGORY_SPACE]
_DROPPED_ASSERTIONS = (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING, sre.AT_END, sre.AT_END_STRING)
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)


class UnscreenableError(ValueError):
    """The pattern uses something the translation does not cover; it is searched on every text instead."""


def widened_ascii_pattern(pattern: re.Pattern[str]) -> str:
    """The Vectorscan source of ``pattern``: it matches every ASCII text ``pattern`` matches (module docstring)."""
    if pattern.flags & ~re.UNICODE:
        raise UnscreenableError(f"flags {pattern.flags:#x}")
    return _sequence(sre_parse.parse(pattern.pattern))


def _sequence(items: Any) -> str:
    return "".join(_item(op, arg) for op, arg in items)


def _item(op: Any, arg: Any) -> str:
    if op is sre.LITERAL:
        return _byte_set({arg})
    if op is sre.NOT_LITERAL:
        return _byte_set(_EVERYTHING - {arg})
    if op is sre.ANY:
        return _byte_set(_EVERYTHING - {0x0A})  # no DOTALL: flags are refused above
    if op is sre.IN:
        return _byte_set(_class_members(arg))
    if op is sre.BRANCH:
        return "(?:" + "|".join(_sequence(branch) for branch in arg[1]) + ")"
    if op is sre.SUBPATTERN:
        _group, add_flags, del_flags, body = arg
        if add_flags or del_flags:
            raise UnscreenableError("inline flags")
        return f"(?:{_sequence(body)})"
    if op is sre.ATOMIC_GROUP:
        return f"(?:{_sequence(arg)})"
    if op in _REPEATS:
        low, high, body = arg
        bound = f"{{{low},}}" if high == sre.MAXREPEAT else f"{{{low},{high}}}"
        return f"(?:{_sequence(body)}){bound}"
    if op is sre.AT:
        if arg is sre.AT_BOUNDARY:
            return r"\b"
        if arg is sre.AT_NON_BOUNDARY:
            return r"\B"
        if arg in _DROPPED_ASSERTIONS:
            return ""
    if op in (sre.ASSERT, sre.ASSERT_NOT):
        return ""
    raise UnscreenableError(f"{op} {arg!r}")


def _class_members(items: Any) -> frozenset[int]:
    members: set[int] = set()
    negate = False
    for op, arg in items:
        if op is sre.NEGATE:
            negate = True
        elif op is sre.LITERAL:
            members.add(arg)
        elif op is sre.RANGE:
            members.update(range(arg[0], min(arg[1], _ASCII - 1) + 1))
        elif op is sre.CATEGORY and arg in _ASCII_SETS:
            members |= _ASCII_SETS[arg]
        else:
            raise UnscreenableError(f"class member {op} {arg!r}")
    return _EVERYTHING - members if negate else frozenset(members)


def _byte_set(members: set[int] | frozenset[int]) -> str:
    ascii_members = sorted(m for m in members if m < _ASCII)
    if not ascii_members:
        raise UnscreenableError("a character that cannot occur in ASCII text")
    if len(ascii_members) == 1:
        return f"\\x{ascii_members[0]:02x}"
    runs: list[str] = []
    start = previous = ascii_members[0]
    for member in [*ascii_members[1:], -1]:
        if member != previous + 1:
            runs.append(f"\\x{start:02x}" if start == previous else f"\\x{start:02x}-\\x{previous:02x}")
            start = member
        previous = member
    return "[" + "".join(runs) + "]"


class PatternScreen:
    """The screen of one rule book. ``add`` each pattern while the book compiles, then ``seal`` once; ``possible``
    answers, per text, a bit mask of the slots whose pattern may match it (a clear bit: it cannot).

    ``seal`` builds the scan database on a background thread (about 1 s for the shipped packs; Vectorscan's
    compiler releases the GIL), so loading a rule book does not wait for it: until it is ready every pattern is
    searched, which gives the same answers."""

    def __init__(self) -> None:
        self._sources: list[str | None] = []  # per slot: the Vectorscan source, or None when searched every time
        self._sealed = False
        self._ready: tuple[Any, int] | None = None  # (database, mask of slots it does not cover), once built
        self._built = threading.Event()
        self._memo: dict[str, int] = {}
        self._scratch = threading.local()  # Vectorscan scratch space may not be shared between threads

    def add(self, pattern: re.Pattern[str]) -> int:
        """Register a pattern; returns its slot."""
        if self._sealed:
            raise RuntimeError("the screen is sealed")
        try:
            source: str | None = widened_ascii_pattern(pattern)
        except (UnscreenableError, re.error):
            source = None
        self._sources.append(source)
        return len(self._sources) - 1

    def seal(self, *, background: bool = True) -> None:
        """Build the scan database once every pattern is added (without Vectorscan nothing is screened)."""
        self._sealed = True
        if background:
            threading.Thread(target=self._build, name="pattern-screen", daemon=True).start()
        else:
            self._build()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until ``seal``'s build is over (for tests and benchmarks); whether it is."""
        return self._built.wait(timeout)

    def _build(self) -> None:
        started = time.perf_counter()
        try:
            self._ready = _database(self._sources)
            _return_freed_heap()
        finally:
            self._built.set()
        context = {"patterns": len(self._sources), "screened": self.screened,
                   "seconds": round(time.perf_counter() - started, 2)}
        if self._sources and self._ready is None:
            log.warning("rule patterns are not screened (Vectorscan missing or refused them): every pattern is "
                        "searched on every text, with the same answers, more slowly", extra={"ctx": context})
        else:
            log.info("rule pattern screen built (patterns not screened are searched on every text)",
                     extra={"ctx": context})

    def possible(self, text: str) -> int:
        """Bit mask of the slots whose pattern may match ``text``; memoised (chat lines repeat)."""
        found = self._memo.get(text)
        if found is not None:
            return found
        ready = self._ready
        if ready is None or not text.isascii():
            return ALL_SLOTS
        return self._scan(ready, text)

    def prime(self, texts: Iterable[str]) -> None:
        """Scan a batch's texts in one go: between the decisions' other work each scan finds the database out of
        the CPU caches, and costs about twice as much (measured on 2 cores)."""
        for text in texts:
            self.possible(text)

    def _scan(self, ready: tuple[Any, int], text: str) -> int:
        database, found = ready
        matched: list[int] = []
        database.scan(text.encode("ascii"), match_event_handler=_collect, context=matched,
                      scratch=self._thread_scratch(database))
        for slot in matched:
            found |= 1 << slot
        if len(self._memo) >= SCREEN_MEMO_LIMIT:
            self._memo.clear()
        self._memo[text] = found
        return found

    def _thread_scratch(self, database: Any) -> Any:
        scratch = getattr(self._scratch, "space", None)
        if scratch is None:
            import hyperscan

            scratch = self._scratch.space = hyperscan.Scratch(database)
        return scratch

    @property
    def screened(self) -> int:
        """How many of the added patterns the scan covers now (the others are searched on every text)."""
        ready = self._ready
        if ready is None:
            return 0
        return sum(1 for slot in range(len(self._sources)) if not (ready[1] >> slot) & 1)


def _database(sources: list[str | None]) -> tuple[Any, int] | None:
    """A block-mode database of the translated patterns, and the mask of the slots it leaves out."""
    try:
        import hyperscan
    except ImportError:
        return None
    flags = hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_ALLOWEMPTY
    slots = [i for i, source in enumerate(sources) if source is not None]
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    try:
        if slots:
            _compile(hyperscan, database, sources, slots, flags)
    except hyperscan.error:
        # One pattern it rejects fails the whole database: keep the ones it takes, search the others always.
        slots = [i for i in slots if _compiles(hyperscan, sources[i], flags)]
        if slots:
            _compile(hyperscan, database, sources, slots, flags)
    if not slots:
        return None
    left_out = ALL_SLOTS
    for slot in slots:
        left_out &= ~(1 << slot)
    return database, left_out


def _compile(hyperscan: Any, database: Any, sources: list[str | None], slots: list[int], flags: int) -> None:
    database.compile(expressions=[str(sources[i]).encode("ascii") for i in slots], ids=slots, elements=len(slots),
                     flags=flags)


def _return_freed_heap() -> None:
    """Vectorscan's compiler frees about 25 MB when it is done, which glibc keeps in the process (measured: RSS
    +28 MB per worker); hand it back to the system. A no-op where the C library has no ``malloc_trim``."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return
    trim(0)


def _collect(slot: int, _start: int, _end: int, _flags: int, matched: list[int]) -> None:
    matched.append(slot)


def _compiles(hyperscan: Any, source: str | None, flags: int) -> bool:
    try:
        _compile(hyperscan, hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK), [source], [0], flags)
    except hyperscan.error:
        return False
    return True
