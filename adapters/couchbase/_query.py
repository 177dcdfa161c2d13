"""What the ``couchbase`` knowledge store sends, built without the client: document bodies, keys, the Search
(FTS) vector index definition, SQL++ statements and both filter compilers (SQL++ and Search queries).

Everything here is plain data (dicts, strings, named parameters), so the unit tests pin the exact output;
:mod:`.knowledge` wraps the Search query dict in ``couchbase.search.RawQuery``.

Document body (one Couchbase document per storebridge document, in the collection's Couchbase collection):

* ``id``, ``content``, ``source``: the document's id, content and source_id; ``m``: the metadata as the
  caller gave it (KV reads return the JSON bytes written, so ``1.0`` stays a float);
* ``vec``: the vector the Search index searches (for cosine the unit vector, so the index's
  ``dot_product`` similarity orders by cosine); ``vo``: cosine only, the caller's float32 vector in base64;
* ``sbf``: typed copies of the filterable top-level metadata (the facts of :mod:`storebridge.filter_facts`), named by
  the hex of the key's UTF-8 so no character of a user key reaches a field path: ``sbf.k`` the keys present
  and not None; ``sbf.s.<hex>`` a string (``"=" + value``, or ``"#" + SHA-256`` past 256 bytes, so the empty
  string and very long strings are ordinary terms), ``sbf.n.<hex>`` a number, ``sbf.b.<hex>`` a bool, and
  ``sbf.ls``/``ln``/``lb`` the string/number/bool elements of a list field.

Keys: the document id itself, unless it is longer than 240 UTF-8 bytes (Couchbase keys stop at 250) or
starts with ``_sb:``; those get ``_sb:h:`` + SHA-256 of the id. The collection's dimension and distance
live in the document ``_sb:info`` of the same collection, which every statement leaves out.

Filters. Count, delete and scroll run SQL++ over ``m`` (:func:`compile_sqlpp`): every comparison is written
so that it is TRUE or FALSE, never MISSING or NULL (``TYPE(x) = "string" AND x = $p``), so ``NOT`` is the
exact complement and a missing or null field matches ``ne``/``nin``. SQL++ compares numbers by value
(``1 = 1.0``) and never equals a bool to a number; the type guards keep ranges on numbers, ``eq`` off lists,
and ``contains`` on arrays (``ANY e IN x SATISFIES ... END``); ``exists`` is ``x IS VALUED``. Keys are
backtick-quoted identifiers (a backtick doubled; backslash and control characters refused, though the
filter grammar never lets them through) and every value is a named parameter.

Vector search runs on the Search service with the filter as a prefilter (Couchbase Server 7.6.4+):
:func:`compile_fts` maps each comparison to the typed ``sbf`` fields (term on the keyword-analysed string
copy, numeric range ``[v, v]`` for a number, boolean field query, conjunction/disjunction, and a boolean
query's ``must_not`` for negation), which has FILTERS.md's meaning because each field holds one JSON type:
a string never meets a number, ``True`` never meets ``1``, a list never equals a scalar. ``in []`` and
other constant answers are decided here. Search results are then read back through KV and the exact filter
is checked again on them, so a Search index that lags behind a write from another client can drop a match
but never add a wrong one.

Numbers are compared as IEEE doubles by both services (integers beyond 2**53 round; beyond ±1.8e308 they
are not indexed as numbers); ±infinity bounds are decided here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from storebridge.engine import sql_condition
from storebridge.errors import ConfigurationError, FilterError, UnsupportedFilterError, ValidationError
from storebridge.filter_facts import as_double, field_facts, fold, range_bound
from storebridge.filters import Comparison, Filter, Op, is_number
from storebridge.models import Distance, KnowledgeDocument
from storebridge.vectors import metadata_json

INFO_KEY = "_sb:info"
HASHED_PREFIX = "_sb:h:"
#: Couchbase keys stop at 250 bytes; longer ids (and ids that look internal) are hashed.
MAX_PLAIN_KEY = 240
#: String copies longer than this many UTF-8 bytes are indexed as their SHA-256.
MAX_TERM_BYTES = 256
VECTOR_FIELD = "vec"
#: Couchbase collection names: 1-251 characters of A-Z a-z 0-9 _ - %, not starting with _ or %.
_PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,30}$")
_BUCKET_RE = re.compile(r"^[A-Za-z0-9._%-]{1,100}$")
_SCOPE_RE = re.compile(r"^(?:_default|[A-Za-z0-9-][A-Za-z0-9_%-]{0,250})$")
_SIMILARITY = {Distance.COSINE: "dot_product", Distance.DOT: "dot_product", Distance.L2: "l2_norm"}
_RANGE_SQL = {Op.GT: ">", Op.GTE: ">=", Op.LT: "<", Op.LTE: "<="}
_NOT_INFO = f'META(d).id != "{INFO_KEY}"'

# -- names ----------------------------------------------------------------------------------------------------


def validate_prefix(prefix: Any) -> str:
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise ConfigurationError(f"invalid collection prefix {prefix!r}: a letter, then up to 30 letters, digits, "
                                 "'_' or '-'")
    return prefix


def validate_bucket(name: Any) -> str:
    if not isinstance(name, str) or not _BUCKET_RE.fullmatch(name):
        raise ConfigurationError(f"invalid Couchbase bucket name {name!r}")
    return name


def validate_scope(name: Any) -> str:
    if not isinstance(name, str) or not _SCOPE_RE.fullmatch(name):
        raise ConfigurationError(f"invalid Couchbase scope name {name!r}")
    return name


def quote(name: str) -> str:
    """A SQL++ escaped identifier: backticks around, a backtick inside doubled. Backslashes and control
    characters are refused rather than trusted to the lexer (no name this store uses contains one)."""
    if not isinstance(name, str) or not name or "\\" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise FilterError(f"{name!r} cannot be used as a SQL++ identifier")
    return "`" + name.replace("`", "``") + "`"


def keyspace(bucket: str, scope: str, collection: str) -> str:
    return f"{quote(bucket)}.{quote(scope)}.{quote(collection)}"


def index_name(collection: str) -> str:
    """The Search index of a Couchbase collection (scoped to its scope): letters first, as Search requires."""
    return f"{collection}_sbvec"


def document_key(doc_id: str) -> str:
    if doc_id.startswith("_sb:") or len(doc_id.encode("utf-8")) > MAX_PLAIN_KEY:
        return HASHED_PREFIX + hashlib.sha256(doc_id.encode("utf-8")).hexdigest()
    return doc_id


def encode_cursor(key: str) -> str:
    return "k" + base64.urlsafe_b64encode(key.encode("utf-8")).decode("ascii")


def decode_cursor(cursor: str) -> str:
    try:
        if not cursor.startswith("k"):
            raise ValueError(cursor)
        key = base64.urlsafe_b64decode(cursor[1:].encode("ascii")).decode("utf-8")
        if not key or encode_cursor(key) != cursor:
            raise ValueError(cursor)
    except (ValueError, UnicodeError, binascii.Error):
        raise ValidationError(f"invalid scroll cursor {cursor!r}; pass the next_cursor of the previous page") from None
    return key


# -- bodies ---------------------------------------------------------------------------------------------------


def _hex(key: str) -> str:
    return key.encode("utf-8").hex()


def term(text: str) -> str:
    """The indexed (and searched) form of a string: never empty, never longer than 64 + 1 characters
    past :data:`MAX_TERM_BYTES` bytes."""
    data = text.encode("utf-8")
    return "#" + hashlib.sha256(data).hexdigest() if len(data) > MAX_TERM_BYTES else "=" + text


def typed_copies(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The ``sbf`` object of a body (see the module docstring)."""
    out: dict[str, Any] = {"k": []}
    for facts in field_facts(metadata):
        h = _hex(facts.key)
        out["k"].append(h)
        value = facts.scalar
        if facts.elements is not None:
            items = facts.elements
            for family, copies in (("ls", [term(v) for v in items if isinstance(v, str)]),
                                   ("ln", [n for n in (as_double(v) for v in items if is_number(v)) if n is not None]),
                                   ("lb", [v for v in items if isinstance(v, bool)])):
                if copies:
                    out.setdefault(family, {})[h] = copies
        elif isinstance(value, bool):
            out.setdefault("b", {})[h] = value
        elif isinstance(value, str):
            out.setdefault("s", {})[h] = term(value)
        elif facts.number is not None:
            number = as_double(facts.number)
            if number is not None:  # beyond ±1.8e308 it is not indexed as a number (see above)
                out.setdefault("n", {})[h] = number
    return out


def vector_b64(vector: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def body(doc: KnowledgeDocument, vector: np.ndarray, distance: Distance) -> dict[str, Any]:
    """The Couchbase document for a checked document and its float32 vector."""
    # through metadata_json: refused if it is not JSON (NaN, non-string keys), tuples become lists
    metadata = json.loads(metadata_json(doc))
    out: dict[str, Any] = {"id": doc.id, "content": doc.content, "source": doc.source_id, "m": metadata}
    if distance is Distance.COSINE:
        wide = vector.astype(np.float64)
        searched = (wide / np.linalg.norm(wide)).astype(np.float32)
        out["vo"] = vector_b64(vector)
    else:
        searched = vector
    out[VECTOR_FIELD] = [float(x) for x in searched]
    out["sbf"] = typed_copies(metadata)
    return out


def parse_body(data: Any, dimension: int) -> tuple[KnowledgeDocument, np.ndarray]:
    """A document and its original float32 vector from a body this store wrote."""
    if not isinstance(data, Mapping) or not isinstance(data.get("id"), str) or VECTOR_FIELD not in data:
        raise ValidationError("a Couchbase document in this collection was not written by storebridge")
    if "vo" in data:
        vector = np.frombuffer(base64.b64decode(data["vo"]), dtype="<f4").astype(np.float32)
    else:
        vector = np.asarray(data[VECTOR_FIELD], dtype=np.float32)
    if vector.shape != (dimension,):
        raise ValidationError(f"document {data['id']!r} has a {vector.size}-d vector in a {dimension}-d collection")
    metadata = data.get("m") or {}
    doc = KnowledgeDocument(id=data["id"], content=data.get("content", ""), source_id=data.get("source"),
                            metadata=dict(metadata))
    return doc, vector


def info_body(dimension: int, distance: Distance) -> dict[str, Any]:
    return {"sb_info": 1, "dimension": int(dimension), "distance": distance.value}


# -- the Search index -----------------------------------------------------------------------------------------


def index_params(scope: str, collection: str, dimension: int, distance: Distance) -> dict[str, Any]:
    """``params`` of the Search index: the vector field, and ``sbf`` indexed dynamically (strings with the
    keyword analyzer: the whole value is one exact term), nothing else."""
    return {
        "doc_config": {"mode": "scope.collection.type_field", "type_field": "type", "docid_prefix_delim": "",
                       "docid_regexp": ""},
        "mapping": {
            "default_analyzer": "keyword",
            "default_mapping": {"enabled": False, "dynamic": False},
            "default_type": "_default",
            "docvalues_dynamic": False,
            "index_dynamic": True,
            "store_dynamic": False,
            "type_field": "_type",
            "types": {
                f"{scope}.{collection}": {
                    "enabled": True,
                    "dynamic": False,
                    "properties": {
                        VECTOR_FIELD: {"enabled": True, "dynamic": False, "fields": [{
                            "name": VECTOR_FIELD, "type": "vector", "dims": int(dimension),
                            "similarity": _SIMILARITY[distance], "vector_index_optimized_for": "recall",
                            "index": True}]},
                        "sbf": {"enabled": True, "dynamic": True, "default_analyzer": "keyword"},
                    },
                },
            },
        },
        "store": {"indexType": "scorch", "segmentVersion": 16},
    }


# -- SQL++ ----------------------------------------------------------------------------------------------------


class _Params:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def bind(self, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return "$" + name


def _sqlpp_number(value: Any) -> Any:
    """A finite filter number as a SQL++ parameter (ints within int64 stay ints, as the query engine holds them)."""
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return value
    return as_double(value)


def compile_sqlpp(tree: Filter, params: _Params | None = None) -> tuple[str, dict[str, Any]]:
    """A SQL++ condition over documents aliased ``d`` (metadata in ``d.m``), and its named parameters."""
    params = params or _Params()
    return sql_condition(tree, _SQLPP(params).comparison), params.values


class _SQLPP:
    def __init__(self, params: _Params) -> None:
        self.params = params

    def comparison(self, node: Comparison) -> str:
        field, op, value = node.field, node.op, node.value
        if "." in field:
            raise UnsupportedFilterError(f"filter key {field!r}: nested paths are not indexed by this backend")
        x = f"d.m.{quote(field)}"
        if op is Op.EXISTS:
            return f"({x} IS VALUED)" if value else f"({x} IS NOT VALUED)"
        if op in (Op.EQ, Op.NE, Op.IN, Op.NIN):
            values = (value,) if op in (Op.EQ, Op.NE) else tuple(value)
            equal = self.equals_any(x, values)
            return equal if op in (Op.EQ, Op.IN) else f"(NOT {equal})"
        if op is Op.CONTAINS:
            element = self.equals_any("e", (value,))
            return f'(TYPE({x}) = "array" AND ANY e IN {x} SATISFIES {element} END)'
        if op in _RANGE_SQL:
            bound = range_bound(op, value)
            if isinstance(bound, bool):  # no double holds the bound: every number, or none
                return f'(TYPE({x}) = "number")' if bound else "FALSE"
            return f'(TYPE({x}) = "number" AND {x} {_RANGE_SQL[op]} {self.params.bind(_sqlpp_number(value))})'
        raise FilterError(f"unknown filter operator {op!r}")

    def equals_any(self, x: str, values: Sequence[Any]) -> str:
        """``x`` equals one of ``values`` by the filter language's equality; always TRUE or FALSE."""
        strings = list(dict.fromkeys(v for v in values if isinstance(v, str)))
        numbers = list(dict.fromkeys(n for n in (_sqlpp_number(v) for v in values if is_number(v)) if n is not None))
        bools = sorted({bool(v) for v in values if isinstance(v, bool)})
        terms: list[str] = []
        for kind, group in (("string", strings), ("number", numbers)):
            if len(group) == 1:
                terms.append(f'(TYPE({x}) = "{kind}" AND {x} = {self.params.bind(group[0])})')
            elif group:
                terms.append(f'(TYPE({x}) = "{kind}" AND {x} IN {self.params.bind(group)})')
        if bools:
            terms.append(f'(TYPE({x}) = "boolean" AND {x} IN [{", ".join("TRUE" if b else "FALSE" for b in bools)}])')
        if not terms:
            return "FALSE"
        return terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"


def _condition(where: Filter | None, keys: Sequence[str] | None = None,
               after: str | None = None) -> tuple[str, dict[str, Any]]:
    params = _Params()
    parts = [_NOT_INFO]
    if keys is not None:
        parts.append(f"META(d).id IN {params.bind(list(keys))}")
    if after is not None:
        parts.append(f"META(d).id > {params.bind(after)}")
    if where is not None:
        parts.append(compile_sqlpp(where, params)[0])
    return " WHERE " + " AND ".join(parts), params.values


def count_statement(space: str, where: Filter | None) -> tuple[str, dict[str, Any]]:
    condition, params = _condition(where)
    return f"SELECT RAW COUNT(*) FROM {space} AS d{condition}", params


def keys_statement(space: str, keys: Sequence[str] | None, where: Filter | None) -> tuple[str, dict[str, Any]]:
    """The keys of the documents to delete (listed, if ``keys``, and matching ``where``)."""
    condition, params = _condition(where, keys)
    return f"SELECT RAW META(d).id FROM {space} AS d{condition}", params


def page_statement(space: str, after: str | None, where: Filter | None, limit: int) -> tuple[str, dict[str, Any]]:
    condition, params = _condition(where, after=after)
    params["limit"] = int(limit)
    return f"SELECT RAW META(d).id FROM {space} AS d{condition} ORDER BY META(d).id LIMIT $limit", params


# -- Search queries -------------------------------------------------------------------------------------------

MATCH_ALL: dict[str, Any] = {"match_all": {}}
MATCH_NONE: dict[str, Any] = {"match_none": {}}


def compile_fts(tree: Filter) -> dict[str, Any] | bool:
    """The Search query for ``tree`` over the ``sbf`` fields, or True (matches everything: no prefilter) /
    False (matches nothing: no need to search)."""
    return fold(tree, _FTS().comparison, all_of=lambda parts: {"conjuncts": parts}, any_of=_any, negate=_negate)


def _negate(query: dict[str, Any] | bool) -> dict[str, Any] | bool:
    """Everything but ``query``: a boolean query of match_all minus it (a negation's negation unwraps)."""
    if isinstance(query, bool):
        return not query
    if set(query) == {"must", "must_not"} and query["must"] == {"conjuncts": [MATCH_ALL]} \
            and len(query["must_not"]["disjuncts"]) == 1:
        return query["must_not"]["disjuncts"][0]  # type: ignore[no-any-return]
    return {"must": {"conjuncts": [MATCH_ALL]}, "must_not": {"disjuncts": [query], "min": 0}}


class _FTS:
    def comparison(self, node: Comparison) -> dict[str, Any] | bool:
        field, op, value = node.field, node.op, node.value
        if "." in field:
            raise UnsupportedFilterError(f"filter key {field!r}: nested paths are not indexed by this backend")
        h = _hex(field)
        if op is Op.EXISTS:
            present = {"term": h, "field": "sbf.k"}
            return present if value else _negate(present)
        if op in (Op.EQ, Op.NE, Op.IN, Op.NIN):
            values = (value,) if op in (Op.EQ, Op.NE) else tuple(value)
            equal = _any([q for v in values if (q := _equals(h, v, "")) is not None])
            return equal if op in (Op.EQ, Op.IN) else _negate(equal)
        if op is Op.CONTAINS:
            query = _equals(h, value, "l")
            return False if query is None else query
        if op in _RANGE_SQL:
            number = range_bound(op, value)
            if isinstance(number, bool):  # no double holds the bound: every number, or none
                return {"min": -1.7976931348623157e308, "inclusive_min": True, "field": f"sbf.n.{h}"} if number else False
            bound = "min" if op in (Op.GT, Op.GTE) else "max"
            return {bound: number, f"inclusive_{bound}": op in (Op.GTE, Op.LTE), "field": f"sbf.n.{h}"}
        raise FilterError(f"unknown filter operator {op!r}")


def _equals(h: str, value: Any, family: str) -> dict[str, Any] | None:
    """The query for a field of ``family`` ('' scalars, 'l' list elements) equal to ``value``; None when no
    stored value can be equal (a number no double holds)."""
    if isinstance(value, bool):
        return {"bool": value, "field": f"sbf.{family}b.{h}"}
    if is_number(value):
        number = as_double(value)
        if number is None:
            return None
        return {"min": number, "max": number, "inclusive_min": True, "inclusive_max": True,
                "field": f"sbf.{family}n.{h}"}
    return {"term": term(value), "field": f"sbf.{family}s.{h}"}


def _any(queries: list[Any]) -> dict[str, Any] | bool:
    if not queries:
        return False
    return queries[0] if len(queries) == 1 else {"disjuncts": queries, "min": 1}


__all__ = [
    "INFO_KEY",
    "MATCH_ALL",
    "MATCH_NONE",
    "VECTOR_FIELD",
    "body",
    "compile_fts",
    "compile_sqlpp",
    "count_statement",
    "decode_cursor",
    "document_key",
    "encode_cursor",
    "index_name",
    "index_params",
    "info_body",
    "keys_statement",
    "keyspace",
    "page_statement",
    "parse_body",
    "quote",
    "term",
    "typed_copies",
    "validate_bucket",
    "validate_prefix",
    "validate_scope",
]
