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
tokens never contain) holding one ASCII token per fact the filter language can ask about:

* ``e:<k>:<v>``: top-level key ``k`` holds the scalar ``v`` (``eq``, ``ne``, ``in``, ``nin``);
* ``c:<k>:<v>``: key ``k`` holds a list with an element equal to ``v`` (``contains``);
* ``x:<k>``: key ``k`` is present and not None (``exists``);
* ``r:<k>``: key ``k`` holds a number (complements of range conditions).

``<k>`` is the hex of the UTF-8 key (``h`` + SHA-256 for keys whose hex passes 128 characters); ``<v>``
is ``t``/``f`` for bools, ``n`` + a canonical number (integral values as exact integers, so ``1 == 1.0``
and ``2**60 + 1 != 2**60``; other floats by ``repr``), ``s`` + the hex of a string (``S`` + SHA-256
beyond 100 bytes). A bool is never a number and a list never equals a scalar, because they get
different tokens. Ranges use ``sb_n_<k>`` (``number``, range-indexed), written for number values only.

Operators. ``eq`` is ``Equal`` on ``sb_tokens`` (on a ``text[]`` property: some element equals);
``in`` is ``ContainsAny``; ranges are ``GreaterThan``/... on ``sb_n_<k>``. Negations are pushed down to
the leaves (De Morgan), so nothing needs Weaviate's ``Not`` (1.33+): a negated token condition is
``NotEqual``, which since Weaviate 1.24 is the exact complement of ``Equal`` over all objects (objects
without the token match, as FILTERS.md wants for ``ne``/``nin``/``exists: false``); a negated range is
``NotEqual r:<k>`` OR the opposite range. ``in []`` is false and decided before Weaviate is asked;
infinite range bounds are folded. The client needs Weaviate 1.27+, so every server it talks to has the
1.24 ``NotEqual``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Union

from storebridge.errors import ConfigurationError, OperationFailedError, StorebridgeError, ValidationError
from storebridge.filters import And, Comparison, Filter, Not, Op, is_number, validate_key
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

def key_part(key: str) -> str:
    """The key as ASCII: hex of its UTF-8, or ``h`` + SHA-256 when the hex passes 128 characters."""
    raw = key.encode("utf-8")
    text = raw.hex()
    return text if len(text) <= 128 else "h" + hashlib.sha256(raw).hexdigest()


def number_text(value: float) -> str:
    """A canonical text for a number, equal texts exactly for equal values (Python's ``==``)."""
    if isinstance(value, float):
        if math.isnan(value):  # NaN equals nothing
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        if value.is_integer():
            return str(int(value))
        return repr(value)
    return str(int(value))


def value_part(value: Any) -> str:
    """The typed scalar as ASCII (see the module docstring)."""
    if isinstance(value, bool):
        return "t" if value else "f"
    if is_number(value):
        text = number_text(value)
        return "n" + text if len(text) <= 100 else "N" + hashlib.sha256(text.encode("ascii")).hexdigest()
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return "s" + raw.hex() if len(raw) <= 100 else "S" + hashlib.sha256(raw).hexdigest()
    raise TypeError(f"not a scalar: {value!r}")


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, bool)) or is_number(value)


def eq_token(key: str, value: Any) -> str:
    return f"e:{key_part(key)}:{value_part(value)}"


def contains_token(key: str, value: Any) -> str:
    return f"c:{key_part(key)}:{value_part(value)}"


def exists_token(key: str) -> str:
    return f"x:{key_part(key)}"


def number_token(key: str) -> str:
    return f"r:{key_part(key)}"


def number_property(key: str) -> str:
    """The ``number`` property holding ``key``'s numeric value (at most 5 + 128 characters)."""
    return NUMBER_PREFIX + key_part(key)


def filterable(key: Any) -> bool:
    """Whether a metadata key can appear in a filter (others need no tokens)."""
    try:
        validate_key(key)
    except StorebridgeError:
        return False
    return True


def indexed(metadata: Mapping[str, Any]) -> tuple[list[str], dict[str, float]]:
    """The tokens and number properties of one document's metadata.

    A number beyond float64's range cannot go into a ``number`` property: refused, since a range filter
    would otherwise silently miss it."""
    tokens: set[str] = set()
    numbers: dict[str, float] = {}
    for key, value in metadata.items():
        if value is None or not isinstance(key, str) or not filterable(key):
            continue
        tokens.add(exists_token(key))
        if isinstance(value, list):
            tokens.update(contains_token(key, item) for item in value if _scalar(item))
        elif _scalar(value):
            tokens.add(eq_token(key, value))
            if is_number(value):
                try:
                    numbers[number_property(key)] = float(value)
                except OverflowError:
                    raise ValidationError(f"metadata key {key!r} holds {value!r}, beyond float64's range, which "
                                     "Weaviate's number index cannot hold; store it as a string") from None
                tokens.add(number_token(key))
    return sorted(tokens), numbers


# -- the filter compiler ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cond:
    """One Weaviate condition: ``prop`` ``op`` ``value`` (op: equal, not_equal, contains_any, greater_than,
    greater_or_equal, less_than, less_or_equal)."""

    prop: str
    op: str
    value: Any


@dataclass(frozen=True)
class AllOf:
    children: tuple[Compiled, ...]


@dataclass(frozen=True)
class AnyOf:
    children: tuple[Compiled, ...]


Compiled = Union[Cond, AllOf, AnyOf, bool]  # noqa: UP007 - a runtime alias on Python 3.10

_RANGE = {Op.GT: "greater_than", Op.GTE: "greater_or_equal", Op.LT: "less_than", Op.LTE: "less_or_equal"}
#: The range that is true exactly where ``op`` is false, among numbers.
_OPPOSITE = {Op.GT: Op.LTE, Op.GTE: Op.LT, Op.LT: Op.GTE, Op.LTE: Op.GT}


def _all(parts: Iterable[Compiled]) -> Compiled:
    kept: list[Compiled] = []
    for part in parts:
        if part is False:
            return False
        if part is True:
            continue
        kept.extend(part.children if isinstance(part, AllOf) else (part,))
    if not kept:
        return True
    return kept[0] if len(kept) == 1 else AllOf(tuple(kept))


def _any(parts: Iterable[Compiled]) -> Compiled:
    kept: list[Compiled] = []
    for part in parts:
        if part is True:
            return True
        if part is False:
            continue
        kept.extend(part.children if isinstance(part, AnyOf) else (part,))
    if not kept:
        return False
    return kept[0] if len(kept) == 1 else AnyOf(tuple(kept))


def _token(token: str, negate: bool) -> Cond:
    return Cond(TOKENS, "not_equal" if negate else "equal", token)


def _in(key: str, values: Sequence[Any], negate: bool) -> Compiled:
    tokens = list(dict.fromkeys(eq_token(key, v) for v in values))
    if negate:
        return _all(_token(t, True) for t in tokens)
    if len(tokens) > 1:
        return Cond(TOKENS, "contains_any", tokens)
    return _any(_token(t, False) for t in tokens)


def _range(key: str, op: Op, value: float, negate: bool, numbers: AbstractSet[str]) -> Compiled:
    if negate:  # not (x op v): no number at all, or a number on the other side
        return _any([_token(number_token(key), True), _range(key, _OPPOSITE[op], value, False, numbers)])
    try:
        bound = float(value)
    except OverflowError:
        bound = float("inf") if value > 0 else float("-inf")
    if bound in (float("inf"), float("-inf")):  # stored numbers are finite: every number, or none
        every_number = (bound < 0) == (op in (Op.GT, Op.GTE))
        return _token(number_token(key), False) if every_number else False
    prop = number_property(key)
    if prop not in numbers:  # no document ever held a number under this key
        return False
    return Cond(prop, _RANGE[op], bound)


def _compile(node: Filter, negate: bool, numbers: AbstractSet[str]) -> Compiled:
    if isinstance(node, Comparison):
        key, op, value = node.field, node.op, node.value
        if op in (Op.EQ, Op.NE):
            return _token(eq_token(key, value), negate != (op is Op.NE))
        if op in (Op.IN, Op.NIN):
            return _in(key, value, negate != (op is Op.NIN))
        if op is Op.EXISTS:
            return _token(exists_token(key), negate == bool(value))
        if op is Op.CONTAINS:
            return _token(contains_token(key, value), negate)
        return _range(key, op, value, negate, numbers)
    if isinstance(node, Not):
        return _compile(node.child, not negate, numbers)
    parts = (_compile(child, negate, numbers) for child in node.children)
    conjunction = isinstance(node, And) != negate  # De Morgan
    return _all(parts) if conjunction else _any(parts)


def compile_filter(tree: Filter | None, number_properties: Iterable[str]) -> Compiled:
    """The filter as Weaviate conditions; ``True`` (no filter) or ``False`` (matches nothing) when
    decided here. ``number_properties`` are the collection's ``sb_n_*`` properties: a range on a key
    with none matches nothing (Weaviate would reject the unknown property)."""
    if tree is None:
        return True
    return _compile(tree, False, frozenset(number_properties))


def with_ids(compiled: Compiled, uuids: Sequence[str]) -> Compiled:
    """``compiled`` restricted to these object ids (``Filter.by_id()``, written ``Cond("_id", ...)``)."""
    return _all([Cond("_id", "contains_any", list(uuids)), compiled])


def after_uid(compiled: Compiled, cursor: str | None) -> Compiled:
    """``compiled`` restricted to objects whose ``sb_uid`` sorts after ``cursor`` (filtered scrolls)."""
    if cursor is None:
        return compiled
    return _all([compiled, Cond(UID, "greater_than", cursor)])


def to_weaviate(compiled: Compiled) -> Any:
    """The client's ``Filter`` object for a compiled condition (``True`` becomes "every object")."""
    from weaviate.classes.query import Filter as W

    if compiled is True:
        return W.by_property(TOKENS).not_equal(NO_TOKEN)
    if compiled is False:
        raise ValueError("a false filter is decided without asking Weaviate")
    if isinstance(compiled, AllOf):
        return W.all_of([to_weaviate(c) for c in compiled.children])
    if isinstance(compiled, AnyOf):
        return W.any_of([to_weaviate(c) for c in compiled.children])
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
