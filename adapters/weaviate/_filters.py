"""Weaviate translation layer: names, the object layout and the filter compiler, with no client import at
module load (``to_weaviate`` imports ``weaviate.classes.query`` when called), so unit tests pin the exact
output without a server.

Collection names. Weaviate class names must match ``[A-Z][_0-9A-Za-z]{0,254}``, and lookups capitalise
the first letter. A storebridge name (``[A-Za-z0-9_][A-Za-z0-9_-]{0,62}``) maps to
``<prefix>_<encoded>``, where the encoding keeps ``a-z`` and ``0-9``, writes an upper-case letter as
``_`` plus its lower-case form, ``_`` as ``__`` and ``-`` as ``_0``. The encoded part has no capitals,
so the mapping is reversible and stays injective even where an engine compares names case-insensitively.

Filter tokens. Every document carries ``sb_tokens``, a ``text[]`` property with ``field`` tokenization
(one token per element, never split, lower-cased or folded; Weaviate trims whitespace, which our
tokens never contain) holding one ASCII token per fact the filter language can ask about (the facts of
:mod:`storebridge.filter_facts`, spelled here):

* ``e:<k>:<v>``: top-level key ``k`` holds the scalar ``v`` (``eq``, ``ne``, ``in``, ``nin``);
* ``c:<k>:<v>``: key ``k`` holds a list with an element equal to ``v`` (``contains``);
* ``x:<k>``: key ``k`` is present and not None (``exists``);
* ``r:<k>``: key ``k`` holds a number (complements of range conditions).

``<k>`` is :func:`~storebridge.filter_facts.hex_key` (the hex of the UTF-8 key, ``h`` + SHA-256 beyond 64
bytes); ``<v>`` is :func:`~storebridge.filter_facts.hex_value` (``t``/``f`` for bools, ``n`` + a canonical
number: integral values as exact integers, so ``1 == 1.0`` and ``2**60 + 1 != 2**60``, other floats by
``repr``; ``s`` + the hex of a string, ``S`` + SHA-256 beyond 100 bytes). A bool is never a number and a
list never equals a scalar, because they get different tokens. Ranges use ``sb_n_<k>`` (``number``,
range-indexed), written for number values only.

Operators. The tree is put in the negation-normal form of :mod:`storebridge.filter_facts` (negations
pushed down to the leaves by De Morgan), so nothing needs Weaviate's ``Not`` (1.33+). ``eq`` is
``Equal`` on ``sb_tokens`` (on a ``text[]`` property: some element equals); ``in`` is ``ContainsAny``;
ranges are ``GreaterThan``/... on ``sb_n_<k>``. A negated token condition is ``NotEqual``, which since
Weaviate 1.24 is the exact complement of ``Equal`` over all objects (objects without the token match, as
FILTERS.md wants for ``ne``/``nin``/``exists: false``); a negated range is ``NotEqual r:<k>`` OR the
opposite range. ``in []`` is false and decided before Weaviate is asked; bounds no double holds
(infinities) are folded. The client needs Weaviate 1.27+, so every server it talks to has the
1.24 ``NotEqual``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Union

from storebridge.errors import ConfigurationError, OperationFailedError, StorebridgeError, ValidationError
from storebridge.filter_facts import (
    AllOf,
    AnyOf,
    Fact,
    Facts,
    Node,
    Range,
    Token,
    Value,
    all_of,
    as_double,
    field_facts,
    hex_key,
    hex_value,
    map_leaves,
    negation_normal_form,
)
from storebridge.filters import Filter, Op, Scalar
from storebridge.identifiers import validate_collection_name
from storebridge.models import CollectionInfo, Distance

# -- names ----------------------------------------------------------------------------------------------

ID, UID, CONTENT, SOURCE, META, VEC, TOKENS = "sb_id", "sb_uid", "sb_content", "sb_source", "sb_meta", "sb_vec", \
    "sb_tokens"
#: The properties a read returns (``sb_tokens`` and the number copies stay on the server).
RETURNED = [ID, CONTENT, SOURCE, META, VEC]
#: The named vector every collection has.
VECTOR_NAME = "default"
NUMBER_PREFIX = "sb_n_"
DEFAULT_PREFIX = "Storebridge"
_PREFIX_RE = re.compile(r"^[A-Z][A-Za-z0-9]{0,40}$")
#: A token no document carries: ``NotEqual`` on it matches every object.
NO_TOKEN = "-"
#: Marks a description this store wrote.
MARKER = "storebridge.knowledge"
LAYOUT = 1
_DISTANCES = {Distance.COSINE: "cosine", Distance.L2: "l2-squared", Distance.DOT: "dot"}


def check_prefix(prefix: Any) -> str:
    """A class-name prefix: an upper-case letter, then up to 40 letters or digits (no ``_``, which
    separates it from the encoded name)."""
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise ConfigurationError(f"invalid Weaviate collection prefix {prefix!r}: use an upper-case letter followed "
                                 "by up to 40 letters or digits")
    return prefix


def encode_name(name: str) -> str:
    """The encoded part of a class name (see the module docstring); ``name`` is already validated."""
    out = []
    for ch in name:
        if "a" <= ch <= "z" or "0" <= ch <= "9":
            out.append(ch)
        elif "A" <= ch <= "Z":
            out.append("_" + ch.lower())
        elif ch == "_":
            out.append("__")
        elif ch == "-":
            out.append("_0")
        else:  # pragma: no cover - validate_collection_name refuses everything else
            raise ConfigurationError(f"cannot map collection name {name!r} to Weaviate")
    return "".join(out)


def decode_name(encoded: str) -> str | None:
    """The storebridge name for an encoded part, or None if it is not one this encoding makes."""
    out, i = [], 0
    while i < len(encoded):
        ch = encoded[i]
        if "a" <= ch <= "z" or "0" <= ch <= "9":
            out.append(ch)
            i += 1
            continue
        if ch != "_" or i + 1 >= len(encoded):
            return None
        nxt = encoded[i + 1]
        if "a" <= nxt <= "z":
            out.append(nxt.upper())
        elif nxt == "_":
            out.append("_")
        elif nxt == "0":
            out.append("-")
        else:
            return None
        i += 2
    name = "".join(out)
    try:
        return validate_collection_name(name)
    except StorebridgeError:
        return None


def class_name(prefix: str, name: str) -> str:
    return f"{prefix}_{encode_name(name)}"


def name_from_class(prefix: str, cls: str) -> str | None:
    """The collection name of a class this prefix owns, else None."""
    head = prefix + "_"
    if not cls.startswith(head):
        return None
    return decode_name(cls[len(head):])


def description(info: CollectionInfo) -> str:
    """The class description: the original name, dimension and distance, as JSON."""
    return json.dumps({MARKER: LAYOUT, "name": info.name, "dimension": info.dimension,
                       "distance": info.distance.value}, ensure_ascii=True, separators=(",", ":"))


def info_from_description(cls: str, text: str | None, expected_name: str) -> CollectionInfo:
    """Read back :func:`description`; a class this store did not make is an error, not a guess."""
    try:
        data = json.loads(text or "")
        if data.get(MARKER) != LAYOUT or data.get("name") != expected_name:
            raise ValueError("not a storebridge description")
        dimension = data["dimension"]
        if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
            raise ValueError("bad dimension")
        return CollectionInfo(expected_name, dimension, Distance.parse(data["distance"]))
    except (ValueError, TypeError, KeyError, AttributeError, StorebridgeError):
        raise OperationFailedError(
            f"the Weaviate collection {cls!r} was not made by storebridge (its description is not the one this store "
            "writes); use another collection name or prefix") from None


def weaviate_distance(distance: Distance) -> str:
    """Weaviate's metric name (``l2-squared`` gives squared distances; scores are re-computed anyway)."""
    return _DISTANCES[distance]


# -- tokens ---------------------------------------------------------------------------------------------

def token_text(token: Token) -> str:
    """The spelling of a fact in ``sb_tokens`` (see the module docstring)."""
    key = hex_key(token.key)
    if token.fact is Fact.PRESENT:
        return f"x:{key}"
    if token.fact is Fact.NUMBER:
        return f"r:{key}"
    assert token.value is not None
    return f"{'c' if token.fact is Fact.ELEMENT else 'e'}:{key}:{hex_value(token.value)}"


def eq_token(key: str, value: Scalar) -> str:
    return token_text(Token(Fact.EQUALS, key, Value.of(value)))


def number_property(key: str) -> str:
    """The ``number`` property holding ``key``'s numeric value (at most 5 + 128 characters)."""
    return NUMBER_PREFIX + hex_key(key)


def indexed(metadata: Mapping[str, Any]) -> tuple[list[str], dict[str, float]]:
    """The tokens and number properties of one document's metadata.

    A number beyond float64's range cannot go into a ``number`` property: refused, since a range filter
    would otherwise silently miss it."""
    tokens: set[str] = set()
    numbers: dict[str, float] = {}
    for facts in field_facts(metadata):
        tokens.update(token_text(token) for token in facts.tokens())
        if facts.number is not None:
            number = as_double(facts.number)
            if number is None:
                raise ValidationError(f"metadata key {facts.key!r} holds {facts.number!r}, beyond float64's range, "
                                      "which Weaviate's number index cannot hold; store it as a string")
            numbers[number_property(facts.key)] = number
    return sorted(tokens), numbers


# -- the filter compiler ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cond:
    """One Weaviate condition: ``prop`` ``op`` ``value`` (op: equal, not_equal, contains_any, greater_than,
    greater_or_equal, less_than, less_or_equal)."""

    prop: str
    op: str
    value: Any


#: A compiled filter: True (every object), False (none), or an and/or tree of conditions.
Compiled = Union[Node[Cond], bool]  # noqa: UP007 - a runtime alias on Python 3.10

_RANGE = {Op.GT: "greater_than", Op.GTE: "greater_or_equal", Op.LT: "less_than", Op.LTE: "less_or_equal"}


def _conditions(leaf: Facts | Range, numbers: AbstractSet[str]) -> Compiled:
    """The Weaviate conditions of one leaf of the negation-normal form."""
    if isinstance(leaf, Range):
        prop = number_property(leaf.key)
        if prop not in numbers:  # no document ever held a number under this key (Weaviate would reject it)
            return False
        return Cond(prop, _RANGE[leaf.op], float(leaf.value))
    tokens = [token_text(token) for token in leaf.tokens]
    if leaf.negated:
        return all_of(Cond(TOKENS, "not_equal", token) for token in tokens)
    if len(tokens) > 1:
        return Cond(TOKENS, "contains_any", tokens)
    return Cond(TOKENS, "equal", tokens[0])


def compile_filter(tree: Filter | None, number_properties: Iterable[str]) -> Compiled:
    """The filter as Weaviate conditions; ``True`` (no filter) or ``False`` (matches nothing) when
    decided here. ``number_properties`` are the collection's ``sb_n_*`` properties: a range on a key
    with none matches nothing (Weaviate would reject the unknown property)."""
    numbers = frozenset(number_properties)

    def conditions(leaf: Facts | Range) -> Compiled:
        return _conditions(leaf, numbers)

    return map_leaves(negation_normal_form(tree), conditions)


def with_ids(compiled: Compiled, uuids: Sequence[str]) -> Compiled:
    """``compiled`` restricted to these object ids (``Filter.by_id()``, written ``Cond("_id", ...)``)."""
    return all_of([Cond("_id", "contains_any", list(uuids)), compiled])


def after_uid(compiled: Compiled, cursor: str | None) -> Compiled:
    """``compiled`` restricted to objects whose ``sb_uid`` sorts after ``cursor`` (filtered scrolls)."""
    if cursor is None:
        return compiled
    return all_of([compiled, Cond(UID, "greater_than", cursor)])


def to_weaviate(compiled: Compiled) -> Any:
    """The client's ``Filter`` object for a compiled condition (``True`` becomes "every object")."""
    from weaviate.classes.query import Filter as W

    if compiled is True:
        return W.by_property(TOKENS).not_equal(NO_TOKEN)
    if compiled is False:
        raise ValueError("a false filter is decided without asking Weaviate")
    if isinstance(compiled, AllOf):
        return W.all_of([to_weaviate(c) for c in compiled.parts])
    if isinstance(compiled, AnyOf):
        return W.any_of([to_weaviate(c) for c in compiled.parts])
    target = W.by_id() if compiled.prop == "_id" else W.by_property(compiled.prop)
    return getattr(target, compiled.op)(compiled.value)


__all__ = [
    "AllOf",
    "AnyOf",
    "Compiled",
    "Cond",
    "after_uid",
    "check_prefix",
    "class_name",
    "compile_filter",
    "decode_name",
    "encode_name",
    "indexed",
    "name_from_class",
    "number_property",
    "to_weaviate",
    "with_ids",
]
