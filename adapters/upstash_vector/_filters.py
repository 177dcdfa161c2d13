"""Our filter tree as an Upstash Vector filter string (pure; no client import).

The tree is put in the negation-normal form of :mod:`storebridge.filter_facts` over the tokens of
:mod:`storebridge.adapters.pinecone._encoding` (the record layout shared with the Pinecone adapter; see
there for how each operator maps), then written in Upstash's SQL-like syntax with only these forms:

==========================  ==================================================================
algebra                     Upstash filter text
==========================  ==================================================================
has one of tokens a, b      ``(_sb_t CONTAINS 'a' OR _sb_t CONTAINS 'b')``
has none of tokens a, b     ``(_sb_t NOT CONTAINS 'a' AND _sb_t NOT CONTAINS 'b')``
range                       ``_sb_n_<hex> > 2.5`` (``>=``, ``<``, ``<=``)
and / or                    ``(x AND y)`` / ``(x OR y)``
==========================  ==================================================================

and every filter is ``_sb_t CONTAINS 'doc' AND (...)``, so reserved records never match.

Escaping. Upstash documents no escape sequence for string literals. None is needed: the only string
literals written are tokens, ``[a-z0-9.]`` by construction (digests of the user's keys and values),
and :func:`quote_literal` refuses anything else, so no user text (quotes, backslashes, operators,
NUL, unicode) ever reaches the filter. Numbers are written in plain decimal (never exponent form,
which the documented grammar does not show): ``1e-9`` becomes ``0.000000001``. Identifiers are
``_sb_t`` and ``_sb_n_<24 hex>``, inside the documented ``[a-zA-Z_][a-zA-Z_0-9.[\\]#-]*``.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

from storebridge.adapters.pinecone._encoding import DOC_TOKEN, TOKENS_FIELD, number_field, token_text
from storebridge.filter_facts import AllOf, AnyOf, Expr, Facts, Range, negation_normal_form
from storebridge.filters import Filter, Op

_LITERAL_RE = re.compile(r"[a-z0-9.]{1,64}")
_IDENTIFIER_RE = re.compile(r"_sb_[a-z]+(_[0-9a-f]{24})?")
_RANGE_OPS = {Op.GT: ">", Op.GTE: ">=", Op.LT: "<", Op.LTE: "<="}


def quote_literal(text: str) -> str:
    """A token as a single-quoted literal. Only token text is accepted: anything else raises."""
    if not isinstance(text, str) or not _LITERAL_RE.fullmatch(text):
        raise ValueError(f"only storebridge tokens ([a-z0-9.]) are written as Upstash literals, not {text!r}")
    return f"'{text}'"


def number_literal(value: float) -> str:
    """A finite number in plain decimal notation."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"not a number: {value!r}")
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        raise ValueError(f"Upstash filters take finite numbers, not {value!r}")
    return format(Decimal(repr(value)), "f")


def identifier(name: str) -> str:
    if not _IDENTIFIER_RE.fullmatch(name):
        raise ValueError(f"not a storebridge field name: {name!r}")
    return name


#: Matches every document record (and no reserved record).
MATCH_DOCUMENTS = f"{TOKENS_FIELD} CONTAINS {quote_literal(DOC_TOKEN)}"


def render(expr: Expr) -> str:
    """One expression as a self-contained Upstash term (constants are resolved before this)."""
    if isinstance(expr, Facts):
        test, joiner = ("NOT CONTAINS", " AND ") if expr.negated else ("CONTAINS", " OR ")
        terms = [f"{TOKENS_FIELD} {test} {quote_literal(token_text(t))}" for t in expr.tokens]
        return terms[0] if len(terms) == 1 else "(" + joiner.join(terms) + ")"
    if isinstance(expr, Range):
        return f"{identifier(number_field(expr.key))} {_RANGE_OPS[expr.op]} {number_literal(expr.value)}"
    if isinstance(expr, AllOf):
        return "(" + " AND ".join(render(p) for p in expr.parts) + ")"
    if isinstance(expr, AnyOf):
        return "(" + " OR ".join(render(p) for p in expr.parts) + ")"
    raise ValueError(f"constant {expr!r} has no Upstash form")  # pragma: no cover


def upstash_filter(tree: Filter | None) -> str | None:
    """The filter string for ``tree`` over document records, or None when it matches nothing."""
    expr = negation_normal_form(tree, merge=True)
    if isinstance(expr, bool):
        return MATCH_DOCUMENTS if expr else None
    return f"{MATCH_DOCUMENTS} AND {render(expr)}"


__all__ = ["MATCH_DOCUMENTS", "identifier", "number_literal", "quote_literal", "render", "upstash_filter"]
