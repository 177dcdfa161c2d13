"""The cosmosdb knowledge store without a server: the exact query text and parameters for every filter
operator (``adapters/cosmosdb/_query.py``), key escaping and hostile values, the item layout, URL and
option parsing, secrets, declared capabilities, and how the store drives the client.

The Cosmos SQL itself runs on the emulator in ``tests/integration/test_cosmosdb_emulator.py``; the tests
here that use a client use a small fake (``FakeClient``) that records calls: it is not Cosmos DB.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
import pytest

pytest.importorskip("azure.cosmos", reason="azure-cosmos is needed (pip install 'storebridge[cosmosdb]')")

from azure.core.exceptions import ServiceRequestError
from azure.cosmos import exceptions as cosmos_errors

from storebridge.adapters.cosmosdb import CosmosDBKnowledgeStore
from storebridge.adapters.cosmosdb import _layout as layout
from storebridge.adapters.cosmosdb._query import (
    Parameters,
    compile_filter,
    count_query,
    existing_query,
    field_path,
    ids_query,
    nearest_query,
    page_query,
    string_literal,
)
from storebridge.adapters.cosmosdb.knowledge import parse_connection_string, resolve_settings
from storebridge.errors import (
    AlreadyExistsError,
    CollectionNotFoundError,
    ConfigurationError,
    ConnectionFailedError,
    FilterError,
    InvalidIdentifierError,
    NotSupportedError,
    OperationFailedError,
    StoreClosedError,
    UnsupportedFilterError,
    ValidationError,
)
from storebridge.filters import ALL_OPS, Comparison, Op, parse_filter
from storebridge.models import CollectionInfo, Distance, KnowledgeDocument
from storebridge.testing.data import FILTER_CASES, FILTER_METADATA, HOSTILE_FILTER_KEYS

A = 'c.fields["a"]'
KEY = "c2VjcmV0LWtleS1ub3QtcmVhbA+/aGVsbG8gd29ybGQ=="  # base64-looking, with '+' and '/'
URL = "cosmosdb://acct.documents.azure.com:443/?key=c2VjcmV0LWtleS1ub3QtcmVhbA%2B%2FaGVsbG8gd29ybGQ%3D%3D"


def where(spec: Any) -> tuple[str, list[Any]]:
    params = Parameters()
    text = compile_filter(parse_filter(spec), params)  # type: ignore[arg-type]
    return text, [item["value"] for item in params.items]


# -- string literals and keys ---------------------------------------------------------------------------------

HOSTILE_TEXT = ['a"b', "a'b", "a\\b", 'x"]) OR 1=1 --', "a\x00b", "line\nbreak", "tab\t", "日本語", "🚀", "é",
                "@p0", "\\u0041", "\u202e", "\ud800", "", " spaced ", "a]b[c", "/*", "`"]


@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_string_literal_is_json_of_the_same_text_with_only_safe_characters(text: str) -> None:
    literal = string_literal(text)
    assert json.loads(literal) == text, "the literal decodes back to the exact text"
    inner = literal[1:-1]
    assert re.fullmatch(r"(?:[A-Za-z0-9 _\-]|\\u[0-9a-f]{4})*", inner), f"unsafe character in {literal!r}"
    assert '"' not in inner and "'" not in inner


def test_string_literal_exact_forms() -> None:
    assert string_literal("with space-_09") == '"with space-_09"'
    assert string_literal('a"b') == '"a\\u0022b"'
    assert string_literal("a\\b") == '"a\\u005cb"'
    assert string_literal("ü") == '"\\u00fc"'
    assert string_literal("🚀") == '"\\ud83d\\ude80"'  # a UTF-16 surrogate pair, as JSON writes it
    assert field_path("日本") == 'c.fields["\\u65e5\\u672c"]'
    assert field_path("with space") == 'c.fields["with space"]'


@pytest.mark.parametrize("key", HOSTILE_FILTER_KEYS)
def test_hostile_filter_keys_never_reach_the_compiler(key: str) -> None:
    store = CosmosDBKnowledgeStore(URL)
    with pytest.raises(FilterError) as caught:
        store.count("c", filter={key: 1})
    assert not isinstance(caught.value, UnsupportedFilterError)


# -- every operator, exact text and parameters -------------------------------------------------------------------


def test_eq_by_value_type() -> None:
    assert where({"a": "x"}) == (f"IS_STRING({A}) AND {A} = @p0", ["x"])
    assert where({"a": 1}) == (f"IS_NUMBER({A}) AND {A} = @p0", [1])
    assert where({"a": 1.5}) == (f"IS_NUMBER({A}) AND {A} = @p0", [1.5])
    assert where({"a": True}) == (f"IS_BOOL({A}) AND {A} = @p0", [True])
    assert where({"a": {"$eq": False}}) == (f"IS_BOOL({A}) AND {A} = @p0", [False])


def test_ne_is_the_exact_complement_of_eq() -> None:
    assert where({"a": {"$ne": "x"}}) == (f"NOT IS_STRING({A}) OR {A} != @p0", ["x"])
    assert where({"a": {"$ne": 2}}) == (f"NOT IS_NUMBER({A}) OR {A} != @p0", [2])
    assert where({"a": {"$ne": True}}) == (f"NOT IS_BOOL({A}) OR {A} != @p0", [True])


@pytest.mark.parametrize(("op", "sql", "complement"), [("$gt", ">", "<="), ("$gte", ">=", "<"), ("$lt", "<", ">="),
                                                       ("$lte", "<=", ">")])
def test_ranges_see_numbers_only(op: str, sql: str, complement: str) -> None:
    assert where({"a": {op: 3}}) == (f"IS_NUMBER({A}) AND {A} {sql} @p0", [3])
    assert where({"$not": {"a": {op: 3}}}) == (f"NOT IS_NUMBER({A}) OR {A} {complement} @p0", [3])


def test_in_groups_values_by_type() -> None:
    assert where({"a": {"$in": ["x", 1, True, "y", 2.5]}}) == (
        (f"IS_STRING({A}) AND {A} IN (@p0, @p1) OR IS_NUMBER({A}) AND {A} IN (@p2, @p3) "
         f"OR IS_BOOL({A}) AND {A} IN (@p4)"), ["x", "y", 1, 2.5, True])
    assert where({"a": {"$in": ["x"]}}) == (f"IS_STRING({A}) AND {A} IN (@p0)", ["x"])
    assert where({"a": {"$in": []}}) == ("false", [])


def test_nin_is_the_exact_complement_of_in() -> None:
    assert where({"a": {"$nin": ["x", 1]}}) == (
        f"(NOT IS_STRING({A}) OR NOT ({A} IN (@p0))) AND (NOT IS_NUMBER({A}) OR NOT ({A} IN (@p1)))", ["x", 1])
    assert where({"a": {"$nin": []}}) == ("true", [])


def test_exists_and_contains() -> None:
    assert where({"a": {"$exists": True}}) == (f"IS_DEFINED({A}) AND NOT IS_NULL({A})", [])
    assert where({"a": {"$exists": False}}) == (f"NOT IS_DEFINED({A}) OR IS_NULL({A})", [])
    assert where({"$not": {"a": {"$exists": False}}}) == where({"a": {"$exists": True}})
    assert where({"a": {"$contains": "x"}}) == (f"IS_ARRAY({A}) AND ARRAY_CONTAINS({A}, @p0)", ["x"])
    assert where({"$not": {"a": {"$contains": 1}}}) == (f"NOT IS_ARRAY({A}) OR NOT ARRAY_CONTAINS({A}, @p0)", [1])


def test_logic_parenthesised_by_precedence_only() -> None:
    b = 'c.fields["b"]'
    assert where({"$or": [{"a": 1}, {"b": 2}]}) == (
        f"IS_NUMBER({A}) AND {A} = @p0 OR IS_NUMBER({b}) AND {b} = @p1", [1, 2])
    assert where({"a": 1, "$or": [{"b": 1}, {"b": 2}]}) == (
        f"IS_NUMBER({A}) AND {A} = @p0 AND (IS_NUMBER({b}) AND {b} = @p1 OR IS_NUMBER({b}) AND {b} = @p2)",
        [1, 1, 2])
    assert where({"$not": {"$or": [{"a": 1}, {"b": "x"}]}}) == (
        f"(NOT IS_NUMBER({A}) OR {A} != @p0) AND (NOT IS_STRING({b}) OR {b} != @p1)", [1, "x"])
    assert where({"$not": {"$not": {"a": "x"}}}) == where({"a": "x"})


def test_infinite_values_never_reach_the_engine() -> None:
    assert where({"a": {"$gt": math.inf}}) == ("false", [])
    assert where({"a": {"$lt": math.inf}}) == (f"IS_NUMBER({A})", [])
    assert where({"a": {"$gte": -math.inf}}) == (f"IS_NUMBER({A})", [])
    assert where({"$not": {"a": {"$lt": math.inf}}}) == (f"NOT IS_NUMBER({A})", [])
    assert where({"a": {"$lte": -(10**400)}}) == ("false", [])
    assert where({"a": math.inf}) == ("false", [])
    assert where({"a": {"$ne": math.inf}}) == ("true", [])
    assert where({"a": {"$in": [math.inf, 1]}}) == (f"IS_NUMBER({A}) AND {A} IN (@p0)", [1])


def test_constants_fold_and_unused_parameters_are_not_sent() -> None:
    assert where({"$or": [{"a": {"$in": []}}, {"b": 1}]})[0] == 'IS_NUMBER(c.fields["b"]) AND c.fields["b"] = @p0'
    query = count_query(parse_filter({"$and": [{"b": 1}, {"a": {"$in": []}}]}))
    assert query.text == "SELECT VALUE COUNT(1) FROM c WHERE false"
    assert query.parameters == [], "a value bound in a folded-away branch is not sent"


@pytest.mark.parametrize("value", ["'; DROP --", '" OR 1=1 --', "a\\", "x\x00y", "@p1", "🚀", "true", "c.id"])
def test_values_are_parameters_never_text(value: str) -> None:
    for spec in ({"a": value}, {"a": {"$ne": value}}, {"a": {"$in": [value]}}, {"a": {"$contains": value}}):
        text, values = where(spec)
        assert values == [value]
        assert "@p0" in text and value not in text.replace(A, "").replace("IS_STRING", "").replace("IS_ARRAY", "")


def test_every_declared_operator_compiles_and_undeclared_ones_raise() -> None:
    assert CosmosDBKnowledgeStore.capabilities.filter_operators == ALL_OPS
    samples = {Op.EQ: "x", Op.NE: 1, Op.GT: 1, Op.GTE: 1.5, Op.LT: -1, Op.LTE: 0, Op.IN: ("x", 2),
               Op.NIN: (True,), Op.EXISTS: False, Op.CONTAINS: "x"}
    for op, value in samples.items():
        assert compile_filter(Comparison("a", op, value), Parameters())
    for case, specs in FILTER_CASES.items():
        for spec in specs:
            if case == "nested_keys":
                with pytest.raises(UnsupportedFilterError, match="nested path"):
                    CosmosDBKnowledgeStore(URL).count("c", filter=spec)
            else:
                assert where(spec)[0]


# -- statements ---------------------------------------------------------------------------------------------------


def test_statements_exact_text() -> None:
    tree = parse_filter({"a": 1})
    assert count_query(None).text == "SELECT VALUE COUNT(1) FROM c" and count_query(None).parameters == []
    assert ids_query(tree, ["u1", "u2"]).text == (
        f"SELECT VALUE c.id FROM c WHERE ARRAY_CONTAINS(@ids, c.id) AND IS_NUMBER({A}) AND {A} = @p0")
    assert ids_query(tree).parameters == [{"name": "@p0", "value": 1}]
    assert existing_query(["u1"]).text == "SELECT VALUE c.doc_id FROM c WHERE ARRAY_CONTAINS(@ids, c.id)"
    assert existing_query(["u1"]).parameters == [{"name": "@ids", "value": ["u1"]}]
    page = page_query(6, "00000000-0000-0000-0000-000000000001", parse_filter({"$or": [{"a": 1}, {"a": 2}]}), False)
    assert page.text == (
        "SELECT TOP @limit c.id, c.doc_id, c.content, c.source_id, c.metadata_json FROM c WHERE c.id > @cursor "
        f"AND (IS_NUMBER({A}) AND {A} = @p0 OR IS_NUMBER({A}) AND {A} = @p1) ORDER BY c.id")
    assert [p["name"] for p in page.parameters] == ["@limit", "@cursor", "@p0", "@p1"]
    assert page_query(2, None, None, True).text == (
        "SELECT TOP @limit c.id, c.doc_id, c.content, c.source_id, c.metadata_json, c.embedding FROM c ORDER BY c.id")
    nearest = nearest_query(20, [0.5, -1.0], tree, exact=False)
    assert nearest.text == (
        "SELECT TOP @limit c.id, c.doc_id, c.content, c.source_id, c.metadata_json, c.embedding FROM c "
        f"WHERE IS_NUMBER({A}) AND {A} = @p0 ORDER BY VectorDistance(c.embedding, @vector)")
    assert {p["name"]: p["value"] for p in nearest.parameters} == {"@limit": 20, "@p0": 1, "@vector": [0.5, -1.0]}
    exact = nearest_query(1, [1.0], None, exact=True)
    assert exact.text.endswith("ORDER BY VectorDistance(c.embedding, @vector, true)")


# -- layout ----------------------------------------------------------------------------------------------------------


def test_filter_fields_keep_what_filters_can_see() -> None:
    fields = layout.filter_fields({"s": "x", "n": 1, "f": 1.5, "b": True, "none": None, "d": {"k": 1}, "bad key!": 1,
                                   "l": ["a", 1, None, {"x": 1}, [2], False, 2**60], "big": 2**60, "huge": 10**400,
                                   "": 1, "with space": "y"})
    assert fields == {"s": "x", "n": 1, "f": 1.5, "b": True, "d": {}, "l": ["a", 1, False, float(2**60)],
                      "big": float(2**60), "with space": "y"}
    assert isinstance(fields["big"], float) and isinstance(fields["n"], int)
    for metadata in FILTER_METADATA:
        json.dumps(layout.filter_fields(metadata), allow_nan=False)  # always valid JSON for Cosmos


def test_item_round_trip_and_ids() -> None:
    doc = KnowledgeDocument(id="a/b?#\\ 🚀", content="c", source_id="s", embedding=[0.1, -2.0, 3e38],
                            metadata={"x": 1.0, "big": 2**53 + 1, "n": None, "nested": {"k": [1]}})
    vector = np.asarray(doc.embedding, dtype=np.float32)
    item = layout.to_item(doc, vector)
    assert item["id"] == layout.item_id(doc.id) and re.fullmatch(r"[0-9a-f\-]{36}", item["id"])
    assert item["id"] != layout.item_id("a/b?#\\ 🚀 ") and item["doc_id"] == doc.id
    back = layout.from_item(json.loads(json.dumps(item)), "sb_c", True)
    assert back.metadata == doc.metadata and type(back.metadata["x"]) is float and back.metadata["big"] == 2**53 + 1
    assert np.array_equal(np.asarray(back.embedding, dtype=np.float32), vector), "float32 values round-trip exactly"
    assert layout.from_item(item, "sb_c", False).embedding is None
    with pytest.raises(OperationFailedError, match="not written by storebridge"):
        layout.from_item({"id": "x", "other": 1}, "sb_c", True)


def test_container_policies_and_collection_info() -> None:
    info = CollectionInfo("c", 12, Distance.L2)
    policy = layout.vector_embedding_policy(info)
    assert policy == {"vectorEmbeddings": [{"path": "/embedding", "dataType": "float32", "dimensions": 12,
                                            "distanceFunction": "euclidean"}]}
    indexing = layout.indexing_policy("diskANN")
    assert indexing["vectorIndexes"] == [{"path": "/embedding", "type": "diskANN"}]
    assert {"path": "/embedding/*"} in indexing["excludedPaths"]
    properties = {"id": "sb_c", "partitionKey": {"paths": ["/id"]}, "vectorEmbeddingPolicy": policy}
    assert layout.collection_info("c", "sb_c", properties) == info
    for distance, name in ((Distance.COSINE, "cosine"), (Distance.DOT, "dotproduct")):
        other = layout.vector_embedding_policy(CollectionInfo("c", 3, distance))
        assert other["vectorEmbeddings"][0]["distanceFunction"] == name
    for foreign in ({"id": "x", "partitionKey": {"paths": ["/pk"]}, "vectorEmbeddingPolicy": policy},
                    {"id": "x", "partitionKey": {"paths": ["/id"]}}):
        assert not layout.is_storebridge_container(foreign)
        with pytest.raises(OperationFailedError, match="not made by storebridge"):
            layout.collection_info("c", "x", foreign)


# -- URLs, options, secrets ---------------------------------------------------------------------------------------


def test_url_forms() -> None:
    s = resolve_settings(URL)
    assert (s.endpoint, s.key, s.database, s.prefix, s.index, s.exact, s.verify) == (
        "https://acct.documents.azure.com:443/", KEY, "storebridge", "sb_", "quantizedFlat", False, True)
    s = resolve_settings("cosmosdb+http://127.0.0.1:8081/mydb?key=k&prefix=p_&index=diskann&exact=true"
                         "&verify=false&throughput=400&consistency=Session&workers=3")
    assert (s.endpoint, s.database, s.prefix, s.index, s.exact, s.verify, s.throughput, s.consistency, s.workers) == (
        "http://127.0.0.1:8081/", "mydb", "p_", "diskANN", True, False, 400, "Session", 3)
    assert resolve_settings("cosmos://acct.documents.azure.com/?key=k&database=d").endpoint == \
        "https://acct.documents.azure.com:443/"
    unencoded = "cosmosdb://acct.documents.azure.com/?key=" + KEY
    assert resolve_settings(unencoded).key == KEY, "an unencoded '+' (read as a space) is restored"


def test_connection_strings() -> None:
    text = f"AccountEndpoint=https://acct.documents.azure.com:443/;AccountKey={KEY};"
    assert parse_connection_string(text) == ("https://acct.documents.azure.com:443/", KEY)
    for settings in (resolve_settings(text, database="d"), resolve_settings(connection_string=text, database="d")):
        assert (settings.endpoint, settings.key, settings.database) == ("https://acct.documents.azure.com:443/",
                                                                         KEY, "d")
    with pytest.raises(ConfigurationError, match="no AccountKey") as caught:
        parse_connection_string("AccountEndpoint=https://a/;Key=" + KEY)
    assert KEY not in str(caught.value)
    with pytest.raises(ConfigurationError, match="http"):
        parse_connection_string(f"AccountEndpoint=acct;AccountKey={KEY}")
    with pytest.raises(ConfigurationError, match="not both"):
        resolve_settings(URL, connection_string=text)


@pytest.mark.parametrize(("url", "kwargs", "message"), [
    ("postgresql://h/db", {}, "not a cosmosdb URL"),
    ("cosmosdb+grpc://h/?key=k", {}, "unknown cosmosdb URL scheme"),
    ("cosmosdb:///?key=k", {}, "names no account host"),
    ("cosmosdb://u:s3cret@h/?key=k", {}, "user name or password"),
    ("cosmosdb://h/?key=k&colour=red", {}, "unknown cosmosdb URL options"),
    ("cosmosdb://h/db?key=k&database=other", {}, "database is given twice"),
    ("cosmosdb://h/a/b?key=k", {}, "one database"),
    ("cosmosdb://h/?key=k&index=hnsw", {}, "index must be one of"),
    ("cosmosdb://h/?key=k&exact=maybe", {}, "true or false"),
    ("cosmosdb://h/?key=k&workers=0", {}, "positive integer"),
    ("cosmosdb://h/?key=k&throughput=lots", {}, "positive integer"),
    ("cosmosdb://h/?key=k&prefix=bad-prefix", {}, "invalid table prefix"),
    ("cosmosdb://h/?key=k", {"key": "s3cret"}, "key is given twice"),
])
def test_bad_options_are_configuration_errors(url: str, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        CosmosDBKnowledgeStore(url, **kwargs)
    assert "s3cret" not in str(caught.value), "secrets never appear in configuration errors"


def test_credentials_are_required_once() -> None:
    with pytest.raises(ConfigurationError, match="account key"):
        CosmosDBKnowledgeStore("cosmosdb://acct.documents.azure.com/")
    with pytest.raises(ConfigurationError, match="not both"):
        CosmosDBKnowledgeStore(URL, credential=object())
    with pytest.raises(ConfigurationError, match="needs a URL"):
        CosmosDBKnowledgeStore()
    with pytest.raises(ConfigurationError, match="client= alone"):
        CosmosDBKnowledgeStore(URL, client=FakeClient())
    assert isinstance(CosmosDBKnowledgeStore("cosmosdb://acct.documents.azure.com/", credential=object()),
                      CosmosDBKnowledgeStore)


def test_secrets_stay_out_of_repr_and_errors() -> None:
    store = CosmosDBKnowledgeStore(URL)
    assert KEY not in repr(store) and "acct.documents.azure.com" in repr(store)
    assert "index='quantizedFlat'" in repr(store)
    error = store._translate_error(RuntimeError(f"auth header for key {KEY} was wrong"), "count")
    assert KEY not in str(error) and "***" in str(error)
    with pytest.raises(ConfigurationError) as caught:
        CosmosDBKnowledgeStore(URL + "&bogus=1")
    assert KEY not in str(caught.value)


def test_capabilities_follow_the_index_options() -> None:
    assert CosmosDBKnowledgeStore(URL).capabilities.recall_floor < 1.0
    assert CosmosDBKnowledgeStore(URL, index="flat").capabilities.recall_floor == 1.0
    assert CosmosDBKnowledgeStore(URL, exact=True).capabilities.recall_floor == 1.0
    caps = CosmosDBKnowledgeStore.capabilities
    assert caps.distances == frozenset(Distance) and not caps.nested_keys and not caps.client_side_filters


def test_unreachable_account_is_a_typed_error() -> None:
    store = CosmosDBKnowledgeStore(f"cosmosdb://127.0.0.1:1/?key={KEY.replace('+', '%2B')}")
    with pytest.raises(ConnectionFailedError, match="cannot reach") as caught:
        store.list_collections()
    assert KEY not in str(caught.value)
    store.close()


# -- how the store drives the client (a recording fake, not Cosmos DB) --------------------------------------------


def _http_error(status: int, message: str = "boom") -> cosmos_errors.CosmosHttpResponseError:
    error = cosmos_errors.CosmosHttpResponseError(status_code=status, message=message)
    error.status_code = status
    return error


class FakeContainer:
    def __init__(self, client: FakeClient, name: str) -> None:
        self.client, self.name = client, name

    def _record(self, *call: Any) -> None:
        self.client.calls.append((self.name, *call))
        if self.client.fail is not None:
            raise self.client.fail

    def read(self) -> dict[str, Any]:
        self._record("read")
        if self.name not in self.client.containers:
            raise cosmos_errors.CosmosResourceNotFoundError(status_code=404, message="no container")
        return self.client.containers[self.name]

    def query_items(self, query: str, parameters: list[Any], enable_cross_partition_query: bool) -> list[Any]:
        self._record("query", query, parameters, enable_cross_partition_query)
        return self.client.results.pop(0) if self.client.results else []

    def upsert_item(self, item: dict[str, Any]) -> None:
        self._record("upsert", item["id"])

    def delete_item(self, item: str, partition_key: str) -> None:
        self._record("delete", item, partition_key)
        if item in self.client.missing:
            raise cosmos_errors.CosmosResourceNotFoundError(status_code=404, message="gone")

    def read_items(self, items: list[tuple[str, str]], max_concurrency: int) -> list[Any]:
        self._record("read_items", items)
        return self.client.results.pop(0) if self.client.results else []


class FakeDatabase:
    def __init__(self, client: FakeClient) -> None:
        self.client = client

    def get_container_client(self, name: str) -> FakeContainer:
        return FakeContainer(self.client, name)

    def create_container(self, name: str, partition_key: Any, indexing_policy: Any, vector_embedding_policy: Any,
                         **options: Any) -> None:
        self.client.calls.append((name, "create", partition_key, indexing_policy, vector_embedding_policy, options))
        self.client.containers[name] = {"id": name, "partitionKey": {"paths": [partition_key["paths"][0]]},
                                        "vectorEmbeddingPolicy": vector_embedding_policy}

    def delete_container(self, name: str) -> None:
        self.client.calls.append((name, "drop"))
        del self.client.containers[name]

    def list_containers(self) -> list[dict[str, Any]]:
        return list(self.client.containers.values())


class FakeClient:
    """Records what the store asks of a ``CosmosClient``; answers queries with queued results."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.containers: dict[str, dict[str, Any]] = {}
        self.results: list[list[Any]] = []
        self.missing: set[str] = set()
        self.fail: Exception | None = None
        self.closed = False

    def get_database_client(self, name: str) -> FakeDatabase:
        self.database = name
        return FakeDatabase(self)

    def create_database_if_not_exists(self, name: str) -> FakeDatabase:
        self.calls.append((name, "create database"))
        return FakeDatabase(self)

    def close(self) -> None:
        self.closed = True


def _fake_store(**options: Any) -> tuple[CosmosDBKnowledgeStore, FakeClient]:
    client = FakeClient()
    store = CosmosDBKnowledgeStore(client=client, database="db", **options)  # type: ignore[arg-type]
    return store, client


def test_create_collection_sends_the_documented_policies() -> None:
    store, client = _fake_store(throughput=400, index="flat")
    assert store.create_collection("docs", 4, "dot") == CollectionInfo("docs", 4, Distance.DOT)
    [(database, _), (name, _, partition_key, indexing, vectors, options)] = [
        c for c in client.calls if c[1] in ("create database", "create")]
    assert (database, name, partition_key["paths"], options) == ("db", "sb_docs", ["/id"], {"offer_throughput": 400})
    assert indexing["vectorIndexes"] == [{"path": "/embedding", "type": "flat"}]
    assert vectors["vectorEmbeddings"][0] == {"path": "/embedding", "dataType": "float32", "dimensions": 4,
                                              "distanceFunction": "dotproduct"}
    assert store.get_collection("docs") == CollectionInfo("docs", 4, Distance.DOT)
    assert store.list_collections() == ["docs"]
    with pytest.raises(NotSupportedError, match="505"):
        store.create_collection("wide", 506)
    store.close()
    assert not client.closed, "a client passed in is never closed by the store"


def test_writes_reads_and_deletes_use_point_operations() -> None:
    store, client = _fake_store(workers=2)
    store.create_collection("c", 2)
    docs = [KnowledgeDocument(id=f"d{i}", embedding=[1.0, float(i)]) for i in range(3)]
    client.results = [[]]  # the duplicate check finds nothing
    assert store.insert("c", docs) == ["d0", "d1", "d2"]
    [check] = [c for c in client.calls if c[1] == "query"]
    assert check[2] == "SELECT VALUE c.doc_id FROM c WHERE ARRAY_CONTAINS(@ids, c.id)" and check[4] is True
    assert check[3] == [{"name": "@ids", "value": [layout.item_id(d.id) for d in docs]}]
    assert sorted(c[2] for c in client.calls if c[1] == "upsert") == sorted(layout.item_id(d.id) for d in docs)
    client.results = [[layout.to_item(docs[1], np.asarray([1.0, 1.0], dtype=np.float32))]]
    assert [d.id for d in store.get("c", ["d1", "missing"])] == ["d1"]
    [read] = [c for c in client.calls if c[1] == "read_items"]
    assert read[2] == [(layout.item_id("d1"),) * 2, (layout.item_id("missing"),) * 2]
    client.missing = {layout.item_id("d2")}
    assert store.delete("c", ["d0", "d2"]) == 1, "a 404 on delete is not counted"
    deletes = [c[2:] for c in client.calls if c[1] == "delete"]
    assert sorted(deletes) == sorted([(layout.item_id("d0"),) * 2, (layout.item_id("d2"),) * 2])
    client.calls.clear()
    client.results = [[layout.item_id("d0")]]
    assert store.delete("c", filter={"a": 1}) == 1
    query = next(c for c in client.calls if c[1] == "query")
    assert query[2] == 'SELECT VALUE c.id FROM c WHERE IS_NUMBER(c.fields["a"]) AND c.fields["a"] = @p0'


def test_insert_of_an_existing_id_writes_nothing() -> None:
    store, client = _fake_store()
    store.create_collection("c", 2)
    client.results = [["d1"]]
    with pytest.raises(AlreadyExistsError, match="d1"):
        store.insert("c", [KnowledgeDocument(id=f"d{i}", embedding=[1.0, 0.0]) for i in range(3)])
    assert not [c for c in client.calls if c[1] == "upsert"]


def test_search_reranks_the_engines_candidates_exactly() -> None:
    store, client = _fake_store()
    store.create_collection("c", 2, "l2")
    far, near = (KnowledgeDocument(id=i, embedding=v) for i, v in (("far", [5.0, 5.0]), ("near", [1.0, 0.0])))
    client.results = [[layout.to_item(doc, np.asarray(doc.embedding, dtype=np.float32)) for doc in (far, near)]]
    hits = store.search("c", [1.0, 0.0], k=1, filter={"a": {"$exists": True}})
    assert [(h.id, h.distance) for h in hits] == [("near", 0.0)]
    [query] = [c for c in client.calls if c[1] == "query"]
    assert query[2].endswith("ORDER BY VectorDistance(c.embedding, @vector)")
    assert {p["name"]: p["value"] for p in query[3]}["@limit"] == 1 + store.rerank_margin


def test_engine_errors_become_typed_errors() -> None:
    store, client = _fake_store()
    store.create_collection("c", 2)
    cases: list[tuple[Exception, type[Exception]]] = [
        (_http_error(401), ConfigurationError), (_http_error(403), ConfigurationError),
        (_http_error(404), CollectionNotFoundError), (_http_error(409), AlreadyExistsError),
        (_http_error(413), ValidationError), (_http_error(429), OperationFailedError),
        (_http_error(500), OperationFailedError), (ServiceRequestError("refused"), ConnectionFailedError),
    ]
    for error, expected in cases:
        client.fail = error
        with pytest.raises(expected, match="cosmosdb describe collection failed") as caught:
            store.count("c")
        assert caught.value.__cause__ is error
    info, query = CollectionInfo("c", 2, Distance.COSINE), np.asarray([1.0, 0.0], dtype=np.float32)
    client.fail = _http_error(400, "Unsupported ORDER BY clause")
    with pytest.raises(NotSupportedError, match="emulator has no VectorDistance"):
        store._engine_nearest(info, query, 5, None)
    client.fail = _http_error(400, "Syntax error near WHERE")
    with pytest.raises(cosmos_errors.CosmosHttpResponseError):  # other 400s go to the template's translation
        store._engine_nearest(info, query, 5, None)
    client.fail = None
    store.close()
    with pytest.raises(StoreClosedError):
        store.count("c")


def test_scroll_cursors_are_item_ids() -> None:
    store, client = _fake_store()
    store.create_collection("c", 2)
    docs = [KnowledgeDocument(id=f"d{i}", embedding=[1.0, float(i)]) for i in range(3)]
    client.results = [[layout.to_item(d, np.asarray(d.embedding, dtype=np.float32)) for d in docs]]
    page = store.scroll("c", limit=2)
    assert [d.id for d in page.documents] == ["d0", "d1"] and page.next_cursor == layout.item_id("d1")
    for bad in ("d1", "not-a-uuid", layout.item_id("d1").upper()):
        with pytest.raises(ValidationError, match="cursor"):
            store.scroll("c", cursor=bad)
    with pytest.raises(InvalidIdentifierError):
        store.count("bad name")


def test_the_query_layer_loads_without_the_client_library() -> None:
    import subprocess
    import sys

    code = ("import sys; import storebridge.adapters.cosmosdb._query, storebridge.adapters.cosmosdb._layout; "
            "print(any(m == 'azure' or m.startswith('azure.') for m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert result.stdout.strip() == "False"
