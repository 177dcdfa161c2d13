"""The pgvector store beyond the conformance suite: the filter compiler against the reference evaluator
(hand cases, the shared dataset, a hypothesis property test, hostile values) run in the real engine,
the recall of its HNSW path, exact number handling, URLs, batching, errors and closing.

These run against the embedded PostgreSQL + pgvector of ``tests/servers/pgvector.py``."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storebridge.errors import (
    AlreadyExistsError,
    CollectionNotFoundError,
    ConfigurationError,
    FilterError,
    NotSupportedError,
    StoreClosedError,
    ValidationError,
)
from storebridge.filters import And, Comparison, Filter, FilterLike, Not, Op, Or, evaluate
from storebridge.models import Distance, KnowledgeDocument
from storebridge.testing.data import FILTER_CASES, FILTER_METADATA
from tests.engines import unique_prefix
from tests.servers.pgvector import PgVectorServer, pgvector_server  # noqa: F401  (the session fixture)

pytestmark = pytest.mark.engine("pgvector")

psycopg = pytest.importorskip("psycopg")

from storebridge.adapters.pgvector.knowledge import (
    PgVectorKnowledgeStore,
    compile_filter,
    jsonb_text,
    parse_pgvector_url,
)
from storebridge.vectors import metadata_json

# -- a table of metadata in the engine ---------------------------------------------------------------------

class Table:
    """A temporary table ``(rowid, metadata JSONB)`` written exactly as the store writes it."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.name = "f_" + uuid.uuid4().hex[:12]
        conn.execute(f"CREATE TEMP TABLE {self.name} (rowid INT PRIMARY KEY, metadata JSONB NOT NULL)")

    def fill(self, metadata: Sequence[dict[str, Any]]) -> Table:
        self.conn.execute(f"TRUNCATE {self.name}")
        with self.conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {self.name} VALUES (%s, %s::jsonb)",
                            [(i, jsonb_text(m, metadata_json(KnowledgeDocument(metadata=m)))) for i, m in
                             enumerate(metadata)])
        return self

    def selected(self, spec: FilterLike) -> set[int]:
        sql, params = compile_filter(spec)
        return {row[0] for row in self.conn.execute(f"SELECT rowid FROM {self.name} WHERE {sql}", params)}


@pytest.fixture(scope="module")
def conn(pgvector_server: PgVectorServer) -> Iterator[Any]:  # noqa: F811
    with psycopg.connect(pgvector_server.url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def table(conn: Any) -> Iterator[Table]:
    t = Table(conn)
    yield t
    conn.execute(f"DROP TABLE {t.name}")


def expected(metadata: Sequence[dict[str, Any]], spec: FilterLike) -> set[int]:
    return {i for i, m in enumerate(metadata) if evaluate(spec, m)}


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
    ({"n": 1}, {0, 1}),
    ({"n": True}, {2}),
    ({"n": 0}, {6, 7}),
    ({"n": {"$ne": 1}}, {2, 3, 4, 5, 6, 7, 8, 9}),
    ({"n": {"$gt": 0}}, {0, 1, 8, 9}),
    ({"n": {"$gte": 2**62 + 1}}, {8}),                    # big int vs its float neighbour, exactly
    ({"n": 2**62 + 1}, {8}),
    ({"n": 4.611686018427388e18}, {9}),
    ({"n": 2**62}, {9}),                                  # the float is exactly 2**62
    ({"n": {"$lt": math.inf}}, {0, 1, 6, 7, 8, 9}),
    ({"n": math.inf}, set()),
    ({"n": {"$in": []}}, set()),
    ({"n": {"$nin": []}}, set(range(10))),
    ({"n": {"$in": [True, "1"]}}, {2, 5}),
    ({"s": "[1]"}, {2}),
    ({"s": "{}"}, {6}),
    ({"s": {"$in": ["a", "[1]", "{}"]}}, {0, 2, 6}),
    ({"s": ""}, {7}),
    ({"s": "é"}, {8}),
    ({"s": "a\x00"}, set()),                              # JSONB holds no NUL: nothing can equal it
    ({"b": {"$exists": True}}, {0, 1, 2, 6}),
    ({"b": {"$exists": False}}, {3, 4, 5, 7, 8, 9}),
    ({"l": {"$contains": 1}}, {0, 6}),
    ({"l": {"$contains": True}}, {0}),
    ({"l": {"$contains": 0}}, {7}),
    ({"l": {"$contains": False}}, {7}),
    ({"l": {"$contains": "x"}}, {0}),
    ({"l": {"$contains": 2**62 + 1}}, {8}),
    ({"d.k": 1}, {0}),
    ({"d.k": 5}, {5}),
    ({"d.k": {"$exists": True}}, {0, 1, 5}),
    ({"d.k.k": 1}, {5}),
    ({"$not": {"n": {"$gt": 0}}}, {2, 3, 4, 5, 6, 7}),
    ({"$not": {"$or": [{"n": 1}, {"s": "a"}]}}, {2, 3, 4, 5, 6, 7, 8, 9}),
])
def test_hand_cases(table: Table, spec: dict[str, Any], rows: set[int]) -> None:
    table.fill(HAND_METADATA)
    assert expected(HAND_METADATA, spec) == rows, "the hand-written expectation disagrees with evaluate()"
    assert table.selected(spec) == rows
    assert table.selected({"$not": spec}) == set(range(len(HAND_METADATA))) - rows


def test_big_floats_compare_exactly(table: Table) -> None:
    """JSONB would hold 2.0**60 as its repr 1152921504606847000; the store writes the exact integer."""
    metadata: list[dict[str, Any]] = [{"n": 2.0**60}, {"n": 2**60}, {"n": 2**60 + 1}, {"n": 1e300}, {"n": 5e-324}]
    table.fill(metadata)
    for spec in ({"n": 2**60}, {"n": {"$gt": 2**60}}, {"n": {"$lte": 2**60}}, {"n": 10**300}, {"n": {"$gt": 0}},
                 {"n": {"$lt": 1e-323}}, {"n": {"$gte": 1e300}}, {"n": int(1e300)}):
        assert table.selected(spec) == expected(metadata, spec), spec


def test_non_ascii_keys(table: Table) -> None:
    metadata: list[dict[str, Any]] = [{"日本": "語"}, {"日本": {"語": 1}}, {"ключ ы": 2}]
    table.fill(metadata)
    for spec in ({"日本": "語"}, {"日本.語": 1}, {"ключ ы": {"$gte": 2}}, {"日本": {"$exists": True}}):
        assert table.selected(spec) == expected(metadata, spec) != set(), spec


@pytest.mark.parametrize("case", sorted(FILTER_CASES))
def test_shared_filter_dataset(table: Table, case: str) -> None:
    table.fill(FILTER_METADATA)
    for spec in FILTER_CASES[case]:
        assert table.selected(spec) == expected(FILTER_METADATA, spec), spec
        assert table.selected({"$not": spec}) == expected(FILTER_METADATA, {"$not": spec}), spec


def test_malformed_filters_raise_filter_error() -> None:
    for spec in ({"a": {"$foo": 1}}, {"$and": []}, {"a": {"$gt": "x"}}, {'a"b': 1}, {"a": [1]}):
        with pytest.raises(FilterError):
            compile_filter(spec)


HOSTILE_VALUES = ["'; DROP TABLE docs; --", "' OR 1=1 --", '"; DROP TABLE docs; --', "$.a", "%s", "%(x)s", "?", "\\",
                  "$1", "{a,b}"]


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_hostile_values_are_bound_parameters(table: Table, value: str) -> None:
    for spec in ({"s": value}, {"s": {"$ne": value}}, {"s": {"$in": [value, "x"]}}, {"l": {"$contains": value}}):
        sql, _ = compile_filter(spec)
        assert value not in sql.replace("%s", "")
    rows = HAND_METADATA + [{"s": value, "l": [value]}]
    table.fill(rows)
    last = len(HAND_METADATA)
    assert table.selected({"s": value}) == expected(rows, {"s": value}) >= {last}
    assert table.selected({"l": {"$contains": value}}) == {last}
    assert table.conn.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0] == last + 1


def test_keys_are_bound_parameters() -> None:
    sql, params = compile_filter({"with space-and_dash": 1, "a.b": 2})
    assert "with space" not in sql and "a.b" not in sql
    assert "with space-and_dash" in params and "a.b" in params


# -- property test: SQL == evaluate() on random metadata and random trees ----------------------------------

KEYS = ["a", "b", "c", "a.b", "b.c", "日本", "x y"]
FIELDS = ["a", "b", "c", "a.b", "b.c", "a.b.c", "z", "日本", "x y", "a.日本"]

ints = st.one_of(st.sampled_from([0, 1, -1, 2, 2**53 + 1, 2**62]), st.integers(-(2**70), 2**70))
floats = st.one_of(st.sampled_from([0.0, -0.0, 1.0, 0.5, 2.0, 1e-9, 9007199254740992.0, 2.0**62, 1e300]),
                   st.floats(allow_nan=False, allow_infinity=False))
# JSONB cannot hold NUL characters (such metadata is refused with ValidationError): none in stored strings.
strings = st.one_of(st.sampled_from(["", "a", "A", "1", "true", "[1]", "{}", "é", "🚀"]),
                    st.text(max_size=4).filter(lambda s: "\x00" not in s))
scalars = st.one_of(ints, floats, st.booleans(), strings)
filter_scalars = st.one_of(scalars, st.just("a\x00"), st.sampled_from([math.inf, -math.inf]))
json_values = st.recursive(
    st.one_of(st.none(), scalars),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.sampled_from(KEYS), children, max_size=3)),
    max_leaves=8,
)
metadata_dicts = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=4)
numbers = st.one_of(ints, floats, st.sampled_from([math.inf, -math.inf]))


def comparisons() -> st.SearchStrategy[Comparison]:
    field = st.sampled_from(FIELDS)
    return st.one_of(
        st.builds(Comparison, field, st.sampled_from([Op.EQ, Op.NE, Op.CONTAINS]), filter_scalars),
        st.builds(Comparison, field, st.sampled_from([Op.GT, Op.GTE, Op.LT, Op.LTE]), numbers),
        st.builds(Comparison, field, st.sampled_from([Op.IN, Op.NIN]),
                  st.lists(filter_scalars, max_size=4).map(tuple)),
        st.builds(Comparison, field, st.just(Op.EXISTS), st.booleans()),
    )


filter_trees: st.SearchStrategy[Filter] = st.recursive(
    comparisons(),
    lambda children: st.one_of(
        st.builds(And, st.lists(children, min_size=1, max_size=3).map(tuple)),
        st.builds(Or, st.lists(children, min_size=1, max_size=3).map(tuple)),
        st.builds(Not, children),
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(metadata=st.lists(metadata_dicts, min_size=1, max_size=12), tree=filter_trees)
def test_sql_selects_exactly_what_evaluate_accepts(table: Table, metadata: list[dict[str, Any]],
                                                   tree: Filter) -> None:
    table.fill(metadata)
    chosen, negated = table.selected(tree), table.selected(Not(tree))
    assert chosen == expected(metadata, tree)
    assert negated == expected(metadata, Not(tree))
    assert chosen | negated == set(range(len(metadata))) and not chosen & negated


# -- the store ---------------------------------------------------------------------------------------------

@pytest.fixture
def make_store(pgvector_server: PgVectorServer) -> Iterator[Any]:  # noqa: F811
    prefix = unique_prefix("ku")
    stores: list[PgVectorKnowledgeStore] = []

    def make(url: str | None = None, **options: Any) -> PgVectorKnowledgeStore:
        store = PgVectorKnowledgeStore(url or pgvector_server.url, table_prefix=prefix, **options)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()
    tables = [row[0] for row in pgvector_server.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND starts_with(tablename, %s)", (prefix,))]
    if tables:
        pgvector_server.execute("DROP TABLE " + ", ".join(f'"{t}"' for t in tables))


def docs_for(vectors: np.ndarray, prefix: str = "d") -> list[KnowledgeDocument]:
    return [KnowledgeDocument(id=f"{prefix}{i}", embedding=v.tolist(), metadata={"i": i, "even": i % 2 == 0})
            for i, v in enumerate(vectors)]


@pytest.mark.parametrize("distance", list(Distance), ids=[d.value for d in Distance])
def test_hnsw_recall(make_store: Any, pgvector_server: PgVectorServer,  # noqa: F811
                     distance: Distance) -> None:
    """The approximate path (exact search switched off) keeps recall@10 well above the declared 0.95."""
    store = make_store(exact_below=0)
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((2000, 32)).astype(np.float32)
    store.create_collection("recall", 32, distance)
    store.insert("recall", docs_for(vectors))
    index = f"{store.table_prefix}pgv_1_hnsw"

    def index_scans() -> int:
        rows = pgvector_server.execute("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = %s", (index,))
        assert rows, "the HNSW index is built in the write that passes exact_below"
        return int(rows[0][0])

    before = index_scans()
    queries = rng.standard_normal((40, 32)).astype(np.float32)
    exact = make_store(exact_below=10**9)
    recalls, filtered = [], []
    for q in queries:
        truth = [h.id for h in exact.search("recall", q.tolist(), k=10)]
        got = [h.id for h in store.search("recall", q.tolist(), k=10)]
        recalls.append(len(set(truth) & set(got)) / 10)
        truth_f = [h.id for h in exact.search("recall", q.tolist(), k=10, filter={"even": True})]
        got_f = store.search("recall", q.tolist(), k=10, filter={"even": True})
        assert all(h.document.metadata["even"] is True for h in got_f)
        filtered.append(len(set(truth_f) & {h.id for h in got_f}) / 10)
    # Backends flush their statistics to pg_stat_* at transaction end at most once a second, and an idle
    # pooled connection only after up to 10 s: poll rather than guess.
    deadline = time.monotonic() + 15.0
    after = index_scans()
    while after <= before and time.monotonic() < deadline:
        time.sleep(0.5)
        after = index_scans()
    assert after > before, f"the approximate searches use the index ({before} -> {after} scans)"
    print(f"pgvector HNSW recall@10 ({distance.value}): {np.mean(recalls):.3f}, filtered {np.mean(filtered):.3f}")
    assert float(np.mean(recalls)) >= 0.98
    assert float(np.mean(filtered)) >= 0.98
    assert store.capabilities.recall_floor <= min(float(np.mean(recalls)), float(np.mean(filtered)))


def test_urls(pgvector_server: PgVectorServer, make_store: Any) -> None:  # noqa: F811
    from storebridge.urls import parse_url

    base = parse_url(pgvector_server.url)
    for scheme in ("pgvector", "postgresql+pgvector", "postgresql"):
        store = make_store(base.render(reveal=True, scheme=scheme))
        assert store.list_collections() == []
    for bad in ("mysql://h/db", "pgvector+asyncpg://h/db", "redis://h"):
        with pytest.raises(ConfigurationError):
            parse_pgvector_url(bad)
    with pytest.raises(ConfigurationError):
        PgVectorKnowledgeStore(pgvector_server.url, table_prefix="bad-prefix")
    with pytest.raises(ConfigurationError):
        PgVectorKnowledgeStore()


def test_password_never_in_errors() -> None:
    from storebridge.errors import ConnectionFailedError

    with pytest.raises(ConnectionFailedError) as info:
        PgVectorKnowledgeStore("pgvector://u:s3cret-pw@127.0.0.1:1/db", connect_timeout=1)
    assert "s3cret-pw" not in str(info.value)


def test_collection_names_map_to_safe_tables(make_store: Any) -> None:
    store = make_store()
    names = ["a", "A", "x-y", "9" * 63, "_under"]
    for name in names:
        store.create_collection(name, 3)
    assert store.list_collections() == sorted(names)
    store.insert("A", [KnowledgeDocument(id="1", embedding=[1, 0, 0])])
    assert store.count("a") == 0 and store.count("A") == 1
    assert store.drop_collection("A") and not store.has_collection("A")
    store.create_collection("A", 3)
    assert store.count("A") == 0, "a re-created collection starts empty (a new table)"


def test_metadata_round_trips_exactly(make_store: Any) -> None:
    store = make_store()
    store.create_collection("m", 2, "l2")
    metadata = {"z": 1, "a": 1e20, "m": {"y": 2.0, "b": [1e-7, 2**70, None]}, "big": 2.0**60}
    store.insert("m", [KnowledgeDocument(id="1", embedding=[1, 2], metadata=metadata)])
    got = store.get("m", ["1"])[0].metadata
    assert got == metadata and list(got) == list(metadata) and list(got["m"]) == ["y", "b"]
    assert type(got["a"]) is float and type(got["m"]["b"][1]) is int
    assert store.count("m", filter={"big": 2**60}) == 1
    with pytest.raises(ValidationError):
        store.insert("m", [KnowledgeDocument(id="nul", embedding=[1, 2], metadata={"s": "a\x00"})])


def test_insert_duplicates_atomic_and_upsert(make_store: Any) -> None:
    store = make_store()
    store.create_collection("c", 2, "dot")
    store.insert("c", [KnowledgeDocument(id="a", embedding=[1, 0])])
    with pytest.raises(AlreadyExistsError) as info:
        store.insert("c", [KnowledgeDocument(id="b", embedding=[0, 1]), KnowledgeDocument(id="a", embedding=[1, 1])])
    assert "'a'" in str(info.value) and info.value.__cause__ is not None
    assert store.count("c") == 1
    store.upsert("c", [KnowledgeDocument(id="a", embedding=[2, 0], content="new"),
                       KnowledgeDocument(id="b", embedding=[0, 2])])
    hits = store.search("c", [1, 0], k=2)
    assert [(h.id, h.score, h.distance) for h in hits] == [("a", 2.0, -2.0), ("b", 0.0, -0.0)]
    assert hits[0].document.content == "new"


def test_generator_is_written_in_batches(make_store: Any) -> None:
    store = make_store()
    store.create_collection("g", 2, "l2")
    consumed = 0

    def documents() -> Iterator[KnowledgeDocument]:
        nonlocal consumed
        for i in range(2500):
            consumed += 1
            if i == 2200:
                assert store.count("g") == 2000, "earlier batches are committed before later ones are read"
            yield KnowledgeDocument(id=str(i), embedding=[float(i), 1.0])

    assert len(store.insert("g", documents())) == 2500 and consumed == 2500
    assert store.count("g") == 2500
    page = store.scroll("g", limit=1000)
    assert [d.id for d in page.documents] == [str(i) for i in range(1000)]


def test_missing_collection_and_closed_store(make_store: Any) -> None:
    store = make_store()
    with pytest.raises(CollectionNotFoundError):
        store.search("nope", [1.0])
    with pytest.raises(CollectionNotFoundError):
        store.insert("nope", [KnowledgeDocument(id="1", embedding=[1.0])])
    pool = store._driver.pool
    store.close()
    store.close()
    assert pool.closed
    with pytest.raises(StoreClosedError):
        store.list_collections()
    with pytest.raises(StoreClosedError):
        store.insert("nope", [KnowledgeDocument(id="1", embedding=[1.0])])


def test_callers_pool_is_used_and_left_open(pgvector_server: PgVectorServer) -> None:  # noqa: F811
    from psycopg_pool import ConnectionPool

    prefix = unique_prefix("kp")
    with ConnectionPool(pgvector_server.url, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:
        store = PgVectorKnowledgeStore(pool=pool, table_prefix=prefix)
        store.create_collection("p", 2)
        store.insert("p", [KnowledgeDocument(id="1", embedding=[1, 0])])
        assert store.count("p") == 1
        store.close()
        assert not pool.closed
        pgvector_server.execute(f'DROP TABLE "{prefix}pgv_1", "{prefix}pgv_collections", "{prefix}schema_versions"')


def test_missing_extension_is_a_clear_error(pgvector_server: PgVectorServer,  # noqa: F811
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from storebridge.adapters.pgvector import knowledge

    class NoVector:
        def execute(self, sql: str, *args: Any) -> None:
            if "CREATE EXTENSION" in sql:
                raise psycopg.errors.FeatureNotSupported('extension "vector" is not available')

        def close(self) -> None:
            pass

    monkeypatch.setattr(knowledge._Driver, "dedicated", lambda self: __import__("contextlib").nullcontext(NoVector()))
    with pytest.raises(NotSupportedError, match="pgvector"):
        PgVectorKnowledgeStore(pgvector_server.url)
