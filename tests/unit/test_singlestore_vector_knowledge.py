"""The ``singlestore_vector`` store without a SingleStore server (none can run on the project's machines).

The statements that do not touch vectors run on MariaDB in ``tests/integration/test_singlestore_vector_mariadb.py``
(the whole conformance suite and random filters against the reference evaluator). Here: the SingleStore-only
text is pinned exactly (``VECTOR(n, F32)``, ``:> BLOB``, shard/sort keys, the reference table, the vector
index, ``ORDER BY d.doc_vector <*> ...``), the filter SQL and its bound parameters, the vector encoding, URL
parsing and masking, and how the store drives the engine (search, the widening of a short index answer),
through a fake DB-API connection that records statements. The fake is NOT the engine.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from storebridge.adapters.singlestore_vector import SingleStoreVectorKnowledgeStore
from storebridge.adapters.singlestore_vector._sql import (
    KIND_BOOL,
    KIND_LIST_NUM,
    KIND_LIST_STR,
    KIND_NUM,
    KIND_PRESENT,
    KIND_STR,
    VectorIndex,
    VectorSQL,
    doc_key,
    metadata_rows,
    sql_string,
    table_hash,
    text_hash,
    vector_bytes,
    vector_json,
)
from storebridge.adapters.singlestore_vector.knowledge import parse_singlestore_url
from storebridge.errors import ConfigurationError, UnsupportedFilterError, ValidationError
from storebridge.filters import ALL_OPS, Comparison, Op, parse_filter
from storebridge.models import CollectionInfo, Distance, KnowledgeDocument

S2 = VectorSQL("sb_", singlestore=True)
INFO = CollectionInfo("docs", 4, Distance.COSINE)
DOCS = f"`sb_ssv_{table_hash('docs')}`"
FIELDS = f"`sb_ssv_{table_hash('docs')}_f`"


def compiled(spec: Any) -> tuple[str, list[Any]]:
    tree = parse_filter(spec)
    assert tree is not None
    params: list[Any] = []
    return S2.compile(INFO, tree, params), params


# -- SingleStore-only text ------------------------------------------------------------------------------------------

def test_table_names_are_short_hashes() -> None:
    assert S2.docs("docs") == DOCS and S2.fields("docs") == FIELDS
    assert S2.docs("Docs") != DOCS, "collection names are case-sensitive"
    assert re.fullmatch(r"`sb_ssv_[0-9a-f]{16}`", S2.docs("x" * 63))


def test_singlestore_ddl_is_pinned() -> None:
    (migration,) = S2.migrations()
    (step,) = migration.steps
    assert step.sql == ("CREATE REFERENCE TABLE IF NOT EXISTS `sb_ssv_collections` (coll_name VARCHAR(63) NOT NULL, "
                        "coll_dimension INT NOT NULL, coll_distance VARCHAR(8) NOT NULL, created_at DOUBLE NOT NULL, "
                        "PRIMARY KEY (coll_name)) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")
    assert S2.create_docs(INFO) == (
        f"CREATE TABLE IF NOT EXISTS {DOCS} (doc_key BINARY(32) NOT NULL, doc_id LONGTEXT NOT NULL, "
        "doc_content LONGTEXT NOT NULL, source_id LONGTEXT NULL, doc_metadata LONGTEXT NOT NULL, "
        "doc_vector VECTOR(4, F32) NOT NULL, doc_original LONGBLOB NULL, PRIMARY KEY (doc_key), SHARD KEY (doc_key)) "
        "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")
    assert S2.create_fields(INFO) == (
        f"CREATE TABLE IF NOT EXISTS {FIELDS} (doc_key BINARY(32) NOT NULL, mkey VARBINARY(1020) NOT NULL, "
        "mkind TINYINT NOT NULL, mnum DOUBLE NULL, mhash BINARY(32) NULL, mtext LONGBLOB NULL, "
        "SHARD KEY (doc_key), SORT KEY (mkey, mkind), KEY (doc_key) USING HASH) "
        "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")
    assert S2.drop_tables("docs") == (f"DROP TABLE IF EXISTS {DOCS}", f"DROP TABLE IF EXISTS {FIELDS}")


def test_the_vector_index_is_declared_with_the_metric_of_the_distance() -> None:
    index = VectorIndex.parse("hnsw_flat", {"m": 16, "ef": 40})
    sql = VectorSQL("sb_", singlestore=True, vector_index=index)
    assert sql.create_docs(INFO).endswith(
        ", PRIMARY KEY (doc_key), SHARD KEY (doc_key) , VECTOR INDEX vidx (doc_vector) INDEX_OPTIONS "
        "'{\"index_type\":\"HNSW_FLAT\",\"metric_type\":\"DOT_PRODUCT\",\"ef\":40,\"m\":16}') "
        "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")
    l2 = CollectionInfo("docs", 4, Distance.L2)
    assert '"metric_type":"EUCLIDEAN_DISTANCE"' in sql.create_docs(l2)
    assert VectorIndex.parse(None) is None
    for bad_type, options in (("BTREE", None), (None, {"m": 1}), ("FLAT", {"metric_type": "x"}),
                              ("FLAT", {"m": "1; DROP"}), ("FLAT", {"m": float("nan")}), ("FLAT", {"Bad Key": 1}),
                              ("FLAT", {"m": True})):
        with pytest.raises(ConfigurationError):
            VectorIndex.parse(bad_type, options)
    with pytest.raises(ConfigurationError):
        VectorSQL("sb_", singlestore=False, vector_index=index)


def test_sql_string_escapes_quotes_and_backslashes() -> None:
    assert sql_string("a'b\\c") == "'a''b\\\\c'"
    with pytest.raises(ValueError):
        sql_string("nul\x00")


def test_reads_cast_the_vector_to_blob_and_cosine_reads_the_original() -> None:
    assert S2.get(INFO, 2, True) == (f"SELECT d.doc_id, d.doc_content, d.source_id, d.doc_metadata, d.doc_original "
                                     f"FROM {DOCS} d WHERE d.doc_key IN (%s, %s)")
    dot = CollectionInfo("docs", 4, Distance.DOT)
    assert S2.get(dot, 1, True) == (f"SELECT d.doc_id, d.doc_content, d.source_id, d.doc_metadata, "
                                    f"d.doc_vector :> BLOB FROM {DOCS} d WHERE d.doc_key IN (%s)")
    assert S2.get(dot, 1, False) == f"SELECT d.doc_id, d.doc_content, d.source_id, d.doc_metadata FROM {DOCS} d " \
                                    "WHERE d.doc_key IN (%s)"


@pytest.mark.parametrize(("distance", "order", "column"), [
    (Distance.COSINE, "<*> (%s :> VECTOR(4, F32)) DESC", "d.doc_original"),
    (Distance.DOT, "<*> (%s :> VECTOR(4, F32)) DESC", "d.doc_vector :> BLOB"),
    (Distance.L2, "<-> (%s :> VECTOR(4, F32)) ASC", "d.doc_vector :> BLOB"),
])
def test_nearest_sql_is_pinned(distance: Distance, order: str, column: str) -> None:
    info = CollectionInfo("docs", 4, distance)
    query = np.array([0.5, -1e-30, 3e38, 0.1], dtype=np.float32)
    sql, params = S2.nearest(info, query, None, 17)
    assert sql == (f"SELECT d.doc_id, d.doc_content, d.source_id, d.doc_metadata, {column} FROM {DOCS} d "
                   f"ORDER BY d.doc_vector {order} LIMIT %s")
    assert params == [vector_json(query), 17]
    sql, params = S2.nearest(info, query, parse_filter({"k": "v"}), 5)
    assert f"FROM {DOCS} d WHERE d.doc_key IN (SELECT f.doc_key FROM {FIELDS} f WHERE f.mkey = %s AND " in sql
    assert params[0] == b"k" and params[-2:] == [vector_json(query), 5]
    with pytest.raises(ConfigurationError):
        VectorSQL("sb_", singlestore=False).nearest(info, query, None, 5)


def test_upsert_is_one_batched_insert() -> None:
    sql = S2.upsert_docs("docs")
    assert sql == (f"INSERT INTO {DOCS} (doc_key, doc_id, doc_content, source_id, doc_metadata, doc_vector, "
                   "doc_original) VALUES (%s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE doc_id = VALUES(doc_id), "
                   "doc_content = VALUES(doc_content), source_id = VALUES(source_id), "
                   "doc_metadata = VALUES(doc_metadata), doc_vector = VALUES(doc_vector), "
                   "doc_original = VALUES(doc_original)")
    # PyMySQL/singlestoredb send executemany as ONE multi-row INSERT only when VALUES holds bare placeholders
    from singlestoredb.mysql import cursors

    batching = cursors.RE_INSERT_VALUES  # type: ignore[attr-defined]  # untyped module attribute
    assert batching.match(sql) and batching.match(S2.insert_fields("docs"))


def test_vectors_travel_as_exact_json_text() -> None:
    rng = np.random.default_rng(3)
    vectors = [rng.standard_normal(64).astype(np.float32),
               np.array([3.4028235e38, -3.4028235e38, 1e-45, -1e-38, 0.0, -0.0, 1 / 3, 1e-30], dtype=np.float32)]
    for vector in vectors:
        text = vector_json(vector)
        parsed = json.loads(text)
        assert np.array(parsed, dtype=np.float32).tobytes() == vector.tobytes()  # read as doubles, then F32
        assert np.array([np.float32(s) for s in text[1:-1].split(",")]).tobytes() == vector.tobytes()  # as F32
    doc = KnowledgeDocument(id="a", embedding=[3.0, 4.0, 0.0, 0.0], metadata={"x": 1.0})
    params = S2.doc_params(INFO, doc, np.array([3.0, 4.0, 0.0, 0.0], dtype=np.float32))
    assert params[:5] == (doc_key("a"), "a", "", None, '{"x":1.0}')
    assert params[5] == "[0.6000000238418579,0.800000011920929,0.0,0.0]"  # the unit vector, searched
    assert params[6] == vector_bytes(np.array([3.0, 4.0, 0.0, 0.0], dtype=np.float32))  # the original, read
    dot = S2.doc_params(CollectionInfo("docs", 4, Distance.DOT), doc, np.array([3, 4, 0, 0], dtype=np.float32))
    assert dot[5] == "[3.0,4.0,0.0,0.0]" and dot[6] is None


# -- the metadata index and the filter SQL ------------------------------------------------------------------------

def test_metadata_rows_are_typed() -> None:
    key = doc_key("a")
    rows = metadata_rows(key, {"s": "x", "n": 2, "b": False, "l": ["y", 1.5, None, {"o": 1}], "e": [], "o": {},
                               "none": None, "bad.key": 1, "": 1, "big": 10**400})
    h, t = text_hash("x")
    hy, ty = text_hash("y")
    assert rows == [
        (key, b"s", KIND_STR, None, h, t), (key, b"n", KIND_NUM, 2.0, None, None),
        (key, b"b", KIND_BOOL, 0.0, None, None), (key, b"l", KIND_LIST_STR, None, hy, ty),
        (key, b"l", KIND_LIST_NUM, 1.5, None, None), (key, b"e", KIND_PRESENT, None, None, None),
        (key, b"o", KIND_PRESENT, None, None, None), (key, b"big", KIND_PRESENT, None, None, None),
    ]


def test_filter_sql_is_pinned() -> None:
    sub = f"d.doc_key IN (SELECT f.doc_key FROM {FIELDS} f WHERE f.mkey = ?"
    h, t = text_hash("v")
    assert compiled({"k": "v"}) == (f"{sub} AND ((f.mkind = 1 AND ((f.mhash = ? AND f.mtext = ?)))))",
                                    [b"k", h, t])
    assert compiled({"k": 2}) == (f"{sub} AND ((f.mkind = 2 AND f.mnum IN (?))))", [b"k", 2.0])
    assert compiled({"k": True}) == (f"{sub} AND ((f.mkind = 3 AND f.mnum IN (1))))", [b"k"])
    assert compiled({"k": {"$ne": 2}}) == (f"(NOT {sub} AND ((f.mkind = 2 AND f.mnum IN (?)))))", [b"k", 2.0])
    assert compiled({"k": {"$gt": 1}}) == (f"{sub} AND f.mkind = 2 AND f.mnum > ?)", [b"k", 1.0])
    assert compiled({"k": {"$lte": -2.5}}) == (f"{sub} AND f.mkind = 2 AND f.mnum <= ?)", [b"k", -2.5])
    assert compiled({"k": {"$lt": math.inf}}) == (f"{sub} AND f.mkind = 2)", [b"k"])
    assert compiled({"k": {"$gte": math.inf}}) == ("(1 = 0)", [])
    assert compiled({"k": {"$in": []}}) == ("(1 = 0)", [])
    assert compiled({"k": {"$nin": []}}) == ("(NOT (1 = 0))", [])
    assert compiled({"k": {"$in": ["v", 1, False]}}) == (
        (f"{sub} AND ((f.mkind = 1 AND ((f.mhash = ? AND f.mtext = ?))) OR (f.mkind = 2 AND f.mnum IN (?)) OR "
         "(f.mkind = 3 AND f.mnum IN (0))))"), [b"k", h, t, 1.0])
    assert compiled({"k": {"$exists": True}}) == (f"{sub})", [b"k"])
    assert compiled({"k": {"$exists": False}}) == (f"(NOT {sub}))", [b"k"])
    assert compiled({"k": {"$contains": 1}}) == (f"{sub} AND ((f.mkind = 5 AND f.mnum IN (?))))", [b"k", 1.0])
    assert compiled({"$or": [{"a": 1}, {"$not": {"b": 2}}]}) == (
        f"({sub} AND ((f.mkind = 2 AND f.mnum IN (?)))) OR (NOT {sub} AND ((f.mkind = 2 AND f.mnum IN (?))))))",
        [b"a", 1.0, b"b", 2.0])


@pytest.mark.parametrize("value", ["'; DROP TABLE x; --", "?", "%s", "%(x)s", "\\", "`", "x\x00y", "日本 🚀", ""])
def test_hostile_values_and_keys_are_parameters_only(value: str) -> None:
    sql, params = compiled({"with space-ключ": value})
    assert sql == compiled({"with space-ключ": "plain"})[0]
    assert params == [
        "with space-ключ".encode(), *text_hash(value)]
    rendered = S2.render(sql)
    assert rendered.count("%s") == len(params) and "?" not in rendered


def test_every_declared_operator_compiles_and_nested_keys_are_refused() -> None:
    assert SingleStoreVectorKnowledgeStore.capabilities.filter_operators == ALL_OPS
    for op, value in {Op.EQ: "v", Op.NE: 1, Op.GT: 1, Op.GTE: 1, Op.LT: 1, Op.LTE: 1, Op.IN: ("a",), Op.NIN: (1,),
                      Op.EXISTS: True, Op.CONTAINS: "x"}.items():
        S2.compile(INFO, Comparison("k", op, value), [])
    with pytest.raises(UnsupportedFilterError):
        S2.compile(INFO, Comparison("a.b", Op.EQ, 1), [])


def test_statements_bind_in_text_order() -> None:
    tree = parse_filter({"k": {"$gt": 1}})
    sql, params = S2.page(INFO, b"\x01" * 32, tree, 11, True)
    assert sql == (f"SELECT d.doc_key, d.doc_id, d.doc_content, d.source_id, d.doc_metadata, d.doc_original "
                   f"FROM {DOCS} d WHERE d.doc_key > %s AND d.doc_key IN (SELECT f.doc_key FROM {FIELDS} f "
                   "WHERE f.mkey = %s AND f.mkind = 2 AND f.mnum > %s) ORDER BY d.doc_key LIMIT %s")
    assert params == [b"\x01" * 32, b"k", 1.0, 11]
    sql, params = S2.matching_keys(INFO, [b"a" * 32], tree)
    assert sql.startswith(f"SELECT d.doc_key FROM {DOCS} d WHERE d.doc_key IN (%s) AND d.doc_key IN (")
    assert params == [b"a" * 32, b"k", 1.0]


def test_cursors_are_validated() -> None:
    key = doc_key("x")
    assert S2.parse_cursor(S2.cursor(key)) == key
    for bad in ("", "zz", "00" * 31, "0" * 65, "G" * 64, "../" + "0" * 61):
        with pytest.raises(ValidationError):
            S2.parse_cursor(bad)


# -- URLs --------------------------------------------------------------------------------------------------------------

def test_urls() -> None:
    parsed, own = parse_singlestore_url("singlestore://u:p%40ss@h:3307/db?table_prefix=kb_&vector_index=FLAT"
                                        "&ssl_disabled=true")
    assert (parsed.host, parsed.port, parsed.database, parsed.password) == ("h", 3307, "db", "p@ss")
    assert own == {"table_prefix": "kb_", "vector_index": "FLAT"} and parsed.query == {"ssl_disabled": "true"}
    for bad in ("mysql://h/db", "singlestore://h", "singlestore://h/db?nope=1", "singlestore+pymysql://h/db",
                "singlestore://h/db?ssl_disabled=maybe"):
        with pytest.raises(ConfigurationError):
            parse_singlestore_url(bad)


def test_errors_name_no_secret() -> None:
    secret = "S3cret-pw"
    for url in (f"singlestore://u:{secret}@h/db?nope=1", f"singlestore://u:{secret}@h",
                f"singlestore://u:{secret}@h/db?table_prefix=bad-prefix"):
        with pytest.raises(ConfigurationError) as caught:
            SingleStoreVectorKnowledgeStore(url, connect=lambda **kw: None)
        assert secret not in str(caught.value)


# -- the store over a fake DB-API connection (NOT the engine) ------------------------------------------------------

class FakeServer:
    """Answers the store's statements from a handler and records them. ``singlestore`` decides what
    ``SHOW VARIABLES LIKE 'memsql_version'`` says."""

    def __init__(self, handler: Callable[[str, Any], list[tuple[Any, ...]]] | None = None, *,
                 singlestore: bool = True) -> None:
        self.log: list[tuple[str, Any]] = []
        self.kwargs: list[dict[str, Any]] = []
        self.connections: list[FakeConnection] = []
        self.collections: dict[str, tuple[int, str]] = {}
        self.handler = handler
        self.singlestore = singlestore

    def connect(self, **kwargs: Any) -> FakeConnection:
        self.kwargs.append(kwargs)
        self.connections.append(FakeConnection(self))
        return self.connections[-1]

    def answer(self, sql: str, params: Any) -> list[tuple[Any, ...]]:
        self.log.append((sql, params))
        if sql.startswith("SHOW VARIABLES LIKE 'memsql_version'"):
            return [("memsql_version", "8.9.3")] if self.singlestore else []
        if sql.startswith(("SELECT GET_LOCK(", "SELECT RELEASE_LOCK(")):
            return [(1,)]
        if sql.startswith("INSERT INTO `sb_ssv_collections`"):
            self.collections[params[0]] = (params[1], params[2])
            return []
        if sql.startswith("SELECT coll_dimension, coll_distance FROM `sb_ssv_collections`"):
            found = self.collections.get(params[0])
            return [found] if found else []
        if self.handler is not None:
            return self.handler(sql, params)
        return []


class FakeConnection:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.open = True

    def cursor(self) -> FakeCursor:
        return FakeCursor(self.server)

    def close(self) -> None:
        self.open = False


class FakeCursor:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.rows: list[tuple[Any, ...]] = []
        self.rowcount = 0
        self.lastrowid = 0

    def execute(self, sql: str, params: Any = None) -> None:
        self.rows = self.server.answer(sql, params)
        self.rowcount = len(self.rows)

    def executemany(self, sql: str, rows: Any) -> None:
        self.server.answer(sql, list(rows))

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def close(self) -> None:
        pass


URL = "singlestore://admin:Zq9-secret@s2.example:3306/app"


def _row(doc_id: str, vector: list[float], key: bool = False) -> tuple[Any, ...]:
    row = (doc_id, "c", None, "{}", vector_bytes(np.asarray(vector, dtype=np.float32)))
    return (doc_key(doc_id), *row) if key else row


def test_the_store_drives_singlestore_as_documented() -> None:
    server = FakeServer(lambda sql, params: [_row("a", [1, 0, 0, 0]), _row("b", [0, 1, 0, 0])]
                        if "ORDER BY d.doc_vector" in sql else [])
    store = SingleStoreVectorKnowledgeStore(URL, connect=server.connect)
    assert server.kwargs[0]["password"] == "Zq9-secret" and server.kwargs[0]["parse_json"] is False
    assert "Zq9-secret" not in repr(store) and "s2.example:3306/app" in repr(store)
    assert any("CREATE REFERENCE TABLE IF NOT EXISTS `sb_ssv_collections`" in sql for sql, _ in server.log)

    server.log.clear()
    store.create_collection("docs", 4, "dot")
    ddl = [sql for sql, _ in server.log if sql.startswith(("CREATE", "DROP"))]
    assert ddl == [*S2.drop_tables("docs"), S2.create_docs(CollectionInfo("docs", 4, Distance.DOT)),
                   S2.create_fields(CollectionInfo("docs", 4, Distance.DOT))]

    server.log.clear()
    hits = store.search("docs", [1.0, 0.5, 0.0, 0.0], k=1)
    (search,) = [(sql, params) for sql, params in server.log if "ORDER BY" in sql]
    assert "ORDER BY d.doc_vector <*> (%s :> VECTOR(4, F32)) DESC LIMIT %s" in search[0]
    assert search[1] == ("[1.0,0.5,0.0,0.0]", 17)
    assert [h.id for h in hits] == ["a"] and hits[0].score == pytest.approx(1.0)
    store.close()


def test_a_short_index_answer_is_widened_then_scanned_exactly() -> None:
    limits: list[int] = []

    def handler(sql: str, params: Any) -> list[tuple[Any, ...]]:
        if "ORDER BY d.doc_vector" in sql:
            limits.append(params[-1])
            return [_row("a", [1, 0, 0, 0])]  # the index never finds more than one match
        if sql.startswith("SELECT COUNT(*)"):
            return [(200,)]
        if "ORDER BY d.doc_key" in sql:  # the exact scan: one short page
            return [_row(f"d{i}", [1, float(i), 0, 0], key=True) for i in range(3)]
        return []

    server = FakeServer(handler)
    store = SingleStoreVectorKnowledgeStore(URL, connect=server.connect, vector_index="HNSW_FLAT")
    assert store.capabilities.recall_floor == 0.9
    store.create_collection("docs", 4, "l2")
    assert "VECTOR INDEX vidx (doc_vector) INDEX_OPTIONS" in next(s for s, _ in server.log if "VECTOR(4" in s)
    hits = store.search("docs", [1.0, 0.0, 0.0, 0.0], k=2, filter={"k": 1})
    assert limits == [18, 144, 200], "18, widened eightfold, then everything that matches"
    assert [h.id for h in hits] == ["d0", "d1"]
    store.close()


def test_a_server_that_is_not_singlestore_needs_the_flag() -> None:
    server = FakeServer(singlestore=False)
    with pytest.raises(ConfigurationError, match="exact_fallback"):
        SingleStoreVectorKnowledgeStore(URL, connect=server.connect)
    assert server.connections and not any(c.open for c in server.connections), "a refused store leaves no connection"
    store = SingleStoreVectorKnowledgeStore(URL, connect=server.connect, exact_fallback=True)
    assert "MySQL at s2.example:3306/app" in repr(store)
    assert any("CREATE TABLE IF NOT EXISTS `sb_ssv_collections`" in sql and "REFERENCE" not in sql
               for sql, _ in server.log)
    store.close()
