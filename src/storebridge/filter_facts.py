"""The facts a filter can ask about a document, as engine-neutral tokens, and the negation-normal form of a
filter tree: the part of filter translation that does not depend on the engine.

Pure Python (no client, no numpy), shared by the knowledge adapters that index metadata for an engine's
own filters (Pinecone, Upstash Vector, Weaviate, Cassandra, Redis, MongoDB, Couchbase, SingleStore).

Facts. Under FILTERS.md a filter can only ask these things about a top-level metadata key ``k`` (one that
:func:`~storebridge.filters.validate_key` accepts; a value of None counts as missing):

===========================  ====================================================================
token                        the document holds it when
===========================  ====================================================================
``Token(PRESENT, k)``        ``k`` is present and not None (``$exists``)
``Token(EQUALS, k, v)``      ``k`` holds the scalar ``v`` (``$eq``, ``$ne``, ``$in``, ``$nin``)
``Token(ELEMENT, k, v)``     ``k`` holds a list with an element equal to ``v`` (``$contains``)
``Token(NUMBER, k)``         ``k`` holds a number (the complement of a range comparison)
===========================  ====================================================================

and, for ``$gt $gte $lt $lte``, the number itself. ``v`` is a :class:`Value`, a scalar as the filter
language compares it: numbers by value in canonical text (``1 == 1.0``, ``2**53 + 1 != 2.0**53``), a
bool apart from every number, a string exactly. So equal tokens are the same fact, and "the document
holds one of these tokens" has FILTERS.md's meaning on any engine that can test membership in a list of
strings: ``True`` never meets ``1``, a list never equals a scalar (it has element tokens, not equality
tokens), and a missing key holds no token, so ``ne``/``nin``/``exists: false`` (holds none of them)
match it. :func:`field_facts` lists a document's facts per key; each adapter spells tokens in its
engine's alphabet (hex, digests, tag codes), never pasting user text into a filter.

Negation-normal form. :func:`negation_normal_form` turns a parsed tree into an expression without NOT,
for engines whose negation is not the exact complement (Pinecone's ``$ne`` skips missing fields, Weaviate
before 1.33 has no NOT): a negated token test becomes "holds none of" (De Morgan below ``and``/``or``),
and ``not (x > v)`` becomes "holds no number, or ``x <= v``". Constants are folded (``$in: []`` is false)
and bounds no double holds (±inf, integers beyond ±1.8e308) decided by :func:`range_bound` (stored
numbers are finite doubles: ``> inf`` is false, ``< inf`` means "holds a number"). Engines with an exact
NOT (Redis ``-``, MQL ``$nor``, a Search ``must_not``) compile the tree as it is, with :func:`fold`. Both
agree with :func:`storebridge.filters.evaluate` on random trees built from the conformance filter cases
(``tests/unit/test_filter_facts.py``).
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, Union, cast

from .errors import FilterError
from .filters import And, Comparison, Filter, Not, Op, Or, Scalar, is_number, validate_key

L = TypeVar("L")
M = TypeVar("M")
T = TypeVar("T")

# -- keys and values ----------------------------------------------------------------------------------------


def filterable(key: Any) -> bool:
    """Whether a filter can name this top-level metadata key (others need no index: no filter reaches them)."""
    try:
        validate_key(key)
    except FilterError:
        return False
    return True


def is_scalar(value: Any) -> bool:
    """A value a filter can compare with: a string, a number or a bool."""
    return isinstance(value, (str, bool)) or is_number(value)


def canonical_number(value: float) -> str:
    """Equal numbers (``1 == 1.0``, ``-0.0 == 0``) get equal text, unequal ones never do: integral values as
    exact integers (so ``2**60 + 1`` stays apart from ``2.0**60``), other floats by ``repr``."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return repr(value)
        if value.is_integer():
            return str(int(value))
        return repr(value)
    return str(int(value))


def as_double(value: Any) -> float | None:
    """``value`` as the IEEE double engines compare numbers as, or None when no finite double holds it
    (an integer beyond ±1.8e308, an infinity, NaN)."""
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def range_bound(op: Op, value: float) -> float | bool:
    """The bound of ``x <op> value`` as a finite double, or the answer for every stored number when no
    double holds ``value`` (stored numbers are finite): True for ``< +inf`` or ``> -inf``, False for
    ``> +inf`` or ``< -inf``."""
    bound = as_double(value)
    if bound is not None:
        return bound
    return (op in (Op.LT, Op.LTE)) == (value > 0)


#: The range comparison that is true exactly where ``op`` is false, among numbers.
OPPOSITE = {Op.GT: Op.LTE, Op.GTE: Op.LT, Op.LT: Op.GTE, Op.LTE: Op.GT}

#: Kinds of a :class:`Value`, one letter each so that a spelling can use it as it is.
STRING, NUMBER, BOOL = "s", "n", "b"


@dataclass(frozen=True, slots=True)
class Value:
    """A scalar as the filter language compares it: ``kind`` is :data:`STRING`, :data:`NUMBER` or
    :data:`BOOL`; ``text`` the string itself, :func:`canonical_number`, or ``"1"``/``"0"``. ``1`` and
    ``1.0`` give equal values; ``True`` and ``1`` do not."""

    kind: str
    text: str

    @classmethod
    def of(cls, value: Scalar) -> Value:
        if isinstance(value, bool):
            return cls(BOOL, "1" if value else "0")
        if isinstance(value, str):
            return cls(STRING, value)
        if is_number(value):
            return cls(NUMBER, canonical_number(value))
        raise TypeError(f"not a scalar: {value!r}")


def hex_key(key: str, *, max_bytes: int = 64, digest_chars: int = 64) -> str:
    """A metadata key in ``[0-9a-f]`` for field names and tokens: the hex of its UTF-8 up to ``max_bytes``
    bytes, else ``h`` and the first ``digest_chars`` hex digits of its SHA-256."""
    raw = key.encode("utf-8")
    return raw.hex() if len(raw) <= max_bytes else "h" + hashlib.sha256(raw).hexdigest()[:digest_chars]


def hex_value(value: Scalar | Value) -> str:
    """A scalar in ASCII without spaces: ``t``/``f`` for bools, ``n`` + the canonical number, ``s`` + the hex
    of a string's UTF-8; a number text or string past 100 bytes is ``N``/``S`` + its SHA-256."""
    typed = value if isinstance(value, Value) else Value.of(value)
    if typed.kind == BOOL:
        return "t" if typed.text == "1" else "f"
    if typed.kind == NUMBER:
        text = typed.text
        return "n" + text if len(text) <= 100 else "N" + hashlib.sha256(text.encode("ascii")).hexdigest()
    raw = typed.text.encode("utf-8")
    return "s" + raw.hex() if len(raw) <= 100 else "S" + hashlib.sha256(raw).hexdigest()


# -- facts of a document --------------------------------------------------------------------------------------


class Fact(enum.Enum):
    """What a :class:`Token` says about its key (see the module docstring)."""

    PRESENT = "present"
    EQUALS = "equals"
    ELEMENT = "element"
    NUMBER = "number"


@dataclass(frozen=True, slots=True)
class Token:
    """One fact about one key; ``value`` for :attr:`Fact.EQUALS` and :attr:`Fact.ELEMENT` only."""

    fact: Fact
    key: str
    value: Value | None = None


@dataclass(frozen=True, slots=True)
class FieldFacts:
    """What a filter can ask about one present, filterable key of a document: the scalar it holds, or the
    scalar elements of the list it holds (in order, repeats kept); neither for an object or other value."""

    key: str
    scalar: Scalar | None = None
    elements: tuple[Scalar, ...] | None = None

    @property
    def number(self) -> int | float | None:
        """The value when it is a number (a bool is not), for range comparisons."""
        scalar = self.scalar
        if isinstance(scalar, bool) or not isinstance(scalar, (int, float)):
            return None
        return scalar

    def tokens(self) -> list[Token]:
        """The key's tokens, distinct: PRESENT, then EQUALS and NUMBER for a scalar, or an ELEMENT per
        distinct list element."""
        out = [Token(Fact.PRESENT, self.key)]
        if self.scalar is not None:
            out.append(Token(Fact.EQUALS, self.key, Value.of(self.scalar)))
            if self.number is not None:
                out.append(Token(Fact.NUMBER, self.key))
        if self.elements is not None:
            out += dict.fromkeys(Token(Fact.ELEMENT, self.key, Value.of(item)) for item in self.elements)
        return out


def field_facts(metadata: Mapping[str, Any]) -> Iterator[FieldFacts]:
    """The facts of a document's top-level metadata, key by key; keys holding None and keys no filter can
    name are left out (nested values are not indexed: nested keys are not declared)."""
    for key, value in metadata.items():
        if value is None or not filterable(key):
            continue
        if isinstance(value, (list, tuple)):
            yield FieldFacts(key, elements=tuple(item for item in value if is_scalar(item)))
        elif is_scalar(value):
            yield FieldFacts(key, scalar=value)
        else:
            yield FieldFacts(key)


def document_tokens(metadata: Mapping[str, Any]) -> list[Token]:
    """Every token a document holds."""
    return [token for facts in field_facts(metadata) for token in facts.tokens()]


# -- the negation-normal form ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Facts:
    """The document holds one of ``tokens`` (``negated``: none of them)."""

    tokens: tuple[Token, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Range:
    """``key`` holds a number and it is ``<op> value`` (op: gt, gte, lt, lte; ``value`` a finite double's
    worth, kept as the filter gave it)."""

    key: str
    op: Op
    value: int | float


@dataclass(frozen=True, slots=True)
class AllOf(Generic[L]):
    parts: tuple[Node[L], ...]


@dataclass(frozen=True, slots=True)
class AnyOf(Generic[L]):
    parts: tuple[Node[L], ...]


#: An and/or tree over leaves of type ``L``.
Node = Union[L, AllOf[L], AnyOf[L]]  # noqa: UP007 - a runtime alias on Python 3.10
#: The negation-normal form: True, False, or a tree over :class:`Facts` and :class:`Range`.
Expr = Union[Node[Union[Facts, Range]], bool]  # noqa: UP007


def comparison_facts(node: Comparison) -> Facts | None:
    """The tokens a comparison asks about and whether it wants their absence (``ne``, ``nin``,
    ``exists: false``); None for a range comparison. The tokens are distinct and may be none
    (``$in: []``: holds one of nothing, false)."""
    key, op, value = node.field, node.op, node.value
    if op is Op.EXISTS:
        return Facts((Token(Fact.PRESENT, key),), negated=not value)
    if op in (Op.EQ, Op.NE):
        tokens = [Token(Fact.EQUALS, key, Value.of(value))]
    elif op in (Op.IN, Op.NIN):
        tokens = [Token(Fact.EQUALS, key, Value.of(v)) for v in value]
    elif op is Op.CONTAINS:
        tokens = [Token(Fact.ELEMENT, key, Value.of(value))]
    else:
        return None
    return Facts(tuple(dict.fromkeys(tokens)), negated=op in (Op.NE, Op.NIN))


def _join(kind: type[AllOf[Any] | AnyOf[Any]], parts: Iterable[Any], merge: bool) -> Any:
    absorbing = kind is AnyOf  # True absorbs an OR, False an AND
    flat: list[Any] = []
    merged: list[Token] = []
    for part in parts:
        if part is absorbing:
            return absorbing
        if part is (not absorbing):
            continue
        for child in part.parts if isinstance(part, kind) else (part,):
            # an AND merges "holds none of" sets, an OR "holds one of" sets
            if merge and isinstance(child, Facts) and child.negated != absorbing:
                merged += child.tokens
            else:
                flat.append(child)
    if merged:
        flat.insert(0, Facts(tuple(dict.fromkeys(merged)), negated=not absorbing))
    if merge:
        flat = list(dict.fromkeys(flat))
    if not flat:
        return not absorbing
    return flat[0] if len(flat) == 1 else kind(tuple(flat))


def all_of(parts: Iterable[Node[L] | bool], *, merge: bool = False) -> Node[L] | bool:
    """AND with constants folded and nested ANDs flattened. ``merge`` (for :class:`Facts` leaves) also
    joins the "holds none of" sets into one and drops repeated parts."""
    return cast("Node[L] | bool", _join(AllOf, parts, merge))


def any_of(parts: Iterable[Node[L] | bool], *, merge: bool = False) -> Node[L] | bool:
    """OR with constants folded and nested ORs flattened. ``merge`` (for :class:`Facts` leaves) also joins
    the "holds one of" sets into one and drops repeated parts."""
    return cast("Node[L] | bool", _join(AnyOf, parts, merge))


def map_leaves(expr: Expr, leaf: Callable[[Facts | Range], Node[M] | bool]) -> Node[M] | bool:
    """The negation-normal form over an engine's own leaves (constants a leaf turns into are folded
    again, nested ANDs and ORs flattened)."""
    if isinstance(expr, bool):
        return expr
    if isinstance(expr, AllOf):
        return all_of(map_leaves(part, leaf) for part in expr.parts)
    if isinstance(expr, AnyOf):
        return any_of(map_leaves(part, leaf) for part in expr.parts)
    return leaf(expr)


def _facts(tokens: tuple[Token, ...], negated: bool) -> Expr:
    if not tokens:
        return negated  # holds one of nothing: false; none of nothing: true
    return Facts(tokens, negated)


def _range(key: str, op: Op, value: float) -> Expr:
    bound = range_bound(op, value)
    if isinstance(bound, bool):
        return Facts((Token(Fact.NUMBER, key),)) if bound else False
    return Range(key, op, value)


def negation_normal_form(tree: Filter | None, *, merge: bool = False) -> Expr:
    """The filter as an expression without NOT over :class:`Facts` and :class:`Range` (True for no filter);
    ``merge`` joins token sets where it can (see :func:`all_of`)."""
    if tree is None:
        return True

    def walk(node: Filter, negate: bool) -> Expr:
        if isinstance(node, Comparison):
            facts = comparison_facts(node)
            if facts is not None:
                return _facts(facts.tokens, facts.negated != negate)
            if not negate:
                return _range(node.field, node.op, node.value)
            # not (x > v): no number at all, or a number on the other side
            return any_of([Facts((Token(Fact.NUMBER, node.field),), negated=True),
                           _range(node.field, OPPOSITE[node.op], node.value)], merge=merge)
        if isinstance(node, Not):
            return walk(node.child, not negate)
        if isinstance(node, (And, Or)):
            parts = [walk(child, negate) for child in node.children]
            return all_of(parts, merge=merge) if isinstance(node, And) != negate else any_of(parts, merge=merge)
        raise FilterError(f"not a filter node: {node!r}")

    return walk(tree, False)


# -- engines with an exact NOT ----------------------------------------------------------------------------------


def fold(tree: Filter, leaf: Callable[[Comparison], T | bool], *, all_of: Callable[[list[T]], T],
         any_of: Callable[[list[T]], T], negate: Callable[[T], T]) -> T | bool:
    """Compile a tree bottom-up in the engine's own syntax, folding constants: ``leaf`` compiles a
    comparison (or answers True/False when the value alone decides); an AND with a false part is False, a
    true part is dropped, a single part stands alone, and ``all_of`` joins two or more (``any_of`` likewise);
    ``negate`` must be the engine's exact complement."""

    def walk(node: Filter) -> T | bool:
        if isinstance(node, Comparison):
            return leaf(node)
        if isinstance(node, Not):
            inner = walk(node.child)
            return (not inner) if isinstance(inner, bool) else negate(inner)
        if not isinstance(node, (And, Or)):
            raise FilterError(f"not a filter node: {node!r}")
        conjunction = isinstance(node, And)
        parts = [walk(child) for child in node.children]
        if any(part is (not conjunction) for part in parts):
            return not conjunction
        kept = [part for part in parts if not isinstance(part, bool)]
        if not kept:
            return conjunction
        if len(kept) == 1:
            return kept[0]
        return all_of(kept) if conjunction else any_of(kept)

    return walk(tree)


__all__ = [
    "BOOL",
    "NUMBER",
    "OPPOSITE",
    "STRING",
    "AllOf",
    "AnyOf",
    "Expr",
    "Fact",
    "Facts",
    "FieldFacts",
    "Node",
    "Range",
    "Token",
    "Value",
    "all_of",
    "any_of",
    "as_double",
    "canonical_number",
    "comparison_facts",
    "document_tokens",
    "field_facts",
    "filterable",
    "fold",
    "hex_key",
    "hex_value",
    "is_scalar",
    "map_leaves",
    "negation_normal_form",
    "range_bound",
]
