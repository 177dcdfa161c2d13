"""Every statement of the ``singlestore_vector`` knowledge store, as text and bound parameters (no driver).

Two renderings of one layout: ``singlestore=True`` for SingleStore 8.5+ (``VECTOR(n, F32)`` column, its
``<*>`` / ``<->`` operators, sharded tables, optional vector index), ``singlestore=False`` for MySQL /
MariaDB, where the vector is a ``LONGBLOB`` of little-endian float32 and nearest-neighbour search is an
exact scan in Python. The second exists so that every statement that does not touch vectors (DDL of the
collection, document and metadata tables, writes, reads, counts, deletes, scrolls and every filter) runs
on the MariaDB server of the test machines with the same text SingleStore receives; the only
SingleStore-only text is the ``VECTOR`` column type, its cast to ``BLOB``, ``SHARD KEY``/``SORT KEY``/
``USING HASH``/``REFERENCE`` and the ``ORDER BY doc_vector <*> ?`` of :meth:`VectorSQL.nearest`, which the
unit tests pin as text.

Tables (``p`` = table prefix, ``h`` = the first 16 hex digits of SHA-256 of the collection name, so any
valid collection name, up to 63 characters with ``-`` and mixed case, maps onto a short safe table name):

* ``p``\\ ``ssv_collections``: coll_name (primary key), coll_dimension, coll_distance, created_at.
* ``p``\\ ``ssv_h``: one row per document. ``doc_key`` = SHA-256 of the id (primary key and shard key: ids
  of any length, compared byte for byte, never by a collation), ``doc_id``, ``doc_content``, ``source_id``,
  ``doc_metadata`` (the caller's JSON text exactly as written: what reads return), ``doc_vector`` (searched:
  for cosine collections the unit vector, so ``<*>`` orders by cosine and a ``DOT_PRODUCT`` index serves
  it) and ``doc_original`` (cosine only: the caller's float32 vector, which reads and exact scores use).
  Column names are compounds, so none can be a reserved word on either engine.
* ``p``\\ ``ssv_h_f``: the metadata index. One row per filterable top-level key and value (the facts
  of :mod:`storebridge.filter_facts`): ``mkind`` 1 string (``mhash`` = SHA-256 of its UTF-8, ``mtext`` = the
  UTF-8 bytes), 2 number (``mnum`` DOUBLE), 3 bool (``mnum`` 1 or 0), 4/5/6 the string/number/bool
  elements of a list (one row each), 7 "present, but no row above" (an empty list, an object, a list of
  objects). None values get no row. ``mkey`` is the key's UTF-8 bytes (``VARBINARY``: no collation).

Filters compile to ``d.doc_key IN (SELECT doc_key FROM <metadata index> WHERE mkey = ? AND ...)``, one
uncorrelated semi-join per comparison: plain SQL, the same text on both engines, run on MariaDB by the
tests against the reference evaluator. FILTERS.md's meaning follows from the typed rows:

* ``eq``: a string matches only kind 1 with the same bytes (case-sensitive; hash and bytes compared), a
  number only kind 2 by value (``1 == 1.0``), a bool only kind 3 (so ``True`` never equals ``1``); a list
  or object has no kind 1/2/3 row, so it never equals a scalar.
* ``ne`` / ``nin`` / ``$not``: ``NOT (...)``. ``IN (subquery)`` of a non-NULL key over non-NULL keys is
  never NULL, so ``NOT`` is the exact complement and a missing or None field matches.
* ranges: kind 2 only (text, bools, lists never match); ``in``: the ``eq`` cases ORed in one subquery,
  ``in []`` is ``1 = 0``; ``contains``: kinds 4/5/6; ``exists``: any row of the key.
* Numbers are compared as IEEE doubles: integers beyond 2**53 are rounded to the nearest double (both
  stored and filter values), and integers beyond ±1.8e308 are not indexed as numbers. Filter bounds of
  ±infinity are decided here (``> inf`` matches nothing, ``< inf`` every number).

Values are always bound parameters; identifiers are validated (prefix) or generated (hex) and quoted
with :func:`storebridge.identifiers.quote_identifier`. Statements are written with ``?`` and rendered by
the shared SQL layer's :class:`~storebridge.adapters.sql.dialects.Dialect` (``%s`` for singlestoredb).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from storebridge.adapters.sql.dialects import MYSQL, SINGLESTORE, Dialect
from storebridge.adapters.sql.schema import SQLMigration, Step
from storebridge.engine import sql_condition
from storebridge.errors import ConfigurationError, FilterError, UnsupportedFilterError, ValidationError
from storebridge.filter_facts import as_double, field_facts, range_bound
from storebridge.filters import Comparison, Filter, Op, Scalar, is_number
from storebridge.identifiers import validate_table_prefix
from storebridge.models import CollectionInfo, Distance, KnowledgeDocument
from storebridge.vectors import metadata_json

COMPONENT = "singlestore_vector"

KIND_STR, KIND_NUM, KIND_BOOL, KIND_LIST_STR, KIND_LIST_NUM, KIND_LIST_BOOL, KIND_PRESENT = 1, 2, 3, 4, 5, 6, 7

#: Columns a read selects before the vector, in this order.
READ_COLUMNS = "d.doc_id, d.doc_content, d.source_id, d.doc_metadata"

#: SingleStore vector index types (``VECTOR INDEX ... INDEX_OPTIONS '{"index_type": ...}'``).
INDEX_TYPES = frozenset({"AUTO", "FLAT", "IVF_FLAT", "IVF_PQ", "IVF_PQFS", "HNSW_FLAT", "HNSW_PQ"})
_OPTION_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_OPTION_VALUE = re.compile(r"^[A-Za-z0-9_.]{1,64}$")
_CURSOR = re.compile(r"^[0-9a-f]{64}$")
_RANGE = {Op.GT: ">", Op.GTE: ">=", Op.LT: "<", Op.LTE: "<="}
_FALSE, _TRUE = "(1 = 0)", "(1 = 1)"


# -- values ---------------------------------------------------------------------------------------------------

def doc_key(doc_id: str) -> bytes:
    """The 32-byte key of a document id: fixed size for every index, exact whatever the collation."""
    return hashlib.sha256(doc_id.encode("utf-8")).digest()


def table_hash(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]


def vector_bytes(vector: np.ndarray) -> bytes:
    """float32 little-endian: what ``LONGBLOB`` columns hold and ``VECTOR(n, F32) :> BLOB`` returns."""
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def vector_from_bytes(data: bytes, dimension: int) -> np.ndarray:
    vector = np.frombuffer(data, dtype="<f4").astype(np.float32)
    if len(vector) != dimension:
        raise ValidationError(f"a stored vector has {len(vector)} dimensions, not {dimension}; "
                              "the table was not written by this store")
    return vector


def vector_json(vector: np.ndarray) -> str:
    """A float32 vector as the JSON array text SingleStore converts to ``VECTOR(n, F32)``. Each element is
    the shortest decimal of its exact double value, which parses back to the same float32 whether the
    server reads it as a float or as a double."""
    return "[" + ",".join(repr(float(x)) for x in np.asarray(vector, dtype=np.float32)) + "]"


def unit(vector: np.ndarray) -> np.ndarray:
    """The unit vector of a float32 row, normalised in float64 (so extreme values cannot overflow)."""
    wide = vector.astype(np.float64)
    return (wide / np.linalg.norm(wide)).astype(np.float32)


def text_hash(text: str) -> tuple[bytes, bytes]:
    data = text.encode("utf-8")
    return hashlib.sha256(data).digest(), data


MetaRow = tuple[bytes, bytes, int, float | None, bytes | None, bytes | None]


def metadata_rows(key: bytes, metadata: Mapping[str, Any]) -> list[MetaRow]:
    """The metadata index rows of one document: ``(doc_key, mkey, mkind, mnum, mhash, mtext)``."""
    rows: list[MetaRow] = []
    for facts in field_facts(metadata):
        field = facts.key.encode("utf-8")
        if facts.elements is not None:
            found = [_scalar_row(key, field, item, KIND_LIST_STR, KIND_LIST_NUM, KIND_LIST_BOOL)
                     for item in facts.elements]
        elif facts.scalar is not None:
            found = [_scalar_row(key, field, facts.scalar, KIND_STR, KIND_NUM, KIND_BOOL)]
        else:
            found = []
        kept = [row for row in found if row is not None]
        rows += kept or [(key, field, KIND_PRESENT, None, None, None)]
    return rows


def _scalar_row(key: bytes, field: bytes, value: Scalar, k_str: int, k_num: int, k_bool: int) -> MetaRow | None:
    """The row of one scalar, or None for a number no double holds (not indexed as a number)."""
    if isinstance(value, bool):
        return key, field, k_bool, 1.0 if value else 0.0, None, None
    if isinstance(value, str):
        digest, data = text_hash(value)
        return key, field, k_str, None, digest, data
    number = as_double(value)
    return None if number is None else (key, field, k_num, number, None, None)


# -- the vector index ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VectorIndex:
    """A SingleStore ANN index for new collections: ``index_type`` and extra ``INDEX_OPTIONS``."""

    index_type: str
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, index_type: Any, options: Mapping[str, Any] | None = None) -> VectorIndex | None:
        if index_type is None:
            if options:
                raise ConfigurationError("vector_index_options need vector_index (an index type)")
            return None
        if not isinstance(index_type, str) or index_type.upper() not in INDEX_TYPES:
            raise ConfigurationError(f"unknown vector index type {index_type!r}; use one of {sorted(INDEX_TYPES)}")
        checked: list[tuple[str, Any]] = []
        for key, value in sorted((options or {}).items()):
            if not isinstance(key, str) or not _OPTION_KEY.fullmatch(key) or key in ("index_type", "metric_type"):
                raise ConfigurationError(f"invalid vector index option name {key!r}")
            if isinstance(value, bool) or not (is_number(value) and math.isfinite(value)
                                               or isinstance(value, str) and _OPTION_VALUE.fullmatch(value)):
                raise ConfigurationError(f"vector index option {key!r} must be a finite number or a plain word, "
                                         f"got {value!r}")
            checked.append((key, value))
        return cls(index_type.upper(), tuple(checked))

    def options_json(self, distance: Distance) -> str:
        metric = "EUCLIDEAN_DISTANCE" if distance is Distance.L2 else "DOT_PRODUCT"
        return json.dumps({"index_type": self.index_type, "metric_type": metric, **dict(self.options)},
                          separators=(",", ":"))


def sql_string(text: str) -> str:
    """A single-quoted SQL string literal (backslash and quote escaped) for the few values that cannot be
    parameters (DDL options). Refuses NUL, which no such value needs."""
    if "\x00" in text:
        raise ValueError("NUL in a SQL literal")
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


# -- statements ---------------------------------------------------------------------------------------------

class VectorSQL:
    """The statements of one store (a table prefix, an engine, an optional vector index)."""

    def __init__(self, prefix: str = "sb_", *, singlestore: bool = True, vector_index: VectorIndex | None = None,
                 dialect: Dialect | None = None) -> None:
        self.prefix = validate_table_prefix(prefix)
        self.singlestore = singlestore
        self.dialect = dialect or (SINGLESTORE if singlestore else MYSQL)
        if vector_index is not None and not singlestore:
            raise ConfigurationError("a vector index needs SingleStore; MySQL/MariaDB have no VECTOR type")
        self.vector_index = vector_index
        self.collections = self.dialect.table(self.prefix, "ssv_collections")

    # -- naming and rendering ---------------------------------------------------------------------------

    def docs(self, name: str) -> str:
        return self.dialect.table(self.prefix, f"ssv_{table_hash(name)}")

    def fields(self, name: str) -> str:
        return self.dialect.table(self.prefix, f"ssv_{table_hash(name)}_f")

    def render(self, sql: str) -> str:
        return self.dialect.sql(sql)

    @staticmethod
    def marks(n: int) -> str:
        return ", ".join("?" * n)

    # -- schema -----------------------------------------------------------------------------------------

    def migrations(self) -> tuple[SQLMigration, ...]:
        d = self.dialect
        create = "CREATE REFERENCE TABLE IF NOT EXISTS" if self.singlestore else "CREATE TABLE IF NOT EXISTS"
        table = (f"{create} {self.collections} (coll_name VARCHAR(63) NOT NULL, coll_dimension INT NOT NULL, "
                 f"coll_distance VARCHAR(8) NOT NULL, created_at DOUBLE NOT NULL, PRIMARY KEY (coll_name)){d.table_options}")
        guard = (self.render(d.table_exists_sql), (self.prefix + "ssv_collections",))
        return (SQLMigration(1, "the singlestore_vector collections table", (Step(table, unless=guard),)),)

    def create_docs(self, info: CollectionInfo) -> str:
        if self.singlestore:
            vector = f"VECTOR({int(info.dimension)}, F32)"
            keys = ", PRIMARY KEY (doc_key), SHARD KEY (doc_key)"
            if self.vector_index is not None:
                keys += (" , VECTOR INDEX vidx (doc_vector) INDEX_OPTIONS "
                         + sql_string(self.vector_index.options_json(info.distance)))
        else:
            vector = "LONGBLOB"
            keys = ", PRIMARY KEY (doc_key)"
        return (f"CREATE TABLE IF NOT EXISTS {self.docs(info.name)} (doc_key BINARY(32) NOT NULL, "
                f"doc_id LONGTEXT NOT NULL, doc_content LONGTEXT NOT NULL, source_id LONGTEXT NULL, "
                f"doc_metadata LONGTEXT NOT NULL, doc_vector {vector} NOT NULL, doc_original LONGBLOB NULL{keys})"
                f"{self.dialect.table_options}")

    def create_fields(self, info: CollectionInfo) -> str:
        if self.singlestore:
            keys = ", SHARD KEY (doc_key), SORT KEY (mkey, mkind), KEY (doc_key) USING HASH"
        else:
            keys = ", KEY (mkey, mkind, mnum), KEY (mkey, mkind, mhash), KEY (doc_key)"
        return (f"CREATE TABLE IF NOT EXISTS {self.fields(info.name)} (doc_key BINARY(32) NOT NULL, "
                f"mkey VARBINARY(1020) NOT NULL, mkind TINYINT NOT NULL, mnum DOUBLE NULL, mhash BINARY(32) NULL, "
                f"mtext LONGBLOB NULL{keys}){self.dialect.table_options}")

    def drop_tables(self, name: str) -> tuple[str, str]:
        """One statement per table (a multi-table DROP is not in every dialect's grammar)."""
        return f"DROP TABLE IF EXISTS {self.docs(name)}", f"DROP TABLE IF EXISTS {self.fields(name)}"

    # -- collections ------------------------------------------------------------------------------------

    def describe(self) -> str:
        return self.render(f"SELECT coll_dimension, coll_distance FROM {self.collections} WHERE coll_name = ?")

    def insert_collection(self) -> str:
        return self.render(f"INSERT INTO {self.collections} (coll_name, coll_dimension, coll_distance, created_at) "
                           "VALUES (?, ?, ?, ?)")

    def delete_collection(self) -> str:
        return self.render(f"DELETE FROM {self.collections} WHERE coll_name = ?")

    def names(self) -> str:
        return f"SELECT coll_name FROM {self.collections}"

    # -- writes -----------------------------------------------------------------------------------------

    def upsert_docs(self, name: str) -> str:
        """One INSERT for ``executemany`` (which sends a batch as one multi-row statement: every value of
        the VALUES tuple is a bare placeholder, as PyMySQL's batching requires)."""
        d = self.dialect
        updates = ", ".join(f"{c} = {d.excluded(c)}"
                            for c in ("doc_id", "doc_content", "source_id", "doc_metadata", "doc_vector", "doc_original"))
        return self.render(f"INSERT INTO {self.docs(name)} (doc_key, doc_id, doc_content, source_id, "
                           f"doc_metadata, doc_vector, doc_original) VALUES (?, ?, ?, ?, ?, ?, ?) {d.upsert_clause('doc_key')} {updates}")

    def doc_params(self, info: CollectionInfo, doc: KnowledgeDocument, vector: np.ndarray) -> tuple[Any, ...]:
        """The parameters of :meth:`upsert_docs` for one checked document and its float32 vector."""
        original: bytes | None = None
        searched = vector
        if info.distance is Distance.COSINE:
            original, searched = vector_bytes(vector), unit(vector)
        embedding: str | bytes = vector_json(searched) if self.singlestore else vector_bytes(searched)
        return (doc_key(doc.id), doc.id, doc.content, doc.source_id, metadata_json(doc), embedding, original)

    def insert_fields(self, name: str) -> str:
        return self.render(f"INSERT INTO {self.fields(name)} (doc_key, mkey, mkind, mnum, mhash, mtext) "
                           "VALUES (?, ?, ?, ?, ?, ?)")

    def delete_fields(self, name: str, n: int) -> str:
        return self.render(f"DELETE FROM {self.fields(name)} WHERE doc_key IN ({self.marks(n)})")

    def delete_docs(self, name: str, n: int) -> str:
        return self.render(f"DELETE FROM {self.docs(name)} WHERE doc_key IN ({self.marks(n)})")

    # -- reads ------------------------------------------------------------------------------------------

    def vector_column(self, info: CollectionInfo) -> str:
        """The stored vector as float32 bytes: the caller's original for cosine, else the column itself."""
        if info.distance is Distance.COSINE:
            return "d.doc_original"
        return "d.doc_vector :> BLOB" if self.singlestore else "d.doc_vector"

    def columns(self, info: CollectionInfo, with_vectors: bool) -> str:
        return READ_COLUMNS + (f", {self.vector_column(info)}" if with_vectors else "")

    def existing(self, name: str, n: int) -> str:
        return self.render(f"SELECT d.doc_id FROM {self.docs(name)} d WHERE d.doc_key IN ({self.marks(n)})")

    def get(self, info: CollectionInfo, n: int, with_vectors: bool) -> str:
        return self.render(f"SELECT {self.columns(info, with_vectors)} FROM {self.docs(info.name)} d "
                           f"WHERE d.doc_key IN ({self.marks(n)})")

    def count(self, info: CollectionInfo, where: Filter | None) -> tuple[str, list[Any]]:
        condition, params = self.where(info, where)
        return self.render(f"SELECT COUNT(*) FROM {self.docs(info.name)} d{condition}"), params

    def matching_keys(self, info: CollectionInfo, keys: Sequence[bytes] | None,
                      where: Filter | None) -> tuple[str, list[Any]]:
        """The keys of the documents to delete: listed (if ``keys``) and matching ``where``."""
        parts: list[str] = []
        params: list[Any] = []
        if keys is not None:
            parts.append(f"d.doc_key IN ({self.marks(len(keys))})")
            params += list(keys)
        if where is not None:
            parts.append(self.compile(info, where, params))
        condition = " WHERE " + " AND ".join(parts) if parts else ""
        return self.render(f"SELECT d.doc_key FROM {self.docs(info.name)} d{condition}"), params

    def page(self, info: CollectionInfo, after: bytes | None, where: Filter | None, limit: int,
             with_vectors: bool) -> tuple[str, list[Any]]:
        """Up to ``limit`` documents after the key ``after``, in key order (the key leads each row)."""
        parts: list[str] = []
        params: list[Any] = []
        if after is not None:
            parts.append("d.doc_key > ?")
            params.append(after)
        if where is not None:
            parts.append(self.compile(info, where, params))
        condition = " WHERE " + " AND ".join(parts) if parts else ""
        params.append(int(limit))
        return self.render(f"SELECT d.doc_key, {self.columns(info, with_vectors)} FROM {self.docs(info.name)} d"
                           f"{condition} ORDER BY d.doc_key LIMIT ?"), params

    def nearest(self, info: CollectionInfo, query: np.ndarray, where: Filter | None,
                limit: int) -> tuple[str, list[Any]]:
        """SingleStore: the ``limit`` nearest rows by the engine's own operator (``<*>`` dot product on unit
        vectors for cosine, on the vectors for dot; ``<->`` euclidean for l2), with their stored vectors."""
        if not self.singlestore:
            raise ConfigurationError("nearest-neighbour SQL needs SingleStore's VECTOR type")
        condition, params = self.where(info, where)
        operator, order = ("<->", "ASC") if info.distance is Distance.L2 else ("<*>", "DESC")
        sql = (f"SELECT {self.columns(info, True)} FROM {self.docs(info.name)} d{condition} "
               f"ORDER BY d.doc_vector {operator} (? :> VECTOR({int(info.dimension)}, F32)) {order} LIMIT ?")
        return self.render(sql), [*params, vector_json(query), int(limit)]

    @staticmethod
    def cursor(key: bytes) -> str:
        return key.hex()

    @staticmethod
    def parse_cursor(cursor: str) -> bytes:
        if not isinstance(cursor, str) or not _CURSOR.fullmatch(cursor):
            raise ValidationError(f"invalid scroll cursor {cursor!r}; pass the next_cursor of the previous page")
        return bytes.fromhex(cursor)

    # -- filters ----------------------------------------------------------------------------------------

    def where(self, info: CollectionInfo, where: Filter | None) -> tuple[str, list[Any]]:
        if where is None:
            return "", []
        params: list[Any] = []
        return " WHERE " + self.compile(info, where, params), params

    def compile(self, info: CollectionInfo, node: Filter, params: list[Any]) -> str:
        """The condition for ``node`` over documents aliased ``d``; appends its parameters in text order.
        The result is raw ``?`` text (render the whole statement once)."""
        return sql_condition(node, _Compiler(self.fields(info.name), params).comparison)


class _Compiler:
    def __init__(self, fields: str, params: list[Any]) -> None:
        self.fields = fields
        self.params = params

    def bind(self, value: Any) -> str:
        self.params.append(value)
        return "?"

    def having(self, field: str, condition: Callable[[], str] | None = None) -> str:
        """Documents with a metadata row of ``field`` meeting ``condition``, a function that binds its own
        parameters: it is called after the key is bound, so parameters stay in text order."""
        key = self.bind(field.encode("utf-8"))
        extra = f" AND {condition()}" if condition is not None else ""
        return f"d.doc_key IN (SELECT f.doc_key FROM {self.fields} f WHERE f.mkey = {key}{extra})"

    def comparison(self, node: Comparison) -> str:
        field, op, value = node.field, node.op, node.value
        if "." in field:
            raise UnsupportedFilterError(f"filter key {field!r}: nested paths are not indexed by this backend")
        if op is Op.EXISTS:
            present = self.having(field)
            return present if value else f"(NOT {present})"
        if op in (Op.EQ, Op.IN, Op.NE, Op.NIN):
            values = (value,) if op in (Op.EQ, Op.NE) else tuple(value)
            equal = self.equals_any(field, values, KIND_STR, KIND_NUM, KIND_BOOL)
            return equal if op in (Op.EQ, Op.IN) else f"(NOT {equal})"
        if op is Op.CONTAINS:
            return self.equals_any(field, (value,), KIND_LIST_STR, KIND_LIST_NUM, KIND_LIST_BOOL)
        if op in _RANGE:
            return self.range(field, op, value)
        raise FilterError(f"unknown filter operator {op!r}")

    def range(self, field: str, op: Op, value: Any) -> str:
        number = range_bound(op, value)
        if isinstance(number, bool):  # +-infinity, or an integer beyond every double: every number, or none
            return self.having(field, lambda: f"f.mkind = {KIND_NUM}") if number else _FALSE
        return self.having(field, lambda: f"f.mkind = {KIND_NUM} AND f.mnum {_RANGE[op]} {self.bind(number)}")

    def equals_any(self, field: str, values: Sequence[Any], k_str: int, k_num: int, k_bool: int) -> str:
        strings = list(dict.fromkeys(v for v in values if isinstance(v, str)))
        numbers = list(dict.fromkeys(n for n in (as_double(v) for v in values if is_number(v)) if n is not None))
        bools = sorted({1 if v else 0 for v in values if isinstance(v, bool)})
        if not (strings or numbers or bools):
            return _FALSE  # $in: [] (or only numbers no double holds, which nothing stored can equal)
        key = self.bind(field.encode("utf-8"))
        terms: list[str] = []
        if strings:
            pairs = []
            for text in strings:
                digest, data = text_hash(text)
                pairs.append(f"(f.mhash = {self.bind(digest)} AND f.mtext = {self.bind(data)})")
            terms.append(f"(f.mkind = {k_str} AND ({' OR '.join(pairs)}))")
        if numbers:
            terms.append(f"(f.mkind = {k_num} AND f.mnum IN ({', '.join(self.bind(n) for n in numbers)}))")
        if bools:
            terms.append(f"(f.mkind = {k_bool} AND f.mnum IN ({', '.join(str(b) for b in bools)}))")
        return (f"d.doc_key IN (SELECT f.doc_key FROM {self.fields} f WHERE f.mkey = {key} AND "
                f"({' OR '.join(terms)}))")


__all__ = [
    "COMPONENT",
    "INDEX_TYPES",
    "KIND_BOOL",
    "KIND_LIST_BOOL",
    "KIND_LIST_NUM",
    "KIND_LIST_STR",
    "KIND_NUM",
    "KIND_PRESENT",
    "KIND_STR",
    "VectorIndex",
    "VectorSQL",
    "doc_key",
    "metadata_rows",
    "sql_string",
    "table_hash",
    "unit",
    "vector_bytes",
    "vector_from_bytes",
    "vector_json",
]
