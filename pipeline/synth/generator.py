"""Seeded generator of labelled synthetic conversations as event-v1 records.

Used by tests, the demo, classifier training (``bank="train"``), evaluation (``bank="holdout"``, different
wording) and benchmarks. Deterministic: the same arguments give byte-identical output (one
``random.Random(seed)``, no global random state, no wall clock, no iteration over hash-ordered sets).

Content policy (see ARCHITECTURE.md): grooming is depicted only through its documented, non-explicit process
signals (trust building, age and supervision probing, gifts, secrecy, isolation, moving to other apps, meeting
or picture requests, an adult contacting many minors). Nothing sexual is ever generated.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pipeline.synth.phrasebank import BankName, PhraseBank, load_bank, render

GENERATOR_NAME = "lifeguard-synth"
LABELS_VERSION = 1
PLATFORM = "blockverse"
CURRENCY = "gems"
DEFAULT_START = datetime(2026, 3, 2, 15, 0, 0, tzinfo=UTC)

GROOMING_KINDS: tuple[str, ...] = (
    "progressive",
    "fast_offplatform",
    "gift_lure",
    "age_liar",
    "obfuscated",
    "fanout",
    "unknown_age",
)
BENIGN_KINDS: tuple[str, ...] = (
    "teen_peers_discord",
    "kids_game_secret",
    "adults_chatting",
    "creator_helping",
    "tutor_help",
    "parent_child",
    "gaming_chatter",
    "trading",
)
#: Share of each kind within its label (grooming / benign). Every kind gets at least one conversation once
#: there are enough conversations of that label.
_GROOMING_WEIGHTS: dict[str, float] = {
    "progressive": 0.24,
    "fast_offplatform": 0.12,
    "gift_lure": 0.13,
    "age_liar": 0.12,
    "obfuscated": 0.14,
    "fanout": 0.15,
    "unknown_age": 0.10,
}
_BENIGN_WEIGHTS: dict[str, float] = {
    "teen_peers_discord": 0.15,
    "kids_game_secret": 0.14,
    "adults_chatting": 0.12,
    "creator_helping": 0.11,
    "tutor_help": 0.07,
    "parent_child": 0.11,
    "gaming_chatter": 0.18,
    "trading": 0.12,
}
MALFORMED_KINDS: tuple[str, ...] = (
    "not_utf8",
    "not_json",
    "json_array",
    "missing_field",
    "wrong_schema_version",
    "chat_without_text",
    "bad_enum",
    "text_too_long",
)

_STREAM_SPAN_S = 72 * 3600  # conversations start at random offsets over three days
_FANOUT_SPAN_S = 22 * 3600  # a fan-out adult opens all its conversations within 24 h
_LOCALES: tuple[str | None, ...] = ("en-US", "en-US", "en-GB", "en-CA", "en-AU", "en-IE", None)
_AGES: dict[str, tuple[int, int]] = {
    "under_9": (6, 8),
    "9_12": (9, 12),
    "13_15": (13, 15),
    "16_17": (16, 17),
    "18_20": (18, 20),
    "21_plus": (21, 45),
}
_MINOR_BANDS = ("under_9", "9_12", "13_15", "16_17")
_VERIFIED = ("none", "self_declared", "parental", "facial_estimation", "id_document")
_W_CHILD = (0.25, 0.35, 0.28, 0.12, 0.0)
_W_TEEN = (0.2, 0.45, 0.15, 0.15, 0.05)
_W_GROOMER = (0.45, 0.45, 0.0, 0.07, 0.03)
_W_ADULT = (0.15, 0.35, 0.0, 0.25, 0.25)
_W_STAFF = (0.0, 0.2, 0.0, 0.3, 0.5)
_AREA_CODES = ("201", "303", "415", "512", "617", "702", "808", "919")


@dataclass(frozen=True)
class SynthResult:
    """What ``generate`` returns.

    ``events``: event-v1 dicts sorted by ts (conversations interleaved like a real stream).
    ``labels``: ``{"generator", "version", "seed", "bank", "conversations": {conv_id: {...}}}``.
    ``malformed``: the malformed raw records requested (not in ``events``).
    """

    events: list[dict[str, Any]]
    labels: dict[str, Any]
    malformed: list[bytes]


@dataclass(frozen=True)
class _Person:
    user_id: str
    age_band: str
    age_verified: str
    account_created: str
    nickname: str
    age: int  # true age in years ({age}, {adult_age}); may differ from age_band (age_liar, unknown_age)
    handle: str
    phone: str
    locale: str | None
    parent_of: tuple[str, ...] = ()

    def as_user(self) -> dict[str, Any]:
        user: dict[str, Any] = {
            "user_id": self.user_id,
            "age_band": self.age_band,
            "age_verified": self.age_verified,
            "account_created": self.account_created,
        }
        if self.parent_of:
            user["parent_of"] = list(self.parent_of)
        return user


@dataclass
class _Pending:
    t: int  # seconds after start
    conv: int
    seq: int
    event: dict[str, Any]
    stage: str | None  # chat_message only
    critical: bool


@dataclass
class _Conv:
    index: int
    conv_id: str
    channel_kind: str
    kind: str
    label: str
    subjects: list[str]
    experience_id: str | None
    server_id: str | None
    values: dict[str, str]  # per-conversation filler choices
    members: int
    t: int
    events: list[_Pending] = field(default_factory=list)
    used: set[tuple[str, str]] = field(default_factory=set)  # membership tests only (never iterated)


def _fmt(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _apportion(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Largest-remainder split of ``total`` by ``weights``; every key gets >= 1 when total allows it."""
    wsum = sum(weights.values())
    exact = {k: total * w / wsum for k, w in weights.items()}
    counts = {k: int(v) for k, v in exact.items()}
    by_remainder = sorted(weights, key=lambda k: (-(exact[k] - counts[k]), list(weights).index(k)))
    for k in by_remainder[: total - sum(counts.values())]:
        counts[k] += 1
    if total >= len(weights):
        for k in weights:
            if counts[k] == 0:
                donor = max(weights, key=lambda d: counts[d])
                counts[donor] -= 1
                counts[k] += 1
    return counts


class _Builder:
    def __init__(self, *, seed: int, bank: PhraseBank, start: datetime) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.bank = bank
        self.start = start
        self.convs: list[_Conv] = []
        self._used_ids: set[str] = set()
        self._seq = 0
        self._obf = bank.obfuscation

    # ---- people and conversations -------------------------------------------------------------------
    def _weighted(self, options: Sequence[str], weights: Sequence[float]) -> str:
        return self.rng.choices(list(options), weights=list(weights), k=1)[0]

    def _uid(self, prefix: str = "u") -> str:
        while True:
            uid = f"{prefix}{self.rng.randrange(1_000_000, 10_000_000)}"
            if uid not in self._used_ids:
                self._used_ids.add(uid)
                return uid

    def person(
        self,
        band: str,
        verified_weights: Sequence[float],
        *,
        age: int | None = None,
        account_days: tuple[int, int] = (30, 1500),
        locale: str | Literal["random"] | None = "random",
        parent_of: tuple[str, ...] = (),
        verified: str | None = None,
    ) -> _Person:
        rng = self.rng
        if age is None:
            lo, hi = _AGES[band]
            age = rng.randint(lo, hi)
        created = self.start - timedelta(days=rng.randint(*account_days), seconds=rng.randint(0, 86_399))
        nickname = rng.choice(self.bank.fillers["name"])
        handle = f"{nickname}{rng.choice(self.bank.fillers['handle_suffixes'])}"
        phone = f"{rng.choice(_AREA_CODES)}-555-01{rng.randint(0, 99):02d}"  # fictional 555-01xx range
        return _Person(
            user_id=self._uid(),
            age_band=band,
            age_verified=verified or self._weighted(_VERIFIED, verified_weights),
            account_created=_fmt(created),
            nickname=nickname,
            age=age,
            handle=handle,
            phone=phone,
            locale=rng.choice(_LOCALES) if locale == "random" else locale,
            parent_of=parent_of,
        )

    def minor(
        self,
        bands: Sequence[str] = _MINOR_BANDS,
        weights: Sequence[float] = (0.08, 0.42, 0.35, 0.15),
        locale: str | Literal["random"] | None = "random",
    ) -> _Person:
        band = self._weighted(bands, weights)
        return self.person(band, _W_TEEN if band in ("13_15", "16_17") else _W_CHILD, locale=locale)

    def groomer(self, locale: str | Literal["random"] | None = "random") -> _Person:
        band = "18_20" if self.rng.random() < 0.3 else "21_plus"
        days = (1, 45) if self.rng.random() < 0.7 else (60, 1200)
        return self.person(band, _W_GROOMER, account_days=days, locale=locale)

    def open(
        self,
        kind: str,
        label: str,
        channel_kind: str,
        members: Sequence[_Person],
        *,
        subjects: Sequence[str] = (),
        t0: int | None = None,
    ) -> _Conv:
        rng = self.rng
        if channel_kind == "direct":
            a, b = sorted(p.user_id for p in members[:2])
            conv_id = f"dm-{a}-{b}"
            exp: str | None = None
            srv: str | None = None
        else:
            conv_id = self._uid("grp-")
            exp = f"exp-{rng.randint(1000, 9999)}"
            srv = f"srv-{rng.getrandbits(32):08x}"
        fill = self.bank.fillers
        values = {key: rng.choice(fill[key]) for key in ("game", "item", "app", "city", "place", "ingame_place", "job")}
        conv = _Conv(
            index=len(self.convs),
            conv_id=conv_id,
            channel_kind=channel_kind,
            kind=kind,
            label=label,
            subjects=list(subjects),
            experience_id=exp,
            server_id=srv,
            values=values,
            members=len(members),
            t=rng.randint(0, _STREAM_SPAN_S) if t0 is None else t0,
        )
        self.convs.append(conv)
        return conv

    # ---- events ----------------------------------------------------------------------------------
    def tick(self, c: _Conv, lo: int = 4, hi: int = 150) -> None:
        c.t += self.rng.randint(lo, hi)
        if self.rng.random() < 0.03:  # a pause: dinner, school, bedtime
            c.t += self.rng.randint(900, 3 * 3600)

    def _push(self, c: _Conv, event: dict[str, Any], stage: str | None = None, critical: bool = False) -> None:
        self.tick(c)
        self._seq += 1
        c.events.append(_Pending(t=c.t, conv=c.index, seq=self._seq, event=event, stage=stage, critical=critical))

    def _base(self, c: _Conv, etype: str, actor: _Person, target: _Person | None) -> dict[str, Any]:
        ev: dict[str, Any] = {
            "schema_version": 1,
            "type": etype,
            "platform": PLATFORM,
            "experience_id": c.experience_id,
            "server_id": c.server_id,
            "channel": {"kind": c.channel_kind, "id": c.conv_id},
            "actor": actor.as_user(),
            "target": target.as_user() if target is not None else None,
        }
        if actor.locale is not None:
            ev["locale"] = actor.locale
        return ev

    def act(self, c: _Conv, etype: str, actor: _Person, target: _Person | None, **extra: Any) -> None:
        ev = self._base(c, etype, actor, target)
        ev.update(extra)
        self._push(c, ev)

    def gift(self, c: _Conv, actor: _Person, target: _Person, *, trade: bool = False) -> int:
        amount = self.rng.choice((25, 50, 80, 100, 150, 200, 400, 500, 800, 1000))
        self.act(c, "trade" if trade else "gift", actor, target, amount=amount, currency=CURRENCY)
        return amount

    def say(
        self,
        c: _Conv,
        speaker: _Person,
        section: str,
        to: _Person | None = None,
        *,
        obfuscate: bool = False,
        amount: int | None = None,
    ) -> None:
        """One chat_message from ``speaker`` drawn from ``section``; ``to`` is the addressee ({name})."""
        rng = self.rng
        sec = self.bank.section(section)
        template = rng.choice(sec.lines)
        for _ in range(3):  # avoid repeating a line within one conversation while the section allows it
            if (section, template) not in c.used:
                break
            template = rng.choice(sec.lines)
        c.used.add((section, template))
        values = dict(c.values)
        values.update(
            name=(to.nickname if to is not None else rng.choice(self.bank.fillers["name"])),
            handle=speaker.handle,
            phone=speaker.phone,
            age=str(speaker.age),
            adult_age=str(speaker.age),
            amount=str(amount if amount is not None else rng.choice((50, 100, 200, 250, 500, 1000))),
        )
        if obfuscate:
            values.update(self._obfuscated_values(values))
        text = render(template, values)
        if obfuscate:
            fills = ("{app}", "{phone}", "{age}", "{adult_age}")
            text = self._obfuscate_text(text, changed=any(f in template for f in fills))
        text = self._style(text, stretch=not obfuscate)
        # a two-person conversation addresses the other person; a group message addresses the channel
        ev = self._base(c, "chat_message", speaker, to if c.members == 2 else None)
        ev["text"] = text
        self._push(c, ev, stage=sec.stage, critical=sec.critical)

    def _style(self, text: str, *, stretch: bool) -> str:
        """Light chat noise: an emoji/slang tail or a stretched last letter, as kids type."""
        r = self.rng.random()
        if r < 0.12:
            return f"{text} {self.rng.choice(self.bank.fillers['emoji_tails'])}"
        if stretch and r < 0.16 and text[-1:].isalpha():
            return text + text[-1] * self.rng.randint(1, 3)
        return text

    # ---- obfuscation (the `obfuscated` kind) -------------------------------------------------------
    def _spell(self, n: int) -> str:
        words = self._obf.number_words
        if n < 20:
            return words[n]
        tens = self._obf.tens_words.get(str(n // 10))
        if tens is None:
            return " ".join(words[int(d)] for d in str(n))
        return tens if n % 10 == 0 else f"{tens} {words[n % 10]}"

    def _obfuscated_values(self, values: dict[str, str]) -> dict[str, str]:
        rng = self.rng
        app = values["app"]
        if rng.random() < 0.5:
            app_obf = rng.choice(self._obf.app_aliases[app])
        else:
            app_obf = self._disguise_word(app, rng.choice(("leet", "spaced", "dotted", "homoglyph", "zero_width")))
        digits = [ch for ch in values["phone"] if ch.isdigit()]
        style = rng.randrange(3)
        if style == 0:
            phone = " ".join(self._obf.number_words[int(d)] for d in digits)
        elif style == 1:
            phone = " ".join(digits)
        else:
            phone = " ".join("".join(digits[i : i + 2]) for i in range(0, len(digits), 2))
        return {
            "app": app_obf,
            "phone": phone,
            "age": self._spell(int(values["age"])),
            "adult_age": self._spell(int(values["adult_age"])),
        }

    def _disguise_word(self, word: str, technique: str) -> str:
        rng = self.rng
        obf = self._obf
        if technique == "leet":
            out = "".join(obf.leet.get(ch, ch) for ch in word)
        elif technique == "spaced":
            out = rng.choice(obf.spaced_separators).join(word)
        elif technique == "dotted":
            letters = word if len(word) <= 4 or rng.random() < 0.6 else word[: rng.randint(4, len(word))]
            out = rng.choice(obf.dotted_separators).join(letters)
        elif technique == "homoglyph":
            out = "".join(obf.homoglyphs[ch] if ch in obf.homoglyphs and rng.random() < 0.7 else ch for ch in word)
            if out == word:
                out = "".join(obf.homoglyphs.get(ch, ch) for ch in word)
        else:
            out = word
        if out == word and len(word) > 1:  # nothing mappable: fall back to a zero-width character inside
            cut = rng.randint(1, len(word) - 1)
            out = word[:cut] + rng.choice(obf.zero_width) + word[cut:]
        return out

    def _obfuscate_text(self, text: str, *, changed: bool) -> str:
        rng = self.rng
        tokens = text.split(" ")
        risky = [i for i, tok in enumerate(tokens) if tok.strip("?!.,").lower() in self._obf.sensitive_words]
        for i, tok in enumerate(tokens):
            if tok.isdigit() and rng.random() < 0.7:
                tokens[i] = self._spell(int(tok)) if int(tok) < 50 else " ".join(tok)
                changed = True
        if not risky and not changed:
            longest = max(range(len(tokens)), key=lambda i: len(tokens[i]))
            risky = [longest] if len(tokens[longest]) > 1 else []
        if risky:
            technique = rng.choice(("leet", "spaced", "dotted", "homoglyph", "zero_width"))
            for i in rng.sample(risky, k=min(len(risky), rng.randint(1, 2))):
                tok = tokens[i]
                core = tok.rstrip("?!.,")
                tokens[i] = self._disguise_word(core, technique) + tok[len(core) :]
        return " ".join(tokens)

    # ---- grooming kinds --------------------------------------------------------------------------
    def _friending(self, c: _Conv, adult: _Person, child: _Person, p: float) -> None:
        if self.rng.random() < p:
            self.act(c, "friend_request", adult, child)
            if self.rng.random() < 0.85:
                self.act(c, "friend_accept", child, adult)

    def _reply(self, c: _Conv, child: _Person, adult: _Person, section: str, p: float = 0.8) -> None:
        if self.rng.random() < p:
            self.say(c, child, f"minor_replies.{section}", adult)

    def _stage(self, c: _Conv, stage: str, adult: _Person, child: _Person, *, obfuscate: bool = False) -> None:
        rng = self.rng
        g = "grooming_stages"
        if stage == "trust":
            for _ in range(rng.randint(2, 5)):
                if rng.random() < 0.2:
                    self.say(c, adult, "gaming_chatter.chatter", child)
                else:
                    self.say(c, adult, f"{g}.trust_building", child)
                self._reply(c, child, adult, "reply_smalltalk", 0.85)
        elif stage == "age":
            for _ in range(rng.randint(1, 3)):
                if rng.random() < 0.55:
                    self.say(c, adult, f"{g}.age_probing", child, obfuscate=obfuscate)
                    self._reply(c, child, adult, "reply_age", 0.85)
                else:
                    self.say(c, adult, f"{g}.supervision_probing", child, obfuscate=obfuscate)
                    self._reply(c, child, adult, "reply_supervision", 0.85)
        elif stage == "gifts":
            for _ in range(rng.randint(1, 3)):
                amount = self.gift(c, adult, child, trade=rng.random() < 0.2)
                self.say(c, adult, f"{g}.gifts", child, amount=amount)
                self._reply(c, child, adult, "reply_thanks", 0.8)
        elif stage == "secrecy":
            for _ in range(rng.randint(1, 2)):
                self.say(c, adult, f"{g}.secrecy", child, obfuscate=obfuscate)
                self._reply(c, child, adult, "reply_agree" if rng.random() < 0.6 else "reply_unsure", 0.8)
        elif stage == "isolation":
            if rng.random() < 0.4:
                self.say(c, adult, f"{g}.isolation_private", child, obfuscate=obfuscate)
                if rng.random() < 0.5:
                    self.act(c, "server_invite", adult, child)
                self._reply(c, child, adult, "reply_smalltalk", 0.6)
            for _ in range(rng.randint(1, 2)):
                self.say(c, adult, f"{g}.offplatform", child, obfuscate=obfuscate)
                self._reply(c, child, adult, "reply_offplatform" if rng.random() < 0.7 else "reply_unsure", 0.85)
        elif stage == "meeting":
            for _ in range(rng.randint(1, 2)):
                section = "meeting_request" if rng.random() < 0.6 else "picture_request"
                self.say(c, adult, f"{g}.{section}", child, obfuscate=obfuscate)
                self._reply(c, child, adult, rng.choice(("reply_unsure", "reply_unsure", "reply_agree")), 0.8)
        else:  # pragma: no cover - programming error
            raise ValueError(stage)

    def _ending(self, c: _Conv, adult: _Person, child: _Person) -> None:
        r = self.rng.random()
        if r < 0.15:
            self.say(c, child, "minor_replies.reply_refuse", adult)
            self.act(c, "block", child, adult)
            if self.rng.random() < 0.7:
                text = render(self.rng.choice(self.bank.section("minor_replies.report_grooming").lines), c.values)
                self.act(c, "user_report", child, adult, report_category="child_safety", text=text)
        elif r < 0.25:
            self.act(c, "follow_join", adult, child)

    def _progressive_script(self, c: _Conv, adult: _Person, child: _Person, *, obfuscate: bool = False) -> None:
        rng = self.rng
        self._friending(c, adult, child, 0.6)
        stages = ["trust", "age", "gifts", "secrecy", "isolation", "meeting"]
        if rng.random() < 0.3:
            stages.remove("gifts")
        if rng.random() < 0.25:  # partial: the conversation stops (or is stopped) before the last stages
            stages = stages[: rng.randint(2, len(stages) - 1)]
        for stage in stages:
            self._stage(c, stage, adult, child, obfuscate=obfuscate)
        self._ending(c, adult, child)

    def progressive(self, kind: str = "progressive") -> None:
        if kind == "unknown_age":
            adult = self.person(
                "unknown", _W_GROOMER, age=self.rng.randint(19, 45), account_days=(1, 90), verified="none"
            )
        else:
            adult = self.groomer()
        child = self.minor(locale=adult.locale if self.rng.random() < 0.7 else "random")
        channel = "direct" if self.rng.random() < 0.85 else "party"
        c = self.open(kind, "grooming", channel, [adult, child], subjects=[adult.user_id])
        self._progressive_script(c, adult, child, obfuscate=(kind == "obfuscated"))

    def fast_offplatform(self) -> None:
        rng = self.rng
        adult = self.groomer()
        child = self.minor()
        c = self.open("fast_offplatform", "grooming", "direct", [adult, child], subjects=[adult.user_id])
        self._friending(c, adult, child, 0.5)
        for _ in range(rng.randint(2, 3)):
            self.say(c, adult, "grooming_stages.trust_building", child)
            self._reply(c, child, adult, "reply_smalltalk", 1.0)
        if rng.random() < 0.5:
            self.say(c, adult, "grooming_stages.age_probing", child)
            self._reply(c, child, adult, "reply_age", 0.9)
        self._stage(c, "isolation", adult, child)
        if rng.random() < 0.5:
            self._stage(c, "meeting", adult, child)
        self._ending(c, adult, child)

    def gift_lure(self) -> None:
        rng = self.rng
        adult = self.groomer()
        child = self.minor()
        c = self.open(
            "gift_lure",
            "grooming",
            "direct" if rng.random() < 0.8 else "party",
            [adult, child],
            subjects=[adult.user_id],
        )
        self._friending(c, adult, child, 0.7)
        for _ in range(rng.randint(1, 3)):
            self.say(c, adult, "grooming_stages.trust_building", child)
            self._reply(c, child, adult, "reply_smalltalk", 0.8)
        for _ in range(rng.randint(2, 4)):
            amount = self.gift(c, adult, child, trade=rng.random() < 0.3)
            if rng.random() < 0.8:
                self.say(c, adult, "grooming_stages.gifts", child, amount=amount)
            self._reply(c, child, adult, "reply_thanks", 0.8)
        self._stage(c, "secrecy", adult, child)
        if rng.random() < 0.85:
            self._stage(c, "isolation", adult, child)
        if rng.random() < 0.3:
            self._stage(c, "meeting", adult, child)
        self._ending(c, adult, child)

    def age_liar(self) -> None:
        rng = self.rng
        band = rng.choice(("13_15", "16_17"))
        adult = self.person(band, _W_GROOMER, age=rng.randint(19, 34), account_days=(2, 300), verified="self_declared")
        child = self.minor(("under_9", "9_12", "13_15"), (0.05, 0.55, 0.4))
        c = self.open(
            "age_liar",
            "grooming",
            "direct" if rng.random() < 0.8 else "party",
            [adult, child],
            subjects=[adult.user_id],
        )
        self._friending(c, adult, child, 0.6)
        trust = rng.randint(2, 4)
        tells = rng.randint(1, 3)
        for i in range(trust + tells):
            if i < trust + tells - 1 and rng.random() < tells / (trust + tells):
                self.say(c, adult, "grooming_stages.age_deception", child)
                if rng.random() < 0.3:
                    self.act(c, "age_signal", adult, None)
            else:
                self.say(c, adult, "grooming_stages.trust_building", child)
            self._reply(c, child, adult, "reply_smalltalk", 0.8)
        if not any(p.stage == "age_deception" for p in c.events):
            self.say(c, adult, "grooming_stages.age_deception", child)
        stages = ["age", "secrecy", "isolation", "meeting"]
        if rng.random() < 0.5:
            stages.insert(1, "gifts")
        if rng.random() < 0.2:
            stages = stages[: rng.randint(1, len(stages) - 1)]
        for stage in stages:
            self._stage(c, stage, adult, child)
        self._ending(c, adult, child)

    def fanout(self, size: int) -> None:
        rng = self.rng
        adult = self.groomer()
        base = rng.randint(0, _STREAM_SPAN_S)
        for _ in range(size):
            child = self.minor()
            c = self.open(
                "fanout",
                "grooming",
                "direct",
                [adult, child],
                subjects=[adult.user_id],
                t0=base + rng.randint(0, _FANOUT_SPAN_S),
            )
            self.act(c, "friend_request", adult, child)
            if rng.random() < 0.75:
                self.act(c, "friend_accept", child, adult)
            for _ in range(rng.randint(2, 3)):
                self.say(c, adult, "grooming_stages.trust_building", child)
                self._reply(c, child, adult, "reply_smalltalk", 0.9)
            section = rng.choice(("age_probing", "supervision_probing", "offplatform", "offplatform"))
            self.say(c, adult, f"grooming_stages.{section}", child)
            reply = {"age_probing": "reply_age", "supervision_probing": "reply_supervision"}.get(
                section, "reply_offplatform"
            )
            self._reply(c, child, adult, reply, 0.7)

    # ---- benign kinds ----------------------------------------------------------------------------
    def _chat_rounds(
        self,
        c: _Conv,
        people: Sequence[_Person],
        section: str,
        lo: int,
        hi: int,
        reply: str | None = None,
        p_reply: float = 0.5,
    ) -> None:
        rng = self.rng
        for _ in range(rng.randint(lo, hi)):
            speaker, other = rng.sample(list(people), 2) if len(people) > 1 else (people[0], people[0])
            self.say(c, speaker, section, other)
            if reply is not None and rng.random() < p_reply:
                self.say(c, other, reply, speaker)

    def _peers(self, n: int, bands: Sequence[str], weights: Sequence[float]) -> list[_Person]:
        band = self._weighted(bands, weights)
        idx = list(_AGES).index(band)
        near = [b for b in list(_AGES)[max(0, idx - 1) : idx + 2] if b in bands]
        locale = self.rng.choice(_LOCALES)
        out = []
        for i in range(n):
            b = band if i == 0 or self.rng.random() < 0.7 else self.rng.choice(near)
            wts = _W_ADULT if b in ("18_20", "21_plus") else _W_TEEN if b in ("13_15", "16_17") else _W_CHILD
            out.append(self.person(b, wts, locale=locale if self.rng.random() < 0.8 else "random"))
        return out

    def teen_peers_discord(self) -> None:
        rng = self.rng
        a, b = self._peers(2, ("13_15", "16_17"), (0.55, 0.45))
        c = self.open("teen_peers_discord", "benign", "direct" if rng.random() < 0.7 else "party", [a, b])
        f = "teen_peers_discord"
        if rng.random() < 0.4:
            self.act(c, "friend_request", a, b)
            self.act(c, "friend_accept", b, a)
        self._chat_rounds(c, [a, b], f"{f}.chatter", 2, 6, f"{f}.chatter", 0.7)
        self.say(c, a, f"{f}.swap_socials", b)
        self.say(c, b, f"{f}.swap_reply", a)
        if rng.random() < 0.35:
            self.say(c, b, f"{f}.secret_alt", a)
            self.say(c, a, "gaming_chatter.reply", b)
        self._chat_rounds(c, [a, b], f"{f}.chatter", 1, 5, "gaming_chatter.reply", 0.6)
        if rng.random() < 0.3:
            self.act(c, "follow_join", b, a)
        if rng.random() < 0.2:
            self.gift(c, a, b, trade=True)

    def kids_game_secret(self) -> None:
        rng = self.rng
        a, b = self._peers(2, ("under_9", "9_12"), (0.2, 0.8))
        channel = self._weighted(("experience", "party", "direct"), (0.4, 0.3, 0.3))
        c = self.open("kids_game_secret", "benign", channel, [a, b])
        f = "kids_game_secret"
        self._chat_rounds(c, [a, b], f"{f}.chatter", 2, 5, f"{f}.reply", 0.5)
        if rng.random() < 0.7:
            self.say(c, a, f"{f}.age_swap", b)
            self.say(c, b, f"{f}.age_swap", a)
        for _ in range(rng.randint(1, 2)):
            self.say(c, a, f"{f}.secret_base", b)
            self.say(c, b, f"{f}.reply", a)
        self.say(c, b, f"{f}.ingame_meet", a)
        if rng.random() < 0.5:
            self.act(c, "follow_join", a, b)
        self._chat_rounds(c, [a, b], f"{f}.chatter", 1, 4, f"{f}.reply", 0.4)

    def adults_chatting(self) -> None:
        rng = self.rng
        a, b = self._peers(2, ("18_20", "21_plus"), (0.2, 0.8))
        c = self.open("adults_chatting", "benign", "direct", [a, b])
        f = "adults_chatting"
        if rng.random() < 0.3:
            self.act(c, "friend_request", a, b)
            self.act(c, "friend_accept", b, a)
        self._chat_rounds(c, [a, b], f"{f}.chatter", 3, 7, f"{f}.reply", 0.6)
        for section, p in (("meet_plans", 0.9), ("phone_swap", 0.6), ("socials", 0.5), ("secretish", 0.35)):
            if rng.random() < p:
                speaker, other = rng.sample([a, b], 2)
                self.say(c, speaker, f"{f}.{section}", other)
                self.say(c, other, f"{f}.reply", speaker)
        if rng.random() < 0.15:
            self.gift(c, a, b)
        self._chat_rounds(c, [a, b], f"{f}.chatter", 0, 3, f"{f}.reply", 0.5)

    def _staff_and_kids(self, kind: str, channel: str) -> tuple[_Conv, _Person, list[_Person]]:
        rng = self.rng
        staff = self.person("21_plus", _W_STAFF, account_days=(200, 3000))
        kids = [self.minor(("under_9", "9_12", "13_15"), (0.15, 0.55, 0.3)) for _ in range(rng.randint(2, 4))]
        c = self.open(kind, "benign", channel, [staff, *kids])
        return c, staff, kids

    def creator_helping(self) -> None:
        rng = self.rng
        c, creator, kids = self._staff_and_kids("creator_helping", "experience" if rng.random() < 0.6 else "group")
        f = "creator_helping"
        if rng.random() < 0.5:
            self.say(c, creator, f"{f}.creator_announce")
        for _ in range(rng.randint(2, 6)):
            kid = rng.choice(kids)
            self.say(c, kid, f"{f}.kid_question", creator)
            self.say(c, creator, f"{f}.creator_answer", kid)
            if rng.random() < 0.5:
                self.say(c, kid, f"{f}.kid_thanks", creator)
        for kid in rng.sample(kids, rng.randint(1, len(kids))):
            self.act(c, "server_invite", creator, kid)
            if rng.random() < 0.3:
                self.act(c, "follow_join", kid, creator)

    def tutor_help(self) -> None:
        rng = self.rng
        c, tutor, kids = self._staff_and_kids("tutor_help", "group")
        f = "tutor_help"
        self.say(c, tutor, f"{f}.tutor_general")
        for _ in range(rng.randint(2, 5)):
            kid = rng.choice(kids)
            self.say(c, kid, f"{f}.kid_question", tutor)
            self.say(c, tutor, f"{f}.tutor_answer", kid)
            if rng.random() < 0.5:
                self.say(c, kid, f"{f}.kid_thanks", tutor)
        if rng.random() < 0.5:
            self.say(c, tutor, f"{f}.tutor_general")

    def parent_child(self) -> None:
        rng = self.rng
        child = self.minor(("under_9", "9_12", "13_15"), (0.25, 0.5, 0.25))
        parent = self.person(
            "21_plus",
            (0.05, 0.25, 0.0, 0.3, 0.4),
            age=rng.randint(27, 52),
            account_days=(100, 3000),
            locale=child.locale,
            parent_of=(child.user_id,),
        )
        c = self.open("parent_child", "benign", "direct", [parent, child])
        f = "parent_child"
        for _ in range(rng.randint(4, 12)):
            if rng.random() < 0.5:
                self.say(c, parent, f"{f}.parent", child)
                if rng.random() < 0.7:
                    self.say(c, child, f"{f}.child", parent)
            else:
                self.say(c, child, f"{f}.child", parent)
                if rng.random() < 0.6:
                    self.say(c, parent, f"{f}.parent", child)
            if rng.random() < 0.12:
                self.gift(c, parent, child)
        if rng.random() < 0.15:  # the parent confirmed the child's age band through parental controls
            self.act(c, "age_signal", child, None)

    def gaming_chatter(self) -> None:
        rng = self.rng
        n = rng.choice((2, 2, 3, 4))
        people = self._peers(
            n, ("under_9", "9_12", "13_15", "16_17", "18_20", "21_plus"), (0.05, 0.35, 0.3, 0.15, 0.08, 0.07)
        )
        channel = "direct" if n == 2 and rng.random() < 0.4 else rng.choice(("party", "experience"))
        c = self.open("gaming_chatter", "benign", channel, people)
        f = "gaming_chatter"
        self._chat_rounds(c, people, f"{f}.chatter", 3, 12, f"{f}.reply", 0.5)
        if rng.random() < 0.5:
            self._chat_rounds(c, people, f"{f}.trash_talk", 1, 3, f"{f}.trash_talk", 0.4)
            if rng.random() < 0.2:
                victim, bully = rng.sample(people, 2)
                self.act(c, "block", victim, bully)
                text = render(rng.choice(self.bank.section("reports.report_harassment").lines), c.values)
                self.act(c, "user_report", victim, bully, report_category="harassment", text=text)
        self._chat_rounds(c, people, f"{f}.chatter", 1, 4, f"{f}.reply", 0.4)

    def trading(self) -> None:
        rng = self.rng
        a, b = self._peers(2, ("9_12", "13_15", "16_17", "21_plus"), (0.35, 0.4, 0.2, 0.05))
        c = self.open("trading", "benign", self._weighted(("experience", "direct", "party"), (0.5, 0.3, 0.2)), [a, b])
        f = "trading"
        self.say(c, a, f"{f}.offer", b)
        for _ in range(rng.randint(2, 5)):
            self.say(c, b, f"{f}.haggle", a)
            if rng.random() < 0.6:
                self.say(c, a, f"{f}.haggle", b)
        if rng.random() < 0.85:
            self.say(c, b, f"{f}.accept", a)
            amount = self.gift(c, b, a, trade=True)
            if rng.random() < 0.5:
                self.gift(c, a, b, trade=True)
            if rng.random() < 0.12:
                self.say(c, b, f"{f}.scam_complaint", a, amount=amount)
                text = render(rng.choice(self.bank.section("reports.report_scam").lines), c.values)
                self.act(c, "user_report", b, a, report_category="scam", text=text)
                if rng.random() < 0.5:
                    self.act(c, "block", b, a)
                return
            else:
                self.say(c, a, f"{f}.accept", b)
        self._chat_rounds(c, [a, b], "gaming_chatter.chatter", 1, 3, "gaming_chatter.reply", 0.4)

    # ---- plan and output -----------------------------------------------------------------------------
    def run(self, conversations: int, grooming_share: float) -> None:
        rng = self.rng
        n_groom = round(conversations * grooming_share)
        g_counts = _apportion(n_groom, _GROOMING_WEIGHTS)
        if n_groom >= 20 and g_counts["fanout"] < 5:  # a fan-out needs several conversations to be one
            for _ in range(5 - g_counts["fanout"]):
                g_counts[max(g_counts, key=lambda k: g_counts[k])] -= 1
                g_counts["fanout"] += 1
        b_counts = _apportion(conversations - n_groom, _BENIGN_WEIGHTS)
        jobs: list[tuple[str, int]] = []
        for kind in GROOMING_KINDS:
            if kind == "fanout":
                left = g_counts[kind]
                while left > 0:
                    size = left if left <= 12 else rng.randint(5, min(12, left - 5))
                    jobs.append((kind, size))
                    left -= size
            else:
                jobs.extend((kind, 1) for _ in range(g_counts[kind]))
        for kind in BENIGN_KINDS:
            jobs.extend((kind, 1) for _ in range(b_counts[kind]))
        rng.shuffle(jobs)
        scripts: dict[str, Callable[[], None]] = {
            "progressive": self.progressive,
            "obfuscated": lambda: self.progressive("obfuscated"),
            "unknown_age": lambda: self.progressive("unknown_age"),
            "fast_offplatform": self.fast_offplatform,
            "gift_lure": self.gift_lure,
            "age_liar": self.age_liar,
            "teen_peers_discord": self.teen_peers_discord,
            "kids_game_secret": self.kids_game_secret,
            "adults_chatting": self.adults_chatting,
            "creator_helping": self.creator_helping,
            "tutor_help": self.tutor_help,
            "parent_child": self.parent_child,
            "gaming_chatter": self.gaming_chatter,
            "trading": self.trading,
        }
        for kind, size in jobs:
            if kind == "fanout":
                self.fanout(size)
            else:
                scripts[kind]()

    def finish(self, bank_name: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        pending = sorted((p for c in self.convs for p in c.events), key=lambda p: (p.t, p.conv, p.seq))
        events: list[dict[str, Any]] = []
        for n, p in enumerate(pending, start=1):
            p.event["event_id"] = f"evt-{self.seed}-{n}"
            p.event["ts"] = _fmt(self.start + timedelta(seconds=p.t))
            events.append(p.event)
        convs: dict[str, Any] = {}
        for c in self.convs:
            messages = [{"event_id": p.event["event_id"], "stage": p.stage} for p in c.events if p.stage]
            stages: list[str] = []
            for m in messages:
                if m["stage"] != "benign" and m["stage"] not in stages:
                    stages.append(m["stage"])
            critical = next((p.event["event_id"] for p in c.events if p.critical), None)
            convs[c.conv_id] = {
                "label": c.label,
                "kind": c.kind,
                "subjects": list(c.subjects),
                "first_critical_event_id": critical,
                "stages": stages,
                "messages": messages,
            }
        labels = {
            "generator": GENERATOR_NAME,
            "version": LABELS_VERSION,
            "seed": self.seed,
            "bank": bank_name,
            "conversations": convs,
        }
        return events, labels


# ---- malformed records ---------------------------------------------------------------------------------
_FALLBACK_EVENT: dict[str, Any] = {
    "schema_version": 1,
    "event_id": "evt-fallback",
    "type": "chat_message",
    "ts": _fmt(DEFAULT_START),
    "platform": PLATFORM,
    "channel": {"kind": "direct", "id": "dm-u1-u2"},
    "actor": {"user_id": "u1", "age_band": "9_12", "age_verified": "none"},
    "target": None,
    "text": "gg",
}


def _compact(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _make_malformed(seed: int, events: list[dict[str, Any]], count: int) -> list[bytes]:
    """``count`` raw records cycling through MALFORMED_KINDS; each fails UTF-8, JSON or the event schema."""
    rng = random.Random(f"{GENERATOR_NAME}:{seed}:malformed")
    chats = [e for e in events if e["type"] == "chat_message"] or [_FALLBACK_EVENT]
    pool = events or [_FALLBACK_EVENT]
    out: list[bytes] = []
    for i in range(count):
        kind = MALFORMED_KINDS[i % len(MALFORMED_KINDS)]
        needs_chat = kind in ("chat_without_text", "text_too_long", "not_utf8")
        ev = copy.deepcopy(rng.choice(chats if needs_chat else pool))
        ev["event_id"] = f"bad-{seed}-{i + 1}"
        if kind == "not_utf8":
            raw = _compact(ev)
            cut = raw.index(b'"text":"') + len(b'"text":"')
            out.append(raw[:cut] + rng.choice((b"\xff\xfe", b"\xc3\x28", b"\xe2\x82", b"\x80")) + raw[cut:])
        elif kind == "not_json":
            text = _compact(ev).decode("utf-8")
            variant = rng.randrange(3)
            if variant == 0:
                text = text[: len(text) // 2]
            elif variant == 1:
                text = repr(ev)  # Python literal: single quotes, None
            else:
                text = text[:-1] + ",}"
            out.append(text.encode("utf-8"))
        elif kind == "json_array":
            out.append(b"[" + _compact(ev) + b"]")
        elif kind == "missing_field":
            del ev[rng.choice(("schema_version", "event_id", "type", "ts", "platform", "actor"))]
            out.append(_compact(ev))
        elif kind == "wrong_schema_version":
            ev["schema_version"] = rng.choice((2, 0, "1"))
            out.append(_compact(ev))
        elif kind == "chat_without_text":
            del ev["text"]
            out.append(_compact(ev))
        elif kind == "bad_enum":
            where = rng.randrange(4)
            if where == 0:
                ev["type"] = "voice_message"
            elif where == 1:
                ev["actor"]["age_band"] = "teen"
            elif where == 2:
                ev["actor"]["age_verified"] = "trust_me"
            else:
                ev["channel"]["kind"] = "dm"
            out.append(_compact(ev))
        else:  # text_too_long
            ev["text"] = ("lol " * 1200)[: 4097 + rng.randint(0, 500)]
            out.append(_compact(ev))
    return out


# ---- public API ------------------------------------------------------------------------------------------
def generate(
    *,
    seed: int,
    conversations: int,
    bank: Literal["train", "holdout"] = "train",
    grooming_share: float = 0.3,
    malformed: int = 0,
    start: datetime | None = None,
) -> SynthResult:
    """Generate ``conversations`` labelled conversations (about ``grooming_share`` of them grooming).

    ``bank`` picks the phrase bank (``train`` for fitting models, ``holdout`` for evaluating them).
    ``malformed`` extra raw records that must be rejected are returned separately. ``start`` (timezone-aware,
    default 2026-03-02T15:00:00Z) is the earliest timestamp; conversations start over the following days.
    Raises ValueError on out-of-range arguments and ``BankError`` if the bank files are broken.
    """
    if isinstance(conversations, bool) or not isinstance(conversations, int) or conversations < 0:
        raise ValueError(f"conversations must be a non-negative integer, got {conversations!r}")
    if not 0.0 <= grooming_share <= 1.0:
        raise ValueError(f"grooming_share must be within [0, 1], got {grooming_share!r}")
    if isinstance(malformed, bool) or not isinstance(malformed, int) or malformed < 0:
        raise ValueError(f"malformed must be a non-negative integer, got {malformed!r}")
    if start is None:
        start = DEFAULT_START
    elif start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be timezone-aware (e.g. datetime(..., tzinfo=UTC))")
    start = start.astimezone(UTC).replace(microsecond=0)
    bank_name: BankName = bank
    builder = _Builder(seed=seed, bank=load_bank(bank_name), start=start)
    builder.run(conversations, grooming_share)
    events, labels = builder.finish(bank_name)
    return SynthResult(events=events, labels=labels, malformed=_make_malformed(seed, events, malformed))


def default_labels_path(out: Path) -> Path:
    """``events.jsonl`` -> ``events.labels.json`` (any other name gets ``.labels.json`` appended)."""
    name = out.name.removesuffix(".jsonl")
    return out.with_name(f"{name}.labels.json")


def write_jsonl(result: SynthResult, out: Path, labels_out: Path | None = None) -> None:
    """Write events one compact JSON object per line (sorted keys, UTF-8) and the labels beside them.

    Malformed records are inserted as raw lines at positions derived from the seed, so the file is
    byte-identical for the same arguments.
    """
    seed = result.labels["seed"]
    rng = random.Random(f"{GENERATOR_NAME}:{seed}:positions")
    inserts: dict[int, list[bytes]] = {}
    for record in result.malformed:
        inserts.setdefault(rng.randint(0, len(result.events)), []).append(record)
    chunks: list[bytes] = []
    for i, event in enumerate(result.events):
        chunks.extend(r + b"\n" for r in inserts.get(i, ()))
        chunks.append(_compact(event) + b"\n")
    chunks.extend(r + b"\n" for r in inserts.get(len(result.events), ()))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"".join(chunks))
    labels_path = labels_out if labels_out is not None else default_labels_path(out)
    labels_path.parent.mkdir(parents=True, exist_ok=True)
    labels_path.write_bytes(
        json.dumps(result.labels, sort_keys=True, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
    )
