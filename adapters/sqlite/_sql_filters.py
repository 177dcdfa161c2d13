"""The portable filter tree compiled to a SQLite condition over a JSON metadata column (JSON1).

The result means exactly what :func:`storebridge.filters.evaluate` means (see FILTERS.md); the
property test in ``tests/unit/test_sqlite_filters.py`` checks that on random data. How:

* ``json_type`` tells the JSON types apart ('true'/'false' for bools, 'integer'/'real' for numbers,
  'text', 'array', 'object', 'null'; SQL NULL when the path is missing), so a bool never equals a
  number and a list or object never equals a scalar. ``json_extract`` gives the SQL value: numbers
  compare by value (int and real exactly, as in Python) and text by bytes (case-sensitive).
* The type guard is only emitted where the value comparison alone could match the wrong type (a bool
  reads as 0/1, an array or object as text starting with '[' or '{', text sorts above every number),
  and it comes after the value comparison, so SQLite's short-circuit skips it on most rows.
* A comparison may yield SQL NULL where the field is missing or null; the output is a WHERE condition,
  where NULL means "no match". Only negation would turn that into a wrong answer, so ``$not`` (and
  ``$ne``/``$nin``/``$exists: false``, which are negations) compile to ``CASE WHEN c THEN 0 ELSE 1 END``:
  the exact complement, never NULL.
* Values and JSON paths are always bound parameters. Keys were validated by the parser; a key that
  could still break out of a quoted path label is refused here as well.

Storage contract: write the metadata with :data:`METADATA_JSON`. SQLite's JSON paths match object keys as
they are written in the text, so a key must not be ``\\u``-escaped (Python's default ``ensure_ascii``
would hide every non-ASCII key from filters).

Limitation: SQLite holds integers in 64 bits. An integer filter value beyond that range is compared as
a float, and so is a stored integer beyond it.
"""

from __future__ import annotations

import math
import re
from typing import Any

from storebridge.errors import FilterError
from storebridge.filters import And, Comparison, Filter, FilterLike, Not, Op, Or, is_number, parse_filter

#: The encoder for the metadata column: keys unescaped (see above), compact, NaN/infinity refused.
from storebridge.vectors import METADATA_JSON

_COLUMN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_NUMERIC = "('integer', 'real')"
_RANGE_SQL = {Op.GT: ">", Op.GTE: ">=", Op.LT: "<", Op.LTE: "<="}
_INT64 = (-(2**63), 2**63 - 1)


def compile_filter(spec: FilterLike, column: str = "metadata") -> tuple[str, list[Any]] | None:
    """``(condition, params)`` for a WHERE clause over the JSON text in ``column``; None for no filter."""
    tree = parse_filter(spec)
    if tree is None:
        return None
    if not _COLUMN_RE.match(column):
        raise ValueError(f"not a column reference: {column!r}")
    params: list[Any] = []
    return _Compiler(column, params).node(tree), params


def _not(condition: str) -> str:
    """The exact complement of a WHERE condition that may be NULL (NULL counts as false)."""
    return f"(CASE WHEN {condition} THEN 0 ELSE 1 END)"


def _bind_number(value: float) -> float:
    """SQLite binds integers as 64-bit; beyond that the value is compared as a float."""
    if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
        try:
            return float(value)
        except OverflowError:
            return math.copysign(math.inf, value)
    return value


def _path_labels(field: str) -> tuple[str, str | None]:
    """The JSON path of ``field`` as a top-level key and, for a dotted field, as a nested path."""
    parts = field.split(".")
    for part in parts:
        if not part or '"' in part or "\\" in part:
            raise FilterError(f"filter key {field!r} cannot be used as a JSON path")
    literal = '$."' + field + '"'
    if len(parts) == 1:
        return literal, None
    return literal, "$" + "".join('."' + part + '"' for part in parts)


class _Compiler:
    def __init__(self, column: str, params: list[Any]) -> None:
        self.column = column
        self.params = params

    def node(self, node: Filter) -> str:
        if isinstance(node, Comparison):
            return self.comparison(node)
        if isinstance(node, And):
            return "(" + " AND ".join(self.node(child) for child in node.children) + ")"
        if isinstance(node, Or):
            return "(" + " OR ".join(self.node(child) for child in node.children) + ")"
        if isinstance(node, Not):
            return _not(self.node(node.child))
        raise FilterError(f"not a filter node: {node!r}")

    # -- pieces that bind their parameters as they are emitted (SQL text order = parameter order) --------

    def bind(self, value: Any) -> str:
        self.params.append(value)
        return "?"

    def path(self, field: str) -> str:
        """The path expression. A dotted field means the top-level key of that exact name if present
        (even when null), else the nested path: the same lookup as the reference evaluator."""
        literal, nested = _path_labels(field)
        if nested is None:
            return self.bind(literal)
        return (f"(CASE WHEN json_type({self.column}, {self.bind(literal)}) IS NULL "
                f"THEN {self.bind(nested)} ELSE {self.bind(literal)} END)")

    def json_type(self, field: str) -> str:
        return f"json_type({self.column}, {self.path(field)})"

    def json_value(self, field: str) -> str:
        return f"json_extract({self.column}, {self.path(field)})"

    # -- comparisons -------------------------------------------------------------------------------------

    def comparison(self, node: Comparison) -> str:
        field, op, value = node.field, node.op, node.value
        if op is Op.EQ:
            return self.equals_any(field, (value,))
        if op is Op.NE:
            return _not(self.equals_any(field, (value,)))
        if op is Op.IN:
            return self.equals_any(field, value)
        if op is Op.NIN:
            return _not(self.equals_any(field, value))
        if op is Op.EXISTS:
            present = f"{self.json_type(field)} <> 'null'"
            return f"({present})" if value else _not(present)
        if op is Op.CONTAINS:
            return self.contains(field, value)
        if op in _RANGE_SQL:
            # Text sorts above every number and a bool reads as 0/1: the numeric guard is always needed.
            return (f"({self.json_value(field)} {_RANGE_SQL[op]} {self.bind(_bind_number(value))} "
                    f"AND {self.json_type(field)} IN {_NUMERIC})")
        raise FilterError(f"unknown filter operator {op!r}")

    def equals_any(self, field: str, values: tuple[Any, ...]) -> str:
        """``field`` equals one of ``values`` (scalars), by the filter language's equality."""
        bools = sorted({"'true'" if v else "'false'" for v in values if isinstance(v, bool)})  # SQL constants
        numbers = [v for v in values if is_number(v)]
        strings = [v for v in values if isinstance(v, str)]
        terms: list[str] = []
        if numbers:
            # Only 0 and 1 can be mistaken for a bool; text never equals a number.
            guard = _NUMERIC if any(v in (0, 1) for v in numbers) else None
            terms.append(self.value_in(field, [_bind_number(v) for v in numbers], guard))
        if strings:
            # Arrays and objects read as JSON text, which starts with '[' or '{'.
            guard = "('text')" if any(v.startswith(("[", "{")) for v in strings) else None
            terms.append(self.value_in(field, strings, guard))
        if bools:
            terms.append(f"{self.json_type(field)} IN ({', '.join(bools)})")
        if not terms:
            return "(0)"  # $in: [] matches nothing
        return "(" + " OR ".join(terms) + ")"

    def value_in(self, field: str, values: list[Any], guard: str | None) -> str:
        """``json_extract`` equals one of ``values``; ``guard`` (a constant list of JSON types) is added
        only where a value of another type could compare equal."""
        value = self.json_value(field)
        compare = f"{value} = {self.bind(values[0])}" if len(values) == 1 else (
            f"{value} IN ({', '.join(self.bind(v) for v in values)})"
        )
        if guard is None:
            return f"({compare})"
        return f"({compare} AND {self.json_type(field)} IN {guard})"

    def contains(self, field: str, value: Any) -> str:
        """The field is an array with an element equal to ``value`` (an object's values do not count)."""
        is_array = f"{self.json_type(field)} = 'array'"
        source = f"json_each({self.column}, {self.path(field)}) AS element"
        if isinstance(value, bool):
            match = "element.type = 'true'" if value else "element.type = 'false'"
        elif is_number(value):
            match = f"element.value = {self.bind(_bind_number(value))} AND element.type IN {_NUMERIC}"
        else:
            match = f"element.value = {self.bind(value)} AND element.type = 'text'"
        return f"({is_array} AND EXISTS (SELECT 1 FROM {source} WHERE {match}))"


__all__ = ["METADATA_JSON", "compile_filter"]
