"""The Upstash Vector knowledge store without Upstash.

* The filter strings: exact text per operator, literal quoting and number formatting, hostile values
  (none may reach the text), and, for every filter case of the conformance data and for generated
  trees, the strings evaluated by a strict parser of Upstash's documented grammar give the reference
  evaluator's answer.
* URL parsing and options, secrets kept out of reprs and errors, error translation.
* The whole knowledge conformance suite through the store over ``FakeUpstash``: a stand-in for the
  ``upstash_vector.Index`` calls the store makes, written here from Upstash's documentation. It is NOT
  the engine. It enforces the documented limits (48 KB metadata and 1 MB data per vector, the index's
  fixed dimension, top_k at most 1000), creates namespaces on any read or write as Upstash documents,
  applies writes to fetch and range at once but to queries, deletes by filter and ``info()`` two
  requests later, and parses filters strictly: single-quoted literals without escapes, plain decimal
  numbers, and comparisons on a missing field (``!=`` and ``NOT CONTAINS`` included) are false.
"""

from __future__ import annotations

import json
import math
import re
from types import SimpleNamespace as NS
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from upstash_vector.errors import UpstashError

from storebridge.adapters.pinecone import _encoding as enc
from storebridge.adapters.upstash_vector import _filters as uf
from storebridge.adapters.upstash_vector import knowledge as upstash_knowledge
from storebridge.adapters.upstash_vector.knowledge import UpstashVectorKnowledgeStore, resolve_settings
from storebridge.errors import (
    ConfigurationError,
    ConnectionFailedError,
    OperationFailedError,
    ValidationError,
)
from storebridge.filters import Comparison, Filter, Op, evaluate, parse_filter
from storebridge.models import Distance, KnowledgeDocument
from storebridge.testing import KnowledgeStoreSuite, StoreFactory
from storebridge.testing.data import FILTER_CASES, FILTER_METADATA

# -- a strict parser of the documented filter grammar --------------------------------------------------------

_TOKEN_RE = re.compile(r"""\s*(?:(?P<lp>\()|(?P<rp>\))|(?P<op><=|>=|!=|=|<|>)|'(?P<sq>[^']*)'|"(?P<dq>[^"]*)"
                           |(?P<num>-?[0-9]+(?:\.[0-9]+)?)(?![0-9A-Za-z_.])|(?P<word>[A-Za-z_][A-Za-z_0-9.\[\]#-]*))""",
                       re.VERBOSE)
_KEYWORDS = {"AND", "OR", "NOT", "CONTAINS", "HAS", "FIELD", "GLOB", "IN"}


def _lex(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise UpstashError(f"filter syntax error at {pos}: {text[pos:pos + 20]!r}")
        pos = match.end()
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "word" and value.upper() in _KEYWORDS:
            tokens.append(("kw", value.upper()))
        elif kind in ("sq", "dq"):
            tokens.append(("str", value))
        elif kind == "num":
            tokens.append(("num", float(value) if "." in value else int(value)))
        else:
            tokens.append((kind, value))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _lex(text)
        self.pos = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, kind: str, value: Any = None) -> Any:
        token = self.peek()
        if token is None or token[0] != kind or (value is not None and token[1] != value):
            raise UpstashError(f"filter syntax error: expected {value or kind}, got {token}")
        self.pos += 1
        return token[1]

    def parse(self) -> Any:
        node = self.expr()
        if self.peek() is not None:
            raise UpstashError(f"filter syntax error: trailing {self.peek()}")
        return node

    def expr(self) -> Any:
        parts = [self.term()]
        while self.peek() == ("kw", "OR"):
            self.pos += 1
            parts.append(self.term())
        return ("or", parts)

    def term(self) -> Any:
        parts = [self.factor()]
        while self.peek() == ("kw", "AND"):
            self.pos += 1
            parts.append(self.factor())
        return ("and", parts)

    def factor(self) -> Any:
        if self.peek() == ("lp", "("):
            self.pos += 1
            node = self.expr()
            self.take("rp")
            return node
        if self.peek() == ("kw", "HAS"):
            self.pos += 1
            negated = self.peek() == ("kw", "NOT")
            self.pos += negated
            self.take("kw", "FIELD")
            return ("has", self.take("word"), negated)
        field = self.take("word")
        token = self.peek()
        if token in (("kw", "CONTAINS"), ("kw", "NOT")):
            negated = token == ("kw", "NOT")
            self.pos += 1
            if negated:
                self.take("kw", "CONTAINS")
            return ("contains", field, self.literal(), negated)
        op = self.take("op")
        return ("cmp", field, op, self.literal())

    def literal(self) -> Any:
        token = self.peek()
        if token is None or token[0] not in ("str", "num"):
            raise UpstashError(f"filter syntax error: expected a literal, got {token}")
        self.pos += 1
        return token[1]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0  # documented: booleans are 1 and 0
    return float(value) if isinstance(value, (int, float)) else None


def _evaluate(node: Any, metadata: dict[str, Any]) -> bool:
    kind = node[0]
    if kind == "or":
        return any(_evaluate(n, metadata) for n in node[1])
    if kind == "and":
        return all(_evaluate(n, metadata) for n in node[1])
    if kind == "has":
        return (node[1] in metadata) != node[2]
    field = node[1]
    if field not in metadata:
        return False  # every comparison on a missing field is false, != and NOT CONTAINS included
    stored = metadata[field]
    if kind == "contains":
        if not isinstance(stored, list):
            return False
        return (node[2] in stored) != node[3]
    _, _, op, literal = node
    if isinstance(literal, str):
        if not isinstance(stored, str):
            return False
        return {"=": stored == literal, "!=": stored != literal}[op]
    number = _number(stored)
    if number is None:
        return False
    return {"=": number == literal, "!=": number != literal, "<": number < literal, "<=": number <= literal,
            ">": number > literal, ">=": number >= literal}[op]


def upstash_match(text: str, metadata: dict[str, Any]) -> bool:
    return _evaluate(_Parser(text).parse(), metadata)


# -- the stand-in ---------------------------------------------------------------------------------------------


class _Namespace:
    def __init__(self) -> None:
        self.committed: dict[str, tuple[list[float], dict[str, Any] | None, str | None]] = {}
        self.indexed: dict[str, tuple[list[float], dict[str, Any] | None, str | None]] = {}
        self.queue: list[tuple[int, str, Any]] = []  # (due request, kind, payload)


class FakeUpstash:
    """Stand-in for ``upstash_vector.Index`` (see the module docstring)."""

    def __init__(self, dimension: int = 16, similarity: str = "COSINE") -> None:
        self.dimension, self.similarity = dimension, similarity
        self.namespaces: dict[str, _Namespace] = {"": _Namespace()}
        self.requests = 0
        self.stuck = False
        self.calls: list[tuple[Any, ...]] = []

    def _tick(self) -> None:
        self.requests += 1
        if self.stuck:
            return
        for ns in self.namespaces.values():
            while ns.queue and ns.queue[0][0] <= self.requests:
                _, kind, payload = ns.queue.pop(0)
                if kind == "upsert":
                    ns.indexed.update(payload)
                else:
                    for vid in payload:
                        ns.indexed.pop(vid, None)

    def _ns(self, name: str) -> _Namespace:
        return self.namespaces.setdefault(name, _Namespace())  # Upstash creates namespaces on any use

    def _result(self, vid: str, record: Any, vectors: bool, metadata: bool, data: bool, score: float = 0.0) -> Any:
        return NS(id=vid, score=score, vector=list(record[0]) if vectors else None,
                  metadata=record[1] if metadata else None, data=record[2] if data else None)

    def info(self) -> Any:
        self._tick()
        spaces = {name: NS(vector_count=len(ns.indexed), pending_vector_count=sum(
            len(p) for _, _, p in ns.queue)) for name, ns in self.namespaces.items()}
        return NS(vector_count=sum(s.vector_count for s in spaces.values()),
                  pending_vector_count=sum(s.pending_vector_count for s in spaces.values()), index_size=0,
                  dimension=self.dimension, similarity_function=self.similarity,
                  dense_index=NS(dimension=self.dimension, similarity_function=self.similarity, embedding_model=""),
                  sparse_index=None, namespaces=spaces)

    def list_namespaces(self) -> list[str]:
        self._tick()
        return sorted(self.namespaces)

    def delete_namespace(self, namespace: str) -> None:
        self._tick()
        if namespace not in self.namespaces or namespace == "":
            raise UpstashError(f"Namespace {namespace} does not exist")
        del self.namespaces[namespace]

    def upsert(self, vectors: list[dict[str, Any]], namespace: str = "") -> str:
        self._tick()
        self.calls.append(("upsert", namespace, len(vectors)))
        batch = {}
        for record in vectors:
            if not record["id"]:
                raise UpstashError("id cannot be empty")
            if len(record["vector"]) != self.dimension:
                raise UpstashError(f"Invalid vector dimension: {len(record['vector'])}, expected: {self.dimension}")
            if record.get("metadata") is not None and len(json.dumps(record["metadata"]).encode()) > 48 * 1024:
                raise UpstashError("metadata too large")
            if record.get("data") is not None and len(record["data"].encode()) > 1024 * 1024:
                raise UpstashError("data too large")
            batch[record["id"]] = (list(map(float, record["vector"])), json.loads(json.dumps(record.get("metadata"))),
                                   record.get("data"))
        ns = self._ns(namespace)
        ns.committed.update(batch)
        ns.queue.append((self.requests + 2, "upsert", batch))
        return "Success"

    def fetch(self, ids: list[str], include_vectors: bool = False, include_metadata: bool = False,
              namespace: str = "", include_data: bool = False) -> list[Any]:
        self._tick()
        ns = self._ns(namespace)
        return [self._result(v, ns.committed[v], include_vectors, include_metadata, include_data)
                if v in ns.committed else None for v in ids]

    def query(self, vector: list[float], top_k: int = 10, include_vectors: bool = False,
              include_metadata: bool = False, filter: str = "", namespace: str = "",
              include_data: bool = False) -> list[Any]:
        self._tick()
        self.calls.append(("query", namespace, filter))
        if not 1 <= top_k <= 1000:
            raise UpstashError("topK must be between 1 and 1000")
        if len(vector) != self.dimension:
            raise UpstashError("Invalid vector dimension")
        ns = self._ns(namespace)
        q = np.asarray(vector, dtype=np.float64)
        scored = []
        for vid, record in ns.indexed.items():
            if filter and not upstash_match(filter, record[1] or {}):
                continue
            values = np.asarray(record[0], dtype=np.float64)
            if self.similarity == "COSINE":
                score = float(values @ q / (np.linalg.norm(values) * np.linalg.norm(q)))
            elif self.similarity == "EUCLIDEAN":
                score = -float(np.linalg.norm(values - q))
            else:
                score = float(values @ q)
            scored.append((score, vid))
        scored.sort(key=lambda s: (-s[0], s[1]))
        return [self._result(vid, ns.indexed[vid], include_vectors, include_metadata, include_data, score)
                for score, vid in scored[:top_k]]

    def delete(self, ids: list[str] | None = None, namespace: str = "", prefix: str | None = None,
               filter: str | None = None) -> Any:
        self._tick()
        self.calls.append(("delete", namespace, ids, filter))
        if prefix is not None or (ids is None) == (filter is None):
            raise AssertionError("the store deletes by ids or by filter, one at a time")
        ns = self._ns(namespace)
        if ids is None:
            assert filter is not None
            ids = [v for v, record in ns.indexed.items() if upstash_match(filter, record[1] or {})]
        doomed = [v for v in ids if v in ns.committed]
        for vid in doomed:
            del ns.committed[vid]
        ns.queue.append((self.requests + 2, "delete", doomed))
        return NS(deleted=len(doomed))

    def range(self, cursor: str = "", limit: int = 1, include_vectors: bool = False, include_metadata: bool = False,
              namespace: str = "", include_data: bool = False) -> Any:
        self._tick()
        if limit <= 0:
            raise UpstashError("limit must be positive")
        ns = self._ns(namespace)
        ids = sorted(ns.committed)
        start = int(cursor or 0)
        page = ids[start:start + limit]
        end = start + len(page)
        return NS(next_cursor=str(end) if end < len(ids) else "",
                  vectors=[self._result(v, ns.committed[v], include_vectors, include_metadata, include_data)
                           for v in page])


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in catches up per request, so the store's polls need not wait in real time."""
    monkeypatch.setattr(upstash_knowledge, "_sleep", lambda seconds: None)


# -- the conformance suite on the stand-in -----------------------------------------------------------------


class TestUpstashVectorOnStandIn(KnowledgeStoreSuite):
    """Every conformance case through the store over the stand-in of a cosine index (not the engine)."""

    @pytest.fixture
    def store_factory(self, no_sleep: None) -> StoreFactory:
        fake = FakeUpstash(16, "COSINE")
        return lambda: UpstashVectorKnowledgeStore(client=fake)


class TestUpstashVectorDotOnStandIn(KnowledgeStoreSuite):
    """The same over a dot-product index: the store declares only the index's function."""

    @pytest.fixture
    def store_factory(self, no_sleep: None) -> StoreFactory:
        fake = FakeUpstash(20, "DOT_PRODUCT")
        return lambda: UpstashVectorKnowledgeStore(client=fake)


# -- filter strings ------------------------------------------------------------------------------------------


def _text(spec: Any) -> str | None:
    return uf.upstash_filter(parse_filter(spec))


DOCS = uf.MATCH_DOCUMENTS


def test_each_operator_as_text() -> None:
    tok = enc.equality_token
    assert DOCS == "_sb_t CONTAINS 'doc'"
    assert _text(None) == DOCS
    assert _text({"a": "x"}) == f"{DOCS} AND _sb_t CONTAINS '{tok('a', 'x')}'"
    assert _text({"a": {"$ne": 1}}) == f"{DOCS} AND _sb_t NOT CONTAINS '{tok('a', 1)}'"
    assert _text({"a": {"$in": ["x", True]}}) == (
        f"{DOCS} AND (_sb_t CONTAINS '{tok('a', 'x')}' OR _sb_t CONTAINS '{tok('a', True)}')")
    assert _text({"a": {"$nin": [1, 2]}}) == (
        f"{DOCS} AND (_sb_t NOT CONTAINS '{tok('a', 1)}' AND _sb_t NOT CONTAINS '{tok('a', 2)}')")
    assert _text({"a": {"$exists": False}}) == f"{DOCS} AND _sb_t NOT CONTAINS '{enc.presence_token('a')}'"
    assert _text({"a": {"$contains": "x"}}) == f"{DOCS} AND _sb_t CONTAINS '{tok('a', 'x', element=True)}'"
    field = enc.number_field("a")
    for op, sign in (("gt", ">"), ("gte", ">="), ("lt", "<"), ("lte", "<=")):
        assert _text({"a": {f"${op}": 2.5}}) == f"{DOCS} AND {field} {sign} 2.5"
    assert _text({"$not": {"a": {"$gt": 1}}}) == (
        f"{DOCS} AND (_sb_t NOT CONTAINS '{enc.number_kind_token('a')}' OR {field} <= 1)")
    assert _text({"$and": [{"a": {"$gte": 1}}, {"$or": [{"b": "x"}, {"a": {"$lt": -1}}]}]}) == (
        f"{DOCS} AND ({field} >= 1 AND (_sb_t CONTAINS '{tok('b', 'x')}' OR {field} < -1))")
    assert _text({"a": {"$in": []}}) is None
    assert _text({"a": {"$nin": []}}) == DOCS
    assert _text({"a": {"$gt": math.inf}}) is None


def test_literals_and_numbers() -> None:
    assert uf.quote_literal("s.0123abcd") == "'s.0123abcd'"
    for hostile in ["it's", 'a"b', "back\\slash", "nul\x00", "x' OR 1=1 OR '", "日本", "", "UPPER", "a b", "x" * 65]:
        with pytest.raises(ValueError):
            uf.quote_literal(hostile)
    assert uf.number_literal(1e-9) == "0.000000001"
    assert uf.number_literal(100000.0) == "100000.0"
    assert uf.number_literal(-0.5) == "-0.5"
    assert uf.number_literal(2**63 + 5) == str(2**63 + 5)
    assert uf.number_literal(1.5e300) == "15" + "0" * 299
    for text in (uf.number_literal(v) for v in (1e-9, 1.5e300, -3, 12.5, 0.1)):
        assert re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", text)
    with pytest.raises(TypeError):
        uf.number_literal(True)
    with pytest.raises(ValueError):
        uf.number_literal(math.nan)
    with pytest.raises(ValueError):
        uf.identifier("a; DROP")


HOSTILE_VALUES = ["'; drop table x; --", "it's", 'a"b', "back\\slash\\", "nul\x00byte", "x' OR '1'='1",
                  ") OR (1=1", "日本 🚀", "x" * 5000, "", " ", "\n", "CONTAINS", "HAS FIELD a"]


def test_hostile_values_never_reach_the_text() -> None:
    for value in HOSTILE_VALUES:
        for spec in ({"a": value}, {"a": {"$ne": value}}, {"a": {"$in": [value, "b"]}}, {"a": {"$contains": value}},
                     {"$or": [{"a": value}, {"n": {"$gt": 1}}]}):
            text = _text(spec)
            assert text is not None
            assert re.fullmatch(r"[A-Za-z0-9_ .'()<>=!-]+", text), text
            _Parser(text).parse()  # well formed for a strict parser of the documented grammar
            if value.strip():
                assert value not in text.replace("_sb_t CONTAINS", "").replace("NOT CONTAINS", "")


def _matches(text: str | None, metadata: dict[str, Any]) -> bool:
    return text is not None and upstash_match(text, enc.index_fields(metadata))


def test_every_conformance_filter_means_the_reference() -> None:
    for case, specs in FILTER_CASES.items():
        if case == "nested_keys":
            continue
        for spec in specs:
            tree = parse_filter(spec)
            text = uf.upstash_filter(tree)
            for metadata in FILTER_METADATA:
                assert _matches(text, metadata) == evaluate(tree, metadata), (spec, metadata, text)


_KEYS = ["a", "b", "with space"]
_VALUES = st.one_of(st.sampled_from([0, 1, 1.0, -2, 2.5, True, False, "", "x", "1", "it's", "\\"]),
                    st.integers(-3, 3), st.floats(-4, 4, allow_nan=False))
_METADATA_VALUES = st.one_of(_VALUES, st.none(), st.lists(_VALUES, max_size=3), st.just({"k": 1}))


def _leaf() -> st.SearchStrategy[Filter]:
    key = st.sampled_from(_KEYS)
    return st.one_of(
        st.builds(lambda k, op, v: Comparison(k, op, v), key, st.sampled_from([Op.EQ, Op.NE, Op.CONTAINS]), _VALUES),
        st.builds(lambda k, op, v: Comparison(k, op, v), key, st.sampled_from([Op.GT, Op.GTE, Op.LT, Op.LTE]),
                  st.one_of(st.integers(-3, 3), st.floats(-4, 4, allow_nan=False),
                            st.sampled_from([math.inf, -math.inf, 1e-9]))),
        st.builds(lambda k, op, v: Comparison(k, op, tuple(v)), key, st.sampled_from([Op.IN, Op.NIN]),
                  st.lists(_VALUES, max_size=3)),
        st.builds(lambda k, v: Comparison(k, Op.EXISTS, v), key, st.booleans()))


_TREES = st.recursive(_leaf(), lambda inner: st.one_of(
    st.builds(lambda c: parse_filter({"$and": [_dict(x) for x in c]}), st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda c: parse_filter({"$or": [_dict(x) for x in c]}), st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda c: parse_filter({"$not": _dict(c)}), inner)), max_leaves=6)


def _dict(tree: Filter) -> dict[str, Any]:
    from storebridge.filters import to_dict

    return to_dict(tree)


@settings(max_examples=300, deadline=None)
@given(tree=_TREES, metadata=st.lists(st.dictionaries(st.sampled_from(_KEYS), _METADATA_VALUES), min_size=1,
                                      max_size=4))
def test_generated_filters_mean_the_reference(tree: Filter, metadata: list[dict[str, Any]]) -> None:
    text = uf.upstash_filter(tree)
    for md in metadata:
        assert _matches(text, md) == evaluate(tree, md), (tree, md, text)


# -- URLs, secrets, errors ----------------------------------------------------------------------------------


def test_resolve_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UPSTASH_VECTOR_REST_URL", raising=False)
    monkeypatch.delenv("UPSTASH_VECTOR_REST_TOKEN", raising=False)
    settings_ = resolve_settings("upstash-vector://idx-us1-vector.upstash.io?token=tok-1&freshness_timeout=3", None,
                                 None)
    assert (settings_.rest_url, settings_.token, settings_.freshness_timeout) == (
        "https://idx-us1-vector.upstash.io", "tok-1", 3.0)
    assert "tok-1" not in repr(settings_)
    assert resolve_settings("upstash-vector://:tok-2@host", None, None).token == "tok-2"
    assert resolve_settings("upstash-vector+http://127.0.0.1:8080", "tok-3", None).rest_url == "http://127.0.0.1:8080"
    assert resolve_settings("https://host", "t", None).rest_url == "https://host"
    with pytest.raises(ConfigurationError, match="UPSTASH_VECTOR_REST_TOKEN"):
        resolve_settings("upstash-vector://host", None, None)
    with pytest.raises(ConfigurationError, match="UPSTASH_VECTOR_REST_URL"):
        resolve_settings(None, None, None)
    with pytest.raises(ConfigurationError, match="unknown Upstash Vector URL option") as unknown:
        resolve_settings("upstash-vector://host?token=tok-secret&namespace=x", None, None)
    assert "tok-secret" not in str(unknown.value)
    with pytest.raises(ConfigurationError, match="starts with one of") as scheme:
        resolve_settings("redis://:tok-secret@host", None, None)
    assert "tok-secret" not in str(scheme.value)
    with pytest.raises(ConfigurationError, match="twice"):
        resolve_settings("upstash-vector://host?token=a", "b", None)
    with pytest.raises(ConfigurationError, match="freshness_timeout"):
        resolve_settings("upstash-vector://host?token=a&freshness_timeout=soon", None, None)
    monkeypatch.setenv("UPSTASH_VECTOR_REST_URL", "https://env-host")
    monkeypatch.setenv("UPSTASH_VECTOR_REST_TOKEN", "tok-env")
    assert resolve_settings(None, None, None) == upstash_knowledge.UpstashVectorSettings("https://env-host", "tok-env")


def test_store_from_url_keeps_the_token_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[tuple[str, str]] = []

    def index(url: str, token: str) -> FakeUpstash:
        opened.append((url, token))
        return FakeUpstash(8, "EUCLIDEAN")

    monkeypatch.setattr(upstash_knowledge, "UpstashIndex", index)
    store = UpstashVectorKnowledgeStore("upstash-vector://idx.upstash.io?token=tok-very-secret")
    assert opened == [("https://idx.upstash.io", "tok-very-secret")]
    assert "tok-very-secret" not in repr(store) and "idx.upstash.io" in repr(store)
    assert store.capabilities.distances == frozenset({Distance.L2})


def test_errors_are_typed_and_secret_free(monkeypatch: pytest.MonkeyPatch) -> None:
    class Refusing(FakeUpstash):
        def info(self) -> Any:
            raise UpstashError("Unauthorized: invalid token tok-very-secret")

    monkeypatch.setattr(upstash_knowledge, "UpstashIndex", lambda url, token: Refusing())
    with pytest.raises(ConfigurationError, match="check the token") as refused:
        UpstashVectorKnowledgeStore("upstash-vector://idx.upstash.io?token=tok-very-secret")
    assert "tok-very-secret" not in str(refused.value)

    class Unreachable(FakeUpstash):
        def info(self) -> Any:
            raise httpx.ConnectError("connection refused")

    monkeypatch.setattr(upstash_knowledge, "UpstashIndex", lambda url, token: Unreachable())
    with pytest.raises(ConnectionFailedError, match="cannot reach"):
        UpstashVectorKnowledgeStore("upstash-vector://idx.upstash.io?token=t")

    class Sparse(FakeUpstash):
        def info(self) -> Any:
            return NS(dimension=0, similarity_function="", dense_index=None, sparse_index=NS(embedding_model=""),
                      namespaces={})

    with pytest.raises(ConfigurationError, match="dense index"):
        UpstashVectorKnowledgeStore(client=Sparse())


# -- behaviour over the stand-in -------------------------------------------------------------------------------


def test_collections_are_catalogued_namespaces_and_vectors_are_padded(no_sleep: None) -> None:
    fake = FakeUpstash(6, "COSINE")
    store = UpstashVectorKnowledgeStore(client=fake)
    assert not store.has_collection("nope")
    assert "nope" not in fake.namespaces, "describing a missing collection must not create a namespace"
    store.create_collection("c", 4)
    with pytest.raises(ValidationError, match="at most 6"):
        store.create_collection("wide", 7)
    store.insert("c", [KnowledgeDocument(id="d", embedding=[1.0, 2.0, 3.0, 4.0], metadata={"x": 1})])
    stored = fake.namespaces["c"].committed[enc.encode_id("d")]
    assert stored[0] == [1.0, 2.0, 3.0, 4.0, 0.0, 0.0]
    assert json.loads(stored[2] or "") == {"c": "", "s": None, "m": {"x": 1}}
    assert store.get("c", ["d"])[0].embedding == [1.0, 2.0, 3.0, 4.0]
    fake.namespaces["stranger"] = _Namespace()
    assert store.list_collections() == ["c"], "namespaces without a catalog record are not collections"
    assert UpstashVectorKnowledgeStore(client=fake).get_collection("c").dimension == 4


def test_writes_wait_until_queries_see_them(no_sleep: None) -> None:
    fake = FakeUpstash(4)
    store = UpstashVectorKnowledgeStore(client=fake)
    store.create_collection("c", 4)
    store.insert("c", [KnowledgeDocument(id=f"d{i}", embedding=[1.0, float(i), 0.0, 1.0]) for i in range(3)])
    assert set(fake.namespaces["c"].indexed) >= {"d0", "d1", "d2"}
    lazy = UpstashVectorKnowledgeStore(client=fake, freshness_timeout=0)
    lazy.upsert("c", [KnowledgeDocument(id="late", embedding=[0.0, 1.0, 0.0, 0.0])])
    assert "late" not in fake.namespaces["c"].indexed, "the stand-in must lag for this test to mean anything"
    fake.stuck = True
    slow = UpstashVectorKnowledgeStore(client=fake, freshness_timeout=0.05)
    with pytest.raises(OperationFailedError, match="had not indexed"):
        slow.upsert("c", [KnowledgeDocument(id="x", embedding=[1.0, 0.0, 0.0, 0.0])])


def test_delete_by_filter_runs_on_the_server(no_sleep: None) -> None:
    fake = FakeUpstash(4)
    store = UpstashVectorKnowledgeStore(client=fake)
    store.create_collection("c", 4)
    store.insert("c", [KnowledgeDocument(id=f"d{i}", embedding=[1.0, float(i), 0.0, 1.0], metadata={"g": i % 2})
                       for i in range(6)])
    assert store.delete("c", filter={"g": 1}) == 3
    [call] = [c for c in fake.calls if c[0] == "delete"]
    assert call[2] is None and call[3] == uf.upstash_filter(parse_filter({"g": 1}))
    assert sorted(d.id for d in store.scroll("c", limit=10).documents) == ["d0", "d2", "d4"]


def test_oversized_documents_write_nothing(no_sleep: None) -> None:
    fake = FakeUpstash(4)
    store = UpstashVectorKnowledgeStore(client=fake)
    store.create_collection("c", 4)
    good = KnowledgeDocument(id="ok", embedding=[1.0, 0.0, 0.0, 0.0])
    with pytest.raises(ValidationError, match="too large"):
        store.insert("c", [good, KnowledgeDocument(id="big", content="x" * (1024 * 1024), embedding=[1.0, 0, 0, 0])])
    with pytest.raises(ValidationError, match="filterable fields"):
        store.insert("c", [good, KnowledgeDocument(id="w", embedding=[1.0, 0, 0, 0],
                                                   metadata={f"k{i}": i for i in range(2000)})])
    assert store.count("c") == 0
