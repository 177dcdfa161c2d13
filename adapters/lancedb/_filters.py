"""The LanceDB translation layer, pure (no client import): the typed filter columns written with each
document, and filter trees compiled to Lance's SQL ``where`` strings (DataFusion SQL) over them.

Filter columns (layout format 2, see ``knowledge.py``), computed from the metadata exactly as the
reference evaluator (:func:`storebridge.filters.evaluate`) looks values up: a top-level key, or a dotted
path into nested objects when no top-level key has that literal name. Only paths that are valid filter
keys are indexed (others can never be asked for); values that are None are left out.

* ``_sb_keys``  list<string>: every indexed path whose value is present and not None (``$exists``);
* ``_sb_eq``    list<string>: ``path=<tag>`` for each scalar value (``$eq``, ``$in``);
* ``_sb_el``    list<string>: ``path=<tag>`` for each scalar element of a list value (``$contains``);
* ``_sb_num``   map<string, string>: path -> :func:`number_key` of each number (ranges).

A tag carries the type, so types never meet: ``s<text>`` for strings, ``b1``/``b0`` for bools,
``n<number_key>`` for numbers (``1`` and ``1.0`` share one key; ``True`` never equals ``1``). ``=`` can
not occur in a filter key, so ``path=`` is an unambiguous prefix. :func:`number_key` maps every int and
float to text whose byte order is the numeric order, exactly (no float rounding of big ints), so
``gt``/``gte``/``lt``/``lte`` are string comparisons on ``_sb_num`` and see numbers only.

Operators: ``eq`` -> ``array_has(_sb_eq, 'path=<tag>')``; ``in`` -> ``array_has_any`` (``in []`` is
FALSE); ``contains`` -> ``array_has(_sb_el, ...)`` (a list value has no ``_sb_eq`` entry, a scalar no
``_sb_el`` entry); ``exists`` -> ``array_has(_sb_keys, 'path')``; ranges ->
``COALESCE(map_extract(_sb_num, 'path')[1] > 'key', FALSE)`` (a missing path is FALSE, not NULL);
``ne``, ``nin``, ``$not`` are ``NOT (...)`` of those two-valued expressions, so missing fields match.
Every value reaches the SQL text through :func:`sql_string` (single quotes doubled: Lance's SQL parser
has no backslash escapes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from storebridge.engine import sql_predicate
from storebridge.errors import FilterError, ValidationError
from storebridge.filters import Comparison, Filter, Op, is_number, validate_key

KEYS = "_sb_keys"
EQ = "_sb_eq"
ELEMENTS = "_sb_el"
NUMBERS = "_sb_num"
FILTER_COLUMNS = (KEYS, EQ, ELEMENTS, NUMBERS)
TRUE, FALSE = "TRUE", "FALSE"

_EXPONENT_OFFSET = 50_000
_COMPLEMENT = str.maketrans("0123456789", "9876543210")
_RANGE_SQL = {Op.GT: ">", Op.GTE: ">=", Op.LT: "<", Op.LTE: "<="}


def sql_string(value: str) -> str:
    """A Lance SQL string literal for ``value``: single quotes doubled, nothing else is special."""
    if not isinstance(value, str):
        raise ValidationError(f"expected a string, got {type(value).__name__}")
    return "'" + value.replace("'", "''") + "'"


def number_key(value: float) -> str:
    """Text whose byte order is the numeric order of ``value`` (ints of any size and floats, exactly).

    ``N`` is zero; ``P<exponent+50000:05><digits>`` a positive number (its exact decimal digits, trailing
    zeros stripped, so a shorter digit string that is a prefix is the smaller number); ``M`` + the nines'
    complement of both parts + ``~`` a negative one (``~`` sorts above every digit, so the order flips).
    Infinities map to ``L`` (below every ``M``) and ``Q`` (above every ``P``).
    """
    if isinstance(value, bool) or not is_number(value):
        raise ValidationError(f"number_key takes an int or float, got {value!r}")
    if isinstance(value, float):
        if math.isnan(value):
            raise ValidationError("NaN has no place in the numeric order")
        if math.isinf(value):
            return "Q" if value > 0 else "L"
    try:
        exact = Decimal(value)
    except ValueError as exc:  # an int too long for Python to convert
        raise ValidationError(f"number too large to index: {exc}") from None
    if exact == 0:
        return "N"
    sign, digits, _ = exact.as_tuple()
    mantissa = "".join(map(str, digits)).rstrip("0")
    exponent = exact.adjusted() + _EXPONENT_OFFSET
    if not 0 <= exponent < 100_000:
        raise ValidationError(f"number {value!r:.40} is beyond the indexable range (10**±49999)")
    if not sign:
        return f"P{exponent:05d}{mantissa}"
    return f"M{99_999 - exponent:05d}{mantissa.translate(_COMPLEMENT)}~"


def tag(value: Any) -> str:
    """The typed text of a scalar in ``_sb_eq``/``_sb_el``."""
    if isinstance(value, bool):
        return "b1" if value else "b0"
    if is_number(value):
        return "n" + number_key(value)
    if isinstance(value, str):
        return "s" + value
    raise ValidationError(f"not a scalar: {value!r:.40}")


def _is_key(key: Any, dots: bool) -> bool:
    try:
        validate_key(key, allow_dots=dots)
    except FilterError:
        return False
    return True


def filter_paths(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Every path a filter can name, with the value the reference evaluator finds there (None dropped):
    the top-level keys, then dotted paths through nested objects that no literal top-level key shadows."""
    found: dict[str, Any] = {key: value for key, value in metadata.items() if _is_key(key, dots=True)}

    def walk(prefix: str, node: Mapping[str, Any]) -> None:
        for key, value in node.items():
            if not isinstance(key, str) or "." in key:
                continue  # a dotted path is split on every dot: such a key can never be reached
            path = f"{prefix}.{key}"
            if not _is_key(path, dots=True):
                continue
            found.setdefault(path, value)  # a literal top-level key of that name wins
            if isinstance(value, Mapping):
                walk(path, value)

    for key, value in metadata.items():
        if isinstance(value, Mapping) and isinstance(key, str) and "." not in key and _is_key(key, dots=False):
            walk(key, value)
    return {path: value for path, value in found.items() if value is not None}


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, bool)) or is_number(value)


def filter_columns(metadata: Mapping[str, Any]) -> tuple[list[str], list[str], list[str], list[tuple[str, str]]]:
    """The four filter columns' values for one document's metadata (as stored: decoded JSON)."""
    keys: list[str] = []
    equal: list[str] = []
    elements: list[str] = []
    numbers: list[tuple[str, str]] = []
    for path, value in sorted(filter_paths(metadata).items()):
        keys.append(path)
        if _scalar(value):
            equal.append(f"{path}={tag(value)}")
            if is_number(value):
                numbers.append((path, number_key(value)))
        elif isinstance(value, list):
            elements.extend(dict.fromkeys(f"{path}={tag(item)}" for item in value if _scalar(item)))
    return keys, equal, elements, numbers


# -- compiling --------------------------------------------------------------------------------------------


def _tags(path: str, values: Sequence[Any]) -> list[str]:
    return list(dict.fromkeys(f"{path}={tag(v)}" for v in values))


def _has(column: str, entry: str) -> str:
    return f"array_has({column}, {sql_string(entry)})"


def _in(path: str, values: Sequence[Any]) -> str:
    entries = _tags(path, values)
    if not entries:
        return FALSE
    if len(entries) == 1:
        return _has(EQ, entries[0])
    return f"array_has_any({EQ}, make_array({', '.join(sql_string(e) for e in entries)}))"


def _not(sql: str) -> str:
    return FALSE if sql == TRUE else TRUE if sql == FALSE else f"NOT ({sql})"


def _comparison(node: Comparison) -> str:
    path, op, value = node.field, node.op, node.value
    if op is Op.EQ:
        return _has(EQ, f"{path}={tag(value)}")
    if op is Op.NE:
        return _not(_has(EQ, f"{path}={tag(value)}"))
    if op is Op.IN:
        return _in(path, value)
    if op is Op.NIN:
        return _not(_in(path, value))
    if op is Op.CONTAINS:
        return _has(ELEMENTS, f"{path}={tag(value)}")
    if op is Op.EXISTS:
        present = _has(KEYS, path)
        return present if value else _not(present)
    if op in _RANGE_SQL:
        return (f"COALESCE(map_extract({NUMBERS}, {sql_string(path)})[1] {_RANGE_SQL[op]} "
                f"{sql_string(number_key(value))}, FALSE)")
    raise FilterError(f"unknown operator {op!r}")  # pragma: no cover - the parser admits no other


def compile_filter(node: Filter | None) -> str | None:
    """The ``where`` string for a parsed filter (``None`` for no filter; ``TRUE``/``FALSE`` when decided
    without the data, e.g. ``$in: []``). The caller checks the operators first."""
    return sql_predicate(node, _comparison, true=TRUE, false=FALSE)


def id_predicate(ids: Sequence[str]) -> str:
    return "id IN (" + ", ".join(sql_string(i) for i in ids) + ")"


def both(*predicates: str | None) -> str | None:
    """``(a) AND (b)`` of the predicates given (None: no predicate at all)."""
    present = [p for p in predicates if p is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else " AND ".join(f"({p})" for p in present)


__all__ = [
    "ELEMENTS", "EQ", "FILTER_COLUMNS", "KEYS", "NUMBERS", "both", "compile_filter", "filter_columns",
    "filter_paths", "id_predicate", "number_key", "sql_string", "tag",
]
