"""Cosmos DB for NoSQL query text: the filter tree as a WHERE clause, and every statement the store sends.

Pure: no client import, so the unit tests pin the exact text without a server.

Values are always bound parameters (``@p0``, ``@p1``, ... for filter values; ``@ids``, ``@cursor``,
``@limit``, ``@vector`` for the rest). The only text built from data is a metadata key, in bracket
notation ``c.fields["<key>"]``: :func:`string_literal` writes every character outside
``[A-Za-z0-9 _-]`` as a ``\\uXXXX`` escape, so no quote, backslash, control character or operator of a
key can end the literal (filter keys are also validated to a conservative alphabet before they get here).

Cosmos SQL has three-valued logic: comparing values of different types, or a missing property, gives
``undefined``, and ``NOT undefined`` is ``undefined`` too, so a plain ``NOT (x = 1)`` would drop the
documents where ``x`` is missing or a string. Every leaf is therefore a type check joined to a comparison
of same-typed values, which is a definite true or false for every document (``false AND undefined`` is
false, ``true OR undefined`` is true), and each leaf has an exact complement:

=============  ==========================================  =============================================
operator       condition                                   complement (``$ne``, ``$nin``, under ``$not``)
=============  ==========================================  =============================================
``eq``         ``IS_STRING(f) AND f = @p`` (``IS_NUMBER``  ``NOT IS_STRING(f) OR f != @p``: a missing or
               / ``IS_BOOL`` after the value's type: so    None field matches
               ``True`` never equals ``1``, ``1`` equals
               ``1.0``, a list never equals a scalar)
``gt`` ...     ``IS_NUMBER(f) AND f > @p``: numbers only   ``NOT IS_NUMBER(f) OR f <= @p``
``in``         per value type ``IS_STRING(f) AND f IN      per value type ``(NOT IS_STRING(f) OR NOT
               (@p0, @p1)``, ORed; ``in []`` is false      (f IN (...)))``, ANDed; ``nin []`` is true
``exists``     ``IS_DEFINED(f) AND NOT IS_NULL(f)``        ``NOT IS_DEFINED(f) OR IS_NULL(f)``
``contains``   ``IS_ARRAY(f) AND ARRAY_CONTAINS(f, @p)``   ``NOT IS_ARRAY(f) OR NOT ARRAY_CONTAINS(...)``
=============  ==========================================  =============================================

``$and`` / ``$or`` are ``AND`` / ``OR``; ``$not`` is pushed down to the leaves (De Morgan), which is exact
because every leaf is a definite boolean. Constants fold (``in []`` inside an ``$or`` disappears).
Parentheses are written only where Cosmos's precedence (NOT, comparisons, AND, OR) needs them.

An infinite filter value (or an int beyond the double range) never reaches Cosmos (JSON has no infinity):
no stored number equals it, so ``eq`` is ``false``, and a range against it is ``false`` or just
``IS_NUMBER(f)``.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from storebridge.errors import FilterError
from storebridge.filters import And, Comparison, Filter, Not, Op, Or

from ._layout import CONTENT, DOC_ID, EMBEDDING, FIELDS, ID, METADATA_JSON, SOURCE_ID

#: Characters a string literal carries as themselves; everything else is a ``\\uXXXX`` escape.
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-")
_RANGE_SQL = {Op.GT: ">", Op.GTE: ">=", Op.LT: "<", Op.LTE: "<="}
TRUE, FALSE = "true", "false"
#: The largest finite double; an int beyond it can only compare like an infinity.
_DOUBLE_MAX = sys.float_info.max


def string_literal(text: str) -> str:
    """A double-quoted Cosmos SQL string literal of ``text``: safe characters as themselves, every other
    UTF-16 code unit as ``\\uXXXX`` (also a valid JSON string literal of the same text)."""
    out = ['"']
    for char in text:
        if char in _SAFE:
            out.append(char)
            continue
        code = ord(char)
        if code > 0xFFFF:  # outside the BMP: a UTF-16 surrogate pair
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            out.append(f"\\u{code:04x}")
    out.append('"')
    return "".join(out)


def field_path(key: str) -> str:
    """The filter copy of a top-level metadata key: ``c.fields["<key>"]``."""
    return f"c.{FIELDS}[{string_literal(key)}]"


def _type_check(value: Any) -> str:
    if isinstance(value, bool):
        return "IS_BOOL"
    if isinstance(value, str):
        return "IS_STRING"
    if isinstance(value, (int, float)):
        return "IS_NUMBER"
    raise FilterError(f"filter values are strings, numbers or bools, got {value!r}")


def _infinite(value: Any) -> bool:
    """An infinite float, or an int beyond the double range (JSON numbers are doubles to Cosmos)."""
    if isinstance(value, float):
        return math.isinf(value)
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) > _DOUBLE_MAX


@dataclass
class Parameters:
    """The bound values of one statement, in the SDK's ``[{"name": "@p0", "value": ...}]`` form."""

    items: list[dict[str, Any]] = field(default_factory=list)
    _count: int = 0

    def bind(self, value: Any) -> str:
        name = f"@p{self._count}"
        self._count += 1
        self.items.append({"name": name, "value": value})
        return name

    def named(self, name: str, value: Any) -> str:
        self.items.append({"name": name, "value": value})
        return name


# Precedence of what an expression is, loosest first: its text needs parentheses only as an operand of
# a tighter operator (an OR inside an AND; an AND, OR or comparison under NOT). Fewer parentheses are not only easier
# to read: the emulator's SQL parser takes about ten times longer per level of nested parentheses.
#: A comparison (``f = @p``, ``f IN (...)``) binds tighter than AND but is wrapped under NOT.
OR_LEVEL, AND_LEVEL, COMPARISON_LEVEL, NOT_LEVEL, ATOM_LEVEL = 1, 2, 3, 4, 5


@dataclass(frozen=True)
class Expr:
    """A compiled condition: its text and its precedence level."""

    text: str
    level: int

    def within(self, level: int) -> str:
        """The text as an operand of an operator of ``level``."""
        return self.text if self.level >= level else f"({self.text})"


ALWAYS, NEVER = Expr(TRUE, ATOM_LEVEL), Expr(FALSE, ATOM_LEVEL)


def _all(parts: list[Expr]) -> Expr:
    """``a AND b ...``, folding the constants."""
    if any(part is NEVER for part in parts):
        return NEVER
    parts = [part for part in parts if part is not ALWAYS]
    if not parts:
        return ALWAYS
    if len(parts) == 1:
        return parts[0]
    return Expr(" AND ".join(part.within(AND_LEVEL) for part in parts), AND_LEVEL)


def _any(parts: list[Expr]) -> Expr:
    """``a OR b ...``, folding the constants."""
    if any(part is ALWAYS for part in parts):
        return ALWAYS
    parts = [part for part in parts if part is not NEVER]
    if not parts:
        return NEVER
    if len(parts) == 1:
        return parts[0]
    return Expr(" OR ".join(part.within(OR_LEVEL) for part in parts), OR_LEVEL)


def _atom(text: str) -> Expr:
    """A function call or a literal."""
    return Expr(text, ATOM_LEVEL)


def _compare(text: str) -> Expr:
    return Expr(text, COMPARISON_LEVEL)


def _not(expr: Expr) -> Expr:
    return Expr(f"NOT {expr.within(NOT_LEVEL)}", NOT_LEVEL)


def _typed(check: str, path: str, comparison: Expr, negated: bool) -> Expr:
    """``check(f) AND comparison``, or its exact complement ``NOT check(f) OR <complement>``."""
    if negated:
        return _any([_not(_atom(f"{check}({path})")), comparison])
    return _all([_atom(f"{check}({path})"), comparison])


def _eq(path: str, value: Any, params: Parameters, negated: bool) -> Expr:
    if _infinite(value):
        return ALWAYS if negated else NEVER  # no stored number is infinite
    comparison = _compare(f"{path} {'!=' if negated else '='} {params.bind(value)}")
    return _typed(_type_check(value), path, comparison, negated)


def _in(path: str, values: Sequence[Any], params: Parameters, negated: bool) -> Expr:
    groups: dict[str, list[Any]] = {}
    for value in values:
        if not _infinite(value):
            groups.setdefault(_type_check(value), []).append(value)
    parts = []
    for check, group in groups.items():  # in the order the value types first appear
        membership = _compare(f"{path} IN ({', '.join(params.bind(v) for v in group)})")
        parts.append(_typed(check, path, _not(membership) if negated else membership, negated))
    return _all(parts) if negated else _any(parts)


_COMPLEMENT = {Op.GT: Op.LTE, Op.GTE: Op.LT, Op.LT: Op.GTE, Op.LTE: Op.GT}


def _range(path: str, op: Op, value: float, params: Parameters, negated: bool) -> Expr:
    if _infinite(value):
        # x > inf, x >= inf: never; x < inf, x <= inf: every number (and mirrored for -inf).
        above = op in (Op.GT, Op.GTE)
        if (value > 0) == above:
            return ALWAYS if negated else NEVER
        number = _atom(f"IS_NUMBER({path})")
        return _not(number) if negated else number
    comparison = _compare(f"{path} {_RANGE_SQL[_COMPLEMENT[op] if negated else op]} {params.bind(value)}")
    return _typed("IS_NUMBER", path, comparison, negated)  # numbers are totally ordered (no NaN in JSON)


def _comparison(node: Comparison, params: Parameters, negated: bool) -> Expr:
    path = field_path(node.field)
    op, value = node.op, node.value
    if op in (Op.EQ, Op.NE):
        return _eq(path, value, params, negated != (op is Op.NE))
    if op in _RANGE_SQL:
        return _range(path, op, value, params, negated)
    if op in (Op.IN, Op.NIN):
        return _in(path, value, params, negated != (op is Op.NIN))
    if op is Op.EXISTS:
        if negated != bool(value):  # present
            return _all([_atom(f"IS_DEFINED({path})"), _not(_atom(f"IS_NULL({path})"))])
        return _any([_not(_atom(f"IS_DEFINED({path})")), _atom(f"IS_NULL({path})")])
    if op is Op.CONTAINS:
        if _infinite(value):
            return ALWAYS if negated else NEVER
        found = _atom(f"ARRAY_CONTAINS({path}, {params.bind(value)})")
        return _typed("IS_ARRAY", path, _not(found) if negated else found, negated)
    raise FilterError(f"unknown filter operator {op!r}")


def compile_expr(node: Filter, params: Parameters, *, negated: bool = False) -> Expr:
    """A parsed (and operator-checked) filter tree as a condition, its negation pushed down to the
    leaves (De Morgan; each leaf has an exact complement); values go to ``params``."""
    if isinstance(node, Comparison):
        return _comparison(node, params, negated)
    if isinstance(node, (And, Or)):
        parts = [compile_expr(child, params, negated=negated) for child in node.children]
        return _all(parts) if isinstance(node, And) != negated else _any(parts)
    if isinstance(node, Not):
        return compile_expr(node.child, params, negated=not negated)
    raise FilterError(f"not a filter node: {node!r}")


def compile_filter(node: Filter, params: Parameters) -> str:
    """The WHERE condition of a parsed (and operator-checked) filter tree; values go to ``params``."""
    return compile_expr(node, params).text


@dataclass(frozen=True)
class Query:
    """A statement and its parameters, as ``container.query_items(query=text, parameters=...)`` takes them."""

    text: str
    parameters: list[dict[str, Any]]


_PARAMETER = re.compile(r"@\w+")


def _statement(text: str, params: Parameters) -> Query:
    """The statement with the parameters its text uses (a branch folded to a constant binds values that
    no longer appear)."""
    used = set(_PARAMETER.findall(text))
    return Query(text, [item for item in params.items if item["name"] in used])


def _where(conditions: list[Expr]) -> str:
    return " WHERE " + _all(conditions).text if conditions else ""


def _conditions(where: Filter | None, params: Parameters, ids: Sequence[str] | None = None) -> list[Expr]:
    conditions = []
    if ids is not None:
        conditions.append(_atom(f"ARRAY_CONTAINS({params.named('@ids', list(ids))}, c.{ID})"))
    if where is not None:
        conditions.append(compile_expr(where, params))
    return conditions


def projection(with_vector: bool) -> str:
    names = [ID, DOC_ID, CONTENT, SOURCE_ID, METADATA_JSON] + ([EMBEDDING] if with_vector else [])
    return ", ".join(f"c.{name}" for name in names)


def count_query(where: Filter | None) -> Query:
    params = Parameters()
    text = f"SELECT VALUE COUNT(1) FROM c{_where(_conditions(where, params))}"
    return _statement(text, params)


def ids_query(where: Filter | None, ids: Sequence[str] | None = None) -> Query:
    """The item ids of the documents matching ``where`` (and, if given, among the item ids ``ids``)."""
    params = Parameters()
    text = f"SELECT VALUE c.{ID} FROM c{_where(_conditions(where, params, ids))}"
    return _statement(text, params)


def existing_query(ids: Sequence[str]) -> Query:
    """The document ids held among the item ids ``ids``."""
    params = Parameters()
    text = f"SELECT VALUE c.{DOC_ID} FROM c{_where(_conditions(None, params, ids))}"
    return _statement(text, params)


def page_query(limit: int, after: str | None, where: Filter | None, with_vector: bool) -> Query:
    """Up to ``limit`` documents after the item id ``after``, in item id order (keyset paging)."""
    params = Parameters()
    top = params.named("@limit", limit)
    conditions = [] if after is None else [_compare(f"c.{ID} > {params.named('@cursor', after)}")]
    conditions += _conditions(where, params)
    text = f"SELECT TOP {top} {projection(with_vector)} FROM c{_where(conditions)} ORDER BY c.{ID}"
    return _statement(text, params)


def nearest_query(limit: int, vector: Sequence[float], where: Filter | None, *, exact: bool) -> Query:
    """The ``limit`` documents nearest to ``vector`` among those matching ``where``, most similar first
    (Cosmos orders ``VectorDistance`` by similarity for every distance function)."""
    params = Parameters()
    top = params.named("@limit", limit)
    conditions = _conditions(where, params)
    query_vector = params.named("@vector", list(vector))
    distance = f"VectorDistance(c.{EMBEDDING}, {query_vector}{', true' if exact else ''})"
    text = f"SELECT TOP {top} {projection(True)} FROM c{_where(conditions)} ORDER BY {distance}"
    return _statement(text, params)


__all__ = [
    "FALSE",
    "TRUE",
    "Parameters",
    "Query",
    "compile_filter",
    "count_query",
    "existing_query",
    "field_path",
    "ids_query",
    "nearest_query",
    "page_query",
    "projection",
    "string_literal",
]
