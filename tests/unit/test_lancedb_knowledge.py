"""LanceDB knowledge store specifics: the pure translation layer (exact SQL for every operator, escaping,
the order-preserving number keys, the filter columns), then the store on embedded LanceDB (hostile values,
filters against the reference evaluator, the earlier table layout and its migration, URLs)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("lancedb", reason="[no engine on this machine] lancedb is not installed")

import lancedb
import pyarrow as pa

from storebridge.adapters.lancedb import LanceDBKnowledgeStore
from storebridge.adapters.lancedb._filters import (
    both,
    compile_filter,
    filter_columns,
    filter_paths,
    id_predicate,
    number_key,
    sql_string,
    tag,
)
from storebridge.adapters.lancedb.knowledge import layout_format
from storebridge.errors import (
    AlreadyExistsError,
    ConfigurationError,
    FilterError,
    OperationFailedError,
    SchemaVersionError,
    UnsupportedFilterError,
    ValidationError,
)
from storebridge.filters import ALL_OPS, Comparison, Op, evaluate, parse_filter
from storebridge.models import KnowledgeDocument

HOSTILE = ["'; DROP TABLE x; --", "a'b", "''", "\\", "\\'", "x\\' OR 1=1 --", '"q"', "ü 𝄞", "id IN ('a')", ")", "%_*",
           "nul\x00byte", "line\nbreak\ttab", "k=sv", "\u2028"]


def compiled(spec: Any) -> str | None:
    return compile_filter(parse_filter(spec))


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = LanceDBKnowledgeStore(path=tmp_path / "lance")
    yield s
    s.close()


# -- the translation layer -------------------------------------------------------------------------------


def test_sql_string_doubles_quotes_and_keeps_everything_else() -> None:
    assert sql_string("a'b") == "'a''b'"
    assert sql_string("\\") == "'\\'"  # Lance SQL has no backslash escapes
    assert sql_string("x\x00\n🚀") == "'x\x00\n🚀'"
    assert id_predicate(["x", "'"]) == "id IN ('x', '''')"
    with pytest.raises(ValidationError):
        sql_string(3)  # type: ignore[arg-type]


def test_every_operator_compiles_to_exact_sql() -> None:
    assert compiled({"a": "x"}) == "array_has(_sb_eq, 'a=sx')"
    assert compiled({"a": 1}) == compiled({"a": 1.0}) == "array_has(_sb_eq, 'a=nP500001')"
    assert compiled({"a": True}) == "array_has(_sb_eq, 'a=b1')"
    assert compiled({"a": {"$ne": False}}) == "NOT (array_has(_sb_eq, 'a=b0'))"
    assert compiled({"a": {"$gt": 2.5}}) == "COALESCE(map_extract(_sb_num, 'a')[1] > 'P5000025', FALSE)"
    assert compiled({"a": {"$gte": -1}}) == "COALESCE(map_extract(_sb_num, 'a')[1] >= 'M499998~', FALSE)"
    assert compiled({"a": {"$lt": 0}}) == "COALESCE(map_extract(_sb_num, 'a')[1] < 'N', FALSE)"
    assert compiled({"a": {"$lte": math.inf}}) == "COALESCE(map_extract(_sb_num, 'a')[1] <= 'Q', FALSE)"
    assert compiled({"a": {"$in": ["x", 1, True, "x"]}}) == \
        "array_has_any(_sb_eq, make_array('a=sx', 'a=nP500001', 'a=b1'))"
    assert compiled({"a": {"$in": [2]}}) == "array_has(_sb_eq, 'a=nP500002')"
    assert compiled({"a": {"$nin": ["x"]}}) == "NOT (array_has(_sb_eq, 'a=sx'))"
    assert compiled({"a": {"$contains": "ml"}}) == "array_has(_sb_el, 'a=sml')"
    assert compiled({"a": {"$exists": True}}) == "array_has(_sb_keys, 'a')"
    assert compiled({"a": {"$exists": False}}) == "NOT (array_has(_sb_keys, 'a'))"
    assert compiled({"n.k": "v"}) == "array_has(_sb_eq, 'n.k=sv')"
    assert compiled({"with space": "x"}) == "array_has(_sb_eq, 'with space=sx')"
    assert compiled(None) is None


def test_logic_and_constant_folding() -> None:
    assert compiled({"a": 1, "b": {"$exists": True}}) == \
        "((array_has(_sb_eq, 'a=nP500001')) AND (array_has(_sb_keys, 'b')))"
    assert compiled({"$or": [{"a": "x"}, {"$not": {"b": "y"}}]}) == \
        "((array_has(_sb_eq, 'a=sx')) OR (NOT (array_has(_sb_eq, 'b=sy'))))"
    assert compiled({"a": {"$in": []}}) == "FALSE"
    assert compiled({"a": {"$nin": []}}) == "TRUE"
    assert compiled({"$or": [{"a": {"$in": []}}, {"b": "y"}]}) == "array_has(_sb_eq, 'b=sy')"
    assert compiled({"$and": [{"a": {"$in": []}}, {"b": "y"}]}) == "FALSE"
    assert compiled({"$not": {"a": {"$in": []}}}) == "TRUE"
    assert both(None, None) is None and both("x", None) == "x" and both("x", "y") == "(x) AND (y)"


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_stay_inside_one_literal(value: str) -> None:
    sql = compiled({"k": value})
    assert sql == "array_has(_sb_eq, " + "'" + ("k=s" + value).replace("'", "''") + "'" + ")"
    # the literal is the whole argument: undoubling the quotes gives back the value
    body = sql[len("array_has(_sb_eq, '"):-2]
    assert body.replace("''", "'") == "k=s" + value and "'" not in body.replace("''", "")


def test_capabilities_are_honest() -> None:
    caps = LanceDBKnowledgeStore.capabilities
    assert caps.filter_operators == ALL_OPS and caps.nested_keys and not caps.client_side_filters
    values = {Op.IN: ("x",), Op.NIN: ("x",), Op.EXISTS: True, Op.GT: 1, Op.GTE: 1, Op.LT: 1, Op.LTE: 1}
    for op in ALL_OPS - {Op.AND, Op.OR, Op.NOT}:
        assert compile_filter(Comparison("a.b", op, values.get(op, "x")))


NUMBERS: list[Any] = [0, -0.0, 1, 1.0, -1, 2.5, 0.1, -0.1, 1e-300, 5e-324, -5e-324, 1.7976931348623157e308, 2**53,
                      2**53 + 1, -(2**53) - 1, 2**64, 10**30, -(10**30), 123456789012345678901234567890, 100, 10, 0.5,
                      1.5, 15, -15, -1.5, 9.75, -100000, 1e22, 10**22, 10**22 + 1, math.inf, -math.inf]


def test_number_key_orders_exactly() -> None:
    for a in NUMBERS:
        for b in NUMBERS:
            ka, kb = number_key(a), number_key(b)
            assert (ka < kb) == (a < b) and (ka == kb) == (a == b), (a, b, ka, kb)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.integers(min_value=-(2**200), max_value=2**200), st.floats(allow_nan=False)),
       st.one_of(st.integers(min_value=-(2**200), max_value=2**200), st.floats(allow_nan=False)))
def test_number_key_orders_like_python(a: Any, b: Any) -> None:
    ka, kb = number_key(a), number_key(b)
    assert (ka < kb) == (a < b) and (ka == kb) == (a == b)


def test_number_key_refuses_non_numbers() -> None:
    for bad in (True, "1", math.nan, None):
        with pytest.raises(ValidationError):
            number_key(bad)


def test_tags_keep_types_apart() -> None:
    assert [tag(v) for v in ("1", 1, 1.0, True, False, "")] == ["s1", "nP500001", "nP500001", "b1", "b0", "s"]
    with pytest.raises(ValidationError):
        tag([1])


def test_filter_paths_follow_the_reference_lookup() -> None:
    metadata = {"a": {"b": 1, "c": {"d": "x"}, "e.f": 2, "$x": 3}, "a.b": None, "top": [1, "x"], "n": None,
                "bad'key": 1, "z": {}}
    paths = filter_paths(metadata)
    assert paths == {"a": metadata["a"], "a.c": {"d": "x"}, "a.c.d": "x", "top": [1, "x"], "z": {}}
    for path, value in paths.items():  # the reference evaluator finds the same value there
        assert evaluate({path: {"$exists": True}}, metadata)
        if isinstance(value, str):
            assert evaluate({path: value}, metadata)
    assert not evaluate({"a.b": {"$exists": True}}, metadata)  # the literal "a.b": None shadows a -> b


def test_filter_columns() -> None:
    keys, equal, elements, numbers = filter_columns(
        {"s": "v", "n": 2, "f": 2.0, "b": True, "l": ["x", 1, True, None, [2], "x"], "o": {"k": -1}, "none": None})
    assert keys == ["b", "f", "l", "n", "o", "o.k", "s"]
    assert equal == ["b=b1", "f=nP500002", "n=nP500002", "o.k=nM499998~", "s=sv"]
    assert elements == ["l=sx", "l=nP500001", "l=b1"]
    assert numbers == [("f", "P500002"), ("n", "P500002"), ("o.k", "M499998~")]


# -- the store on embedded LanceDB ----------------------------------------------------------------------


def test_hostile_ids_and_values_round_trip(store: LanceDBKnowledgeStore) -> None:
    store.create_collection("c", 2, "l2")
    docs = [KnowledgeDocument(id=i, embedding=[float(n), 1.0], metadata={"v": i, "l": [i]}) for n, i in enumerate(HOSTILE)]
    docs.append(KnowledgeDocument(id="plain", embedding=[0.0, 0.0]))
    store.insert("c", docs)
    assert [d.id for d in store.get("c", HOSTILE + ["missing"])] == HOSTILE
    with pytest.raises(AlreadyExistsError):
        store.insert("c", [KnowledgeDocument(id="'; DROP TABLE x; --", embedding=[1.0, 1.0])])
    for value in HOSTILE:
        assert store.count("c", filter={"v": value}) == 1, value
        assert [h.id for h in store.search("c", [0.0, 0.0], k=3, filter={"l": {"$contains": value}})] == [value]
    page = store.scroll("c", limit=3, cursor="'; x")  # a cursor is a position, quoted like any value
    assert [d.id for d in page.documents] == sorted(i for i in [*HOSTILE, "plain"] if i > "'; x")[:3]
    assert store.delete("c", ["'; DROP TABLE x; --", "\\'", "nope"]) == 2
    assert store.delete("c", filter={"v": {"$in": ["a'b", "nul\x00byte"]}}) == 2
    assert store.count("c") == len(docs) - 4
    assert store.list_collections() == ["c"]


DOCS = [
    {"v": "a"}, {"v": ["a"]}, {"v": ["a", "b"]}, {"v": 1}, {"v": 1.0}, {"v": True}, {"v": [1, True]},
    {"v": None}, {}, {"v": 2.5}, {"v": [False]}, {"v": {"w": 1}}, {"v.w": 2, "v": {"w": 3}}, {"v": 2**53 + 1},
    {"v": 2**64}, {"v": -(10**30)}, {"v": 1e300}, {"v": "1"},
]
FILTERS = [
    {"v": "a"}, {"v": {"$ne": "a"}}, {"v": 1}, {"v": True}, {"v": {"$in": ["a", 1]}}, {"v": {"$nin": ["a", 1]}},
    {"v": {"$in": []}}, {"v": {"$nin": []}}, {"v": {"$contains": "a"}}, {"v": {"$contains": 1}},
    {"v": {"$gte": 1}}, {"v": {"$exists": False}}, {"v.w": 1}, {"v.w": {"$gt": 1}}, {"$not": {"v": {"$lt": 2}}},
    {"v": 2**53}, {"v": 2**53 + 1}, {"v": {"$gt": 2**53}}, {"v": {"$lt": -(10**29)}}, {"v": {"$gte": 2**64}},
    {"v": {"$lt": math.inf}}, {"v": {"$gt": -math.inf, "$lt": 0}}, {"v": {"$contains": True}},
    {"v": float(2**53)}, {"v": {"$gt": float(2**53)}}, {"v": {"$lte": float(2**64)}}, {"v": {"$in": [float(2**64), "1"]}},
]


@pytest.mark.parametrize("spec", FILTERS, ids=[repr(f) for f in FILTERS])
def test_native_filters_match_reference(store: LanceDBKnowledgeStore, spec: dict[str, Any]) -> None:
    store.create_collection("f", 2, "dot")
    store.upsert("f", [KnowledgeDocument(id=f"{i:02d}", embedding=[1.0, float(i)], metadata=m)
                       for i, m in enumerate(DOCS)])
    expected = {f"{i:02d}" for i, m in enumerate(DOCS) if evaluate(spec, m)}
    assert {h.id for h in store.search("f", [1.0, 0.0], k=100, filter=spec)} == expected
    assert store.count("f", filter=spec) == len(expected)
    assert {d.id for d in store.scroll("f", limit=100, filter=spec).documents} == expected


def test_prefilter_finds_the_rare_farthest_matches(store: LanceDBKnowledgeStore) -> None:
    """The few matching documents are the farthest ones: Lance filters before ranking."""
    store.create_collection("c", 2, "l2")
    store.upsert("c", (KnowledgeDocument(id=f"{i:05d}", embedding=[float(i), 0.0], metadata={"rare": i >= 2995})
                       for i in range(3000)))
    hits = store.search("c", [0.0, 0.0], k=3, filter={"rare": True})
    assert [h.id for h in hits] == ["02995", "02996", "02997"]
    assert hits[0].distance == 2995.0 and hits[0].score == 1.0 / 2996.0


def test_scroll_pages_in_id_order_with_a_filter(store: LanceDBKnowledgeStore) -> None:
    store.create_collection("c", 2)
    store.upsert("c", [KnowledgeDocument(id=f"{i:03d}", embedding=[1.0, float(i)], metadata={"even": i % 2 == 0})
                       for i in reversed(range(25))])
    got, cursor = [], None
    while True:
        page = store.scroll("c", limit=4, cursor=cursor, filter={"even": True}, include_embeddings=False)
        assert all(d.embedding is None for d in page.documents)
        got += [d.id for d in page.documents]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert got == [f"{i:03d}" for i in range(0, 25, 2)]


def test_upsert_last_duplicate_wins_and_generators_stream(store: LanceDBKnowledgeStore) -> None:
    store.create_collection("c", 2)
    store.upsert("c", [KnowledgeDocument(id="a", embedding=[1.0, 0.0], content="1"),
                       KnowledgeDocument(id="a", embedding=[0.0, 1.0], content="2")])
    assert store.get("c", ["a"])[0].content == "2"
    seen_mid_stream = []

    def docs() -> Any:
        for i in range(2500):
            if i == 1500:  # the first batch of 1000 is written before the generator is read further
                seen_mid_stream.append(store.count("c"))
            yield KnowledgeDocument(id=str(i), embedding=[1.0, float(i)])

    assert len(store.upsert("c", docs())) == 2500
    assert seen_mid_stream == [1001]
    assert store.count("c") == 2501


def test_urls_and_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    LanceDBKnowledgeStore("lancedb:///rel").create_collection("c", 2)
    LanceDBKnowledgeStore(f"lance:///{tmp_path / 'abs'}").create_collection("c", 2)
    assert (tmp_path / "rel").is_dir() and (tmp_path / "abs").is_dir()
    assert repr(LanceDBKnowledgeStore(path=tmp_path / "abs")) == f"LanceDBKnowledgeStore({str(tmp_path / 'abs')!r})"
    for bad in ("lancedb:///x?foo=1", "qdrant:///x", "lancedb+s3:///x", "lancedb://"):
        with pytest.raises(ConfigurationError):
            LanceDBKnowledgeStore(bad)
    with pytest.raises(ConfigurationError):
        LanceDBKnowledgeStore("lancedb:///x", path=tmp_path)
    connection = lancedb.connect(str(tmp_path / "abs"))
    assert LanceDBKnowledgeStore(connection=connection).list_collections() == ["c"]


def test_concurrent_writers_lose_nothing(store: LanceDBKnowledgeStore) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store.create_collection("c", 2, "l2")

    def write(t: int) -> None:
        for n in range(5):
            store.upsert("c", [KnowledgeDocument(id=f"{t}-{n}-{j}", embedding=[float(t), float(j)]) for j in range(20)])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(4)))
    assert store.count("c") == 4 * 5 * 20


def test_a_foreign_table_is_refused(tmp_path: Path) -> None:
    db = lancedb.connect(str(tmp_path))
    db.create_table("foreign", pa.table({"id": ["a"]}))
    with pytest.raises(OperationFailedError, match="not made by storebridge"):
        LanceDBKnowledgeStore(path=tmp_path).count("foreign")


# -- the earlier layout (format 1) ---------------------------------------------------------------------


def _legacy_table(path: Path, name: str, docs: list[KnowledgeDocument]) -> None:
    """A collection exactly as the previous storebridge wrote it: no filter columns, no format mark."""
    schema = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("content", pa.string()),
                        pa.field("source_id", pa.string()), pa.field("metadata", pa.string()),
                        pa.field("vector", pa.list_(pa.float32(), 2)), pa.field("embedding", pa.list_(pa.float32(), 2))],
                       metadata={b"storebridge.distance": b"l2"})
    vectors = [d.embedding for d in docs]
    table = lancedb.connect(str(path)).create_table(name, schema=schema)
    table.add(pa.Table.from_pylist([{"id": d.id, "content": d.content, "source_id": d.source_id,
                                     "metadata": json.dumps(d.metadata), "vector": v, "embedding": v}
                                    for d, v in zip(docs, vectors, strict=True)], schema=schema))


def test_earlier_layout_reads_and_migrates(tmp_path: Path) -> None:
    docs = [KnowledgeDocument(id=f"d{i}", content=f"c{i}", embedding=[float(i), 1.0],
                              metadata={"i": i, "even": i % 2 == 0, "tags": ["x"] if i % 3 == 0 else []})
            for i in range(2500)]
    _legacy_table(tmp_path, "old", docs)
    store = LanceDBKnowledgeStore(path=tmp_path)
    assert store.get_collection("old").dimension == 2 and store.count("old") == 2500
    assert store.get("old", ["d7"])[0].metadata == docs[7].metadata
    assert [h.id for h in store.search("old", [7.0, 1.0], k=2)] == ["d7", "d6"]
    assert len(store.scroll("old", limit=10).documents) == 10
    for call in (lambda: store.count("old", filter={"even": True}),
                 lambda: store.search("old", [0.0, 0.0], filter={"i": 1}),
                 lambda: store.scroll("old", filter={"i": 1}),
                 lambda: store.delete("old", filter={"i": 1})):
        with pytest.raises(SchemaVersionError, match=r"migrate_collection\('old'\)"):
            call()
    store.upsert("old", [KnowledgeDocument(id="new", embedding=[0.5, 0.5], metadata={"i": -1, "even": False})])
    assert store.count("old") == 2501  # writes keep the earlier layout until migrated
    assert store.migrate_collection("old") == 2501
    table = lancedb.connect(str(tmp_path)).open_table("old")
    assert layout_format(table.schema) == "2"
    all_meta = {d.id: d.metadata for d in docs} | {"new": {"i": -1, "even": False}}
    for spec in ({"even": True}, {"i": {"$lt": 3}}, {"tags": {"$contains": "x"}}, {"tags": {"$exists": True}}):
        want = {i for i, m in all_meta.items() if evaluate(spec, m)}
        assert store.count("old", filter=spec) == len(want), spec
        assert {d.id for d in store.scroll("old", limit=3000, filter=spec).documents} == want
    assert store.migrate_collection("old") == 0


def test_interrupted_migration_finishes_on_rerun(tmp_path: Path) -> None:
    docs = [KnowledgeDocument(id=f"d{i}", embedding=[float(i), 1.0], metadata={"i": i}) for i in range(5)]
    _legacy_table(tmp_path, "old", docs)
    table = lancedb.connect(str(tmp_path)).open_table("old")
    from storebridge.adapters.lancedb.knowledge import _filter_fields

    table.add_columns(_filter_fields("2-pending"))  # a migration that stopped after adding the columns
    store = LanceDBKnowledgeStore(path=tmp_path)
    assert store.count("old") == 5
    with pytest.raises(SchemaVersionError, match="migrate_collection"):
        store.count("old", filter={"i": 1})
    assert store.migrate_collection("old") == 5
    assert store.count("old", filter={"i": {"$gte": 3}}) == 2


def test_a_newer_layout_is_refused(tmp_path: Path) -> None:
    store = LanceDBKnowledgeStore(path=tmp_path)
    store.create_collection("c", 2)
    lancedb.connect(str(tmp_path)).open_table("c").update_field_metadata(
        {"path": "_sb_keys", "metadata": {"storebridge.format": "3"}})
    with pytest.raises(SchemaVersionError, match="newer"):
        store.count("c")


def test_vectors_round_trip_exactly_for_cosine(store: LanceDBKnowledgeStore) -> None:
    """Cosine collections scan unit vectors; reads and re-ranking use the original float32 vector."""
    store.create_collection("c", 3, "cosine")
    original = [3e38, -2.5e-38, 1.0]
    store.upsert("c", [KnowledgeDocument(id="x", embedding=original)])
    got = store.get("c", ["x"])[0].embedding
    assert got == np.asarray(original, dtype=np.float32).tolist()
    assert store.search("c", [1.0, 0.0, 0.0], k=1, include_embeddings=True)[0].document.embedding == got


def test_malformed_filters_are_filter_errors_not_unsupported(store: LanceDBKnowledgeStore) -> None:
    store.create_collection("c", 2)
    assert store.count("c", filter={"a.b.c": 1}) == 0  # dotted keys are declared
    for spec in ({"a": {"$gt": "x"}}, {"a'b": 1}):
        with pytest.raises(FilterError) as caught:
            store.count("c", filter=spec)
        assert not isinstance(caught.value, UnsupportedFilterError)
