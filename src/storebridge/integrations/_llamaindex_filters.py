"""The one translator per direction between LlamaIndex ``MetadataFilters`` and storebridge's filter tree.

**LlamaIndex -> storebridge** (:func:`from_metadata_filters`), used by ``StorebridgeVectorStore``:

==========================  ==============================================================================
``FilterOperator``          storebridge
==========================  ==============================================================================
EQ NE GT GTE LT LTE         ``$eq $ne $gt $gte $lt $lte`` (ranges compare numbers only, as everywhere in
                            storebridge: a string bound raises ``UnsupportedFilterError``)
IN NIN                      ``$in $nin`` (a list; an empty list is allowed)
CONTAINS                    ``$contains``: list membership
ANY / ALL                   ``$or`` / ``$and`` of ``$contains``, one per value (ANY of [] matches nothing,
                            ALL of [] everything, as in LlamaIndex's own evaluator)
IS_EMPTY                    LlamaIndex's documented meaning: the key is missing, ``None`` or an empty
                            list. storebridge's language has no "empty list", so the pushed-down tree
                            keeps every candidate the key could be empty for and :attr:`Translated.refine`
                            decides exactly, client-side (``$exists: false`` is the part the tree holds)
TEXT_MATCH(_INSENSITIVE)    no equivalent: ``UnsupportedFilterError``
==========================  ==============================================================================

Conditions: AND -> ``$and``, OR -> ``$or``, NOT -> ``$not`` of ``$or`` (LlamaIndex's NOT matches when
*none* of its filters match). Nested ``MetadataFilters`` nest. A value of ``None`` (other than for
IS_EMPTY) has no storebridge meaning and raises ``UnsupportedFilterError``.

**storebridge -> LlamaIndex** (:func:`to_metadata_filters`), used by the ``llamaindex`` knowledge backend
to narrow what a wrapped LlamaIndex vector store returns. Wrapped stores evaluate filters with their own
semantics (``SimpleVectorStore`` uses Python's ``==``, where ``True == 1``, and raises ``TypeError`` when
a range meets a string), so the result is a *pre-filter*: a superset of the exact answer, built only from
the operators the caller declares the store evaluates at least as broadly as storebridge. The exact
answer is always decided by storebridge's reference evaluator afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

from ..errors import FilterError, UnsupportedFilterError
from ..filters import COMPARISON_OPS, And, Comparison, Filter, Not, Op, Or, evaluate, is_number, parse_filter


class _Constant:
    """TRUE / FALSE while translating (storebridge trees have no constants; they are folded away)."""

    def __init__(self, value: bool) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "TRUE" if self.value else "FALSE"


TRUE, FALSE = _Constant(True), _Constant(False)
_Node = Filter | _Constant
Predicate = Callable[[Mapping[str, Any]], bool]


def _and(parts: Sequence[_Node]) -> _Node:
    if any(p is FALSE for p in parts):
        return FALSE
    kept = [p for p in parts if p is not TRUE]
    return TRUE if not kept else kept[0] if len(kept) == 1 else And(tuple(kept))  # type: ignore[arg-type]


def _or(parts: Sequence[_Node]) -> _Node:
    if any(p is TRUE for p in parts):
        return TRUE
    kept = [p for p in parts if p is not FALSE]
    return FALSE if not kept else kept[0] if len(kept) == 1 else Or(tuple(kept))  # type: ignore[arg-type]


def _not(part: _Node) -> _Node:
    if isinstance(part, _Constant):
        return FALSE if part.value else TRUE
    return Not(part)


@dataclass(frozen=True)
class Translated:
    """A LlamaIndex filter in storebridge terms.

    ``tree`` goes to the store (``None``: no filter). Where the tree alone is exact, ``refine`` is
    ``None``; otherwise the tree is a superset and ``refine(metadata)`` is the exact test. ``nothing``
    says the filter can match no document at all (e.g. ANY of an empty list), so no query is needed.
    """

    tree: Filter | None
    refine: Predicate | None = None
    nothing: bool = False


# -- LlamaIndex -> storebridge ----------------------------------------------------------------------------


def _values(item: MetadataFilter) -> list[Any]:
    return list(item.value) if isinstance(item.value, list) else [item.value]


def _checked(item: MetadataFilter, value: Any) -> Any:
    if value is None:
        raise UnsupportedFilterError(
            f"MetadataFilter on {item.key!r} with {item.operator.name} and value None has no storebridge "
            "meaning; use FilterOperator.IS_EMPTY to match missing or empty values"
        )
    if isinstance(value, list):
        raise UnsupportedFilterError(
            f"MetadataFilter on {item.key!r} with {item.operator.name} compares against a list; storebridge "
            "compares scalars (use IN, ANY or ALL for lists of values)"
        )
    return value


def _leaf(item: MetadataFilter) -> tuple[_Node, _Node, Predicate]:
    """``(upper, lower, exact)``: trees that match a superset and a subset, and the exact test."""
    op, key = item.operator, item.key
    if op in (FilterOperator.TEXT_MATCH, FilterOperator.TEXT_MATCH_INSENSITIVE):
        raise UnsupportedFilterError(
            f"MetadataFilter on {key!r} uses {op.name}, a full-text match storebridge's filter language does "
            "not have; filter on exact values, or search the text with a retriever that does full text"
        )
    if op is FilterOperator.IS_EMPTY:
        missing = Comparison(key, Op.EXISTS, False)
        parse_filter(missing)  # validates the key
        return TRUE, missing, lambda metadata: _is_empty(metadata, key)
    node: _Node
    if op in (FilterOperator.IN, FilterOperator.NIN):
        if not isinstance(item.value, list):
            raise FilterError(f"MetadataFilter on {key!r} with {op.name} expects a list of values, got {item.value!r}")
        node = Comparison(key, Op.IN if op is FilterOperator.IN else Op.NIN, tuple(item.value))
    elif op in (FilterOperator.ANY, FilterOperator.ALL):
        contains = [Comparison(key, Op.CONTAINS, _checked(item, v)) for v in _values(item)]
        if not contains:  # nothing to contain: ANY never matches, ALL always does (Python's any/all)
            parse_filter(Comparison(key, Op.EXISTS, True))  # still validates the key
        node = (_or if op is FilterOperator.ANY else _and)(contains)
    else:
        value = _checked(item, item.value)
        simple = {FilterOperator.EQ: Op.EQ, FilterOperator.NE: Op.NE, FilterOperator.GT: Op.GT,
                  FilterOperator.GTE: Op.GTE, FilterOperator.LT: Op.LT, FilterOperator.LTE: Op.LTE,
                  FilterOperator.CONTAINS: Op.CONTAINS}
        if op not in simple:
            raise UnsupportedFilterError(f"MetadataFilter operator {op!r} has no storebridge equivalent")
        if simple[op] in (Op.GT, Op.GTE, Op.LT, Op.LTE) and not is_number(value):
            raise UnsupportedFilterError(
                f"MetadataFilter on {key!r} with {op.name} and {value!r}: storebridge's range operators compare "
                "numbers only (store dates as timestamps to compare them)"
            )
        node = Comparison(key, simple[op], value)
    if not isinstance(node, _Constant):
        parse_filter(node)  # the same checks as a dict filter: key alphabet, value types
    return node, node, lambda metadata: _holds(node, metadata)


def _holds(node: _Node, metadata: Mapping[str, Any]) -> bool:
    return node.value if isinstance(node, _Constant) else evaluate(node, metadata)


def _is_empty(metadata: Mapping[str, Any], key: str) -> bool:
    value = metadata.get(key)
    return value is None or (isinstance(value, list) and not value)


def _translate(filters: MetadataFilters) -> tuple[_Node, _Node, Predicate]:
    parts = [_translate(f) if isinstance(f, MetadataFilters) else _leaf(f) for f in filters.filters]
    uppers, lowers, tests = [p[0] for p in parts], [p[1] for p in parts], [p[2] for p in parts]
    condition = filters.condition or FilterCondition.AND
    if condition is FilterCondition.AND:
        return _and(uppers), _and(lowers), lambda m: all(t(m) for t in tests)
    if condition is FilterCondition.OR:
        return _or(uppers), _or(lowers), lambda m: any(t(m) for t in tests)
    if condition is FilterCondition.NOT:  # none of them: the negation swaps the bounds
        return _not(_or(lowers)), _not(_or(uppers)), lambda m: not any(t(m) for t in tests)
    raise UnsupportedFilterError(f"MetadataFilters condition {condition!r} has no storebridge equivalent")


def from_metadata_filters(filters: MetadataFilters | None) -> Translated:
    """Translate LlamaIndex filters; see the table in the module docstring."""
    if filters is None:
        return Translated(None)
    if not isinstance(filters, MetadataFilters):
        raise FilterError(f"expected LlamaIndex MetadataFilters, got {type(filters).__name__}")
    upper, lower, exact = _translate(filters)
    if upper is FALSE:
        return Translated(None, nothing=True)
    tree = None if upper is TRUE else upper
    if upper == lower:
        return Translated(tree)  # type: ignore[arg-type]
    return Translated(tree, refine=exact)  # type: ignore[arg-type]


# -- storebridge -> LlamaIndex ----------------------------------------------------------------------------

_TO_OPERATOR = {Op.EQ: FilterOperator.EQ, Op.NE: FilterOperator.NE, Op.GT: FilterOperator.GT,
                Op.GTE: FilterOperator.GTE, Op.LT: FilterOperator.LT, Op.LTE: FilterOperator.LTE,
                Op.IN: FilterOperator.IN, Op.NIN: FilterOperator.NIN, Op.CONTAINS: FilterOperator.CONTAINS}


def _representable(value: Any) -> bool:
    """MetadataFilter holds str, int, float and homogeneous lists of them; never bools."""
    if isinstance(value, tuple):
        return all(isinstance(v, str) for v in value) or all(is_number(v) for v in value)
    return isinstance(value, str) or is_number(value)


def _to_leaf(node: Comparison, operators: Collection[Op], skip_keys: Collection[str]) -> MetadataFilter | None:
    if node.op not in operators or "." in node.field or node.field in skip_keys:
        return None
    if node.op is Op.EXISTS:  # IS_EMPTY (missing, None or []) contains every "$exists: false" match
        return MetadataFilter(key=node.field, value=None, operator=FilterOperator.IS_EMPTY) if not node.value else None
    if not _representable(node.value):
        return None
    value = list(node.value) if isinstance(node.value, tuple) else node.value
    return MetadataFilter(key=node.field, value=value, operator=_TO_OPERATOR[node.op])


def to_metadata_filters(tree: Filter | None, *, operators: Collection[Op] = COMPARISON_OPS,
                        nested: bool = True, skip_keys: Collection[str] = ()) -> MetadataFilters | None:
    """LlamaIndex filters that match a superset of what ``tree`` matches (``None``: no narrowing).

    Only comparisons whose operator is in ``operators`` (the ones the target store evaluates at least as
    broadly as storebridge), on top-level keys not in ``skip_keys``, with values a ``MetadataFilter`` can
    hold, are translated; ``$and``/``$or`` of them keep their shape, anything else (``$not``, other
    operators, bools) widens to "no filter" for that part. ``nested=False`` keeps to one level of
    filters, for stores (``SimpleVectorStore``) that refuse nested ``MetadataFilters``. With every
    operator allowed and nothing widened, the result is exactly ``tree``.
    """
    if tree is None:
        return None
    if isinstance(tree, Comparison):
        leaf = _to_leaf(tree, operators, skip_keys)
        return None if leaf is None else MetadataFilters(filters=[leaf], condition=FilterCondition.AND)
    if isinstance(tree, (And, Or)):
        condition = FilterCondition.AND if isinstance(tree, And) else FilterCondition.OR
        parts: list[MetadataFilter | MetadataFilters] = []
        for child in tree.children:
            if isinstance(child, Comparison):
                part: MetadataFilter | MetadataFilters | None = _to_leaf(child, operators, skip_keys)
            elif nested:
                part = to_metadata_filters(child, operators=operators, nested=True, skip_keys=skip_keys)
            else:
                part = None
            if part is None and isinstance(tree, Or):
                return None  # one unbounded branch makes the whole disjunction unbounded
            if part is not None:
                parts.append(part)
        return MetadataFilters(filters=parts, condition=condition) if parts else None
    return None  # $not: a superset of a negation needs a subset of its operand, which no store promises


__all__ = ["Translated", "from_metadata_filters", "to_metadata_filters"]
