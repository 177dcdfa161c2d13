"""Cassandra translation layer: identifiers, the row layout, every CQL statement the store sends, and the
filter compiler. Pure: no driver import, so unit tests pin the exact CQL without a server.

Identifiers. Keyspace, table, column and index names are checked against ``[A-Za-z0-9_]`` (with
Cassandra's 48-character limit where it applies) and always double-quoted; values are always bound
(``?`` markers of prepared statements), never written into the text.

Layout. A catalog table ``<prefix>collections`` maps a collection name to its data table, dimension,
distance and range fields. A data table is ``<prefix><16 hex of the name's BLAKE2b>_<8 random hex>``
(at most 41 characters, so any valid collection name fits Cassandra's 48; a fresh suffix per creation, so a
re-created collection never sees rows of a dropped one) with the columns ``id`` (text, the partition key),
``content``, ``source`` (null for None), ``meta`` (the metadata as JSON text), ``raw`` (the original
float32 vector, little-endian), ``v`` (``vector<float, n>``: the vector, or for cosine its unit vector
computed in float64), ``eq`` (``map<text, text>``: one entry per top-level scalar field), ``tok``
(``set<text>``: one token per scalar list element) and one ``double`` column ``r_<key>`` per declared
range field. SAI indexes: ``v`` (with the collection's ``similarity_function``), ``ENTRIES(eq)``,
``tok`` (values) and each ``r_<key>``.

Encoding (the facts of :mod:`storebridge.filter_facts`, spelled with its ``hex_key`` and ``hex_value``,
as the Weaviate backend's tokens are): a key is the hex of its UTF-8 (``h`` + SHA-256 beyond 64 bytes); a
scalar is ``t``/``f`` for bools, ``n`` + a canonical number (integral values as exact integers, so
``1 == 1.0`` but ``True != 1``), ``s`` + the hex of a string (``S`` + SHA-256 beyond 100 bytes). ``eq``
maps the encoded key to the encoded value; ``tok`` holds ``<key>:<value>`` per list element. Everything is
ASCII without spaces, so SAI's default (case-sensitive, unnormalised) matching is exact equality; a bool
never equals a number and a list never equals a scalar, because they encode differently.

Operators, for Cassandra 5.0's SAI, which evaluates ``=``, ``<``, ``<=``, ``>``, ``>=``, ``CONTAINS``,
``CONTAINS KEY`` and map-entry ``=`` joined by ``AND`` (no ``OR``, no ``NOT``/``!=``, ``IN`` only as a
post-filter with ``ALLOW FILTERING``, range queries on map entries only in later versions):

* ``eq`` -> ``"eq"[?] = ?``; two different values for one key match nothing (decided here);
* ``contains`` -> ``"tok" CONTAINS ?``;
* ``gt``/``gte``/``lt``/``lte`` -> ``"r_<k>" > ?`` ... on a declared range field (a ``double`` column: a
  document whose value is not a number has null there and never matches); bounds on one column are
  merged to the tightest pair, since CQL takes one restriction per bound;
* ``and`` -> ``AND``.

``ne``, ``nin``, ``in``, ``exists`` (``exists: false`` needs negation), ``or`` and ``not`` cannot be
expressed exactly, so they are not declared and raise ``UnsupportedFilterError``; a range on a key that is
not a range field of the collection raises it too, naming the option.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from storebridge.errors import ConfigurationError, FilterError, UnsupportedFilterError, ValidationError
from storebridge.filter_facts import as_double, field_facts, hex_key, hex_value
from storebridge.filters import And, Comparison, Filter, Op, Scalar, is_number, validate_key
from storebridge.models import Distance

# -- identifiers ------------------------------------------------------------------------------------------

_IDENT_RE = re.compile(r"^[A-Za-z0-9_]+$")
_KEYSPACE_RE = re.compile(r"^[A-Za-z0-9_]{1,48}$")
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9_]{0,15}$")
DEFAULT_PREFIX = "sbk_"
LAYOUT = 1
#: Cassandra 5.0's largest LIMIT for an ``ANN OF`` query (``SAI_VECTOR_SEARCH_MAX_TOP_K``).
ANN_MAX_LIMIT = 1000
SIMILARITY = {Distance.COSINE: "COSINE", Distance.L2: "EUCLIDEAN", Distance.DOT: "DOT_PRODUCT"}
#: Columns every read returns, in this order.
READ_COLUMNS = ("id", "content", "source", "meta", "raw")


def quote(identifier: str) -> str:
    """A checked identifier, double-quoted (the check leaves no character that could end the quotes)."""
    if not isinstance(identifier, str) or not _IDENT_RE.fullmatch(identifier):
        raise ConfigurationError(f"invalid CQL identifier {identifier!r}: use letters, digits and '_'")
    return f'"{identifier}"'


def check_keyspace(name: Any) -> str:
    if not isinstance(name, str) or not _KEYSPACE_RE.fullmatch(name):
        raise ConfigurationError(f"invalid Cassandra keyspace {name!r}: 1-48 letters, digits or '_' (give it as the "
                                 "URL path, cassandra://host:9042/keyspace, or keyspace=)")
    return name


def check_prefix(prefix: Any) -> str:
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise ConfigurationError(f"invalid table prefix {prefix!r}: a lower-case letter, then up to 15 lower-case "
                                 "letters, digits or '_'")
    return prefix


def catalog_table(prefix: str) -> str:
    return f"{prefix}collections"


def new_table_name(prefix: str, name: str) -> str:
    """A fresh data table for collection ``name`` (see the module docstring)."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).hexdigest()
    return f"{prefix}{digest}_{secrets.token_hex(4)}"


def table_of(keyspace: str, table: str) -> str:
    return f"{quote(keyspace)}.{quote(table)}"


# -- tokens ----------------------------------------------------------------------------------------------

def contains_token(key: str, value: Scalar) -> str:
    return f"{hex_key(key)}:{hex_value(value)}"


def range_column(key: str) -> str:
    return "r_" + hex_key(key)


def indexed(metadata: Mapping[str, Any]) -> tuple[dict[str, str], set[str]]:
    """One document's ``eq`` map and ``tok`` set."""
    equal: dict[str, str] = {}
    contains: set[str] = set()
    for facts in field_facts(metadata):
        if facts.elements is not None:
            contains.update(contains_token(facts.key, item) for item in facts.elements)
        elif facts.scalar is not None:
            equal[hex_key(facts.key)] = hex_value(facts.scalar)
    return equal, contains


def range_values(metadata: Mapping[str, Any], range_fields: Sequence[str]) -> list[float | None]:
    """The ``r_<key>`` column values: the number, or None (a bool, a string, a missing key)."""
    values: list[float | None] = []
    for key in range_fields:
        value = metadata.get(key)
        if not is_number(value):
            values.append(None)
            continue
        number = as_double(value)
        if number is None:
            raise ValidationError(f"metadata key {key!r} holds {value!r}, beyond float64's range, which the "
                                  "range column cannot hold; store it as a string")
        values.append(number)
    return values


def check_range_fields(fields: Iterable[Any]) -> tuple[str, ...]:
    """Range fields: valid filter keys, each once, in the given order."""
    if isinstance(fields, str):
        fields = [f for f in fields.split(",") if f]
    out: list[str] = []
    for key in fields:
        try:
            validate_key(key)
        except FilterError:
            raise ConfigurationError(f"invalid range field {key!r}: use a top-level metadata key") from None
        if key in out:
            raise ConfigurationError(f"range field {key!r} is given twice")
        out.append(key)
    return tuple(out)


# -- statements -------------------------------------------------------------------------------------------

def create_catalog(keyspace: str, prefix: str) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {table_of(keyspace, catalog_table(prefix))} ("
            '"name" text PRIMARY KEY, "table_name" text, "dimension" int, "distance" text, '
            '"range_fields" list<text>, "layout" int)')


def select_collection(keyspace: str, prefix: str) -> str:
    return (f'SELECT "table_name", "dimension", "distance", "range_fields", "layout" '
            f'FROM {table_of(keyspace, catalog_table(prefix))} WHERE "name" = ?')


def list_collections(keyspace: str, prefix: str) -> str:
    return f'SELECT "name" FROM {table_of(keyspace, catalog_table(prefix))}'


def claim_collection(keyspace: str, prefix: str) -> str:
    """A lightweight transaction: the name goes to whoever inserts it first."""
    return (f'INSERT INTO {table_of(keyspace, catalog_table(prefix))} ("name", "table_name", "dimension", '
            '"distance", "range_fields", "layout") VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS')


def release_collection(keyspace: str, prefix: str) -> str:
    return f'DELETE FROM {table_of(keyspace, catalog_table(prefix))} WHERE "name" = ?'


def create_table(keyspace: str, table: str, dimension: int, range_fields: Sequence[str]) -> str:
    if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
        raise ValidationError(f"dimension must be a positive integer, got {dimension!r}")
    ranges = "".join(f", {quote(range_column(k))} double" for k in range_fields)
    return (f"CREATE TABLE IF NOT EXISTS {table_of(keyspace, table)} ("
            '"id" text PRIMARY KEY, "content" text, "source" text, "meta" text, "raw" blob, '
            f'"eq" map<text, text>, "tok" set<text>, "v" vector<float, {dimension}>{ranges})')


def index_names(table: str, range_fields: Sequence[str]) -> list[str]:
    """Short explicit index names (``<table>_iv``, ``_ie``, ``_it``, ``_r<n>``), within 48 characters."""
    return [f"{table}_iv", f"{table}_ie", f"{table}_it"] + [f"{table}_r{i}" for i in range(len(range_fields))]


def create_indexes(keyspace: str, table: str, distance: Distance, range_fields: Sequence[str]) -> list[str]:
    names = index_names(table, range_fields)
    target = table_of(keyspace, table)
    statements = [
        (f"CREATE CUSTOM INDEX IF NOT EXISTS {quote(names[0])} ON {target} (\"v\") USING 'StorageAttachedIndex' "
         f"WITH OPTIONS = {{'similarity_function': '{SIMILARITY[distance]}'}}"),
        (f"CREATE CUSTOM INDEX IF NOT EXISTS {quote(names[1])} ON {target} (ENTRIES(\"eq\")) "
         "USING 'StorageAttachedIndex'"),
        f"CREATE CUSTOM INDEX IF NOT EXISTS {quote(names[2])} ON {target} (\"tok\") USING 'StorageAttachedIndex'",
    ]
    statements += [f"CREATE CUSTOM INDEX IF NOT EXISTS {quote(index)} ON {target} ({quote(range_column(key))}) "
                   "USING 'StorageAttachedIndex'" for index, key in zip(names[3:], range_fields)]
    return statements


def index_status(keyspace: str) -> str:
    """Cassandra 5.0's view of SAI indexes on the coordinator (``is_queryable`` per index)."""
    return 'SELECT "index_name", "is_queryable" FROM "system_views"."sai_column_indexes" WHERE "keyspace_name" = ?'


def drop_table(keyspace: str, table: str) -> str:
    return f"DROP TABLE IF EXISTS {table_of(keyspace, table)}"


def insert_row(keyspace: str, table: str, range_fields: Sequence[str]) -> str:
    """Insert-or-replace one row: every column is bound, so an upsert leaves nothing of the old row."""
    columns = ["id", "content", "source", "meta", "raw", "eq", "tok", "v"] + [range_column(k) for k in range_fields]
    return (f"INSERT INTO {table_of(keyspace, table)} ({', '.join(quote(c) for c in columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})")


def select_ids(keyspace: str, table: str) -> str:
    return f'SELECT "id" FROM {table_of(keyspace, table)} WHERE "id" = ?'


def select_rows(keyspace: str, table: str) -> str:
    return f"SELECT {_read_columns()} FROM {table_of(keyspace, table)} WHERE \"id\" = ?"


def delete_row(keyspace: str, table: str) -> str:
    return f'DELETE FROM {table_of(keyspace, table)} WHERE "id" = ?'


def _read_columns() -> str:
    return ", ".join(quote(c) for c in READ_COLUMNS)


@dataclass(frozen=True)
class Where:
    """A compiled filter: CQL conditions (joined by ``AND``) and their bound values, in order; ``never``
    when it is known to match nothing (then no statement is sent)."""

    conditions: tuple[str, ...] = ()
    values: tuple[Any, ...] = ()
    never: bool = False

    @property
    def text(self) -> str:
        return " AND ".join(self.conditions)


def _where_clause(where: Where, extra: Sequence[str] = ()) -> str:
    parts = list(extra) + list(where.conditions)
    return (" WHERE " + " AND ".join(parts)) if parts else ""


def search(keyspace: str, table: str, where: Where) -> str:
    """ANN search: SAI conditions (AND only) and ``ORDER BY v ANN OF ? LIMIT ?``."""
    return (f"SELECT {_read_columns()} FROM {table_of(keyspace, table)}{_where_clause(where)} "
            'ORDER BY "v" ANN OF ? LIMIT ?')


def count(keyspace: str, table: str, where: Where) -> str:
    return f"SELECT COUNT(*) FROM {table_of(keyspace, table)}{_where_clause(where)}"


def matching_ids(keyspace: str, table: str, where: Where) -> str:
    return f'SELECT "id" FROM {table_of(keyspace, table)}{_where_clause(where)}'


def page(keyspace: str, table: str, where: Where, after: bool) -> str:
    """One scroll page in token order; with ``after``, rows whose ``token("id")`` follows the cursor."""
    extra = ['token("id") > ?'] if after else []
    return (f'SELECT {_read_columns()}, token("id") FROM {table_of(keyspace, table)}'
            f"{_where_clause(where, extra)} LIMIT ?")


# -- the filter compiler ----------------------------------------------------------------------------------

SUPPORTED = frozenset({Op.EQ, Op.CONTAINS, Op.AND})
RANGES = frozenset({Op.GT, Op.GTE, Op.LT, Op.LTE})


def _leaves(node: Filter) -> list[Comparison]:
    if isinstance(node, Comparison):
        return [node]
    if isinstance(node, And):
        return [leaf for child in node.children for leaf in _leaves(child)]
    raise UnsupportedFilterError(f"Cassandra's SAI evaluates AND only; {type(node).__name__.lower()} is not "
                                 "supported here")


def compile_filter(tree: Filter | None, range_fields: Sequence[str]) -> Where:
    """The filter as SAI conditions (see the module docstring)."""
    if tree is None:
        return Where()
    equal: dict[str, str] = {}
    contains: list[str] = []
    lower: dict[str, tuple[float, bool]] = {}  # column -> (bound, strict)
    upper: dict[str, tuple[float, bool]] = {}
    for leaf in _leaves(tree):
        if leaf.op is Op.EQ:
            key, value = hex_key(leaf.field), hex_value(leaf.value)
            if equal.setdefault(key, value) != value:
                return Where(never=True)  # one field cannot equal two different values
        elif leaf.op is Op.CONTAINS:
            contains.append(contains_token(leaf.field, leaf.value))
        elif leaf.op in RANGES:
            if leaf.field not in range_fields:
                raise UnsupportedFilterError(
                    f"range filters on {leaf.field!r} need it among the collection's range fields (now "
                    f"{list(range_fields)}); create the collection with range_fields=[..., {leaf.field!r}]")
            try:
                bound = float(leaf.value)
            except OverflowError:
                bound = math.inf if leaf.value > 0 else -math.inf
            column = range_column(leaf.field)
            strict = leaf.op in (Op.GT, Op.LT)
            if leaf.op in (Op.GT, Op.GTE):
                old = lower.get(column)
                if old is None or bound > old[0] or (bound == old[0] and strict):
                    lower[column] = (bound, strict)
            else:
                old = upper.get(column)
                if old is None or bound < old[0] or (bound == old[0] and strict):
                    upper[column] = (bound, strict)
        else:
            raise UnsupportedFilterError(f"Cassandra's SAI cannot evaluate ${leaf.op.value} exactly")
    conditions: list[str] = []
    values: list[Any] = []
    for key, value in equal.items():
        conditions.append('"eq"[?] = ?')
        values += [key, value]
    for token in dict.fromkeys(contains):
        conditions.append('"tok" CONTAINS ?')
        values.append(token)
    for column in sorted(set(lower) | set(upper)):
        if column in lower:
            bound, strict = lower[column]
            conditions.append(f"{quote(column)} {'>' if strict else '>='} ?")
            values.append(bound)
        if column in upper:
            bound, strict = upper[column]
            conditions.append(f"{quote(column)} {'<' if strict else '<='} ?")
            values.append(bound)
    return Where(tuple(conditions), tuple(values))


__all__ = [
    "ANN_MAX_LIMIT",
    "RANGES",
    "SUPPORTED",
    "Where",
    "check_keyspace",
    "check_prefix",
    "check_range_fields",
    "compile_filter",
    "indexed",
    "quote",
]
