"""The rule patterns' screen: it may only ever rule out a pattern that cannot match, so every answer and span is
the one ``re.search`` gives, with the screen built, still building, or unable to cover a pattern."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.conditions import TextPatterns
from pipeline.normalise import normalise
from pipeline.pattern_screen import ALL_SLOTS, PatternScreen, UnscreenableError, widened_ascii_pattern
from pipeline.rulebook import load_rulebook
from pipeline.synth import generate

hyperscan = pytest.importorskip("hyperscan")

# Constructs where the two engines could part ways: assertions dropped or kept, classes, categories, repeats.
TRICKY = [
    r"\bsnap\b",
    r"(?<![\d.])\d{3,5}(?![\d.])",
    r"\b(?:meet|see) (?:up|u|you)\b",
    r"^hi",
    r"bye$",
    r"\Ahey\Z",
    r"x{,2}y",  # Python reads {,2} as 0 to 2; another dialect reads it as text
    r"a.b",
    r"[^a-z ]+z",
    r"\W\w\s\S\D\d",
    r"[\w.-]+@[\w-]+\.[a-z]{2,}",
    r"(?:ab)+?c",
    r"(?>ab|a)c",
    r"a++b",
    r"\Bnap",
    r"(?=secret)sec",
    r"(?!no)n\w",
    r"",
    r"[^\x00-\x7f]",  # cannot occur in ASCII text: searched every time instead
    r"(a)\1",  # backreference: searched every time
    r"(?i:hello)",  # inline flags: searched every time
]
ALPHABET = "absnpcyhiexz.-_@ 0123456789meetupouwrdkl\t\x1c!"


def built(patterns: list[str]) -> tuple[PatternScreen, list[TextPatterns]]:
    screen = PatternScreen()
    conditions = [TextPatterns([re.compile(p)], screen) for p in patterns]
    screen.seal(background=False)
    return screen, conditions


SCREEN, CONDITIONS = built(TRICKY)


def test_the_translation_refuses_what_it_cannot_widen_safely() -> None:
    for source in (r"(a)\1", r"(?i:hello)", r"[^\x00-\x7f]"):
        with pytest.raises(UnscreenableError):
            widened_ascii_pattern(re.compile(source))
    with pytest.raises(UnscreenableError):
        widened_ascii_pattern(re.compile("hello", re.IGNORECASE))
    assert SCREEN.screened == len(TRICKY) - 3


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=30))
def test_a_screened_search_answers_like_re_search(text: str) -> None:
    mask = SCREEN.possible(text)
    for slot, (source, condition) in enumerate(zip(TRICKY, CONDITIONS, strict=True)):
        found = re.search(source, text)
        if found is not None:
            assert (mask >> slot) & 1, f"the screen ruled out {source!r}, which matches {text!r}"
        assert condition.first_match(text) == (None if found is None else found.span())


def test_texts_that_are_not_ascii_are_not_screened() -> None:
    assert SCREEN.possible("snap caf\u00e9") == ALL_SLOTS
    assert CONDITIONS[0].first_match("snap caf\u00e9") == (0, 4)


def test_before_the_build_is_over_every_pattern_is_searched() -> None:
    screen = PatternScreen()
    condition = TextPatterns([re.compile(r"\bsnap\b")], screen)
    assert screen.possible("add me on snap") == ALL_SLOTS
    assert condition.first_match("add me on snap") == (10, 14)
    screen.seal(background=False)
    assert screen.possible("gg") & 1 == 0
    assert condition.first_match("gg") is None
    with pytest.raises(RuntimeError):
        screen.add(re.compile("late"))


def test_memoised_answers_equal_a_fresh_search() -> None:
    texts = ["add me on snap", "gg", "snapsnap", "my snap is x", ""]
    for patterns in ([r"\bsnap\b"], [r"snap"], [r"nothing", r"\bsnap\b"]):
        condition = TextPatterns([re.compile(p) for p in patterns], None)
        for _ in range(2):
            for text in texts:
                spans = [m.span() for m in (re.search(p, text) for p in patterns) if m is not None]
                assert condition.first_match(text) == (spans[0] if spans else None)


def test_the_shipped_rules_are_all_screened_and_answer_like_re_on_synthetic_chat() -> None:
    book = load_rulebook()
    conditions = book.text_conditions()
    assert len(conditions) > 10
    assert book.screen.wait(60)
    assert book.screen.screened == sum(len(c.patterns) for c in conditions)
    synth = generate(seed=7, conversations=300, grooming_share=0.3)
    texts = sorted({normalise(e["text"]).text for e in synth.events if e.get("text")})
    assert len(texts) > 500
    matched = 0
    for condition in conditions:
        for text in texts:
            spans = [m.span() for m in (p.search(text) for p in condition.patterns) if m is not None]
            assert condition.first_match(text) == (spans[0] if spans else None), json.dumps(text)
            matched += bool(spans)
    assert matched > 100  # the corpus reaches the patterns, so the check above is not vacuous
