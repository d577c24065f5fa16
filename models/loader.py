"""Load the shipped models once at process start (never at import), verified against the manifest.

Failure policy: any missing, altered or unreadable artifact raises ``ModelArtifactError`` and the process
does not start. A worker that cannot load its models consumes nothing, so its events wait in Kafka for a
healthy worker: no message is ever allowed because a classifier was unavailable. Running rules-only is an
explicit operator choice (``load_detectors(..., with_models=False)``), never a silent fallback; scoring errors
at run time are bugs and crash the worker without committing, so the batch is decided again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.exemplar import load_exemplar_classifier
from models.fusion import FUSION_MODEL_ID, LogisticRiskFusion, load_fusion
from models.manifest import read_manifest
from models.stage import load_stage_classifier
from pipeline.decision import MessageClassifier

MODELS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class LoadedModels:
    classifiers: tuple[MessageClassifier, ...]
    fusion: LogisticRiskFusion | None
    version: str


def load_models(root: Path | None = None, *, exemplar: bool = True, fusion: bool | None = None) -> LoadedModels:
    """The stage classifier, the exemplar classifier (cascade) and, when training adopted it (or ``fusion`` is
    True), the learned fusion. Training records both choices in the manifest from validation figures: the
    fusion only if it beat the hand-tuned weights, the models at all only if they beat the rules alone."""
    manifest = read_manifest(root or MODELS_DIR)
    _single_threaded_blas()
    decision = manifest.models.get(FUSION_MODEL_ID, {})
    if not decision.get("use_models", True):
        # training measured the rules alone better than any model combination on validation: ship that choice
        return LoadedModels((), None, manifest.version)
    stage = load_stage_classifier(manifest)
    classifiers: tuple[MessageClassifier, ...] = (stage,)
    if exemplar:
        classifiers = (stage, load_exemplar_classifier(manifest, stage))
    adopted = bool(decision.get("adopted", False))
    use_fusion = adopted if fusion is None else fusion
    return LoadedModels(classifiers, load_fusion(manifest) if use_fusion else None, manifest.version)


def _single_threaded_blas() -> None:
    """Decisions run on one thread per worker; the exemplar model's small matrix products gain nothing from
    BLAS threads, which spin against onnxruntime and the decision thread (measured on 2 cores: replay with
    models 1,800-4,800 events/s with OpenBLAS threads, 4,300-5,800 without). Process-wide, set once at start."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
