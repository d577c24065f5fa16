"""Every shipped classifier passes the contract: the n-gram stage model, the exemplar model with the fake
encoder (fast) and, once, the exemplar model with the real ONNX encoder (integration)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from models.dataset import paraphrase_messages
from models.exemplar import EXEMPLAR_MODEL_ID, ExemplarBank, ExemplarClassifier, load_exemplar_classifier
from models.loader import MODELS_DIR
from models.manifest import read_manifest
from models.ngram import NgramModel
from models.stage import STAGE_MODEL_ID, StageClassifier, load_stage_classifier
from models.train import build_bank
from pipeline.decision import MessageClassifier
from tests.models.classifier_contract import ClassifierContract
from tests.models.fake_encoder import FakeEncoder


@pytest.fixture(scope="module")
def shipped_stage() -> StageClassifier:
    return load_stage_classifier(read_manifest(MODELS_DIR))


def _fresh_stage(shipped: StageClassifier) -> StageClassifier:
    model: NgramModel = shipped.model
    return StageClassifier(model, version=shipped.version, sha256=shipped.sha256)


@pytest.fixture(scope="module")
def fake_bank() -> ExemplarBank:
    messages = paraphrase_messages(renderings=1)
    return build_bank(FakeEncoder(), messages[::2], messages[1::2])


class TestStageClassifier(ClassifierContract):
    @pytest.fixture
    def make_classifier(self, shipped_stage: StageClassifier) -> Callable[[], MessageClassifier]:
        return lambda: _fresh_stage(shipped_stage)


class TestExemplarWithFakeEncoder(ClassifierContract):
    @pytest.fixture
    def make_classifier(self, shipped_stage: StageClassifier,
                        fake_bank: ExemplarBank) -> Callable[[], MessageClassifier]:
        return lambda: ExemplarClassifier(FakeEncoder(), fake_bank, _fresh_stage(shipped_stage), version="test",
                                          sha256="0" * 64)


@pytest.fixture(scope="module")
def onnx_exemplar(shipped_stage: StageClassifier) -> ExemplarClassifier:
    return load_exemplar_classifier(read_manifest(MODELS_DIR), shipped_stage)


class TestExemplarWithOnnxEncoder(ClassifierContract):
    """Integration: the shipped int8 MiniLM, onnxruntime and tokenizers only."""

    @pytest.fixture
    def make_classifier(self, shipped_stage: StageClassifier,
                        onnx_exemplar: ExemplarClassifier) -> Callable[[], MessageClassifier]:
        return lambda: ExemplarClassifier(onnx_exemplar.encoder, onnx_exemplar.bank, _fresh_stage(shipped_stage),
                                          policy=onnx_exemplar.policy, version=onnx_exemplar.version,
                                          sha256=onnx_exemplar.sha256)

    def test_paraphrase_lands_on_its_stage(self, onnx_exemplar: ExemplarClassifier) -> None:
        from pipeline.normalise import normalise
        from tests.models.classifier_contract import CONTEXTS

        scored = onnx_exemplar.score(normalise("nobody else can know about the stuff we talk about"), CONTEXTS[0])
        assert scored is not None
        assert max(scored.scores, key=lambda s: scored.scores[s]) == "secrecy"
        assert scored.evidence and scored.evidence[0].startswith("secrecy:")


def test_shipped_ids() -> None:
    manifest = read_manifest(MODELS_DIR)
    assert {STAGE_MODEL_ID, EXEMPLAR_MODEL_ID} <= set(manifest.models)
