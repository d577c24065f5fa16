"""``canonical`` takes the standard library's encoder where it prints JCS; it must equal the RFC 8785 reference
implementation byte for byte on any JSON value, and reject what the reference rejects."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.chain import canonical

_FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, -3.0, 0.1, 1e-7, 1e-6, 0.0001, 0.00012, 1e16, 1e20, 1e21, 1.5e300, 5e-324,
                     2.0**53, 123456789.125]),
)
_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1), _FLOATS, _TEXT)
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                         st.dictionaries(_TEXT, inner, max_size=5)), max_leaves=30)


@given(_VALUES)
@settings(max_examples=500, deadline=None)
def test_equals_the_reference_implementation(value: Any) -> None:
    assert canonical(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("value", [
    {"risk": 0.5, "factor": 1.0, "gap": 12.0, "small": 2.5e-5, "ids": ("a", "b"), "ok": True, "none": None},
    {"é": 1, "e": 2, "\U0001f600": 3, "\uff61": 4},  # non-ASCII keys: JCS sorts by UTF-16 code units
    {"text": "quote \" backslash \\ controls \x00\x1f\n\t\x7f \u2028 emoji \U0001f600"},
    [1e21, 1e-7, -0.0, 2**53 - 1],
])
def test_records_and_edge_cases(value: Any) -> None:
    assert canonical(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("value", [float("nan"), {"x": float("inf")}, 2**53, ["\ud800"]])
def test_rejects_what_the_reference_rejects(value: Any) -> None:
    with pytest.raises(Exception) as ours:
        canonical(value)
    with pytest.raises(Exception) as theirs:
        rfc8785.dumps(value)
    assert type(ours.value) is type(theirs.value)
