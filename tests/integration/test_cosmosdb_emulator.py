"""The ``cosmosdb`` knowledge store on the ``@vercel/cosmosdb-server`` emulator (``tests/servers/cosmosdb.py``
installs it with npm and starts it; it runs on every project machine, so these tests never skip in CI).

The emulator runs Cosmos DB's REST API and SQL but has no ``VectorDistance``. So here:

* the knowledge conformance suite runs through the store on both faces, except that every case that
  searches is replaced: the filter cases check ``count``, ``scroll`` (paged) and ``delete`` against
  :func:`storebridge.filters.evaluate` (the emulator evaluates the WHERE clauses the store compiles, so
  this proves the filter SQL runs and gives FILTERS.md's answers), and ``search`` must raise
  :class:`~storebridge.errors.NotSupportedError` naming the reason;
* the filter SQL is also checked on random metadata and random filter trees (hypothesis), on hostile
  values and on unicode keys (which reach the SQL as ``\\uXXXX`` escapes);
* what only this store has: the container's policies, the item layout, foreign containers, prefixes,
  shared clients, the index options.

The full suite with search runs against a live account in ``tests/conformance/test_knowledge_cosmosdb.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storebridge.errors import (
    FilterError,
    NotSupportedError,
    OperationFailedError,
    UnsupportedFilterError,
    ValidationError,
)
from storebridge.filters import Filter, evaluate
from storebridge.models import Distance, KnowledgeDocument
from storebridge.testing import KnowledgeStoreSuite, StoreFacade, StoreFactory
from storebridge.testing.data import FILTER_CASES, FILTER_DIMENSION, filter_documents
from storebridge.testing.knowledge import NewCollection, filter_supported
from tests.servers.cosmosdb import (
    CosmosDBEmulator,
    fresh_database,
    knowledge_store_factory,
)
from tests.strategies import filter_trees

pytestmark = [
    pytest.mark.engine("cosmosdb"),
    # The SDK never verifies TLS on 127.0.0.1 (the emulator's certificate is self-signed), and says so.
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]


def _open(emulator: CosmosDBEmulator, database: str, **options: str) -> Any:
    from storebridge.adapters.cosmosdb import CosmosDBKnowledgeStore

    return CosmosDBKnowledgeStore(emulator.url(database, **options))


@pytest.fixture
def database(cosmosdb_server: CosmosDBEmulator) -> Iterator[str]:
    """A database of this test only, deleted afterwards."""
    name = fresh_database()
    yield name
    cosmosdb_server.drop_database(name)


async def _scroll_ids(s: StoreFacade, name: str, spec: Any, limit: int = 7) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        page = await s.scroll(name, limit=limit, cursor=cursor, filter=spec)
        assert len(page.documents) <= limit
        ids += [d.id for d in page.documents]
        cursor = page.next_cursor
        if cursor is None:
            return ids


class TestCosmosDBOnEmulator(KnowledgeStoreSuite):
    """Every conformance case through the store on the emulator; the cases that search are replaced
    (see the module docstring)."""

    @pytest.fixture
    def store_factory(self, cosmosdb_server: CosmosDBEmulator,
                      request: pytest.FixtureRequest) -> StoreFactory:
        return knowledge_store_factory(cosmosdb_server, request)

    async def check_filter_cases(self, s: StoreFacade, new_collection: NewCollection, case: str) -> None:
        """Each filter of ``FILTER_CASES[case]``: count and paged scroll against the reference evaluator;
        then the last one deletes, and exactly its matches go. Search raises the typed error."""
        docs = filter_documents()
        name = await new_collection(FILTER_DIMENSION)
        await s.upsert(name, docs)
        caps = s.capabilities
        specs = FILTER_CASES[case]
        for spec in specs:
            if not filter_supported(caps, spec):
                for call in (s.count(name, filter=spec), s.scroll(name, filter=spec), s.delete(name, filter=spec),
                             s.search(name, docs[0].embedding, filter=spec)):
                    with pytest.raises(UnsupportedFilterError):
                        await call
                continue
            expected = {d.id for d in docs if evaluate(spec, d.metadata)}
            assert await s.count(name, filter=spec) == len(expected), f"count(filter={spec!r})"
            got = await _scroll_ids(s, name, spec)
            assert len(got) == len(set(got)), f"scroll(filter={spec!r}) repeated documents: {got}"
            assert set(got) == expected, (
                f"filter {spec!r}: missing {sorted(expected - set(got))}, unexpected {sorted(set(got) - expected)}")
        searchable = next((spec for spec in specs if filter_supported(caps, spec)), None)
        with pytest.raises(NotSupportedError, match="VectorDistance"):
            await s.search(name, docs[0].embedding, k=3, filter=searchable)
        last = specs[-1]
        if filter_supported(caps, last):
            doomed = {d.id for d in docs if evaluate(last, d.metadata)}
            assert await s.delete(name, filter=last) == len(doomed)
            assert set(await _scroll_ids(s, name, None, limit=100)) == {d.id for d in docs} - doomed

    # -- the cases that need VectorDistance: the emulator must refuse them with the typed error --------

    @pytest.mark.parametrize("distance", list(Distance), ids=[d.value for d in Distance])
    async def test_search_ranking(self, store: StoreFacade, new_collection: NewCollection,
                                  distance: Distance) -> None:
        made = await self.ranking_collection(store, new_collection, distance)
        assert made is not None, "every distance is declared"
        name, _docs, queries = made
        with pytest.raises(NotSupportedError, match="emulator has no VectorDistance"):
            await store.search(name, queries[0].tolist(), k=10)

    @pytest.mark.parametrize("distance", list(Distance), ids=[d.value for d in Distance])
    async def test_search_score_threshold(self, store: StoreFacade, new_collection: NewCollection,
                                          distance: Distance) -> None:
        name = await new_collection(4, distance)
        await store.insert(name, [KnowledgeDocument(id="a", embedding=[1.0, 0.0, 0.0, 0.0])])
        with pytest.raises(NotSupportedError):
            await store.search(name, [1.0, 0.0, 0.0, 0.0], k=1, score_threshold=0.5)

    async def test_search_k_larger_than_collection(self, store: StoreFacade, new_collection: NewCollection) -> None:
        name = await new_collection(4)
        with pytest.raises(NotSupportedError):  # even an empty collection: the query itself is refused
            await store.search(name, [1.0, 0.0, 0.0, 0.0], k=5)

    async def test_filter_combined_with_k(self, store: StoreFacade, new_collection: NewCollection) -> None:
        name = await new_collection(FILTER_DIMENSION)
        docs = filter_documents()
        await store.upsert(name, docs)
        with pytest.raises(NotSupportedError):
            await store.search(name, docs[5].embedding, k=3, filter={"tags": {"$contains": "ml"}})

    async def test_metadata_round_trip(self, store: StoreFacade, new_collection: NewCollection) -> None:
        """The suite's case checks get first (must pass), then search (must raise the typed error)."""
        with pytest.raises(NotSupportedError):
            await super().test_metadata_round_trip(store, new_collection)

    async def test_embeddings_round_trip(self, store: StoreFacade, new_collection: NewCollection) -> None:
        with pytest.raises(NotSupportedError):
            await super().test_embeddings_round_trip(store, new_collection)


# -- the filter SQL against the reference evaluator, on random data ---------------------------------------------

_KEYS = ["a", "b", "tags", "with space", "ü-ключ", "日本"]
# No two distinct integers beyond 2**53 that round to the same double: Cosmos compares doubles (documented).
_SCALARS = st.one_of(
    st.sampled_from([0, 1, -1, 2, 1.0, 0.5, -0.0, 2**53, 1e300, -1e-300, True, False, "", "a", "A", "a ", "1",
                     "true", "'; drop table x; --", "back\\slash", 'quote\'"', "nul\x00byte", "@p0", "日本語 🚀",
                     "\u202e", "NULL", "undefined"]),
    st.integers(-5, 5), st.text(alphabet="ab ", max_size=3),
)
_VALUES = st.one_of(_SCALARS, st.none(), st.lists(_SCALARS, max_size=4), st.just({"k": 1}), st.just([]),
                    st.just([[1], {"a": 1}, None, 1]))
_METADATA = st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=4)


_FILTERS = filter_trees([*_KEYS, "missing"], _SCALARS, st.sampled_from([0, 1, 0.5, -1, 2, 1e300, 2**53, math.inf, -math.inf, 10**400, -(10**400)]))


@pytest.fixture(scope="module")
def random_collection(cosmosdb_server: CosmosDBEmulator) -> Iterator[Any]:
    """One store and collection for every random example (emptied by each)."""
    database = fresh_database()
    store = _open(cosmosdb_server, database)
    store.create_collection("random", 2, "l2")
    try:
        yield store
    finally:
        store.close()
        cosmosdb_server.drop_database(database)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(metadata=st.lists(_METADATA, min_size=1, max_size=8), filters=st.lists(_FILTERS, min_size=1, max_size=4))
def test_filter_sql_matches_the_reference_evaluator(random_collection: Any, metadata: list[dict[str, Any]],
                                                    filters: list[Filter]) -> None:
    store = random_collection
    store.delete("random", filter={"$not": {"nothing-at-all": {"$exists": True}}})  # every document
    docs = [KnowledgeDocument(id=f"d{i}", embedding=[1.0, float(i)], metadata=m) for i, m in enumerate(metadata)]
    store.upsert("random", docs)
    for tree in filters:
        expected = {d.id for d in docs if evaluate(tree, d.metadata)}
        page = store.scroll("random", limit=100, filter=tree)
        assert {d.id for d in page.documents} == expected, f"filter {tree!r} on {metadata!r}"
        assert store.count("random", filter=tree) == len(expected), f"count of {tree!r} on {metadata!r}"


# -- hostile values, unicode keys, numbers ------------------------------------------------------------------------

HOSTILE = ["'", "\\", "\\'", "''", '"', '\\"', "a' OR '1'='1", '" OR 1=1 --', "x\x00y", "@p0", "@ids", "--", "/*",
           "é", "🚀", " ", "", "ann ", "\u202e", "\n", "\\u0041", "A", "true", "null", "undefined"]


def test_hostile_values_are_data(cosmosdb_server: CosmosDBEmulator, database: str) -> None:
    store = _open(cosmosdb_server, database)
    store.create_collection("h", 2)
    docs = [KnowledgeDocument(id=f"h{i}", embedding=[1.0, float(i)], metadata={"v": value, "l": [value]})
            for i, value in enumerate(HOSTILE)]
    store.insert("h", docs)
    for i, value in enumerate(HOSTILE):
        assert [d.id for d in store.scroll("h", filter={"v": value}).documents] == [f"h{i}"], repr(value)
        assert store.count("h", filter={"l": {"$contains": value}}) == 1, repr(value)
        assert store.count("h", filter={"v": {"$ne": value}}) == len(HOSTILE) - 1, repr(value)
    assert store.count("h", filter={"v": {"$in": HOSTILE[:5]}}) == 5
    store.close()


def test_unicode_and_spaced_keys_reach_the_right_property(cosmosdb_server: CosmosDBEmulator,
                                                          database: str) -> None:
    """Keys outside [A-Za-z0-9 _-] reach the SQL as \\uXXXX escapes; the engine must resolve them."""
    keys = ["日本語", "ключ", "ü-x", "with space", "a-b", "_u", "ΣΑΣ", "x" * 255]
    store = _open(cosmosdb_server, database)
    store.create_collection("k", 2)
    docs = [KnowledgeDocument(id=f"k{i}", embedding=[1.0, float(i)], metadata={key: i, "other": key})
            for i, key in enumerate(keys)]
    store.insert("k", docs)
    for i, key in enumerate(keys):
        assert [d.id for d in store.scroll("k", filter={key: i}).documents] == [f"k{i}"], key
        assert store.count("k", filter={key: {"$exists": True}}) == 1, key
    store.close()


def test_numbers_compare_as_cosmos_doubles(cosmosdb_server: CosmosDBEmulator, database: str) -> None:
    """Exact where doubles are exact; beyond 2**53 integers compare as their nearest double (documented)."""
    store = _open(cosmosdb_server, database)
    store.create_collection("n", 2)
    values = [1, 1.0, 2**53, 2**53 + 1, 1e300, -0.0, 10**400]
    docs = [KnowledgeDocument(id=f"n{i}", embedding=[1.0, float(i)], metadata={"x": v}) for i, v in enumerate(values)]
    store.insert("n", docs)
    assert {d.id for d in store.scroll("n", filter={"x": 1}).documents} == {"n0", "n1"}
    assert {d.id for d in store.scroll("n", filter={"x": 2**53}).documents} == {"n2", "n3"}  # rounding, documented
    assert {d.id for d in store.scroll("n", filter={"x": {"$gt": 1e299}}).documents} == {"n4"}
    assert {d.id for d in store.scroll("n", filter={"x": 0}).documents} == {"n5"}
    assert store.count("n", filter={"x": {"$exists": True}}) == 6, "an int beyond the double range is not filterable"
    assert store.count("n", filter={"x": {"$lt": math.inf}}) == 6
    assert store.count("n", filter={"x": {"$gt": 10**400}}) == 0
    assert [d.metadata["x"] for d in store.get("n", ["n3", "n6"])] == [2**53 + 1, 10**400], "metadata is exact"
    store.close()


# -- what only this store has ------------------------------------------------------------------------------------


def test_container_policies_and_item_layout(cosmosdb_server: CosmosDBEmulator, database: str) -> None:
    from storebridge.adapters.cosmosdb._layout import item_id

    store = _open(cosmosdb_server, database, index="diskANN")
    store.create_collection("layout", 3, "dot")
    store.insert("layout", [KnowledgeDocument(id="a/b?#\\", content="c", source_id="s", embedding=[0.1, 0.2, 0.3],
                                              metadata={"n": 1, "bad key!": 2, "d": {"x": 1}, "none": None,
                                                        "l": ["s", 1, None, {"k": 1}, True]})])
    client = cosmosdb_server.client()
    try:
        container = client.get_database_client(database).get_container_client("sb_layout")
        properties = container.read()
        assert properties["partitionKey"]["paths"] == ["/id"]
        assert properties["vectorEmbeddingPolicy"] == {"vectorEmbeddings": [
            {"path": "/embedding", "dataType": "float32", "dimensions": 3, "distanceFunction": "dotproduct"}]}
        assert properties["indexingPolicy"]["vectorIndexes"] == [{"path": "/embedding", "type": "diskANN"}]
        [item] = list(container.query_items("SELECT * FROM c", enable_cross_partition_query=True))
    finally:
        client.close()
    assert item["id"] == item_id("a/b?#\\") and item["doc_id"] == "a/b?#\\"
    assert item["fields"] == {"n": 1, "d": {}, "l": ["s", 1, True]}, "typed copy: valid keys, filterable parts"
    assert item["embedding"] == [float(x) for x in np.asarray([0.1, 0.2, 0.3], dtype=np.float32)]
    assert store.get("layout", ["a/b?#\\"])[0].metadata == {"n": 1, "bad key!": 2, "d": {"x": 1}, "none": None,
                                                             "l": ["s", 1, None, {"k": 1}, True]}
    store.close()


def test_foreign_containers_are_not_collections(cosmosdb_server: CosmosDBEmulator,
                                                database: str) -> None:
    from azure.cosmos import PartitionKey

    store = _open(cosmosdb_server, database)
    store.create_collection("mine", 2)
    client = cosmosdb_server.client()
    try:
        db = client.get_database_client(database)
        db.create_container("sb_foreign", partition_key=PartitionKey(path="/pk"))
        db.create_container("unprefixed", partition_key=PartitionKey(path="/id"))
    finally:
        client.close()
    assert store.list_collections() == ["mine"]
    with pytest.raises(OperationFailedError, match="not made by storebridge"):
        store.get_collection("foreign")
    with pytest.raises(OperationFailedError, match="not made by storebridge"):
        store.create_collection("foreign", 2)
    store.close()


def test_prefixes_keep_stores_apart(cosmosdb_server: CosmosDBEmulator, database: str) -> None:
    first, second = _open(cosmosdb_server, database, prefix="one_"), _open(cosmosdb_server, database, prefix="two_")
    first.create_collection("c", 2)
    second.create_collection("c", 3, "l2")
    first.insert("c", [KnowledgeDocument(id="x", embedding=[1.0, 0.0])])
    assert (first.count("c"), second.count("c")) == (1, 0)
    assert first.get_collection("c").dimension == 2 and second.get_collection("c").dimension == 3
    assert first.drop_collection("c") and second.list_collections() == ["c"]
    first.close()
    second.close()


def test_store_objects_share_one_client(cosmosdb_server: CosmosDBEmulator, database: str) -> None:
    first, second = _open(cosmosdb_server, database), _open(cosmosdb_server, database)
    first.create_collection("s", 2)
    second.count("s")
    assert first._client is second._client, "same endpoint, key and options: one CosmosClient (one session)"
    first.insert("s", [KnowledgeDocument(id="x", embedding=[1.0, 0.0])])
    first.close()
    assert second.count("s") == 1, "closing one store object leaves the shared client open for the other"
    second.close()
    third = _open(cosmosdb_server, database)
    assert third.count("s") == 1
    third.close()


def test_index_options(cosmosdb_server: CosmosDBEmulator, database: str) -> None:
    flat = _open(cosmosdb_server, database, index="flat")
    assert flat.capabilities.recall_floor == 1.0
    with pytest.raises(NotSupportedError, match="505"):
        flat.create_collection("wide", 506)
    assert flat.create_collection("narrow", 505).dimension == 505
    assert not flat.has_collection("wide")
    flat.close()
    approximate = _open(cosmosdb_server, database, index="quantizedFlat")
    assert approximate.capabilities.recall_floor < 1.0
    approximate.close()


def test_bad_scroll_cursors_and_filters(cosmosdb_server: CosmosDBEmulator, database: str) -> None:
    store = _open(cosmosdb_server, database)
    store.create_collection("q", 2)
    store.insert("q", [KnowledgeDocument(id=f"d{i}", embedding=[1.0, float(i)]) for i in range(3)])
    for cursor in ("nope", "' OR 1=1 --", "1F3B9C4A-0000-0000-0000-000000000000"):
        with pytest.raises(ValidationError, match="cursor"):
            store.scroll("q", cursor=cursor)
    page = store.scroll("q", limit=2)
    assert page.next_cursor is not None and len(store.scroll("q", cursor=page.next_cursor).documents) == 1
    with pytest.raises(UnsupportedFilterError):
        store.count("q", filter={"nested.key": 1})
    with pytest.raises(FilterError):
        store.count("q", filter={"a'); --": 1})
    store.close()
