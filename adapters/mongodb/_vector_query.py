"""The pure half of the MongoDB vector knowledge store: the document each knowledge document becomes, the
vector search index definition, the filter compiler (our filter tree to one MQL document that is valid
both as ``$vectorSearch.filter`` and as a ``find`` / ``count_documents`` / ``delete_many`` filter), the
``$vectorSearch`` stage and scroll cursors. No I/O and no driver import, so all of it is unit-tested
without a server.

Why one array of tags. ``$vectorSearch.filter`` accepts only ``$eq $ne $gt $gte $lt $lte $in $nin`` and
``$and $or $not $nor`` on fields declared ``filter`` in the index (no ``$exists``, no ``$type``), and
the index definition is fixed when it is built. So every equality-like fact about the top-level
metadata goes into ONE array of strings, ``_sb_t``, declared once; each element is
``<fid>:<code>`` where ``<fid>`` is the hex of the key (or ``h`` + 40 hex digits of its SHA-256 for keys
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
``$not`` is ``$nor`` (the exact complement; a missing field makes the inner condition false).

Ranges need a numeric field: the first N numeric keys of a collection each get a numeric slot field
``_sb_n<k>`` (N = ``numeric_slots``, fixed when the index is made, declared ``filter`` in it); a
document holds its number there as a double, so ranges see numbers only and compare as float64
(integers beyond 2**53 are compared rounded). The key -> slot map lives in the store's registry.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from storebridge.errors import FilterError, InvalidIdentifierError, ValidationError
from storebridge.filters import And, Comparison, Filter, Not, Op, Or, is_number
from storebridge.filters import validate_key as _validate_key
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
    raw = key.encode("utf-8")
    if len(raw) <= _MAX_HEX_KEY_BYTES:
        return raw.hex()
    return "h" + hashlib.sha256(raw).hexdigest()[:40]


def canonical_number(value: float) -> str:
    if isinstance(value, int) or (math.isfinite(value) and float(value).is_integer()):
        return str(int(value))
    return repr(float(value))


def value_code(value: Any) -> str | None:
    """The code of a scalar (see the module docstring), or None for what no filter value can equal."""
    if isinstance(value, bool):
        return "bt" if value else "bf"
    if is_number(value):
        return "n" + canonical_number(value)
    if isinstance(value, str):
        if len(value.encode("utf-8")) <= _MAX_PLAIN_STRING_BYTES:
            return "s" + value
        return "h" + hashlib.sha256(value.encode("utf-8")).hexdigest()
    return None


def tag(key: str, code: str) -> str:
    return f"{field_id(key)}:{code}"


def indexable_key(key: Any) -> bool:
    try:
        _validate_key(key)
    except FilterError:
        return False
    return True


def as_double(value: float) -> float:
    """A metadata number as the double the slot field holds; beyond float64's range it cannot be held."""
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValidationError(f"the number {value!r} is beyond float64's range, which the vector search index "
                              "cannot hold; store it as a string")
    return number


def numeric_keys(doc: KnowledgeDocument) -> list[str]:
    """The top-level keys of ``doc`` whose value is a number (they need a slot)."""
    return [key for key, value in doc.metadata.items() if is_number(value) and indexable_key(key)]


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
    for key, value in doc.metadata.items():
        if value is None or not indexable_key(key):
            continue
        codes = ["p"]
        if isinstance(value, (list, tuple)):
            codes += ["l" + code for code in (value_code(item) for item in value) if code is not None]
        else:
            code = value_code(value)
            if code is not None:
                codes.append(code)
            if is_number(value):
                stored[slot_field(slots[field_id(key)])] = as_double(value)
        tags += [tag(key, code) for code in dict.fromkeys(codes)]
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

    def compile(self, node: Filter) -> dict[str, Any] | bool:
        if isinstance(node, Comparison):
            return self.comparison(node)
        if isinstance(node, And):
            parts = [self.compile(child) for child in node.children]
            if any(part is False for part in parts):
                return False
            kept = [part for part in parts if isinstance(part, dict)]
            if not kept:
                return True
            return kept[0] if len(kept) == 1 else {"$and": kept}
        if isinstance(node, Or):
            parts = [self.compile(child) for child in node.children]
            if any(part is True for part in parts):
                return True
            kept = [part for part in parts if isinstance(part, dict)]
            if not kept:
                return False
            return kept[0] if len(kept) == 1 else {"$or": kept}
        if isinstance(node, Not):
            return _negate(self.compile(node.child))
        raise ValidationError(f"unknown filter node {node!r}")  # pragma: no cover - parse_filter checks

    def comparison(self, node: Comparison) -> dict[str, Any] | bool:
        key, op, value = node.field, node.op, node.value
        if op is Op.EXISTS:
            present = {TAGS: tag(key, "p")}
            return present if value else {TAGS: {"$ne": tag(key, "p")}}
        if op in (Op.EQ, Op.NE):
            code = value_code(value)
            if code is None:  # pragma: no cover - filter values are scalars
                return op is Op.NE
            return {TAGS: tag(key, code)} if op is Op.EQ else {TAGS: {"$ne": tag(key, code)}}
        if op in (Op.IN, Op.NIN):
            tags = list(dict.fromkeys(tag(key, code) for code in (value_code(v) for v in value) if code))
            if not tags:
                return op is Op.NIN
            return {TAGS: {"$in" if op is Op.IN else "$nin": tags}}
        if op is Op.CONTAINS:
            code = value_code(value)
            return {TAGS: tag(key, "l" + code)} if code is not None else False
        return self.range(key, op, value)

    def range(self, key: str, op: Op, value: float) -> dict[str, Any] | bool:
        slot = self.slots.get(field_id(key))
        if slot is None:  # no document of the collection has ever had a number under this key
            return False
        try:
            bound = float(value)
        except OverflowError:
            bound = math.inf if value > 0 else -math.inf
        name = slot_field(slot)
        if math.isinf(bound):  # stored numbers are finite: all of them or none
            if (bound > 0) == (op in (Op.GT, Op.GTE)):
                return False
            return {name: {"$gte": -_F64_MAX}}
        return {name: {"$" + op.value: bound}}


def _negate(part: dict[str, Any] | bool) -> dict[str, Any] | bool:
    if isinstance(part, bool):
        return not part
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
    compiled = _Compiler(slots).compile(tree)
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
