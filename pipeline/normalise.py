"""Evasion folding for chat text, run before any detector sees it.

`normalise` folds look-alike characters, invisible characters, leetspeak, spaced-out letters, number words,
split phone numbers, emoji and app code words into plain lowercase ASCII, so that detectors can use simple
regexes such as ``\\b(snapchat|discord)\\b``, ``\\bhow old\\b``, ``\\b1[0-7]\\b`` or ``\\d{7,}``. Every output
character remembers the span of the original text it came from, so evidence can be highlighted in the
message the user actually sent.

Stages, in order: per-character folding (NFKC, case, invisible characters, TR39 homoglyphs, transliteration,
emoji), whitespace, spaced letters ("s n a p"), leetspeak, letter runs ("heyyyy"), number words, split digits,
app code words. Each stage first checks cheaply whether it has anything to do, so a plain message costs a
handful of regex scans. The output is lowercase ASCII and a fixed point:
``normalise(normalise(x).text).text == normalise(x).text``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from unidecode import unidecode

__all__ = ["NormalisedText", "normalise"]


@dataclass(frozen=True, slots=True)
class NormalisedText:
    """Folded text plus, for each of its characters, the [start, end) span of the original it came from."""

    original: str
    text: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """Map the span [start, end) of `text` (e.g. a detector match) to the span of `original` it covers."""
        if not 0 <= start < end <= len(self.text):
            raise ValueError(f"span [{start}, {end}) is empty or outside text of length {len(self.text)}")
        return self.starts[start], max(self.ends[start:end])


# --------------------------------------------------------------------------------------------------------------
# Lexicon (data). Keys are already in folded form (lowercase ASCII, leet undone, letter runs of at most two).
# --------------------------------------------------------------------------------------------------------------

APP_ALIASES: Final[Mapping[str, str]] = MappingProxyType(
    {
        # canonical names map to themselves so that stretched or leet spellings ("snaaapchat") still resolve
        "snapchat": "snapchat",
        "snap": "snapchat",
        "sc": "snapchat",
        "discord": "discord",
        "disc": "discord",
        "dc": "discord",
        "instagram": "instagram",
        "insta": "instagram",
        "ig": "instagram",
        "gram": "instagram",
        "telegram": "telegram",
        "tele": "telegram",
        "tg": "telegram",
        "whatsapp": "whatsapp",
        "whatsap": "whatsapp",
        "watsapp": "whatsapp",
        "watsap": "whatsapp",
        "wa": "whatsapp",
        "kik": "kik",
        "signal": "signal",
        "tiktok": "tiktok",
        "tt": "tiktok",
    }
)
"""Single-token app names and code words -> canonical app name."""

CONTEXT_ALIASES: Final[frozenset[str]] = frozenset({"sc", "dc", "ig", "gram", "tele", "tg", "wa", "tt"})
"""Aliases that are also ordinary words or abbreviations ("ig" = "I guess", "dc" = Washington DC): they are
mapped only next to a messaging cue ("add me on sc", "my ig", "sc me", "dc server")."""

# fmt: off
PREVIOUS_CUES: Final[frozenset[str]] = frozenset(
    {
        "on", "my", "ur", "your", "yr", "via", "thru", "through", "use", "using", "add", "hmu", "dm", "msg",
        "message", "text", "got", "have", "has", "get", "download", "join", "onto", "to", "over",
    }
)
# fmt: on
NEXT_CUES: Final[frozenset[str]] = frozenset(
    {"me", "name", "username", "user", "handle", "id", "acc", "account", "addy", "link", "server", "dm", "dms"}
)

PHRASE_ALIASES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "the ghost app": "snapchat",
        "ghost app": "snapchat",
        "snap chat": "snapchat",
        "dizzy cord": "discord",
        "disc ord": "discord",
        "insta gram": "instagram",
        "tele gram": "telegram",
        "whats app": "whatsapp",
        "what's app": "whatsapp",
        "tik tok": "tiktok",
    }
)
"""Multi-word code words -> canonical app name; words may be joined by one of " ._-" or nothing."""

EMOJI_WORDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "👻": "snapchat",
        "📸": "instagram",
        "✈": "telegram",
        "📞": "phone",
        "☎": "phone",
        "📱": "phone",
        "🤫": "secret",
        "🤐": "secret",
        "🎁": "gift",
    }
)
"""Emoji that stand for a word; every other emoji becomes a word break."""

# fmt: off
NUMBER_WORDS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
        "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
        "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40,
        "fourty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
    }
)
# fmt: on
"""Number words -> value. A lone "one" stays a word ("no one", "that one"); in a run ("one four") it is 1."""

LEET: Final[Mapping[str, str]] = MappingProxyType(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a", "$": "s", "|": "l", "!": "i"}
)

# fmt: off
CHATSPEAK: Final[frozenset[str]] = frozenset(
    {
        "b4", "gr8", "l8", "l8r", "m8", "m8s", "w8", "w8ing", "h8", "h8r", "h8rs", "h8ers", "sk8", "sk8r",
        "sk8ing", "str8", "d8", "4ever", "4u", "4get", "any1", "some1", "no1", "every1", "ne1", "1ce",
    }
)
# fmt: on
"""Chat abbreviations with digits that are not leetspeak and stay as written."""

# fmt: off
UNIT_SUFFIXES: Final[frozenset[str]] = frozenset(
    {
        "st", "nd", "rd", "th", "s", "yo", "y", "yr", "yrs", "f", "m", "k", "am", "pm", "h", "hr", "hrs", "d",
        "x", "v", "p", "min", "mins", "mo", "g", "gb", "mb", "kb", "km", "mi", "ft", "cm", "lb", "lbs", "kg",
        "fps", "hz", "ever", "u",
    }
)
# fmt: on
"""After a leading digit these letters are a unit or ordinal ("14yo", "5pm", "1st"), not leetspeak."""

_CHAT_SINGLE_LETTERS: Final[frozenset[str]] = frozenset("abciknoruxy")
"""Single letters that are words in chat ("r u a girl"): a spaced run made only of them is not joined."""

_INVISIBLE: Final[frozenset[str]] = frozenset("\u00ad\u034f\u115f\u1160\u3164\uffa0\u2800")
"""Invisible characters whose Unicode category is not Cf/Mn (those are all dropped)."""

_EXTENDERS: Final[frozenset[str]] = frozenset(
    {"\ufe0e", "\ufe0f", "\u20e3", "\U0001f3fb", "\U0001f3fc", "\U0001f3fd", "\U0001f3fe", "\U0001f3ff"}
)
"""Variation selectors, the keycap mark and skin tones: dropped, but the span of the character they modify
grows to include them (so "1️⃣" highlights as a whole)."""

# --------------------------------------------------------------------------------------------------------------
# Character folding: NFKC, case, invisible characters, homoglyphs, transliteration.
# --------------------------------------------------------------------------------------------------------------

_NEUTRAL, _LATIN, _FOREIGN = 0, 1, 2


@functools.cache
def _homoglyph_table() -> dict[str, str]:
    """Non-ASCII character -> the ASCII character it imitates, from the Unicode TR39 confusables data.

    Letters only map to letters (Cyrillic "б" looks like "6" but is a letter); lowercase targets win. Digits
    are not taken from here but by value (`_fold_atom`): Bengali "৪" looks like 8 but is a 4.
    """
    from confusable_homoglyphs import utils  # loads a 2 MB JSON file: only on first use

    data: dict[str, list[dict[str, str]]] = utils.load("confusables.json")
    table: dict[str, str] = {}
    for char, entries in data.items():
        if len(char) != 1 or char.isascii():
            continue
        letter = unicodedata.category(char)[0] == "L"
        targets = [
            entry["c"]
            for entry in entries
            if len(entry["c"]) == 1 and "!" <= entry["c"] <= "~" and (entry["c"].isalpha() or not letter)
        ]
        if targets:
            best = min(targets, key=lambda t: (not t.islower(), not t.isupper(), not t.isdigit(), t))
            table[char] = best.lower()
    return table


def _fold_atom(ch: str) -> tuple[str, str, int]:
    """(output when imitating Latin, output when transliterating a foreign word, script kind) for one NFKC char."""
    word = EMOJI_WORDS.get(ch)
    if word is not None:
        return f" {word} ", f" {word} ", _NEUTRAL
    if ch.isascii():
        low = ch.lower()
        return low, low, _LATIN if ch.isalnum() else _NEUTRAL
    category = unicodedata.category(ch)
    if category in ("Cf", "Mn", "Me", "Mc") or ch in _INVISIBLE:
        return "", "", _NEUTRAL
    if "\U0001f1e6" <= ch <= "\U0001f1ff":  # regional indicators, used to spell words ("🇸🇳🇦🇵")
        letter = chr(ord(ch) - 0x1F1E6 + ord("a"))
        return letter, letter, _NEUTRAL
    if category[0] in "ZC" or category == "So":
        return " ", " ", _NEUTRAL
    if category == "Sc":
        return "$", "$", _NEUTRAL
    if category == "Nd":
        digit = str(unicodedata.digit(ch))
        return digit, digit, _NEUTRAL
    translit = "".join(c for c in unidecode(ch).lower() if " " <= c <= "~") or " "
    table = _homoglyph_table()
    spoof = table.get(ch) or table.get(ch.lower()) or translit
    if category[0] != "L":
        return spoof, translit, _NEUTRAL
    if unicodedata.name(ch, "").startswith("LATIN"):
        return spoof, translit, _LATIN
    return spoof, translit, _NEUTRAL if ch in table or ch.lower() in table else _FOREIGN


@functools.lru_cache(maxsize=16384)
def _fold_char(ch: str) -> tuple[str, str, int]:
    normal = unicodedata.normalize("NFKC", ch)
    if normal == ch:
        return _fold_atom(ch)
    atoms = [_fold_atom(c) for c in normal]
    kinds = {kind for _, _, kind in atoms}
    kind = _LATIN if _LATIN in kinds else _FOREIGN if _FOREIGN in kinds else _NEUTRAL
    return "".join(a[0] for a in atoms), "".join(a[1] for a in atoms), kind


_FOREIGN_WORD = re.compile(r"\S*[^\s\x00-\x7f]\S*|[^\x00-\x7f]+")  # a word or a run of Unicode spaces


def _fold_unicode(original: str) -> tuple[str, list[int], list[int]]:
    """Fold to lowercase ASCII, one original character at a time so every output char keeps its source.

    A word imitates Latin (homoglyphs map to what they look like: "snaр" -> "snap") unless it is written
    wholly in another script with letters that imitate nothing; then it is transliterated ("привет" -> "privet").
    """
    parts: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    pos = 0
    for word in _FOREIGN_WORD.finditer(original):
        base = word.start()
        if base > pos:
            parts.append(original[pos:base].lower())
            starts.extend(range(pos, base))
            ends.extend(range(pos + 1, base + 1))
        pos = word.end()
        seg = word.group()
        folds = [_fold_char(c) for c in seg]
        kinds = {kind for _, _, kind in folds}
        transliterate = _FOREIGN in kinds and _LATIN not in kinds
        last_source = -2  # index in seg of the char that produced the latest output
        last_count = 0
        for j, fold in enumerate(folds):
            if seg[j] in _EXTENDERS:
                if last_source == j - 1 and last_count:
                    for k in range(len(ends) - last_count, len(ends)):
                        ends[k] = base + j + 1
                    last_source = j
                continue
            out = fold[1] if transliterate else fold[0]
            if out:
                parts.append(out)
                starts.extend([base + j] * len(out))
                ends.extend([base + j + 1] * len(out))
            last_source, last_count = j, len(out)
    n = len(original)
    if n > pos:
        parts.append(original[pos:].lower())
        starts.extend(range(pos, n))
        ends.extend(range(pos + 1, n + 1))
    return "".join(parts), starts, ends


# --------------------------------------------------------------------------------------------------------------
# ASCII folds. Each stage finds edits (start, end, pieces) on the current text; a piece is (output, lo, hi):
# output None copies text[lo:hi] with its own spans, a string gets the span covering text[lo:hi].
# --------------------------------------------------------------------------------------------------------------

_Piece = tuple[str | None, int, int]
_Edit = tuple[int, int, list[_Piece]]


@dataclass(slots=True)
class _Folding:
    text: str
    starts: list[int]
    ends: list[int]

    def apply(self, edits: Iterable[_Edit]) -> bool:
        """Apply non-overlapping edits sorted by position; return whether anything changed."""
        text, starts, ends = self.text, self.starts, self.ends
        parts: list[str] = []
        new_starts: list[int] = []
        new_ends: list[int] = []
        pos = 0
        changed = False
        for a, b, pieces in edits:
            changed = True
            parts.append(text[pos:a])
            new_starts.extend(starts[pos:a])
            new_ends.extend(ends[pos:a])
            for out, lo, hi in pieces:
                if out is None:
                    parts.append(text[lo:hi])
                    new_starts.extend(starts[lo:hi])
                    new_ends.extend(ends[lo:hi])
                elif out:
                    parts.append(out)
                    new_starts.extend([starts[lo]] * len(out))
                    new_ends.extend([ends[hi - 1]] * len(out))
            pos = b
        if not changed:
            return False
        parts.append(text[pos:])
        new_starts.extend(starts[pos:])
        new_ends.extend(ends[pos:])
        self.text, self.starts, self.ends = "".join(parts), new_starts, new_ends
        return True


_WS_RUN = re.compile(r"[\x00-\x20\x7f]+")


def _collapse_whitespace(f: _Folding) -> bool:
    text = f.text  # ASCII here, so isprintable() is False exactly when a control character is present
    if text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " ":
        return False
    n = len(f.text)
    edits: list[_Edit] = []
    for m in _WS_RUN.finditer(f.text):
        a, b = m.span()
        if a == 0 or b == n:
            edits.append((a, b, []))
        elif b - a > 1 or m.group() != " ":
            edits.append((a, b, [(" ", a, a + 1)]))
    return f.apply(edits)


_UNIT = r"[a-z0-9@$](?![a-z0-9@$])"
# 3+ single characters, first and last a letter, split by one repeated separator: "s n a p", "d.i.s.c", "a/s/l"
_SPACED = re.compile(rf"(?<![a-z0-9@$])[a-z](?=([ ._/-]))(?:\1{_UNIT})+\1[a-z](?![a-z0-9@$])")


def _join_spaced_letters(f: _Folding) -> bool:
    """ "s n a p" -> "snap", "d.i.s.c" -> "disc"; "r u a girl" stays, its letters are chat words."""
    edits: list[_Edit] = []
    for m in _SPACED.finditer(f.text):
        a, b = m.span()
        units = f.text[a:b:2]
        if m.group(1) == " " and set(units) <= _CHAT_SINGLE_LETTERS and units not in APP_ALIASES:
            continue
        edits.append((a, b, [(None, i, i + 1) for i in range(a, b, 2)]))
    return f.apply(edits)


_LEET_CHAR = re.compile(r"[0-9@$|!]")
_LEET_HINT = re.compile(r"[a-z][0-9@$|!]|[0-9@$|!][a-z]")
_LEET_TOKEN = re.compile(r"[a-z0-9@$|]+(?:!+[a-z0-9@$|]+)*")  # "!" only inside: "hey!" is punctuation
_LEET_RUNS = re.compile(r"[a-z]+|[^a-z]+")
_PROTECTED = re.compile(r"[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+|https?://\S+")


def _protected_spans(text: str) -> list[tuple[int, int]]:
    """E-mail addresses and URLs: leetspeak and code words are not undone inside them."""
    return [m.span() for m in _PROTECTED.finditer(text)] if ("@" in text or "/" in text) else []


def _unleet_token(token: str) -> str:
    """Undo leetspeak in one token; digits at a token's edge only when the token is clearly leet.

    "sn4pch4t" -> "snapchat", "h3ll0" -> "hello", "0ld" -> "old", "$nap" -> "snap"; but "14yo", "m14", "ps5",
    "1v1", "5pm", "gr8" stay, because ages, times and games matter more than the odd missed evasion.
    """
    runs: list[str] = _LEET_RUNS.findall(token)
    out = list(runs)
    interior = False
    for i in range(1, len(runs) - 1):
        run = runs[i]
        if not run[0].isalpha() and all(c in LEET for c in run):
            out[i] = "".join(LEET[c] for c in run)
            interior = True
    edges = []
    if not runs[0].isalpha():
        edges.append(0)
    if len(runs) > 1 and not runs[-1].isalpha():
        edges.append(len(runs) - 1)
    for i in edges:
        run = runs[i]
        if not all(c in LEET for c in run) or (i == 0 and run[0] == "@") or run[-1] == "@":
            continue
        if interior:
            out[i] = "".join(LEET[c] for c in run)
            continue
        if len(edges) != 1 or len(runs) != 2 or len(run) != 1:
            continue
        letters = runs[1] if i == 0 else runs[0]
        if run in "$|" or run == "0" or (i == 0 and letters not in UNIT_SUFFIXES and run != "8"):
            out[i] = LEET[run]
    return "".join(out)


def _undo_leetspeak(f: _Folding) -> bool:
    text = f.text
    if not _LEET_CHAR.search(text) or not _LEET_HINT.search(text):
        return False
    protected = _protected_spans(text)
    edits: list[_Edit] = []
    for m in _LEET_TOKEN.finditer(text):
        token = m.group()
        if token.isalpha() or token in CHATSPEAK or not any(c.isalpha() for c in token):
            continue
        a, b = m.span()
        if any(pa < b and a < pb for pa, pb in protected):
            continue
        folded = _unleet_token(token)
        if folded != token:
            edits.append((a, b, [(c, a + k, a + k + 1) for k, c in enumerate(folded)]))
    return f.apply(edits)


_REPEAT3 = re.compile(r"([a-z])\1\1+")


def _shorten_repeats(f: _Folding) -> bool:
    """ "heyyyy" -> "heyy": letter runs of 3+ keep two; the second one spans the rest of the run."""
    return f.apply(
        (m.start(), m.end(), [(None, m.start(), m.start() + 1), (m.group(1), m.start() + 1, m.end())])
        for m in _REPEAT3.finditer(f.text)
    )


_TENS = "twenty|thirty|forty|fourty|fifty|sixty|seventy|eighty|ninety"
_TEENS = "ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen"
_UNITS = "zero|one|two|three|four|five|six|seven|eight|nine"
_NUMBER_WORD = rf"(?:(?:{_TENS})(?:[ -]?(?:one|two|three|four|five|six|seven|eight|nine)(?![a-z]))?|{_TEENS}|{_UNITS})"
_NUMBER_RUN = re.compile(rf"(?<![a-z0-9]){_NUMBER_WORD}(?:[ -]{_NUMBER_WORD})*(?![a-z0-9])")
_NUMBER_PART = re.compile("|".join(sorted(NUMBER_WORDS, key=len, reverse=True)))


def _number_words(f: _Folding) -> bool:
    """ "fifteen" -> "15", "twenty one" -> "21", "one four" -> "1 4" (joined into "14" by `_join_digits`)."""
    edits: list[_Edit] = []
    for m in _NUMBER_RUN.finditer(f.text):
        if m.group() == "one":
            continue
        words = [(w.group(), m.start() + w.start(), m.start() + w.end()) for w in _NUMBER_PART.finditer(m.group())]
        pieces: list[_Piece] = []
        i = 0
        while i < len(words):
            word, a, b = words[i]
            value = NUMBER_WORDS[word]
            if i > 0:
                pieces.append((None, words[i - 1][2], a))
            nxt = words[i + 1] if i + 1 < len(words) else None
            if value >= 20 and nxt is not None and 1 <= NUMBER_WORDS[nxt[0]] <= 9 and nxt[1] - b <= 1:
                pieces += [(str(value // 10), a, b), (str(NUMBER_WORDS[nxt[0]]), nxt[1], nxt[2])]
                i += 2
                continue
            pieces.append((str(value), a, b))
            i += 1
        edits.append((m.start(), m.end(), pieces))
    return f.apply(edits)


_DIGIT_HINT = re.compile(r"\d(?: ?[.-] ?|\)? )\d")
# not next to letters or leet symbols: joining "a@0 0@a" would make a new leet token
_DIGIT_RUN = re.compile(
    r"(?<![a-z0-9@$|])(?<![a-z0-9]!)(?<![0-9][.-])\d+(?:(?: ?[.-] ?|\)? )\d+)+(?![a-z0-9@$|])(?!![a-z0-9@$|])"
)
_DIGITS = re.compile(r"\d+")


def _join_digits(f: _Folding) -> bool:
    """Join digits split to dodge phone and age detectors: "5 5 5 - 1 2 3 4" -> "5551234", "1 4" -> "14".

    Single digits are joined when spaced ("1 4") or split by the same "." or "-" at least twice ("1.2.3"),
    so that "1.5", "13-15" and "10 12" keep their meaning. If the resulting groups hold 7-15 digits and one
    has 3+ digits, the whole sequence is a phone number and is joined. Deciding on the joined groups keeps
    the fold idempotent.
    """
    if not _DIGIT_HINT.search(f.text):
        return False
    edits: list[_Edit] = []
    for m in _DIGIT_RUN.finditer(f.text):
        groups = [g.span() for g in _DIGITS.finditer(f.text, m.start(), m.end())]
        merged: list[tuple[int, int]] = []  # ranges of `groups` indexes joined into one number
        i = 0
        while i < len(groups):
            j = i
            sep = None
            while j + 1 < len(groups) and groups[i][1] - groups[i][0] == 1 == groups[j + 1][1] - groups[j + 1][0]:
                this_sep = f.text[groups[j][1] : groups[j + 1][0]].strip() or " "
                if sep is not None and this_sep != sep:
                    break
                sep = this_sep
                j += 1
            if j - i + 1 < (2 if sep == " " else 3):
                j = i
            merged.append((i, j))
            i = j + 1
        sizes = [j - i + 1 if i != j else groups[i][1] - groups[i][0] for i, j in merged]
        if 7 <= sum(sizes) <= 15 and max(sizes) >= 3:
            merged = [(0, len(groups) - 1)]
        for i, j in merged:
            if i != j:
                edits.append((groups[i][0], groups[j][1], [(None, a, b) for a, b in groups[i : j + 1]]))
    return f.apply(edits)


_PHRASE = re.compile(
    "(?<![a-z0-9])(?:"
    + "|".join(
        "[ ._-]?".join(re.escape(word) for word in phrase.split())
        for phrase in sorted(PHRASE_ALIASES, key=len, reverse=True)
    )
    + ")(?![a-z0-9])"
)
_PHRASE_SEPARATORS = re.compile(r"[ ._'-]")
_PHRASE_TAIL = re.compile("|".join(sorted({re.escape(p.rsplit(" ", 1)[-1]) for p in PHRASE_ALIASES})))
_TOKEN = re.compile(r"[a-z0-9]+")
_ANY_RUN = re.compile(r"([a-z])\1+")


@functools.lru_cache(maxsize=65536)
def _alias_key(token: str) -> str | None:
    """The lexicon key a token spells, also when stretched: "snaap", "whatsap", "disccord"."""
    if token in APP_ALIASES:
        return token
    single = _ANY_RUN.sub(r"\1", token)
    return single if single != token and single in APP_ALIASES else None


@functools.cache
def _phrase_names() -> dict[str, str]:
    return {_PHRASE_SEPARATORS.sub("", phrase): name for phrase, name in PHRASE_ALIASES.items()}


def _app_names(f: _Folding) -> None:
    """Replace app code words by the canonical app name: phrases first ("snap chat"), then single tokens."""
    if _PHRASE_TAIL.search(f.text):
        names = _phrase_names()
        protected = _protected_spans(f.text)
        edits: list[_Edit] = []
        for m in _PHRASE.finditer(f.text):
            name = names[_PHRASE_SEPARATORS.sub("", m.group())]
            a, b = m.span()
            if name != m.group() and not any(pa < b and a < pb for pa, pb in protected):
                edits.append((a, b, [(name, a, b)]))
        f.apply(edits)
    text = f.text
    words: list[str] = _TOKEN.findall(text)
    if not any(_alias_key(word) for word in words):
        return
    tokens = [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]
    protected = _protected_spans(text)
    edits = []
    for i, (token, a, b) in enumerate(tokens):
        key = _alias_key(token)
        if key is None:
            continue
        name = APP_ALIASES[key]
        if name == token or any(pa < b and a < pb for pa, pb in protected):
            continue
        if key in CONTEXT_ALIASES:
            before = tokens[i - 1][0] if i > 0 else ""
            after = tokens[i + 1][0] if i + 1 < len(tokens) else ""
            if before not in PREVIOUS_CUES and after not in NEXT_CUES:
                continue
        edits.append((a, b, [(name, a, b)]))
    f.apply(edits)


# Chat repeats itself ("lol", "gg", "wanna play?"): folding is pure, so recent results are reused. Bounded: about
# 25 MB at typical message lengths.
NORMALISE_CACHE_SIZE = 16_384


@functools.lru_cache(maxsize=NORMALISE_CACHE_SIZE)
def normalise(text: str) -> NormalisedText:
    """Fold evasions out of one chat message; see the module docstring."""
    if text.isascii():
        n = len(text)
        folding = _Folding(text.lower(), list(range(n)), list(range(1, n + 1)))
    else:
        folding = _Folding(*_fold_unicode(text))
    _collapse_whitespace(folding)
    _spell_out(folding)
    # Number words can leave single digits that spell a word with their neighbours ("a four a" -> "a 4 a" ->
    # "a4a" -> "aaa"): repeat until nothing new is joined so the result is a fixed point.
    while _NUMBER_RUN.search(folding.text) and _number_words(folding) and _spell_out(folding):
        pass
    _join_digits(folding)
    _app_names(folding)
    _collapse_whitespace(folding)
    return NormalisedText(text, folding.text, tuple(folding.starts), tuple(folding.ends))


def _spell_out(f: _Folding) -> bool:
    """Join spaced letters, undo leetspeak, shorten letter runs; return whether the joining changed anything."""
    joined = bool(_SPACED.search(f.text)) and _join_spaced_letters(f)
    _undo_leetspeak(f)
    if _REPEAT3.search(f.text):
        _shorten_repeats(f)
    return joined
