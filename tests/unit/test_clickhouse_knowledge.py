"""``clickhouse`` knowledge store specifics: the pure translation layer (literals, parameters, exact SQL per
operator, exact number bounds), the store on chDB (one directory per process, a database per test: hostile
values, filters against the reference evaluator at the 64-bit edges, the earlier table layout), and the
server path against a fake clickhouse-connect client (it captures calls; it is not the engine)."""

from __future__ import annotations

import atexit
import json
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("chdb", reason="[no engine on this machine] chdb is not installed")

from storebridge.adapters.clickhouse import knowledge as ck
from storebridge.adapters.clickhouse._query import (
    Params,
    Statements,
    compile_filter,
    double_bound,
    find_wide_int,
    param_text,
    quote,
)
from storebridge.adapters.clickhouse.knowledge import ClickHouseKnowledgeStore
from storebridge.errors import (
    ConfigurationError,
    ConnectionFailedError,
    OperationFailedError,
    SchemaVersionError,
    StoreClosedError,
    ValidationError,
)
from storebridge.filters import ALL_OPS, Comparison, Op, evaluate, parse_filter
from storebridge.models import Distance, KnowledgeDocument

CHDB_DIR = os.path.join(tempfile.gettempdir(), f"storebridge-chdb-{os.getpid()}")
atexit.register(shutil.rmtree, CHDB_DIR, True)  # the per-process chDB directory goes with the process
HOSTILE = ["it's", "'); DROP TABLE x; --", "\\", "\\'", "a\nb\tc\r", "\x00nul\x7f", "{id:String}", "é⟨⟩`\"",
           "\\x00", "' || '", "\\N", "{p0:String}", "$$", "a,b]"]


def doc(i: int, metadata: dict[str, Any] | None = None, doc_id: str | None = None) -> KnowledgeDocument:
    return KnowledgeDocument(id=doc_id or f"d{i:03d}", content=f"c{i}", metadata=metadata or {"i": i},
                             embedding=[1.0 + i, 0.5 * i, -1.0 * (i % 3), 2.0])


def new_database() -> str:
    return "u_" + uuid.uuid4().hex[:12]


@pytest.fixture
def store() -> Iterator[ClickHouseKnowledgeStore]:
    s = ClickHouseKnowledgeStore(f"chdb:///{CHDB_DIR}", database=new_database())
    yield s
    s.close()


def compiled(spec: Any) -> tuple[str | None, dict[str, Any]]:
    p = Params()
    return compile_filter(parse_filter(spec), p), p.values


# -- the translation layer -------------------------------------------------------------------------------


def test_quote_and_parameter_text() -> None:
    assert quote("it's") == "'it\\'s'"
    assert quote("a\\b") == "'a\\\\b'"
    assert quote("\x00\n\x7f") == "'\\x00\\x0a\\x7f'"
    assert quote("é🚀{p:String}") == "'é🚀{p:String}'"
    assert param_text("a'b\\", "String") == "a\\'b\\\\"
    assert param_text(["x", "'"], "Array(String)") == "['x','\\'']"
    assert param_text([1.0, -0.5, 1e-300], "Array(Float64)") == "[1.0,-0.5,1e-300]"
    assert param_text(math.inf, "Float64") == "inf" and param_text(-math.inf, "Float64") == "-inf"
    assert param_text(-(2**127), "Int128") == str(-(2**127))
    for value, ch_type in ((math.nan, "Float64"), (True, "Int128"), ("1", "UInt32"), (1, "Date")):
        with pytest.raises((TypeError, ValueError)):
            param_text(value, ch_type)


def test_params_share_equal_values_of_one_type() -> None:
    p = Params()
    assert p("a", "String") == "{p0:String}" and p("a", "String") == "{p0:String}"
    assert p(1, "Int128") == "{p1:Int128}" and p(1.0, "Float64") == "{p2:Float64}"
    assert p(["a"], "Array(String)") == "{p3:Array(String)}" and p(["a"], "Array(String)") == "{p3:Array(String)}"
    assert p.values == {"p0": "a", "p1": 1, "p2": 1.0, "p3": ["a"]}
    assert p.texts() == {"p0": "a", "p1": "1", "p2": "1.0", "p3": "['a']"}


A = "metadata, {p0:String}"


def test_every_operator_compiles_to_exact_sql() -> None:
    assert compiled({"a": "x"}) == (
        f"(JSONType({A}) = 'String' AND JSONExtractString({A}) = {{p1:String}})", {"p0": "a", "p1": "x"})
    assert compiled({"a": True}) == (f"(JSONType({A}) = 'Bool' AND JSONExtractBool({A}) = 1)", {"p0": "a"})
    number = (f"((JSONType({A}) IN ('Int64', 'UInt64') AND JSONExtract({A}, 'Int128') OP {{p1:Int128}}) OR "
              f"(JSONType({A}) = 'Double' AND JSONExtractFloat({A}) OP {{p2:Float64}}))")
    assert compiled({"a": 2}) == (number.replace("OP", "="), {"p0": "a", "p1": 2, "p2": 2.0})
    assert compiled({"a": {"$lte": -7}}) == (number.replace("OP", "<="), {"p0": "a", "p1": -7, "p2": -7.0})
    floats = (f"((JSONType({A}) IN ('Int64', 'UInt64') AND JSONExtract({A}, 'Int128') > {{p1:Float64}}) OR "
              f"(JSONType({A}) = 'Double' AND JSONExtractFloat({A}) > {{p1:Float64}}))")
    assert compiled({"a": {"$gt": 1.5}}) == (floats, {"p0": "a", "p1": 1.5})
    assert compiled({"a": {"$ne": "x"}})[0] == f"NOT ((JSONType({A}) = 'String' AND JSONExtractString({A}) = {{p1:String}}))"
    assert compiled({"a": {"$exists": True}})[0] == f"JSONType({A}) != 'Null'"
    assert compiled({"a": {"$exists": False}})[0] == f"JSONType({A}) = 'Null'"
    assert compiled({"a": {"$in": ["x", "y", True]}}) == (
        (f"((JSONType({A}) = 'String' AND has({{p1:Array(String)}}, JSONExtractString({A}))) OR "
        f"(JSONType({A}) = 'Bool' AND JSONExtractBool({A}) = 1))"), {"p0": "a", "p1": ["x", "y"]})
    assert compiled({"a": {"$nin": ["x"]}})[0] == \
        f"NOT ((JSONType({A}) = 'String' AND JSONExtractString({A}) = {{p1:String}}))"
    assert compiled({"a": {"$contains": "x"}}) == (
        (f"(JSONType({A}) = 'Array' AND arrayExists(sb_i -> (JSONType({A}, sb_i) = 'String' AND "
        f"JSONExtractString({A}, sb_i) = {{p1:String}}), range(1, toUInt64(JSONLength({A})) + 1)))"),
        {"p0": "a", "p1": "x"})
    assert compiled({"a.b": "v"}) == (
        (f"if(JSONHas({A}), (JSONType({A}) = 'String' AND JSONExtractString({A}) = {{p1:String}}), "
        "(JSONType(metadata, {p2:String}, {p3:String}) = 'String' AND "
        "JSONExtractString(metadata, {p2:String}, {p3:String}) = {p1:String}))"),
        {"p0": "a.b", "p1": "v", "p2": "a", "p3": "b"})


def test_logic_constants_and_wide_numbers() -> None:
    assert compiled({"a": {"$in": []}})[0] == "false"
    assert compiled({"a": {"$nin": []}})[0] == "true"
    assert compiled({"$or": [{"a": {"$in": []}}, {"b": {"$exists": True}}]})[0] == "JSONType(metadata, {p1:String}) != 'Null'"
    assert compiled({"$not": {"a": {"$in": []}}})[0] == "true"
    assert compiled({"a": "x", "b": "y"})[0].startswith("(((JSONType(metadata, {p0:String}) = 'String'")  # type: ignore[union-attr]
    # 2**53 + 1 is no double: only stored ints can equal it
    assert compiled({"a": 2**53 + 1}) == (
        f"(JSONType({A}) IN ('Int64', 'UInt64') AND JSONExtract({A}, 'Int128') = {{p1:Int128}})",
        {"p0": "a", "p1": 2**53 + 1})
    # beyond Int128 no stored int compares: the sign decides, doubles get an exact bound
    assert compiled({"a": {"$gt": 2**200}}) == (
        f"(JSONType({A}) = 'Double' AND JSONExtractFloat({A}) > {{p1:Float64}})", {"p0": "a", "p1": float(2**200)})
    assert compiled({"a": {"$lt": 2**200 + 1}}) == (
        (f"(JSONType({A}) IN ('Int64', 'UInt64') OR (JSONType({A}) = 'Double' AND JSONExtractFloat({A}) <= "
        "{p1:Float64}))"), {"p0": "a", "p1": float(2**200)})
    assert compiled({"a": -(10**400)})[0] == "false"


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_are_parameters(value: str) -> None:
    sql, values = compiled({"k": value})  # the same SQL whatever the value: it travels only as a parameter
    assert sql == f"(JSONType({A}) = 'String' AND JSONExtractString({A}) = {{p1:String}})"
    assert values == {"p0": "k", "p1": value}


def test_capabilities_are_honest() -> None:
    caps = ClickHouseKnowledgeStore.capabilities
    assert caps.filter_operators == ALL_OPS and caps.nested_keys and not caps.client_side_filters
    values = {Op.IN: ("x",), Op.NIN: ("x",), Op.EXISTS: True, Op.GT: 1, Op.GTE: 1, Op.LT: 1, Op.LTE: 1}
    for op in ALL_OPS - {Op.AND, Op.OR, Op.NOT}:
        assert compile_filter(Comparison("a.b", op, values.get(op, "x")), Params())


def _apply(result: tuple[str, float] | bool, d: float) -> bool:
    if isinstance(result, bool):
        return result
    sql_op, bound = result
    return {"=": d == bound, ">": d > bound, ">=": d >= bound, "<": d < bound, "<=": d <= bound}[sql_op]


_PY = {Op.EQ: lambda a, b: a == b, Op.GT: lambda a, b: a > b, Op.GTE: lambda a, b: a >= b,
       Op.LT: lambda a, b: a < b, Op.LTE: lambda a, b: a <= b}
WIDE = [2**53 + 1, 2**53, -(2**53) - 1, 2**64, 2**64 + 1, 2**1023, 2**1024 + 3, 10**400, -(10**400), 0, 7]


@pytest.mark.parametrize("value", WIDE)
def test_double_bound_is_exact(value: int) -> None:
    doubles = [0.0, -0.0, 1.5, float(2**53), float(2**53 + 2), float(2**64), 1.7976931348623157e308,
               -1.7976931348623157e308, math.nextafter(float(2**64), 0), 7.0]
    for op, python in _PY.items():
        for d in doubles:
            assert _apply(double_bound(op, value), d) == python(d, value), (op, d, value)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-(2**1100), max_value=2**1100), st.floats(allow_nan=False, allow_infinity=False))
def test_double_bound_like_python(value: int, d: float) -> None:
    for op, python in _PY.items():
        assert _apply(double_bound(op, value), d) == python(d, value)


def test_find_wide_int() -> None:
    assert find_wide_int({"a": [1, {"b": 2**64 - 1}], "c": -(2**63), "t": True}) is None
    assert find_wide_int({"a": [1, {"b": 2**64}]}) == 2**64
    assert find_wide_int([-(2**63) - 1]) == -(2**63) - 1


def test_statements() -> None:
    sql = Statements("db", "sb_")
    text, p = sql.describe("c")
    assert text == ("SELECT dimension, distance, format FROM `db`.`sb_knowledge_collections` WHERE name = {p0:String} "
                    "LIMIT 1") and p.values == {"p0": "c"}
    text, p = sql.nearest("c", "l2", [1.0, 2.0], 5, parse_filter({"a": {"$exists": True}}))
    assert text == ("SELECT id, content, source_id, metadata, embedding, L2Distance(CAST(embedding AS Array(Float64)), "
                    "{p0:Array(Float64)}) AS sb_d FROM `db`.`sb_knowledge_documents` WHERE collection = {p1:String} "
                    "AND (JSONType(metadata, {p2:String}) != 'Null') ORDER BY sb_d ASC, id ASC LIMIT 5")
    assert p.values == {"p0": [1.0, 2.0], "p1": "c", "p2": "a"}
    assert "-dotProduct(" in sql.nearest("c", "dot", [1.0], 1, None)[0]
    assert "cosineDistance(" in sql.nearest("c", "cosine", [1.0], 1, None)[0]
    text, p = sql.page("c", 3, "after'", None, False)
    assert text == ("SELECT id, content, source_id, metadata FROM `db`.`sb_knowledge_documents` WHERE collection = "
                    "{p0:String} AND id > {p1:String} ORDER BY id LIMIT 3") and p.values == {"p0": "c", "p1": "after'"}
    assert sql.insert_from_python("v").endswith("FROM Python(v)")


# -- the store on chDB -----------------------------------------------------------------------------------


def test_parameter_text_round_trips_through_chdb(store: ClickHouseKnowledgeStore) -> None:
    p = Params()
    names = [p(h, "String") for h in HOSTILE]
    array = p(HOSTILE, "Array(String)")
    row = store._engine.rows(f"SELECT [{', '.join(names)}] AS each, {array} AS whole", p)[0]
    assert row["each"] == HOSTILE and row["whole"] == HOSTILE


def test_hostile_values_round_trip(store: ClickHouseKnowledgeStore) -> None:
    store.create_collection("c", 4)
    docs = [KnowledgeDocument(id=h, content=h, source_id=h, metadata={"h": h, "k": [h, None], "n": None},
                              embedding=[1.0, 2.0, 3.0, float(i + 1)]) for i, h in enumerate(HOSTILE)]
    store.insert("c", docs)
    got = store.get("c", [d.id for d in docs])
    assert [(g.id, g.content, g.source_id, g.metadata) for g in got] == \
        [(d.id, d.content, d.source_id, d.metadata) for d in docs]
    for h in HOSTILE:
        assert store.count("c", filter={"h": h}) == 1
        assert store.count("c", filter={"k": {"$contains": h}}) == 1
    page = store.scroll("c", limit=3, cursor="' OR 1 --")
    assert [d.id for d in page.documents] == sorted(h for h in HOSTILE if h > "' OR 1 --")[:3]
    assert store.delete("c", [HOSTILE[1], HOSTILE[0]]) == 2
    assert store.delete("c", filter={"h": {"$in": HOSTILE[2:4]}}) == 2
    assert store.count("c") == len(HOSTILE) - 4
    assert store.list_collections() == ["c"]


EDGE: list[dict[str, Any]] = [
    {"v": 1}, {"v": 1.0}, {"v": True}, {"v": "1"}, {"v": 2**53 + 1}, {"v": float(2**53)}, {"v": 2**63 - 1},
    {"v": -(2**63)}, {"v": 2**64 - 1}, {"v": float(2**64)}, {"v": 1e300}, {"v": -1e-300}, {"v": 5e-324},
    {"v": [1, 2.0, True, "x", float(2**64), 2**64 - 1]}, {"v": {"w": 1}}, {"v.w": 2, "v": {"w": 3}}, {"v": None},
    {}, {"v": []}, {"v": [[1]]}, {"v": ["1"]},
]
EDGE_FILTERS = [
    {"v": 1}, {"v": True}, {"v": "1"}, {"v": 2**53}, {"v": 2**53 + 1}, {"v": {"$gt": 2**53}}, {"v": 2**64 - 1},
    {"v": 2**64}, {"v": {"$gte": 2**63}}, {"v": {"$lt": -(2**62)}}, {"v": {"$gt": 2**200}}, {"v": {"$lt": 2**200}},
    {"v": {"$gt": -(2**1000)}}, {"v": {"$lt": math.inf}}, {"v": {"$gt": 0, "$lt": 1e-299}},
    {"v": {"$in": [1, "x", 2**64]}}, {"v": {"$nin": [1, "1"]}}, {"v": {"$contains": 1}}, {"v": {"$contains": 2**64}},
    {"v": {"$contains": True}}, {"v": {"$contains": "x"}}, {"v": {"$contains": 2**64 - 1}}, {"v": {"$exists": True}},
    {"v.w": 1}, {"v.w": {"$gt": 1}}, {"v.w": {"$exists": False}}, {"$not": {"v": {"$gte": 1}}}, {"v": {"$ne": 1.0}},
    {"v": float(2**53)}, {"v": {"$gt": float(2**53)}}, {"v": {"$lte": float(2**63)}}, {"v": {"$lt": float(2**64)}},
    {"v": {"$contains": float(2**64)}}, {"v": {"$in": [float(2**53), 2**63 - 1]}},
]


def test_native_filters_match_reference_at_the_edges(store: ClickHouseKnowledgeStore) -> None:
    store.create_collection("e", 4, Distance.L2)
    docs = [doc(i, m, doc_id=f"e{i:02d}") for i, m in enumerate(EDGE)]
    store.upsert("e", docs)
    for spec in EDGE_FILTERS:
        want = sorted(d.id for d in docs if evaluate(spec, d.metadata))
        assert store.count("e", filter=spec) == len(want), spec
        assert sorted(h.id for h in store.search("e", [1.0, 0.0, 0.0, 2.0], k=50, filter=spec)) == want, spec
        assert [d.id for d in store.scroll("e", limit=50, filter=spec).documents] == want, spec


def test_filters_page_delete_and_count(store: ClickHouseKnowledgeStore) -> None:
    store.create_collection("c", 4, Distance.L2)
    docs = [doc(i, {"i": i, "even": i % 2 == 0, "tag": ["a"] if i % 3 == 0 else [], "x": None if i % 4 else 1.0})
            for i in range(20)]
    store.upsert("c", docs)
    for spec in [{"even": True}, {"i": {"$gte": 5}}, {"x": {"$ne": 1}}, {"tag": {"$contains": "a"}},
                 {"$or": [{"i": {"$lt": 2}}, {"x": {"$exists": True}}]}, {"x": 1}]:
        want = [d.id for d in docs if evaluate(spec, d.metadata)]
        got, cursor = [], None
        while True:
            page = store.scroll("c", limit=2, cursor=cursor, filter=spec, include_embeddings=False)
            got += [d.id for d in page.documents]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert got == sorted(want), spec
    assert store.delete("c", filter={"even": True}) == 10
    assert store.delete("c", ["d001", "d002", "d003"], filter={"i": {"$gt": 1}}) == 1
    assert store.count("c") == 9


def test_wide_integers_are_refused_before_any_write(store: ClickHouseKnowledgeStore) -> None:
    store.create_collection("w", 4)
    docs = [doc(i) for i in range(1500)] + [doc(9999, {"n": [1, {"deep": 2**64}]})]
    with pytest.raises(ValidationError, match="beyond 64 bits"):
        store.insert("w", docs)
    assert store.count("w") == 0
    store.upsert("w", [doc(1, {"n": 2**64 - 1, "m": -(2**63), "f": float(2**70)})])
    assert store.get("w", ["d001"])[0].metadata == {"n": 2**64 - 1, "m": -(2**63), "f": float(2**70)}


def test_upsert_replaces_and_last_wins(store: ClickHouseKnowledgeStore) -> None:
    store.create_collection("c", 4)
    store.upsert("c", [doc(1), doc(2)])
    store.upsert("c", [doc(1, {"v": 1}), doc(1, {"v": 2})])
    assert store.count("c") == 2
    assert store.get("c", ["d001"])[0].metadata == {"v": 2}


def test_search_scores(store: ClickHouseKnowledgeStore) -> None:
    for metric in Distance:
        name = f"s_{metric.value}"
        store.create_collection(name, 4, metric)
        store.insert(name, [doc(i) for i in range(1, 30)])
        hits = store.search(name, [2.0, 0.5, -1.0, 2.0], k=5)
        if metric is not Distance.DOT:
            assert hits[0].id == "d001"
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        for h in hits:
            assert h.score == pytest.approx(metric.score(h.distance))


def test_generator_insert_streams(store: ClickHouseKnowledgeStore) -> None:
    store.create_collection("g", 4)
    seen: list[int] = []

    def docs() -> Iterator[KnowledgeDocument]:
        for i in range(2_500):
            if i == 1_500:
                seen.append(store.count("g"))
            yield doc(i, doc_id=f"g{i:05d}")

    assert len(store.insert("g", docs())) == 2_500
    assert seen == [1_000] and store.count("g") == 2_500


def test_a_newer_collection_format_is_refused(store: ClickHouseKnowledgeStore) -> None:
    store.create_collection("c", 4)
    store._engine.execute(f"ALTER TABLE {store._sql.collections} UPDATE format = 2 WHERE name = 'c' "
                          "SETTINGS mutations_sync = 1", Params())
    with pytest.raises(SchemaVersionError, match="newer"):
        store.count("c")


def test_tables_of_the_earlier_layout_are_read_and_filtered() -> None:
    """Tables as the previous storebridge made them (no format column) keep working, filters included."""
    database = new_database()
    first = ClickHouseKnowledgeStore(f"chdb:///{CHDB_DIR}", database="u_" + uuid.uuid4().hex[:12])
    try:
        old = Statements(database, "sb_")
        run = first._engine.execute
        run(f"CREATE DATABASE `{database}`", Params())
        run(f"CREATE TABLE {old.collections} (name String, dimension UInt32, distance String) ENGINE = MergeTree "
            "ORDER BY name", Params())
        run(f"CREATE TABLE {old.documents} (collection String, id String, content String, source_id Nullable(String), "
            "metadata String, embedding Array(Float32)) ENGINE = MergeTree ORDER BY (collection, id)", Params())
        run(f"INSERT INTO {old.collections} VALUES ('legacy', 2, 'l2')", Params())
        rows = [{"collection": "legacy", "id": f"o{i}", "content": "c", "source_id": None,
                 "metadata": json.dumps({"i": i, "tags": ["x"] if i % 2 else []}), "embedding": [float(i), 1.0]}
                for i in range(6)]
        first._engine.session.query(f"INSERT INTO {old.documents} FORMAT JSONEachRow\n"  # type: ignore[union-attr]
                                    + "\n".join(json.dumps(r) for r in rows))
        store = ClickHouseKnowledgeStore(f"chdb:///{CHDB_DIR}", database=database)
        assert store.get_collection("legacy").dimension == 2
        assert store.count("legacy", filter={"tags": {"$contains": "x"}}) == 3
        assert [h.id for h in store.search("legacy", [4.0, 1.0], k=2, filter={"i": {"$lt": 4}})] == ["o3", "o2"]
        store.upsert("legacy", [KnowledgeDocument(id="o9", embedding=[9.0, 1.0], metadata={"i": 9})])
        assert store.count("legacy", filter={"i": {"$gte": 5}}) == 2
        store.close()
    finally:
        first.close()


def test_other_directory_refused_and_closed(store: ClickHouseKnowledgeStore, tmp_path: Any) -> None:
    with pytest.raises(ConfigurationError):
        ClickHouseKnowledgeStore(f"chdb:///{tmp_path}/other")
    store.close()
    store.close()
    with pytest.raises(StoreClosedError):
        store.count("c")


def test_engine_errors_are_typed(store: ClickHouseKnowledgeStore) -> None:
    store.create_collection("c", 4)
    store._engine.execute(f"DROP TABLE {store._sql.documents}", Params())
    with pytest.raises(OperationFailedError, match="clickhouse count failed"):
        store.count("c")


# -- URLs and the server path (a fake client: it captures calls, it is not ClickHouse) ------------------------


class FakeClient:
    """Answers like clickhouse-connect's Client for the calls the store makes; records every call."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[Any] = []
        self.collections: dict[str, tuple[int, str]] = {}
        self.closed = False
        self.fail = fail

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        self.calls.append(("command", sql, parameters))
        if sql.startswith("INSERT INTO `kb`.`sb_knowledge_collections`") and parameters:
            self.collections[parameters["p0"]] = (parameters["p1"], parameters["p2"])

    def raw_query(self, sql: str, parameters: dict[str, Any] | None = None, fmt: str | None = None) -> bytes:
        self.calls.append(("raw_query", sql, parameters, fmt))
        if self.fail is not None:
            raise self.fail
        if sql.startswith("SELECT dimension") and parameters and parameters["p0"] in self.collections:
            dimension, distance = self.collections[parameters["p0"]]
            return json.dumps({"dimension": dimension, "distance": distance, "format": 1}).encode() + b"\n"
        if sql.startswith("SELECT count()"):
            return b'{"n":"0"}\n'  # servers quote 64-bit integers in JSON by default
        return b""

    def insert_arrow(self, table: str, arrow_table: Any, database: str | None = None) -> None:
        self.calls.append(("insert_arrow", table, arrow_table, database))

    def close(self) -> None:
        self.closed = True


def test_server_calls_bind_every_value(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeClient()
    store = ClickHouseKnowledgeStore(client=fake, database="kb")
    assert [c[0] for c in fake.calls] == ["command"] * 4 and fake.calls[0][1] == "CREATE DATABASE IF NOT EXISTS `kb`"
    store.create_collection("c", 2, "l2")
    assert fake.calls[-1] == ("command", ("INSERT INTO `kb`.`sb_knowledge_collections` (name, dimension, distance, format) "
                              "VALUES ({p0:String}, {p1:UInt32}, {p2:String}, {p3:UInt16})"),
                              {"p0": "c", "p1": 2, "p2": "l2", "p3": 1})
    store.upsert("c", [KnowledgeDocument(id="it's", embedding=[1.0, 2.0], metadata={"a": "x'y"})])
    kind, table, arrow, database = fake.calls[-1]
    assert (kind, table, database) == ("insert_arrow", "sb_knowledge_documents", "kb")
    assert arrow.column_names == ["collection", "id", "content", "source_id", "metadata", "embedding"]
    assert arrow.to_pylist() == [{"collection": "c", "id": "it's", "content": "", "source_id": None,
                                  "metadata": '{"a":"x\'y"}', "embedding": [1.0, 2.0]}]
    assert store.count("c", filter={"a": "x'y"}) == 0
    kind, sql, parameters, fmt = fake.calls[-1]
    assert fmt == "JSONEachRow" and "x'y" not in sql and parameters == {"p0": "c", "p1": "a", "p2": "x'y"}
    store.search("c", [1.0, 0.0], k=3, filter={"n": {"$gt": 1}})
    kind, sql, parameters, fmt = fake.calls[-1]
    assert parameters["p0"] == [1.0, 0.0] and "LIMIT 19" in sql
    store.close()
    assert not fake.closed, "a client passed in belongs to the caller"


def test_server_statements_bind_server_side() -> None:
    """clickhouse-connect's own binder sends every placeholder as a server-side parameter, query untouched."""
    binding = pytest.importorskip("clickhouse_connect.driver.binding",
                                  reason="clickhouse-connect (the clickhouse extra) is not installed")
    p = Params()
    sql = f"SELECT 1 WHERE {compile_filter(parse_filter({'a': {'$in': ['x', 'y']}, 'b.c': 2}), p)}"
    bound_sql, bound = binding.bind_query(sql, p.values)
    assert bound_sql == sql and set(bound) == {f"param_{name}" for name in p.values}


def _exception(name: str, text: str) -> Exception:
    cls = type(name, (Exception,), {"__module__": "clickhouse_connect.driver.exceptions"})
    return cls(text)  # type: ignore[no-any-return]


def test_server_errors_are_typed_and_secret_free() -> None:
    for exc, kind, words in [
        (_exception("OperationalError", "Error HTTPConnectionPool: refused for u:hunter2@h"), ConnectionFailedError,
         "cannot reach"),
        (_exception("DatabaseError", "Code: 516. DB::Exception: u: Authentication failed (hunter2)"),
         ConnectionFailedError, "refused the login"),
        (_exception("DatabaseError", "Code: 60. DB::Exception: Unknown table hunter2"), OperationFailedError, "failed"),
    ]:
        fake = FakeClient()
        store = ClickHouseKnowledgeStore(client=fake, database="kb", password="hunter2")
        store.create_collection("c", 2)
        fake.fail = exc
        with pytest.raises(kind, match=words) as caught:
            store.count("c")
        assert "hunter2" not in str(caught.value)


def test_urls_and_options(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[dict[str, Any]] = []

    def connect(**options: Any) -> FakeClient:
        opened.append(options)
        return FakeClient()

    monkeypatch.setattr(ck, "_connect", connect)
    store = ClickHouseKnowledgeStore("clickhouse://ann:s%40cret@db.example:9000/kb")
    assert opened[-1] == {"host": "db.example", "port": 9000, "username": "ann", "password": "s@cret", "secure": False}
    assert store.database == "kb" and "s@cret" not in repr(store) and "ann" not in repr(store)
    store.close()
    assert store._engine.client.closed  # type: ignore[union-attr]
    ClickHouseKnowledgeStore("clickhouse+https://db.example?database=other").close()
    assert opened[-1]["port"] == 8443 and opened[-1]["secure"] is True and opened[-1]["username"] == "default"
    for bad in ("clickhouse://h?foo=1", "clickhouse://", "chdb:///", "postgresql://h/db", "clickhouse://h/bad-name",
                "clickhouse+native://h"):
        with pytest.raises(ConfigurationError):
            ClickHouseKnowledgeStore(bad)
    with pytest.raises(ConfigurationError):
        ClickHouseKnowledgeStore("clickhouse://h", path="/tmp/x")
    with pytest.raises(ConfigurationError):
        ClickHouseKnowledgeStore()

    def refuse(**options: Any) -> FakeClient:
        raise RuntimeError(f"auth failed for {options['username']}:{options['password']}")

    monkeypatch.setattr(ck, "_connect", refuse)
    with pytest.raises(ConnectionFailedError) as caught:
        ClickHouseKnowledgeStore("clickhouse://ann:hunter2@db.example")
    assert "hunter2" not in str(caught.value) and "db.example" in str(caught.value)
