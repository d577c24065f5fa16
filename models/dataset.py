"""Training data for the classifiers: labelled messages and labelled conversations.

Two sources, both kept apart from the evaluation data (synth ``holdout`` bank and evaluation seeds):

* the synth ``train`` phrase bank, through ``pipeline.synth.generate(bank="train")`` with the seeds below;
* hand-written paraphrase banks in ``models/data/paraphrases/*.yaml`` (different wording again), rendered
  with their own fillers.

Every text is folded with ``pipeline.normalise.normalise`` first, exactly as ``decide`` folds it, so the
models learn the folded forms the detectors see (leetspeak, homoglyphs and app code words undone).
See ``models/data/DATA_CARD.md``.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.normalise import normalise
from pipeline.synth import generate, load_bank

DATA_DIR = Path(__file__).resolve().parent / "data"
PARAPHRASE_DIR = DATA_DIR / "paraphrases"
MESSAGES_FILE = DATA_DIR / "messages.jsonl"

# The stage classifier's labels: the six grooming stages plus age deception (an adult posing as a teen).
LABELS: tuple[str, ...] = ("trust_building", "age_probing", "gifts", "secrecy", "isolation", "meeting_request",
                           "age_deception")

# Seeds of the synth `train` bank. Evaluation uses the `holdout` bank with other seeds (README, model card).
MESSAGE_SEEDS: tuple[int, ...] = (101, 102, 103)
MESSAGE_CONVERSATIONS = 600
FUSION_TRAIN_SEEDS: tuple[int, ...] = (201, 202)
FUSION_VALIDATION_SEEDS: tuple[int, ...] = (301, 302)
FUSION_CONVERSATIONS = 800
PARAPHRASE_RENDERINGS = 6  # filler draws per paraphrase template
PARAPHRASE_SEED = 7


class TrainingDataError(ValueError):
    """A paraphrase bank is malformed. Fix the YAML named in the message (see models/data/DATA_CARD.md)."""


@dataclass(frozen=True, slots=True)
class Message:
    text: str  # as written
    folded: str  # normalise(text).text, what the models see
    stages: tuple[str, ...]  # empty = benign
    source: str  # "synth-train" | "paraphrase"
    section: str
    group: str  # the template it was rendered from: cross-validation folds split by group, never inside one

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "stages": list(self.stages), "source": self.source, "section": self.section,
                "group": self.group}


def paraphrase_templates() -> list[tuple[str, str, tuple[str, ...]]]:
    """(section, template, stages) of every hand-written paraphrase line."""
    out: list[tuple[str, str, tuple[str, ...]]] = []
    for path in sorted(PARAPHRASE_DIR.glob("*.yaml")):
        if path.name == "fillers.yaml":
            continue
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        sections = raw.get("sections") if isinstance(raw, dict) else None
        if not isinstance(sections, dict):
            raise TrainingDataError(f"{path}: expected a 'sections' mapping")
        for key, section in sections.items():
            stages = tuple(section.get("stages", ()))
            unknown = [s for s in stages if s not in LABELS]
            if unknown or not section.get("lines"):
                raise TrainingDataError(f"{path}: section {key!r} has unknown stages {unknown} or no lines")
            out.extend((f"{path.stem}.{key}", str(line), stages) for line in section["lines"])
    return out


def paraphrase_fillers() -> dict[str, list[str]]:
    raw = yaml.safe_load((PARAPHRASE_DIR / "fillers.yaml").read_text(encoding="utf-8"))
    return {str(k): [str(v) for v in values] for k, values in raw["fillers"].items()}


def paraphrase_messages(renderings: int = PARAPHRASE_RENDERINGS, seed: int = PARAPHRASE_SEED) -> list[Message]:
    rng = random.Random(seed)
    fillers = paraphrase_fillers()
    out: list[Message] = []
    for section, template, stages in paraphrase_templates():
        seen: set[str] = set()
        for _ in range(renderings if "{" in template else 1):
            text = template.format_map({k: rng.choice(v) for k, v in fillers.items()})
            if text not in seen:
                seen.add(text)
                out.append(Message(text, normalise(text).text, stages, "paraphrase", section,
                                   f"paraphrase:{template}"))
    return out


def _template_matchers() -> list[tuple[re.Pattern[str], str]]:
    """Train-bank templates as prefix regexes (placeholders match anything; the generator may add a tail)."""
    out: list[tuple[re.Pattern[str], str]] = []
    for template in sorted(set(load_bank("train").templates()), key=lambda t: (-len(t), t)):
        pattern = re.sub(r"\\\{[a-z_]+\\\}", ".+?", re.escape(template))
        out.append((re.compile(pattern, re.IGNORECASE | re.DOTALL), template))
    return out


def _group_of(text: str, matchers: list[tuple[re.Pattern[str], str]]) -> str:
    for pattern, template in matchers:
        if pattern.match(text):
            return f"synth:{template}"
    return f"text:{text}"  # disguised (obfuscated kind): its own group


def _synth_messages(seed: int, conversations: int,
                    matchers: list[tuple[re.Pattern[str], str]]) -> Iterable[Message]:
    result = generate(seed=seed, conversations=conversations, bank="train")
    texts = {e["event_id"]: e.get("text") for e in result.events if e["type"] == "chat_message"}
    for conv in result.labels["conversations"].values():
        for message in conv["messages"]:
            text = texts.get(message["event_id"])
            if not text:
                continue
            stage = message["stage"]
            stages = () if stage == "benign" else (stage,)
            yield Message(text, normalise(text).text, stages, "synth-train", f"{conv['kind']}",
                          _group_of(text, matchers))


def synth_messages(seeds: Iterable[int] = MESSAGE_SEEDS, conversations: int = MESSAGE_CONVERSATIONS) -> list[Message]:
    """Distinct (folded text, stages) messages of the synth train bank."""
    seen: set[tuple[str, tuple[str, ...]]] = set()
    out: list[Message] = []
    matchers = _template_matchers()
    for seed in seeds:
        for message in _synth_messages(seed, conversations, matchers):
            key = (message.folded, message.stages)
            if key not in seen:
                seen.add(key)
                out.append(message)
    return out


def write_messages(messages: list[Message], path: Path = MESSAGES_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(m.to_json(), ensure_ascii=False, sort_keys=True) for m in messages]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def conversations(seeds: Iterable[int], out_dir: Path) -> list[Path]:
    """Write the synth train-bank conversations of ``seeds`` as events JSONL + labels; returns the event files."""
    from pipeline.synth import write_jsonl

    paths: list[Path] = []
    for seed in seeds:
        path = out_dir / f"train-seed{seed}.jsonl"
        write_jsonl(generate(seed=seed, conversations=FUSION_CONVERSATIONS, bank="train"), path)
        paths.append(path)
    return paths
