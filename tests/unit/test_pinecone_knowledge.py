"""The Pinecone knowledge store without Pinecone.

* The filter translation: the exact Pinecone filter JSON per operator, hostile values, and, for every
  filter case of the conformance data and for generated trees, the compiled filters evaluated under
  the least favourable Pinecone semantics reported give the reference evaluator's answer.
* URL parsing and options, secrets kept out of reprs and errors, error translation.
* The whole knowledge conformance suite through the store over ``FakePinecone``: a stand-in for the
  SDK surface the store calls (control plane and data plane), written here from Pinecone's
  documentation. It is NOT the engine. It enforces the documented limits (ASCII ids of at most 512
  characters, metadata of strings / numbers / bools / lists of strings and at most 40 KB, 1000
  vectors and 2 MB per upsert, top_k at most 10,000, 100 ids a list page), sends LSN headers, lets
  reads lag writes (a write shows two requests later, to every read, fetch included) and evaluates
  filters the way Pinecone was reported to at worst: ``$ne``/``$nin`` skip records that lack the
  field, and an ``$or`` drops records that lack any field it names.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from types import SimpleNamespace as NS
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pinecone.errors.exceptions import ApiError, ConflictError, NotFoundError, UnauthorizedError

from storebridge.adapters.pinecone import _encoding as enc
from storebridge.adapters.pinecone import knowledge as pinecone_knowledge
from storebridge.adapters.pinecone._filters import MATCH_DOCUMENTS, MAX_FILTERS, pinecone_filters
from storebridge.adapters.pinecone.knowledge import PineconeKnowledgeStore, index_name
from storebridge.errors import (
    ConfigurationError,
    OperationFailedError,
    UnsupportedFilterError,
    ValidationError,
)
from storebridge.filter_facts import canonical_number
from storebridge.filters import (
    ALL_OPS,
    And,
    Comparison,
    Filter,
    Not,
    Op,
    Or,
    evaluate,
    is_number,
    parse_filter,
)
from storebridge.models import Distance, KnowledgeDocument
from storebridge.testing import KnowledgeStoreSuite, StoreFactory
from storebridge.testing.data import FILTER_CASES, FILTER_METADATA

# -- the stand-in ------------------------------------------------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if is_number(a) and is_number(b):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


def _fields(spec: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(spec, list):
        for item in spec:
            found |= _fields(item)
    elif isinstance(spec, dict):
        for key, value in spec.items():
            if key.startswith("$"):
                found |= _fields(value)
            else:
                found.add(key)
    return found


def pinecone_match(spec: dict[str, Any], metadata: dict[str, Any]) -> bool:
    """A Pinecone metadata filter, with the least favourable semantics reported for missing fields."""
    if not spec:
        raise ApiError("filter must not be empty", 400)
    for key, condition in spec.items():
        if key == "$and":
            if not all(pinecone_match(c, metadata) for c in condition):
                return False
            continue
        if key == "$or":
            if any(f not in metadata for f in _fields(condition)):
                return False  # reported: an $or only selects records that have every field it names
            if not any(pinecone_match(c, metadata) for c in condition):
                return False
            continue
        if key.startswith("$"):
            raise ApiError(f"unknown operator {key}", 400)
        if not isinstance(condition, dict):
            condition = {"$eq": condition}
        for op, wanted in condition.items():
            if key not in metadata:
                return False  # every operator, $ne and $nin included, skips a record without the field
            stored = metadata[key]
            items = stored if isinstance(stored, list) else [stored]
            if op == "$eq":
                ok = any(_same(x, wanted) for x in items)
            elif op == "$ne":
                ok = not any(_same(x, wanted) for x in items)
            elif op == "$in":
                ok = any(_same(x, w) for x in items for w in wanted)
            elif op == "$nin":
                ok = not any(_same(x, w) for x in items for w in wanted)
            elif op in ("$gt", "$gte", "$lt", "$lte"):
                ok = is_number(stored) and {"$gt": stored > wanted, "$gte": stored >= wanted,
                                            "$lt": stored < wanted, "$lte": stored <= wanted}[op]
            else:
                raise ApiError(f"unsupported operator {op}", 400)
            if not ok:
                return False
    return True


def _check_metadata(metadata: dict[str, Any]) -> None:
    for key, value in metadata.items():
        if isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                raise ApiError(f"metadata list {key!r} must hold strings only", 400)
        elif value is None or isinstance(value, dict) or not isinstance(value, (str, bool, int, float)):
            raise ApiError(f"metadata value of {key!r} has an unsupported type", 400)
    if len(json.dumps(metadata).encode()) > 40 * 1024:
        raise ApiError("metadata size exceeds the limit of 40960 bytes per vector", 400)


class _Namespace:
    def __init__(self) -> None:
        self.committed: dict[str, tuple[list[float], dict[str, Any]]] = {}
        self.visible: dict[str, tuple[list[float], dict[str, Any]]] = {}
        self.queue: list[tuple[int, int, str, Any]] = []  # (due tick, lsn, kind, payload)
        self.lsn = 0
        self.applied = 0


class FakeIndex:
    """The data plane of one index (see the module docstring: a stand-in, not the engine)."""

    def __init__(self, owner: FakePinecone, model: Any) -> None:
        self.owner, self.model = owner, model
        self.namespaces: dict[str, _Namespace] = {"__default__": _Namespace()}
        self.stuck = False  # True: the index never catches up (reads never see new writes)
        self.send_lsn = True

    # plumbing
    def _tick(self) -> None:
        self.owner.requests += 1
        if self.stuck:
            return
        for ns in self.namespaces.values():
            while ns.queue and ns.queue[0][0] <= self.owner.requests:
                _, lsn, kind, payload = ns.queue.pop(0)
                if kind == "upsert":
                    ns.visible.update(payload)
                else:
                    for vid in payload:
                        ns.visible.pop(vid, None)
                ns.applied = lsn

    def _ns(self, name: str, create: bool = False) -> _Namespace:
        name = name or "__default__"
        if name not in self.namespaces:
            if not create:
                raise NotFoundError(f"namespace {name!r} not found")
            self.namespaces[name] = _Namespace()
        return self.namespaces[name]

    def _queue(self, ns: _Namespace, kind: str, payload: Any) -> int:
        ns.lsn += 1
        ns.queue.append((self.owner.requests + 2, ns.lsn, kind, payload))
        return ns.lsn

    def _info(self, **headers: Any) -> Any:
        if not self.send_lsn:
            return NS(lsn_committed=None, lsn_reconciled=None)
        return NS(lsn_committed=headers.get("committed"), lsn_reconciled=headers.get("reconciled"))

    @staticmethod
    def _check_ids(ids: list[str]) -> None:
        for vid in ids:
            if not vid or not vid.isascii() or "\x00" in vid or len(vid) > 512:
                raise ValueError(f"illegal vector id {vid!r}")

    def _vector(self, vid: str, record: tuple[list[float], dict[str, Any]]) -> Any:
        return NS(id=vid, values=list(record[0]), metadata=dict(record[1]))

    # vectors
    def upsert(self, *, vectors: list[dict[str, Any]], namespace: str = "") -> Any:
        self._tick()
        self.owner.calls.append(("upsert", namespace, len(vectors)))
        if len(vectors) > 1000:
            raise ApiError("at most 1000 vectors per upsert", 400)
        if len(json.dumps({"vectors": vectors}).encode()) > 2 * 1024 * 1024:
            raise ApiError("request larger than 2 MB", 413)
        ns = self._ns(namespace, create=True)
        batch = {}
        for record in vectors:
            self._check_ids([record["id"]])
            if len(record["values"]) != self.model.dimension:
                raise ApiError("vector dimension does not match the index", 400)
            _check_metadata(record.get("metadata") or {})
            batch[record["id"]] = (list(map(float, record["values"])), json.loads(json.dumps(record["metadata"])))
        ns.committed.update(batch)
        lsn = self._queue(ns, "upsert", batch)
        return NS(upserted_count=len(batch), response_info=self._info(committed=lsn))

    def delete(self, *, ids: list[str] | None = None, namespace: str = "", **selectors: Any) -> None:
        self._tick()
        self.owner.calls.append(("delete", namespace, len(ids or ())))
        if ids is None or selectors:
            raise AssertionError(f"the store deletes by id only, got {selectors}")
        ns = self._ns(namespace)
        for vid in ids:
            ns.committed.pop(vid, None)
        self._queue(ns, "delete", list(ids))

    def fetch(self, *, ids: list[str], namespace: str = "") -> Any:
        self._tick()
        if not ids or len(ids) > 1000:
            raise ValueError("fetch takes 1 to 1000 ids")
        self._check_ids(ids)
        ns = self._ns(namespace)
        return NS(vectors={v: self._vector(v, ns.visible[v]) for v in ids if v in ns.visible})

    def _matching(self, ns: _Namespace, spec: dict[str, Any] | None) -> list[str]:
        return sorted(v for v, (_, md) in ns.visible.items() if spec is None or pinecone_match(spec, md))

    def query(self, *, top_k: int, vector: list[float], namespace: str = "", filter: dict[str, Any] | None = None,
              include_values: bool = False, include_metadata: bool = False) -> Any:
        self._tick()
        self.owner.calls.append(("query", namespace, filter))
        if not 1 <= top_k <= 10_000:
            raise ValueError("top_k out of range")
        if filter is not None and not filter:
            raise ApiError("empty filter", 400)
        ns = self._ns(namespace)
        q = np.asarray(vector, dtype=np.float64)
        scored = []
        for vid in self._matching(ns, filter):
            values = np.asarray(ns.visible[vid][0], dtype=np.float64)
            if self.model.metric == "cosine":
                score = float(values @ q / (np.linalg.norm(values) * np.linalg.norm(q)))
            elif self.model.metric == "euclidean":
                score = -float(((values - q) ** 2).sum())
            else:
                score = float(values @ q)
            scored.append((score, vid))
        scored.sort(key=lambda s: (-s[0], s[1]))
        matches = [NS(id=vid, score=score, values=list(ns.visible[vid][0]) if include_values else [],
                      metadata=dict(ns.visible[vid][1]) if include_metadata else None)
                   for score, vid in scored[:top_k]]
        return NS(matches=matches, response_info=self._info(reconciled=ns.applied))

    def fetch_by_metadata(self, *, filter: dict[str, Any], namespace: str = "", limit: int | None = None,
                          pagination_token: str | None = None) -> Any:
        self._tick()
        if not filter:
            raise ValueError("fetch_by_metadata needs a filter")
        ns = self._ns(namespace)
        ids = [v for v in self._matching(ns, filter) if pagination_token is None or v > pagination_token]
        page = ids[: limit or 100]
        more = len(ids) > len(page)
        return NS(vectors={v: self._vector(v, ns.visible[v]) for v in page},
                  pagination=NS(next=page[-1]) if more else None)

    def list_paginated(self, *, prefix: str | None = None, limit: int | None = None,
                       pagination_token: str | None = None, namespace: str = "") -> Any:
        self._tick()
        if limit is not None and not 1 <= limit <= 100:
            raise ValueError("limit must be 1-100")
        ns = self._ns(namespace)
        ids = [v for v in sorted(ns.visible) if v.startswith(prefix or "")
               and (pagination_token is None or v > pagination_token)]
        page = ids[: limit or 100]
        return NS(vectors=[NS(id=v) for v in page], pagination=NS(next=page[-1]) if len(ids) > len(page) else None)

    # namespaces
    def create_namespace(self, *, name: str) -> Any:
        if name in self.namespaces:
            raise ConflictError(f"namespace {name!r} exists", 409)
        self.namespaces[name] = _Namespace()
        return NS(name=name, record_count=0)

    def delete_namespace(self, *, name: str) -> None:
        if name not in self.namespaces or name == "__default__":
            raise NotFoundError(f"namespace {name!r} not found")
        del self.namespaces[name]

    def list_namespaces_paginated(self, *, prefix: str | None = None, limit: int | None = None,
                                  pagination_token: str | None = None) -> Any:
        names = [n for n in sorted(self.namespaces) if n.startswith(prefix or "")
                 and (pagination_token is None or n > pagination_token)]
        page = names[: limit or 100]
        return NS(namespaces=[NS(name=n) for n in page],
                  pagination=NS(next=page[-1]) if len(names) > len(page) else None)

    def list_namespaces(self) -> Iterator[Any]:
        token = None
        while True:
            page = self.list_namespaces_paginated(limit=2, pagination_token=token)  # small pages: paging is used
            if page.namespaces:
                yield page
            if page.pagination is None:
                return
            token = page.pagination.next

    def close(self) -> None:
        pass


class FakeIndexes:
    def __init__(self, owner: FakePinecone) -> None:
        self.owner = owner

    def list(self) -> list[Any]:
        return [index.model for index in self.owner.indexes_by_name.values()]

    def describe(self, name: str) -> Any:
        if name not in self.owner.indexes_by_name:
            raise NotFoundError(f"index {name!r} not found")
        return self.owner.indexes_by_name[name].model

    def create(self, *, name: str, schema: dict[str, Any], deployment: dict[str, Any], tags: dict[str, str],
               timeout: int) -> Any:
        if not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{0,43}[a-z0-9])?", name):
            raise ValueError(f"invalid index name {name!r}")
        if name in self.owner.indexes_by_name:
            raise ConflictError(f"index {name!r} exists", 409)
        field = schema["fields"]["_values"]
        assert field["type"] == "dense_vector" and deployment["deployment_type"] == "managed"
        self.owner.created.append((name, deployment["cloud"], deployment["region"], timeout))
        return self.owner.add_index(name, field["dimension"], field["metric"], tags).model


class FakePinecone:
    """Stand-in for ``pinecone.Pinecone`` (see the module docstring)."""

    def __init__(self) -> None:
        self.indexes_by_name: dict[str, FakeIndex] = {}
        self.indexes = FakeIndexes(self)
        self.requests = 0
        self.calls: list[tuple[Any, ...]] = []
        self.created: list[tuple[Any, ...]] = []
        self.closed = False

    def add_index(self, name: str, dimension: int, metric: str, tags: dict[str, str] | None) -> FakeIndex:
        model = NS(name=name, dimension=dimension, metric=metric, tags=dict(tags or {}),
                   status=NS(ready=True, state="Ready"), host=f"https://{name}.svc.example")
        index = self.indexes_by_name[name] = FakeIndex(self, model)
        return index

    def index(self, name: str) -> FakeIndex:
        if name not in self.indexes_by_name:
            raise NotFoundError(f"index {name!r} not found")
        return self.indexes_by_name[name]

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in catches up per request, so the store's polls need not wait in real time."""
    monkeypatch.setattr(pinecone_knowledge, "_sleep", lambda seconds: None)


def make_store(fake: FakePinecone | None = None, **options: Any) -> PineconeKnowledgeStore:
    return PineconeKnowledgeStore(client=fake or FakePinecone(), index_prefix="sbtest", **options)


# -- the conformance suite on the stand-in -----------------------------------------------------------------


class TestPineconeOnStandIn(KnowledgeStoreSuite):
    """Every conformance case through the store, over the SDK stand-in (not the engine)."""

    @pytest.fixture
    def store_factory(self, no_sleep: None) -> StoreFactory:
        fake = FakePinecone()
        return lambda: make_store(fake)


# -- filter translation ----------------------------------------------------------------------------------


def _tokens(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return pinecone_filters(parse_filter(spec))


def _doc_and(*clauses: dict[str, Any]) -> dict[str, Any]:
    return {"$and": [MATCH_DOCUMENTS, *clauses]}


def test_each_operator_compiles_to_token_lists_and_ranges() -> None:
    tok = enc.equality_token
    assert _tokens({"a": "x"}) == [_doc_and({"_sb_t": {"$in": [tok("a", "x")]}})]
    assert _tokens({"a": {"$ne": 1}}) == [_doc_and({"_sb_t": {"$nin": [tok("a", 1)]}})]
    assert _tokens({"a": {"$in": ["x", 2, True]}}) == [
        _doc_and({"_sb_t": {"$in": [tok("a", "x"), tok("a", 2), tok("a", True)]}})]
    assert _tokens({"a": {"$nin": ["x"]}}) == [_doc_and({"_sb_t": {"$nin": [tok("a", "x")]}})]
    assert _tokens({"a": {"$exists": True}}) == [_doc_and({"_sb_t": {"$in": [enc.presence_token("a")]}})]
    assert _tokens({"a": {"$exists": False}}) == [_doc_and({"_sb_t": {"$nin": [enc.presence_token("a")]}})]
    assert _tokens({"a": {"$contains": "x"}}) == [_doc_and({"_sb_t": {"$in": [tok("a", "x", element=True)]}})]
    for op in ("gt", "gte", "lt", "lte"):
        assert _tokens({"a": {f"${op}": 2.5}}) == [_doc_and({enc.number_field("a"): {f"${op}": 2.5}})]
    assert _tokens({"$or": [{"a": 1}, {"b": 2}]}) == [_doc_and({"_sb_t": {"$in": [tok("a", 1), tok("b", 2)]}})]
    assert _tokens({"$not": {"$or": [{"a": 1}, {"b": 2}]}}) == [
        _doc_and({"_sb_t": {"$nin": [tok("a", 1), tok("b", 2)]}})]
    assert _tokens({}) == [MATCH_DOCUMENTS]


def test_ranges_never_sit_under_or() -> None:
    """Range comparisons under $or/$not become separate requests, each a plain conjunction."""
    filters = _tokens({"$or": [{"n": {"$lt": 0}}, {"f": False}]})
    assert filters == [_doc_and({"_sb_t": {"$in": [enc.equality_token("f", False)]}}),
                       _doc_and({enc.number_field("n"): {"$lt": 0}})]
    negated = _tokens({"$not": {"n": {"$gt": 1}}})
    assert negated == [_doc_and({"_sb_t": {"$nin": [enc.number_kind_token("n")]}}),
                       _doc_and({enc.number_field("n"): {"$lte": 1}})]

    def ranges_under_or(spec: Any, inside: bool = False) -> bool:
        if isinstance(spec, dict):
            return any((inside and k.startswith(enc.NUMBER_FIELD_PREFIX)) or ranges_under_or(v, inside or k == "$or")
                       for k, v in spec.items())
        return isinstance(spec, list) and any(ranges_under_or(v, inside) for v in spec)

    for case in FILTER_CASES.values():
        for spec in case:
            tree = parse_filter(spec)
            if any("." in n.field for n in _comparisons(tree)):
                continue
            assert not any(ranges_under_or(f) for f in pinecone_filters(tree)), spec


def test_too_many_range_branches_are_refused() -> None:
    wide = {"$and": [{"$or": [{f"n{i}": {"$lt": 0}}, {f"m{i}": {"$gt": 1}}]} for i in range(6)]}
    with pytest.raises(UnsupportedFilterError, match=str(MAX_FILTERS)):
        pinecone_filters(parse_filter(wide))


def test_empty_in_and_infinite_bounds_need_no_request() -> None:
    assert _tokens({"a": {"$in": []}}) == []
    assert _tokens({"a": {"$nin": []}}) == [MATCH_DOCUMENTS]
    assert _tokens({"a": {"$gt": math.inf}}) == []
    assert _tokens({"a": {"$lt": math.inf}}) == [_doc_and({"_sb_t": {"$in": [enc.number_kind_token("a")]}})]
    assert _tokens({"$not": {"a": {"$gte": -math.inf}}}) == [
        _doc_and({"_sb_t": {"$nin": [enc.number_kind_token("a")]}})]


HOSTILE_VALUES = ["'; drop table x; --", 'a"b', "back\\slash", "nul\x00byte", "$or", "{\"$ne\": 1}", "日本 🚀",
                  "x" * 5000, "", " ", "\n"]


def test_hostile_values_never_reach_the_filter() -> None:
    for value in HOSTILE_VALUES:
        for spec in ({"a": value}, {"a": {"$ne": value}}, {"a": {"$in": [value, "b"]}}, {"a": {"$contains": value}}):
            text = json.dumps(pinecone_filters(parse_filter(spec)))
            assert re.fullmatch(r'[\[\]{}":, $_a-z0-9.]+', text), text
            if len(value) > 1:
                assert json.dumps(value)[1:-1] not in text


def test_token_digests_are_stable() -> None:
    """Stored records hold these tokens: changing the hash would orphan every stored filter field."""
    assert enc.digest("a", "1") == "c56379f421431626ad17c613"
    assert enc.equality_token("a", 1) == enc.equality_token("a", 1.0) == "n.c56379f421431626ad17c613"
    assert enc.equality_token("a", True) == "b.c56379f421431626ad17c613"
    assert enc.equality_token("a", "1") == "s.c56379f421431626ad17c613"


def test_canonical_numbers_follow_python_equality() -> None:
    assert canonical_number(1) == canonical_number(1.0) == "1"
    assert canonical_number(-0.0) == canonical_number(0) == "0"
    assert canonical_number(2**53 + 1) != canonical_number(float(2**53 + 1))
    assert canonical_number(0.1) == "0.1" and canonical_number(1e300) == str(int(1e300))


def test_index_fields_of_each_type() -> None:
    fields = enc.index_fields({"s": "x", "n": 2.0, "b": False, "l": ["a", 1, True, None, [2]], "none": None,
                               "d": {"k": 1}, "bad key!": 1})
    tokens = set(fields["_sb_t"])
    assert enc.DOC_TOKEN in tokens
    assert {enc.equality_token("s", "x"), enc.equality_token("n", 2), enc.equality_token("b", False),
            enc.number_kind_token("n"), enc.presence_token("d")} <= tokens
    assert {enc.equality_token("l", v, element=True) for v in ("a", 1, True)} <= tokens
    assert enc.presence_token("none") not in tokens and enc.presence_token("bad key!") not in tokens
    assert {k: v for k, v in fields.items() if k != "_sb_t"} == {enc.number_field("n"): 2.0}


def _comparisons(tree: Filter | None) -> list[Comparison]:
    if tree is None:
        return []
    if isinstance(tree, Comparison):
        return [tree]
    if isinstance(tree, Not):
        return _comparisons(tree.child)
    return [c for child in tree.children for c in _comparisons(child)]


def _matches_via_pinecone(tree: Filter | None, metadata: dict[str, Any]) -> bool:
    record = enc.index_fields(metadata)
    return any(pinecone_match(spec, record) for spec in pinecone_filters(tree))


def test_every_conformance_filter_means_the_reference_under_worst_case_semantics() -> None:
    for case, specs in FILTER_CASES.items():
        if case == "nested_keys":
            continue
        for spec in specs:
            tree = parse_filter(spec)
            for metadata in FILTER_METADATA:
                assert _matches_via_pinecone(tree, metadata) == evaluate(tree, metadata), (spec, metadata)


_KEYS = ["a", "b", "with space"]
_VALUES = st.one_of(st.sampled_from([0, 1, 1.0, -2, 2.5, True, False, "", "x", "X", "1", "'\"\\"]),
                    st.integers(-3, 3), st.floats(-4, 4, allow_nan=False))
_METADATA_VALUES = st.one_of(_VALUES, st.none(), st.lists(_VALUES, max_size=3), st.just({"k": 1}))


def _leaf() -> st.SearchStrategy[Filter]:
    key = st.sampled_from(_KEYS)
    scalar = st.builds(lambda k, op, v: Comparison(k, op, v), key, st.sampled_from([Op.EQ, Op.NE, Op.CONTAINS]),
                       _VALUES)
    number = st.builds(lambda k, op, v: Comparison(k, op, v), key, st.sampled_from([Op.GT, Op.GTE, Op.LT, Op.LTE]),
                       st.one_of(st.integers(-3, 3), st.floats(-4, 4, allow_nan=False),
                                 st.sampled_from([math.inf, -math.inf])))
    member = st.builds(lambda k, op, v: Comparison(k, op, tuple(v)), key, st.sampled_from([Op.IN, Op.NIN]),
                       st.lists(_VALUES, max_size=3))
    exists = st.builds(lambda k, v: Comparison(k, Op.EXISTS, v), key, st.booleans())
    return st.one_of(scalar, number, member, exists)


_TREES = st.recursive(_leaf(), lambda inner: st.one_of(
    st.builds(lambda c: And(tuple(c)), st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda c: Or(tuple(c)), st.lists(inner, min_size=1, max_size=3)),
    st.builds(Not, inner)), max_leaves=6)


@settings(max_examples=300, deadline=None)
@given(tree=_TREES, metadata=st.lists(st.dictionaries(st.sampled_from(_KEYS), _METADATA_VALUES), min_size=1,
                                      max_size=4))
def test_generated_filters_mean_the_reference(tree: Filter, metadata: list[dict[str, Any]]) -> None:
    try:
        filters = pinecone_filters(tree)
    except UnsupportedFilterError:
        return  # too many range branches: refused, never answered differently
    for md in metadata:
        record = enc.index_fields(md)
        assert any(pinecone_match(spec, record) for spec in filters) == evaluate(tree, md), (tree, md)


def test_capabilities_are_honest() -> None:
    caps = PineconeKnowledgeStore.capabilities
    assert caps.filter_operators == ALL_OPS
    assert caps.distances == frozenset(Distance) and not caps.client_side_filters
    for op in Op:
        if op in (Op.AND, Op.OR, Op.NOT):
            continue
        value: Any = (1,) if op in (Op.IN, Op.NIN) else True if op is Op.EXISTS else 1
        assert pinecone_filters(Comparison("a", op, value))


# -- ids -------------------------------------------------------------------------------------------------


def test_ids_map_to_ascii_reversibly() -> None:
    for doc_id in ["plain-1", "with space", "文書-1", "🚀", "~tilde", "~~sb", "a/b\\c", "'; drop", "\x00", "tab\t"]:
        engine_id = enc.encode_id(doc_id)
        assert engine_id.isascii() and engine_id.isprintable() and not enc.is_reserved_id(engine_id)
        assert enc.decode_id(engine_id) == doc_id
    assert enc.encode_id("plain-1") == "plain-1"
    assert enc.encode_id("~x") != "~x"


# -- the store: URLs, options, secrets, errors -----------------------------------------------------------


def test_url_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PINECONE_API_KEY", raising=False)
    store = PineconeKnowledgeStore("pinecone://?api_key=sk-secret-1&cloud=gcp&region=europe-west4&prefix=my-app"
                                   "&freshness_timeout=5&create_timeout=60")
    assert (store._cloud, store._region, store._prefix) == ("gcp", "europe-west4", "my-app")
    assert (store._freshness_timeout, store._create_timeout) == (5.0, 60.0)
    assert "sk-secret-1" not in repr(store) and "my-app" in repr(store)
    store.close()
    local = PineconeKnowledgeStore("pinecone+http://localhost:5080?api_key=x")
    assert local._client.config.host == "http://localhost:5080"
    local.close()


def test_url_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PINECONE_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="PINECONE_API_KEY") as missing:
        PineconeKnowledgeStore("pinecone://")
    assert "api_key" in str(missing.value)
    with pytest.raises(ConfigurationError, match="unknown Pinecone URL option") as unknown:
        PineconeKnowledgeStore("pinecone://?api_key=sk-secret-2&colud=aws")
    assert "sk-secret-2" not in str(unknown.value)
    with pytest.raises(ConfigurationError, match="starts with one of"):
        PineconeKnowledgeStore("qdrant://?api_key=x")
    for prefix in ("Upper", "-lead", "trail-", "a" * 35, "under_score"):
        with pytest.raises(ConfigurationError, match="index prefix"):
            PineconeKnowledgeStore(f"pinecone://?api_key=x&prefix={prefix}")
    with pytest.raises(ConfigurationError, match="freshness_timeout"):
        PineconeKnowledgeStore("pinecone://?api_key=x&freshness_timeout=-1")
    with pytest.raises(ConfigurationError, match="twice") as twice:
        PineconeKnowledgeStore("pinecone://?api_key=sk-url-key", api_key="sk-arg-key")
    assert "sk-url-key" not in str(twice.value) and "sk-arg-key" not in str(twice.value)
    monkeypatch.setenv("PINECONE_API_KEY", "sk-from-env")
    from_env = PineconeKnowledgeStore()
    assert "sk-from-env" not in repr(from_env)
    from_env.close()


def test_errors_are_typed_and_secret_free(no_sleep: None) -> None:
    fake = FakePinecone()
    store = PineconeKnowledgeStore(client=fake, api_key="sk-live-key-123", index_prefix="sbtest")

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise UnauthorizedError("invalid api key sk-live-key-123", 401)

    fake.indexes.list = refuse  # type: ignore[method-assign]
    with pytest.raises(ConfigurationError, match="API key") as caught:
        store.list_collections()
    assert "sk-live-key-123" not in str(caught.value)
    assert isinstance(caught.value.__cause__, UnauthorizedError)


def test_index_per_metric_and_dimension(no_sleep: None) -> None:
    fake = FakePinecone()
    store = make_store(fake, cloud="gcp", region="us-central1", create_timeout=42)
    store.create_collection("a", 4, "cosine")
    store.create_collection("b", 4, "cosine")
    store.create_collection("c", 8, "dot")
    assert sorted(fake.indexes_by_name) == [index_name("sbtest", Distance.COSINE, 4), "sbtest-dot-8"]
    assert fake.created == [("sbtest-cos-4", "gcp", "us-central1", 42), ("sbtest-dot-8", "gcp", "us-central1", 42)]
    assert {"a", "b"} <= set(fake.indexes_by_name["sbtest-cos-4"].namespaces)
    assert store.list_collections() == ["a", "b", "c"]
    reopened = make_store(fake)
    assert reopened.get_collection("c").dimension == 8
    assert store.drop_collection("a") and "a" not in fake.indexes_by_name["sbtest-cos-4"].namespaces


def test_foreign_indexes_are_never_written(no_sleep: None) -> None:
    fake = FakePinecone()
    fake.add_index("sbtest-cos-4", 4, "cosine", tags=None)
    with pytest.raises(ConfigurationError, match="not made by storebridge"):
        make_store(fake).create_collection("a", 4)
    fake.add_index("sbtest-l2-4", 5, "euclidean", tags={"storebridge": "knowledge-v1"})
    with pytest.raises(ConfigurationError, match="dimension 5"):
        make_store(fake).create_collection("b", 4, "l2")
    assert all(not ns.committed for index in fake.indexes_by_name.values() for ns in index.namespaces.values())


def test_writes_wait_until_queries_see_them(no_sleep: None) -> None:
    fake = FakePinecone()
    docs = [KnowledgeDocument(id=f"d{i}", embedding=[1.0, float(i)]) for i in range(3)]
    store = make_store(fake)
    store.create_collection("c", 2)
    store.insert("c", docs)
    index = fake.indexes_by_name["sbtest-cos-2"]
    assert set(index.namespaces["c"].visible) >= {"d0", "d1", "d2"}, "insert returned before reads see it"
    lazy = make_store(fake, freshness_timeout=0)
    lazy.upsert("c", [KnowledgeDocument(id="late", embedding=[0.0, 1.0])])
    assert "late" not in index.namespaces["c"].visible, "the stand-in must lag for this test to mean anything"


def test_freshness_timeout_and_missing_lsn_are_errors(no_sleep: None) -> None:
    fake = FakePinecone()
    store = make_store(fake, freshness_timeout=0.2)
    store.create_collection("c", 2)
    index = fake.indexes_by_name["sbtest-cos-2"]
    index.stuck = True
    with pytest.raises(OperationFailedError, match="not made a write .* visible"):
        store.upsert("c", [KnowledgeDocument(id="x", embedding=[1.0, 0.0])])
    index.stuck = False
    assert store.count("c") == 1, "the next read waits again and then sees the write"
    index.send_lsn = False
    with pytest.raises(OperationFailedError, match="freshness_timeout=0"):
        store.upsert("c", [KnowledgeDocument(id="y", embedding=[1.0, 0.0])])


def test_large_content_overflows_and_is_cleaned_up(no_sleep: None) -> None:
    fake = FakePinecone()
    store = make_store(fake)
    store.create_collection("c", 2)
    big = KnowledgeDocument(id="big", content="é" * 70_000, embedding=[1.0, 0.0], metadata={"k": "v" * 30_000})
    store.upsert("c", [big])
    committed = fake.indexes_by_name["sbtest-cos-2"].namespaces["c"].committed
    chunks = [v for v in committed if v.startswith("~~c")]
    assert len(chunks) >= 5
    [got] = store.get("c", ["big"])
    assert got.content == big.content and got.metadata == big.metadata
    assert [h.id for h in store.search("c", [1.0, 0.0], filter={"k": "v" * 30_000})] == ["big"]
    store.upsert("c", [big.replace(content="small", metadata={})])
    assert not [v for v in committed if v.startswith("~~c")], "replaced overflow records must go"
    store.upsert("c", [big])
    assert store.delete("c", ["big"]) == 1
    assert set(committed) == {"~~sb"}


def test_bad_documents_write_nothing(no_sleep: None) -> None:
    fake = FakePinecone()
    store = make_store(fake)
    store.create_collection("c", 2)
    good = KnowledgeDocument(id="ok", embedding=[1.0, 0.0])
    with pytest.raises(ValidationError, match="too long"):
        store.insert("c", [good, KnowledgeDocument(id="é" * 300, embedding=[1.0, 0.0])])
    wide = {f"k{i}": i for i in range(2000)}
    with pytest.raises(ValidationError, match="filterable fields"):
        store.insert("c", [good, KnowledgeDocument(id="wide", embedding=[1.0, 0.0], metadata=wide)])
    assert store.count("c") == 0


def test_large_batches_are_split_by_request_size(no_sleep: None) -> None:
    fake = FakePinecone()
    store = make_store(fake)
    store.create_collection("c", 512)
    rng = np.random.default_rng(1)
    docs = [KnowledgeDocument(id=f"d{i}", content="x" * 30_000, embedding=rng.standard_normal(512).tolist())
            for i in range(100)]
    store.insert("c", docs)
    upserts = [n for kind, ns, n in fake.calls if kind == "upsert" and ns == "c" and n > 1]
    assert sum(upserts) == 100 and len(upserts) >= 2
    assert store.count("c") == 100
