"""Build the ``Detectors`` bundle a process decides with: rule packs, and the trained classifiers when they
ship in ``models/``. Loaded once at start (never at import) and passed down; replay and the workers share it."""

from __future__ import annotations

from pipeline.decision import Detectors
from pipeline.rulebook import load_rulebook
from pipeline.settings import Settings


def load_detectors(settings: Settings, *, with_models: bool = True) -> Detectors:
    rules = load_rulebook(settings.rules_dir)
    if not with_models:
        return Detectors(rules=rules, case_threshold=settings.case_threshold)
    # The classifier issue plugs trained models in here (models.load_models), verified against their manifest.
    return Detectors(rules=rules, case_threshold=settings.case_threshold)
