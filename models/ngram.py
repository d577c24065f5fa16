"""TF-IDF n-gram features and a calibrated linear layer, in plain numpy/scipy.

Training uses scikit-learn (``TfidfVectorizer`` + ``LogisticRegression`` + ``CalibratedClassifierCV``); the
fitted vocabulary, idf and coefficients are exported to JSON + safetensors and scored here, so a deployed
worker loads no pickle and runs no scikit-learn code. The analyzers reproduce scikit-learn's ``char_wb`` and
``word`` analyzers exactly (same n-grams, same order); ``tests/models/test_ngram.py`` checks the features and
the probabilities against scikit-learn's own ``transform`` and ``predict_proba``.
"""

from __future__ import annotations

import math
import re
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import sparse

WORD_TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # scikit-learn's default token_pattern
_WORD_TOKEN = re.compile(WORD_TOKEN_PATTERN)

FloatArray = npt.NDArray[np.float64]


def char_wb_ngrams(text: str, min_n: int, max_n: int) -> list[str]:
    """scikit-learn's ``char_wb`` analyzer (lowercase, no accent stripping)."""
    grams: list[str] = []
    for word in text.lower().split():
        grams.extend(_word_char_grams(word, min_n, max_n))
    return grams


def _word_char_grams(word: str, min_n: int, max_n: int) -> list[str]:
    """The ``char_wb`` grams of one (lowercased) whitespace-separated word: a text's grams are its words' grams."""
    padded = f" {word} "
    length = len(padded)
    grams: list[str] = []
    for n in range(min_n, max_n + 1):
        if length <= n:  # a short word counts once, as a whole
            grams.append(padded)
            break
        grams.extend(padded[i : i + n] for i in range(length - n + 1))
    return grams


def word_ngrams(text: str, min_n: int, max_n: int) -> list[str]:
    """scikit-learn's ``word`` analyzer (lowercase, default token pattern, no stop words)."""
    tokens = _WORD_TOKEN.findall(text.lower())
    out = list(tokens) if min_n == 1 else []
    for n in range(max(min_n, 2), min(max_n, len(tokens)) + 1):
        out.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return out


class _SublinearTf:
    """``1 + log(count)`` by count, computed once per count with ``math.log`` (numpy's vectorised log may
    differ from it in the last bit, and the features must not depend on which one ran)."""

    def __init__(self) -> None:
        self._table: FloatArray = np.asarray([0.0], dtype=np.float64)

    def __call__(self, counts: npt.NDArray[np.int64]) -> FloatArray:
        top = int(counts.max(initial=0))
        if top >= len(self._table):
            self._table = np.asarray([0.0, *(1.0 + math.log(c) for c in range(1, 2 * top + 1))], dtype=np.float64)
        out: FloatArray = self._table[counts]
        return out


_SUBLINEAR_TF = _SublinearTf()
WORD_MEMO_LIMIT = 200_000  # distinct words kept per block; cleared wholesale when full (results never depend on it)


@dataclass(frozen=True, slots=True)
class TfidfBlock:
    """One fitted ``TfidfVectorizer`` (sublinear tf, l2 norm): analyzer settings, vocabulary and idf."""

    analyzer: str  # "char_wb" | "word"
    min_n: int
    max_n: int
    vocabulary: Mapping[str, int]
    idf: FloatArray
    offset: int  # column offset of this block in the stacked feature matrix
    # char_wb only: a word's in-vocabulary columns. Chat reuses words far more than whole lines, so a new line
    # costs a few lookups instead of slicing and looking up every gram again.
    _word_columns: dict[str, tuple[int, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def grams(self, text: str) -> list[str]:
        if self.analyzer == "char_wb":
            return char_wb_ngrams(text, self.min_n, self.max_n)
        return word_ngrams(text, self.min_n, self.max_n)

    def columns(self, text: str) -> list[int]:
        """The block-local vocabulary column of each of the text's grams (repeats kept, unknown grams left out)."""
        lookup = self.vocabulary.get
        if self.analyzer != "char_wb":
            return [j for j in map(lookup, word_ngrams(text, self.min_n, self.max_n)) if j is not None]
        memo = self._word_columns
        out: list[int] = []
        for word in text.lower().split():
            found = memo.get(word)
            if found is None:
                if len(memo) >= WORD_MEMO_LIMIT:
                    memo.clear()
                grams = _word_char_grams(word, self.min_n, self.max_n)
                found = memo[word] = tuple(j for j in map(lookup, grams) if j is not None)
            out.extend(found)
        return out

    def entries(self, texts: Sequence[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], FloatArray]:
        """Rows, stacked-matrix columns and l2-normalised tf-idf values of ``texts``, ordered by (row, column).
        The arithmetic is scikit-learn's, value by value: ``(1 + log tf) * idf``, divided by the row's norm
        (squares summed in column order)."""
        cols = array("q")
        lengths = array("q")
        for text in texts:
            found = self.columns(text)
            cols.extend(found)
            lengths.append(len(found))
        width = len(self.idf)
        rows = np.repeat(np.arange(len(texts), dtype=np.int64), np.frombuffer(lengths, dtype=np.int64))
        keys, counts = np.unique(rows * width + np.frombuffer(cols, dtype=np.int64), return_counts=True)
        row_of, col_of = np.divmod(keys, width)
        values = _SUBLINEAR_TF(counts) * self.idf[col_of]
        norms = np.sqrt(np.bincount(row_of, weights=values * values, minlength=len(texts)))
        return row_of, col_of + self.offset, values / norms[row_of]



@dataclass(frozen=True, slots=True)
class CalibratedLinear:
    """Per label: ``p = 1 / (1 + exp(a * (x . w + b0) + b))`` (Platt scaling as scikit-learn fits it)."""

    labels: tuple[str, ...]
    coef: FloatArray  # (n_features, n_labels)
    intercept: FloatArray  # (n_labels,)
    platt_a: FloatArray  # (n_labels,)
    platt_b: FloatArray  # (n_labels,)


@dataclass(frozen=True, slots=True)
class NgramModel:
    blocks: tuple[TfidfBlock, ...]
    linear: CalibratedLinear

    @property
    def n_features(self) -> int:
        return int(self.linear.coef.shape[0])

    def features(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """The stacked tf-idf matrix of ``texts`` (one row each; rows do not depend on each other). Built for the
        whole batch in numpy: per text only the vocabulary lookups run in Python."""
        parts = [block.entries(texts) for block in self.blocks]
        rows = np.concatenate([p[0] for p in parts])
        # Stable by row: within a row the blocks keep their order, so columns stay ascending as in scikit-learn.
        order = np.argsort(rows, kind="stable")
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(texts)))])
        return sparse.csr_matrix(
            (np.concatenate([p[2] for p in parts])[order], np.concatenate([p[1] for p in parts])[order], indptr),
            shape=(len(texts), self.n_features),
        )

    def decision(self, texts: Sequence[str]) -> FloatArray:
        out: FloatArray = np.asarray(self.features(texts) @ self.linear.coef) + self.linear.intercept
        return out

    def probabilities(self, texts: Sequence[str]) -> FloatArray:
        """Calibrated probability per text (rows) and label (columns)."""
        z = self.decision(texts)
        out: FloatArray = 1.0 / (1.0 + np.exp(self.linear.platt_a * z + self.linear.platt_b))
        return out
