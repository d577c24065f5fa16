import dataclasses
import itertools
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pipeline.normalise import (
    APP_ALIASES,
    NUMBER_WORDS,
    PHRASE_ALIASES,
    NormalisedText,
    normalise,
)

APPS = re.compile(r"\b(snapchat|discord|instagram|whatsapp|telegram|kik|tiktok)\b")


def folded(text: str) -> str:
    return normalise(text).text


def source_of(result: NormalisedText, needle: str) -> str:
    """The original text behind the first occurrence of `needle` in the folded text."""
    start = result.text.index(needle)
    a, b = result.original_span(start, start + len(needle))
    return result.original[a:b]


# --- 1-2: NFKC, case, invisible characters ----------------------------------------------------------------


def test_case_and_whitespace_are_folded() -> None:
    assert folded("  HeLLo \t\n  There  ") == "hello there"


@pytest.mark.parametrize("char", ["\u200b", "\u200c", "\u200d", "\u200e", "\u202e", "\u2060", "\ufeff", "\u00ad"])
def test_invisible_characters_inside_words_are_removed(char: str) -> None:
    result = normalise(f"he{char}llo")
    assert result.text == "hello"
    assert result.starts == (0, 1, 3, 4, 5)
    assert result.ends == (1, 2, 4, 5, 6)


def test_zero_width_split_app_name() -> None:
    assert folded("add me on sn\u200ba\u200bp\u200bchat") == "add me on snapchat"
    assert folded("dis\u00adcord") == "discord"


def test_fullwidth_letters() -> None:
    assert folded("ｈｅｌｌｏ ＴＨＥＲＥ") == "hello there"
    assert folded("add me on ｓｎａｐ") == "add me on snapchat"


def test_mathematical_bold_letters() -> None:
    assert folded("𝐡𝐞𝐥𝐥𝐨") == "hello"
    assert folded("𝐬𝐧𝐚𝐩𝐜𝐡𝐚𝐭 𝐦𝐞") == "snapchat me"


def test_accents_are_dropped_composed_or_not() -> None:
    assert folded("café") == "cafe"
    assert folded("cafe\u0301") == "cafe"


# --- 3: homoglyphs ----------------------------------------------------------------------------------------


def test_cyrillic_er_in_snap() -> None:
    result = normalise("add me on snaр")  # Cyrillic р
    assert result.text == "add me on snapchat"
    assert source_of(result, "snapchat") == "snaр"


@pytest.mark.parametrize(
    ("spoof", "expected"),
    [
        ("sсhооl", "school"),  # Cyrillic с, о
        ("ехрrеss", "express"),  # Cyrillic е, х, р
        ("уes", "yes"),  # Cyrillic у
        ("gοοd", "good"),  # Greek ο
        ("bαd", "bad"),  # Greek α
        ("ѕtаy", "stay"),  # Cyrillic ѕ, а
        ("νery", "very"),  # Greek ν
    ],
)
def test_homoglyphs_map_to_the_latin_letter_they_imitate(spoof: str, expected: str) -> None:
    assert folded(spoof) == expected


def test_foreign_words_are_transliterated_not_spoof_mapped() -> None:
    assert folded("привет") == "privet"
    assert folded("добавь в снап") == "dobav' v snapchat"


# --- 4: leetspeak -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leet", "expected"),
    [
        ("sn4pch4t", "snapchat"),
        ("wh@ts@pp", "whatsapp"),
        ("d1sc0rd", "discord"),
        ("hit me up on d1sc", "hit me up on discord"),
        ("d!scord", "discord"),
        ("h3ll0", "hello"),
        ("h0w 0ld r u", "how old r u"),
        ("m33t me", "meet me"),
        ("$nap", "snapchat"),
        ("t3l3gr4m", "telegram"),
    ],
)
def test_leetspeak_inside_words(leet: str, expected: str) -> None:
    assert folded(leet) == expected


@pytest.mark.parametrize(
    "text",
    ["im 14", "5551234", "im 14yo", "m14 here", "ps5 or xbox", "1v1 me", "at 5pm", "gr8 game", "hey!", "me@mail.com"],
)
def test_numbers_units_and_chatspeak_are_not_leet(text: str) -> None:
    assert folded(text) == text


# --- 5: spaced and dotted letters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spaced", "expected"),
    [
        ("s n a p", "snapchat"),
        ("add me on s n a p", "add me on snapchat"),
        ("d.i.s.c.o.r.d", "discord"),
        ("d i s c o r d", "discord"),
        ("s-n-a-p c-h-a-t", "snapchat"),
        ("s_n_a_p", "snapchat"),
        ("s n 4 p", "snapchat"),
        ("k i k", "kik"),
        ("a/s/l?", "asl?"),
    ],
)
def test_spaced_letters_are_joined(spaced: str, expected: str) -> None:
    assert folded(spaced) == expected


def test_joined_letters_keep_their_own_spans() -> None:
    result = normalise("h e l l o")
    assert result.text == "hello"
    assert result.starts == (0, 2, 4, 6, 8)
    assert result.ends == (1, 3, 5, 7, 9)


def test_single_letter_chat_words_are_not_joined() -> None:
    assert folded("r u a girl") == "r u a girl"
    assert folded("how old r u") == "how old r u"


# --- 6: repeated letters ----------------------------------------------------------------------------------


def test_letter_runs_shrink_to_two() -> None:
    result = normalise("heyyyyy")
    assert result.text == "heyy"
    assert result.original_span(3, 4) == (3, 7)
    assert folded("meeeet me") == "meet me"


def test_stretched_app_names_resolve() -> None:
    assert folded("snaaaaap me") == "snapchat me"
    assert folded("whatsap") == "whatsapp"
    assert folded("disccord") == "discord"


def test_digit_runs_are_not_shortened() -> None:
    assert folded("call 5555555") == "call 5555555"


# --- 7: numbers -------------------------------------------------------------------------------------------


def test_number_words() -> None:
    result = normalise("i'm fourteen")
    assert result.text == "i'm 14"
    assert source_of(result, "14") == "fourteen"
    assert re.search(r"\b1[0-7]\b", result.text)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("fifteen", "15"),
        ("twenty one", "21"),
        ("twenty-one", "21"),
        ("one four", "14"),
        ("im one three", "im 13"),
        ("five five five one two three four", "5551234"),
        ("f0urteen", "14"),
        ("fourteeeen", "14"),
        ("no one knows", "no one knows"),
    ],
)
def test_number_word_forms(words: str, expected: str) -> None:
    assert folded(words) == expected


def test_compound_number_maps_each_digit_to_its_word() -> None:
    result = normalise("twenty one")
    assert result.original_span(0, 1) == (0, 6)
    assert result.original_span(1, 2) == (7, 10)


def test_spaced_phone_number() -> None:
    result = normalise("my number is 5 5 5 1 2 3 4 5 6 7")
    assert result.text == "my number is 5551234567"
    assert re.search(r"\d{7,}", result.text)
    assert source_of(result, "5551234567") == "5 5 5 1 2 3 4 5 6 7"
    assert source_of(result, "4") == "4"


@pytest.mark.parametrize(
    ("digits", "expected"),
    [
        ("5 5 5 - 1 2 3 4", "5551234"),
        ("555-1234", "5551234"),
        ("555.123.4567", "5551234567"),
        ("+1 555 123 4567", "+15551234567"),
        ("im 1 4", "im 14"),
        ("1.5 hours", "1.5 hours"),
        ("ages 13-15", "ages 13-15"),
        ("10 12", "10 12"),
    ],
)
def test_split_digits(digits: str, expected: str) -> None:
    assert folded(digits) == expected


def test_digits_of_other_scripts_by_value() -> None:
    assert folded("call ٥٥٥١٢٣٤") == "call 5551234"  # Arabic-Indic
    assert folded("৪") == "4"  # Bengali four looks like an 8


def test_keycap_digits() -> None:
    result = normalise("im 1️⃣4️⃣")
    assert result.text == "im 14"
    assert result.original_span(3, 5) == (3, len(result.original))


# --- 8: app code words and emoji --------------------------------------------------------------------------


def test_ghost_emoji_is_snapchat() -> None:
    result = normalise("👻 me")
    assert result.text == "snapchat me"
    assert all(result.original_span(i, i + 1) == (0, 1) for i in range(8))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hmu on the ghost app", "hmu on snapchat"),
        ("add me on sc", "add me on snapchat"),
        ("sc me", "snapchat me"),
        ("join my dc server", "join my discord server"),
        ("dizzy cord", "discord"),
        ("my ig is cool", "my instagram is cool"),
        ("insta?", "instagram?"),
        ("📸", "instagram"),
        ("✈️ me", "telegram me"),
        ("ur tg", "ur telegram"),
        ("whats app", "whatsapp"),
        ("on wa", "on whatsapp"),
        ("tik tok", "tiktok"),
        ("got tt", "got tiktok"),
        ("signal or kik", "signal or kik"),
    ],
)
def test_app_code_words(text: str, expected: str) -> None:
    assert folded(text) == expected


def test_regional_indicator_letters() -> None:
    assert folded("🇸🇳🇦🇵") == "snapchat"


def test_ambiguous_codes_need_a_messaging_cue() -> None:
    assert folded("ig so") == "ig so"
    assert folded("washington dc") == "washington dc"


def test_other_emoji() -> None:
    assert folded("🤫 dont tell") == "secret dont tell"
    assert folded("🤐") == "secret"
    assert folded("got u a 🎁") == "got u a gift"
    assert folded("call me 📞") == "call me phone"
    assert folded("lol😂😂 ok") == "lol ok"


@pytest.mark.parametrize(
    "evasion",
    ["add me on snaр", "s n a p", "d.i.s.c.o.r.d", "sn4pch4t", "wh@ts@pp", "👻 me", "ＩＮＳＴＡ", "𝐭𝐞𝐥𝐞𝐠𝐫𝐚𝐦"],
)
def test_detector_regex_sees_through_evasions(evasion: str) -> None:
    assert APPS.search(folded(evasion))


# --- span mapping and the API -----------------------------------------------------------------------------


def test_original_span_rejects_empty_and_out_of_range_spans() -> None:
    result = normalise("hello")
    with pytest.raises(ValueError):
        result.original_span(2, 2)
    with pytest.raises(ValueError):
        result.original_span(3, 1)
    with pytest.raises(ValueError):
        result.original_span(0, 6)
    with pytest.raises(ValueError):
        normalise("").original_span(0, 1)


def test_result_is_frozen() -> None:
    result = normalise("hi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.text = "x"  # type: ignore[misc]


def test_empty_and_blank_input() -> None:
    assert normalise("") == NormalisedText("", "", (), ())
    assert normalise(" \u200b\t ").text == ""


# --- properties -------------------------------------------------------------------------------------------

CHAT_PIECES = [
    *"abdeiklnoprstuy 0134578@$|!.-_'",
    "а", "р", "ο", "é", "\u200b", "👻", "1️⃣", "ｓ", "𝐬", "\t", "  ",
    "one ", "four", "twenty ", "teen", "sc ", "on ", "ig ", "ghost app", "chat", "yyy",
    "s n a p ", "d.i.s.c", "5 5 5 ", "1 4", "h3ll0", "@mail.com", "привет", "😀",
]  # fmt: skip
chat_text = st.lists(st.sampled_from(CHAT_PIECES), max_size=30).map("".join)
any_text = st.one_of(chat_text, st.text(max_size=60))


@settings(max_examples=300, deadline=None)
@given(any_text)
def test_normalise_is_idempotent(text: str) -> None:
    once = folded(text)
    assert folded(once) == once


@settings(max_examples=300, deadline=None)
@given(any_text)
def test_span_invariants(text: str) -> None:
    result = normalise(text)
    assert result.original == text
    assert len(result.starts) == len(result.ends) == len(result.text)
    assert all(0 <= a < b <= len(text) for a, b in zip(result.starts, result.ends, strict=True))
    assert all(a <= b for a, b in itertools.pairwise(result.starts))
    assert all(a <= b for a, b in itertools.pairwise(result.ends))
    assert result.text.isascii() and result.text == result.text.lower().strip()
    if result.text:
        assert result.original_span(0, len(result.text))[1] <= len(text)


def _collapse_runs(word: str) -> str:
    return re.sub(r"(.)\1+", r"\1", word)


LEXICON_WORDS = (
    set(APP_ALIASES)
    | set(NUMBER_WORDS)
    | {word for phrase in PHRASE_ALIASES for word in phrase.split()}
    | {phrase.replace(" ", "") for phrase in PHRASE_ALIASES}
)
COMPOUND_NUMBER = re.compile(r"(twenty|thirty|forty|fourty|fifty|sixty|seventy|eighty|ninety)[a-z]+")


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"[a-z]{4,8}( [a-z]{4,8}){0,5}", fullmatch=True))
def test_plain_lowercase_words_round_trip_with_identity_spans(text: str) -> None:
    words = text.split()
    assume(not any(w in LEXICON_WORDS or _collapse_runs(w) in APP_ALIASES for w in words))
    assume(not any(COMPOUND_NUMBER.fullmatch(w) for w in words))
    assume(not re.search(r"(.)\1\1", text))  # letter runs of 3+ are shortened by design
    result = normalise(text)
    assert result.text == text
    assert result.starts == tuple(range(len(text)))
    assert result.ends == tuple(range(1, len(text) + 1))
