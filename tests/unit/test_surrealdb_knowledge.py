"""Unit tests of the ``surrealdb_vector`` knowledge store.

Two parts: the pure translation layer (:mod:`storebridge.adapters.surrealdb._filters`: exact SurrealQL text
and parameters per operator, escaping, constant folding, the filter copy of the metadata), then the store
on the embedded engine of the ``surrealdb`` wheel (``mem://``, ``surrealkv://``), where every filter is
checked against the reference evaluator on data built to hit SurrealDB's corners (bool vs number, int vs
float vs decimal, big integers, NUL, dotted keys, lists, NONE).
"""

from __future__ import annotations

import itertools
import json
import random
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("surrealdb", reason="[no engine on this machine] surrealdb is not installed")

from storebridge.adapters.surrealdb import _filters as sf
from storebridge.adapters.surrealdb._connection import escape_text, resolve_url, unescape_text
from storebridge.adapters.surrealdb.knowledge import SCHEMA_VERSION, SurrealDBKnowledgeStore
from storebridge.errors import (
    CollectionNotFoundError,
    ConfigurationError,
    ConnectionFailedError,
    FilterError,
    OperationFailedError,
    SchemaVersionError,
    StoreClosedError,
    UnsupportedFilterError,
    ValidationError,
)
from storebridge.filters import ALL_OPS, Comparison, Op, evaluate, parse_filter
from storebridge.models import CollectionInfo, Distance, KnowledgeDocument
from storebridge.testing.data import HOSTILE_FILTER_KEYS

HOSTILE = ["'; REMOVE TABLE sb_kdoc; --", '"); DELETE sb_kdoc; //', "$c", "${c}", "⟨x⟩`y`", "} ; RETURN 1; {",
           "type::thing('sb_kcollection', 'x')", "a\\nb\\\\", "\x00nul", "\x01\x00\x01\x01\x02", "\x00\x01",
           "$w_v1", "fmeta[$w_k0]"]


def compiled(spec: Any) -> Any:
    return sf.compile_where(parse_filter(spec))


# -- the translation layer (no engine) ------------------------------------------------------------------

V = "fmeta[$w_k0]"
EXACT = [
    ({"a": 1}, f"(type::is::number({V}) AND {V} == $w_v1)", {"w_k0": "a", "w_v1": 1}),
    ({"a": 1.5}, f"(type::is::number({V}) AND {V} == $w_v1)", {"w_k0": "a", "w_v1": 1.5}),
    ({"a": True}, f"(type::is::bool({V}) AND {V} == $w_v1)", {"w_k0": "a", "w_v1": True}),
    ({"a": "x"}, f"(type::is::string({V}) AND {V} == $w_v1)", {"w_k0": "a", "w_v1": "x"}),
    ({"a": {"$ne": "x"}}, f"NOT (type::is::string({V}) AND {V} == $w_v1)", {"w_k0": "a", "w_v1": "x"}),
    ({"a": {"$gt": 1}}, f"(type::is::number({V}) AND {V} > $w_v1)", {"w_k0": "a", "w_v1": 1}),
    ({"a": {"$gte": 1}}, f"(type::is::number({V}) AND {V} >= $w_v1)", {"w_k0": "a", "w_v1": 1}),
    ({"a": {"$lt": -2.5}}, f"(type::is::number({V}) AND {V} < $w_v1)", {"w_k0": "a", "w_v1": -2.5}),
    ({"a": {"$lte": 0}}, f"(type::is::number({V}) AND {V} <= $w_v1)", {"w_k0": "a", "w_v1": 0}),
    ({"a": {"$in": ["x"]}}, f"(type::is::string({V}) AND {V} IN $w_v1)", {"w_k0": "a", "w_v1": ["x"]}),
    ({"a": {"$in": [1, "x", True, 2.5]}},
     (f"((type::is::number({V}) AND {V} IN $w_v1) OR (type::is::string({V}) AND {V} IN $w_v2) OR "
      f"(type::is::bool({V}) AND {V} IN $w_v3))"),
     {"w_k0": "a", "w_v1": [1, 2.5], "w_v2": ["x"], "w_v3": [True]}),
    ({"a": {"$nin": [False]}}, f"NOT ((type::is::bool({V}) AND {V} IN $w_v1))", {"w_k0": "a", "w_v1": [False]}),
    ({"a": {"$exists": True}}, f"NOT (type::is::none({V}) OR type::is::null({V}))", {"w_k0": "a"}),
    ({"a": {"$exists": False}}, f"(type::is::none({V}) OR type::is::null({V}))", {"w_k0": "a"}),
    ({"a": {"$contains": "ml"}}, f"(type::is::array({V}) AND {V} CONTAINS $w_v1)", {"w_k0": "a", "w_v1": "ml"}),
    ({"$not": {"a": 1}}, f"NOT ((type::is::number({V}) AND {V} == $w_v1))", {"w_k0": "a", "w_v1": 1}),
    ({"$or": [{"a": 1}, {"b": "x"}]},
     (f"(((type::is::number({V}) AND {V} == $w_v1)) OR "
      "((type::is::string(fmeta[$w_k2]) AND fmeta[$w_k2] == $w_v3)))"),
     {"w_k0": "a", "w_v1": 1, "w_k2": "b", "w_v3": "x"}),
    ({"a": {"$gt": 1, "$lt": 5}},
     f"(((type::is::number({V}) AND {V} > $w_v1)) AND ((type::is::number({V}) AND {V} < $w_v2)))",
     {"w_k0": "a", "w_v1": 1, "w_v2": 5}),
]


@pytest.mark.parametrize(("spec", "sql", "params"), EXACT, ids=[json.dumps(e[0]) for e in EXACT])
def test_compiled_text_is_exact(spec: Any, sql: str, params: dict[str, Any]) -> None:
    where = compiled(spec)
    assert isinstance(where, sf.Where)
    assert (where.sql, where.params) == (sql, params)


def test_nested_key_reads_literal_key_then_walks_objects() -> None:
    where = compiled({"a.b.c": 1})
    assert isinstance(where, sf.Where)
    value = ("(IF !type::is::none(fmeta[$w_k0]) OR $w_k0 IN fnull THEN fmeta[$w_k0] ELSE IF "
             "type::is::object(fmeta[$w_k1]) AND type::is::object(fmeta[$w_k1][$w_k2]) THEN "
             "fmeta[$w_k1][$w_k2][$w_k3] END)")
    assert where.sql == f"(type::is::number({value}) AND {value} == $w_v4)"
    assert where.params == {"w_k0": "a.b.c", "w_k1": "a", "w_k2": "b", "w_k3": "c", "w_v4": 1}


@pytest.mark.parametrize(("spec", "constant"), [
    ({"a": {"$in": []}}, False), ({"a": {"$nin": []}}, True), ({"$not": {"a": {"$in": []}}}, True),
    ({"$or": [{"a": 1}, {"a": {"$nin": []}}]}, True), ({"$and": [{"a": 1}, {"a": {"$in": []}}]}, False),
    (None, True), ({}, True),
])
def test_constants_are_decided_without_the_engine(spec: Any, constant: bool) -> None:
    assert compiled(spec) is constant


def test_constant_parts_fold_away() -> None:
    where = compiled({"$and": [{"a": 1}, {"b": {"$nin": []}}]})
    assert isinstance(where, sf.Where) and where.sql == f"(type::is::number({V}) AND {V} == $w_v1)"


@pytest.mark.parametrize("value", HOSTILE + ["é", "e\u0301", "🚀", "\\", "'", '"', "`", "\n"])
def test_hostile_values_are_bound_escaped_and_never_in_the_text(value: str) -> None:
    for spec in ({"k": value}, {"k": {"$in": [value, "x"]}}, {"k": {"$contains": value}}, {"k": {"$ne": value}}):
        where = compiled(spec)
        assert isinstance(where, sf.Where)
        bound = [v for p in where.params.values() for v in (p if isinstance(p, list) else [p])]
        assert escape_text(value) in bound
        assert "\x00" not in where.sql and not any("\x00" in v for v in bound)
        for piece in ("'", '"', "REMOVE", "DELETE", "⟨", "`", "\\", "🚀", "é"):
            assert piece not in where.sql


def test_unicode_and_dashed_keys_are_parameters() -> None:
    where = compiled({"ключ-1 x": 1, "日本.語": "v"})
    assert isinstance(where, sf.Where)
    assert "ключ" not in where.sql and "日本" not in where.sql
    assert {"ключ-1 x", "日本.語", "日本", "語"} <= set(where.params.values())


@pytest.mark.parametrize("key", HOSTILE_FILTER_KEYS + ["a$b", "a[0]", "a'b"])
def test_hostile_keys_never_reach_the_compiler(key: str) -> None:
    with pytest.raises(FilterError):
        compiled({key: 1})


def test_every_declared_operator_compiles() -> None:
    declared = SurrealDBKnowledgeStore.capabilities.filter_operators
    assert declared == ALL_OPS and SurrealDBKnowledgeStore.capabilities.nested_keys
    assert not SurrealDBKnowledgeStore.capabilities.client_side_filters
    samples = {Op.EQ: 1, Op.NE: "x", Op.GT: 1, Op.GTE: 1.5, Op.LT: 2, Op.LTE: 0, Op.IN: (1, "a"), Op.NIN: (True,),
               Op.EXISTS: True, Op.CONTAINS: "a"}
    for op, value in samples.items():
        for field in ("a", "a.b"):
            assert isinstance(sf.compile_where(Comparison(field, op, value)), sf.Where), (op, field)


@pytest.mark.parametrize(("value", "number"), [
    (0, 0), (-(2**63), -(2**63)), (2**63 - 1, 2**63 - 1), (2**63, Decimal(2**63)), (-(2**63) - 1, Decimal(-(2**63) - 1)),
    (2**96 - 1, Decimal(2**96 - 1)), (-(2**96) + 1, Decimal(-(2**96) + 1)), (2**96, float(2**96)),
    (2**1000, float(2**1000)), (2**96 + 1, None), (-(2**100) - 1, None), (10**400, None), (1.5, 1.5), (-0.0, -0.0),
])
def test_surreal_number_is_exact_or_none(value: float, number: Any) -> None:
    got = sf.surreal_number(value)
    assert got == number and type(got) is type(number)


def test_filter_values_without_an_exact_number_are_unsupported() -> None:
    for spec in ({"a": 2**96 + 1}, {"a": {"$gt": -(2**100) - 1}}, {"a": {"$in": [1, 10**400]}}):
        with pytest.raises(UnsupportedFilterError, match="2\\*\\*96"):
            compiled(spec)
    assert compiled({"a": 2**70}).params["w_v1"] == Decimal(2**70)  # type: ignore[union-attr]
    assert compiled({"a": {"$lt": float("inf")}}).params["w_v1"] == float("inf")  # type: ignore[union-attr]


def test_metadata_copy() -> None:
    copy = sf.metadata_copy({
        "a.b": None, "x": None, "s": "a\x00b\x01", "k\x00": 1, "big": 2**70, "huge": 2**100, "odd": 2**100 + 1,
        "n": {"m": None, "l": [None, 2**64, "\x00"], "d.e": None}, "f": 1.0, "t": True, "e": [], "o": {},
    })
    assert copy.value == {"s": "a\x01\x01b\x01\x02", "k\x01\x01": 1, "big": Decimal(2**70), "huge": float(2**100),
                          "n": {"l": [None, Decimal(2**64), "\x01\x01"]}, "f": 1.0, "t": True, "e": [], "o": {}}
    assert type(copy.value["f"]) is float and copy.value["t"] is True
    assert copy.nulls == ["a.b"] and copy.inexact
    assert copy.fields() == {"fmeta": copy.value, "fnull": ["a.b"], "finexact": True}
    plain = sf.metadata_copy({"a": [1, "x"], "b": None})
    assert plain.fields() == {"fmeta": {"a": [1, "x"]}, "fnull": None, "finexact": None}


def test_text_escaping_is_injective_and_order_preserving() -> None:
    texts = ["", "\x00", "\x01", "\x02", "\x00\x00", "\x01\x01", "\x01\x02", "a\x00", "a\x01", "a", "\x00a", "é"]
    escaped = [escape_text(t) for t in texts]
    assert len(set(escaped)) == len(texts) and all("\x00" not in e for e in escaped)
    assert [unescape_text(e) for e in escaped] == texts
    assert sorted(texts) == [unescape_text(e) for e in sorted(escaped)]


# -- the store on the embedded engine ----------------------------------------------------------------------


def doc(i: int, metadata: dict | None = None, doc_id: str | None = None) -> KnowledgeDocument:
    return KnowledgeDocument(id=doc_id or f"d{i:03d}", content=f"c{i}", metadata=metadata or {"i": i},
                             embedding=[1.0 + i, 0.5 * i, -1.0 * (i % 3), 2.0])


@pytest.fixture
def store():
    s = SurrealDBKnowledgeStore("surrealdb+mem://")
    yield s
    s.close()


#: Metadata where SurrealQL's own rules differ from FILTERS.md unless the compiler guards them.
CORNERS: list[dict[str, Any]] = [
    {"n": 1}, {"n": 1.0}, {"n": True}, {"n": False}, {"n": 0}, {"n": -0.0}, {"n": "1"}, {"n": [1]}, {"n": None}, {},
    {"n": {"m": 1}}, {"n": 2**53 + 1}, {"n": 9007199254740992.0}, {"n": 2**63 - 1}, {"n": 2**63}, {"n": -(2**63)},
    {"n": -(2**63) - 1}, {"n": 2**70}, {"n": 2**70 + 1}, {"n": float(2**70)}, {"n": 2**96 - 1}, {"n": 2**96},
    {"n": 2**100}, {"n": 2**100 + 1}, {"n": -(2**100) - 1}, {"n": 1e300}, {"n": 5e-324}, {"n": 2.5},
    {"s": "a\x00b"}, {"s": "a\x01b"}, {"s": "é"}, {"s": "e\u0301"}, {"s": "A"}, {"s": "a"}, {"s": ""},
    {"s": "'; DROP"}, {"s": "$w_v1"}, {"s": "x", "n": "x"},
    {"l": [1, "x", True, None, [2], {"k": 3}]}, {"l": []}, {"l": "x"}, {"l": [0, False]}, {"l": ["a\x00b"]},
    {"l": [2**70]}, {"l": [1.0, "1"]}, {"l": [[1]]}, {"l": [2**100 + 1, "y"]},
    {"a.b": 1, "a": {"b": 2}}, {"a.b": None, "a": {"b": 2}}, {"a": {"b": 3}}, {"a": {"b": None}},
    {"a": [{"b": 1}]}, {"a": "b"}, {"a": {"b": {"c": [1, 2]}}}, {"a": {"b": {"c": 1}}}, {"a": {"b": [1]}},
    {"a": {"b": "x", "c": True}}, {"a.b.c": 5, "a": {"b": {"c": 6}}}, {"k\x00": 1, "k": 2}, {"k": 2.0},
]
FIELDS = ["n", "s", "l", "a", "a.b", "a.b.c", "k", "missing"]
VALUES: list[Any] = [1, 1.0, 0, -0.0, True, False, "1", "x", "a\x00b", "é", "", 2**53 + 1, 9007199254740992.0,
                     2**63, 2**70, 2**70 + 1, float(2**70), 2**100, 1e300, 2.5, "$w_v1", "'; DROP", "a", "y", 2, 3]
NUMBERS: list[Any] = [v for v in VALUES if isinstance(v, (int, float)) and not isinstance(v, bool)] + [
    float("inf"), -float("inf"), -(2**63), 5e-324]


def random_filter(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    roll = rng.random()
    if depth < 2 and roll < 0.25:
        children = [random_filter(rng, depth + 1) for _ in range(rng.randint(1, 3))]
        return {rng.choice(["$and", "$or"]): children}
    if depth < 2 and roll < 0.35:
        return {"$not": random_filter(rng, depth + 1)}
    field, op = rng.choice(FIELDS), rng.choice(sorted(o.value for o in ALL_OPS if o not in (Op.AND, Op.OR, Op.NOT)))
    value: Any
    if op in ("gt", "gte", "lt", "lte"):
        value = rng.choice(NUMBERS)
    elif op in ("in", "nin"):
        value = rng.sample(VALUES, rng.randint(0, 3))
    elif op == "exists":
        value = rng.random() < 0.5
    else:
        value = rng.choice(VALUES)
    return {field: {f"${op}": value}}


HAND_PICKED: list[dict[str, Any]] = [
    {"n": 1}, {"n": True}, {"n": 0}, {"n": -0.0}, {"n": "1"}, {"n": 2**63}, {"n": 2**70}, {"n": float(2**70)},
    {"n": 2**70 + 1}, {"n": {"$gt": 2**70}}, {"n": {"$gte": float(2**70)}}, {"n": {"$lt": -(2**63)}},
    {"n": {"$gt": 9007199254740992.0}}, {"n": {"$lt": float("inf")}}, {"n": {"$gt": -float("inf")}},
    {"n": {"$ne": 1}}, {"n": {"$nin": [1, True]}}, {"n": {"$in": [True, "1"]}}, {"n": {"$exists": True}},
    {"n": {"$gt": 2**96}}, {"n": {"$lte": 2**100}}, {"n": 2**100}, {"n": {"$gt": 1e299}},
    {"s": "a\x00b"}, {"s": "a\x01b"}, {"s": "é"}, {"s": "a"}, {"s": {"$in": ["", "A"]}}, {"s": {"$ne": "é"}},
    {"l": {"$contains": 1}}, {"l": {"$contains": True}}, {"l": {"$contains": 0}}, {"l": {"$contains": False}},
    {"l": {"$contains": "x"}}, {"l": {"$contains": "a\x00b"}}, {"l": {"$contains": 2**70}}, {"l": {"$contains": 2}},
    {"l": "x"}, {"l": {"$exists": False}}, {"l": {"$contains": "1"}},
    {"a.b": 1}, {"a.b": 2}, {"a.b": {"$exists": True}}, {"a.b": {"$exists": False}}, {"a.b": {"$ne": 2}},
    {"a.b.c": 1}, {"a.b.c": 5}, {"a.b.c": {"$contains": 1}}, {"a.b": "x"}, {"a": "b"}, {"a": {"$exists": True}},
    {"k": 2}, {"k": {"$in": [1, 2]}}, {"missing": {"$nin": []}}, {"missing": {"$in": []}},
    {"$not": {"n": {"$gte": 1}}}, {"$or": [{"n": 1}, {"s": "a"}, {"a.b": 2}]},
]


def _load(store: SurrealDBKnowledgeStore, name: str, metadata: list[dict[str, Any]]) -> list[KnowledgeDocument]:
    store.create_collection(name, 3, Distance.L2)
    docs = [KnowledgeDocument(id=f"x{i:03d}\x00" if i % 7 == 0 else f"x{i:03d}", content=f"c{i}", metadata=m,
                              embedding=[float(i), 1.0, -0.5 * i]) for i, m in enumerate(metadata)]
    store.insert(name, docs)
    return docs


def test_native_filters_match_the_reference_on_corner_data(store: SurrealDBKnowledgeStore) -> None:
    docs = _load(store, "corners", CORNERS)
    rng = random.Random(20240517)
    specs = HAND_PICKED + [random_filter(rng) for _ in range(400)]
    for spec in specs:
        want = sorted(d.id for d in docs if evaluate(spec, d.metadata))
        assert store.count("corners", filter=spec) == len(want), spec
    for spec in HAND_PICKED + specs[len(HAND_PICKED)::8]:
        want = sorted(d.id for d in docs if evaluate(spec, d.metadata))
        page = store.scroll("corners", limit=1000, filter=spec, include_embeddings=False)
        assert [d.id for d in page.documents] == want, spec
        hits = store.search("corners", [1.0, 1.0, 1.0], k=len(docs), filter=spec)
        assert sorted(h.id for h in hits) == want, spec


def test_delete_by_filter_matches_the_reference(store: SurrealDBKnowledgeStore) -> None:
    for i, spec in enumerate(HAND_PICKED[::3]):
        name = f"del{i}"
        docs = _load(store, name, CORNERS)
        some = [d.id for d in docs[::2]]
        expected_some = [d.id for d in docs[::2] if evaluate(spec, d.metadata)]
        assert store.delete(name, some, filter=spec) == len(expected_some), spec
        rest = [d for d in docs if d.id not in set(expected_some)]
        expected = {d.id for d in rest if evaluate(spec, d.metadata)}
        assert store.delete(name, filter=spec) == len(expected), spec
        left = {d.id for d in store.scroll(name, limit=1000, include_embeddings=False).documents}
        assert left == {d.id for d in rest} - expected, spec
        store.drop_collection(name)


def test_inexact_documents_are_decided_client_side(store: SurrealDBKnowledgeStore) -> None:
    """Integers beyond 2**96 that are not floats have no SurrealDB number: those documents are marked, left
    out of the native condition and checked by the reference evaluator, in key order for scroll."""
    metadata = [{"n": 2**100 + 1 if i % 3 == 0 else i, "i": i} for i in range(30)]
    docs = _load(store, "big", metadata)
    conn = store._conn
    assert conn.run("SELECT VALUE inexact FROM type::thing('sb_kcollection', 'big')")[0] == [True]
    assert conn.run("SELECT count() AS n FROM sb_kdoc WHERE finexact = true GROUP ALL")[0][0]["n"] == 10
    for spec in ({"n": {"$gt": 2**99}}, {"n": {"$gt": 5}}, {"n": {"$ne": 3}}, {"i": {"$lt": 10}},
                 {"$or": [{"n": {"$gte": float(2**100)}}, {"i": 4}]}, {"n": float(2**100)}, {"n": {"$exists": True}}):
        want = [d.id for d in docs if evaluate(spec, d.metadata)]
        assert store.count("big", filter=spec) == len(want), spec
        got, cursor = [], None
        while True:
            page = store.scroll("big", limit=4, cursor=cursor, filter=spec, include_embeddings=False)
            got += [d.id for d in page.documents]
            if (cursor := page.next_cursor) is None:
                break
        assert got == sorted(want), spec
        assert sorted(h.id for h in store.search("big", [0.0, 1.0, 0.0], k=30, filter=spec)) == sorted(want), spec
    assert store.delete("big", [d.id for d in docs[:6]], filter={"n": {"$gt": 2**99}}) == 2
    assert store.delete("big", filter={"n": {"$gt": 2**99}}) == 8
    assert store.count("big") == 20


def test_other_collections_are_not_touched(store: SurrealDBKnowledgeStore) -> None:
    a, b = _load(store, "a", CORNERS[:20]), _load(store, "b", CORNERS[:20])
    assert store.delete("a", filter={"n": {"$exists": True}}) == sum(1 for d in a if "n" in d.metadata and
                                                                      d.metadata["n"] is not None)
    assert store.count("b") == len(b)
    assert store.count("b", filter={"n": 1}) == 2  # 1 and 1.0


class _Spy:
    """Stands in for ``surrealdb.Surreal`` around a real embedded connection: records every query."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.raw_url = "mem://"
        self.calls: list[tuple[str, dict[str, Any] | None]] = []

    def use(self, namespace: str, database: str) -> None:
        self.conn.use(namespace, database)

    def query_raw(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        self.calls.append((sql, params))
        return self.conn.query_raw(sql, params)


def test_values_travel_as_parameters() -> None:
    import surrealdb

    real: Any = surrealdb.Surreal("mem://")  # embedded: the stubs only know ws/http
    real.connect()
    spy = _Spy(real)
    store = SurrealDBKnowledgeStore(connection=spy)
    try:
        store.create_collection("c", 3)
        docs = [KnowledgeDocument(id=h, content=h, source_id=h, metadata={"h": h, "l": [h]},
                                  embedding=[1.0, float(i), 2.0]) for i, h in enumerate(HOSTILE)]
        store.insert("c", docs)
        for h in HOSTILE:
            assert store.count("c", filter={"h": h}) == 1
            assert [d.id for d in store.search("c", [1.0, 1.0, 1.0], filter={"l": {"$contains": h}})] == [h]
            assert store.delete("c", [h], filter={"h": {"$ne": "other"}}) == 1
        texts = "\n".join(sql for sql, _ in spy.calls)
        for h in HOSTILE:
            if "$" not in h:  # "$c", "$w_v1"... are also our own placeholders
                assert h not in texts, h
        assert all(not any(h == p for p in (params or {}).values()) for h in HOSTILE if "\x00" in h
                   for _, params in spy.calls)  # NUL never reaches the engine unescaped
        assert any("vector::distance::euclidean" in sql or "vector::similarity::cosine" in sql for sql, _ in spy.calls)
        assert store.count("c") == 0
    finally:
        store.close()
        real.close()


def test_memory_url_is_not_persistent(store: SurrealDBKnowledgeStore) -> None:
    assert store.capabilities.persistent is False
    assert store.capabilities.client_side_filters is False


def test_hostile_values_round_trip(store: SurrealDBKnowledgeStore) -> None:
    store.create_collection("c", 4)
    docs = [KnowledgeDocument(id=h, content=h, source_id=h, metadata={h: h, "h": h, "k": [h, None], "n": None},
                              embedding=[1.0, 2.0, 3.0, float(i + 1)]) for i, h in enumerate(HOSTILE)]
    store.insert("c", docs)
    got = store.get("c", [d.id for d in docs])
    assert [(g.id, g.content, g.source_id, g.metadata) for g in got] == \
        [(d.id, d.content, d.source_id, d.metadata) for d in docs]
    for h in HOSTILE:
        assert store.count("c", filter={"h": h}) == 1
        assert store.count("c", filter={"k": {"$contains": h}}) == 1
    assert store.list_collections() == ["c"]
    assert store.delete("c", [HOSTILE[0]]) == 1
    assert store.count("c") == len(HOSTILE) - 1


def test_search_scores_exact(store: SurrealDBKnowledgeStore) -> None:
    for metric in Distance:
        name = f"s_{metric.value}"
        store.create_collection(name, 4, metric)
        store.insert(name, [doc(i) for i in range(1, 30)])
        query = [2.0, 0.5, -1.0, 2.0]
        hits = store.search(name, query, k=5, filter={"i": {"$gte": 1}})
        if metric is not Distance.DOT:
            assert hits[0].id == "d001"
        if metric is Distance.COSINE:
            assert hits[0].score == pytest.approx(1.0, abs=1e-12)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        vectors = np.array([doc(i).embedding for i in range(1, 30)], dtype=np.float32).astype(np.float64)
        q = np.array(query)
        reference = {Distance.COSINE: vectors @ q / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(q)),
                     Distance.L2: -np.linalg.norm(vectors - q, axis=1), Distance.DOT: vectors @ q}[metric]
        best = [f"d{i + 1:03d}" for i in np.argsort(-reference, kind="stable")[:5]]
        assert [h.id for h in hits] == best
        for h in hits:
            assert h.score == pytest.approx(metric.score(h.distance))


def test_write_into_a_dropped_collection(store: SurrealDBKnowledgeStore) -> None:
    store.create_collection("gone", 4)
    info = store.get_collection("gone")
    store.drop_collection("gone")
    with pytest.raises(CollectionNotFoundError):
        store._engine_write(info, [doc(1)], np.array([doc(1).embedding], dtype=np.float32))
    assert store.list_collections() == []
    assert store._conn.run("SELECT VALUE key FROM sb_kdoc")[0] == []


def test_generator_insert_in_batches(store: SurrealDBKnowledgeStore, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[int] = []
    original = SurrealDBKnowledgeStore._engine_write

    def counting(self: SurrealDBKnowledgeStore, info: CollectionInfo, documents: list, vectors: Any) -> None:
        writes.append(len(documents))
        original(self, info, documents, vectors)

    monkeypatch.setattr(SurrealDBKnowledgeStore, "_engine_write", counting)
    store.create_collection("g", 4)
    ids = store.insert("g", (doc(i, doc_id=f"g{i:05d}") for i in range(2_500)))
    assert len(ids) == 2_500 and store.count("g") == 2_500
    assert writes == [1000, 1000, 500]


def test_bad_cursor_and_closed(store: SurrealDBKnowledgeStore) -> None:
    store.create_collection("c", 4)
    for cursor in ("nope", "12", "null"):
        with pytest.raises(ValidationError):
            store.scroll("c", cursor=cursor)
    store.close()
    store.close()
    with pytest.raises(StoreClosedError):
        store.count("c")


def test_surrealkv_shares_engine_and_persists(tmp_path: Path) -> None:
    url = f"surrealkv:///{tmp_path}/kv"
    a, b = SurrealDBKnowledgeStore(url), SurrealDBKnowledgeStore(url)
    assert a._conn.engine is b._conn.engine and a.capabilities.persistent
    a.create_collection("p", 4)
    a.insert("p", [doc(1, {"none": None})])
    assert b.get("p", ["d001"])[0].metadata == {"none": None}
    a.close()
    assert b.count("p", filter={"none": {"$exists": False}}) == 1
    b.close()
    c = SurrealDBKnowledgeStore(url)
    try:
        assert c.get_collection("p") == CollectionInfo("p", 4, Distance.COSINE)
        assert c.count("p") == 1
    finally:
        c.close()


def _conn() -> Any:
    import surrealdb

    conn: Any = surrealdb.Surreal("mem://")  # embedded: the stubs only know ws/http
    conn.connect()
    return conn


def test_version_1_documents_get_their_filter_copy() -> None:
    """Documents written before the filter copy existed (no ``fmeta``, no version record) are upgraded."""
    conn = _conn()
    try:
        conn.use("storebridge", "storebridge")
        conn.query("CREATE sb_kcollection:c SET name = 'c', dimension = 2, distance = 'l2'")
        for i, meta in enumerate([{"a": 1}, {"a": "x"}, {"a": 2**100 + 1}, {}]):
            conn.query("CREATE type::thing('sb_kdoc', ['c', $k]) SET collection = 'c', key = $k, content = '', "
                       "source_id = NONE, metadata = $m, embedding = [1.0, $i]",
                       {"k": f"k{i}", "m": json.dumps(meta), "i": float(i)})
        store = SurrealDBKnowledgeStore(connection=conn)
        assert store.count("c", filter={"a": 1}) == 1
        assert store.count("c", filter={"a": {"$ne": 1}}) == 3
        assert store.count("c", filter={"a": {"$gt": 2**99}}) == 1  # the inexact one, client-side
        assert conn.query("SELECT VALUE version FROM sb_schema_versions:knowledge") == [SCHEMA_VERSION]
        # the vectors moved from the shared field to the collection's own
        assert conn.query("SELECT VALUE key FROM sb_kdoc WHERE embedding != NONE") == []
        moved = conn.query("SELECT key, v_63 FROM sb_kdoc ORDER BY key")
        assert [row["v_63"] for row in moved] == [[1.0, float(i)] for i in range(4)]
        assert [h.id for h in store.search("c", [1.0, 3.0], k=4)] == ["k3", "k2", "k1", "k0"]
        assert store.get("c", ["k2"])[0].embedding == [1.0, 2.0]
        store.close()
        conn.query("UPDATE sb_schema_versions:knowledge SET version = 99")
        with pytest.raises(SchemaVersionError):
            SurrealDBKnowledgeStore(connection=conn)
    finally:
        conn.close()


def test_table_prefixes_and_namespaces_are_separate() -> None:
    conn = _conn()
    try:
        a = SurrealDBKnowledgeStore(connection=conn)
        b = SurrealDBKnowledgeStore(connection=conn, table_prefix="other_")
        c = SurrealDBKnowledgeStore(connection=conn, namespace="n2")
        a.create_collection("x", 4)
        a.insert("x", [doc(1)])
        assert b.list_collections() == [] and c.list_collections() == []
        assert a.capabilities.persistent  # the caller's connection outlives the store
        for s in (a, b, c):
            s.close()
        conn.query("RETURN 1")  # a caller's connection is left open
    finally:
        conn.close()


def test_urls_and_options() -> None:
    assert resolve_url("surrealdb+mem://?ns=a&db=b", None) == ("mem://", {"ns": "a", "db": "b"}, {})
    with pytest.raises(ConfigurationError, match="unknown SurrealDB URL options"):
        SurrealDBKnowledgeStore("surrealdb+mem://?nss=a")
    with pytest.raises(ConfigurationError):
        SurrealDBKnowledgeStore("surrealdb+mem://?ns=a", namespace="b")
    with pytest.raises(ConfigurationError):
        SurrealDBKnowledgeStore("surrealdb+mem://", connection=object())
    with pytest.raises(ConfigurationError):
        SurrealDBKnowledgeStore("sqlite:///x.db")
    with SurrealDBKnowledgeStore("surrealdb+mem://?ns=app&db=docs", table_prefix="kb_") as s:
        assert (s.namespace, s.database) == ("app", "docs")
        assert repr(s) == ("SurrealDBKnowledgeStore(url='mem://', namespace='app', database='docs', "
                           "table_prefix='kb_', hnsw=True)")


def test_secrets_stay_out_of_errors_and_repr() -> None:
    for url, kwargs in (("surrealdb://root:hunter2secret@127.0.0.1:9/ns/db", {}),
                        ("surrealdb+http://127.0.0.1:9?token=hunter2secret", {}),
                        ("surrealdb://127.0.0.1:9", {"username": "root", "password": "hunter2secret"})):
        with pytest.raises(ConnectionFailedError) as info:
            SurrealDBKnowledgeStore(url, **kwargs)
        assert "hunter2secret" not in str(info.value) and "hunter2secret" not in repr(info.value)


def test_equal_vectors_and_many_ids(store: SurrealDBKnowledgeStore) -> None:
    store.create_collection("m", 2, "dot")
    ids = [f"id-{i}" for i in range(1500)] + ["1", "01", "a/b", "a b", "ü", "x" * 300]
    store.upsert("m", (KnowledgeDocument(id=i, embedding=[1.0, 1.0]) for i in ids))
    assert store.count("m") == len(ids)
    assert [d.id for d in store.get("m", ids + ["nope"], include_embeddings=False)] == ids
    hits = store.search("m", [1.0, 1.0], k=5)
    assert [h.id for h in hits] == sorted(ids)[:5]  # ties by id
    assert len(list(itertools.chain(store.scroll("m", limit=2000).documents))) == len(ids)


# -- the HNSW index ---------------------------------------------------------------------------------------


def test_vector_statements_are_exact() -> None:
    assert sf.vector_field("abc") == "v_616263"
    assert sf.vector_field("é-1") == "v_" + "é-1".encode().hex()
    assert re.fullmatch("v_[0-9a-f]+", sf.vector_field("x'; REMOVE TABLE sb_kdoc; --`⟩"))
    assert sf.hnsw_index_name("sb_kdoc", "ab") == "sb_kdoc_v_6162"
    assert sf.hnsw_index("sb_kdoc", "ab", 384, Distance.COSINE, m=12, efc=150) == (
        "DEFINE INDEX IF NOT EXISTS sb_kdoc_v_6162 ON TABLE sb_kdoc FIELDS v_6162 HNSW DIMENSION 384 "
        "DIST COSINE TYPE F32 EFC 150 M 12")
    assert sf.hnsw_index("t", "ab", 3, Distance.L2, m=16, efc=100).endswith(
        "FIELDS v_6162 HNSW DIMENSION 3 DIST EUCLIDEAN TYPE F32 EFC 100 M 16")
    assert sf.knn_source("sb_kdoc", "ab", 26, 1600) == "SELECT VALUE id FROM sb_kdoc WHERE v_6162 <|26,1600|> $q"
    with pytest.raises(ValidationError, match="dot"):
        sf.hnsw_index("t", "ab", 3, Distance.DOT, m=12, efc=150)
    for bad in (0, -1, True, 2.0, "3", 65_536):
        with pytest.raises(ValidationError):
            sf.hnsw_index("t", "ab", bad, Distance.COSINE, m=12, efc=150)  # type: ignore[arg-type]
    for k, ef in ((0, 10), (10, 0), (True, 10), ("5", 10), (10, "1|> $q; REMOVE TABLE t; --")):
        with pytest.raises(ValidationError):
            sf.knn_source("t", "ab", k, ef)  # type: ignore[arg-type]


def test_hnsw_options() -> None:
    with SurrealDBKnowledgeStore("surrealdb+mem://") as s:
        assert (s.hnsw, s.hnsw_threshold, s.hnsw_ef) == (True, 10_000, 1_600)
        assert s.capabilities.recall_floor == 0.95 and "HNSW" in s.capabilities.notes[0]
    with SurrealDBKnowledgeStore("surrealdb+mem://", hnsw=False) as s:
        assert s.capabilities.recall_floor == 1.0 and not s.capabilities.persistent
        assert "exact" in s.capabilities.notes[0] and "HNSW" not in " ".join(s.capabilities.notes)
    with SurrealDBKnowledgeStore("surrealdb+mem://", hnsw_threshold=0, hnsw_ef="40") as s:
        assert (s.hnsw_threshold, s.hnsw_ef) == (0, 40)
    for kwargs in ({"hnsw_threshold": -1}, {"hnsw_threshold": "many"}, {"hnsw_ef": 0}, {"hnsw_ef": 1.5},
                   {"hnsw": "maybe"}):
        with pytest.raises(ConfigurationError):
            SurrealDBKnowledgeStore("surrealdb+mem://", **kwargs)


def _vectors(count: int, dimension: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, dimension)).astype(np.float32)


def _reference(metric: Distance, vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Exact scores (higher is better) of float32 ``vectors`` against ``query``, in float64."""
    v, q = vectors.astype(np.float64), query.astype(np.float32).astype(np.float64)
    if metric is Distance.COSINE:
        return v @ q / (np.linalg.norm(v, axis=1) * np.linalg.norm(q))
    if metric is Distance.L2:
        return -np.linalg.norm(v - q, axis=1)
    return v @ q


def _indexes(store: SurrealDBKnowledgeStore) -> dict[str, str]:
    return dict(store._conn.run(f"INFO FOR TABLE {store.table_prefix}kdoc")[0]["indexes"])


def _paths(store: SurrealDBKnowledgeStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Which way each search of cosine / l2 collections went: ``hnsw`` (the KNN operator answered) or
    ``exact`` (too few of the index's candidates matched, the scan answered)."""
    seen: list[str] = []
    original = store._approximate

    def recording(*args: Any) -> Any:
        rows = original(*args)
        seen.append("exact" if rows is None else "hnsw")
        return rows

    monkeypatch.setattr(store, "_approximate", recording)
    return seen


def test_index_is_built_at_the_threshold_and_dropped_with_the_collection(monkeypatch: pytest.MonkeyPatch) -> None:
    vectors = _vectors(60, 8, 1)
    docs = [KnowledgeDocument(id=f"p{i:02d}", embedding=v.tolist()) for i, v in enumerate(vectors)]
    with SurrealDBKnowledgeStore("surrealdb+mem://", hnsw_threshold=50) as store:
        paths = _paths(store, monkeypatch)
        for metric in Distance:
            store.create_collection(metric.value, 8, metric)
            store.insert(metric.value, docs[:49])
            store.search(metric.value, vectors[0].tolist(), k=3)
        assert set(_indexes(store)) == {"sb_kdoc_collection_id"} and paths == []
        for metric in Distance:
            store.upsert(metric.value, docs[49:])  # the write that takes each collection to the threshold
        index = {m: f"sb_kdoc_{sf.vector_field(m.value)}" for m in Distance}
        defined = _indexes(store)
        assert set(defined) == {"sb_kdoc_collection_id", index[Distance.COSINE], index[Distance.L2]}
        assert (f"FIELDS {sf.vector_field('cosine')} HNSW DIMENSION 8 DIST COSINE TYPE F32 EFC 150 M 12 "
                in defined[index[Distance.COSINE]])
        assert "DIMENSION 8 DIST EUCLIDEAN" in defined[index[Distance.L2]]
        assert {m: store._indexed(store.get_collection(m.value)) for m in Distance} == {
            Distance.COSINE: True, Distance.L2: True, Distance.DOT: False}
        for metric in Distance:
            for query in vectors[:5]:
                best = [docs[i].id for i in np.argsort(-_reference(metric, vectors, query), kind="stable")[:10]]
                assert [h.id for h in store.search(metric.value, query.tolist(), k=10)] == best
        assert paths == ["hnsw"] * 10  # dot has no HNSW index in SurrealDB: scanned
        assert store.drop_collection(Distance.COSINE.value)
        assert index[Distance.COSINE] not in _indexes(store)
        # the same name again, another dimension: a new index of that dimension
        store.create_collection("cosine", 3)
        store.insert("cosine", [KnowledgeDocument(id=f"n{i}", embedding=[1.0, float(i), 2.0]) for i in range(50)])
        assert "DIMENSION 3 DIST COSINE" in _indexes(store)[index[Distance.COSINE]]
        assert store.search("cosine", [1.0, 49.0, 2.0], k=1)[0].id == "n49"


#: (filter, the way its share of the documents decides: ``hnsw`` when about 8 x 26 of the 600 candidates match)
FILTERED_SPECS: list[tuple[Any, str]] = [
    (None, "hnsw"),
    ({"tag": {"$contains": "odd"}}, "hnsw"),  # 50 %: about 300 of the candidates match
    ({"a.b": {"$ne": 0}}, "hnsw"),  # 75 %
    ({"$or": [{"a.b": 1}, {"g": {"$lte": 6}}]}, "hnsw"),  # 77.5 %
    ({"g": {"$in": [1, 2]}}, "exact"),  # 20 %: about 120 of the candidates match
    ({"$not": {"g": {"$lt": 8}}}, "exact"),  # 20 %, through $not
    ({"$or": [{"rare": True}, {"g": {"$lt": 1}}]}, "exact"),  # 10 %
    ({"$and": [{"g": {"$gte": 5}}, {"tag": {"$contains": "t3"}}]}, "exact"),  # 7 %
    ({"rare": True}, "exact"),  # 2 documents
    ({"g": 11}, "exact"),  # none
]


def test_hnsw_search_recall_and_filtered_completeness(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cosine / l2 searches through the HNSW index (built by the insert that reaches ``hnsw_threshold``;
    ``hnsw_ef=600``: a filter is applied to 600 of the 1,000 documents). Against exact numpy search over the
    reference evaluator's matches: recall@10 at least the declared floor, every hit matches, and there are
    always min(k, matches) hits: filters too selective for the candidate list are answered by the exact
    scan."""
    n, dim = 1000, 16
    vectors, queries = _vectors(n, dim, 7), _vectors(6, dim, 8)
    metadata = [{"g": i % 10, "tag": ["odd" if i % 2 else "even", f"t{i % 7}"], "rare": i % 500 == 7,
                 "a": {"b": i % 4}} for i in range(n)]
    docs = [KnowledgeDocument(id=f"d{i:04d}", metadata=m, embedding=v.tolist())
            for i, (m, v) in enumerate(zip(metadata, vectors, strict=True))]
    with SurrealDBKnowledgeStore("surrealdb+mem://", hnsw_threshold=n, hnsw_ef=600) as store:
        paths = _paths(store, monkeypatch)
        for metric in (Distance.COSINE, Distance.L2):
            store.create_collection(metric.value, dim, metric)
            store.insert(metric.value, docs)
            assert store._indexed(store.get_collection(metric.value))
            for spec, path in FILTERED_SPECS:
                mask = np.array([spec is None or evaluate(spec, m) for m in metadata])
                want = min(10, int(mask.sum()))
                paths.clear()
                recalls = []
                for query in queries:
                    scores = np.where(mask, _reference(metric, vectors, query), -np.inf)
                    best = {docs[i].id for i in np.argsort(-scores, kind="stable")[:want]}
                    hits = store.search(metric.value, query.tolist(), k=10, filter=spec)
                    assert len(hits) == want, (metric, spec)
                    assert all(mask[int(h.id[1:])] for h in hits), (metric, spec)
                    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
                    recalls.append(len(best & {h.id for h in hits}) / want if want else 1.0)
                assert np.mean(recalls) >= store.capabilities.recall_floor, (metric, spec, recalls)
                assert set(paths) == {path}, (metric, spec, paths)


def test_search_falls_back_when_the_index_answers_short(monkeypatch: pytest.MonkeyPatch) -> None:
    """The collection says indexed but its index is gone (removed behind the store's back): the KNN operator
    then finds nothing, and the search is answered by the exact scan, complete."""
    vectors = _vectors(100, 6, 3)
    with SurrealDBKnowledgeStore("surrealdb+mem://", hnsw_threshold=0) as store:
        store.create_collection("c", 6, "l2")
        store.insert("c", [KnowledgeDocument(id=f"d{i:03d}", metadata={"i": i}, embedding=v.tolist())
                           for i, v in enumerate(vectors)])
        paths = _paths(store, monkeypatch)
        store.search("c", vectors[0].tolist(), k=5)
        store._conn.run(f"REMOVE INDEX sb_kdoc_{sf.vector_field('c')} ON TABLE sb_kdoc")
        assert store._indexed(store.get_collection("c"))
        for spec in (None, {"i": {"$gte": 10}}):
            mask = np.array([spec is None or i >= 10 for i in range(100)])
            scores = np.where(mask, _reference(Distance.L2, vectors, vectors[3]), -np.inf)
            best = [f"d{i:03d}" for i in np.argsort(-scores, kind="stable")[:10]]
            assert [h.id for h in store.search("c", vectors[3].tolist(), k=10, filter=spec)] == best
        assert paths == ["hnsw", "exact", "exact"]


def test_hnsw_statements_travel_as_documented() -> None:
    """The KNN operator with literal k and ef, the query vector bound, and the filter applied outside the
    KNN subquery (SurrealDB 2.3.10 mis-evaluates conditions written beside the operator); with a filter and
    a candidate list too short to hold 8 x (k + 16) matches, the index is not asked at all."""
    import surrealdb

    real: Any = surrealdb.Surreal("mem://")  # embedded: the stubs only know ws/http
    real.connect()
    spy = _Spy(real)
    store = SurrealDBKnowledgeStore(connection=spy, hnsw_threshold=0, hnsw_ef=200)
    try:
        store.create_collection("c", 3, "l2")
        assert any(sql.count("DEFINE INDEX IF NOT EXISTS sb_kdoc_v_63 ON TABLE sb_kdoc FIELDS v_63 HNSW") == 1
                   for sql, _ in spy.calls)
        store.insert("c", [KnowledgeDocument(id=f"d{i}", metadata={"h": HOSTILE[i % len(HOSTILE)]},
                                             embedding=[1.0, float(i), 2.0]) for i in range(40)])
        for spec, depth in ((None, 20), ({"h": HOSTILE[0]}, 200)):
            spy.calls.clear()
            store.search("c", [1.0, 2.0, 3.0], k=4, filter=spec)
            knn = [(sql, params) for sql, params in spy.calls if "<|" in sql]
            assert len(knn) == 1
            sql, params = knn[0]
            assert (f"FROM (SELECT VALUE id FROM sb_kdoc WHERE v_63 <|{depth},200|> $q) "
                    "WHERE collection = $c") in sql
            assert params is not None and params["q"] == [1.0, 2.0, 3.0] and params["n"] == 20
            assert HOSTILE[0] not in sql
        store.hnsw_ef = 159  # 8 x 20 candidates needed
        spy.calls.clear()
        assert [h.id for h in store.search("c", [1.0, 2.0, 3.0], k=4, filter={"h": {"$ne": "x"}})] == \
            ["d2", "d1", "d3", "d0"]
        assert not any("<|" in sql for sql, _ in spy.calls)
    finally:
        store.close()
        real.close()


def test_version_2_collections_move_and_get_their_index_on_first_connect() -> None:
    """Collections written by the version 2 layout (every vector in the shared ``embedding`` field, no HNSW
    index) are moved to their own field on first connect, and those at the threshold indexed then."""
    conn = _conn()
    try:
        conn.use("storebridge", "storebridge")
        conn.query("DEFINE TABLE sb_kcollection SCHEMALESS; DEFINE TABLE sb_kdoc SCHEMALESS; "
                   "DEFINE TABLE sb_schema_versions SCHEMALESS; "
                   "DEFINE INDEX sb_kdoc_collection_id ON TABLE sb_kdoc FIELDS collection, key UNIQUE; "
                   "UPSERT sb_schema_versions:knowledge SET version = 2")
        vectors = _vectors(80, 5, 11)
        sizes = {"big": ("cosine", 80), "dotty": ("dot", 80), "small": ("l2", 30)}
        for name, (distance, size) in sizes.items():
            conn.query("CREATE type::thing('sb_kcollection', $c) SET name = $c, dimension = 5, distance = $d",
                       {"c": name, "d": distance})
            for i in range(size):
                meta = {"i": i}
                record = {"collection": name, "key": f"k{i:02d}", "content": "", "metadata": json.dumps(meta),
                          "embedding": vectors[i].astype(np.float64).tolist(), **sf.metadata_copy(meta).fields()}
                conn.query("CREATE type::thing('sb_kdoc', [$c, $k]) CONTENT $doc",
                           {"c": name, "k": f"k{i:02d}", "doc": record})
        store = SurrealDBKnowledgeStore(connection=conn, hnsw_threshold=50)
        try:
            assert conn.query("SELECT VALUE version FROM sb_schema_versions:knowledge") == [SCHEMA_VERSION]
            assert conn.query("SELECT VALUE key FROM sb_kdoc WHERE embedding != NONE") == []
            assert set(_indexes(store)) == {"sb_kdoc_collection_id", f"sb_kdoc_{sf.vector_field('big')}"}
            assert store.get("small", ["k03"])[0].embedding == vectors[3].tolist()
            for name, (distance, size) in sizes.items():
                metric = Distance.parse(distance)
                assert store._indexed(store.get_collection(name)) is (name == "big")
                for query in vectors[:4]:
                    ranked = np.argsort(-_reference(metric, vectors[:size], query), kind="stable")
                    best = [f"k{i:02d}" for i in ranked[:10]]
                    assert [h.id for h in store.search(name, query.tolist(), k=10)] == best
                    evens = [f"k{i:02d}" for i in ranked if i % 2 == 0][:10]
                    assert [h.id for h in store.search(name, query.tolist(), k=10,
                                                       filter={"i": {"$in": list(range(0, 80, 2))}})] == evens
        finally:
            store.close()
    finally:
        conn.close()


class _TooLarge(_Spy):
    """A real embedded connection that answers, like surrealkv does for a transaction too large for its log,
    with an error for any write transaction of more than ``most`` documents. The failure is injected here
    (the in-memory engine has no such limit); it is the answer's shape that is SurrealDB's."""

    def __init__(self, conn: Any, most: int) -> None:
        super().__init__(conn)
        self.most = most
        self.sizes: list[int] = []

    def query_raw(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        if "UPSERT" in sql and params and "rows" in params:
            self.sizes.append(len(params["rows"]))
            if len(params["rows"]) > self.most:
                return {"result": [{"status": "ERR", "result": (
                    "There was a problem with a datastore transaction: Log error: Record is too large to fit in "
                    "a segment. Increase max segment size")}]}
        return super().query_raw(sql, params)


def test_indexed_collections_are_written_in_small_transactions() -> None:
    """Writes into an indexed collection go in transactions of 64 documents, halved while the engine answers
    that one is too large; writes into a collection without an index go in one transaction per batch."""
    import surrealdb

    real: Any = surrealdb.Surreal("mem://")  # embedded: the stubs only know ws/http
    real.connect()
    spy = _TooLarge(real, most=20)
    store = SurrealDBKnowledgeStore(connection=spy, hnsw_threshold=0)
    try:
        vectors = _vectors(150, 4, 5)
        docs = [KnowledgeDocument(id=f"d{i:03d}", metadata={"n": 2**100 + 1} if i == 149 else {}, embedding=v.tolist())
                for i, v in enumerate(vectors)]
        store.create_collection("small", 4, "dot")  # no HNSW index for dot
        spy.most = 1000
        store.insert("small", docs)
        assert spy.sizes == [150]
        store.create_collection("indexed", 4, "l2")
        spy.most, spy.sizes = 20, []
        store.insert("indexed", docs)
        assert spy.sizes == [64, 32, 16, 16, 16, 16, 16, 16, 16, 16, 16, 6]
        assert store.count("indexed") == 150
        assert store.count("indexed", filter={"n": {"$gt": 2**99}}) == 1  # the inexact flag came with its chunk
        assert [h.id for h in store.search("indexed", vectors[7].tolist(), k=1)] == ["d007"]
        spy.most = 0
        with pytest.raises(OperationFailedError, match="too large to fit in a segment"):
            store.upsert("indexed", docs[:3])
    finally:
        store.close()
        real.close()
