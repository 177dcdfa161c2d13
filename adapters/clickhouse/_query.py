"""The ClickHouse translation layer, pure (no client import): literals, bound parameters, filters compiled
to SQL over the metadata JSON text, and every statement the store sends.

Values are bound as query parameters (``{p0:String}`` placeholders): a ClickHouse server gets them from
clickhouse-connect as server-side parameters; chDB takes the parameter *text*, which ClickHouse reads in
its escaped format, made here by :func:`param_text` (strings escaped by :func:`quote`: backslash, quote
and every control character). Identifiers (database, table prefix) are validated by the store and
backquoted; ints we computed (limits) are inlined.

Filters (:func:`compile_filter`) read the stored metadata JSON with ClickHouse's JSON functions; every
comparison is two-valued, so ``ne``/``nin``/``$not`` are ``NOT (...)`` and match missing fields:

* the value at a path is ``(metadata, k1[, k2...])``; a dotted key ``a.b`` is
  ``if(JSONHas(metadata, 'a.b'), <on key 'a.b'>, <on path a -> b>)``: a literal top-level key wins,
  exactly as the reference evaluator looks values up;
* ``JSONType`` gives the JSON type, so types never meet: a string is compared only where the type is
  ``String`` (``JSONExtractString``), a bool only where it is ``Bool`` (``True`` never equals ``1``), a
  number only where it is ``Int64``/``UInt64`` (read as ``Int128``) or ``Double`` (``JSONExtractFloat``);
  ClickHouse compares Int128 with Float64 exactly, so ``1 == 1.0`` and 2**53 + 1 stays itself. A Python
  int the engine cannot compare exactly with a Double is turned into an equivalent bound by
  :func:`double_bound`;
* ``exists`` is ``JSONType(...) != 'Null'`` (missing and null are both ``Null``); ``in []`` is FALSE;
* ``contains`` requires ``JSONType = 'Array'`` and looks at each element by index
  (``arrayExists(sb_i -> ..., range(1, JSONLength(...) + 1))``), with the same typed comparison.

ClickHouse's JSON parser reads an integer beyond 64 bits as a *string*, so such integers cannot be
compared faithfully: :func:`find_wide_int` lets the store refuse them on write.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from storebridge.engine import sql_predicate
from storebridge.filters import Comparison, Filter, Op, is_number

TRUE, FALSE = "true", "false"
#: Layout format of the tables this code writes (recorded per collection; earlier tables read as 1).
FORMAT = 1
_INT_MIN, _UINT_MAX = -(2**63), 2**64 - 1
_INT128 = 2**127
_SQL_OP = {Op.EQ: "=", Op.GT: ">", Op.GTE: ">=", Op.LT: "<", Op.LTE: "<="}
_DISTANCE_SQL = {"cosine": "cosineDistance({e}, {q})", "l2": "L2Distance({e}, {q})", "dot": "-dotProduct({e}, {q})"}


def quote(value: str) -> str:
    """A ClickHouse string literal for ``value``: backslash, quote and control characters escaped."""
    out = ["'"]
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "'":
            out.append("\\'")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append("'")
    return "".join(out)


def _float_text(value: float) -> str:
    if math.isnan(value):
        raise ValueError("NaN is never bound")
    return "inf" if value == math.inf else "-inf" if value == -math.inf else repr(float(value))


def param_text(value: Any, ch_type: str) -> str:
    """The text of a query parameter as ClickHouse reads it (escaped format), for chDB's ``params=``."""
    if ch_type == "String":
        return quote(value)[1:-1]
    if ch_type == "Array(String)":
        return "[" + ",".join(quote(v) for v in value) + "]"
    if ch_type == "Array(Float64)":
        return "[" + ",".join(_float_text(float(v)) for v in value) + "]"
    if ch_type == "Float64":
        return _float_text(value)
    if ch_type in ("Int128", "UInt32", "UInt16"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{ch_type} parameter must be an int, got {value!r}")
        return str(value)
    raise TypeError(f"no parameter text for type {ch_type}")


class Params:
    """Collects bound values; calling it returns the ``{name:Type}`` placeholder (equal values share one)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.types: dict[str, str] = {}
        self._seen: dict[tuple[str, str, Any], str] = {}

    def __call__(self, value: Any, ch_type: str) -> str:
        key = (ch_type, type(value).__name__, tuple(value) if isinstance(value, list) else value)
        name = self._seen.get(key)
        if name is None:
            name = self._seen[key] = f"p{len(self.values)}"
            self.values[name] = value
            self.types[name] = ch_type
        return "{" + f"{name}:{ch_type}" + "}"

    def texts(self) -> dict[str, str]:
        """Every parameter as text, for chDB."""
        return {name: param_text(value, self.types[name]) for name, value in self.values.items()}


# -- numbers --------------------------------------------------------------------------------------------


def double_bound(op: Op, value: int) -> tuple[str, float] | bool:
    """``(sql_op, f)`` with ``d <op> value`` == ``d <sql_op> f`` for every finite double ``d``, where ``f``
    is a double (``-inf`` allowed), or a bool when the answer does not depend on ``d``. Python compares an
    int with a float exactly; a Float64 parameter can only hold the nearest double."""
    try:
        floor = float(value)
        if int(floor) > value:
            floor = math.nextafter(floor, -math.inf)
    except OverflowError:
        floor = math.inf if value > 0 else -math.inf
    if math.isinf(floor) and floor > 0:
        floor = math.nextafter(math.inf, 0.0)  # the largest double, below value
    exact = math.isfinite(floor) and int(floor) == value
    if exact:
        return _SQL_OP[op], floor
    # floor < value < the next double: no double equals value, and d > value <=> d > floor
    if op is Op.EQ:
        return False
    return (">", floor) if op in (Op.GT, Op.GTE) else ("<=", floor)


def _number(args: str, op: Op, value: float, p: Params) -> str:
    """``value <op> v`` for numbers only, exactly: the Int64/UInt64 and Double cases."""
    parts = []
    if isinstance(value, int) and not -_INT128 <= value < _INT128:
        # stored ints are within 64 bits: the sign of value decides (and none equals it)
        if op is not Op.EQ and (op in (Op.LT, Op.LTE)) == (value > 0):
            parts.append(f"JSONType({args}) IN ('Int64', 'UInt64')")
    else:
        bound = p(value, "Int128" if isinstance(value, int) else "Float64")
        parts.append(f"(JSONType({args}) IN ('Int64', 'UInt64') AND JSONExtract({args}, 'Int128') {_SQL_OP[op]} {bound})")
    if isinstance(value, int):
        double = double_bound(op, value)
    else:
        double = (_SQL_OP[op], value)
    if double is True:  # pragma: no cover - double_bound never proves a comparison true for every double
        parts.append(f"JSONType({args}) = 'Double'")
    elif double is not False:
        sql_op, bound_value = double
        parts.append(f"(JSONType({args}) = 'Double' AND JSONExtractFloat({args}) {sql_op} {p(bound_value, 'Float64')})")
    if not parts:
        return FALSE
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


def _equal(args: str, value: Any, p: Params) -> str:
    if isinstance(value, bool):
        return f"(JSONType({args}) = 'Bool' AND JSONExtractBool({args}) = {1 if value else 0})"
    if is_number(value):
        return _number(args, Op.EQ, value, p)
    return f"(JSONType({args}) = 'String' AND JSONExtractString({args}) = {p(value, 'String')})"


def _any_of(args: str, values: Sequence[Any], p: Params) -> str:
    strings = list(dict.fromkeys(v for v in values if isinstance(v, str)))
    parts = [_equal(args, v, p) for _, v in dict.fromkeys((type(v), v) for v in values if not isinstance(v, str))]
    if len(strings) == 1:
        parts.insert(0, _equal(args, strings[0], p))
    elif strings:
        parts.insert(0, f"(JSONType({args}) = 'String' AND has({p(strings, 'Array(String)')}, "
                        f"JSONExtractString({args})))")
    parts = [part for part in parts if part != FALSE]
    if not parts:
        return FALSE
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


def _on_value(args: str, node: Comparison, p: Params) -> str:
    op, value = node.op, node.value
    if op is Op.EXISTS:
        return f"JSONType({args}) != 'Null'" if value else f"JSONType({args}) = 'Null'"
    if op in (Op.EQ, Op.NE):
        equal = _equal(args, value, p)
        return equal if op is Op.EQ else _negate(equal)
    if op in (Op.IN, Op.NIN):
        found = _any_of(args, value, p)
        return found if op is Op.IN else _negate(found)
    if op is Op.CONTAINS:
        element = _equal(f"{args}, sb_i", value, p)
        if element == FALSE:
            return FALSE
        return (f"(JSONType({args}) = 'Array' AND arrayExists(sb_i -> {element}, "
                f"range(1, toUInt64(JSONLength({args})) + 1)))")
    return _number(args, op, value, p)


def _negate(sql: str) -> str:
    return TRUE if sql == FALSE else FALSE if sql == TRUE else f"NOT ({sql})"


def _comparison(node: Comparison, p: Params) -> str:
    literal = f"metadata, {p(node.field, 'String')}"
    on_literal = _on_value(literal, node, p)
    if "." not in node.field:
        return on_literal
    nested = "metadata, " + ", ".join(p(part, "String") for part in node.field.split("."))
    on_nested = _on_value(nested, node, p)
    if on_literal == on_nested:
        return on_literal
    return f"if(JSONHas({literal}), {on_literal}, {on_nested})"


def compile_filter(node: Filter | None, p: Params) -> str | None:
    """SQL over the ``metadata`` column for a parsed filter (None: no filter), values bound into ``p``.
    The caller checks the operators first."""
    return sql_predicate(node, lambda c: _comparison(c, p), true=TRUE, false=FALSE)


def find_wide_int(value: Any) -> int | None:
    """An int in ``value`` (at any depth) that ClickHouse's JSON functions cannot read as a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if _INT_MIN <= value <= _UINT_MAX else value
    children = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    for child in children:
        found = find_wide_int(child)
        if found is not None:
            return found
    return None


# -- statements -------------------------------------------------------------------------------------------


class Statements:
    """Every statement of the store for one database and table prefix (both validated identifiers)."""

    def __init__(self, database: str, prefix: str) -> None:
        self.database = database
        self.collections_table = f"{prefix}knowledge_collections"
        self.documents_table = f"{prefix}knowledge_documents"
        self.collections = f"`{database}`.`{self.collections_table}`"
        self.documents = f"`{database}`.`{self.documents_table}`"

    def migrations(self) -> list[str]:
        return [
            f"CREATE DATABASE IF NOT EXISTS `{self.database}`",
            (f"CREATE TABLE IF NOT EXISTS {self.collections} (name String, dimension UInt32, distance String, "
            "format UInt16 DEFAULT 1) ENGINE = MergeTree ORDER BY name"),
            f"ALTER TABLE {self.collections} ADD COLUMN IF NOT EXISTS format UInt16 DEFAULT 1",
            (f"CREATE TABLE IF NOT EXISTS {self.documents} (collection String, id String, content String, "
            "source_id Nullable(String), metadata String, embedding Array(Float32)) "
            "ENGINE = MergeTree ORDER BY (collection, id)"),
        ]

    def describe(self, name: str) -> tuple[str, Params]:
        p = Params()
        return ((f"SELECT dimension, distance, format FROM {self.collections} WHERE name = {p(name, 'String')} "
                "LIMIT 1"), p)

    def create(self, name: str, dimension: int, distance: str) -> tuple[str, Params]:
        p = Params()
        return ((f"INSERT INTO {self.collections} (name, dimension, distance, format) VALUES ({p(name, 'String')}, "
                f"{p(dimension, 'UInt32')}, {p(distance, 'String')}, {p(FORMAT, 'UInt16')})"), p)

    def names(self) -> tuple[str, Params]:
        return f"SELECT DISTINCT name FROM {self.collections}", Params()

    def drop(self, name: str) -> list[tuple[str, Params]]:
        p = Params()
        return [(f"DELETE FROM {self.documents} WHERE collection = {p(name, 'String')}", p),
                (f"DELETE FROM {self.collections} WHERE name = {p(name, 'String')}", p)]

    def _where(self, p: Params, collection: str, ids: Sequence[str] | None = None, where: Filter | None = None,
               after: str | None = None) -> str:
        sql = f"WHERE collection = {p(collection, 'String')}"
        if ids is not None:
            sql += f" AND has({p(list(ids), 'Array(String)')}, id)"
        if after is not None:
            sql += f" AND id > {p(after, 'String')}"
        compiled = compile_filter(where, p)
        if compiled is not None:
            sql += f" AND ({compiled})"
        return sql

    @staticmethod
    def columns(with_vectors: bool) -> str:
        return "id, content, source_id, metadata" + (", embedding" if with_vectors else "")

    def existing(self, collection: str, ids: Sequence[str]) -> tuple[str, Params]:
        p = Params()
        return f"SELECT id FROM {self.documents} {self._where(p, collection, ids)}", p

    def get(self, collection: str, ids: Sequence[str], with_vectors: bool) -> tuple[str, Params]:
        p = Params()
        return f"SELECT {self.columns(with_vectors)} FROM {self.documents} {self._where(p, collection, ids)}", p

    def count(self, collection: str, ids: Sequence[str] | None, where: Filter | None) -> tuple[str, Params]:
        p = Params()
        return f"SELECT count() AS n FROM {self.documents} {self._where(p, collection, ids, where)}", p

    def delete(self, collection: str, ids: Sequence[str] | None, where: Filter | None) -> tuple[str, Params]:
        p = Params()
        return f"DELETE FROM {self.documents} {self._where(p, collection, ids, where)}", p

    def nearest(self, collection: str, distance: str, query: Sequence[float], limit: int,
                where: Filter | None) -> tuple[str, Params]:
        """Brute force over the collection in Float64, best first, ties by id."""
        p = Params()
        score = _DISTANCE_SQL[distance].format(e="CAST(embedding AS Array(Float64))",
                                               q=p([float(x) for x in query], "Array(Float64)"))
        return ((f"SELECT {self.columns(True)}, {score} AS sb_d FROM {self.documents} "
                f"{self._where(p, collection, where=where)} ORDER BY sb_d ASC, id ASC LIMIT {int(limit)}"), p)

    def page(self, collection: str, limit: int, after: str | None, where: Filter | None,
             with_vectors: bool) -> tuple[str, Params]:
        p = Params()
        return ((f"SELECT {self.columns(with_vectors)} FROM {self.documents} "
                f"{self._where(p, collection, where=where, after=after)} ORDER BY id LIMIT {int(limit)}"), p)

    #: The columns of a documents insert, in order.
    DOCUMENT_COLUMNS = ("collection", "id", "content", "source_id", "metadata", "embedding")

    def insert_from_python(self, variable: str) -> str:
        """chDB's insert of an Arrow table held in the caller's Python variable ``variable`` (chDB's
        ``Python()`` table function): the data never passes through SQL text."""
        columns = ", ".join(self.DOCUMENT_COLUMNS)
        return f"INSERT INTO {self.documents} ({columns}) SELECT {columns} FROM Python({variable})"

__all__ = [
    "FALSE", "FORMAT", "TRUE", "Params", "Statements", "compile_filter", "double_bound", "find_wide_int",
    "param_text", "quote",
]
