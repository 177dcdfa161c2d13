"""The SQLite filter compiler against the reference evaluator: hand cases, the shared filter dataset,
a hypothesis property test over random metadata and random filter trees, and hostile values."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storebridge.adapters.sqlite._sql_filters import METADATA_JSON, compile_filter
from storebridge.errors import FilterError
from storebridge.filters import Comparison, Filter, FilterLike, Not, Op, evaluate
from storebridge.testing.data import FILTER_CASES, FILTER_METADATA
from tests import strategies


def make_table(metadata: Sequence[dict[str, Any]]) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE docs (rowid INTEGER PRIMARY KEY, metadata TEXT NOT NULL)")
    conn.executemany("INSERT INTO docs (rowid, metadata) VALUES (?, ?)",
                     [(i, METADATA_JSON.encode(m)) for i, m in enumerate(metadata)])
    return conn


def selected(conn: sqlite3.Connection, spec: FilterLike) -> set[int]:
    compiled = compile_filter(spec)
    if compiled is None:
        return {row[0] for row in conn.execute("SELECT rowid FROM docs")}
    sql, params = compiled
    return {row[0] for row in conn.execute(f"SELECT rowid FROM docs WHERE {sql}", params)}


def expected(metadata: Sequence[dict[str, Any]], spec: FilterLike) -> set[int]:
    return {i for i, m in enumerate(metadata) if evaluate(spec, m)}


@pytest.fixture(scope="module")
def dataset() -> Iterator[sqlite3.Connection]:
    conn = make_table(FILTER_METADATA)
    yield conn
    conn.close()


# -- hand cases ------------------------------------------------------------------------------------------

HAND_METADATA: list[dict[str, Any]] = [
    {"n": 1, "s": "a", "b": True, "l": [1, "x", True], "d": {"k": 1}},
    {"n": 1.0, "s": "A", "b": False, "l": [], "d": {"k": "1"}},
    {"n": True, "s": "[1]", "b": 1, "l": "x", "d": [1]},
    {"n": None, "s": None, "b": None, "l": None, "d": None},
    {},
    {"n": "1", "s": ["a"], "l": {"x": "x"}, "d": {"k": {"k": 1}}, "d.k": 5},
    {"n": 0, "s": "{}", "b": 0, "l": [[1], {"a": 1}, None, 1.0]},
    {"n": -0.0, "s": "", "l": [False, 0]},
    {"n": 2**62 + 1, "s": "é", "l": [2**62 + 1]},
    {"n": 4.611686018427388e18, "s": "'; DROP TABLE docs; --"},
]


@pytest.mark.parametrize("spec, rows", [
    ({"n": 1}, {0, 1}),                                   # int == float, a bool never equals 1
    ({"n": True}, {2}),
    ({"n": 0}, {6, 7}),                                   # -0.0 == 0
    ({"n": {"$ne": 1}}, {2, 3, 4, 5, 6, 7, 8, 9}),        # missing and None match $ne
    ({"n": {"$gt": 0}}, {0, 1, 8, 9}),                    # bools and text are not numbers
    ({"n": {"$gte": 2**62 + 1}}, {8}),                    # big int vs its float neighbour, exactly
    ({"n": 2**62 + 1}, {8}),
    ({"n": {"$in": []}}, set()),
    ({"n": {"$nin": []}}, set(range(10))),
    ({"n": {"$in": [True, "1"]}}, {2, 5}),
    ({"s": "[1]"}, {2}),                                  # not the list ["a"]: a list never equals a scalar
    ({"s": "{}"}, {6}),
    ({"s": {"$in": ["a", "[1]", "{}"]}}, {0, 2, 6}),
    ({"s": ""}, {7}),
    ({"s": "é"}, {8}),
    ({"b": {"$exists": True}}, {0, 1, 2, 6}),
    ({"b": {"$exists": False}}, {3, 4, 5, 7, 8, 9}),
    ({"l": {"$contains": 1}}, {0, 6}),                    # 1.0 in a list counts; [1] does not
    ({"l": {"$contains": True}}, {0}),
    ({"l": {"$contains": 0}}, {7}),
    ({"l": {"$contains": False}}, {7}),
    ({"l": {"$contains": "x"}}, {0}),                     # not the string "x", not the object {"x": "x"}
    ({"l": {"$contains": 2**62 + 1}}, {8}),
    ({"d.k": 1}, {0}),
    ({"d.k": 5}, {5}),                                    # a literal dotted key wins over the nested path
    ({"d.k": {"$exists": True}}, {0, 1, 5}),
    ({"d.k.k": 1}, {5}),                                  # no literal "d.k.k": split on every dot
    ({"$not": {"n": {"$gt": 0}}}, {2, 3, 4, 5, 6, 7}),
    ({"$not": {"$or": [{"n": 1}, {"s": "a"}]}}, {2, 3, 4, 5, 6, 7, 8, 9}),
])
def test_hand_cases(spec: dict[str, Any], rows: set[int]) -> None:
    conn = make_table(HAND_METADATA)
    assert expected(HAND_METADATA, spec) == rows, "the hand-written expectation disagrees with evaluate()"
    assert selected(conn, spec) == rows
    assert selected(conn, {"$not": spec}) == set(range(len(HAND_METADATA))) - rows


def test_non_ascii_keys_need_unescaped_storage() -> None:
    metadata: list[dict[str, Any]] = [{"日本": "語"}, {"日本": {"語": 1}}, {"ключ ы": 2}]
    conn = make_table(metadata)
    for spec in ({"日本": "語"}, {"日本.語": 1}, {"ключ ы": {"$gte": 2}}, {"日本": {"$exists": True}}):
        assert selected(conn, spec) == expected(metadata, spec) != set(), spec
    escaped = sqlite3.connect(":memory:")
    escaped.execute("CREATE TABLE docs (rowid INTEGER PRIMARY KEY, metadata TEXT NOT NULL)")
    escaped.execute("INSERT INTO docs VALUES (0, ?)", (json.dumps({"日本": "語"}),))  # \u-escaped key
    assert selected(escaped, {"日本": "語"}) == set(), "why METADATA_JSON keeps keys unescaped"


def test_nested_path_matches_reference_for_split_paths() -> None:
    metadata: list[dict[str, Any]] = [{"d": {"k": {"k": 1}}}, {"d.k": {"k": 1}}, {"d.k.k": 1}, {"d": {"k.k": 1}}]
    conn = make_table(metadata)
    assert selected(conn, {"d.k.k": 1}) == expected(metadata, {"d.k.k": 1}) == {0, 2}


@pytest.mark.parametrize("case", sorted(FILTER_CASES))
def test_shared_filter_dataset(dataset: sqlite3.Connection, case: str) -> None:
    for spec in FILTER_CASES[case]:
        assert selected(dataset, spec) == expected(FILTER_METADATA, spec), spec
        assert selected(dataset, {"$not": spec}) == expected(FILTER_METADATA, {"$not": spec}), spec


def test_no_filter_is_none() -> None:
    assert compile_filter(None) is None
    assert compile_filter({}) is None


def test_malformed_filters_raise_filter_error() -> None:
    malformed: list[dict[str, Any]] = [{"a": {"$foo": 1}}, {"$and": []}, {"a": {"$gt": "x"}}, {'a"b': 1}, {"a": [1]}]
    for spec in malformed:
        with pytest.raises(FilterError):
            compile_filter(spec)


def test_hand_built_tree_with_quote_in_key_is_refused() -> None:
    with pytest.raises(FilterError):
        compile_filter(Comparison('a"]', Op.EQ, 1))


def test_column_must_be_an_identifier() -> None:
    with pytest.raises(ValueError):
        compile_filter({"a": 1}, column="metadata; DROP TABLE docs")


# -- hostile values are bound, never interpolated --------------------------------------------------------

HOSTILE_VALUES = ["'; DROP TABLE docs; --", "' OR 1=1 --", '"; DROP TABLE docs; --', "$.a", "?999", ":name", "\\"]


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_hostile_values_are_bound_parameters(value: str) -> None:
    for spec in ({"s": value}, {"s": {"$ne": value}}, {"s": {"$in": [value, "x"]}}, {"l": {"$contains": value}}):
        sql, params = compile_filter(spec)  # type: ignore[misc]
        assert value not in sql
        assert value in params
    conn = make_table(HAND_METADATA + [{"s": value, "l": [value]}])
    last = len(HAND_METADATA)
    assert selected(conn, {"s": value}) == ({9, last} if value == HAND_METADATA[9]["s"] else {last})
    assert selected(conn, {"l": {"$contains": value}}) == {last}
    assert conn.execute("SELECT count(*) FROM docs").fetchone()[0] == last + 1, "the table must still be there"


def test_keys_reach_sql_only_as_bound_json_paths() -> None:
    sql, params = compile_filter({"with space-and_dash": 1, "a.b": 2})  # type: ignore[misc]
    assert "with space" not in sql and "a.b" not in sql
    assert '$."with space-and_dash"' in params and '$."a"."b"' in params


# -- property test: SQL == evaluate() on random metadata and random trees --------------------------------

KEYS = ["a", "b", "c", "a.b", "b.c", "日本", "x y"]
FIELDS = ["a", "b", "c", "a.b", "b.c", "a.b.c", "z", "日本", "x y", "a.日本"]

ints = st.one_of(st.sampled_from([0, 1, -1, 2, 2**53 + 1, 2**62]), st.integers(-(2**63), 2**63 - 1))
floats = st.one_of(st.sampled_from([0.0, -0.0, 1.0, 0.5, 2.0, 1e-9, 9007199254740992.0]),
                   st.floats(allow_nan=False, allow_infinity=False))
strings = st.one_of(st.sampled_from(["", "a", "A", "1", "true", "[1]", "{}", "é", "🚀"]), st.text(max_size=4))
scalars = st.one_of(ints, floats, st.booleans(), strings)
json_values = st.recursive(
    st.one_of(st.none(), scalars),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.sampled_from(KEYS), children, max_size=3)),
    max_leaves=8,
)
metadata_dicts = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=4)
numbers = st.one_of(ints, floats)


filter_trees = strategies.filter_trees(FIELDS, scalars, numbers, in_size=4)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(metadata=st.lists(metadata_dicts, min_size=1, max_size=12), tree=filter_trees)
def test_sql_selects_exactly_what_evaluate_accepts(metadata: list[dict[str, Any]], tree: Filter) -> None:
    conn = make_table(metadata)
    try:
        assert selected(conn, tree) == expected(metadata, tree)
        assert selected(conn, Not(tree)) == expected(metadata, Not(tree))
    finally:
        conn.close()


@settings(max_examples=200, deadline=None)
@given(metadata=st.lists(metadata_dicts, min_size=1, max_size=8), tree=filter_trees)
def test_compiled_filter_is_null_safe_under_negation(metadata: list[dict[str, Any]], tree: Filter) -> None:
    """A row matches the filter or its negation, never both and never neither."""
    conn = make_table(metadata)
    try:
        both = selected(conn, tree) | selected(conn, Not(tree))
        assert both == set(range(len(metadata)))
        assert not selected(conn, tree) & selected(conn, Not(tree))
    finally:
        conn.close()
