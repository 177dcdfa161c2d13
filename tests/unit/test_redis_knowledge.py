"""The Redis knowledge store without a query engine: the translation layer (``_search_query``) pinned as data,
checked against the reference evaluator through a model of the query syntax it emits, URL and option
handling, secrets, and the commands the store sends (FT.* answered by a recorder, everything else by a
real Redis 7.0). Then the real Redis 7.0 of these machines, which has no query engine, must be refused
with a clear NotSupportedError.

The query-syntax model below is ours, not the engine: it reads only the subset this compiler writes
(``@t:{a|b}``, ``@n:[lo hi]`` with ``(`` and PARAMS, ``-``, parenthesised AND / OR) with the documented
meaning. The engine itself runs the conformance suite in tests/conformance/test_knowledge_redis.py.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pytest
import redis
import redis.asyncio

from storebridge.adapters.redis import _search_query as q
from storebridge.adapters.redis.knowledge import RedisKnowledgeStore
from storebridge.errors import (
    AlreadyExistsError,
    ConfigurationError,
    ConnectionFailedError,
    InvalidIdentifierError,
    NotSupportedError,
    OperationFailedError,
    ValidationError,
)
from storebridge.filters import ALL_OPS, And, Comparison, Op, Or, evaluate, parse_filter
from storebridge.models import Distance, KnowledgeDocument
from storebridge.testing.data import FILTER_CASES, filter_documents
from storebridge.vectors import metadata_json
from tests.servers.redis import RedisServer

HOSTILE_VALUES = ['a"b', "it's", "{x}", "}", "a|b", "@f:{x}", "-neg", "*", "a b", " ", "", "ünï 🚀", "nul\x00byte",
                  "back\\slash", "$v0", "(a", "[1 2]", "=>", "%fuzzy%", "x" * 200, "\n\t"]
_QUERY_ALPHABET = re.compile(r"^[@a-z0-9_:{}|()\[\] \-$+*]*$")
_TAG_ALPHABET = re.compile(r"^[0-9a-z]+$")


def compiled(spec: Any, schema: Any = None) -> q.CompiledFilter:
    tree = parse_filter(spec)
    if schema is None:  # every key the spec names has both attributes
        schema = {name for key in _keys(tree) for name in (q.tag_field(key), q.numeric_field(key))}
    return q.compile_filter(tree, schema)


def _keys(node: Any) -> set[str]:
    if node is None:
        return set()
    if isinstance(node, Comparison):
        return {node.field}
    if isinstance(node, (And, Or)):
        return set().union(*(_keys(c) for c in node.children))
    return _keys(node.child)


def h(text: str) -> str:
    return text.encode("utf-8").hex()


# -- encodings ---------------------------------------------------------------------------------------------


def test_scalar_tags_keep_types_apart() -> None:
    assert q.scalar_tag("ann") == "s" + h("ann")
    assert q.scalar_tag(True) == "bt" and q.scalar_tag(False) == "bf"
    assert q.scalar_tag(1) == q.scalar_tag(1.0) == q.scalar_tag(-0.0 + 1) == "n" + h("1")
    assert q.scalar_tag(0) == q.scalar_tag(-0.0)
    assert q.scalar_tag(True) != q.scalar_tag(1) and q.scalar_tag("1") != q.scalar_tag(1)
    assert q.scalar_tag(2**53 + 1) != q.scalar_tag(2.0**53)
    assert q.scalar_tag(2**53) == q.scalar_tag(2.0**53)
    assert q.scalar_tag(0.1) == "n" + h("0.1") and q.scalar_tag(1e-9) == "n" + h("1e-09")
    assert q.scalar_tag(None) is None and q.scalar_tag({"a": 1}) is None and q.scalar_tag([1]) is None
    long = "x" * 33
    assert q.scalar_tag(long) == "h" + __import__("hashlib").sha256(long.encode()).hexdigest()
    assert q.scalar_tag("x" * 32) == "s" + h("x" * 32)


def test_hostile_values_become_plain_alphanumerics_and_stay_distinct() -> None:
    tags = [q.scalar_tag(v) for v in HOSTILE_VALUES]
    assert all(t is not None and _TAG_ALPHABET.fullmatch(t) for t in tags), tags
    assert len(set(tags)) == len(HOSTILE_VALUES)


def test_field_names_are_hex_of_the_key() -> None:
    assert q.tag_field("year") == "t_" + h("year") and q.numeric_field("year") == "n_" + h("year")
    assert q.field_id("with space") == h("with space") and q.field_id("a-b") == h("a-b")
    assert q.field_id("日本") == h("日本")
    long = q.field_id("k" * 25)
    assert long.startswith("h") and len(long) == 41 and long != q.field_id("k" * 26)
    for key in ("a'); drop", 'a"b', "a b", "a|b", "@x", "-x", "*", "ü"):
        assert re.fullmatch(r"[0-9a-fh]+", q.field_id(key)), key


def test_order_key_fits_a_float64_exactly() -> None:
    keys = [q.order_key(f"id{i}") for i in range(1000)]
    assert all(0 <= k < 2**53 for k in keys) and len(set(keys)) == 1000
    assert q.order_key("a") == q.order_key("a") and float(q.order_key("zz")) == q.order_key("zz")


def test_document_hash_holds_typed_copies() -> None:
    doc = KnowledgeDocument(id="d1", content="c", source_id="s", metadata={
        "num": 2.5, "flag": True, "text": "ann", "tags": ["ml", 1, True, None, {"x": 1}], "none": None,
        "nested": {"k": "v"}, "bad.key": 1, "$x": 2})
    fields, schema = q.document_hash(doc, metadata_json(doc), b"VEC", b"ORIG")
    t, n = q.tag_field, q.numeric_field
    assert fields[q.ID] == "d1" and fields[q.SOURCE] == "s" and fields[q.VEC] == b"VEC" and fields[q.ORIG] == b"ORIG"
    assert json.loads(str(fields[q.META])) == doc.metadata
    assert fields[t("num")] == "p," + q.scalar_tag(2.5) and fields[n("num")] == "2.5"  # type: ignore[operator]
    assert fields[t("flag")] == "p,bt" and n("flag") not in fields
    assert fields[t("text")] == "p,s" + h("ann") and n("text") not in fields
    assert fields[t("tags")] == ",".join(["p", "ls" + h("ml"), "ln" + h("1"), "lbt"])
    assert fields[t("nested")] == "p" and t("none") not in fields
    assert t("bad.key") not in fields and t("$x") not in fields  # no filter can name them
    assert fields[q.ID_TAG] == q.scalar_tag("d1") and fields[q.ORDER] == str(q.order_key("d1"))
    assert schema == {t("num"): "TAG", n("num"): "NUMERIC", t("flag"): "TAG", t("text"): "TAG", t("tags"): "TAG",
                      t("nested"): "TAG"}
    bare, _ = q.document_hash(KnowledgeDocument(id="d2"), "{}", b"V", None)
    assert q.SOURCE not in bare and q.ORIG not in bare


def test_numbers_beyond_float64_are_refused() -> None:
    doc = KnowledgeDocument(id="d", metadata={"huge": 10**400})
    with pytest.raises(ValidationError, match="float64"):
        q.document_hash(doc, metadata_json(doc), b"", None)


def test_layout_keys_and_prefix_validation() -> None:
    layout = q.Layout("app")
    assert layout.collections_key == "app:collections" and layout.collection_key("c") == "app:col:c"
    assert layout.index_name("c") == "app:idx:c" and layout.document_key("c", "a:b") == "app:doc:c:=a:b"
    nul = layout.document_key("c", "a\x00b")
    assert nul.startswith("app:doc:c:#") and "\x00" not in nul and nul != layout.document_key("c", "a\x00c")
    for bad in ("", "a b", "a:b", "a*", "x" * 65, "é", None):
        with pytest.raises(InvalidIdentifierError):
            q.check_prefix(bad)


# -- filter compilation: exact output ----------------------------------------------------------------------


def test_every_operator_compiles_exactly() -> None:
    t, n = q.tag_field("k"), q.numeric_field("k")
    ann, one = q.scalar_tag("ann"), q.scalar_tag(1)
    cases: list[tuple[Any, str, dict[str, str]]] = [
        ({"k": "ann"}, f"@{t}:{{{ann}}}", {}),
        ({"k": {"$ne": "ann"}}, f"-@{t}:{{{ann}}}", {}),
        ({"k": {"$in": ["ann", 1, "ann"]}}, f"@{t}:{{{ann}|{one}}}", {}),
        ({"k": {"$nin": ["ann", True]}}, f"-@{t}:{{{ann}|bt}}", {}),
        ({"k": {"$exists": True}}, f"@{t}:{{p}}", {}),
        ({"k": {"$exists": False}}, f"-@{t}:{{p}}", {}),
        ({"k": {"$contains": 1}}, f"@{t}:{{l{one}}}", {}),
        ({"k": {"$gt": 1}}, f"@{n}:[($v0 +inf]", {"v0": "1.0"}),
        ({"k": {"$gte": 1.5}}, f"@{n}:[$v0 +inf]", {"v0": "1.5"}),
        ({"k": {"$lt": -2}}, f"@{n}:[-inf ($v0]", {"v0": "-2.0"}),
        ({"k": {"$lte": 1e-9}}, f"@{n}:[-inf $v0]", {"v0": "1e-09"}),
        ({"k": {"$gt": 0, "$lte": 5}}, f"(@{n}:[($v0 +inf] @{n}:[-inf $v1])", {"v0": "0.0", "v1": "5.0"}),
        ({"$or": [{"k": "ann"}, {"k": 1}]}, f"(@{t}:{{{ann}}} | @{t}:{{{one}}})", {}),
        ({"$not": {"$or": [{"k": "ann"}, {"k": 1}]}}, f"-(@{t}:{{{ann}}} | @{t}:{{{one}}})", {}),
        ({"$not": {"k": {"$ne": "ann"}}}, f"-(-@{t}:{{{ann}}})", {}),
    ]
    for spec, text, params in cases:
        got = compiled(spec)
        assert (got.text, got.params, got.nothing) == (text, params, False), spec


def test_constants_are_decided_before_the_engine() -> None:
    assert compiled({"k": {"$in": []}}).nothing
    assert compiled({"k": {"$nin": []}}).everything
    assert compiled(None).everything and compiled(None).text == "*"
    assert compiled({"$or": [{"k": {"$in": []}}, {"k": "a"}]}).text == f"@{q.tag_field('k')}:{{{q.scalar_tag('a')}}}"
    assert compiled({"$and": [{"k": {"$in": []}}, {"k": "a"}]}).nothing
    assert compiled({"$or": [{"k": {"$nin": []}}, {"k": "a"}]}).everything
    assert compiled({"$not": {"k": {"$in": []}}}).everything
    # keys no document ever had: their attributes do not exist (the engine would reject the name)
    empty: set[str] = set()
    assert compiled({"k": "a"}, empty).nothing and compiled({"k": {"$ne": "a"}}, empty).everything
    assert compiled({"k": {"$exists": False}}, empty).everything and compiled({"k": {"$gt": 1}}, empty).nothing
    only_tag = {q.tag_field("k")}
    assert compiled({"k": {"$gt": 1}}, only_tag).nothing  # never a number under k
    assert not compiled({"k": 1}, only_tag).nothing


def test_infinite_and_huge_range_bounds() -> None:
    n = q.numeric_field("k")
    assert compiled({"k": {"$gt": math.inf}}).nothing and compiled({"k": {"$gte": math.inf}}).nothing
    assert compiled({"k": {"$lt": -math.inf}}).nothing
    assert compiled({"k": {"$lt": math.inf}}).text == f"@{n}:[-inf +inf]"
    assert compiled({"k": {"$gt": -math.inf}}).text == f"@{n}:[-inf +inf]"
    # (the core's parser refuses such bounds today; the compiler is ready for them)
    assert q.compile_filter(Comparison("k", Op.LT, 10**400), {n}).text == f"@{n}:[-inf +inf]"
    assert q.compile_filter(Comparison("k", Op.GT, 10**400), {n}).nothing
    assert compiled({"k": {"$gt": 10**300}}).params == {"v0": "1e+300"}


def test_hostile_values_never_reach_the_query_text() -> None:
    for value in HOSTILE_VALUES:
        for spec in ({"key": value}, {"key": {"$ne": value}}, {"key": {"$in": [value, "x"]}},
                     {"key": {"$contains": value}}, {"with space": {"$nin": [value]}}):
            got = compiled(spec)
            assert _QUERY_ALPHABET.fullmatch(got.text), (value, got.text)
            braces = re.findall(r"\{([^}]*)\}", got.text)
            assert braces and all(_TAG_ALPHABET.fullmatch(tag) for group in braces for tag in group.split("|"))
            assert any(tag.endswith(str(q.scalar_tag(value))) for tag in braces[0].split("|"))
            assert got.params == {}


def test_declared_operators_all_compile_in_the_engine() -> None:
    assert RedisKnowledgeStore.capabilities.filter_operators == ALL_OPS
    specs = {Op.EQ: {"k": 1}, Op.NE: {"k": {"$ne": 1}}, Op.GT: {"k": {"$gt": 1}}, Op.GTE: {"k": {"$gte": 1}},
             Op.LT: {"k": {"$lt": 1}}, Op.LTE: {"k": {"$lte": 1}}, Op.IN: {"k": {"$in": [1]}},
             Op.NIN: {"k": {"$nin": [1]}}, Op.EXISTS: {"k": {"$exists": True}}, Op.CONTAINS: {"k": {"$contains": 1}},
             Op.AND: {"$and": [{"k": 1}, {"j": 2}]}, Op.OR: {"$or": [{"k": 1}, {"j": 2}]},
             Op.NOT: {"$not": {"k": 1}}}
    assert set(specs) == set(ALL_OPS)
    for op, spec in specs.items():
        got = compiled(spec)
        assert not got.nothing and not got.everything and "@" in got.text, op


# -- the compiled queries mean what FILTERS.md says (through a model of the syntax) -------------------------


class _Model:
    """Evaluates the query subset the compiler writes against one document's hash fields."""

    def __init__(self, text: str, params: Mapping[str, str]) -> None:
        self.text, self.params, self.pos = text, params, 0

    def parse(self) -> Any:
        node = self.expr()
        assert self.pos == len(self.text), f"trailing text at {self.pos}: {self.text!r}"
        return node

    def expr(self) -> Any:
        if self.text.startswith("*", self.pos):
            self.pos += 1
            return ("all",)
        if self.text[self.pos] == "-":
            self.pos += 1
            return ("not", self.expr())
        if self.text[self.pos] == "(":
            self.pos += 1
            items, mode = [self.expr()], None
            while self.text[self.pos] != ")":
                sep = " | " if self.text.startswith(" | ", self.pos) else " "
                assert mode in (None, sep), "AND and OR mixed in one group"
                mode = sep
                self.pos += len(sep)
                items.append(self.expr())
            self.pos += 1
            return ("or" if mode == " | " else "and", items)
        match = re.compile(r"@([a-z0-9_]+):").match(self.text, self.pos)
        assert match, f"unexpected text at {self.pos}: {self.text[self.pos:]!r}"
        self.pos = match.end()
        name = match.group(1)
        if self.text[self.pos] == "{":
            end = self.text.index("}", self.pos)
            tags = self.text[self.pos + 1:end].split("|")
            self.pos = end + 1
            return ("tag", name, set(tags))
        end = self.text.index("]", self.pos)
        low, high = self.text[self.pos + 1:end].split(" ")
        self.pos = end + 1
        return ("range", name, self.bound(low), self.bound(high))

    def bound(self, token: str) -> tuple[float, bool]:
        exclusive = token.startswith("(")
        token = token.lstrip("(")
        value = float(self.params[token[1:]]) if token.startswith("$") else float(token)
        return value, exclusive


def _matches(node: Any, fields: Mapping[str, Any]) -> bool:
    kind = node[0]
    if kind == "all":
        return True
    if kind == "not":
        return not _matches(node[1], fields)
    if kind == "and":
        return all(_matches(child, fields) for child in node[1])
    if kind == "or":
        return any(_matches(child, fields) for child in node[1])
    if kind == "tag":
        return node[1] in fields and bool(set(str(fields[node[1]]).split(",")) & node[2])
    if node[1] not in fields:
        return False
    value = float(fields[node[1]])
    (low, low_x), (high, high_x) = node[2], node[3]
    return (value > low if low_x else value >= low) and (value < high if high_x else value <= high)


def test_compiled_filters_agree_with_the_reference_evaluator() -> None:
    docs = filter_documents()
    hashes = [q.document_hash(d, metadata_json(d), b"", None) for d in docs]
    schema = set().union(*(s for _, s in hashes)) | set(q.BASE_SCHEMA)
    checked = 0
    for case, specs in FILTER_CASES.items():
        if case == "nested_keys":
            continue
        for spec in specs:
            got = q.compile_filter(parse_filter(spec), schema)
            expected = {d.id for d in docs if evaluate(spec, d.metadata)}
            if got.nothing:
                matched = set()
            else:
                tree = _Model(got.text, got.params).parse()
                matched = {d.id for d, (fields, _) in zip(docs, hashes) if _matches(tree, fields)}
            assert matched == expected, (case, spec, got)
            checked += 1
    assert checked > 100


# -- commands ------------------------------------------------------------------------------------------------


def test_command_arguments() -> None:
    layout = q.Layout("p")
    assert q.create_index_args(layout, "c", 8, Distance.DOT, "HNSW") == [
        "p:idx:c", "ON", "HASH", "PREFIX", 1, "p:doc:c:", "SCHEMA", "vec", "VECTOR", "HNSW", 6, "TYPE", "FLOAT32",
        "DIM", 8, "DISTANCE_METRIC", "IP", "_sb_id", "TAG", "_sb_ord", "NUMERIC", "SORTABLE"]
    assert q.alter_args("p:idx:c", {"t_6b": "TAG", "n_6b": "NUMERIC"}) == [
        "p:idx:c", "SKIPINITIALSCAN", "SCHEMA", "ADD", "n_6b", "NUMERIC", "t_6b", "TAG"]
    where = compiled({"k": {"$gt": 1}})
    assert q.knn_args("i", where, b"\x00\x01", 26) == [
        "i", f"(@{q.numeric_field('k')}:[($v0 +inf])=>[KNN 26 @vec $BLOB AS __sb_dist]", "RETURN", 6, "id",
        "content", "source", "meta", "vec", "orig", "SORTBY", "__sb_dist", "ASC", "LIMIT", 0, 26,
        "PARAMS", 4, "v0", "1.0", "BLOB", b"\x00\x01", "TIMEOUT", 0, "DIALECT", "2"]
    assert q.knn_args("i", compiled(None), b"B", 3, with_vectors=False)[1] == "*=>[KNN 3 @vec $BLOB AS __sb_dist]"
    assert q.count_args("i", compiled(None)) == ["i", "*", "NOCONTENT", "LIMIT", 0, 0, "TIMEOUT", 0, "DIALECT", "2"]
    assert q.page_args("i", compiled(None), None, exclusive=False, high=None, limit=5, with_vectors=False) == [
        "i", "@_sb_ord:[-inf +inf]", "RETURN", 4, "id", "content", "source", "meta", "SORTBY", "_sb_ord", "ASC",
        "LIMIT", 0, 5, "TIMEOUT", 0, "DIALECT", "2"]
    page = q.page_args("i", compiled({"k": 1}), 42, exclusive=True, high=None, limit=3, with_vectors=True)
    assert page[1] == f"(@{q.tag_field('k')}:{{{q.scalar_tag(1)}}}) @_sb_ord:[($olo +inf]"
    assert page[page.index("PARAMS"):page.index("PARAMS") + 4] == ["PARAMS", 2, "olo", "42"]
    group = q.page_args("i", compiled(None), 7, exclusive=False, high=7, limit=9, with_vectors=False)
    assert group[1] == "@_sb_ord:[$olo $ohi]" and ["olo", "7", "ohi", "7"] == group[-8:-4]
    ids = q.ids_condition(["a", "b|c", "a"])
    assert ids == f"@_sb_id:{{{q.scalar_tag('a')}|{q.scalar_tag('b|c')}}}"


def test_search_replies_in_both_protocols() -> None:
    resp2 = [2, b"p:doc:c:=a", [b"id", b"a", b"vec", b"\x00\x00\x80?"], b"p:doc:c:=b", [b"id", b"b"]]
    got = q.parse_search(resp2)
    assert got.total == 2 and got.documents == [("p:doc:c:=a", {"id": b"a", "vec": b"\x00\x00\x80?"}),
                                                ("p:doc:c:=b", {"id": b"b"})]
    assert q.parse_search([3, b"k1", b"k2"], content=False).documents == [("k1", {}), ("k2", {})]
    assert q.parse_search([7], content=False).total == 7
    resp3 = {b"total_results": 1, b"results": [{b"id": b"p:doc:c:=a", b"extra_attributes": {b"id": b"a"},
                                                 b"values": []}], b"warning": [], b"format": b"STRING"}
    got3 = q.parse_search(resp3)
    assert got3.total == 1 and got3.documents == [("p:doc:c:=a", {"id": b"a"})]
    with pytest.raises(OperationFailedError, match="Timeout limit was reached"):
        q.parse_search({b"total_results": 0, b"results": [], b"warning": [b"Timeout limit was reached"]})
    with pytest.raises(OperationFailedError):
        q.parse_search(b"OK")


def test_ft_info_indexing_flag() -> None:
    assert q.indexing_in_progress([b"index_name", b"i", b"indexing", 1, b"percent_indexed", b"0.5"])
    assert not q.indexing_in_progress([b"indexing", b"0"])
    assert not q.indexing_in_progress({b"indexing": 0, b"percent_indexed": 1.0})
    with pytest.raises(OperationFailedError):
        q.indexing_in_progress([b"indexing", b"maybe"])


def test_scroll_cursors_round_trip_and_refuse_garbage() -> None:
    for cursor in (q.Cursor(0), q.Cursor(2**53 - 1), q.Cursor(5, "ünï|d"), q.Cursor(9, "a\x00b")):
        assert q.decode_cursor(cursor.encode()) == cursor
    for bad in ("", "o", "x1", "o-1", "t1", "t1.zz", "t1.ff", "o" + "9" * 17, "o1 "):
        with pytest.raises(ValidationError):
            q.decode_cursor(bad)


# -- URL, options, secrets -------------------------------------------------------------------------------------


def test_url_options() -> None:
    store = RedisKnowledgeStore("redis://127.0.0.1:1/3?prefix=app&algorithm=hnsw&index_timeout=5&socket_timeout=2")
    assert store.layout.prefix == "app" and store.algorithm == "HNSW" and store.index_timeout == 5.0
    assert store.capabilities.recall_floor < 1.0 and RedisKnowledgeStore.capabilities.recall_floor == 1.0
    assert "redis://127.0.0.1:1/3" in repr(store)
    store.close()
    plain = RedisKnowledgeStore("rediss://h", prefix="x")
    assert plain.algorithm == "FLAT" and plain.layout.prefix == "x" and plain.capabilities.recall_floor == 1.0
    plain.close()


@pytest.mark.parametrize(("url", "kwargs", "error", "text"), [
    ("http://h", {}, ConfigurationError, "starts with"),
    ("redis://h?prefix=a", {"prefix": "b"}, ConfigurationError, "twice"),
    ("redis://h?algorithm=ivf", {}, ConfigurationError, "flat"),
    ("redis://h?index_timeout=-1", {}, ConfigurationError, "index_timeout"),
    ("redis://h?prefix=a%20b", {}, InvalidIdentifierError, "prefix"),
    ("redis://h?namespace=x", {}, ConfigurationError, "prefix="),
    ("redis://h?bogus=1", {}, ConfigurationError, "bogus"),
    ("redis://h", {"client": object()}, ConfigurationError, "not both"),
])
def test_bad_options(url: str, kwargs: dict[str, Any], error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        RedisKnowledgeStore(url, **kwargs)


def test_client_checks() -> None:
    with pytest.raises(ConfigurationError, match="decode_responses"):
        RedisKnowledgeStore(client=redis.Redis(decode_responses=True))
    with pytest.raises(ConfigurationError, match="redis.Redis"):
        RedisKnowledgeStore(client=redis.asyncio.Redis())
    with pytest.raises(ConfigurationError, match="not both"):
        RedisKnowledgeStore(client=redis.Redis(), host="h")


def test_secrets_stay_out_of_repr_and_errors() -> None:
    store = RedisKnowledgeStore("redis://user:hunter2secret@127.0.0.1:1/0?socket_connect_timeout=0.2")
    assert "hunter2secret" not in repr(store)
    with pytest.raises(ConnectionFailedError) as caught:
        store.list_collections()
    assert "hunter2secret" not in str(caught.value) and "127.0.0.1:1" in str(caught.value)
    store.close()


# -- the commands the store sends (FT.* recorded, the rest on a real Redis) ------------------------------------


class FTRecorder(redis.Redis):
    """A redis.Redis whose FT.* commands are recorded and answered from ``replies`` (the engine is not
    here); every other command reaches the real server."""

    ft_calls: list[tuple[Any, ...]]
    replies: dict[str, Any]

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if str(args[0]).upper().startswith("FT."):
            self.ft_calls.append(args)
            reply = self.replies.get(str(args[0]).upper(), b"OK")
            if isinstance(reply, Exception):
                raise reply
            return reply(args) if callable(reply) else reply
        return super().execute_command(*args, **options)


@pytest.fixture
def recorder(redis_server: RedisServer) -> Iterator[FTRecorder]:
    client = FTRecorder.from_url(redis_server.url)
    assert isinstance(client, FTRecorder)
    client.ft_calls, client.replies = [], {"FT.INFO": [b"indexing", 0]}
    yield client
    client.close()


@pytest.fixture
def prefix(redis_server: RedisServer) -> Iterator[str]:
    name = "u" + uuid.uuid4().hex[:10]
    yield name
    with redis.Redis.from_url(redis_server.url) as raw:
        keys = list(raw.scan_iter(match=f"{name}:*"))
        if keys:
            raw.delete(*keys)


def test_create_records_the_collection_after_ft_create(recorder: FTRecorder, prefix: str) -> None:
    store = RedisKnowledgeStore(client=recorder, prefix=prefix)
    store.create_collection("c", 4, "l2")
    assert [call[0] for call in recorder.ft_calls] == ["FT.CREATE", "FT.INFO"]
    assert list(recorder.ft_calls[0][1:]) == q.create_index_args(store.layout, "c", 4, Distance.L2, "FLAT")
    record = {q.as_text(k): q.as_text(v) for k, v in recorder.hgetall(f"{prefix}:col:c").items()}
    assert record == {"dimension": "4", "distance": "l2", "algorithm": "FLAT", "f:_sb_id": "TAG",
                      "f:_sb_ord": "NUMERIC"}
    assert store.list_collections() == ["c"]
    recorder.replies["FT.CREATE"] = redis.exceptions.ResponseError("Index already exists")
    with pytest.raises(AlreadyExistsError, match="FT.DROPINDEX"):
        store.create_collection("other", 4)
    assert store.list_collections() == ["c"]


def test_new_metadata_keys_are_added_to_the_index_before_documents_are_written(recorder: FTRecorder,
                                                                                prefix: str) -> None:
    store = RedisKnowledgeStore(client=recorder, prefix=prefix)
    store.create_collection("c", 2)
    recorder.ft_calls.clear()
    seen_keys: list[int] = []

    def alter(args: tuple[Any, ...]) -> bytes:
        seen_keys.append(len(list(recorder.scan_iter(match=f"{prefix}:doc:*"))))
        return b"OK"

    recorder.replies["FT.ALTER"] = alter
    docs = [KnowledgeDocument(id="a", embedding=[1.0, 0.0], metadata={"year": 2020, "tags": ["x"]}),
            KnowledgeDocument(id="b", embedding=[0.0, 1.0], metadata={"year": "n/a"})]
    store.insert("c", docs)
    t, n = q.tag_field, q.numeric_field
    assert recorder.ft_calls == [("FT.ALTER", f"{prefix}:idx:c", "SKIPINITIALSCAN", "SCHEMA", "ADD",
                                  n("year"), "NUMERIC", t("tags"), "TAG", t("year"), "TAG")]
    assert seen_keys == [0], "attributes must exist before the first document that has them"
    stored = recorder.hgetall(f"{prefix}:doc:c:=a")
    assert stored[b"orig"] == np.asarray([1.0, 0.0], "<f4").tobytes()  # cosine keeps the original
    # A second store object learns the attributes from Redis: no second FT.ALTER.
    recorder.ft_calls.clear()
    RedisKnowledgeStore(client=recorder, prefix=prefix).upsert("c", docs)
    assert recorder.ft_calls == []
    # A duplicate reported by the engine (another writer was first) is not an error.

    def duplicate_when_several(args: tuple[Any, ...]) -> bytes:
        if len(args) > 7:
            raise redis.exceptions.ResponseError(f"Duplicate field in schema - {args[5]}")
        return b"OK"

    recorder.replies["FT.ALTER"] = duplicate_when_several
    store.insert("c", [KnowledgeDocument(id="z", embedding=[1.0, 1.0], metadata={"p": 1, "r": 2})])
    assert [len(c) for c in recorder.ft_calls] == [13, 7, 7, 7, 7]
    assert store.get("c", ["z"])[0].metadata == {"p": 1, "r": 2}


def test_search_sends_knn_with_the_filter_and_rescores(recorder: FTRecorder, prefix: str) -> None:
    store = RedisKnowledgeStore(client=recorder, prefix=prefix)
    store.create_collection("c", 2, "dot")
    store.insert("c", [KnowledgeDocument(id=i, content=i, embedding=v, metadata={"year": y}) for i, v, y in
                       (("a", [1.0, 0.0], 2020), ("b", [2.0, 0.0], 2021), ("c", [0.0, 1.0], 2022))])

    def knn(args: tuple[Any, ...]) -> list[Any]:
        # Answer with documents b and a in the wrong order: the store re-scores exactly.
        reply: list[Any] = [2]
        for key in (f"{prefix}:doc:c:=a", f"{prefix}:doc:c:=b"):
            reply += [key.encode(), [x for pair in recorder.hgetall(key).items() for x in pair]]
        return reply

    recorder.replies["FT.SEARCH"] = knn
    recorder.ft_calls.clear()
    hits = store.search("c", [1.0, 0.0], k=2, filter={"year": {"$lt": 2022}})
    assert [(h.id, h.score) for h in hits] == [("b", 2.0), ("a", 1.0)]
    [call] = recorder.ft_calls
    assert call[0] == "FT.SEARCH" and call[2] == f"(@{q.numeric_field('year')}:[-inf ($v0])=>[KNN 18 @vec $BLOB AS __sb_dist]"
    assert call[call.index("PARAMS"):call.index("PARAMS") + 6] == (
        "PARAMS", 4, "v0", "2022.0", "BLOB", np.asarray([1.0, 0.0], "<f4").tobytes())
    assert call[-4:] == ("TIMEOUT", 0, "DIALECT", "2")
    # A filter that matches nothing by construction never reaches the engine.
    recorder.ft_calls.clear()
    assert store.search("c", [1.0, 0.0], filter={"year": {"$in": []}}) == []
    assert store.count("c", filter={"unknown": 1}) == 0
    assert recorder.ft_calls == []


def test_delete_by_filter_removes_what_the_engine_found(recorder: FTRecorder, prefix: str) -> None:
    store = RedisKnowledgeStore(client=recorder, prefix=prefix)
    store.create_collection("c", 2)
    store.insert("c", [KnowledgeDocument(id=i, embedding=[1.0, 1.0], metadata={"g": 1}) for i in "abc"])
    rounds = [[2, f"{prefix}:doc:c:=a".encode(), f"{prefix}:doc:c:=b".encode()], [0]]
    recorder.replies["FT.SEARCH"] = lambda args: rounds.pop(0)
    recorder.ft_calls.clear()
    assert store.delete("c", filter={"g": 1}) == 2
    assert [c[3] for c in recorder.ft_calls] == ["NOCONTENT", "NOCONTENT"]
    assert store.get("c", ["a", "b", "c"])[0].id == "c"
    # ids and a filter: only listed keys the engine confirms are deleted.
    recorder.replies["FT.SEARCH"] = [2, f"{prefix}:doc:c:=c".encode(), f"{prefix}:doc:c:=zz".encode()]
    assert store.delete("c", ["c"], filter={"g": 1}) == 1
    assert q.ids_condition(["c"]) in recorder.ft_calls[-1][2]


def test_a_redis_without_the_query_engine_is_refused_clearly(redis_server: RedisServer, prefix: str) -> None:
    """The Redis 7.0 of these machines has no query engine: a typed error that says what to use."""
    store = RedisKnowledgeStore(redis_server.url, prefix=prefix)
    with pytest.raises(NotSupportedError, match=r"no query engine.*Redis Stack 7\.2\+ or Redis 8") as caught:
        store.create_collection("docs", 4)
    assert isinstance(caught.value.__cause__, redis.exceptions.ResponseError)
    assert store.list_collections() == [] and store.has_collection("docs") is False
    store.close()
