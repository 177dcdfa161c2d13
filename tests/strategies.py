"""Hypothesis strategies shared by the tests that check a backend's filter translation against the reference
evaluator (``storebridge.filters.evaluate``) on random filter trees."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from storebridge.filters import And, Comparison, Filter, Not, Op, Or


def filter_trees(keys: Sequence[str], scalars: st.SearchStrategy[Any], numbers: st.SearchStrategy[Any], *,
                 in_size: int = 3, max_leaves: int = 6) -> st.SearchStrategy[Filter]:
    """Random trees of every operator over ``keys``: equality-like operators take ``scalars``, ranges take
    ``numbers``, ``$in``/``$nin`` lists of up to ``in_size`` scalars; combined with and / or / not."""
    key = st.sampled_from(list(keys))
    comparisons = st.one_of(
        st.builds(Comparison, key, st.sampled_from([Op.EQ, Op.NE, Op.CONTAINS]), scalars),
        st.builds(Comparison, key, st.sampled_from([Op.GT, Op.GTE, Op.LT, Op.LTE]), numbers),
        st.builds(Comparison, key, st.sampled_from([Op.IN, Op.NIN]), st.lists(scalars, max_size=in_size).map(tuple)),
        st.builds(Comparison, key, st.just(Op.EXISTS), st.booleans()),
    )
    return st.recursive(
        comparisons,
        lambda inner: st.one_of(
            st.lists(inner, min_size=1, max_size=3).map(lambda c: And(tuple(c))),
            st.lists(inner, min_size=1, max_size=3).map(lambda c: Or(tuple(c))),
            inner.map(Not),
        ),
        max_leaves=max_leaves,
    )
