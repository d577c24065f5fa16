"""The numpy n-gram model equals scikit-learn: same analyzers, same features, same calibrated probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import TfidfVectorizer

from models.dataset import LABELS, paraphrase_messages
from models.ngram import char_wb_ngrams, word_ngrams
from models.stage import StageClassifier, export_ngram, read_ngram
from models.train import SklearnStageModel, _targets, fit_sklearn

SAMPLES = ["hey ur really good at {game}", "a b c", "x", "", "  spaced   out  ", "ok!! lol?? 12 13", "über café",
           "snapchat snapchat snapchat", "dont tell ur mom ok", "i\tlike\ntabs", "a1 b22 c333"]


@given(st.text(alphabet=st.sampled_from("ab cdé1!?.\t\n_-'"), max_size=40))
@settings(max_examples=200, deadline=None)
def test_char_wb_matches_sklearn(text: str) -> None:
    analyzer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5)).build_analyzer()
    assert char_wb_ngrams(text, 2, 5) == analyzer(text)


@given(st.text(alphabet=st.sampled_from("ab cdé1!?.\t\n_-'"), max_size=40))
@settings(max_examples=200, deadline=None)
def test_word_ngrams_match_sklearn(text: str) -> None:
    analyzer = TfidfVectorizer(analyzer="word", ngram_range=(1, 2)).build_analyzer()
    assert word_ngrams(text, 1, 2) == analyzer(text)


@pytest.fixture(scope="module")
def fitted() -> tuple[SklearnStageModel, list[str]]:
    messages = paraphrase_messages(renderings=2)
    texts = [m.folded for m in messages]
    return fit_sklearn(texts, _targets(messages), groups=[m.group for m in messages]), texts


def test_features_equal_sklearn_transform(fitted: tuple[SklearnStageModel, list[str]]) -> None:
    model, texts = fitted
    ours = model.export().features(texts[:80] + SAMPLES).toarray()
    theirs = model.transform(texts[:80] + SAMPLES).toarray()
    assert np.abs(ours - theirs).max() <= 1e-12


def test_probabilities_equal_sklearn_predict_proba(fitted: tuple[SklearnStageModel, list[str]],
                                                   tmp_path: Path) -> None:
    model, texts = fitted
    sample = texts[::3] + SAMPLES
    expected = model.predict_proba(sample)
    paths = export_ngram(model.export(), tmp_path)
    loaded = read_ngram(tmp_path / paths[0], tmp_path / paths[1])  # through the JSON + safetensors round trip
    assert loaded.linear.labels == LABELS
    assert np.abs(loaded.probabilities(sample) - expected).max() <= 1e-6


def test_classifier_rounds_and_memoises(fitted: tuple[SklearnStageModel, list[str]]) -> None:
    model, _ = fitted
    classifier = StageClassifier(model.export(), version="t", sha256="t")
    first = classifier.probabilities("how old r u")
    assert first == classifier.probabilities("how old r u")
    assert all(round(p, 4) == p for p in first)
