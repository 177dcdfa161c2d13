"""The pure half of the MongoDB vector knowledge store: the document each knowledge document becomes, the
vector search index definition, the filter compiler (our filter tree to one MQL document that is valid
both as ``$vectorSearch.filter`` and as a ``find`` / ``count_documents`` / ``delete_many`` filter), the
``$vectorSearch`` stage and scroll cursors. No I/O and no driver import, so all of it is unit-tested
without a server.

Why one array of tags. ``$vectorSearch.filter`` accepts only ``$eq $ne $gt $gte $lt $lte $in $nin`` and
``$and $or $not $nor`` on fields declared ``filter`` in the index (no ``$exists``, no ``$type``), and
the index definition is fixed when it is built. So every equality-like fact about the top-level
metadata (the facts of :mod:`storebridge.filter_facts`) goes into ONE array of strings, ``_sb_t``,
declared once; each element is ``<fid>:<code>`` where ``<fid>`` is the hex of the key (or ``h`` + 40 hex digits of its SHA-256 for keys
over 24 bytes) and ``<code>`` is:

========================  =====================================================================
``p``                     the key is present and not None (``$exists``)
``s<text>`` / ``h<sha>``  a string: itself up to 256 UTF-8 bytes, else ``h`` + its SHA-256
``n<text>``               a number, canonical: an integral value as its exact integer (``1 == 1.0``,
                          ``2**53 + 1 != 2.0**53``), else the shortest float repr
``bt`` / ``bf``           True / False (never equal to a number)
``l`` + one of the above  an element of a list value (``$contains``)
========================  =====================================================================

plus ``_`` in every document, so the array is never missing or empty. On an array, MQL's (and the
vector index's) ``$eq`` / ``$in`` match if one element matches and ``$ne`` / ``$nin`` if none does, so:
``eq`` is ``{_sb_t: tag}``, ``ne`` ``{_sb_t: {$ne: tag}}`` (a missing key matches), ``in`` / ``nin``
are ``$in`` / ``$nin`` of tags, ``contains`` the ``l`` tag, ``exists`` the ``p`` tag (``$ne`` for false),
``$not`` is ``$nor`` (the exact complement; a missing field makes the inner condition false), so the tree
compiles as it is (:func:`storebridge.filter_facts.fold`).

Ranges need a numeric field: the first N numeric keys of a collection each get a numeric slot field
``_sb_n<k>`` (N = ``numeric_slots``, fixed when the index is made, declared ``filter`` in it); a
document holds its number there as a double, so ranges see numbers only and compare as float64
(integers beyond 2**53 are compared rounded). The key -> slot map lives in the store's registry.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from storebridge.errors import InvalidIdentifierError, ValidationError
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

CONTENT = "content"
SOURCE = "source"
META = "meta"
#: The vector the index scans: for cosine collections the unit vector (normalised in float64 here),
#: otherwise the original, as an array of doubles.
VEC = "vec"
#: Cosine collections only: the original float32 vector (little-endian bytes), for exact re-scoring.
ORIG = "orig"
TAGS = "_sb_t"
#: The token of the write that wrote the document: lets the store wait until the search index has it.
WRITE = "_sb_w"
ALWAYS = "_"
INDEX_NAME = "storebridge_vector"
#: $vectorSearch's bound on numCandidates; beyond it a search is exact (ENN).
MAX_CANDIDATES = 10_000
_SIMILARITY = {Distance.COSINE: "cosine", Distance.L2: "euclidean", Distance.DOT: "dotProduct"}
_MAX_HEX_KEY_BYTES = 24
_MAX_PLAIN_STRING_BYTES = 256
_F64_MAX = 1.7976931348623157e308
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_\-]{0,40}$")
#: What a read returns; the filter copies stay in the database.
PROJECTION = {CONTENT: 1, SOURCE: 1, META: 1}
VECTOR_PROJECTION = {VEC: 1, ORIG: 1}


def check_prefix(prefix: Any) -> str:
    """The prefix of the MongoDB collection names (``<prefix><collection>``): up to 40 letters, digits,
    ``_`` or ``-`` (it may be empty)."""
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise InvalidIdentifierError(
            f"invalid MongoDB collection prefix {prefix!r}: use up to 40 letters, digits, '_' or '-'")
    return prefix


def registry_name(prefix: str) -> str:
    """The registry collection. Knowledge collection names have no ``.``, so it never meets one."""
    return f"{prefix}.registry"


def slot_field(slot: int) -> str:
    return f"_sb_n{slot}"


def similarity(distance: Distance) -> str:
    return _SIMILARITY[distance]


# -- encodings -----------------------------------------------------------------------------------------------


def field_id(key: str) -> str:
    """A metadata key as ``[0-9a-f]`` (or ``h`` + 40 hex digits for keys over 24 bytes)."""
    return hex_key(key, max_bytes=_MAX_HEX_KEY_BYTES, digest_chars=40)


def scalar_code(value: Value) -> str:
    """The code of a scalar (see the module docstring)."""
    if value.kind == BOOL:
        return "bt" if value.text == "1" else "bf"
    if value.kind == NUMBER:
        return "n" + value.text
    raw = value.text.encode("utf-8")
    return "s" + value.text if len(raw) <= _MAX_PLAIN_STRING_BYTES else "h" + hashlib.sha256(raw).hexdigest()


def value_code(value: Any) -> str | None:
    """The code of a scalar (see the module docstring), or None for what no filter value can equal."""
    return scalar_code(Value.of(value)) if is_scalar(value) else None


def tag(key: str, code: str) -> str:
    return f"{field_id(key)}:{code}"


def token_tag(token: Token) -> str:
    """The element of ``_sb_t`` that says a fact (``p``, a scalar's code, ``l`` + an element's code)."""
    if token.fact is Fact.PRESENT:
        return tag(token.key, "p")
    assert token.value is not None and token.fact in (Fact.EQUALS, Fact.ELEMENT)
    return tag(token.key, ("l" if token.fact is Fact.ELEMENT else "") + scalar_code(token.value))


def slot_value(value: float) -> float:
    """A metadata number as the double the slot field holds; beyond float64's range it cannot be held."""
    number = as_double(value)
    if number is None:
        raise ValidationError(f"the number {value!r} is beyond float64's range, which the vector search index "
                              "cannot hold; store it as a string")
    return number


def numeric_keys(doc: KnowledgeDocument) -> list[str]:
    """The top-level keys of ``doc`` whose value is a number (they need a slot)."""
    return [facts.key for facts in field_facts(doc.metadata) if facts.number is not None]


def document(doc: KnowledgeDocument, meta_json: str, vector: Sequence[float], original: bytes | None,
             slots: Mapping[str, int], write_token: str) -> dict[str, Any]:
    """The MongoDB document of ``doc``. ``slots`` maps field ids to slot numbers and must hold every
    numeric key of ``doc`` (:func:`numeric_keys`)."""
    tags = [ALWAYS]
    stored: dict[str, Any] = {"_id": doc.id, CONTENT: doc.content, META: meta_json, VEC: list(vector),
                              WRITE: write_token}
    if doc.source_id is not None:
        stored[SOURCE] = doc.source_id
    if original is not None:
        stored[ORIG] = original
    for facts in field_facts(doc.metadata):
        if facts.number is not None:
            stored[slot_field(slots[field_id(facts.key)])] = slot_value(facts.number)
        tags += [token_tag(token) for token in facts.tokens() if token.fact is not Fact.NUMBER]
    stored[TAGS] = tags
    return stored


# -- the index -------------------------------------------------------------------------------------------------


def index_definition(dimension: int, distance: Distance, numeric_slots: int) -> dict[str, Any]:
    """A ``vectorSearch`` index: the vector, the tag array, the write token, ``_id`` and the slots."""
    fields: list[dict[str, Any]] = [
        {"type": "vector", "path": VEC, "numDimensions": dimension, "similarity": similarity(distance)},
        {"type": "filter", "path": TAGS},
        {"type": "filter", "path": WRITE},
        {"type": "filter", "path": "_id"},
    ]
    fields += [{"type": "filter", "path": slot_field(slot)} for slot in range(numeric_slots)]
    return {"fields": fields}


# -- filters -----------------------------------------------------------------------------------------------------


class _Compiler:
    def __init__(self, slots: Mapping[str, int]) -> None:
        self.slots = slots

    def comparison(self, node: Comparison) -> dict[str, Any] | bool:
        facts = comparison_facts(node)
        if facts is None:
            return self.range(node.field, node.op, node.value)
        tags = [token_tag(token) for token in facts.tokens]
        if not tags:  # $in: [] matches nothing, $nin: [] everything
            return facts.negated
        if node.op in (Op.IN, Op.NIN):
            return {TAGS: {"$nin" if facts.negated else "$in": tags}}
        return {TAGS: {"$ne": tags[0]}} if facts.negated else {TAGS: tags[0]}

    def range(self, key: str, op: Op, value: float) -> dict[str, Any] | bool:
        slot = self.slots.get(field_id(key))
        if slot is None:  # no document of the collection has ever had a number under this key
            return False
        name = slot_field(slot)
        bound = range_bound(op, value)
        if isinstance(bound, bool):  # no double holds the bound: every stored number, or none
            return {name: {"$gte": -_F64_MAX}} if bound else False
        return {name: {"$" + op.value: bound}}


def _all(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"$and": parts}


def _any(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"$or": parts}


def _nor(part: dict[str, Any]) -> dict[str, Any]:
    """The exact complement (a document missing the tested field matches)."""
    return {"$nor": [part]}


@dataclass(frozen=True)
class CompiledFilter:
    """``mql``: the filter document (None: every document); ``nothing``: no document can match."""

    mql: dict[str, Any] | None = None
    nothing: bool = False

    def restricted(self, extra: dict[str, Any]) -> dict[str, Any]:
        return extra if self.mql is None else {"$and": [extra, self.mql]}


def compile_filter(tree: Filter | None, slots: Mapping[str, int]) -> CompiledFilter:
    if tree is None:
        return CompiledFilter()
    compiled = fold(tree, _Compiler(slots).comparison, all_of=_all, any_of=_any, negate=_nor)
    if compiled is True:
        return CompiledFilter()
    if compiled is False:
        return CompiledFilter(nothing=True)
    return CompiledFilter(compiled)


# -- queries ---------------------------------------------------------------------------------------------------


def candidates(limit: int) -> int:
    """numCandidates: ten times the limit, at least 100, at most 10,000."""
    return min(MAX_CANDIDATES, max(limit * 10, 100))


def vector_search_stage(query: Sequence[float], limit: int, where: CompiledFilter, *, exact: bool,
                        index: str = INDEX_NAME) -> dict[str, Any]:
    """``$vectorSearch``: approximate (HNSW) with numCandidates, or exact (ENN) when asked or when
    ``limit`` exceeds what numCandidates allows."""
    stage: dict[str, Any] = {"index": index, "path": VEC, "queryVector": list(query), "limit": limit}
    if exact or limit > MAX_CANDIDATES:
        stage["exact"] = True
    else:
        stage["numCandidates"] = candidates(limit)
    if where.mql is not None:
        stage["filter"] = where.mql
    return {"$vectorSearch": stage}


def search_pipeline(query: Sequence[float], limit: int, where: CompiledFilter, *, exact: bool) -> list[dict[str, Any]]:
    return [vector_search_stage(query, limit, where, exact=exact),
            {"$project": {**PROJECTION, **VECTOR_PROJECTION}}]


def visible_pipeline(query: Sequence[float], condition: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """How many documents matching ``condition`` the search index already has (exact search, so a
    selective condition finds every match)."""
    stage = {"index": INDEX_NAME, "path": VEC, "queryVector": list(query), "exact": True, "limit": limit,
             "filter": condition}
    return [{"$vectorSearch": stage}, {"$count": "n"}]


# -- scroll cursors --------------------------------------------------------------------------------------------


_CURSOR_RE = re.compile(r"^i((?:[0-9a-f]{2})+)$")


def encode_cursor(last_id: str) -> str:
    return "i" + last_id.encode("utf-8").hex()


def decode_cursor(text: str) -> str:
    match = _CURSOR_RE.fullmatch(text)
    try:
        if match is not None:
            return bytes.fromhex(match.group(1)).decode("utf-8")
    except UnicodeDecodeError:
        pass
    raise ValidationError(f"invalid scroll cursor {text!r}; pass the next_cursor of the previous page")


__all__ = [
    "INDEX_NAME",
    "CompiledFilter",
    "check_prefix",
    "compile_filter",
    "decode_cursor",
    "document",
    "encode_cursor",
    "field_id",
    "index_definition",
    "numeric_keys",
    "registry_name",
    "search_pipeline",
    "tag",
    "value_code",
    "vector_search_stage",
    "visible_pipeline",
]
