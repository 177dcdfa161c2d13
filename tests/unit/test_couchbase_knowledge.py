"""The ``couchbase`` knowledge store without a server (none can run on the project's machines).

What is pinned here: the exact SQL++ text and named parameters, the exact Search (FTS) query objects, the
document bodies, keys, cursors and the Search index definition, URL parsing and secret masking, the error
mapping, and the calls the store makes on the SDK.

Two small interpreters read what the store sends with the documented semantics of the engine's
primitives (SQL++: ``TYPE()``, ``IS VALUED``, ``=``/``IN`` with MISSING/NULL propagation and
three-valued ``AND``/``OR``/``NOT``, ``ANY ... SATISFIES ... END``; Search: term, numeric range, boolean
field, conjunction, disjunction, boolean must/must_not, match_all/none). They let the filter compilers be
checked against the reference evaluator on the conformance data and on random data. ``FakeCluster`` is an
in-memory stand-in for the SDK's ``Cluster`` built on them, so the store's own logic (batching, keys,
cursors, consistency tokens, result handling) runs under the whole conformance suite. It is NOT the
engine: Couchbase itself is exercised only by ``tests/conformance/test_knowledge_couchbase.py`` when
``STOREBRIDGE_TEST_COUCHBASE_URL`` is set.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("couchbase", reason="[no engine on this machine] the couchbase SDK is not installed")

import couchbase.exceptions as cb
from couchbase.result import MutationToken

from storebridge.adapters.couchbase import CouchbaseKnowledgeStore
from storebridge.adapters.couchbase._query import (
    INFO_KEY,
    MAX_TERM_BYTES,
    body,
    compile_fts,
    compile_sqlpp,
    count_statement,
    decode_cursor,
    document_key,
    encode_cursor,
    index_params,
    keys_statement,
    keyspace,
    page_statement,
    parse_body,
    quote,
    term,
    typed_copies,
)
from storebridge.adapters.couchbase.knowledge import parse_couchbase_url
from storebridge.errors import (
    AlreadyExistsError,
    CollectionNotFoundError,
    ConfigurationError,
    ConnectionFailedError,
    FilterError,
    NotSupportedError,
    OperationFailedError,
    UnsupportedFilterError,
    ValidationError,
)
from storebridge.filters import ALL_OPS, And, Comparison, Filter, Not, Op, Or, evaluate, parse_filter, walk
from storebridge.models import Distance, KnowledgeDocument
from storebridge.testing import KnowledgeStoreSuite, StoreFactory
from storebridge.testing.data import FILTER_CASES, FILTER_METADATA

MISSING = object()

# -- a SQL++ reader for the statements this store emits ---------------------------------------------------------

_TOKEN = re.compile(r'\s*(?:(`(?:[^`]|``)+`)|("[^"]*")|(\$\w+)|(!=|>=|<=|[=<>(),.\[\]*])|([A-Za-z_][A-Za-z0-9_]*))')


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        assert match, f"cannot read SQL++ at {text[pos:pos + 30]!r}"
        out.append(next(g for g in match.groups() if g is not None))
        pos = match.end()
    return out


def _type(value: Any) -> str:
    if value is MISSING:
        return "missing"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _unknown(*values: Any) -> Any:
    """MISSING or NULL if an operand is (MISSING first), else None meaning "known"."""
    if any(v is MISSING for v in values):
        return MISSING
    if any(v is None for v in values):
        return "NULL"
    return None


_RANK = {"boolean": 1, "number": 2, "string": 3, "array": 4, "object": 5}
_NULL = "NULL"  # SQL++ NULL as a logical value (distinct from the JSON null a path may hold)


def _equal(a: Any, b: Any) -> Any:
    unknown = _unknown(a, b)
    if unknown is not None:
        return unknown
    if _type(a) != _type(b):
        return False
    return a == b


class SQLPP:
    """Evaluates one WHERE condition of this store's statements over a document."""

    def __init__(self, text: str, params: dict[str, Any]) -> None:
        self.tokens = _tokens(text)
        self.params = params

    def matches(self, key: str, doc: dict[str, Any]) -> bool:
        self.pos = 0
        self.env: dict[str, Any] = {"key": key, "d": doc}
        value = self.expr()
        assert self.pos == len(self.tokens), f"unread SQL++: {self.tokens[self.pos:]}"
        return value is True

    # parsing and evaluating in one pass (the grammar is tiny)
    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.tokens[self.pos]
        assert expected is None or token == expected, f"expected {expected}, got {token}"
        self.pos += 1
        return token

    def expr(self) -> Any:
        values = [self.conj()]
        while self.peek() == "OR":
            self.take()
            values.append(self.conj())
        if len(values) == 1:
            return values[0]
        if True in values:
            return True
        return MISSING if MISSING in values else _NULL if _NULL in values else False

    def conj(self) -> Any:
        values = [self.unary()]
        while self.peek() == "AND":
            self.take()
            values.append(self.unary())
        if len(values) == 1:
            return values[0]
        if False in values:
            return False
        return MISSING if MISSING in values else _NULL if _NULL in values else True

    def unary(self) -> Any:
        if self.peek() == "NOT":
            self.take()
            value = self.unary()
            return value if value in (MISSING, _NULL) else not value
        return self.comparison()

    def comparison(self) -> Any:
        left = self.operand()
        op = self.peek()
        if op in ("=", "!=", ">", ">=", "<", "<="):
            self.take()
            right = self.operand()
            if op == "=":
                return _equal(left, right)
            if op == "!=":
                eq = _equal(left, right)
                return eq if eq in (MISSING, _NULL) else not eq
            unknown = _unknown(left, right)
            if unknown is not None:
                return unknown
            if _type(left) != _type(right):  # SQL++ orders across types by its collation
                left, right = _RANK[_type(left)], _RANK[_type(right)]
            return {">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right}[op]
        if op == "IN":
            self.take()
            array = self.operand()
            if left is MISSING or left is None:
                return _unknown(left)
            assert isinstance(array, list)
            return any(_equal(left, item) is True for item in array)
        if op == "IS":
            self.take()
            negated = self.peek() == "NOT"
            if negated:
                self.take()
            self.take("VALUED")
            valued = left is not MISSING and left is not None
            return not valued if negated else valued
        return left

    def operand(self) -> Any:
        token = self.take()
        if token == "(":
            value = self.expr()
            self.take(")")
            return value
        if token == "TYPE":
            self.take("(")
            value = self.operand()
            self.take(")")
            return _type(value)
        if token in ("TRUE", "FALSE"):
            return token == "TRUE"
        if token.startswith("$"):
            return self.params[token[1:]]
        if token.startswith('"'):
            return token[1:-1]
        if token == "[":
            items = []
            while self.peek() != "]":
                items.append(self.operand())
                if self.peek() == ",":
                    self.take()
            self.take("]")
            return items
        if token == "META":
            self.take("(")
            self.take("d")
            self.take(")")
            self.take(".")
            self.take("id")
            return self.env["key"]
        if token == "ANY":
            var = self.take()
            self.take("IN")
            array = self.operand()
            self.take("SATISFIES")
            start, results = self.pos, []
            elements: list[Any] = array if isinstance(array, list) else []
            for item in elements or [MISSING]:  # an empty array's condition is still read once
                self.pos = start
                saved = self.env.get(var, MISSING)
                self.env[var] = item
                result = self.expr()
                if elements:
                    results.append(result)
                self.env[var] = saved
            self.take("END")
            if not isinstance(array, list):  # MISSING or NULL for anything but an array
                return MISSING if array is MISSING else _NULL
            return any(r is True for r in results)
        return self.path(token)

    def path(self, head: str) -> Any:
        value: Any = self.env.get(head, MISSING)
        while self.peek() == ".":
            self.take()
            name = self.take()
            if name.startswith("`"):
                name = name[1:-1].replace("``", "`")
            value = value.get(name, MISSING) if isinstance(value, dict) else MISSING
        return value


# -- a Search query reader ---------------------------------------------------------------------------------------

def _field_values(doc: dict[str, Any], path: str) -> list[Any]:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return []
        value = value[part]
    return value if isinstance(value, list) else [value]


def fts_matches(query: dict[str, Any], doc: dict[str, Any]) -> bool:
    """Search semantics of the query objects this store builds (one JSON type per typed field)."""
    if "match_all" in query:
        return True
    if "match_none" in query:
        return False
    if "conjuncts" in query:
        return all(fts_matches(q, doc) for q in query["conjuncts"])
    if "disjuncts" in query:
        return sum(fts_matches(q, doc) for q in query["disjuncts"]) >= max(1, query.get("min", 0))
    if "must" in query or "must_not" in query:
        must = query.get("must", {"conjuncts": []})
        must_not = query.get("must_not", {"disjuncts": []})
        return all(fts_matches(q, doc) for q in must["conjuncts"]) and \
            not any(fts_matches(q, doc) for q in must_not["disjuncts"])
    values = _field_values(doc, query["field"])
    if "term" in query:
        assert all(isinstance(v, str) for v in values), f"a term query on a non-text field {query}"
        return query["term"] in values
    if "bool" in query:
        assert all(isinstance(v, bool) for v in values)
        return query["bool"] in values
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values), query
    low, high = query.get("min", -math.inf), query.get("max", math.inf)
    return any((v > low or (query.get("inclusive_min", True) and v == low))
               and (v < high or (query.get("inclusive_max", False) and v == high)) for v in values)


def fts_filter(tree: Filter) -> Any:
    compiled = compile_fts(tree)
    if isinstance(compiled, bool):
        return lambda doc: compiled
    return lambda doc: fts_matches(compiled, doc)


def sqlpp_filter(tree: Filter) -> Any:
    condition, params = compile_sqlpp(tree)
    reader = SQLPP(condition, params)
    return lambda doc: reader.matches("k", doc)


def _top_level(spec: Any) -> bool:
    return not any(isinstance(n, Comparison) and "." in n.field for n in walk(parse_filter(spec)))  # type: ignore[arg-type]


CASES = [spec for specs in FILTER_CASES.values() for spec in specs if _top_level(spec)]
BODIES = [body(KnowledgeDocument(id=f"d{i}", embedding=[1.0], metadata=m), np.ones(1, np.float32), Distance.L2)
          for i, m in enumerate(FILTER_METADATA)]


@pytest.mark.parametrize("spec", CASES, ids=[json.dumps(c, ensure_ascii=True)[:60] for c in CASES])
def test_both_compilers_give_the_reference_answers(spec: Any) -> None:
    tree = parse_filter(spec)
    assert tree is not None
    expected = [evaluate(tree, m) for m in FILTER_METADATA]
    search, sqlpp = fts_filter(tree), sqlpp_filter(tree)
    assert [search(b) for b in BODIES] == expected, "Search prefilter"
    assert [sqlpp(b) for b in BODIES] == expected, "SQL++ condition"


_SCALARS = st.sampled_from([0, 1, -1, 2, 1.0, 0.5, -0.0, 2**53, 1e300, True, False, "", "a", "A", "a ", "1", "true",
                            "x" * (MAX_TERM_BYTES + 1), "'\"`\\", "日本"])
_VALUES = st.one_of(_SCALARS, st.none(), st.lists(_SCALARS, max_size=4), st.just({"k": 1}), st.just([]))
_KEYS = ["a", "b", "with space", "ü-ключ"]
_METADATA = st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=4)
_BOUNDS = st.sampled_from([0, 1, 0.5, -1, 2, 1e300, 2**53, math.inf, -math.inf, 10**400])
_LEAF = st.one_of(
    st.builds(Comparison, st.sampled_from(_KEYS), st.sampled_from([Op.EQ, Op.NE, Op.CONTAINS]), _SCALARS),
    st.builds(Comparison, st.sampled_from(_KEYS), st.sampled_from([Op.GT, Op.GTE, Op.LT, Op.LTE]), _BOUNDS),
    st.builds(Comparison, st.sampled_from(_KEYS), st.sampled_from([Op.IN, Op.NIN]),
              st.lists(_SCALARS, max_size=3).map(tuple)),
    st.builds(Comparison, st.sampled_from(_KEYS), st.just(Op.EXISTS), st.booleans()),
)
_TREES = st.recursive(_LEAF, lambda inner: st.one_of(
    st.lists(inner, min_size=1, max_size=3).map(lambda c: And(tuple(c))),
    st.lists(inner, min_size=1, max_size=3).map(lambda c: Or(tuple(c))),
    inner.map(Not)), max_leaves=6)


@settings(max_examples=300, deadline=None)
@given(metadata=_METADATA, tree=_TREES)
def test_both_compilers_agree_with_the_evaluator_on_random_data(metadata: dict[str, Any], tree: Filter) -> None:
    doc = json.loads(json.dumps(body(KnowledgeDocument(id="x", embedding=[1.0], metadata=metadata),
                                     np.ones(1, np.float32), Distance.L2)))  # as stored: through JSON
    expected = evaluate(tree, metadata)
    assert fts_filter(tree)(doc) is expected
    assert sqlpp_filter(tree)(doc) is expected


# -- exact output ------------------------------------------------------------------------------------------------

def test_sqlpp_text_and_parameters_are_pinned() -> None:
    def sql(spec: Any) -> tuple[str, dict[str, Any]]:
        tree = parse_filter(spec)
        assert tree is not None
        return compile_sqlpp(tree)

    x = "d.m.`k`"
    assert sql({"k": "v"}) == (f'(TYPE({x}) = "string" AND {x} = $p0)', {"p0": "v"})
    assert sql({"k": 1.5}) == (f'(TYPE({x}) = "number" AND {x} = $p0)', {"p0": 1.5})
    assert sql({"k": True}) == (f'(TYPE({x}) = "boolean" AND {x} IN [TRUE])', {})
    assert sql({"k": {"$ne": "v"}}) == (f'(NOT (TYPE({x}) = "string" AND {x} = $p0))', {"p0": "v"})
    assert sql({"k": {"$gte": 2}}) == (f'(TYPE({x}) = "number" AND {x} >= $p0)', {"p0": 2})
    assert sql({"k": {"$lt": math.inf}}) == (f'(TYPE({x}) = "number")', {})
    assert sql({"k": {"$gt": math.inf}}) == ("FALSE", {})
    assert sql({"k": {"$in": []}}) == ("FALSE", {})
    assert sql({"k": {"$in": ["a", "b", 1, False]}}) == (
        (f'((TYPE({x}) = "string" AND {x} IN $p0) OR (TYPE({x}) = "number" AND {x} = $p1) OR '
         f'(TYPE({x}) = "boolean" AND {x} IN [FALSE]))'), {"p0": ["a", "b"], "p1": 1})
    assert sql({"k": {"$nin": [1, 2]}}) == (f'(NOT (TYPE({x}) = "number" AND {x} IN $p0))', {"p0": [1, 2]})
    assert sql({"k": {"$exists": True}}) == (f"({x} IS VALUED)", {})
    assert sql({"k": {"$exists": False}}) == (f"({x} IS NOT VALUED)", {})
    assert sql({"k": {"$contains": "ml"}}) == (
        f'(TYPE({x}) = "array" AND ANY e IN {x} SATISFIES (TYPE(e) = "string" AND e = $p0) END)', {"p0": "ml"})
    assert sql({"$or": [{"k": 1}, {"$not": {"j": 2}}]}) == (
        f'((TYPE({x}) = "number" AND {x} = $p0) OR (NOT (TYPE(d.m.`j`) = "number" AND d.m.`j` = $p1)))',
        {"p0": 1, "p1": 2})


@pytest.mark.parametrize("value", ["'; DELETE FROM b; --", '"', "`", "\\", "$p0", "x\x00y", "🚀", "END"])
def test_hostile_values_are_parameters_only(value: str) -> None:
    condition, params = compile_sqlpp(Comparison("k", Op.EQ, value))
    assert condition == compile_sqlpp(Comparison("k", Op.EQ, "plain"))[0] and params == {"p0": value}
    assert compile_fts(Comparison("k", Op.EQ, value)) == {"term": "=" + value, "field": "sbf.s.6b"}


def test_identifiers_are_backtick_quoted() -> None:
    assert quote("with space") == "`with space`"
    assert quote("a`b") == "`a``b`"
    assert keyspace("b-1", "_default", "sbk_x") == "`b-1`.`_default`.`sbk_x`"
    for bad in ("", "a\\b", "a\nb", "a\x00b", "\x7f"):
        with pytest.raises(FilterError):
            quote(bad)


def test_statements_are_pinned() -> None:
    space = keyspace("b", "s", "c")
    tree = parse_filter({"k": 1})
    assert count_statement(space, None) == (
        f'SELECT RAW COUNT(*) FROM {space} AS d WHERE META(d).id != "{INFO_KEY}"', {})
    assert keys_statement(space, ["a", "b"], tree) == (
        (f'SELECT RAW META(d).id FROM {space} AS d WHERE META(d).id != "{INFO_KEY}" AND META(d).id IN $p0 AND '
         '(TYPE(d.m.`k`) = "number" AND d.m.`k` = $p1)'), {"p0": ["a", "b"], "p1": 1})
    assert page_statement(space, "after", None, 6) == (
        (f'SELECT RAW META(d).id FROM {space} AS d WHERE META(d).id != "{INFO_KEY}" AND META(d).id > $p0 '
         "ORDER BY META(d).id LIMIT $limit"), {"p0": "after", "limit": 6})


def test_search_queries_are_pinned() -> None:
    def fts(spec: Any) -> Any:
        tree = parse_filter(spec)
        assert tree is not None
        return compile_fts(tree)

    h = b"k".hex()
    assert fts({"k": "v"}) == {"term": "=v", "field": f"sbf.s.{h}"}
    assert fts({"k": ""}) == {"term": "=", "field": f"sbf.s.{h}"}
    assert fts({"k": 2}) == {"min": 2.0, "max": 2.0, "inclusive_min": True, "inclusive_max": True,
                             "field": f"sbf.n.{h}"}
    assert fts({"k": False}) == {"bool": False, "field": f"sbf.b.{h}"}
    assert fts({"k": {"$gt": 1}}) == {"min": 1.0, "inclusive_min": False, "field": f"sbf.n.{h}"}
    assert fts({"k": {"$lte": 1}}) == {"max": 1.0, "inclusive_max": True, "field": f"sbf.n.{h}"}
    assert fts({"k": {"$contains": "ml"}}) == {"term": "=ml", "field": f"sbf.ls.{h}"}
    assert fts({"k": {"$exists": True}}) == {"term": h, "field": "sbf.k"}
    assert fts({"k": {"$ne": 1}}) == {"must": {"conjuncts": [{"match_all": {}}]}, "must_not": {
        "disjuncts": [{"min": 1.0, "max": 1.0, "inclusive_min": True, "inclusive_max": True,
                       "field": f"sbf.n.{h}"}], "min": 0}}
    assert fts({"$not": {"k": {"$ne": "v"}}}) == {"term": "=v", "field": f"sbf.s.{h}"}
    assert fts({"k": {"$in": []}}) is False
    assert fts({"k": {"$nin": []}}) is True
    assert fts({"$or": [{"k": {"$in": []}}, {"k": "v"}]}) == {"term": "=v", "field": f"sbf.s.{h}"}
    assert fts({"k": {"$in": ["a", 1]}}) == {"disjuncts": [
        {"term": "=a", "field": f"sbf.s.{h}"},
        {"min": 1.0, "max": 1.0, "inclusive_min": True, "inclusive_max": True, "field": f"sbf.n.{h}"}], "min": 1}
    assert fts({"k": {"$gt": math.inf}}) is False
    assert fts({"k": 10**400}) is False  # no double holds it, so nothing indexed equals it


def test_every_declared_operator_compiles_and_nested_keys_are_refused() -> None:
    declared = CouchbaseKnowledgeStore.capabilities.filter_operators
    assert declared == ALL_OPS
    leaves = {Op.EQ: "v", Op.NE: 1, Op.GT: 1, Op.GTE: 1, Op.LT: 1, Op.LTE: 1, Op.IN: ("a",), Op.NIN: (1,),
              Op.EXISTS: True, Op.CONTAINS: "x"}
    for op, value in leaves.items():
        compile_sqlpp(Comparison("k", op, value))
        compile_fts(Comparison("k", op, value))
    for compiler in (compile_sqlpp, compile_fts):
        with pytest.raises(UnsupportedFilterError):
            compiler(Comparison("a.b", Op.EQ, 1))  # type: ignore[operator]
    assert CouchbaseKnowledgeStore.capabilities.nested_keys is False


def test_typed_copies_keep_one_json_type_per_field() -> None:
    long = "é" * MAX_TERM_BYTES
    copies = typed_copies({"s": "x", "n": 1, "b": True, "l": ["a", 2, False, None, {"o": 1}], "none": None,
                           "o": {"k": 1}, "bad.key": 1, "": 2, "long": long, "e": []})
    hx = {k: k.encode().hex() for k in ("s", "n", "b", "l", "o", "long", "e")}
    assert copies == {
        "k": [hx["s"], hx["n"], hx["b"], hx["l"], hx["o"], hx["long"], hx["e"]],
        "s": {hx["s"]: "=x", hx["long"]: term(long)},
        "n": {hx["n"]: 1.0},
        "b": {hx["b"]: True},
        "ls": {hx["l"]: ["=a"]}, "ln": {hx["l"]: [2.0]}, "lb": {hx["l"]: [False]},
    }
    assert term(long).startswith("#") and len(term(long)) == 65


def test_bodies_round_trip_exactly() -> None:
    vector = np.array([3.0e38, -1e-30, 0.1, -7.0], dtype=np.float32)
    doc = KnowledgeDocument(id="a", content="c", source_id="s", metadata={"x": 1.0, "y": [1, None]})
    for distance in Distance:
        stored = json.loads(json.dumps(body(doc, vector, distance)))
        got, got_vector = parse_body(stored, 4)
        assert got == doc and got.metadata["x"].__class__ is float
        assert got_vector.tobytes() == vector.tobytes()
        if distance is Distance.COSINE:
            assert math.isclose(float(np.linalg.norm(np.asarray(stored["vec"]))), 1.0, rel_tol=1e-6)
    with pytest.raises(ValidationError):
        body(doc.replace(metadata={"x": float("nan")}), vector, Distance.L2)
    with pytest.raises(ValidationError):
        body(doc.replace(metadata={1: "non-string key"}), vector, Distance.L2)
    assert body(doc.replace(metadata={"t": (1, 2)}), vector, Distance.L2)["m"] == {"t": [1, 2]}
    with pytest.raises(ValidationError):
        parse_body({"id": "a", "vec": [1.0, 2.0]}, 4)
    with pytest.raises(ValidationError):
        parse_body({"sb_info": 1}, 4)


def test_keys_and_cursors() -> None:
    assert document_key("doc-1") == "doc-1"
    assert document_key("_sb:info").startswith("_sb:h:")
    assert document_key("é" * 121).startswith("_sb:h:") and document_key("é" * 120) == "é" * 120
    assert document_key("x" * 300) != document_key("x" * 301)
    for key in ("doc-1", "_sb:h:" + "0" * 64, "日本 🚀"):
        assert decode_cursor(encode_cursor(key)) == key
    for bad in ("", "k", "x" + encode_cursor("a")[1:], "k!!", "k" + "AAAA"[:3]):
        with pytest.raises(ValidationError):
            decode_cursor(bad)


def test_index_definition() -> None:
    params = index_params("s", "sbk_c", 8, Distance.COSINE)
    mapping = params["mapping"]["types"]["s.sbk_c"]
    assert mapping["properties"]["vec"]["fields"] == [{
        "name": "vec", "type": "vector", "dims": 8, "similarity": "dot_product",
        "vector_index_optimized_for": "recall", "index": True}]
    assert mapping["properties"]["sbf"] == {"enabled": True, "dynamic": True, "default_analyzer": "keyword"}
    assert params["mapping"]["default_mapping"]["enabled"] is False
    assert index_params("s", "c", 3, Distance.L2)["mapping"]["types"]["s.c"]["properties"]["vec"]["fields"][0][
        "similarity"] == "l2_norm"
    assert index_params("s", "c", 3, Distance.DOT)["mapping"]["types"]["s.c"]["properties"]["vec"]["fields"][0][
        "similarity"] == "dot_product"


# -- URLs and secrets ----------------------------------------------------------------------------------------------

def test_urls() -> None:
    parsed = parse_couchbase_url("couchbases://user:p%40ss@h1,h2?bucket=b&scope=s&collection_prefix=kb_")
    assert parsed == {"connection_string": "couchbases://h1,h2", "bucket": "b", "scope": "s", "username": "user",
                      "password": "p@ss", "collection_prefix": "kb_"}
    assert parse_couchbase_url("couchbase://h:11210?bucket=b&username=u&password=p")["connection_string"] == \
        "couchbase://h:11210"
    for bad in ("redis://h?bucket=b", "couchbase+x://h?bucket=b", "couchbase://h/b", "couchbase://?bucket=b",
                "couchbase://h?bucket=b&token=zz"):
        with pytest.raises(ConfigurationError):
            parse_couchbase_url(bad)
    with pytest.raises(ConfigurationError, match="password"):  # both given, differently: a clear refusal
        parse_couchbase_url("couchbase://u:p1@h?bucket=b&password=p2")


def test_option_errors_name_no_secret() -> None:
    secret = "Sup3r-s3cret"
    for url in (f"couchbase://u:{secret}@h?bucket=b&nope=1", f"couchbase://h?bucket=b&password={secret}&x=1",
                f"couchbase://u:{secret}@h?bucket=bad/name"):
        with pytest.raises(ConfigurationError) as caught:
            CouchbaseKnowledgeStore(url)
        assert secret not in str(caught.value)
    with pytest.raises(ConfigurationError):
        CouchbaseKnowledgeStore("couchbase://h?bucket=b&collection_prefix=_bad")
    with pytest.raises(ConfigurationError):
        CouchbaseKnowledgeStore("couchbase://h?bucket=b")  # no credentials
    with pytest.raises(ConfigurationError):
        CouchbaseKnowledgeStore()


# -- the fake SDK (NOT the engine) -----------------------------------------------------------------------------------

@dataclass
class _Mutation:
    token: MutationToken

    def mutation_token(self) -> MutationToken:
        return self.token


@dataclass
class _Got:
    value: Any

    @property
    def content_as(self) -> Any:
        return {dict: copy.deepcopy(self.value)}


@dataclass
class _Multi:
    found: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, Exception] = field(default_factory=dict)

    @property
    def results(self) -> dict[str, Any]:
        return self.found

    @property
    def exceptions(self) -> dict[str, Exception]:
        return self.failed

    @property
    def all_ok(self) -> bool:
        return not self.failed


@dataclass
class _Exists:
    exists: bool


@dataclass
class _Spec:
    name: str
    collections: list[Any] = field(default_factory=list)


class FakeCluster:
    """In-memory stand-in for ``couchbase.cluster.Cluster`` (one bucket, scopes, collections), recording calls.
    KV bodies go through JSON like the real transcoder; SQL++ and Search requests are read by the
    interpreters above. NOT the engine."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], dict[str, Any]] = {}  # (scope, collection) -> key -> body
        self.search_defs: dict[tuple[str, str], Any] = {}
        self.calls: list[tuple[str, Any]] = []
        self.seq = 0
        self.fail_with: Exception | None = None

    def bucket(self, name: str) -> FakeBucket:
        return FakeBucket(self, name)

    def close(self) -> None:
        self.calls.append(("close", None))

    def token(self) -> MutationToken:
        self.seq += 1
        return MutationToken({"partition_id": self.seq % 4, "partition_uuid": 7, "sequence_number": self.seq,
                              "bucket_name": "b"})


class FakeBucket:
    def __init__(self, cluster: FakeCluster, name: str) -> None:
        self.cluster, self.name = cluster, name

    def scope(self, name: str) -> FakeScope:
        return FakeScope(self.cluster, name)

    def collections(self) -> FakeBucket:
        return self

    def create_collection(self, scope: str, name: str) -> None:
        self.cluster.calls.append(("create_collection", (scope, name)))
        if (scope, name) in self.cluster.data:
            raise cb.CollectionAlreadyExistsException()
        self.cluster.data[(scope, name)] = {}

    def drop_collection(self, scope: str, name: str) -> None:
        self.cluster.calls.append(("drop_collection", (scope, name)))
        if self.cluster.data.pop((scope, name), None) is None:
            raise cb.CollectionNotFoundException()

    def get_all_scopes(self) -> list[_Spec]:
        scopes: dict[str, _Spec] = {}
        for scope, name in self.cluster.data:
            scopes.setdefault(scope, _Spec(scope)).collections.append(_Spec(name))
        return list(scopes.values())


class FakeScope:
    def __init__(self, cluster: FakeCluster, name: str) -> None:
        self.cluster, self.name = cluster, name

    def collection(self, name: str) -> FakeCollection:
        return FakeCollection(self.cluster, self.name, name)

    def search_indexes(self) -> FakeScope:
        return self

    def upsert_index(self, index: Any) -> None:
        self.cluster.calls.append(("upsert_index", index))
        self.cluster.search_defs[(self.name, index.name)] = index

    def get_indexed_documents_count(self, name: str) -> int:
        if (self.name, name) not in self.cluster.search_defs:
            raise cb.SearchIndexNotFoundException()
        return 0

    def drop_index(self, name: str) -> None:
        self.cluster.calls.append(("drop_index", name))
        if self.cluster.search_defs.pop((self.name, name), None) is None:
            raise cb.SearchIndexNotFoundException()

    def query(self, statement: str, options: Any) -> Any:
        self.cluster.calls.append(("query", (statement, dict(options))))
        if self.cluster.fail_with is not None:
            raise self.cluster.fail_with
        match = re.fullmatch(r"SELECT RAW (COUNT\(\*\)|META\(d\)\.id) FROM (\S+) AS d WHERE (.*?)"
                             r"( ORDER BY META\(d\)\.id LIMIT \$limit)?", statement)
        assert match, statement
        _, scope, name = (part[1:-1].replace("``", "`") for part in match.group(2).split("."))
        params = dict(options["named_parameters"])
        reader = SQLPP(match.group(3), params)
        docs = self.cluster.data.get((scope, name))
        if docs is None:
            raise cb.KeyspaceNotFoundException()
        keys = sorted(k for k, v in docs.items() if reader.matches(k, v))
        if match.group(1) == "COUNT(*)":
            return _Rows([len(keys)])
        return _Rows(keys[:params["limit"]] if match.group(4) else keys)

    def search(self, index: str, request: Any, options: Any) -> Any:
        self.cluster.calls.append(("search", (index, request, dict(options))))
        definition = self.cluster.search_defs[(self.name, index)]
        (type_name, mapping), = definition.params["mapping"]["types"].items()
        docs = self.cluster.data[tuple(type_name.split("."))]  # type: ignore[index]
        if request.vector_search is None:
            return _Rows([])
        vq = request.vector_search.queries[0]
        field_def = mapping["properties"]["vec"]["fields"][0]
        query = np.asarray(vq.vector, dtype=np.float64)
        hits = []
        for key, doc in docs.items():
            if "vec" not in doc or (vq.prefilter is not None and not fts_matches(vq.prefilter.encodable, doc)):
                continue
            vector = np.asarray(doc["vec"], dtype=np.float64)
            score = float(vector @ query) if field_def["similarity"] == "dot_product" \
                else -float(np.linalg.norm(vector - query))
            hits.append(_Hit(key, score))
        hits.sort(key=lambda h: -h.score)
        return _Rows(hits[:min(vq.num_candidates, options["limit"])])


@dataclass
class _Hit:
    id: str
    score: float


@dataclass
class _Rows:
    items: list[Any]

    def rows(self) -> Iterator[Any]:
        return iter(self.items)


class FakeCollection:
    def __init__(self, cluster: FakeCluster, scope: str, name: str) -> None:
        self.cluster, self.scope, self.name = cluster, scope, name

    @property
    def docs(self) -> dict[str, Any]:
        docs = self.cluster.data.get((self.scope, self.name))
        if docs is None:
            raise cb.CollectionNotFoundException()
        return docs

    def get(self, key: str) -> _Got:
        if key not in self.docs:
            raise cb.DocumentNotFoundException()
        return _Got(self.docs[key])

    def exists(self, key: str) -> _Exists:
        return _Exists(key in self.docs)

    def insert(self, key: str, value: Any) -> _Mutation:
        if key in self.docs:
            raise cb.DocumentExistsException()
        self.docs[key] = json.loads(json.dumps(value))
        return _Mutation(self.cluster.token())

    def remove(self, key: str) -> _Mutation:
        if self.docs.pop(key, None) is None:
            raise cb.DocumentNotFoundException()
        return _Mutation(self.cluster.token())

    def query_indexes(self) -> FakeCollection:
        return self

    def create_primary_index(self, options: Any) -> None:
        self.cluster.calls.append(("create_primary_index", dict(options)))

    def watch_indexes(self, names: list[str], options: Any) -> None:
        self.cluster.calls.append(("watch_indexes", (names, dict(options))))

    def upsert_multi(self, bodies: dict[str, Any]) -> _Multi:
        self.cluster.calls.append(("upsert_multi", bodies))
        out = _Multi()
        for key, value in bodies.items():
            self.docs[key] = json.loads(json.dumps(value))
            out.found[key] = _Mutation(self.cluster.token())
        return out

    def get_multi(self, keys: list[str]) -> _Multi:
        out = _Multi()
        for key in keys:
            if key in self.docs:
                out.found[key] = _Got(self.docs[key])
            else:
                out.failed[key] = cb.DocumentNotFoundException()
        return out

    def exists_multi(self, keys: list[str]) -> _Multi:
        return _Multi({key: _Exists(key in self.docs) for key in keys})

    def remove_multi(self, keys: list[str]) -> _Multi:
        out = _Multi()
        for key in keys:
            if self.docs.pop(key, None) is None:
                out.failed[key] = cb.DocumentNotFoundException()
            else:
                out.found[key] = _Mutation(self.cluster.token())
        return out


def _store(cluster: FakeCluster, **options: Any) -> CouchbaseKnowledgeStore:
    return CouchbaseKnowledgeStore(client=cluster, bucket="b", scope="s", ready_timeout=5, **options)


class TestCouchbaseStoreOverAFake(KnowledgeStoreSuite):
    """The store's own logic under the whole suite, on the in-memory fake (NOT the engine; see above)."""

    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        cluster = FakeCluster()
        return lambda: _store(cluster)


def test_the_store_calls_the_sdk_as_documented() -> None:
    cluster = FakeCluster()
    store = _store(cluster)
    store.create_collection("docs", 3, "cosine")
    names = [name for name, _ in cluster.calls]
    assert names == ["create_collection", "create_primary_index", "watch_indexes", "upsert_index", "search"]
    probe = cluster.calls[4][1]  # the readiness probe: a query that matches nothing, on the new index
    assert probe[0] == "sbk_docs_sbvec" and probe[1].vector_search is None and probe[2]["limit"] == 1
    assert cluster.calls[0][1] == ("s", "sbk_docs")
    assert cluster.calls[1][1] == {"ignore_if_exists": True}
    index = cluster.calls[3][1]
    assert (index.name, index.source_name, index.source_type) == ("sbk_docs_sbvec", "b", "gocbcore")
    assert index.params == index_params("s", "sbk_docs", 3, Distance.COSINE)
    assert cluster.data[("s", "sbk_docs")][INFO_KEY] == {"sb_info": 1, "dimension": 3, "distance": "cosine"}

    cluster.calls.clear()
    docs = [KnowledgeDocument(id=f"d{i}", embedding=[1.0, float(i), 0.0], metadata={"i": i}) for i in range(3)]
    store.upsert("docs", docs)
    [(op, bodies)] = cluster.calls
    assert op == "upsert_multi" and list(bodies) == ["d0", "d1", "d2"]
    assert bodies["d1"] == json.loads(json.dumps(body(docs[1], np.array([1.0, 1.0, 0.0], np.float32),
                                                      Distance.COSINE)))

    cluster.calls.clear()
    hits = store.search("docs", [1.0, 2.0, 0.0], k=2, filter={"i": {"$gte": 1}})
    assert [h.id for h in hits] == ["d2", "d1"]
    [(op, (index_used, request, options))] = cluster.calls
    vq = request.vector_search.queries[0]
    assert index_used == "sbk_docs_sbvec" and vq.field_name == "vec" and vq.num_candidates == 18
    assert vq.prefilter.encodable == compile_fts(parse_filter({"i": {"$gte": 1}}))  # type: ignore[arg-type]
    assert options["limit"] == 18
    tokens = options["consistent_with"]._sv  # the three upserts' tokens (the info document is not searched)
    assert {t.sequence_number for t in tokens} == {2, 3, 4}

    cluster.calls.clear()
    assert store.count("docs", filter={"i": 1}) == 1
    [(op, (statement, options))] = cluster.calls
    assert statement.startswith("SELECT RAW COUNT(*) FROM `b`.`s`.`sbk_docs` AS d WHERE")
    assert options["named_parameters"] == {"p0": 1}
    assert options["scan_consistency"].value == "request_plus"
    store.close()
    assert ("close", None) not in cluster.calls, "a client passed in is the caller's to close"


def test_mutation_tokens_stay_bounded() -> None:
    cluster = FakeCluster()
    store = _store(cluster)
    store.create_collection("c", 2, "l2")
    for i in range(50):
        store.upsert("c", [KnowledgeDocument(id=f"d{i}", embedding=[1.0, float(i)])])
    state = store._consistency()
    assert len(state._sv) <= 4 and max(t.sequence_number for t in state._sv) == cluster.seq


def test_a_filter_that_matches_nothing_skips_the_search() -> None:
    cluster = FakeCluster()
    store = _store(cluster)
    store.create_collection("c", 2, "l2")
    store.insert("c", [KnowledgeDocument(id="a", embedding=[1.0, 2.0])])
    cluster.calls.clear()
    assert store.search("c", [1.0, 2.0], filter={"x": {"$in": []}}) == []
    assert not [c for c in cluster.calls if c[0] == "search"]


def test_search_results_are_checked_against_the_exact_filter() -> None:
    """A Search index lagging behind another client's write may return a document that no longer matches:
    the KV read shows it and it is dropped."""
    cluster = FakeCluster()
    store = _store(cluster)
    store.create_collection("c", 2, "l2")
    store.insert("c", [KnowledgeDocument(id="a", embedding=[1.0, 2.0], metadata={"k": "old"})])
    stale = copy.deepcopy(cluster.data[("s", "sbk_c")]["a"])
    cluster.data[("s", "sbk_c")]["a"]["m"] = {"k": "new"}  # KV has the new value, the "index" (sbf) the old
    assert stale["sbf"] == cluster.data[("s", "sbk_c")]["a"]["sbf"]
    assert store.search("c", [1.0, 2.0], filter={"k": "old"}) == []


def test_too_many_candidates_is_refused() -> None:
    store = _store(FakeCluster())
    store.create_collection("c", 2, "l2")
    with pytest.raises(NotSupportedError):
        store.search("c", [1.0, 2.0], k=10_000)


@pytest.mark.parametrize(("error", "typed"), [
    (cb.AuthenticationException("denied, password=Zq9-secret"), ConfigurationError),
    (cb.BucketNotFoundException("nope"), ConfigurationError),
    (cb.UnAmbiguousTimeoutException("slow"), ConnectionFailedError),
    (cb.AmbiguousTimeoutException("slow"), OperationFailedError),
    (cb.DocumentExistsException("exists"), AlreadyExistsError),
    (cb.FeatureUnavailableException("no vectors"), NotSupportedError),
    (cb.ParsingFailedException("bad"), OperationFailedError),
])
def test_errors_are_typed_and_masked(error: Exception, typed: type[Exception]) -> None:
    cluster = FakeCluster()
    store = _store(cluster)
    store.create_collection("c", 2, "l2")
    cluster.fail_with = error
    with pytest.raises(typed) as caught:
        store.count("c")
    assert "Zq9-secret" not in str(caught.value) and "couchbase count failed" in str(caught.value)
    assert caught.value.__cause__ is error


def test_a_missing_couchbase_collection_reads_as_a_missing_collection() -> None:
    cluster = FakeCluster()
    store = _store(cluster)
    store.create_collection("c", 2, "l2")
    cluster.data.pop(("s", "sbk_c"))  # dropped behind the store's back
    with pytest.raises(CollectionNotFoundError):
        store.count("c")
    assert store.list_collections() == []


def test_repr_names_no_secret() -> None:
    store = _store(FakeCluster())
    assert "secret" not in repr(store) and "'b'" in repr(store) and "'s'" in repr(store)
    assert repr(store).startswith("CouchbaseKnowledgeStore(")


def test_an_unreachable_cluster_is_a_typed_error_without_the_password() -> None:
    """The real SDK against a closed local port: bootstrap fails within the connect timeout."""
    with pytest.raises(ConnectionFailedError) as caught:
        CouchbaseKnowledgeStore("couchbase://127.0.0.1:1?bucket=b&username=u&password=Unreach4ble-pw",
                                connect_timeout=1)
    assert "Unreach4ble-pw" not in str(caught.value) and "127.0.0.1" in str(caught.value)
