"""The ``singlestore_vector`` knowledge store: SingleStore 8.5+ through the official ``singlestoredb`` client.

Targets SingleStore 8.5 and later (``VECTOR(n, F32)`` columns, the ``<*>`` dot-product and ``<->``
euclidean operators, optional ``VECTOR INDEX``). The live conformance suite runs only when
``STOREBRIDGE_TEST_SINGLESTORE_VECTOR_URL`` is set: it has NOT run against SingleStore on the project's
machines (none can be installed there). What is verified where:

* every statement that does not touch vectors (the DDL of the collection, document and metadata-index
  tables, writes, get, count, delete, scroll, and every filter) runs on MariaDB 10.11 in
  ``tests/integration/test_singlestore_vector_mariadb.py``, through this very store in its exact-scan
  mode (``exact_fallback=True``), under the whole knowledge conformance suite: filters are checked
  against the reference evaluator there, on the same SQL text SingleStore gets;
* the SingleStore-only text (``VECTOR(n, F32)``, ``doc_vector :> BLOB``, ``SHARD KEY``/``SORT KEY``,
  ``REFERENCE`` table, ``VECTOR INDEX ... INDEX_OPTIONS``, ``ORDER BY d.doc_vector <*> (? :> VECTOR(n, F32))``)
  is pinned as text by ``tests/unit/test_singlestore_vector_knowledge.py``.

Layout, filters and their exact meaning: see :mod:`._sql`. In short, each collection is a document table
(SHA-256 of the id as primary and shard key, the caller's metadata JSON text kept verbatim, the vector)
and a metadata index table of typed rows per top-level key; every filter operator compiles to SQL over
that index with bound values and means exactly what FILTERS.md says (nothing evaluated client-side).
Nested (dotted) keys are not indexed and raise ``UnsupportedFilterError``.

Search. Without a vector index, ``ORDER BY d.doc_vector <*> q DESC LIMIT k+16`` (``<->`` ascending for l2)
is SingleStore's exact brute-force scan (cosine collections store unit vectors, so the dot product orders
by cosine; the caller's vectors are kept in ``doc_original``). The candidates are re-scored in float64 by
:mod:`storebridge.engine`, so scores follow :class:`~storebridge.models.Distance` exactly. With
``vector_index="HNSW_FLAT"`` (or another SingleStore index type, plus ``vector_index_options``), new
collections get a ``VECTOR INDEX`` (metric ``DOT_PRODUCT``, or ``EUCLIDEAN_DISTANCE`` for l2) and searches
may use it: approximate, so ``recall_floor`` is declared 0.9. An index answer with fewer rows than
``min(k + 16, matching documents)`` (SingleStore may apply a filter after the index scan) is widened
(eightfold, up to the number of matching documents) and, if still short, replaced by an exact scan: a
filtered search never silently returns fewer hits than exist.

Writes: a batch (500 documents) is one transaction: a multi-row ``INSERT ... ON DUPLICATE KEY UPDATE``
(``executemany``), then the batch's metadata rows are replaced. Connection pooling, retries (reads, and
writes rolled back before COMMIT) and the mapping of server errors to typed errors are the shared SQL
layer's (:mod:`storebridge.adapters.sql.runner`, the MySQL store's pool and error classes).

MySQL/MariaDB (``exact_fallback=True``): the same tables with the vector as ``LONGBLOB`` and search as an
exact scan in Python over the matching rows, 2,000 at a time. It exists so the SQL above runs in CI;
it is not meant for production, and without the flag a server that is not SingleStore is refused.

URL: ``singlestore://user:password@host:3306/database`` (``singlestoredb://`` too), options
``?table_prefix=sb_&vector_index=HNSW_FLAT`` and the MySQL TLS options (``ssl_ca``, ``ssl_cert``,
``ssl_key``, ``ssl_disabled=true``). The password never appears in a repr, log or error text.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from storebridge.adapters.mysql.conversation import (
    PyMySQLDriver,
    connect_kwargs,
    mysql_target,
    parse_mysql_url,
)
from storebridge.adapters.sql.dialects import MYSQL, SINGLESTORE, Dialect
from storebridge.adapters.sql.plan import EXECUTE, MANY, ROW, ROWS, Call, Op, Plan
from storebridge.adapters.sql.runner import RetryPolicy, SyncRunner
from storebridge.adapters.sql.schema import migrate_plan
from storebridge.adapters.sql.store import check_sizes
from storebridge.engine import Candidate, EngineKnowledgeStore, option
from storebridge.errors import (
    AlreadyExistsError,
    ConfigurationError,
    OperationFailedError,
    SchemaVersionError,
    StorebridgeError,
)
from storebridge.filters import Filter
from storebridge.identifiers import validate_table_prefix
from storebridge.knowledge import KnowledgeCapabilities
from storebridge.models import CollectionInfo, Distance, DocumentPage, KnowledgeDocument
from storebridge.urls import StoreURL, parse_url
from storebridge.vectors import exact_scores

from ._sql import (
    COMPONENT,
    VectorIndex,
    VectorSQL,
    doc_key,
    metadata_rows,
    vector_from_bytes,
)

SCHEMES = frozenset({"singlestore", "singlestoredb"})
DRIVERS = frozenset({None, "singlestoredb"})
#: URL options of this store (the rest are the MySQL TLS options).
STORE_OPTIONS = ("table_prefix", "vector_index")
#: Rows read per step by the exact scan.
SCAN_PAGE = 2000
#: How much an index answer that came back short is widened per retry.
WIDEN = 8


def parse_singlestore_url(url: str | StoreURL) -> tuple[StoreURL, dict[str, str]]:
    """The connection URL (TLS options only) and this store's own options."""
    parsed = parse_url(url)
    if parsed.scheme not in SCHEMES or parsed.driver not in DRIVERS:
        raise ConfigurationError(f"not a SingleStore URL: {parsed}; use singlestore://user:password@host:3306/database")
    own = {k: v for k, v in parsed.query.items() if k in STORE_OPTIONS}
    rest = {k: v for k, v in parsed.query.items() if k not in STORE_OPTIONS}
    connection = parse_mysql_url(dataclasses.replace(parsed, query=rest), schemes=SCHEMES, drivers=DRIVERS,
                                 what="SingleStore")
    return connection, own


def _is_singlestore(driver: PyMySQLDriver, conn: Any) -> bool:
    """SingleStore has the variable ``memsql_version``; MariaDB and MySQL do not."""
    return driver.perform(conn, Op(ROW, "SHOW VARIABLES LIKE 'memsql_version'")) is not None


class SingleStoreVectorKnowledgeStore(EngineKnowledgeStore):
    """Knowledge collections in SingleStore tables (see the module docstring).

    ``url``: ``singlestore://user:password@host:3306/database``. ``table_prefix`` (default ``sb_``) names
    every table; ``vector_index`` / ``vector_index_options`` give new collections an ANN index;
    ``exact_fallback=True`` accepts a MySQL/MariaDB server (exact scan, for tests). The pool keeps
    ``min_size`` connections and opens up to ``max_size``. ``connect`` replaces ``singlestoredb.connect``
    (a DB-API ``connect(**kwargs)``; tests pass a fake).
    """

    backend_name = "singlestore_vector"
    write_batch = 500
    capabilities = KnowledgeCapabilities(  # every operator, top-level keys, every distance, exact, any batch
        notes=(
            "every filter operator is SQL over a typed metadata index table; top-level keys only",
            "numbers are compared as doubles: integers beyond 2**53 are rounded",
            "exact brute-force search unless vector_index is set",
        ),
    )

    def __init__(self, url: str, *, table_prefix: str | None = None, vector_index: str | None = None,
                 vector_index_options: Mapping[str, Any] | None = None, exact_fallback: bool = False,
                 min_size: int = 1, max_size: int = 10, connect_timeout: float = 10.0, pool_timeout: float = 30.0,
                 retry: RetryPolicy | None = None, connect: Callable[..., Any] | None = None) -> None:
        self._closed = True  # until the pool is open
        parsed, own = parse_singlestore_url(url)
        check_sizes(min_size, max_size)
        prefix = validate_table_prefix(option("table_prefix", table_prefix, own.get("table_prefix")) or "sb_")
        index = VectorIndex.parse(option("vector_index", vector_index, own.get("vector_index")), vector_index_options)
        import singlestoredb.exceptions

        if connect is None:
            import singlestoredb

            connect = singlestoredb.connect
        target = mysql_target(SINGLESTORE, parsed)
        self._where = target.where
        self._secrets = tuple(parsed.secrets())
        kwargs = {**connect_kwargs(parsed, connect_timeout), "parse_json": False, "results_type": "tuples"}
        driver = PyMySQLDriver(connect, singlestoredb.exceptions, SINGLESTORE, target, kwargs, max_size=max_size,
                               pool_timeout=pool_timeout)
        self._runner = SyncRunner(driver, target, retry)
        self._target = target
        try:
            with driver.dedicated() as conn:
                singlestore = _is_singlestore(driver, conn)
                if not singlestore and not exact_fallback:
                    raise ConfigurationError(
                        f"{target.where} is not SingleStore (it has no memsql_version variable), so it has no "
                        "VECTOR type; pass exact_fallback=True to use it with exact scans in Python (for tests)")
                dialect: Dialect = SINGLESTORE if singlestore else MYSQL
                driver.dialect = target.dialect = dialect
                if not singlestore:
                    target.where = target.where.replace("SingleStore at", f"{dialect.display} at", 1)
                    self._where = target.where
                self._sql = VectorSQL(prefix, singlestore=singlestore, vector_index=index)
                self._migrate(conn)
            driver.fill(min_size)
        except BaseException:
            driver.close()
            raise
        if index is not None:
            self.capabilities = dataclasses.replace(
                type(self).capabilities, recall_floor=0.9,
                notes=(*type(self).capabilities.notes, f"{index.index_type} vector index: approximate"))
        self.table_prefix = self._sql.prefix
        self._closed = False

    def _migrate(self, conn: Any) -> None:
        d, sql = self._target.dialect, self._sql
        call = Call("migrate", lambda: migrate_plan(d, sql.prefix, sql.migrations(), COMPONENT),
                    write=d.transactional_ddl)
        try:
            self._runner.run_on(conn, call)
        except StorebridgeError:
            raise
        except Exception as exc:
            if self._runner.driver.classify(exc) is None:
                raise
            raise SchemaVersionError(f"creating the singlestore_vector tables on {self._where} failed; the steps "
                                     f"are idempotent and the next start completes them: {self._target.mask(exc)}"
                                     ) from exc

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._where!r}, table_prefix={self._sql.prefix!r})"

    def _engine_close(self) -> None:
        """Close the pool (idle connections now, busy ones as they come back)."""
        self._target.closed = True
        self._runner.driver.close()

    # -- plumbing ---------------------------------------------------------------------------------------

    def _run(self, action: str, plan: Callable[[], Plan[Any]], *, write: bool = False) -> Any:
        self._check_open()
        return self._runner.run(Call(action, plan, write=write))

    def _one(self, action: str, kind: Any, sql: str, params: Iterable[Any] = ()) -> Any:
        def plan() -> Plan[Any]:
            return (yield Op(kind, sql, tuple(params)))

        return self._run(action, plan)

    @staticmethod
    def _document(row: Any, info: CollectionInfo, with_vector: bool) -> tuple[KnowledgeDocument, np.ndarray | None]:
        doc_id, content, source_id, metadata = row[0], row[1], row[2], row[3]
        vector = vector_from_bytes(bytes(row[4]), info.dimension) if with_vector else None
        if not isinstance(metadata, str):
            metadata = bytes(metadata).decode("utf-8")
        doc = KnowledgeDocument(id=doc_id, content=content, source_id=source_id, metadata=json.loads(metadata),
                                embedding=None if vector is None else vector.tolist())
        return doc, vector

    # -- collections ------------------------------------------------------------------------------------

    def _engine_describe(self, name: str) -> CollectionInfo | None:
        row = self._one("describe collection", ROW, self._sql.describe(), (name,))
        if row is None:
            return None
        try:
            return CollectionInfo(name, int(row[0]), Distance(row[1]))
        except ValueError as exc:
            raise OperationFailedError(f"the collection row of {name!r} on {self._where} was not written by "
                                       f"storebridge: {exc}") from exc

    def _engine_create(self, info: CollectionInfo) -> None:
        sql = self._sql

        def plan() -> Plan[None]:
            # Tables left by a drop that was interrupted between its two steps must not resurface.
            for drop in sql.drop_tables(info.name):
                yield Op(EXECUTE, drop)
            yield Op(EXECUTE, sql.create_docs(info))
            yield Op(EXECUTE, sql.create_fields(info))
            yield Op(EXECUTE, sql.insert_collection(), (info.name, info.dimension, info.distance.value, time.time()))

        try:
            self._run("create collection", plan)
        except AlreadyExistsError:  # a concurrent create_collection won the race
            existing = self._engine_describe(info.name)
            if existing != info:
                raise
            return

    def _engine_drop(self, name: str) -> None:
        sql = self._sql

        def plan() -> Plan[None]:
            yield Op(EXECUTE, sql.delete_collection(), (name,))  # the collection is gone from here on
            for drop in sql.drop_tables(name):
                yield Op(EXECUTE, drop)

        self._run("drop collection", plan)

    def _engine_names(self) -> list[str]:
        return [str(row[0]) for row in self._one("list collections", ROWS, self._sql.names())]

    # -- writes -----------------------------------------------------------------------------------------

    def _engine_existing(self, info: CollectionInfo, ids: list[str]) -> list[str]:
        rows = self._one("check existing ids", ROWS, self._sql.existing(info.name, len(ids)),
                         [doc_key(i) for i in ids])
        return [str(row[0]) for row in rows]

    def _engine_write(self, info: CollectionInfo, documents: list[KnowledgeDocument], vectors: np.ndarray) -> None:
        sql = self._sql
        docs = [sql.doc_params(info, doc, vector) for doc, vector in zip(documents, vectors, strict=True)]
        keys = [row[0] for row in docs]
        fields = [row for doc, key in zip(documents, keys) for row in metadata_rows(key, doc.metadata)]

        def plan() -> Plan[None]:
            yield Op(MANY, sql.upsert_docs(info.name), docs)
            yield Op(EXECUTE, sql.delete_fields(info.name, len(keys)), keys)
            if fields:
                yield Op(MANY, sql.insert_fields(info.name), fields)

        self._run("write", plan, write=True)

    def _engine_delete(self, info: CollectionInfo, ids: list[str] | None, where: Filter | None) -> int:
        sql = self._sql
        listed = None if ids is None else [doc_key(i) for i in ids]
        select, params = sql.matching_keys(info, listed, where)

        def plan() -> Plan[int]:
            if where is None:
                keys: list[bytes] = list(listed or [])
            else:
                keys = [bytes(row[0]) for row in (yield Op(ROWS, select, params))]
            removed = 0
            for start in range(0, len(keys), self.write_batch):
                chunk = keys[start:start + self.write_batch]
                yield Op(EXECUTE, sql.delete_fields(info.name, len(chunk)), chunk)
                removed += yield Op(EXECUTE, sql.delete_docs(info.name, len(chunk)), chunk)
            return removed

        return int(self._run("delete", plan, write=True))

    # -- reads ------------------------------------------------------------------------------------------

    def _engine_get(self, info: CollectionInfo, ids: list[str], with_vectors: bool) -> list[KnowledgeDocument]:
        rows = self._one("get", ROWS, self._sql.get(info, len(ids), with_vectors), [doc_key(i) for i in ids])
        return [self._document(row, info, with_vectors)[0] for row in rows]

    def _engine_count(self, info: CollectionInfo, where: Filter | None) -> int:
        sql, params = self._sql.count(info, where)
        row = self._one("count", ROW, sql, params)
        return int(row[0])

    def _engine_page(self, info: CollectionInfo, limit: int, cursor: str | None, where: Filter | None,
                     with_vectors: bool) -> DocumentPage:
        after = None if cursor is None else self._sql.parse_cursor(cursor)
        sql, params = self._sql.page(info, after, where, limit + 1, with_vectors)
        rows = self._one("scroll", ROWS, sql, params)
        docs = [self._document(row[1:], info, with_vectors)[0] for row in rows[:limit]]
        more = len(rows) > limit
        return DocumentPage(docs, self._sql.cursor(bytes(rows[limit - 1][0])) if more else None)

    def _engine_nearest(self, info: CollectionInfo, query: np.ndarray, limit: int,
                        where: Filter | None) -> list[Candidate]:
        if not self._sql.singlestore:
            return self._exact_scan(info, query, limit, where)
        candidates = self._nearest(info, query, limit, where)
        if self._sql.vector_index is None or len(candidates) >= limit:
            return candidates
        # An ANN answer may hold fewer rows than exist (a filter applied after the index scan): widen it,
        # and if the index still cannot produce them, scan exactly.
        total = self._engine_count(info, where)
        wanted, fetch = min(limit, total), limit
        while len(candidates) < wanted and fetch < total:
            fetch = min(total, fetch * WIDEN)
            candidates = self._nearest(info, query, fetch, where)
        if len(candidates) < wanted:
            return self._exact_scan(info, query, limit, where)
        return candidates

    def _nearest(self, info: CollectionInfo, query: np.ndarray, limit: int, where: Filter | None) -> list[Candidate]:
        sql, params = self._sql.nearest(info, query, where, limit)
        rows = self._one("search", ROWS, sql, params)
        out = []
        for row in rows:
            doc, vector = self._document(row, info, True)
            assert vector is not None
            out.append(Candidate(doc.replace(embedding=None), vector))
        return out

    def _exact_scan(self, info: CollectionInfo, query: np.ndarray, limit: int,
                    where: Filter | None) -> list[Candidate]:
        """The ``limit`` best matching documents by exact float64 scores, reading 2,000 rows at a time."""
        q64 = query.astype(np.float64)
        best: list[tuple[float, Candidate]] = []
        after: bytes | None = None
        while True:
            sql, params = self._sql.page(info, after, where, SCAN_PAGE, True)
            rows = self._one("search (exact scan)", ROWS, sql, params)
            if not rows:
                break
            page = [self._document(row[1:], info, True) for row in rows]
            vectors = [vector for _, vector in page if vector is not None]
            _, scores = exact_scores(info.distance, np.stack(vectors), q64)
            best += [(float(score), Candidate(doc.replace(embedding=None), vector))
                     for (doc, _), vector, score in zip(page, vectors, scores)]
            best = sorted(best, key=lambda item: (-item[0], item[1].document.id))[:limit]
            if len(rows) < SCAN_PAGE:
                break
            after = bytes(rows[-1][0])
        return [candidate for _, candidate in best]


__all__ = ["SingleStoreVectorKnowledgeStore", "parse_singlestore_url"]
