"""LangChain's structured-query filters (``langchain_core.structured_query``) as storebridge filter trees.

This is the one place LangChain filter objects are translated; :class:`StorebridgeTranslator` is what a
``SelfQueryRetriever`` needs (``structured_query_translator=StorebridgeTranslator()``), and
:func:`to_filter` is what ``StorebridgeVectorStore(filter=...)`` accepts.

Mapping (LangChain -> storebridge): ``eq ne gt gte lt lte in nin`` map one to one; ``contain`` maps to
``$contains``, which in storebridge means *list membership* (``{"tags": {"$contains": "ml"}}``), not
substring: pass ``StorebridgeTranslator(contain=False)`` to refuse it where your attributes are strings.
``like`` has no portable meaning and raises :class:`~storebridge.errors.UnsupportedFilterError`.
``and``/``or`` map directly; ``not`` of one argument negates it and ``not`` of several means *none of them*
(``NOT (a OR b)``). Every translated tree is validated like a parsed dict, so a bad value (a date object, a
list for ``eq``) raises :class:`~storebridge.errors.FilterError` naming the spot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.structured_query import (
    Comparator,
    Comparison,
    Expr,
    Operation,
    Operator,
    StructuredQuery,
    Visitor,
)

from .. import filters as sb
from ..errors import FilterError, UnsupportedFilterError

_COMPARATORS: dict[Comparator, sb.Op] = {
    Comparator.EQ: sb.Op.EQ,
    Comparator.NE: sb.Op.NE,
    Comparator.GT: sb.Op.GT,
    Comparator.GTE: sb.Op.GTE,
    Comparator.LT: sb.Op.LT,
    Comparator.LTE: sb.Op.LTE,
    Comparator.IN: sb.Op.IN,
    Comparator.NIN: sb.Op.NIN,
    Comparator.CONTAIN: sb.Op.CONTAINS,
}


class StorebridgeTranslator(Visitor):
    """Translate LangChain ``Comparison``/``Operation``/``StructuredQuery`` trees into storebridge filters.

    ``visit_structured_query`` returns ``(query, {"filter": tree})`` (or ``(query, {})``), the shape
    ``SelfQueryRetriever`` passes to ``VectorStore.search``.
    """

    allowed_operators: Sequence[Operator] = (Operator.AND, Operator.OR, Operator.NOT)

    def __init__(self, *, contain: bool = True) -> None:
        #: Whether ``contain`` is read as list membership (``$contains``); False refuses it.
        self.contain = contain
        self.allowed_comparators: Sequence[Comparator] = tuple(
            c for c in _COMPARATORS if contain or c is not Comparator.CONTAIN
        )

    def _validate_func(self, func: Operator | Comparator) -> None:
        """Refuse with storebridge's typed error (LangChain's default raises a bare ValueError)."""
        if func is Comparator.LIKE:
            raise UnsupportedFilterError(
                "LangChain's 'like' comparator has no portable storebridge equivalent (no pattern matching "
                "on every backend); filter on exact values, $in, or $contains for list membership"
            )
        if func is Comparator.CONTAIN and not self.contain:
            raise UnsupportedFilterError(
                "'contain' is disabled on this translator (contain=False): storebridge's $contains means "
                "list membership, and these attributes were declared to need substring matching"
            )
        allowed = self.allowed_operators if isinstance(func, Operator) else self.allowed_comparators
        if func not in allowed:
            raise UnsupportedFilterError(f"LangChain filter function {func!r} is not supported by storebridge")

    def visit_operation(self, operation: Operation) -> sb.Filter:
        self._validate_func(operation.operator)
        children = tuple(argument.accept(self) for argument in operation.arguments)
        if not children:
            raise FilterError(f"LangChain {operation.operator.value!r} operation has no arguments")
        if operation.operator is Operator.AND:
            return children[0] if len(children) == 1 else sb.And(children)
        if operation.operator is Operator.OR:
            return children[0] if len(children) == 1 else sb.Or(children)
        return sb.Not(children[0] if len(children) == 1 else sb.Or(children))

    def visit_comparison(self, comparison: Comparison) -> sb.Filter:
        self._validate_func(comparison.comparator)
        op = _COMPARATORS[comparison.comparator]
        value = comparison.value
        if op in (sb.Op.IN, sb.Op.NIN):
            if not isinstance(value, (list, tuple)):
                raise FilterError(
                    f"{comparison.attribute!r}: LangChain {comparison.comparator.value!r} needs a list, got {value!r}"
                )
            value = tuple(value)
        node = sb.Comparison(comparison.attribute, op, value)
        return sb.parse_filter(node)  # type: ignore[return-value]  # validates values and the key

    def visit_structured_query(self, structured_query: StructuredQuery) -> tuple[str, dict[str, Any]]:
        if structured_query.filter is None:
            return structured_query.query, {}
        return structured_query.query, {"filter": structured_query.filter.accept(self)}


def to_filter(spec: Any, translator: StorebridgeTranslator | None = None) -> sb.Filter | None:
    """A storebridge filter tree from whatever a LangChain caller passes as ``filter=``: our Mongo-style
    dict, a storebridge tree, or a LangChain structured-query expression (``StructuredQuery`` uses its
    ``filter``). Callables cannot be pushed down to every backend and are refused."""
    if spec is None or isinstance(spec, (Mapping, sb.Comparison, sb.And, sb.Or, sb.Not)):
        return sb.parse_filter(spec)
    if isinstance(spec, StructuredQuery):
        spec = spec.filter
        if spec is None:
            return None
    if isinstance(spec, Expr):
        return spec.accept(translator or StorebridgeTranslator())  # type: ignore[no-any-return]
    if callable(spec):
        raise UnsupportedFilterError(
            "callable filters cannot be evaluated by every storebridge backend; pass a filter dict such as "
            "{'year': {'$gte': 2020}} or a LangChain structured-query expression"
        )
    raise FilterError(f"unsupported filter {type(spec).__name__} {spec!r:.80}: pass a dict or a LangChain Expr")


__all__ = ["StorebridgeTranslator", "to_filter"]
