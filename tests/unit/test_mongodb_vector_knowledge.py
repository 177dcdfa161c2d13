"""The MongoDB vector knowledge store without Atlas: the translation layer (``_vector_query``) pinned as data
and checked against the reference evaluator through mongomock's MQL matcher, URL and option handling,
secrets, error mapping, and the whole conformance suite on a stand-in.

The stand-in (:class:`FakeAtlas`) is NOT Atlas: mongomock (an independent MQL implementation) holds the
data, and a brute-force ``$vectorSearch`` answers from a snapshot of it that lags one call behind (so
the store's wait for the search index is exercised), applies ``filter`` with mongomock's matcher, and
refuses what Atlas documents as unsupported (operators outside ``$eq $ne $gt $gte $lt $lte $in $nin
$and $or $not $nor``, paths not declared ``filter``, numCandidates out of bounds), answering a missing or
unready index with no results as Atlas does. Real Atlas runs the conformance suite in
``tests/conformance/test_knowledge_mongodb_vector.py`` when STOREBRIDGE_TEST_MONGODB_VECTOR_URL is set.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pytest
from pymongo import errors as mongo_errors

from storebridge.adapters.mongodb import _vector_query as v
from storebridge.adapters.mongodb.knowledge import MongoDBVectorKnowledgeStore, SearchIndexLagWarning
from storebridge.errors import (
    ConfigurationError,
    ConnectionFailedError,
    InvalidIdentifierError,
    NotSupportedError,
    OperationFailedError,
    ValidationError,
)
from storebridge.filters import ALL_OPS, Comparison, Op, evaluate, parse_filter
from storebridge.models import Distance, KnowledgeDocument
from storebridge.testing import KnowledgeStoreSuite, StoreFactory
from storebridge.testing.data import FILTER_CASES, filter_documents
from storebridge.vectors import metadata_json

mongomock = pytest.importorskip("mongomock", reason="mongomock is a test requirement (pip install mongomock)")
from mongomock import filtering

HOSTILE_VALUES = ['a"b', "it's", "{x}", "a|b", "$where", "$gt", "-neg", "*", "a b", "", "ünï 🚀", "nul\x00byte",
                  "back\\slash", "x" * 300, "\n\t", "fid:s", "0:p"]
_ALLOWED_OPERATORS = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$and", "$or", "$not", "$nor"}


def compiled(spec: Any, slots: Mapping[str, int] | None = None) -> v.CompiledFilter:
    return v.compile_filter(parse_filter(spec), {v.field_id("k"): 3} if slots is None else slots)


def t(code: str, key: str = "k") -> str:
    return v.tag(key, code)


# -- encodings ---------------------------------------------------------------------------------------------


def test_value_codes_keep_types_apart() -> None:
    assert v.value_code("ann") == "sann" and v.value_code("") == "s"
    assert v.value_code(True) == "bt" and v.value_code(False) == "bf"
    assert v.value_code(1) == v.value_code(1.0) == "n1" and v.value_code(-0.0) == v.value_code(0) == "n0"
    assert v.value_code(2**53 + 1) != v.value_code(2.0**53) and v.value_code(2**53) == v.value_code(2.0**53)
    assert v.value_code(1e-9) == "n1e-09" and v.value_code("1") != v.value_code(1) != v.value_code(True)
    assert v.value_code(None) is None and v.value_code([1]) is None and v.value_code({"a": 1}) is None
    assert v.value_code("x" * 256) == "s" + "x" * 256 and v.value_code("x" * 257).startswith("h")
    assert len({v.value_code(value) for value in HOSTILE_VALUES}) == len(HOSTILE_VALUES)


def test_tags_name_the_key_by_hex() -> None:
    assert v.tag("year", "n2020") == "79656172:n2020"
    assert v.tag("with space", "p") == b"with space".hex() + ":p"
    long = v.field_id("k" * 25)
    assert long.startswith("h") and len(long) == 41
    for key in ("a.b", "$x", "a:b", "日本", "a'b"):
        assert ":" not in v.field_id(key) and "." not in v.field_id(key) and "$" not in v.field_id(key)


def test_document_layout() -> None:
    doc = KnowledgeDocument(id="d1", content="c", source_id="s", metadata={
        "num": 2.5, "flag": True, "text": "ann", "tags": ["ml", 1, True, None, {"x": 1}], "none": None,
        "nested": {"k": "v"}, "bad.key": 1, "$x": 2, "big": 2**62})
    slots = {v.field_id("num"): 0, v.field_id("big"): 1}
    stored = v.document(doc, metadata_json(doc), [0.5, 0.25], b"ORIG", slots, "tok")
    assert stored["_id"] == "d1" and stored["content"] == "c" and stored["source"] == "s" and stored["orig"] == b"ORIG"
    assert stored["vec"] == [0.5, 0.25] and stored["_sb_w"] == "tok" and stored["meta"] == metadata_json(doc)
    assert stored["_sb_n0"] == 2.5 and stored["_sb_n1"] == float(2**62) and isinstance(stored["_sb_n1"], float)
    assert stored["_sb_t"] == [
        "_", t("p", "num"), t("n2.5", "num"), t("p", "flag"), t("bt", "flag"), t("p", "text"), t("sann", "text"),
        t("p", "tags"), t("lsml", "tags"), t("ln1", "tags"), t("lbt", "tags"), t("p", "nested"), t("p", "big"),
        t("n" + str(2**62), "big")]
    assert v.numeric_keys(doc) == ["num", "big"]
    bare = v.document(KnowledgeDocument(id="e"), "{}", [1.0], None, {}, "tok")
    assert "source" not in bare and "orig" not in bare and bare["_sb_t"] == ["_"]
    with pytest.raises(ValidationError, match="float64"):
        v.document(KnowledgeDocument(id="h", metadata={"n": 10**400}), "{}", [1.0], None, {v.field_id("n"): 0}, "t")


def test_names_and_prefix_validation() -> None:
    assert v.registry_name("kb_") == "kb_.registry" and v.check_prefix("") == ""
    for bad in ("a.b", "a$", "a b", "x" * 41, None, "a\x00"):
        with pytest.raises(InvalidIdentifierError):
            v.check_prefix(bad)


# -- filters: exact output -----------------------------------------------------------------------------------


def test_every_operator_compiles_exactly() -> None:
    cases: list[tuple[Any, Any]] = [
        ({"k": "ann"}, {"_sb_t": t("sann")}),
        ({"k": {"$ne": 1}}, {"_sb_t": {"$ne": t("n1")}}),
        ({"k": {"$in": ["a", 1.0, True, "a"]}}, {"_sb_t": {"$in": [t("sa"), t("n1"), t("bt")]}}),
        ({"k": {"$nin": ["a"]}}, {"_sb_t": {"$nin": [t("sa")]}}),
        ({"k": {"$exists": True}}, {"_sb_t": t("p")}),
        ({"k": {"$exists": False}}, {"_sb_t": {"$ne": t("p")}}),
        ({"k": {"$contains": "ml"}}, {"_sb_t": t("lsml")}),
        ({"k": {"$gt": 1}}, {"_sb_n3": {"$gt": 1.0}}),
        ({"k": {"$gte": 1.5}}, {"_sb_n3": {"$gte": 1.5}}),
        ({"k": {"$lt": -2}}, {"_sb_n3": {"$lt": -2.0}}),
        ({"k": {"$lte": 0}}, {"_sb_n3": {"$lte": 0.0}}),
        ({"k": {"$gt": 0, "$lt": 5}}, {"$and": [{"_sb_n3": {"$gt": 0.0}}, {"_sb_n3": {"$lt": 5.0}}]}),
        ({"$or": [{"k": "a"}, {"k": 2}]}, {"$or": [{"_sb_t": t("sa")}, {"_sb_t": t("n2")}]}),
        ({"$not": {"k": "a"}}, {"$nor": [{"_sb_t": t("sa")}]}),
        ({"$not": {"$or": [{"k": "a"}, {"k": {"$gt": 1}}]}},
         {"$nor": [{"$or": [{"_sb_t": t("sa")}, {"_sb_n3": {"$gt": 1.0}}]}]}),
    ]
    for spec, expected in cases:
        got = compiled(spec)
        assert (got.mql, got.nothing) == (expected, False), spec
    assert type(compiled({"k": {"$gt": 1}}).mql["_sb_n3"]["$gt"]) is float  # type: ignore[index]


def test_constants_are_decided_before_the_engine() -> None:
    assert compiled({"k": {"$in": []}}).nothing and compiled({"k": {"$nin": []}}).mql is None
    assert compiled(None).mql is None and not compiled(None).nothing
    assert compiled({"$and": [{"k": {"$in": []}}, {"k": 1}]}).nothing
    assert compiled({"$or": [{"k": {"$in": []}}, {"k": 1}]}).mql == {"_sb_t": t("n1")}
    assert compiled({"$not": {"k": {"$nin": []}}}).nothing
    assert compiled({"other": {"$gt": 1}}).nothing  # no numeric slot: no document has a number there
    assert compiled({"$not": {"other": {"$gt": 1}}}).mql is None
    assert compiled({"k": {"$gt": math.inf}}).nothing and compiled({"k": {"$lt": -math.inf}}).nothing
    assert compiled({"k": {"$lt": math.inf}}).mql == {"_sb_n3": {"$gte": -1.7976931348623157e308}}
    assert v.compile_filter(Comparison("k", Op.GT, 10**400), {v.field_id("k"): 0}).nothing
    assert v.compile_filter(Comparison("k", Op.LTE, 10**400), {v.field_id("k"): 0}).mql == {
        "_sb_n0": {"$gte": -1.7976931348623157e308}}
    where = compiled({"k": 1})
    assert where.restricted({"_id": {"$in": ["a"]}}) == {"$and": [{"_id": {"$in": ["a"]}}, {"_sb_t": t("n1")}]}
    assert compiled(None).restricted({"_id": 1}) == {"_id": 1}


def _field_names(node: Any) -> set[str]:
    if isinstance(node, dict):
        return {k for k in node if not k.startswith("$")} | set().union(*(_field_names(x) for x in node.values()))
    if isinstance(node, list):
        return set().union(*(_field_names(x) for x in node)) if node else set()
    return set()


def _operators(node: Any) -> set[str]:
    if isinstance(node, dict):
        return {k for k in node if k.startswith("$")} | set().union(*(_operators(x) for x in node.values()))
    if isinstance(node, list):
        return set().union(*(_operators(x) for x in node)) if node else set()
    return set()


def test_hostile_values_are_bound_as_values_and_only_fixed_fields_are_named() -> None:
    for value in HOSTILE_VALUES:
        for spec in ({"key": value}, {"key": {"$ne": value}}, {"key": {"$in": [value, "x"]}},
                     {"key": {"$contains": value}}, {"with space": {"$nin": [value]}}):
            got = compiled(spec)
            assert _field_names(got.mql) == {"_sb_t"}, (value, got.mql)
            assert _operators(got.mql) <= _ALLOWED_OPERATORS
        assert compiled({"key": value}).mql == {"_sb_t": v.tag("key", str(v.value_code(value)))}


def test_declared_operators_all_compile_to_what_vector_search_accepts() -> None:
    assert MongoDBVectorKnowledgeStore.capabilities.filter_operators == ALL_OPS
    for case, specs in FILTER_CASES.items():
        if case == "nested_keys":
            continue
        for spec in specs:
            got = v.compile_filter(parse_filter(spec), {v.field_id(k): i for i, k in enumerate(("num", "flag", "text",
                                                                                                "a-b"))})
            assert _operators(got.mql) <= _ALLOWED_OPERATORS, spec
            assert _field_names(got.mql) <= {"_sb_t", "_sb_n0", "_sb_n1", "_sb_n2", "_sb_n3"}, spec


def test_compiled_filters_agree_with_the_reference_evaluator_under_mql() -> None:
    """Through mongomock's MQL matcher (an independent implementation of MQL's array and missing-field rules)."""
    docs = filter_documents()
    keys = sorted({k for d in docs for k in v.numeric_keys(d)})
    slots = {v.field_id(k): i for i, k in enumerate(keys)}
    stored = [v.document(d, metadata_json(d), d.embedding or [], None, slots, "t") for d in docs]
    checked = 0
    for case, specs in FILTER_CASES.items():
        if case == "nested_keys":
            continue
        for spec in specs:
            got = v.compile_filter(parse_filter(spec), slots)
            expected = {d.id for d in docs if evaluate(spec, d.metadata)}
            matched = set() if got.nothing else {s["_id"] for s in stored if filtering.filter_applies(got.mql or {}, s)}
            assert matched == expected, (case, spec, got)
            checked += 1
    assert checked > 100


# -- index, pipelines, cursors -------------------------------------------------------------------------------


def test_index_definition() -> None:
    assert v.index_definition(8, Distance.L2, 2) == {"fields": [
        {"type": "vector", "path": "vec", "numDimensions": 8, "similarity": "euclidean"},
        {"type": "filter", "path": "_sb_t"}, {"type": "filter", "path": "_sb_w"}, {"type": "filter", "path": "_id"},
        {"type": "filter", "path": "_sb_n0"}, {"type": "filter", "path": "_sb_n1"}]}
    assert v.index_definition(3, Distance.COSINE, 0)["fields"][0]["similarity"] == "cosine"
    assert v.index_definition(3, Distance.DOT, 0)["fields"][0]["similarity"] == "dotProduct"


def test_vector_search_stage_bounds_num_candidates() -> None:
    where = compiled({"k": 1})
    assert v.vector_search_stage([0.5, 1.0], 26, where, exact=False) == {"$vectorSearch": {
        "index": "storebridge_vector", "path": "vec", "queryVector": [0.5, 1.0], "limit": 26, "numCandidates": 260,
        "filter": {"_sb_t": t("n1")}}}
    assert v.candidates(1) == 100 and v.candidates(999) == 9990 and v.candidates(1001) == 10_000
    assert v.vector_search_stage([1.0], 10_000, compiled(None), exact=False)["$vectorSearch"]["numCandidates"] == 10_000
    big = v.vector_search_stage([1.0], 10_001, compiled(None), exact=False)["$vectorSearch"]
    assert big["exact"] is True and "numCandidates" not in big and "filter" not in big
    assert v.vector_search_stage([1.0], 5, compiled(None), exact=True)["$vectorSearch"]["exact"] is True
    assert v.search_pipeline([1.0], 3, compiled(None), exact=False)[1] == {
        "$project": {"content": 1, "source": 1, "meta": 1, "vec": 1, "orig": 1}}
    assert v.visible_pipeline([1.0], {"_sb_w": "x"}, 4) == [
        {"$vectorSearch": {"index": "storebridge_vector", "path": "vec", "queryVector": [1.0], "exact": True,
                           "limit": 4, "filter": {"_sb_w": "x"}}}, {"$count": "n"}]


def test_scroll_cursors() -> None:
    for last in ("a", "ünï 🚀", "a\x00b", "x" * 300):
        assert v.decode_cursor(v.encode_cursor(last)) == last
    for bad in ("", "i", "iz", "i0", "iff", "x61", "i61 "):
        with pytest.raises(ValidationError):
            v.decode_cursor(bad)


# -- URL, options, secrets, errors ---------------------------------------------------------------------------


def test_url_options_are_taken_out_and_the_rest_reaches_the_driver() -> None:
    store = MongoDBVectorKnowledgeStore(
        "mongodb://u:pw@h1:27017,h2:27018/rag?replicaSet=rs0&prefix=kb_&exact=true&numeric_slots=8&sync_timeout=0"
        "&index_timeout=9&serverSelectionTimeoutMS=100")
    assert (store.prefix, store.exact, store.numeric_slots, store.sync_timeout, store.index_timeout) == (
        "kb_", True, 8, 0.0, 9.0)
    assert store.capabilities.recall_floor == 1.0 and MongoDBVectorKnowledgeStore.capabilities.recall_floor == 0.9
    assert store._options.database == "rag" and store._options.hosts == "h1:27017,h2:27018"
    assert "pw" not in repr(store) and "rag" in repr(store)
    store.close()


@pytest.mark.parametrize(("url", "kwargs", "text"), [
    ("mongodb://h/?prefix=a", {"prefix": "b"}, "twice"),
    ("mongodb://h/?collection=x", {}, "prefix="),
    ("mongodb://h/?namespace=x", {}, "prefix="),
    ("mongodb://h/?numeric_slots=-1", {}, "numeric_slots"),
    ("mongodb://h/?numeric_slots=2.5", {}, "numeric_slots"),
    ("mongodb://h/?exact=maybe", {}, "exact"),
    ("mongodb://h/?sync_timeout=-1", {}, "sync_timeout"),
    ("mongodb://h/?index_timeout=0", {}, "index_timeout"),
    ("redis://h", {}, "MongoDB URL"),
    ("mongodb://h", {"client": object()}, "not both"),
])
def test_bad_options(url: str, kwargs: dict[str, Any], text: str) -> None:
    with pytest.raises(ConfigurationError, match=text):
        MongoDBVectorKnowledgeStore(url, **kwargs)
    with pytest.raises(InvalidIdentifierError):
        MongoDBVectorKnowledgeStore("mongodb://h/", prefix="a.b")


def test_secrets_stay_out_of_errors() -> None:
    store = MongoDBVectorKnowledgeStore("mongodb://user:hunter2secret@127.0.0.1:1/?serverSelectionTimeoutMS=100")
    with pytest.raises(ConnectionFailedError) as caught:
        store.list_collections()
    assert "hunter2secret" not in str(caught.value) and "127.0.0.1:1" in str(caught.value)
    assert "hunter2secret" not in repr(store)
    store.close()


@pytest.mark.parametrize(("error", "expected"), [
    (mongo_errors.OperationFailure("no such command: 'createSearchIndexes'", 59), NotSupportedError),
    (mongo_errors.OperationFailure("Unrecognized pipeline stage name: '$vectorSearch'", 40324), NotSupportedError),
    (mongo_errors.OperationFailure("Using Atlas Search Database Commands and the $listSearchIndexes aggregation "
                                   "stage requires additional configuration.", 31082), NotSupportedError),
    (mongo_errors.OperationFailure("Path '_sb_n9' needs to be indexed as filter", 8), OperationFailedError),
    (mongo_errors.ServerSelectionTimeoutError("no servers"), ConnectionFailedError),
])
def test_error_mapping(error: Exception, expected: type[Exception]) -> None:
    store = MongoDBVectorKnowledgeStore("mongodb://user:pw@h/db")
    translated = store._translate_error(error, "search")
    assert type(translated) is expected, translated
    assert "pw@" not in str(translated)
    store.close()


# -- a stand-in for Atlas (see the module docstring: NOT the engine) ------------------------------------------


class FakeSearchCollection:
    def __init__(self, inner: Any, atlas: FakeAtlas) -> None:
        self.inner, self.atlas = inner, atlas

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def bulk_write(self, requests: list[Any], ordered: bool = True) -> Any:
        # mongomock 4.3 cannot take pymongo 4.x operation objects: replay them one by one.
        for op in requests:
            self.atlas.calls.append(("replace_one", op._filter, op._upsert))
            self.inner.replace_one(op._filter, op._doc, upsert=op._upsert)

    def drop(self) -> None:
        index = self.atlas.indexes.get(self.inner.name)
        if index is not None:  # like Atlas, the index takes a while to go
            index["deleting"] = self.atlas.deleting_polls
        self.inner.drop()

    def create_search_index(self, model: Any) -> str:
        document = model.document
        self.atlas.calls.append(("create_search_index", self.inner.name, document))
        if self.inner.name in self.atlas.indexes:
            raise mongo_errors.OperationFailure(f"Index {document['name']} already exists", 68)
        self.atlas.indexes[self.inner.name] = {"name": document["name"], "type": document["type"],
                                               "definition": document["definition"], "polls": 0, "snapshot": {},
                                               "searches": 0}
        return str(document["name"])

    def list_search_indexes(self, name: str | None = None) -> list[dict[str, Any]]:
        index = self.atlas.indexes.get(self.inner.name)
        if index is None or (name is not None and index["name"] != name):
            return []
        if "deleting" in index:
            index["deleting"] -= 1
            if index["deleting"] < 0:
                del self.atlas.indexes[self.inner.name]
                return []
            return [{"name": index["name"], "type": index["type"], "status": "DELETING", "queryable": True}]
        index["polls"] += 1
        ready = index["polls"] > self.atlas.ready_after
        return [{"name": index["name"], "type": index["type"], "status": "READY" if ready else "BUILDING",
                 "queryable": ready, "latestDefinition": index["definition"]}]

    def aggregate(self, pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if "$vectorSearch" not in pipeline[0]:
            return list(self.inner.aggregate(pipeline))
        stage = pipeline[0]["$vectorSearch"]
        self.atlas.calls.append(("$vectorSearch", self.inner.name, stage))
        index = self.atlas.indexes.get(self.inner.name)
        if (index is None or "deleting" in index or index["polls"] <= self.atlas.ready_after
                or stage["index"] != index["name"]):
            return []  # Atlas answers a missing or unready index with nothing
        results = self.atlas.search(index, stage, self.inner)
        for later in pipeline[1:]:
            if "$project" in later:
                keep = set(later["$project"]) | {"_id"}
                results = [{k: val for k, val in doc.items() if k in keep} for doc in results]
            elif "$count" in later:
                results = [{later["$count"]: len(results)}] if results else []
            else:
                raise AssertionError(f"stage {later} not modelled")
        return results


class FakeDatabase:
    def __init__(self, inner: Any, atlas: FakeAtlas) -> None:
        self.inner, self.atlas = inner, atlas

    def get_collection(self, name: str, **options: Any) -> FakeSearchCollection:
        return FakeSearchCollection(self.inner.get_collection(name, **options), self.atlas)

    def create_collection(self, name: str) -> Any:
        return self.inner.create_collection(name)


class FakeAtlas:
    """A pymongo-like client: mongomock data plus a brute-force, one-call-behind vector search."""

    def __init__(self, *, ready_after: int = 1) -> None:
        self.client = mongomock.MongoClient()
        self.indexes: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.ready_after = ready_after
        #: How many status polls a dropped collection's index stays in DELETING.
        self.deleting_polls = 2
        #: A frozen index never catches up (a search node that fell behind).
        self.frozen = False
        self.closed = False

    def get_database(self, name: str) -> FakeDatabase:
        return FakeDatabase(self.client.get_database(name), self)

    def close(self) -> None:
        self.closed = True

    def search(self, index: dict[str, Any], stage: dict[str, Any], collection: Any) -> list[dict[str, Any]]:
        fields = index["definition"]["fields"]
        vector_field = fields[0]
        filters = {f["path"] for f in fields if f["type"] == "filter"}
        assert stage["path"] == vector_field["path"] and len(stage["queryVector"]) == vector_field["numDimensions"]
        if stage.get("exact"):
            assert "numCandidates" not in stage
        else:
            assert stage["limit"] <= stage["numCandidates"] <= 10_000, stage
        where = stage.get("filter", {})
        if _operators(where) - _ALLOWED_OPERATORS or _field_names(where) - filters:
            raise mongo_errors.OperationFailure(f"unsupported vector search filter {where}", 8)
        index["searches"] += 1
        if not self.frozen and index["searches"] % 2 == 0:  # the index catches up every other search
            index["snapshot"] = {doc["_id"]: doc for doc in collection.find({})}
        query = np.asarray(stage["queryVector"], dtype=np.float64)
        scored = []
        for doc in index["snapshot"].values():
            if not filtering.filter_applies(where, doc):
                continue
            vec = np.asarray(doc["vec"], dtype=np.float64)
            if vector_field["similarity"] == "euclidean":
                score = 1 / (1 + float(np.linalg.norm(vec - query)))
            elif vector_field["similarity"] == "cosine":
                score = float(vec @ query / (np.linalg.norm(vec) * np.linalg.norm(query)))
            else:
                score = float(vec @ query)
            scored.append((score, doc))
        scored.sort(key=lambda pair: -pair[0])
        return [dict(doc) for _, doc in scored[:stage["limit"]]]


class TestAgainstAStandIn(KnowledgeStoreSuite):
    """The whole suite on the stand-in: the store's own logic (registry, slots, index waits, the write
    barrier, cursors, error paths) end to end. Not evidence about Atlas itself."""

    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        atlas = FakeAtlas(ready_after=0)
        return lambda: MongoDBVectorKnowledgeStore(client=atlas, database="t", sync_timeout=5)  # type: ignore[arg-type]


@pytest.fixture
def atlas() -> Iterator[FakeAtlas]:
    yield FakeAtlas()


def _store(atlas: FakeAtlas, **options: Any) -> MongoDBVectorKnowledgeStore:
    return MongoDBVectorKnowledgeStore(client=atlas, database="t", **options)  # type: ignore[arg-type]


def test_create_waits_for_a_queryable_index(atlas: FakeAtlas) -> None:
    atlas.ready_after = 3
    store = _store(atlas, numeric_slots=2)
    store.create_collection("c", 4, "dot")
    [(_, name, model)] = [c for c in atlas.calls if c[0] == "create_search_index"]
    assert name == "sbk_c" and model == {"name": "storebridge_vector", "type": "vectorSearch",
                                         "definition": v.index_definition(4, Distance.DOT, 2)}
    assert atlas.indexes["sbk_c"]["polls"] == 4
    registry = atlas.client.t.get_collection("sbk_.registry").find_one({"_id": "c"})
    assert registry == {"_id": "c", "state": "ready", "dimension": 4, "distance": "dot", "numeric_slots": 2,
                        "slots": {}, "nslots": 0}
    assert store.list_collections() == ["c"]
    store.close()
    assert not atlas.closed, "a caller's client is never closed"


def test_an_interrupted_create_is_resumed(atlas: FakeAtlas) -> None:
    atlas.client.t.get_collection("sbk_.registry").insert_one(
        {"_id": "c", "state": "creating", "dimension": 4, "distance": "cosine", "numeric_slots": 64, "slots": {},
         "nslots": 0})
    store = _store(atlas)
    assert store.list_collections() == [] and not store.has_collection("c")
    store.create_collection("c", 4)
    assert store.list_collections() == ["c"]
    with pytest.raises(Exception, match="exists"):
        store.create_collection("c", 5)


def test_index_timeout_and_failure_are_errors(atlas: FakeAtlas) -> None:
    atlas.ready_after = 10**9
    store = _store(atlas, index_timeout=0.3)
    with pytest.raises(OperationFailedError, match="not queryable after 0.3 s.*resume"):
        store.create_collection("c", 2)
    assert not store.has_collection("c")
    atlas.ready_after = 0
    store.create_collection("c", 2)  # resumed
    assert store.has_collection("c")


def test_writes_wait_until_the_search_index_has_them(atlas: FakeAtlas) -> None:
    store = _store(atlas)
    store.create_collection("c", 2, "l2")
    docs = [KnowledgeDocument(id=f"d{i}", embedding=[float(i), 1.0], metadata={"i": i}) for i in range(5)]
    store.insert("c", docs)
    assert {h.id for h in store.search("c", [0.0, 1.0], k=5)} == {d.id for d in docs}
    barrier = [c for c in atlas.calls if c[0] == "$vectorSearch" and "_sb_w" in c[2].get("filter", {})]
    assert barrier and all(c[2]["exact"] is True for c in barrier)
    assert store.delete("c", ["d0", "d1"]) == 2
    assert {h.id for h in store.search("c", [0.0, 1.0], k=5)} == {"d2", "d3", "d4"}


def test_without_the_wait_a_lagging_index_warns_nothing_and_may_miss_writes(atlas: FakeAtlas) -> None:
    store = _store(atlas, sync_timeout=0)
    store.create_collection("c", 2, "l2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store.insert("c", [KnowledgeDocument(id="a", embedding=[1.0, 0.0])])
    assert store.search("c", [1.0, 0.0]) == []  # the stand-in's index has not caught up yet
    assert [h.id for h in store.search("c", [1.0, 0.0])] == ["a"]


def test_a_lagging_index_past_sync_timeout_warns(atlas: FakeAtlas) -> None:
    store = _store(atlas, sync_timeout=0.2)
    store.create_collection("c", 2, "l2")
    atlas.frozen = True
    with pytest.warns(SearchIndexLagWarning, match="is stored"):
        store.insert("c", [KnowledgeDocument(id="a", embedding=[1.0, 0.0])])
    assert store.count("c") == 1 and store.get("c", ["a"])[0].id == "a"


def test_numeric_slots_are_assigned_once_and_bounded(atlas: FakeAtlas) -> None:
    store = _store(atlas, numeric_slots=2)
    store.create_collection("c", 2, "l2")
    store.insert("c", [KnowledgeDocument(id="a", embedding=[1.0, 0.0], metadata={"x": 1, "s": "text"})])
    other = _store(atlas)  # another store object (numeric_slots of the collection wins)
    other.insert("c", [KnowledgeDocument(id="b", embedding=[1.0, 0.0], metadata={"y": 2.5, "x": 3})])
    registry = atlas.client.t.get_collection("sbk_.registry").find_one({"_id": "c"})
    assert registry["slots"] == {v.field_id("x"): 0, v.field_id("y"): 1} and registry["nslots"] == 2
    assert store.count("c", filter={"y": {"$gt": 2}}) == 1 and store.count("c", filter={"x": {"$gte": 1}}) == 2
    with pytest.raises(ValidationError, match="numeric slots for 2"):
        store.insert("c", [KnowledgeDocument(id="c", embedding=[1.0, 0.0], metadata={"z": 1})])
    assert store.count("c") == 2


def test_search_sends_the_filter_and_rescores(atlas: FakeAtlas) -> None:
    store = _store(atlas)
    store.create_collection("c", 2, "dot")
    store.insert("c", [KnowledgeDocument(id=i, embedding=e, metadata={"y": y})
                       for i, e, y in (("a", [1.0, 0.0], 1), ("b", [3.0, 0.0], 2), ("c", [0.0, 1.0], 3))])
    atlas.calls.clear()
    hits = store.search("c", [1.0, 0.0], k=2, filter={"y": {"$lt": 3}})
    assert [(h.id, h.score) for h in hits] == [("b", 3.0), ("a", 1.0)]
    [(_, _, stage)] = [c for c in atlas.calls if c[0] == "$vectorSearch"]
    assert stage == {"index": "storebridge_vector", "path": "vec", "queryVector": [1.0, 0.0], "limit": 18,
                     "numCandidates": 180, "filter": {"_sb_n0": {"$lt": 3.0}}}
    atlas.calls.clear()
    assert store.search("c", [1.0, 0.0], filter={"y": {"$in": []}}) == [] and atlas.calls == []


def test_an_empty_answer_from_a_missing_index_is_an_error(atlas: FakeAtlas) -> None:
    store = _store(atlas)
    store.create_collection("c", 2)
    store.insert("c", [KnowledgeDocument(id="a", embedding=[1.0, 0.0])])
    atlas.indexes.pop("sbk_c")  # someone dropped the search index
    with pytest.raises(OperationFailedError, match="missing, not queryable"):
        store.search("c", [1.0, 0.0])
    assert store.search("c", [1.0, 0.0], filter={"nothing": "here"}) == []  # nothing matches: empty is right


def test_a_mongodb_without_search_is_refused_clearly(atlas: FakeAtlas, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_command(self: FakeSearchCollection, model: Any) -> str:
        raise mongo_errors.OperationFailure("no such command: 'createSearchIndexes'", 59)

    monkeypatch.setattr(FakeSearchCollection, "create_search_index", no_such_command)
    monkeypatch.setattr(FakeSearchCollection, "list_search_indexes", lambda self, name=None: [])
    store = _store(atlas)
    with pytest.raises(NotSupportedError, match="no vector search.*Atlas"):
        store.create_collection("c", 2)
    assert store.list_collections() == []


def test_drop_removes_the_collection_and_its_record_and_a_new_one_waits_for_the_old_index(atlas: FakeAtlas) -> None:
    store = _store(atlas)
    store.create_collection("c", 2)
    store.insert("c", [KnowledgeDocument(id="a", embedding=[1.0, 0.0], metadata={"n": 1})])
    assert store.drop_collection("c") is True
    assert "sbk_c" not in atlas.client.t.list_collection_names() and "deleting" in atlas.indexes["sbk_c"]
    assert atlas.client.t.get_collection("sbk_.registry").find_one({"_id": "c"}) is None
    atlas.calls.clear()
    store.create_collection("c", 3)  # the old index is still being deleted: wait, then make the new one
    made = [c[2]["definition"]["fields"][0]["numDimensions"] for c in atlas.calls if c[0] == "create_search_index"]
    assert made[-1] == 3 and "deleting" not in atlas.indexes["sbk_c"]
    assert store.count("c") == 0 and store.search("c", [1.0, 0.0, 0.0]) == []
