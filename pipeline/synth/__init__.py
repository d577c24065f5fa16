"""Synthetic, labelled, non-explicit conversations for tests, the demo, training and evaluation.

``generate(seed=..., conversations=...)`` returns event-v1 dicts plus per-conversation and per-message labels;
``write_jsonl`` writes them (and the labels file) byte-identically for the same arguments. The phrase banks
are YAML package data under ``banks/`` (``train`` for fitting models, ``holdout`` for evaluating them).
"""

from pipeline.synth.generator import (
    BENIGN_KINDS,
    DEFAULT_START,
    GROOMING_KINDS,
    MALFORMED_KINDS,
    SynthResult,
    default_labels_path,
    generate,
    write_jsonl,
)
from pipeline.synth.phrasebank import STAGES, BankError, PhraseBank, load_bank

__all__ = [
    "BENIGN_KINDS",
    "DEFAULT_START",
    "GROOMING_KINDS",
    "MALFORMED_KINDS",
    "STAGES",
    "BankError",
    "PhraseBank",
    "SynthResult",
    "default_labels_path",
    "generate",
    "load_bank",
    "write_jsonl",
]
