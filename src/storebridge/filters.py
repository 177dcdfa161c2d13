"""The portable metadata filter language: a small typed tree, a Mongo-style dict parser, and the
pure-Python reference evaluator that *defines* what every backend must return (see FILTERS.md).

    {"author": "ann"}                        eq shorthand
    {"year": {"$gte": 2020, "$lt": 2024}}    several operators on one field are ANDed
    {"tags": {"$contains": "ml"}}            list membership
    {"$or": [...]}, {"$and": [...]}, {"$not": {...}}
    {"lang": {"$exists": False}}

Values are scalars: str, int, float, bool. ``$in``/``$nin`` take a list of scalars, ``$exists`` a bool,
range operators a number. Anything else is a :class:`FilterError` naming the spot.

Backends compile the tree to their native form and declare the operators they support; use
:func:`require_operators` to raise :class:`UnsupportedFilterError` for the rest.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Union

from .errors import FilterError, UnsupportedFilterError

Scalar = Union[str, int, float, bool]


class Op(str, enum.Enum):
    EQ = "eq"
    NE = "ne"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    IN = "in"
    NIN = "nin"
    EXISTS = "exists"
    CONTAINS = "contains"
    AND = "and"
    OR = "or"
    NOT = "not"


COMPARISON_OPS = frozenset({Op.EQ, Op.NE, Op.GT, Op.GTE, Op.LT, Op.LTE, Op.IN, Op.NIN, Op.EXISTS, Op.CONTAINS})
RANGE_OPS = frozenset({Op.GT, Op.GTE, Op.LT, Op.LTE})
LOGICAL_OPS = frozenset({Op.AND, Op.OR, Op.NOT})
ALL_OPS: frozenset[Op] = frozenset(Op)


@dataclass(frozen=True, slots=True)
class Comparison:
    """``field <op> value``. ``value`` is a scalar, a tuple of scalars (in/nin) or a bool (exists)."""

    field: str
    op: Op
    value: Any


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: Filter


Filter = Union[Comparison, And, Or, Not]
FilterLike = Union[Filter, Mapping[str, Any], None]

# Filter keys are data that reaches engines' query languages: keep them to a conservative alphabet.
_KEY_RE = re.compile(r"^[\w\- ]{1,255}$")
_DOTTED_KEY_RE = re.compile(r"^[\w\- ]{1,255}(\.[\w\- ]{1,255})*$")


def is_number(value: Any) -> bool:
    """True for int and float (finite or not), never for bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, bool)) or (is_number(value) and not (isinstance(value, float) and math.isnan(value)))


def validate_key(key: Any, *, where: str = "filter", allow_dots: bool = False) -> str:
    """Check a metadata key used in a filter: letters, digits, ``_``, ``-`` and spaces, 1-255 characters,
    not starting with ``$`` (dots only where the backend declares nested paths)."""
    pattern = _DOTTED_KEY_RE if allow_dots else _KEY_RE
    if not isinstance(key, str) or len(key) > 255 or not pattern.fullmatch(key) or key.strip() != key:
        raise FilterError(
            f"{where}: invalid metadata key {key!r}; keys may use letters, digits, '_', '-' and inner spaces"
            + (" and '.' for nested paths" if allow_dots else " (no '.', '$', quotes or control characters)")
        )
    return key


def _check_scalar(value: Any, where: str) -> Scalar:
    if not _is_scalar(value):
        raise FilterError(f"{where}: expected a string, number or bool, got {type(value).__name__} {value!r}")
    return value  # type: ignore[no-any-return]


def _parse_op(field: str, op_name: str, value: Any, where: str) -> Comparison:
    try:
        op = Op(op_name[1:]) if op_name.startswith("$") else None
    except ValueError:
        op = None
    if op is None or op in LOGICAL_OPS:
        raise FilterError(f"{where}: unknown operator {op_name!r} on field {field!r}")
    spot = f"{where}.{op_name}"
    if op in (Op.IN, Op.NIN):
        if not isinstance(value, (list, tuple)):
            raise FilterError(f"{spot}: expects a list, got {type(value).__name__}")
        return Comparison(field, op, tuple(_check_scalar(v, f"{spot}[{i}]") for i, v in enumerate(value)))
    if op is Op.EXISTS:
        if not isinstance(value, bool):
            raise FilterError(f"{spot}: expects true or false, got {value!r}")
        return Comparison(field, op, value)
    if op in RANGE_OPS:
        if not is_number(value) or (isinstance(value, float) and math.isnan(value)):
            raise FilterError(f"{spot}: range operators compare numbers only, got {value!r}")
        return Comparison(field, op, value)
    return Comparison(field, op, _check_scalar(value, spot))


def _parse(node: Any, where: str) -> Filter:
    if not isinstance(node, Mapping):
        raise FilterError(f"{where}: expected a dict, got {type(node).__name__}")
    if not node:
        raise FilterError(f"{where}: empty filter")
    parts: list[Filter] = []
    for key, value in node.items():
        if not isinstance(key, str):
            raise FilterError(f"{where}: keys must be strings, got {key!r}")
        spot = f"{where}.{key}" if where else key
        if key in ("$and", "$or"):
            if not isinstance(value, (list, tuple)) or not value:
                raise FilterError(f"{spot}: expects a non-empty list of filters")
            children = tuple(_parse(child, f"{spot}[{i}]") for i, child in enumerate(value))
            parts.append(And(children) if key == "$and" else Or(children))
        elif key == "$not":
            parts.append(Not(_parse(value, spot)))
        elif key.startswith("$"):
            raise FilterError(f"{spot}: unknown logical operator {key!r}")
        else:
            validate_key(key, where=where or "filter", allow_dots=True)
            if isinstance(value, Mapping) and any(isinstance(k, str) and k.startswith("$") for k in value):
                if not all(isinstance(k, str) and k.startswith("$") for k in value):
                    raise FilterError(f"{spot}: cannot mix operators and plain keys")
                parts.extend(_parse_op(key, op, v, spot) for op, v in value.items())
            elif isinstance(value, Mapping) and not value:
                raise FilterError(f"{spot}: empty operator dict")
            else:
                parts.append(Comparison(key, Op.EQ, _check_scalar(value, spot)))
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def parse_filter(spec: FilterLike) -> Filter | None:
    """Parse a Mongo-style dict (or pass a tree through). ``None`` and ``{}`` mean "no filter"."""
    if spec is None:
        return None
    if isinstance(spec, (Comparison, And, Or, Not)):
        _validate_tree(spec)
        return spec
    if isinstance(spec, Mapping) and not spec:
        return None
    return _parse(spec, "")


def _validate_tree(node: Filter) -> None:
    """Trees built by hand get the same checks as parsed dicts."""
    if isinstance(node, Comparison):
        if not isinstance(node.op, Op):
            raise FilterError(f"{node.field!r}: the operator must be an Op member, got {node.op!r}")
        _parse_op(node.field, "$" + Op(node.op).value, list(node.value) if isinstance(node.value, tuple) else node.value,
                  node.field)
        validate_key(node.field, allow_dots=True)
    elif isinstance(node, (And, Or)):
        if not node.children:
            raise FilterError(f"empty ${type(node).__name__.lower()}")
        for child in node.children:
            _validate_tree(child)
    elif isinstance(node, Not):
        _validate_tree(node.child)
    else:
        raise FilterError(f"not a filter node: {node!r}")


def to_dict(node: Filter) -> dict[str, Any]:
    """The canonical dict form of a tree (``parse_filter(to_dict(t)) == t`` up to shorthand)."""
    if isinstance(node, Comparison):
        value = list(node.value) if node.op in (Op.IN, Op.NIN) else node.value
        return {node.field: {"$" + node.op.value: value}}
    if isinstance(node, And):
        return {"$and": [to_dict(c) for c in node.children]}
    if isinstance(node, Or):
        return {"$or": [to_dict(c) for c in node.children]}
    return {"$not": to_dict(node.child)}


def walk(node: Filter) -> Iterator[Filter]:
    yield node
    if isinstance(node, (And, Or)):
        for child in node.children:
            yield from walk(child)
    elif isinstance(node, Not):
        yield from walk(node.child)


def operators_used(node: Filter) -> set[Op]:
    ops: set[Op] = set()
    for n in walk(node):
        if isinstance(n, Comparison):
            ops.add(n.op)
        elif isinstance(n, And):
            ops.add(Op.AND)
        elif isinstance(n, Or):
            ops.add(Op.OR)
        else:
            ops.add(Op.NOT)
    return ops


def require_operators(
    node: Filter | None, supported: frozenset[Op] | set[Op], *, backend: str, nested_keys: bool = False
) -> None:
    """Raise :class:`UnsupportedFilterError` if ``node`` uses an operator ``backend`` does not support,
    or a dotted (nested) key where the backend has not declared ``nested_keys``."""
    if node is None:
        return
    if not nested_keys:
        for n in walk(node):
            if isinstance(n, Comparison) and "." in n.field:
                raise UnsupportedFilterError(
                    f"the {backend!r} backend filters on top-level metadata keys only; "
                    f"{n.field!r} is a nested path"
                )
    missing = operators_used(node) - set(supported)
    if missing:
        names = ", ".join(sorted("$" + op.value for op in missing))
        raise UnsupportedFilterError(
            f"the {backend!r} backend cannot evaluate {names}; supported here: "
            + ", ".join(sorted("$" + op.value for op in supported))
        )


# ---------------------------------------------------------------------------------------------------------
# The reference evaluator. This is the definition every backend is checked against.

_MISSING = object()


def _lookup(metadata: Mapping[str, Any], path: str) -> Any:
    if path in metadata:
        return metadata[path]
    if "." not in path:
        return _MISSING
    current: Any = metadata
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return _MISSING
        current = current[part]
    return current


def scalar_equal(stored: Any, wanted: Any) -> bool:
    """Equality with the filter language's rules: numbers by value, bool never equals a number,
    strings exactly, a list or dict never equals a scalar."""
    if isinstance(wanted, bool) or isinstance(stored, bool):
        return isinstance(wanted, bool) and isinstance(stored, bool) and stored is wanted
    if is_number(wanted):
        return is_number(stored) and stored == wanted
    if isinstance(wanted, str):
        return isinstance(stored, str) and stored == wanted
    return False


def _compare(stored: Any, op: Op, wanted: Any) -> bool:
    if op is Op.EXISTS:
        present = stored is not _MISSING and stored is not None
        return present if wanted else not present
    if stored is _MISSING or stored is None:
        return op in (Op.NE, Op.NIN)
    if op is Op.EQ:
        return scalar_equal(stored, wanted)
    if op is Op.NE:
        return not scalar_equal(stored, wanted)
    if op is Op.IN:
        return any(scalar_equal(stored, w) for w in wanted)
    if op is Op.NIN:
        return not any(scalar_equal(stored, w) for w in wanted)
    if op is Op.CONTAINS:
        return isinstance(stored, list) and any(scalar_equal(item, wanted) for item in stored)
    if not is_number(stored) or (isinstance(stored, float) and math.isnan(stored)):
        return False
    if op is Op.GT:
        return bool(stored > wanted)
    if op is Op.GTE:
        return bool(stored >= wanted)
    if op is Op.LT:
        return bool(stored < wanted)
    return bool(stored <= wanted)


def evaluate(node: FilterLike, metadata: Mapping[str, Any]) -> bool:
    """Does ``metadata`` match the filter? ``None`` matches everything."""
    tree = node if isinstance(node, (Comparison, And, Or, Not)) else parse_filter(node)
    if tree is None:
        return True
    return _eval(tree, metadata)


def _eval(node: Filter, metadata: Mapping[str, Any]) -> bool:
    if isinstance(node, Comparison):
        return _compare(_lookup(metadata, node.field), node.op, node.value)
    if isinstance(node, And):
        return all(_eval(c, metadata) for c in node.children)
    if isinstance(node, Or):
        return any(_eval(c, metadata) for c in node.children)
    return not _eval(node.child, metadata)


def matcher(node: FilterLike) -> Any:
    """A ``metadata -> bool`` function for client-side filtering (parses once)."""
    tree = parse_filter(node)
    if tree is None:
        return lambda metadata: True
    return lambda metadata: _eval(tree, metadata)


__all__ = [
    "ALL_OPS",
    "COMPARISON_OPS",
    "LOGICAL_OPS",
    "RANGE_OPS",
    "And",
    "Comparison",
    "Filter",
    "FilterLike",
    "Not",
    "Op",
    "Or",
    "evaluate",
    "is_number",
    "matcher",
    "operators_used",
    "parse_filter",
    "require_operators",
    "scalar_equal",
    "to_dict",
    "validate_key",
    "walk",
]
