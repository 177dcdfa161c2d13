"""The Weaviate knowledge backend without a server: names, tokens and the filter compiler pinned exactly,
URL parsing and secrets, and the store's calls into the client.

``FakeWeaviate`` below is NOT the engine: it is a small in-memory stand-in for ``weaviate-client``'s
``WeaviateClient`` that keeps the documented server behaviour the adapter relies on (``Equal`` on a
``text[]`` property matches when some element equals, ``NotEqual`` is the complement of ``Equal`` over
all objects as since Weaviate 1.24, ranges only see objects that have the property, field tokenization
trims whitespace, an empty string comes back as a missing value, cosine vectors are stored normalised,
properties must be declared, ``delete_many`` deletes at most ``QUERY_MAXIMUM_RESULTS`` per call, the
cursor API refuses filters). The conformance suite runs over it to check the adapter end to end; the real
engine runs the same suite in ``tests/conformance/test_knowledge_weaviate.py`` when a URL is given.
"""

from __future__ import annotations

import itertools
import math
import re
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest

pytest.importorskip("weaviate", reason="[no engine on this machine] weaviate-client is not installed")

from weaviate.classes.config import DataType, Property
from weaviate.collections.classes.filters import _FilterAnd, _FilterNot, _FilterOr, _FilterValue
from weaviate.exceptions import UnexpectedStatusCodeError, WeaviateInvalidInputError

from storebridge.adapters.weaviate import WeaviateKnowledgeStore
from storebridge.adapters.weaviate import _filters as wf
from storebridge.adapters.weaviate import knowledge as wk
from storebridge.errors import (
    ConfigurationError,
    ConnectionFailedError,
    OperationFailedError,
    UnsupportedFilterError,
    ValidationError,
)
from storebridge.filter_facts import hex_key
from storebridge.filters import ALL_OPS, And, Comparison, Not, Op, Or, evaluate, parse_filter
from storebridge.identifiers import validate_collection_name
from storebridge.models import CollectionInfo, Distance, KnowledgeDocument
from storebridge.testing import KnowledgeStoreSuite, StoreFactory
from storebridge.testing.data import FILTER_CASES, FILTER_METADATA

# -- the fake client ------------------------------------------------------------------------------------


def _status(code: int, message: str) -> UnexpectedStatusCodeError:
    return UnexpectedStatusCodeError(message, httpx.Response(code, json={"error": [{"message": message}]}))


class FakeWeaviate:
    """In-memory stand-in for ``WeaviateClient`` (see the module docstring). Not the engine."""

    def __init__(self, query_maximum_results: int = 10_000, queued_polls: int = 0) -> None:
        self.classes: dict[str, dict[str, Any]] = {}
        self.query_maximum_results = query_maximum_results
        self.queued_polls = queued_polls  # get_shards reports a non-empty vector queue this many times
        self.calls: list[tuple[Any, ...]] = []
        self.closed = False
        self.collections = _FakeCollections(self)

    def close(self) -> None:
        self.closed = True


class _FakeCollections:
    def __init__(self, client: FakeWeaviate) -> None:
        self.client = client

    def create(self, name: str, *, description: str, vector_config: Any, properties: list[Property]) -> None:
        self.client.calls.append(("create", name))
        assert re.fullmatch(r"[A-Z][_0-9A-Za-z]{0,254}", name), name
        if name in self.client.classes:
            raise _status(422, f"class name {name!r} already exists")
        self.client.classes[name] = {
            "description": description, "objects": {}, "dimension": None,
            "distance": vector_config.vectorIndexConfig.distance.value, "vector_name": vector_config.name,
            "properties": {p.name: (p.dataType, p.tokenization) for p in properties},
        }

    def delete(self, name: str) -> None:
        self.client.calls.append(("delete", name))
        self.client.classes.pop(name, None)

    def list_all(self, simple: bool = True) -> dict[str, Any]:
        return {name: SimpleNamespace(description=c["description"]) for name, c in self.client.classes.items()}

    def use(self, name: str) -> _FakeCollection:
        return _FakeCollection(self.client, name)


class _FakeCollection:
    def __init__(self, client: FakeWeaviate, name: str) -> None:
        self.client, self.name = client, name
        self.config = SimpleNamespace(get=self._get_config, add_property=self._add_property,
                                      get_shards=self._get_shards)
        self.data = SimpleNamespace(insert_many=self._insert_many, delete_many=self._delete_many)
        self.query = SimpleNamespace(near_vector=self._near_vector, fetch_objects=self._fetch_objects)
        self.aggregate = SimpleNamespace(over_all=self._over_all)

    def with_consistency_level(self, level: Any) -> _FakeCollection:
        self.client.calls.append(("consistency", level))
        return self

    @property
    def _class(self) -> dict[str, Any]:
        found = self.client.classes.get(self.name)
        if found is None:
            raise _status(404, f"class {self.name!r} not found")
        return found

    def _get_config(self, simple: bool = False) -> Any:
        cls = self._class
        props = [SimpleNamespace(name=n, data_type=t) for n, (t, _) in cls["properties"].items()]
        return SimpleNamespace(name=self.name, description=cls["description"], properties=props)

    def _add_property(self, prop: Property) -> None:
        self.client.calls.append(("add_property", prop.name, prop.dataType))
        if prop.name in self._class["properties"]:
            raise WeaviateInvalidInputError(f"Property with name {prop.name!r} already exists")
        self._class["properties"][prop.name] = (prop.dataType, prop.tokenization)

    def _get_shards(self) -> list[Any]:
        queued = 1 if self.client.queued_polls > 0 else 0
        self.client.queued_polls -= 1
        return [SimpleNamespace(name="s1", status="READY", vector_queue_size=queued)]

    # -- data ------------------------------------------------------------------------------------------

    def _check(self, props: dict[str, Any]) -> str | None:
        schema = self._class["properties"]
        for key, value in props.items():
            if key not in schema:  # auto-schema off: every property must be declared
                return f"no such prop with name {key!r} found in class {self.name!r}"
            kind = schema[key][0]
            ok = {DataType.TEXT: isinstance(value, str),
                  DataType.TEXT_ARRAY: isinstance(value, list) and all(isinstance(v, str) for v in value),
                  DataType.NUMBER: isinstance(value, (int, float)) and not isinstance(value, bool)}[kind]
            if not ok:
                return f"invalid {kind.value} property {key!r}: {value!r}"
        return None

    def _insert_many(self, objects: list[Any]) -> Any:
        self.client.calls.append(("insert_many", len(objects)))
        cls = self._class
        errors = {}
        for i, obj in enumerate(objects):
            problem = self._check(obj.properties)
            vector = np.asarray(obj.vector[cls["vector_name"]], dtype=np.float32)
            if cls["dimension"] is not None and len(vector) != cls["dimension"]:
                problem = "vector lengths don't match"
            if problem:
                errors[i] = SimpleNamespace(message=problem)
                continue
            cls["dimension"] = len(vector)
            if cls["distance"] == "cosine":  # Weaviate keeps cosine vectors normalised
                vector = (vector / np.linalg.norm(vector)).astype(np.float32)
            props = {k: v for k, v in obj.properties.items() if v != ""}  # "" comes back as missing
            cls["objects"][str(obj.uuid)] = {"props": props, "vector": vector}
        return SimpleNamespace(errors=errors, has_errors=bool(errors))

    def _delete_many(self, where: Any) -> Any:
        self.client.calls.append(("delete_many", where))
        objects = self._class["objects"]
        matching = [u for u in sorted(objects) if _matches(where, u, objects[u]["props"])]
        doomed = matching[:self.client.query_maximum_results]
        for u in doomed:
            del objects[u]
        return SimpleNamespace(failed=0, matches=len(doomed), successful=len(doomed), objects=None)

    # -- queries ---------------------------------------------------------------------------------------

    def _result(self, uuids: list[str], returned: list[str]) -> Any:
        objects = self._class["objects"]
        return SimpleNamespace(objects=[
            SimpleNamespace(uuid=uuid.UUID(u), properties={k: objects[u]["props"][k] for k in returned
                                                           if k in objects[u]["props"]})
            for u in uuids])

    def _filtered(self, filters: Any) -> list[str]:
        objects = self._class["objects"]
        return [u for u in sorted(objects) if filters is None or _matches(filters, u, objects[u]["props"])]

    def _near_vector(self, *, near_vector: list[float], target_vector: str, limit: int, filters: Any,
                     return_properties: list[str], include_vector: bool) -> Any:
        cls = self._class
        assert target_vector == cls["vector_name"] and include_vector is False
        if limit > self.client.query_maximum_results:
            raise _status(422, "query maximum results exceeded")
        q = np.asarray(near_vector, dtype=np.float32)
        def distance(u: str) -> float:
            v = cls["objects"][u]["vector"]
            if cls["distance"] == "cosine":
                return float(1 - v @ (q / np.linalg.norm(q)))
            if cls["distance"] == "l2-squared":
                return float(((v - q) ** 2).sum())
            return float(-(v @ q))
        ranked = sorted(self._filtered(filters), key=lambda u: (distance(u), u))[:limit]
        return self._result(ranked, return_properties)

    def _fetch_objects(self, *, limit: int, return_properties: list[str], filters: Any = None,
                       after: str | None = None, sort: Any = None) -> Any:
        if after is not None and (filters is not None or sort is not None):
            raise _status(422, "the cursor API cannot be combined with filters or sort")
        uuids = self._filtered(filters)
        if after is not None:
            uuids = [u for u in uuids if u > after]
        if sort is not None:
            [rule] = sort.sorts
            uuids.sort(key=lambda u: self._class["objects"][u]["props"].get(rule.prop, ""),
                       reverse=not rule.ascending)
        return self._result(uuids[:limit], return_properties)

    def _over_all(self, *, total_count: bool, filters: Any = None) -> Any:
        return SimpleNamespace(total_count=len(self._filtered(filters)))


def _equal(stored: Any, wanted: Any) -> bool:
    if isinstance(stored, str):  # field tokenization: the trimmed value is the one token
        return isinstance(wanted, str) and stored.strip() == wanted.strip()
    return bool(stored == wanted) and isinstance(stored, bool) == isinstance(wanted, bool)


def _matches(node: Any, object_uuid: str, props: dict[str, Any]) -> bool:
    """Weaviate's filter semantics on one object (the documented subset the adapter uses)."""
    if isinstance(node, _FilterAnd):
        return all(_matches(f, object_uuid, props) for f in node.filters)
    if isinstance(node, _FilterOr):
        return any(_matches(f, object_uuid, props) for f in node.filters)
    if isinstance(node, _FilterNot):
        pytest.fail("Not needs Weaviate 1.33; the adapter must not send it")
    assert isinstance(node, _FilterValue)
    op, value, target = node.operator.value, node.value, node.target
    assert isinstance(target, str)
    if target == "_id":
        assert op == "ContainsAny" and isinstance(value, list)
        return object_uuid in value
    stored = props.get(target)
    values = stored if isinstance(stored, list) else ([] if stored is None else [stored])
    if op == "Equal":
        return any(_equal(v, value) for v in values)
    if op == "NotEqual":  # since 1.24: the complement of Equal over all objects
        return not any(_equal(v, value) for v in values)
    if op == "ContainsAny":
        assert isinstance(value, list)
        return any(_equal(v, w) for v in values for w in value)
    compare = {"GreaterThan": lambda a, b: a > b, "GreaterThanEqual": lambda a, b: a >= b,
               "LessThan": lambda a, b: a < b, "LessThanEqual": lambda a, b: a <= b}[op]
    comparable = [v for v in values if isinstance(v, str) == isinstance(value, str) and not isinstance(v, bool)]
    return any(compare(v, value) for v in comparable)


# -- the suite over the fake ----------------------------------------------------------------------------

_COUNTER = itertools.count()


class TestWeaviateOverFakeClient(KnowledgeStoreSuite):
    """The whole conformance suite through the adapter into ``FakeWeaviate`` (not the engine)."""

    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> StoreFactory:
        client = FakeWeaviate(query_maximum_results=10_000)
        return lambda: WeaviateKnowledgeStore(client=client, index="flat")


# -- names ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["docs", "Docs", "DOCS", "_x", "9-a", "a_b-c", "_Mixed-Case_", "n" * 63,
                                  "a__b", "a_0b", "A-_-Z"])
def test_names_round_trip_and_fit_weaviate(name: str) -> None:
    validate_collection_name(name)
    cls = wf.class_name("Storebridge", name)
    assert re.fullmatch(r"[A-Z][_0-9A-Za-z]{0,254}", cls)
    assert wf.name_from_class("Storebridge", cls) == name
    assert cls[len("Storebridge_"):] == cls[len("Storebridge_"):].lower(), "no capitals after the prefix"


def test_name_encoding_is_exact() -> None:
    assert wf.class_name("Storebridge", "My-doc_1") == "Storebridge__my_0doc__1"
    assert wf.class_name("T1", "docs") == "T1_docs"


def test_names_are_injective_even_ignoring_case() -> None:
    names = ["abc", "Abc", "ABC", "a_b", "a-b", "aB", "a_B", "A_b", "ab_", "a__b", "a_0b", "a-0b"]
    classes = [wf.class_name("P", n).lower() for n in names]
    assert len(set(classes)) == len(names)


@pytest.mark.parametrize("cls", ["Other", "Storebridgedocs", "Storebridge_", "Storebridge_a_", "Storebridge_a_9",
                                 "Storebridge_A", "Storebridge_a-b", "Storebridge__0a", "Storebridge_" + "a" * 64])
def test_foreign_class_names_are_not_ours(cls: str) -> None:
    assert wf.name_from_class("Storebridge", cls) is None


@pytest.mark.parametrize("prefix", ["", "storebridge", "Sb_x", "S-b", "S" * 42, None, "Sé"])
def test_bad_prefixes_are_refused(prefix: Any) -> None:
    with pytest.raises(ConfigurationError, match="prefix"):
        wf.check_prefix(prefix)


def test_description_round_trip_and_foreign_descriptions() -> None:
    info = CollectionInfo("Docs-1", 384, Distance.DOT)
    assert wf.info_from_description("C", wf.description(info), "Docs-1") == info
    for text in [None, "", "a class", ('{"storebridge.knowledge": 1, "name": "other", "dimension": 3, "distance": '
                                       '"cosine"}'), '{"storebridge.knowledge": 1, "name": "Docs-1", "dimension": true, "distance": "dot"}',
                 '{"storebridge.knowledge": 1, "name": "Docs-1", "dimension": 3, "distance": "hamming"}']:
        with pytest.raises(OperationFailedError, match="not made by storebridge"):
            wf.info_from_description("C", text, "Docs-1")


# -- tokens ---------------------------------------------------------------------------------------------

def test_tokens_keep_types_apart() -> None:
    assert wf.eq_token("n", 1) == wf.eq_token("n", 1.0) == "e:6e:n1"
    assert wf.eq_token("n", True) == "e:6e:t" and wf.eq_token("n", False) == "e:6e:f"
    assert wf.eq_token("n", "1") == "e:6e:s31"
    assert wf.eq_token("n", 0) != wf.eq_token("n", False)
    assert wf.eq_token("n", 2**60 + 1) != wf.eq_token("n", float(2**60))
    assert wf.eq_token("n", float(2**60)) == wf.eq_token("n", 2**60)
    assert wf.eq_token("n", -0.0) == wf.eq_token("n", 0)
    assert wf.eq_token("n", 1.5) == "e:6e:n1.5" and wf.eq_token("n", 1e-9) == "e:6e:n1e-09"


@pytest.mark.parametrize("value", ["a'b", 'a"b', "a\\b", "x\x00y", " ann ", "ann ", "🚀 launch", "日本語",
                                   "a OR b", "*", "%", "a:b", "e:6e:s31", "\n\t", ""])
def test_string_tokens_are_ascii_hex_without_whitespace(value: str) -> None:
    token = wf.eq_token("key", value)
    assert re.fullmatch(r"e:6b6579:s[0-9a-f]*", token), token
    assert bytes.fromhex(token.split(":s", 1)[1]).decode("utf-8") == value
    assert token == token.strip(), "field tokenization trims whitespace; a token must carry none"


def test_long_values_and_keys_are_hashed() -> None:
    long_text = "x" * 101
    token = wf.eq_token("k", long_text)
    assert re.fullmatch(r"e:6b:S[0-9a-f]{64}", token)
    assert token != wf.eq_token("k", "x" * 102)
    assert wf.eq_token("k", "x" * 100) == "e:6b:s" + ("78" * 100)
    key = "ключ" * 40  # 320 bytes, hex beyond 128
    assert re.fullmatch(r"h[0-9a-f]{64}", hex_key(key))
    assert len(wf.number_property(key)) <= 231
    assert wf.eq_token("k", 10**200).startswith("e:6b:N")


def test_indexed_metadata() -> None:
    tokens, numbers = wf.indexed({"n": 2, "b": True, "s": "x", "l": ["ml", 1, True, None, {"a": 1}, ["x"]],
                                  "none": None, "d": {"k": "v"}, "bad.key": 1, "$x": 2})
    assert tokens == sorted({
        "x:6e", "e:6e:n2", "r:6e", "x:62", "e:62:t", "x:73", "e:73:s78", "x:6c", "c:6c:s6d6c", "c:6c:n1",
        "c:6c:t", "x:64"})
    assert numbers == {"sb_n_6e": 2.0}
    with pytest.raises(ValidationError, match="beyond float64"):
        wf.indexed({"huge": 10**400})


# -- the compiler ---------------------------------------------------------------------------------------

NUMS = {wf.number_property("n")}
T = wf.TOKENS


def _c(spec: Any, numbers: set[str] = NUMS) -> wf.Compiled:
    return wf.compile_filter(parse_filter(spec), numbers)


def test_compile_each_operator_exactly() -> None:
    assert _c(None) is True
    assert _c({"a": "x"}) == wf.Cond(T, "equal", "e:61:s78")
    assert _c({"a": {"$ne": 1}}) == wf.Cond(T, "not_equal", "e:61:n1")
    assert _c({"a": {"$in": [1, "x", 1.0]}}) == wf.Cond(T, "contains_any", ["e:61:n1", "e:61:s78"])
    assert _c({"a": {"$in": [True]}}) == wf.Cond(T, "equal", "e:61:t")
    assert _c({"a": {"$in": []}}) is False
    assert _c({"a": {"$nin": [1, 2]}}) == wf.AllOf((wf.Cond(T, "not_equal", "e:61:n1"),
                                                    wf.Cond(T, "not_equal", "e:61:n2")))
    assert _c({"a": {"$nin": []}}) is True
    assert _c({"a": {"$exists": True}}) == wf.Cond(T, "equal", "x:61")
    assert _c({"a": {"$exists": False}}) == wf.Cond(T, "not_equal", "x:61")
    assert _c({"a": {"$contains": "ml"}}) == wf.Cond(T, "equal", "c:61:s6d6c")
    assert _c({"n": {"$gt": 1}}) == wf.Cond("sb_n_6e", "greater_than", 1.0)
    assert _c({"n": {"$gte": 1.5}}) == wf.Cond("sb_n_6e", "greater_or_equal", 1.5)
    assert _c({"n": {"$lt": -2}}) == wf.Cond("sb_n_6e", "less_than", -2.0)
    assert _c({"n": {"$lte": 0}}) == wf.Cond("sb_n_6e", "less_or_equal", 0.0)


def test_compile_negations_push_down_without_not() -> None:
    assert _c({"$not": {"a": 1}}) == wf.Cond(T, "not_equal", "e:61:n1")
    assert _c({"$not": {"n": {"$gt": 1}}}) == wf.AnyOf((wf.Cond(T, "not_equal", "r:6e"),
                                                         wf.Cond("sb_n_6e", "less_or_equal", 1.0)))
    assert _c({"$not": {"n": {"$lte": 1}}}) == wf.AnyOf((wf.Cond(T, "not_equal", "r:6e"),
                                                          wf.Cond("sb_n_6e", "greater_than", 1.0)))
    assert _c({"$not": {"$or": [{"a": 1}, {"b": {"$exists": False}}]}}) == wf.AllOf((
        wf.Cond(T, "not_equal", "e:61:n1"), wf.Cond(T, "equal", "x:62")))
    assert _c({"$not": {"$and": [{"a": 1}, {"b": 2}]}}) == wf.AnyOf((
        wf.Cond(T, "not_equal", "e:61:n1"), wf.Cond(T, "not_equal", "e:62:n2")))
    assert _c({"$not": {"$not": {"a": {"$in": [1, 2]}}}}) == wf.Cond(T, "contains_any", ["e:61:n1", "e:61:n2"])
    assert _c({"$not": {"a": {"$in": []}}}) is True
    assert _c({"$not": {"a": {"$nin": [3]}}}) == wf.Cond(T, "equal", "e:61:n3")


def test_compile_folds_constants_and_nesting() -> None:
    assert _c({"$and": [{"a": {"$in": []}}, {"b": 1}]}) is False
    assert _c({"$or": [{"a": {"$in": []}}, {"b": 1}]}) == wf.Cond(T, "equal", "e:62:n1")
    assert _c({"$or": [{"a": {"$nin": []}}, {"b": 1}]}) is True
    assert _c({"$and": [{"a": 1}, {"$and": [{"b": 2}, {"c": 3}]}]}) == wf.AllOf((
        wf.Cond(T, "equal", "e:61:n1"), wf.Cond(T, "equal", "e:62:n2"), wf.Cond(T, "equal", "e:63:n3")))
    assert _c({"a": 1, "b": {"$gte": 2, "$lt": 3}}, {wf.number_property("b")}) == wf.AllOf((
        wf.Cond(T, "equal", "e:61:n1"), wf.Cond("sb_n_62", "greater_or_equal", 2.0),
        wf.Cond("sb_n_62", "less_than", 3.0)))


def test_ranges_on_keys_without_numbers_and_infinite_bounds() -> None:
    assert _c({"m": {"$gt": 1}}) is False, "no document ever had a number under m"
    assert _c({"$not": {"m": {"$gt": 1}}}) == wf.Cond(T, "not_equal", "r:6d")
    assert _c({"n": {"$gt": math.inf}}) is False and _c({"n": {"$gte": math.inf}}) is False
    assert _c({"n": {"$lt": math.inf}}) == wf.Cond(T, "equal", "r:6e")
    assert _c({"n": {"$gt": -math.inf}}) == wf.Cond(T, "equal", "r:6e")
    assert _c({"n": {"$lte": -math.inf}}) is False
    huge = 10**400  # the core parser cannot take this yet; the compiler folds it to an infinite bound
    assert wf.compile_filter(Comparison("n", Op.GT, huge), NUMS) is False
    assert wf.compile_filter(Comparison("n", Op.LT, -huge), NUMS) is False
    assert wf.compile_filter(Comparison("n", Op.LT, huge), NUMS) == wf.Cond(T, "equal", "r:6e")
    assert _c({"$not": {"n": {"$gt": math.inf}}}) == wf.AnyOf((wf.Cond(T, "not_equal", "r:6e"),
                                                               wf.Cond(T, "equal", "r:6e")))


def test_to_weaviate_builds_the_client_filters() -> None:
    built: Any = wf.to_weaviate(_c({"$or": [{"a": "x"}, {"n": {"$gt": 2}}, {"a": {"$in": ["p", "q"]}}]}))
    assert isinstance(built, _FilterOr)
    children: list[Any] = built.filters
    eq, gt, contains = children
    assert (eq.target, eq.operator.value, eq.value) == (T, "Equal", "e:61:s78")
    assert (gt.target, gt.operator.value, gt.value) == ("sb_n_6e", "GreaterThan", 2.0)
    assert (contains.target, contains.operator.value, contains.value) == (T, "ContainsAny", ["e:61:s70", "e:61:s71"])
    everything: Any = wf.to_weaviate(True)
    assert (everything.target, everything.operator.value, everything.value) == (T, "NotEqual", wf.NO_TOKEN)
    ids = [str(uuid.uuid4())]
    scoped: Any = wf.to_weaviate(wf.with_ids(_c({"a": 1}), ids))
    assert isinstance(scoped, _FilterAnd)
    first: Any = scoped.filters[0]
    assert (first.target, first.value) == ("_id", ids)
    page: Any = wf.to_weaviate(wf.after_uid(_c({"a": 1}), ids[0]))
    assert (page.filters[1].target, page.filters[1].operator.value, page.filters[1].value) == (
        wf.UID, "GreaterThan", ids[0])
    with pytest.raises(ValueError):
        wf.to_weaviate(False)


def _weaviate_matches(spec: Any, metadata: dict[str, Any]) -> bool:
    """Evaluate a compiled filter the way FakeWeaviate does, on one document's indexed properties."""
    tokens, numbers = wf.indexed(metadata)
    compiled = wf.compile_filter(parse_filter(spec), {wf.number_property(k) for k in metadata})
    if isinstance(compiled, bool):
        return compiled
    return _matches(wf.to_weaviate(compiled), "u", {wf.TOKENS: tokens, **numbers})


@pytest.mark.parametrize("case", sorted(FILTER_CASES))
def test_compiled_filters_agree_with_the_reference_evaluator(case: str) -> None:
    for spec in FILTER_CASES[case]:
        tree = parse_filter(spec)
        if any(isinstance(n, Comparison) and "." in n.field for n in _walk(tree)):
            continue  # nested keys are not declared
        for metadata in FILTER_METADATA:
            assert _weaviate_matches(spec, metadata) == evaluate(spec, metadata), (spec, metadata)
        negated = {"$not": spec}
        for metadata in FILTER_METADATA:
            assert _weaviate_matches(negated, metadata) == evaluate(negated, metadata), (negated, metadata)


def _walk(node: Any) -> list[Any]:
    from storebridge.filters import walk

    return list(walk(node)) if node is not None else []


def test_capabilities_are_honest() -> None:
    caps = WeaviateKnowledgeStore.capabilities
    assert caps.filter_operators == ALL_OPS and not caps.client_side_filters and not caps.nested_keys
    for op in ALL_OPS - {Op.AND, Op.OR, Op.NOT}:
        value: Any = {Op.IN: ("a",), Op.NIN: ("a",), Op.EXISTS: True}.get(op, 1)
        leaf = Comparison("n", op, value)
        for tree in (leaf, And((leaf, leaf)), Or((leaf, leaf)), Not(leaf)):
            assert wf.compile_filter(tree, NUMS) is not None


# -- the store's calls ------------------------------------------------------------------------------------

def _store(client: FakeWeaviate | None = None, **options: Any) -> WeaviateKnowledgeStore:
    return WeaviateKnowledgeStore(client=client or FakeWeaviate(), **options)


def test_create_uses_self_provided_named_vector_and_explicit_properties() -> None:
    client = FakeWeaviate()
    store = _store(client)
    for distance, metric in [("cosine", "cosine"), ("l2", "l2-squared"), ("dot", "dot")]:
        store.create_collection(f"c-{distance}", 3, distance)
        created = client.classes[wf.class_name("Storebridge", f"c-{distance}")]
        assert created["distance"] == metric and created["vector_name"] == "default"
    props = created["properties"]
    assert props[wf.TOKENS][0] == DataType.TEXT_ARRAY and props[wf.TOKENS][1].value == "field"
    assert props[wf.UID][1].value == "field"
    assert {wf.ID, wf.CONTENT, wf.SOURCE, wf.META, wf.VEC} <= set(props)


def test_number_properties_are_added_as_number_before_the_write() -> None:
    client = FakeWeaviate()
    store = _store(client)
    store.create_collection("c", 2)
    store.upsert("c", [KnowledgeDocument(id="a", embedding=[1.0, 0.0], metadata={"year": 2020, "t": "x"})])
    assert ("add_property", "sb_n_79656172", DataType.NUMBER) in client.calls
    added = client.calls.index(("add_property", "sb_n_79656172", DataType.NUMBER))
    assert client.calls.index(("insert_many", 1)) > added
    store.upsert("c", [KnowledgeDocument(id="b", embedding=[1.0, 0.0], metadata={"year": 1.5})])
    assert sum(1 for c in client.calls if c[0] == "add_property") == 1, "added once"
    assert [d.id for d in [h.document for h in store.search("c", [1.0, 0.0], filter={"year": {"$gt": 2}})]] == ["a"]


def test_a_foreign_number_property_type_is_refused() -> None:
    client = FakeWeaviate()
    store = _store(client)
    store.create_collection("c", 2)
    cls = client.classes[wf.class_name("Storebridge", "c")]
    cls["properties"]["sb_n_79"] = (DataType.TEXT, None)
    with pytest.raises(OperationFailedError, match="not of type number"):
        store.upsert("c", [KnowledgeDocument(id="a", embedding=[1.0, 0.0], metadata={"y": 1})])


def test_rejected_objects_raise_naming_them() -> None:
    client = FakeWeaviate()
    store = _store(client)
    store.create_collection("c", 2)
    original = _FakeCollection._insert_many

    def reject_second(self: _FakeCollection, objects: list[Any]) -> Any:
        result = original(self, objects)
        result.errors[1] = SimpleNamespace(message="disk full")
        return result

    _FakeCollection._insert_many = reject_second  # type: ignore[method-assign]
    try:
        with pytest.raises(OperationFailedError, match=r"refused 1 of 2 .*'b': disk full"):
            store.upsert("c", [KnowledgeDocument(id=i, embedding=[1.0, 0.0]) for i in "ab"])
    finally:
        _FakeCollection._insert_many = original  # type: ignore[method-assign]


def test_delete_by_filter_repeats_past_query_maximum_results() -> None:
    client = FakeWeaviate(query_maximum_results=3)
    store = _store(client)
    store.create_collection("c", 2)
    store.upsert("c", [KnowledgeDocument(id=f"d{i}", embedding=[1.0, float(i)], metadata={"g": i % 2})
                       for i in range(10)])
    assert store.delete("c", filter={"g": 0}) == 5
    assert sum(1 for c in client.calls if c[0] == "delete_many") == 3  # 3 + 2, then a call that matches 0
    assert store.count("c") == 5 and store.count("c", filter={"g": 0}) == 0
    assert store.delete("c", filter={"g": {"$nin": []}}) == 5


def test_writes_wait_for_the_vector_queue() -> None:
    client = FakeWeaviate(queued_polls=3)
    store = _store(client)
    store.create_collection("c", 2)
    store.upsert("c", [KnowledgeDocument(id="a", embedding=[1.0, 0.0])])
    assert client.queued_polls < 0, "polled until the queue was empty"
    client.queued_polls = 5
    _store(client, wait_for_indexing=False).upsert("c", [KnowledgeDocument(id="b", embedding=[1.0, 0.0])])
    assert client.queued_polls == 5, "no polling when disabled"


def test_cosine_collections_keep_the_original_vector() -> None:
    client = FakeWeaviate()
    store = _store(client)
    store.create_collection("c", 3)
    vector = [3.0e38, -1.0e30, 2.0]
    store.upsert("c", [KnowledgeDocument(id="big", embedding=vector)])
    [doc] = store.get("c", ["big"])
    assert doc.embedding == [float(np.float32(v)) for v in vector]
    stored = client.classes[wf.class_name("Storebridge", "c")]["objects"][wf_uuid("big")]["vector"]
    assert np.isfinite(stored).all() and math.isclose(float(np.linalg.norm(stored)), 1.0, rel_tol=1e-6)
    assert wk.engine_vector(np.array([3.0, 4.0], dtype=np.float32), Distance.L2) == [3.0, 4.0]


def wf_uuid(doc_id: str) -> str:
    from storebridge.vectors import stable_uuid

    return stable_uuid(doc_id)


def test_empty_source_and_content_survive_weaviate_dropping_empty_strings() -> None:
    store = _store()
    store.create_collection("c", 2)
    store.upsert("c", [KnowledgeDocument(id="a", content="", source_id="", embedding=[1.0, 0.0]),
                       KnowledgeDocument(id="b", content="x", source_id=None, embedding=[0.0, 1.0])])
    a, b = store.get("c", ["a", "b"])
    assert (a.content, a.source_id, b.content, b.source_id) == ("", "", "x", None)


def test_a_class_under_the_prefix_made_by_someone_else() -> None:
    client = FakeWeaviate()
    client.classes["Storebridge_docs"] = {"description": "hand made", "objects": {}, "properties": {},
                                          "dimension": None, "distance": "cosine", "vector_name": "default"}
    store = _store(client)
    assert store.list_collections() == []
    with pytest.raises(OperationFailedError, match="not made by storebridge"):
        store.get_collection("docs")


def test_consistency_level_is_applied() -> None:
    client = FakeWeaviate()
    store = _store(client, consistency="quorum")
    store.create_collection("c", 2)
    store.count("c")
    assert ("consistency", wk.ConsistencyLevel.QUORUM) in client.calls
    with pytest.raises(ConfigurationError, match="ONE, QUORUM or ALL"):
        _store(client, consistency="most")


def test_scroll_cursors_are_validated() -> None:
    store = _store()
    store.create_collection("c", 2)
    for bad in ["nope", "123", str(uuid.uuid4()).upper()]:
        with pytest.raises(ValidationError, match="cursor"):
            store.scroll("c", cursor=bad)


def test_nested_keys_raise_unsupported() -> None:
    store = _store()
    store.create_collection("c", 2)
    with pytest.raises(UnsupportedFilterError):
        store.search("c", [1.0, 0.0], filter={"a.b": 1})


def test_a_given_client_is_not_closed() -> None:
    client = FakeWeaviate()
    store = _store(client)
    store.close()
    store.close()
    assert client.closed is False


# -- URLs, connection and secrets --------------------------------------------------------------------------

class _Captured:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def custom(self, **kwargs: Any) -> FakeWeaviate:
        self.calls.append(("custom", kwargs))
        return FakeWeaviate()

    def cloud(self, cluster_url: str, auth_credentials: Any, **kwargs: Any) -> FakeWeaviate:
        self.calls.append(("cloud", {"cluster_url": cluster_url, "auth": auth_credentials, **kwargs}))
        return FakeWeaviate()


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> _Captured:
    calls = _Captured()
    monkeypatch.setattr(wk, "connect_to_custom", calls.custom)
    monkeypatch.setattr(wk, "connect_to_weaviate_cloud", calls.cloud)
    return calls


def test_url_plain(captured: _Captured) -> None:
    store = WeaviateKnowledgeStore("weaviate://db.local:8081?grpc_port=50052&prefix=Tst&index=flat")
    [(kind, kwargs)] = captured.calls
    assert kind == "custom"
    assert (kwargs["http_host"], kwargs["http_port"], kwargs["http_secure"]) == ("db.local", 8081, False)
    assert (kwargs["grpc_host"], kwargs["grpc_port"], kwargs["grpc_secure"]) == ("db.local", 50052, False)
    assert kwargs["auth_credentials"] is None
    assert store._prefix == "Tst" and store.capabilities.recall_floor == 1.0
    assert WeaviateKnowledgeStore.capabilities.recall_floor == 0.9, "the class default is untouched"


def test_url_defaults_and_https(captured: _Captured) -> None:
    WeaviateKnowledgeStore("weaviate://db")
    WeaviateKnowledgeStore("weaviate+https://db.example.com?grpc_host=grpc.example.com&api_key=k1")
    (_, plain), (_, https) = captured.calls
    assert (plain["http_port"], plain["grpc_port"]) == (8080, 50051)
    assert (https["http_port"], https["http_secure"], https["grpc_host"], https["grpc_port"], https["grpc_secure"]) \
        == (443, True, "grpc.example.com", 443, True)
    assert https["auth_credentials"].api_key == "k1"


def test_url_cloud(captured: _Captured) -> None:
    WeaviateKnowledgeStore("weaviate+https://abc.c0.europe-west3.gcp.weaviate.cloud?api_key=secret-k")
    [(kind, kwargs)] = captured.calls
    assert kind == "cloud" and kwargs["cluster_url"] == "abc.c0.europe-west3.gcp.weaviate.cloud"
    with pytest.raises(ConfigurationError, match="needs an api_key"):
        WeaviateKnowledgeStore("weaviate+https://abc.weaviate.cloud")


@pytest.mark.parametrize(("url", "match"), [
    ("qdrant://h", "not a weaviate URL"), ("weaviate+grpc://h", "not a weaviate URL"), ("weaviate://", "no host"),
    ("weaviate://h?colour=red", "unknown weaviate URL options"), ("weaviate://h?index=ivf", "hnsw or flat"),
    ("weaviate://h?grpc_port=x", "grpc_port"), ("weaviate://h?timeout=soon", "timeout"),
    ("weaviate://h?wait_for_indexing=maybe", "true or false"), ("weaviate://h?prefix=lower", "prefix"),
])
def test_url_errors(captured: _Captured, url: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        WeaviateKnowledgeStore(url)
    assert captured.calls == []


def test_url_or_client_exactly_once() -> None:
    with pytest.raises(ConfigurationError, match="either"):
        WeaviateKnowledgeStore()
    with pytest.raises(ConfigurationError, match="either"):
        WeaviateKnowledgeStore("weaviate://h", client=FakeWeaviate())


def test_api_key_never_shows(captured: _Captured, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-very-secret-123"
    store = WeaviateKnowledgeStore(f"weaviate+https://db.example.com?api_key={secret}")
    assert secret not in repr(store)
    with pytest.raises(ConfigurationError) as twice:
        WeaviateKnowledgeStore(f"weaviate://h?api_key={secret}", api_key="other")
    assert secret not in str(twice.value)

    def refuse(**kwargs: Any) -> Any:
        raise RuntimeError(f"handshake failed with key {kwargs['auth_credentials'].api_key}")

    monkeypatch.setattr(wk, "connect_to_custom", refuse)
    with pytest.raises(OperationFailedError) as failed:
        WeaviateKnowledgeStore(f"weaviate://h?api_key={secret}")
    assert secret not in str(failed.value) and "***" in str(failed.value)


def test_engine_errors_are_typed(captured: _Captured) -> None:
    from weaviate import exceptions as werr

    store = WeaviateKnowledgeStore("weaviate://h?api_key=zz-secret")
    cases = [
        (werr.WeaviateConnectionError("refused"), ConnectionFailedError),
        (werr.AuthenticationFailedError("bad key zz-secret"), ConfigurationError),
        (_status(401, "unauthorized"), ConfigurationError),
        (_status(403, "forbidden"), OperationFailedError),
        (_status(500, "boom zz-secret"), OperationFailedError),
        (werr.WeaviateQueryError("bad query", "gRPC"), OperationFailedError),
    ]
    for exc, expected in cases:
        error = store._translate_error(exc, "search")
        assert type(error) is expected, (exc, error)
        assert "zz-secret" not in str(error)


def test_urls_survive_the_registry_rendering(captured: _Captured) -> None:
    """``Registry.from_url`` passes ``parse_url(url).render(reveal=True)``: the options must come through."""
    from storebridge.urls import parse_url

    url = "weaviate+https://db.example.com:8443?grpc_host=g.example.com&grpc_port=9443&api_key=a%2Fb"
    WeaviateKnowledgeStore(parse_url(url).render(reveal=True))
    [(_, kwargs)] = captured.calls
    assert (kwargs["http_port"], kwargs["grpc_host"], kwargs["grpc_port"]) == (8443, "g.example.com", 9443)
    assert kwargs["auth_credentials"].api_key == "a/b"
