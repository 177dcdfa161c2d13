"""The pure half of the Redis knowledge store: key layout, the hash each document becomes, the filter
compiler (our filter tree to the Redis query syntax, DIALECT 2), the FT.* argument lists and the reply
parsers. Nothing here talks to Redis or imports redis-py, so all of it is unit-tested without a server.

Why every value in a query is hex or a parameter. The query syntax gives meaning to punctuation,
spaces, ``@``, ``-``, ``|``, braces and ``*``, and its escaping rules have changed between dialects
and releases. So nothing a user wrote is pasted into query text: metadata keys become field names
made of ``[0-9a-z_]`` (:func:`field_id`), TAG values are type-prefixed hex or SHA-256 digests
(:func:`scalar_tag`, alphabet ``[0-9a-z]``), and numbers are ``PARAMS`` (``$v0``, ...). The unit tests
feed quotes, braces, pipes, ``@``, ``-``, ``*``, NUL and unicode through these functions and check
that only that alphabet comes out.

TAG encodings (one TAG field ``t_<fid>`` per metadata key; a document holds the tags of its value: the
facts of :mod:`storebridge.filter_facts`, spelled):

========================  =====================================================================
``p``                     the key is present and not None (``$exists``)
``s<hex>`` / ``h<sha>``   a string: hex of its UTF-8 up to 32 bytes, else its SHA-256 digest
``n<hex>``                a number, canonical: an integral value as its exact integer
                          (``1 == 1.0``, ``2**53 + 1 != 2.0**53``), else the shortest float repr
``bt`` / ``bf``           True / False (never equal to a number)
``l`` + one of the above  an element of a list value (``$contains``)
========================  =====================================================================

A NUMERIC field ``n_<fid>`` holds the value only when it is a number (not a bool, not in a list), so
range operators see numbers only. Ranges compare as float64 (the engine's NUMERIC type): integers
beyond 2**53 are compared rounded. The query engine's ``-`` is the exact complement within the index,
so the tree compiles as it is (:func:`storebridge.filter_facts.fold`): ``ne``/``nin``/``$not`` are
``-(...)`` and documents without the key match them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from storebridge.errors import InvalidIdentifierError, OperationFailedError, ValidationError
from storebridge.filter_facts import (
    BOOL,
    NUMBER,
    Fact,
    Token,
    Value,
    as_double,
    comparison_facts,
    field_facts,
    fold,
    hex_key,
    is_scalar,
    range_bound,
)
from storebridge.filters import Comparison, Filter, Op
from storebridge.models import Distance, KnowledgeDocument

# -- hash fields of a document (fixed names; user keys never become these) --------------------------------

ID = "id"
CONTENT = "content"
SOURCE = "source"
META = "meta"
#: The vector the index scans: for cosine collections the unit vector (normalised in float64 here, so
#: extreme values cannot overflow the engine's float32 norm), otherwise the original.
VEC = "vec"
#: Cosine collections only: the original float32 vector, for exact re-scoring and round trips.
ORIG = "orig"
#: TAG of the document id (:func:`scalar_tag`), so delete-by-ids-and-filter runs in the engine.
ID_TAG = "_sb_id"
#: NUMERIC, SORTABLE: a 53-bit digest of the id, the key of scroll's key-set pagination.
ORDER = "_sb_ord"
#: The KNN distance alias in FT.SEARCH replies.
DISTANCE_ALIAS = "__sb_dist"

RETURN_FIELDS = (ID, CONTENT, SOURCE, META)
VECTOR_FIELDS = (VEC, ORIG)
DIALECT = "2"

_DISTANCE_METRIC = {Distance.COSINE: "COSINE", Distance.L2: "L2", Distance.DOT: "IP"}
ALGORITHMS = ("FLAT", "HNSW")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
#: Short keys and strings are kept readable (hex); longer ones become a digest of fixed size.
_MAX_HEX_KEY_BYTES = 24
_MAX_HEX_VALUE_BYTES = 32


# -- layout ----------------------------------------------------------------------------------------------


def check_prefix(prefix: Any) -> str:
    """The key prefix every key of a store starts with: 1-64 letters, digits, ``_`` or ``-``."""
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise InvalidIdentifierError(
            f"invalid Redis knowledge key prefix {prefix!r}: use 1-64 letters, digits, '_' or '-'")
    return prefix


@dataclass(frozen=True)
class Layout:
    """Where a store keeps things. Collection names are validated (no ``:``), so the document prefix
    of one collection is never a prefix of another's."""

    prefix: str = "storebridge"

    @property
    def collections_key(self) -> str:
        """A SET of the collection names this prefix holds."""
        return f"{self.prefix}:collections"

    def collection_key(self, name: str) -> str:
        """A HASH: ``dimension``, ``distance``, ``algorithm`` and ``f:<attribute>`` = its type for every
        attribute of the index (the schema grows with FT.ALTER as new metadata keys arrive)."""
        return f"{self.prefix}:col:{name}"

    def index_name(self, name: str) -> str:
        return f"{self.prefix}:idx:{name}"

    def document_prefix(self, name: str) -> str:
        return f"{self.prefix}:doc:{name}:"

    def document_key(self, name: str, doc_id: str) -> str:
        """``=<id>``; an id with a NUL byte becomes ``#<sha256>`` instead, because the query engine
        cannot load a hash whose key holds NUL (it matches it, then returns no fields)."""
        if "\x00" in doc_id:
            return self.document_prefix(name) + "#" + hashlib.sha256(doc_id.encode("utf-8")).hexdigest()
        return self.document_prefix(name) + "=" + doc_id


# -- encodings -------------------------------------------------------------------------------------------


def field_id(key: str) -> str:
    """A metadata key as a field-name fragment of ``[0-9a-f]`` (or ``h`` + 40 hex digits for long keys)."""
    return hex_key(key, max_bytes=_MAX_HEX_KEY_BYTES, digest_chars=40)


def tag_field(key: str) -> str:
    return f"t_{field_id(key)}"


def numeric_field(key: str) -> str:
    return f"n_{field_id(key)}"


def value_tag(value: Value) -> str:
    """The TAG of a scalar (see the module docstring)."""
    if value.kind == BOOL:
        return "bt" if value.text == "1" else "bf"
    if value.kind == NUMBER:
        return "n" + value.text.encode("ascii").hex()
    raw = value.text.encode("utf-8")
    if len(raw) <= _MAX_HEX_VALUE_BYTES:
        return "s" + raw.hex()
    return "h" + hashlib.sha256(raw).hexdigest()


def scalar_tag(value: Any) -> str | None:
    """The TAG of a scalar, or None for what no filter value can equal (None, dicts, lists)."""
    return value_tag(Value.of(value)) if is_scalar(value) else None


def token_tag(token: Token) -> str:
    """The TAG of a fact in its key's TAG field (``p``, a scalar's tag, or ``l`` + an element's tag)."""
    if token.fact is Fact.PRESENT:
        return "p"
    assert token.value is not None and token.fact in (Fact.EQUALS, Fact.ELEMENT)
    return ("l" if token.fact is Fact.ELEMENT else "") + value_tag(token.value)


def order_key(doc_id: str) -> int:
    """The scroll order of a document: 53 bits of SHA-256 (exact in the engine's float64)."""
    return int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:7], "big") >> 3


def numeric_text(value: float) -> str:
    """A number as the engine stores it in a NUMERIC field (float64 text). Beyond float64's range
    a number cannot be stored faithfully: :class:`ValidationError`."""
    number = as_double(value)
    if number is None:
        raise ValidationError(f"the number {value!r} is beyond float64's range, which the Redis NUMERIC "
                              "index cannot hold; store it as a string")
    return repr(number)


def document_hash(doc: KnowledgeDocument, meta_json: str, vector: bytes, original: bytes | None
                  ) -> tuple[dict[str, str | bytes], dict[str, str]]:
    """The HASH fields of a document, and the index attributes (name -> type) its filter copies need."""
    fields: dict[str, str | bytes] = {ID: doc.id, CONTENT: doc.content, META: meta_json, VEC: vector,
                                      ID_TAG: scalar_tag(doc.id) or "", ORDER: str(order_key(doc.id))}
    if doc.source_id is not None:
        fields[SOURCE] = doc.source_id
    if original is not None:
        fields[ORIG] = original
    schema: dict[str, str] = {}
    for facts in field_facts(doc.metadata):
        tags = [token_tag(token) for token in facts.tokens() if token.fact is not Fact.NUMBER]
        if facts.number is not None:
            name = numeric_field(facts.key)
            fields[name] = numeric_text(facts.number)
            schema[name] = "NUMERIC"
        name = tag_field(facts.key)
        fields[name] = ",".join(tags)
        schema[name] = "TAG"
    return fields, schema


# -- filters ---------------------------------------------------------------------------------------------


@dataclass
class CompiledFilter:
    """Query text for FT.SEARCH (``*`` = every document) and its PARAMS; ``nothing`` when the filter can
    match no document, so the engine need not be asked."""

    text: str = "*"
    params: dict[str, str] = field(default_factory=dict)
    nothing: bool = False

    @property
    def everything(self) -> bool:
        return not self.nothing and self.text == "*"


class _Compiler:
    def __init__(self, schema: Container[str]) -> None:
        self.schema = schema
        self.params: dict[str, str] = {}

    def param(self, value: float) -> str:
        name = f"v{len(self.params)}"
        self.params[name] = repr(value)
        return "$" + name

    def tags(self, key: str, tags: Sequence[str]) -> str | bool:
        name = tag_field(key)
        tags = list(dict.fromkeys(tags))
        if not tags or name not in self.schema:  # no document has ever had this key
            return False
        return f"@{name}:{{{'|'.join(tags)}}}"

    def range(self, key: str, op: Op, value: float) -> str | bool:
        name = numeric_field(key)
        if name not in self.schema:  # no document has ever had a number under this key
            return False
        bound = range_bound(op, value)
        if isinstance(bound, bool):  # no double holds the bound: every stored number, or none
            return f"@{name}:[-inf +inf]" if bound else False
        if op is Op.GT:
            return f"@{name}:[({self.param(bound)} +inf]"
        if op is Op.GTE:
            return f"@{name}:[{self.param(bound)} +inf]"
        if op is Op.LT:
            return f"@{name}:[-inf ({self.param(bound)}]"
        return f"@{name}:[-inf {self.param(bound)}]"

    def comparison(self, node: Comparison) -> str | bool:
        facts = comparison_facts(node)
        if facts is None:
            return self.range(node.field, node.op, node.value)
        matched = self.tags(node.field, [token_tag(token) for token in facts.tokens])
        if not facts.negated:
            return matched
        return (not matched) if isinstance(matched, bool) else _negate(matched)


def _negate(part: str) -> str:
    # An attribute condition or a parenthesised group takes the minus directly; a negation is wrapped.
    return f"-{part}" if part.startswith(("@", "(")) else f"-({part})"


def compile_filter(tree: Filter | None, schema: Container[str]) -> CompiledFilter:
    """The query for ``tree`` given the index attributes in ``schema`` (an attribute no document has
    ever had makes its comparisons constant, and the engine would reject its name)."""
    if tree is None:
        return CompiledFilter()
    compiler = _Compiler(schema)
    compiled = fold(tree, compiler.comparison, all_of=lambda parts: "(" + " ".join(parts) + ")",
                    any_of=lambda parts: "(" + " | ".join(parts) + ")", negate=_negate)
    if compiled is True:
        return CompiledFilter()
    if compiled is False:
        return CompiledFilter(nothing=True)
    return CompiledFilter(compiled, compiler.params)


def restricted(where: CompiledFilter, extra: str) -> str:
    """``where`` AND ``extra`` (an attribute condition made here)."""
    return extra if where.everything else f"({where.text}) {extra}"


def ids_condition(ids: Sequence[str]) -> str:
    return f"@{ID_TAG}:{{{'|'.join(dict.fromkeys(scalar_tag(i) or '' for i in ids))}}}"


# -- commands ---------------------------------------------------------------------------------------------


def create_index_args(layout: Layout, name: str, dimension: int, distance: Distance, algorithm: str
                      ) -> list[Any]:
    """FT.CREATE: a HASH index on the collection's document prefix, with the vector, the id tag and
    the scroll order; metadata attributes are added later with FT.ALTER."""
    return [layout.index_name(name), "ON", "HASH", "PREFIX", 1, layout.document_prefix(name),
            "SCHEMA", VEC, "VECTOR", algorithm, 6, "TYPE", "FLOAT32", "DIM", dimension,
            "DISTANCE_METRIC", _DISTANCE_METRIC[distance],
            ID_TAG, "TAG", ORDER, "NUMERIC", "SORTABLE"]


#: The attributes FT.CREATE declares besides the vector (recorded in the collection's HASH).
BASE_SCHEMA = {ID_TAG: "TAG", ORDER: "NUMERIC"}


def alter_args(index: str, attributes: Mapping[str, str]) -> list[Any]:
    """FT.ALTER ... SKIPINITIALSCAN: no stored document has these attributes yet (they are added
    before the first document that has them is written), so nothing needs re-scanning."""
    args: list[Any] = [index, "SKIPINITIALSCAN", "SCHEMA", "ADD"]
    for name, kind in sorted(attributes.items()):
        args += [name, kind]
    return args


def _params_args(params: Mapping[str, str | bytes]) -> list[Any]:
    if not params:
        return []
    args: list[Any] = ["PARAMS", 2 * len(params)]
    for name, value in params.items():
        args += [name, value]
    return args


def _tail(params: Mapping[str, str | bytes]) -> list[Any]:
    # TIMEOUT 0: no time limit. The default policy (ON_TIMEOUT RETURN) would hand back partial
    # results without an error, which this store must never do.
    return [*_params_args(params), "TIMEOUT", 0, "DIALECT", DIALECT]


def knn_args(index: str, where: CompiledFilter, query_vector: bytes, k: int, *, with_vectors: bool = True
             ) -> list[Any]:
    """The ``k`` nearest documents matching ``where`` (FLAT: exact among the matches)."""
    base = "*" if where.everything else f"({where.text})"
    fields = [*RETURN_FIELDS, *(VECTOR_FIELDS if with_vectors else ())]
    params: dict[str, str | bytes] = {**where.params, "BLOB": query_vector}
    return [index, f"{base}=>[KNN {k} @{VEC} $BLOB AS {DISTANCE_ALIAS}]", "RETURN", len(fields), *fields,
            "SORTBY", DISTANCE_ALIAS, "ASC", "LIMIT", 0, k, *_tail(params)]


def count_args(index: str, where: CompiledFilter) -> list[Any]:
    return [index, where.text, "NOCONTENT", "LIMIT", 0, 0, *_tail(where.params)]


def keys_args(index: str, query: str, params: Mapping[str, str], limit: int) -> list[Any]:
    """The keys (no content) of up to ``limit`` matching documents."""
    return [index, query, "NOCONTENT", "LIMIT", 0, limit, *_tail(params)]


def page_args(index: str, where: CompiledFilter, low: int | None, *, exclusive: bool, high: int | None,
              limit: int, with_vectors: bool) -> list[Any]:
    """Documents with ``low <(=) order <= high`` matching ``where``, in order."""
    params = dict(where.params)
    lower = upper = "+inf"
    if low is None:
        lower = "-inf"
    else:
        params["olo"] = str(low)
        lower = "($olo" if exclusive else "$olo"
    if high is not None:
        params["ohi"] = str(high)
        upper = "$ohi"
    query = restricted(where, f"@{ORDER}:[{lower} {upper}]")
    fields = [*RETURN_FIELDS, *(VECTOR_FIELDS if with_vectors else ())]
    return [index, query, "RETURN", len(fields), *fields, "SORTBY", ORDER, "ASC", "LIMIT", 0, limit,
            *_tail(params)]


# -- replies ----------------------------------------------------------------------------------------------


def as_text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def _pairs(items: Any) -> dict[str, Any]:
    if isinstance(items, Mapping):
        return {as_text(k): v for k, v in items.items()}
    if isinstance(items, (list, tuple)):
        return {as_text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}
    return {}


@dataclass(frozen=True)
class SearchReply:
    total: int
    #: ``(key, fields)`` per document; ``fields`` is empty with NOCONTENT.
    documents: list[tuple[str, dict[str, Any]]]


def parse_search(reply: Any, *, content: bool = True) -> SearchReply:
    """FT.SEARCH's reply in RESP2 (``[total, key, [field, value, ...], ...]``) or RESP3 (a map with
    ``total_results`` and ``results``); a RESP3 warning (a timeout, a cut-off) is an error, never a
    silently partial answer."""
    if isinstance(reply, Mapping):
        top = _pairs(reply)
        warnings = [as_text(w) for w in (top.get("warning") or [])]
        if warnings:
            raise OperationFailedError(f"the Redis query engine answered with a warning, so the result may be "
                                       f"partial: {'; '.join(warnings)}")
        documents = []
        for item in top.get("results") or []:
            entry = _pairs(item)
            documents.append((as_text(entry.get("id", b"")), _pairs(entry.get("extra_attributes") or {})))
        return SearchReply(int(top.get("total_results", 0)), documents)
    if not isinstance(reply, (list, tuple)) or not reply:
        raise OperationFailedError(f"unexpected FT.SEARCH reply {reply!r:.200}")
    total, rest = int(reply[0]), list(reply[1:])
    if not content:
        return SearchReply(total, [(as_text(key), {}) for key in rest])
    return SearchReply(total, [(as_text(rest[i]), _pairs(rest[i + 1])) for i in range(0, len(rest) - 1, 2)])


def indexing_in_progress(info: Any) -> bool:
    """From FT.INFO (RESP2 list or RESP3 map): is the initial scan still running?"""
    fields = _pairs(info)
    indexing = fields.get("indexing", 0)
    try:
        return float(as_text(indexing)) != 0.0
    except ValueError:
        raise OperationFailedError(f"unexpected FT.INFO indexing value {indexing!r}") from None


# -- scroll cursors ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: after every document with order < ``order``, and, at ``order``
    itself, after ``last_id`` (None: after all of them)."""

    order: int
    last_id: str | None = None

    def encode(self) -> str:
        if self.last_id is None:
            return f"o{self.order}"
        return f"t{self.order}.{self.last_id.encode('utf-8').hex()}"


_CURSOR_RE = re.compile(r"^(?:o(\d{1,16})|t(\d{1,16})\.((?:[0-9a-f]{2})+))$")


def decode_cursor(text: str) -> Cursor:
    match = _CURSOR_RE.fullmatch(text)
    if match is None:
        raise ValidationError(f"invalid scroll cursor {text!r}; pass the next_cursor of the previous page")
    if match.group(1) is not None:
        return Cursor(int(match.group(1)))
    try:
        last_id = bytes.fromhex(match.group(3)).decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError(f"invalid scroll cursor {text!r}; pass the next_cursor of the previous page") from None
    return Cursor(int(match.group(2)), last_id)


__all__ = [
    "ALGORITHMS",
    "BASE_SCHEMA",
    "CompiledFilter",
    "Cursor",
    "Layout",
    "SearchReply",
    "alter_args",
    "as_text",
    "check_prefix",
    "compile_filter",
    "count_args",
    "create_index_args",
    "decode_cursor",
    "document_hash",
    "field_id",
    "indexing_in_progress",
    "knn_args",
    "numeric_field",
    "order_key",
    "page_args",
    "parse_search",
    "scalar_tag",
    "tag_field",
    "token_tag",
    "value_tag",
]
