"""Build the ``Detectors`` bundle a process decides with: rule packs, and the trained classifiers when they
ship in ``models/``. Loaded once at start (never at import) and passed down; replay and the workers share it."""

from __future__ import annotations

from pipeline.decision import Detectors
from pipeline.rulebook import load_rulebook
from pipeline.settings import Settings


def load_detectors(settings: Settings, *, with_models: bool = True) -> Detectors:
    """Rules plus the models in ``settings.models_dir`` (default: the ``models`` package), verified against
    their manifest. A model that fails verification raises ``models.manifest.ModelArtifactError``: the process
    stops rather than deciding without it (fail toward review, never toward allow)."""
    rules = load_rulebook(settings.rules_dir)
    if not with_models:
        return Detectors(rules=rules, case_threshold=settings.case_threshold)
    from models.loader import load_models  # deferred: numpy/onnxruntime load only when models are wanted

    loaded = load_models(settings.models_dir)
    return Detectors(rules=rules, classifiers=loaded.classifiers, case_threshold=settings.case_threshold,
                     fusion=loaded.fusion)


def close_detectors(detectors: Detectors) -> None:
    """Release what classifiers hold between batches (the exemplar prefetch thread). Safe to call more than
    once; a closed classifier starts again on its next use."""
    for classifier in detectors.classifiers:
        close = getattr(classifier, "close", None)
        if callable(close):
            close()
