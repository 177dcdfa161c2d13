"""Filters of the ``surrealdb_vector`` store in SurrealQL, and the metadata copy they run on.

Pure: imports no client, so unit tests pin the exact text. Checked against SurrealDB core 2.3.10 (the
engine embedded in the ``surrealdb`` 2.0.0 wheel).

The copy (record field ``fmeta``): the user's metadata as a SurrealDB object, made by
:func:`metadata_copy`. The metadata itself is kept whole as JSON text (exact round trips); the copy exists
only to be filtered on. Its values keep their JSON type, with three adjustments:

* strings and object keys go through :func:`~._connection.escape_text` (SurrealDB refuses NUL); filter
  values are escaped the same way, and the escaping is injective, so equality is unchanged;
* ``None`` values are left out (SurrealDB drops NONE fields anyway; FILTERS.md treats None as missing).
  A top-level key that contains a dot and holds ``None`` is listed in ``fnull``: the reference evaluator
  lets a literal ``"a.b"`` key (even with ``None``) win over the nested path ``a`` -> ``b``;
* integers: SurrealDB's ``int`` is 64-bit (the client silently wraps ``2**63`` to ``-2**63``), so larger
  ones become ``decimal`` (exact up to ``2**96 - 1``) or, beyond, a float when the float is exactly the
  integer. Anything else has no exact SurrealDB number: the document is marked ``finexact = true``, its
  copy leaves the value out, and the store evaluates such documents client-side (see the store).

Compilation (:func:`compile_where`): every key reaches the copy as a bound parameter, ``fmeta[$w_k0]``
(dotted keys: the literal key if present or listed in ``fnull``, else the walk through nested objects,
each step guarded by ``type::is::object``), every value is a bound parameter, and each comparison is
guarded by a type test, so SurrealQL's own looseness never decides:

==============  =================================================================================
``eq``          ``(type::is::<type of value>(V) AND V == $v)`` (``number``: int, float, decimal by value,
                exactly; ``bool``; ``string``) - a bool never equals a number, a list never a scalar
``ne``          ``NOT (eq)`` - missing fields match
``gt`` ...      ``(type::is::number(V) AND V > $v)`` - only numbers match
``in``          ``(type::is::string(V) AND V IN $v_s) OR (type::is::number(V) AND V IN $v_n) OR ...``;
                ``$in: []`` is ``FALSE`` (decided here, the engine is not asked)
``nin``         ``NOT (in)``; ``$nin: []`` is ``TRUE``
``exists``      ``NOT (type::is::none(V) OR type::is::null(V))`` (and its complement)
``contains``    ``(type::is::array(V) AND V CONTAINS $v)`` - element equality as ``eq``'s
``and/or/not``  ``(a) AND (b)``, ``(a) OR (b)``, ``NOT (a)``: every comparison is two-valued, so ``NOT``
                is the exact complement
==============  =================================================================================

On 2.3.10 ``==``, ``IN`` and ``CONTAINS`` alone already keep bools, numbers, strings and lists apart; the
type tests keep the meaning independent of that (servers may run other versions) and are what makes the
range operators see numbers only. SurrealDB's number comparisons are exact across int, float and decimal (``9007199254740993 ==
9007199254740992.0`` is false, ``0 == -0.0`` true), strings compare by code point, case-sensitively, with
no normalisation; the unit and conformance tests check each of these against the reference evaluator on
the engine. A filter value that is an integer with no exact SurrealDB number (beyond ``2**96`` and not a
float) raises :class:`~storebridge.errors.UnsupportedFilterError`.

Vector statements (:func:`vector_field`, :func:`hnsw_index`, :func:`knn_source`): each collection keeps its
vectors in its own record field, ``v_`` + the hex of the collection name's UTF-8 (so one HNSW index per
collection can have that collection's dimension); the HNSW ``DEFINE INDEX`` and the KNN operator take their
numbers as literals only (SurrealDB 2.3.10 refuses a ``$parameter`` there: "expected an unsigned integer"), so
they are checked integers written into the text; the names are built here from hex and validated prefixes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from storebridge.engine import sql_predicate
from storebridge.errors import UnsupportedFilterError, ValidationError
from storebridge.filters import Comparison, Filter, Op, is_number
from storebridge.models import Distance

from ._connection import escape_text

#: Record fields of a document the filters use.
COPY_FIELD = "fmeta"
NULLS_FIELD = "fnull"
INEXACT_FIELD = "finexact"

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_DECIMAL_MAX = 2**96 - 1
_TRUE, _FALSE = "TRUE", "FALSE"
_GUARD = {bool: "type::is::bool", int: "type::is::number", float: "type::is::number", str: "type::is::string"}
_RANGE = {Op.GT: ">", Op.GTE: ">=", Op.LT: "<", Op.LTE: "<="}


def surreal_number(value: float) -> int | float | Decimal | None:
    """A value SurrealDB holds with exactly ``value``'s worth, or None if it has none."""
    if isinstance(value, float) or _I64_MIN <= value <= _I64_MAX:
        return value
    if -_DECIMAL_MAX <= value <= _DECIMAL_MAX:
        return Decimal(value)
    try:
        as_float = float(value)
    except OverflowError:
        return None
    return as_float if as_float == value else None  # int == float compares exactly in Python


@dataclass
class MetadataCopy:
    """What :func:`metadata_copy` writes next to a document: ``fmeta``, ``fnull``, ``finexact``."""

    value: dict[str, Any]
    nulls: list[str] = field(default_factory=list)
    inexact: bool = False

    def fields(self) -> dict[str, Any]:
        """The record fields (None ones are left out of the record by SurrealDB)."""
        return {COPY_FIELD: self.value, NULLS_FIELD: self.nulls or None, INEXACT_FIELD: True if self.inexact else None}


def metadata_copy(metadata: Mapping[str, Any]) -> MetadataCopy:
    """The filterable copy of ``metadata`` (already checked to be JSON: str keys, finite numbers...)."""
    copy = MetadataCopy({})

    def convert(value: Any) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            number = surreal_number(value)
            if number is None:
                copy.inexact = True
            return number
        if isinstance(value, str):
            return escape_text(value)
        if isinstance(value, (list, tuple)):
            return [convert(item) for item in value]
        if isinstance(value, Mapping):
            return {escape_text(k): v for k, v in ((k, convert(v)) for k, v in value.items()) if v is not None}
        raise ValidationError(f"metadata value {value!r} is not JSON")  # pragma: no cover - checked before

    for key, value in metadata.items():
        if value is None and "." in key:
            copy.nulls.append(escape_text(key))
    copy.value = convert(dict(metadata))
    return copy


@dataclass(frozen=True)
class Where:
    """A compiled filter: a SurrealQL boolean over a document record and its bound parameters."""

    sql: str
    params: dict[str, Any]


class _Compiler:
    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self._keys: dict[str, str] = {}

    def _bind(self, prefix: str, value: Any) -> str:
        name = f"w_{prefix}{len(self.params)}"
        self.params[name] = value
        return f"${name}"

    def _key(self, key: str) -> str:
        """``$param`` holding ``key`` (one per distinct key)."""
        if key not in self._keys:
            self._keys[key] = self._bind("k", escape_text(key))
        return self._keys[key]

    def value(self, path: str) -> str:
        """The expression reading the field ``path`` of the copy (NONE when missing), as the reference
        evaluator looks it up: the literal key first, then dotted steps through objects only."""
        whole = f"{COPY_FIELD}[{self._key(path)}]"
        if "." not in path:
            return whole
        steps = [self._key(part) for part in path.split(".")]
        prefixes = [COPY_FIELD + "".join(f"[{s}]" for s in steps[:i]) for i in range(1, len(steps))]
        objects = " AND ".join(f"type::is::object({p})" for p in prefixes)
        walked = COPY_FIELD + "".join(f"[{s}]" for s in steps)
        return (f"(IF !type::is::none({whole}) OR {self._key(path)} IN {NULLS_FIELD} THEN {whole} "
                f"ELSE IF {objects} THEN {walked} END)")

    def scalar(self, value: Any) -> Any:
        if isinstance(value, str):
            return escape_text(value)
        if isinstance(value, bool) or not is_number(value):
            return value
        number = surreal_number(value)
        if number is None:
            raise UnsupportedFilterError(
                f"the 'surrealdb_vector' backend cannot compare with {value!r} exactly: SurrealDB numbers hold "
                "integers up to 2**96 (or exact floats); compare with a float or store such numbers as strings")
        return number

    def equal(self, v: str, value: Any) -> str:
        return f"({_GUARD[type(value)]}({v}) AND {v} == {self._bind('v', self.scalar(value))})"

    def member(self, v: str, values: tuple[Any, ...]) -> str:
        groups: dict[str, list[Any]] = {}
        for value in values:
            groups.setdefault(_GUARD[type(value)], []).append(value)
        parts = [f"({guard}({v}) AND {v} IN {self._bind('v', [self.scalar(x) for x in group])})"
                 for guard, group in groups.items()]
        if not parts:
            return _FALSE
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def comparison(self, node: Comparison) -> str:
        v = self.value(node.field)
        op, value = node.op, node.value
        if op is Op.EQ:
            return self.equal(v, value)
        if op is Op.NE:
            return f"NOT {self.equal(v, value)}"
        if op is Op.IN:
            return self.member(v, value)
        if op is Op.NIN:
            inner = self.member(v, value)
            return _TRUE if inner == _FALSE else f"NOT ({inner})"
        if op is Op.EXISTS:
            missing = f"(type::is::none({v}) OR type::is::null({v}))"
            return f"NOT {missing}" if value else missing
        if op is Op.CONTAINS:
            return f"(type::is::array({v}) AND {v} CONTAINS {self._bind('v', self.scalar(value))})"
        if op in _RANGE:
            return f"(type::is::number({v}) AND {v} {_RANGE[op]} {self._bind('v', self.scalar(value))})"
        raise UnsupportedFilterError(f"the 'surrealdb_vector' backend cannot evaluate ${op.value}")


def compile_where(tree: Filter | None) -> Where | bool:
    """``True`` (no condition), ``False`` (matches nothing; the engine need not be asked) or a
    :class:`Where` for a parsed filter tree whose operators were checked."""
    compiler = _Compiler()
    sql = sql_predicate(tree, compiler.comparison, true=_TRUE, false=_FALSE)
    if sql is None or sql == _TRUE:
        return True
    if sql == _FALSE:
        return False
    return Where(sql, compiler.params)


#: SurrealDB's HNSW distance for each of ours; it has no inner product (``DIST DOT`` is a parse error), so
#: ``dot`` collections are always searched exactly.
HNSW_DISTANCE = {Distance.COSINE: "COSINE", Distance.L2: "EUCLIDEAN"}
#: HNSW ``DIMENSION`` is a 16-bit number in SurrealDB.
HNSW_MAX_DIMENSION = 65_535


def vector_field(collection: str) -> str:
    """The record field holding the vectors of ``collection`` (any string: only hex reaches the text)."""
    return "v_" + collection.encode("utf-8").hex()


def hnsw_index_name(table: str, collection: str) -> str:
    """The name of the HNSW index of ``collection`` on the documents table ``table`` (a validated name)."""
    return f"{table}_{vector_field(collection)}"


def _count(value: int, what: str, low: int = 1, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise ValidationError(f"{what} must be a whole number {span}, got {value!r}")
    return value


def hnsw_index(table: str, collection: str, dimension: int, distance: Distance, *, m: int, efc: int) -> str:
    """``DEFINE INDEX IF NOT EXISTS`` of the HNSW index of ``collection`` (float32 vectors)."""
    if distance not in HNSW_DISTANCE:
        raise ValidationError(f"SurrealDB has no HNSW index for the {distance.value!r} distance")
    dimension = _count(dimension, "dimension", 1, HNSW_MAX_DIMENSION)
    return (f"DEFINE INDEX IF NOT EXISTS {hnsw_index_name(table, collection)} ON TABLE {table} "
            f"FIELDS {vector_field(collection)} HNSW DIMENSION {dimension} "
            f"DIST {HNSW_DISTANCE[distance]} TYPE F32 EFC {_count(efc, 'EFC')} M {_count(m, 'M', 1, 255)}")


def knn_source(table: str, collection: str, k: int, ef: int) -> str:
    """The record ids of the ``k`` nearest neighbours of ``$q`` found by the HNSW index of ``collection``
    (candidate list ``ef``). Used as a subquery, with any filter applied to its result outside it."""
    return (f"SELECT VALUE id FROM {table} WHERE {vector_field(collection)} "
            f"<|{_count(k, 'k')},{_count(ef, 'ef')}|> $q")


__all__ = [
    "COPY_FIELD",
    "HNSW_DISTANCE",
    "HNSW_MAX_DIMENSION",
    "INEXACT_FIELD",
    "NULLS_FIELD",
    "MetadataCopy",
    "Where",
    "compile_where",
    "hnsw_index",
    "hnsw_index_name",
    "knn_source",
    "metadata_copy",
    "surreal_number",
    "vector_field",
]
