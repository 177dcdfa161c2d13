"""Our filter tree as Pinecone metadata filters (pure; no client import).

The tree is first put in the negation-normal form of :mod:`storebridge.filter_facts` over the tokens of
:mod:`._encoding` (see there for why and how each operator maps). Rendering then uses only ``$in`` / ``$nin`` on the token list ``_sb_t`` (present on
every record, so Pinecone's handling of missing fields never comes into play), ``$gt`` ``$gte``
``$lt`` ``$lte`` on numeric copies, and ``$and`` / ``$or``.

One more precaution: a numeric copy is missing on records whose key is not a number, and Pinecone was
reported (2024) to drop records from an ``$or`` when a field one branch names is missing. So range
comparisons are never placed under ``$or``: :func:`pinecone_filters` lifts them out into separate
filters (a disjunctive form over the range comparisons only; token sub-expressions keep their own
``$or``), each a plain conjunction in which a missing numeric copy can only mean "no match", which is
the right answer. The adapter runs one request per filter and unites the results; almost every filter
is a single one. A filter that would need more than :data:`MAX_FILTERS` requests is refused with
:class:`~storebridge.errors.UnsupportedFilterError`.
"""

from __future__ import annotations

from itertools import product
from typing import Any

from storebridge.errors import UnsupportedFilterError
from storebridge.filter_facts import AllOf, AnyOf, Expr, Facts, Range, all_of, any_of, negation_normal_form
from storebridge.filters import Filter, Op

from ._encoding import DOC_TOKEN, TOKENS_FIELD, number_field, token_text

#: Most Pinecone requests one filter may expand to (see the module docstring).
MAX_FILTERS = 32

_RANGE_OPS = {Op.GT: "$gt", Op.GTE: "$gte", Op.LT: "$lt", Op.LTE: "$lte"}
#: Matches every document record (and no reserved record).
MATCH_DOCUMENTS: dict[str, Any] = {TOKENS_FIELD: {"$in": [DOC_TOKEN]}}


def render(expr: Expr) -> dict[str, Any]:
    """One expression as a Pinecone filter dict (constants are resolved before this)."""
    if isinstance(expr, Facts):
        return {TOKENS_FIELD: {"$nin" if expr.negated else "$in": [token_text(t) for t in expr.tokens]}}
    if isinstance(expr, Range):
        return {number_field(expr.key): {_RANGE_OPS[expr.op]: expr.value}}
    if isinstance(expr, AllOf):
        return {"$and": [render(p) for p in expr.parts]}
    if isinstance(expr, AnyOf):
        return {"$or": [render(p) for p in expr.parts]}
    raise ValueError(f"constant {expr!r} has no Pinecone form")  # pragma: no cover


def has_range(expr: Expr) -> bool:
    if isinstance(expr, Range):
        return True
    if isinstance(expr, (AllOf, AnyOf)):
        return any(has_range(p) for p in expr.parts)
    return False


def _split(expr: Expr) -> list[tuple[Expr, tuple[Range, ...]]]:
    """``expr`` as a union of (range-free expression AND some range comparisons)."""
    if isinstance(expr, bool):
        return [(True, ())] if expr else []
    if not has_range(expr):
        return [(expr, ())]
    if isinstance(expr, Range):
        return [(True, (expr,))]
    if isinstance(expr, AllOf):
        result: list[tuple[Expr, tuple[Range, ...]]] = []
        for combo in product(*(_split(p) for p in expr.parts)):
            tokens: Expr = all_of((t for t, _ in combo), merge=True)
            if tokens is not False:
                result.append((tokens, tuple(r for _, ranges in combo for r in ranges)))
            _check_size(len(result))
        return result
    assert isinstance(expr, AnyOf)
    plain = [p for p in expr.parts if not has_range(p)]
    result = [(any_of(plain, merge=True), ())] if plain else []
    for part in expr.parts:
        if has_range(part):
            result += _split(part)
            _check_size(len(result))
    return result


def _check_size(size: int) -> None:
    if size > MAX_FILTERS:
        raise UnsupportedFilterError(
            f"the filter needs more than {MAX_FILTERS} Pinecone requests (range comparisons under $or or $not "
            "are sent as separate requests); simplify it, e.g. move range conditions out of $or/$not")


def pinecone_filters(tree: Filter | None) -> list[dict[str, Any]]:
    """The Pinecone filters whose union is exactly ``tree`` over document records: ``[]`` means
    "matches nothing" (no request needed), and every filter also requires the ``doc`` token."""
    parts = _split(negation_normal_form(tree, merge=True))
    filters = []
    for tokens, ranges in parts:
        clauses = [MATCH_DOCUMENTS]
        if tokens is not True:
            clauses.append(render(tokens))
        clauses += [render(r) for r in ranges]
        filters.append(clauses[0] if len(clauses) == 1 else {"$and": clauses})
    return list({repr(f): f for f in filters}.values())


__all__ = ["MATCH_DOCUMENTS", "MAX_FILTERS", "pinecone_filters", "render"]
