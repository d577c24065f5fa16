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


def _fake_exemplar(shipped: StageClassifier, bank: ExemplarBank) -> tuple[ExemplarClassifier, FakeEncoder]:
    encoder = FakeEncoder()
    return ExemplarClassifier(encoder, bank, _fresh_stage(shipped), version="test", sha256="0" * 64), encoder


def _settle(classifier: ExemplarClassifier) -> None:
    for future in list(classifier._pending.values()):
        future.result(timeout=30)


def test_prefetch_embeds_what_the_gate_will_admit_once(shipped_stage: StageClassifier,
                                                       fake_bank: ExemplarBank) -> None:
    from pipeline.normalise import normalise
    from tests.models.classifier_contract import CONTEXTS, TEXTS

    classifier, encoder = _fake_exemplar(shipped_stage, fake_bank)
    texts = [normalise(t) for t in TEXTS]
    classifier.prime(texts, lambda i: CONTEXTS[0])  # older party of an adult-minor pair, conversation at risk
    _settle(classifier)
    admitted = [t for t in texts if classifier.policy.admits(CONTEXTS[0], shipped_stage.peak(t.text))]
    assert admitted and classifier.stats.prefetched == encoder.calls == len({t.text for t in admitted})
    for text in admitted:
        assert classifier.score(text, CONTEXTS[0]) is not None
    assert encoder.calls == classifier.stats.encoded == len({t.text for t in admitted})  # nothing embedded twice
    classifier.close()


def test_prefetch_skips_what_the_gate_refuses(shipped_stage: StageClassifier, fake_bank: ExemplarBank) -> None:
    from pipeline.normalise import normalise
    from tests.models.classifier_contract import CONTEXTS, TEXTS

    classifier, encoder = _fake_exemplar(shipped_stage, fake_bank)
    classifier.prime([normalise(t) for t in TEXTS], lambda i: CONTEXTS[3])  # peers: never admitted
    assert not classifier._pending and encoder.calls == 0 and classifier.stats.prefetched == 0


def test_closed_classifier_still_scores_and_prefetches_again(shipped_stage: StageClassifier,
                                                             fake_bank: ExemplarBank) -> None:
    from pipeline.normalise import normalise
    from tests.models.classifier_contract import CONTEXTS, TEXTS

    classifier, _ = _fake_exemplar(shipped_stage, fake_bank)
    texts = [normalise(t) for t in TEXTS]
    classifier.prime(texts, lambda i: CONTEXTS[0])
    classifier.close()
    assert classifier._executor is None and not classifier._pending
    fresh, _ = _fake_exemplar(shipped_stage, fake_bank)
    assert [classifier.score(t, CONTEXTS[0]) for t in texts] == [fresh.score(t, CONTEXTS[0]) for t in texts]
    classifier.prime([normalise("keep this between us, ok? dont tell")], lambda i: CONTEXTS[0])
    _settle(classifier)
    classifier.close()


def test_switch_interval_is_lowered_only_while_prefetches_are_queued(shipped_stage: StageClassifier,
                                                                     fake_bank: ExemplarBank) -> None:
    import sys

    from models.exemplar import PREFETCH_SWITCH_INTERVAL
    from pipeline.normalise import normalise
    from tests.models.classifier_contract import CONTEXTS, TEXTS

    default = sys.getswitchinterval()
    assert default != PREFETCH_SWITCH_INTERVAL
    classifier, _ = _fake_exemplar(shipped_stage, fake_bank)
    texts = [normalise(t) for t in TEXTS]
    classifier.prime(texts, lambda i: CONTEXTS[0])
    assert classifier._pending and sys.getswitchinterval() == PREFETCH_SWITCH_INTERVAL
    _settle(classifier)
    classifier.prime(texts, lambda i: CONTEXTS[0])  # everything harvested, nothing new to queue
    assert not classifier._pending and sys.getswitchinterval() == default
    classifier.prime([normalise("keep this between us, ok? dont tell")], lambda i: CONTEXTS[0])
    classifier.close()
    assert sys.getswitchinterval() == default
