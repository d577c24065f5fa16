"""Training data stays apart from evaluation data and inside the content policy."""

from __future__ import annotations

import json
import re

from models.dataset import LABELS, MESSAGES_FILE, paraphrase_fillers, paraphrase_messages, paraphrase_templates
from pipeline.synth import load_bank

DENY = re.compile(
    r"\b(sex|sexy|sexual|nude|nudes|naked|porn|nsfw|horny|undress|underwear|lingerie|boobs|genitals?|"
    r"explicit|onlyfans|kiss|kissing|body|bodies)\b"
)


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def test_no_paraphrase_line_comes_from_the_holdout_bank() -> None:
    holdout = {_key(t) for t in load_bank("holdout").templates()}
    shared = [t for _, t, _ in paraphrase_templates() if _key(t) in holdout]
    assert not shared


def test_fillers_do_not_reuse_holdout_names_places_or_games() -> None:
    holdout = load_bank("holdout").fillers
    ours = paraphrase_fillers()
    for key in ("name", "game", "item", "city", "place", "job"):
        assert not set(ours[key]) & set(holdout.get(key, ())), key


def test_content_policy() -> None:
    for message in paraphrase_messages():
        assert not DENY.search(message.text.lower()), message.text
    for line in MESSAGES_FILE.read_text(encoding="utf-8").splitlines():
        assert not DENY.search(json.loads(line)["text"].lower())


def test_every_stage_has_training_messages() -> None:
    rows = [json.loads(line) for line in MESSAGES_FILE.read_text(encoding="utf-8").splitlines()]
    for stage in LABELS:
        assert sum(1 for r in rows if stage in r["stages"]) >= 40, stage
    assert sum(1 for r in rows if not r["stages"]) >= 500
    assert {r["source"] for r in rows} == {"paraphrase", "synth-train"}


def test_committed_paraphrase_rows_match_the_banks() -> None:
    rows = [json.loads(line) for line in MESSAGES_FILE.read_text(encoding="utf-8").splitlines()]
    committed = [(r["text"], tuple(r["stages"])) for r in rows if r["source"] == "paraphrase"]
    assert committed == [(m.text, m.stages) for m in paraphrase_messages()]
