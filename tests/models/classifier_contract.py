"""The contract every ``MessageClassifier`` passes (HMA style: subclass it and provide the fixtures).

deterministic; scores in [0, 1] and rounded to 4 decimals; ``score`` gives the same result whether the text was
primed or not, alone or in a batch; non-empty name, version and sha256 on the classifier and in its output.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pipeline.age import PairAssessment
from pipeline.decision import ClassifierContext, MessageClassifier, StageScores
from pipeline.normalise import normalise

TEXTS = (
    "hey ur really good at this game ngl",
    "how old r u btw",
    "are ur parents home rn",
    "i sent u 500 gems, dont tell ur mom",
    "keep this between us ok",
    "add me on snap its easier",
    "we could meet at the mall saturday",
    "send me a pic",
    "my boss at the warehouse is so annoying",
    "gg that was close",
    "lol",
    "",
    "s.n.a.p.c.h.a.t me",
    "ur so mature for ur age, how old r u? dont tell anyone we talk",
)

RISKY = PairAssessment(1.0, "adult_minor", "u-old", "u-young", 14.5, "adult with a minor")
CONTEXTS = (
    ClassifierContext(RISKY, "older", 0.6, 12),
    ClassifierContext(RISKY, "older", 0.0, 1),
    ClassifierContext(RISKY, "younger", 0.6, 12),
    ClassifierContext(PairAssessment(0.12, "peers", "u-a", "u-b", 1.0, "peers"), "older", 0.0, 3),
)


class ClassifierContract:
    @pytest.fixture
    def make_classifier(self) -> Callable[[], MessageClassifier]:
        raise NotImplementedError  # a factory: each call returns a fresh, unprimed classifier

    def _all(self, classifier: MessageClassifier, *, prime: bool) -> list[StageScores | None]:
        texts = [normalise(t) for t in TEXTS]
        if prime:
            classifier.prime(texts)
        return [classifier.score(t, c) for t in texts for c in CONTEXTS]

    def test_identity_is_named(self, make_classifier: Callable[[], MessageClassifier]) -> None:
        classifier = make_classifier()
        assert classifier.name and classifier.version and classifier.sha256
        outputs = [s for s in self._all(classifier, prime=True) if s is not None]
        assert outputs, "the classifier scored nothing in the contract's contexts"
        for scored in outputs:
            assert (scored.model_id, scored.version, scored.sha256) == (
                classifier.name, classifier.version, classifier.sha256)

    def test_scores_are_probabilities(self, make_classifier: Callable[[], MessageClassifier]) -> None:
        for scored in self._all(make_classifier(), prime=True):
            if scored is None:
                continue
            assert scored.scores
            for stage, p in scored.scores.items():
                assert isinstance(stage, str) and stage
                assert 0.0 <= p <= 1.0
                assert round(p, 4) == p

    def test_deterministic(self, make_classifier: Callable[[], MessageClassifier]) -> None:
        assert self._all(make_classifier(), prime=True) == self._all(make_classifier(), prime=True)

    def test_batch_equals_single(self, make_classifier: Callable[[], MessageClassifier]) -> None:
        batched = self._all(make_classifier(), prime=True)
        single: list[StageScores | None] = []
        for raw in TEXTS:
            for context in CONTEXTS:
                fresh = make_classifier()  # nothing primed, nothing cached
                single.append(fresh.score(normalise(raw), context))
        assert len(batched) == len(single)
        for b, s in zip(batched, single, strict=True):
            assert (b is None) == (s is None)
            if b is not None and s is not None:
                assert b.scores.keys() == s.scores.keys()
                for stage in b.scores:
                    assert abs(b.scores[stage] - s.scores[stage]) <= 1e-6, stage
                assert b.evidence == s.evidence

    def test_priming_other_texts_changes_nothing(self, make_classifier: Callable[[], MessageClassifier]) -> None:
        plain = make_classifier()
        primed = make_classifier()
        primed.prime([normalise(t) for t in ("totally unrelated words", "another batch line", *TEXTS[::-1])])
        for raw in TEXTS:
            for context in CONTEXTS:
                assert plain.score(normalise(raw), context) == primed.score(normalise(raw), context)

    def test_forecasts_change_nothing(self, make_classifier: Callable[[], MessageClassifier]) -> None:
        """A forecast is a hint for what to warm: right or wrong, the scores stay those of an unprimed model."""
        plain = make_classifier()
        texts = [normalise(t) for t in TEXTS]
        for forecast in (lambda i: CONTEXTS[i % len(CONTEXTS)], lambda i: CONTEXTS[-1 - i % len(CONTEXTS)]):
            hinted = make_classifier()
            hinted.prime(texts, forecast)
            for text in texts:
                for context in CONTEXTS:
                    assert plain.score(text, context) == hinted.score(text, context)
