"""Typed filter tokens: the record layout and filter algebra the Pinecone and Upstash Vector adapters
share. Pure Python, no client import, so the unit tests pin it without a server.

Why tokens. Both engines' metadata filters differ from FILTERS.md where it matters most: Pinecone's
``$ne`` skips records that lack the field (reported 2024, haystack-core-integrations#590) and has
no ``$not``; Upstash writes booleans as ``1``/``0`` (so ``True`` would equal ``1``) and documents
no escaping for string literals. So the adapters never filter on the user's own fields. Each record
carries:

* ``_sb_t``: a list of strings, present on every record (it always holds ``"doc"``), with one
  token per fact a filter can ask about a top-level metadata key ``k`` (keys the filter language
  accepts; others cannot be filtered on anyway):

  ========================  ===========================================================
  token                     present when
  ========================  ===========================================================
  ``p.<h(k)>``              ``k`` is present and not None (``$exists``)
  ``s.<h(k, v)>``           ``k`` holds the string ``v``
  ``n.<h(k, canon(v))>``    ``k`` holds the number ``v`` (int or float, never bool)
  ``b.<h(k, "1"/"0")>``     ``k`` holds the bool ``v``
  ``q.<h(k)>``              ``k`` holds a number (used to negate range comparisons)
  ``ls.`` / ``ln.`` / ``lb.``  ``k`` is a list with that string / number / bool element
  ========================  ===========================================================

  ``h`` is a 96-bit BLAKE2b digest of the key and the value joined by NUL (keys cannot hold NUL),
  so a token is ``[a-z.0-9]`` only: no user text ever reaches a filter expression, whatever it
  holds (quotes, backslashes, operators, NUL, any unicode), and no length limit of the engine's
  string handling matters. ``canon`` writes a number so that values Python calls equal get the
  same text (``1`` and ``1.0`` are ``"1"``; ``True`` has a token kind of its own).
* ``_sb_n_<h(k)>``: the number itself, for range comparisons, on records where ``k`` is a number.

Filters then mean exactly FILTERS.md with nothing but "the token list has one of these" (positive
or negated: the list is never missing, so a negation never meets a missing field) and range
comparisons, which only ever need to be true on numbers:

==============  ====================================================================
operator        compiled to
==============  ====================================================================
eq / ne         has / has-not the typed equality token
in / nin        has any / has none of the tokens (``in []`` is false, ``nin []`` true)
exists          has / has-not ``p.``
contains        has the typed list-element token (false on non-lists: no such token)
gt gte lt lte   ``_sb_n_<h(k)> <op> v`` (±inf decided here); negated: has-not ``q.`` OR the
                opposite comparison
and / or / not  negation is pushed to the leaves (De Morgan), so the result has no NOT
==============  ====================================================================

Range comparisons run in the engines' float64, so integers beyond 2**53 compare rounded; equality
uses the exact tokens.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from storebridge.errors import FilterError
from storebridge.filters import And, Comparison, Filter, Not, Op, Or, is_number, validate_key

TOKENS_FIELD = "_sb_t"
NUMBER_FIELD_PREFIX = "_sb_n_"
#: On every document record; reserved records (catalogs, markers, overflow chunks) lack it.
DOC_TOKEN = "doc"


def digest(*parts: str) -> str:
    """96 bits of BLAKE2b over the parts joined by NUL, as 24 hex digits."""
    return hashlib.blake2b("\x00".join(parts).encode("utf-8"), digest_size=12).hexdigest()


def canonical_number(value: float) -> str:
    """Equal numbers (``1 == 1.0``, ``-0.0 == 0``) get equal text; unequal ones never do."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return repr(value)
        if value.is_integer():
            return str(int(value))
        return repr(value)
    return str(int(value))


def presence_token(key: str) -> str:
    return f"p.{digest(key)}"


def number_kind_token(key: str) -> str:
    return f"q.{digest(key)}"


def number_field(key: str) -> str:
    return f"{NUMBER_FIELD_PREFIX}{digest(key)}"


def equality_token(key: str, value: Any, *, element: bool = False) -> str:
    """The token of ``key == value`` (``element``: of a list element of ``key`` equal to ``value``)."""
    prefix = "l" if element else ""
    if isinstance(value, bool):
        return f"{prefix}b.{digest(key, '1' if value else '0')}"
    if is_number(value):
        return f"{prefix}n.{digest(key, canonical_number(value))}"
    if isinstance(value, str):
        return f"{prefix}s.{digest(key, value)}"
    raise FilterError(f"cannot compare {key!r} with {type(value).__name__} {value!r}")  # pragma: no cover


def _filterable(key: Any) -> bool:
    try:
        validate_key(key)
    except FilterError:
        return False
    return True


def index_fields(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a record carries for filtering: the token list (always with ``"doc"``) and the
    numeric copies. Nested values and None are not indexed (nested keys are not declared)."""
    tokens: dict[str, None] = {DOC_TOKEN: None}
    numbers: dict[str, Any] = {}
    for key, value in metadata.items():
        if value is None or not _filterable(key):
            continue
        tokens[presence_token(key)] = None
        if isinstance(value, (bool, str)) or is_number(value):
            tokens[equality_token(key, value)] = None
            if is_number(value):
                tokens[number_kind_token(key)] = None
                numbers[number_field(key)] = value
        elif isinstance(value, (list, tuple)):
            for item in value:
                if isinstance(item, (bool, str)) or is_number(item):
                    tokens[equality_token(key, item, element=True)] = None
    return {TOKENS_FIELD: list(tokens), **numbers}


# -- the filter algebra --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Const:
    value: bool


TRUE, FALSE = Const(True), Const(False)


@dataclass(frozen=True)
class Tokens:
    """The token list holds one of ``tokens`` (``negated``: holds none of them)."""

    tokens: tuple[str, ...]
    negated: bool = False


@dataclass(frozen=True)
class Range:
    """``field <op> value`` on a numeric copy (``op`` is one of gt, gte, lt, lte)."""

    field: str
    op: Op
    value: float


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Expr, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Expr, ...]


Expr = Const | Tokens | Range | AllOf | AnyOf

_OPPOSITE = {Op.GT: Op.LTE, Op.GTE: Op.LT, Op.LT: Op.GTE, Op.LTE: Op.GT}


def _range(key: str, op: Op, value: float) -> Expr:
    if isinstance(value, float) and math.isinf(value):
        # No stored number is infinite (JSON cannot hold one): decide here.
        upward = op in (Op.GT, Op.GTE)
        if (value > 0) == upward:
            return FALSE
        return Tokens((number_kind_token(key),))
    return Range(number_field(key), op, value)


def _tokens(tokens: Iterable[str], negated: bool) -> Expr:
    unique = tuple(dict.fromkeys(tokens))
    if not unique:
        return TRUE if negated else FALSE
    return Tokens(unique, negated)


def _comparison(node: Comparison, negate: bool) -> Expr:
    key, op, value = node.field, node.op, node.value
    if op is Op.EQ:
        return _tokens([equality_token(key, value)], negate)
    if op is Op.NE:
        return _tokens([equality_token(key, value)], not negate)
    if op is Op.IN:
        return _tokens([equality_token(key, v) for v in value], negate)
    if op is Op.NIN:
        return _tokens([equality_token(key, v) for v in value], not negate)
    if op is Op.EXISTS:
        return _tokens([presence_token(key)], negate == bool(value))
    if op is Op.CONTAINS:
        return _tokens([equality_token(key, value, element=True)], negate)
    if not negate:
        return _range(key, op, value)
    return any_of([Tokens((number_kind_token(key),), negated=True), _range(key, _OPPOSITE[op], value)])


def all_of(parts: Iterable[Expr]) -> Expr:
    """AND with constants folded, nested ANDs flattened and negated token sets merged."""
    flat: list[Expr] = []
    excluded: list[str] = []
    for part in parts:
        if part == FALSE:
            return FALSE
        if part == TRUE:
            continue
        children = part.parts if isinstance(part, AllOf) else (part,)
        for child in children:
            if isinstance(child, Tokens) and child.negated:
                excluded += child.tokens
            else:
                flat.append(child)
    if excluded:
        flat.insert(0, Tokens(tuple(dict.fromkeys(excluded)), negated=True))
    flat = list(dict.fromkeys(flat))
    if not flat:
        return TRUE
    return flat[0] if len(flat) == 1 else AllOf(tuple(flat))


def any_of(parts: Iterable[Expr]) -> Expr:
    """OR with constants folded, nested ORs flattened and positive token sets merged."""
    flat: list[Expr] = []
    wanted: list[str] = []
    for part in parts:
        if part == TRUE:
            return TRUE
        if part == FALSE:
            continue
        children = part.parts if isinstance(part, AnyOf) else (part,)
        for child in children:
            if isinstance(child, Tokens) and not child.negated:
                wanted += child.tokens
            else:
                flat.append(child)
    if wanted:
        flat.insert(0, Tokens(tuple(dict.fromkeys(wanted))))
    flat = list(dict.fromkeys(flat))
    if not flat:
        return FALSE
    return flat[0] if len(flat) == 1 else AnyOf(tuple(flat))


def compile_tree(node: Filter | None, negate: bool = False) -> Expr:
    """The filter tree as a NOT-free expression over tokens and numeric ranges (``TRUE`` for None)."""
    if node is None:
        return TRUE
    if isinstance(node, Comparison):
        return _comparison(node, negate)
    if isinstance(node, And):
        children = [compile_tree(c, negate) for c in node.children]
        return any_of(children) if negate else all_of(children)
    if isinstance(node, Or):
        children = [compile_tree(c, negate) for c in node.children]
        return all_of(children) if negate else any_of(children)
    if isinstance(node, Not):
        return compile_tree(node.child, not negate)
    raise FilterError(f"not a filter node: {node!r}")  # pragma: no cover


def has_range(expr: Expr) -> bool:
    if isinstance(expr, Range):
        return True
    if isinstance(expr, (AllOf, AnyOf)):
        return any(has_range(p) for p in expr.parts)
    return False


# -- document ids ----------------------------------------------------------------------------------------

#: Ids of records the adapters write for themselves start with this; no document id maps onto it.
RESERVED_ID_PREFIX = "~~"


def encode_id(document_id: str) -> str:
    """The engine id of a document: the id itself when it is printable ASCII not starting with ``~``,
    else ``~`` and the hex of its UTF-8 (engines take ASCII ids; hex never starts with ``~``)."""
    if document_id.isascii() and document_id.isprintable() and not document_id.startswith("~"):
        return document_id
    return "~" + document_id.encode("utf-8").hex()


def decode_id(engine_id: str) -> str:
    if engine_id.startswith("~"):
        return bytes.fromhex(engine_id[1:]).decode("utf-8")
    return engine_id


def is_reserved_id(engine_id: str) -> bool:
    return engine_id.startswith(RESERVED_ID_PREFIX)


__all__ = [
    "DOC_TOKEN",
    "FALSE",
    "NUMBER_FIELD_PREFIX",
    "RESERVED_ID_PREFIX",
    "TOKENS_FIELD",
    "TRUE",
    "AllOf",
    "AnyOf",
    "Const",
    "Expr",
    "Range",
    "Tokens",
    "all_of",
    "any_of",
    "canonical_number",
    "compile_tree",
    "decode_id",
    "digest",
    "encode_id",
    "equality_token",
    "has_range",
    "index_fields",
    "is_reserved_id",
    "number_field",
    "number_kind_token",
    "presence_token",
]
