"""Cassandra knowledge store (sync, on the DataStax ``cassandra-driver``).

Targets Apache Cassandra 5.0 (``vector<float, n>`` columns and Storage-Attached Indexes with
``similarity_function`` cosine / euclidean / dot_product), written against cassandra-driver 3.30; later
versions and DataStax Astra DB / HCD speak the same CQL. Not verified against a live server here (none
runs on these machines): the CQL is pinned by ``tests/unit/test_cassandra_knowledge.py``, and the
conformance suite runs live when ``STOREBRIDGE_TEST_CASSANDRA_URL`` is set.

URLs: ``cassandra://[user:password@]host1,host2[:9042]/keyspace`` with options ``username``,
``password``, ``consistency`` (default ``LOCAL_QUORUM``, for reads and writes, ANN searches included; a
server that refuses a consistency level for SAI reads says so in a typed error), ``local_dc``, ``ssl``
(``true``: a default TLS context, which checks host names), ``prefix`` (table prefix, default ``sbk_``),
``range_fields`` (comma-separated metadata keys that get range-filter columns in collections this store
creates), ``timeout`` (seconds), ``concurrency`` (requests in flight per write, default 64) and
``ann_limit`` (the server's largest ANN ``LIMIT``, default 1000); ``cassandra+astra:///keyspace?
secure_bundle=/path/bundle.zip&token=AstraCS:...`` for Astra DB. ``session=`` takes a connected driver
``Session`` (with ``keyspace=``), which the store never shuts down. Passwords and tokens never appear in
a repr or error. The keyspace must exist (its replication is the operator's choice).

Layout and filters: see ``_query``. Collections are rows of a catalog table; each has its own data table
(a fresh name per creation), created with ``IF NOT EXISTS`` DDL after the name is claimed with a
lightweight transaction, so two stores creating one collection agree on one table. Creation waits until
the new SAI indexes are queryable (read from ``system_views.sai_column_indexes`` where the server has it).
Declared operators: ``$eq``, ``$contains``, ``$and``, and the range operators when ``range_fields`` is
set (then a range on another key raises ``UnsupportedFilterError``); Cassandra 5.0 has no ``OR``/``NOT``
for SAI, so ``$ne $nin $in $exists $or $not`` raise ``UnsupportedFilterError``. Nested keys are not
declared. Ranges compare numbers as float64.

Writes are prepared ``INSERT`` statements (every column bound, so an upsert replaces the whole row) run
concurrently with ``execute_concurrent_with_args``; any failed row raises ``OperationFailedError`` naming
it (other rows of the batch may be written: Cassandra has no multi-partition atomicity). Deletes by
filter select the matching ids with SAI, then delete them by primary key; deletes by ids with a filter
read those rows and evaluate the (declared, so also SAI-expressible) filter on their metadata.

Search: ``ORDER BY v ANN OF ? LIMIT k + 16`` (at most ``ann_limit``; a larger ``k`` raises
``ValidationError``), candidates re-scored in float64 from ``raw``. The SAI vector index is approximate
(declared recall floor 0.9); Cassandra's ``dot_product`` is meant for unit vectors, so on other vectors
its graph may miss neighbours more often. Scrolls page in ``token(id)`` order, the cursor being the last
token (two ids whose Murmur3 tokens collide, a 2**-64 event, could straddle a page boundary).
"""

from __future__ import annotations

import dataclasses
import json
import re
import ssl
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from storebridge.engine import (
    Candidate,
    EngineKnowledgeStore,
    count_option,
    flag_option,
    option,
    poll,
    seconds_option,
    url_options,
)
from storebridge.errors import (
    AlreadyExistsError,
    ConfigurationError,
    ConnectionFailedError,
    OperationFailedError,
    StorebridgeError,
    ValidationError,
)
from storebridge.filters import Filter, evaluate
from storebridge.knowledge import KnowledgeCapabilities
from storebridge.models import CollectionInfo, Distance, DocumentPage, KnowledgeDocument
from storebridge.urls import mask_secrets, parse_url
from storebridge.vectors import metadata_json

from . import _query as q

try:  # imported lazily by the registry; the module needs the driver
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import (
        EXEC_PROFILE_DEFAULT,
        AuthenticationFailed,
        Cluster,
        ConsistencyLevel,
        ExecutionProfile,
        NoHostAvailable,
        OperationTimedOut,
    )
    from cassandra.concurrent import execute_concurrent_with_args
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
    from cassandra.protocol import InvalidRequest, Unauthorized, Unavailable
    from cassandra.query import SimpleStatement
except ImportError as exc:  # pragma: no cover - the registry checks first
    raise ImportError("the cassandra backend needs cassandra-driver: pip install \"storebridge[cassandra]\"") from exc

_OPTIONS = {"username", "password", "consistency", "local_dc", "ssl", "prefix", "range_fields", "timeout",
            "concurrency", "ann_limit", "secure_bundle", "token"}
_TOKEN_RE = re.compile(r"^-?[0-9]{1,19}$")
_INT64 = 2**63


@dataclasses.dataclass(frozen=True)
class _Table:
    """Where a collection's rows live, from its catalog row."""

    name: str
    range_fields: tuple[str, ...]


def _vector_bytes(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def _engine_vector(row: np.ndarray, distance: Distance) -> list[float]:
    """What the ``v`` column holds: the vector, or for cosine its unit vector computed in float64 (so a
    vector whose float32 squared norm overflows is still indexed correctly)."""
    if distance is Distance.COSINE:
        wide = row.astype(np.float64)
        return (wide / np.linalg.norm(wide)).astype(np.float32).tolist()  # type: ignore[no-any-return]
    return row.tolist()  # type: ignore[no-any-return]


class CassandraKnowledgeStore(EngineKnowledgeStore):
    """Knowledge collections in Cassandra 5 tables with SAI vector indexes (see the module docstring)."""

    backend_name = "cassandra"
    write_batch = 500
    capabilities = KnowledgeCapabilities(  # top-level keys, every distance
        filter_operators=q.SUPPORTED,
        recall_floor=0.9,
        max_batch=500,
        notes=("SAI on Cassandra 5.0 evaluates AND only: $ne $nin $in $exists $or $not raise UnsupportedFilterError",
               "range operators are declared when range_fields names the keys (a double column and SAI index each)",
               "search is approximate (SAI vector index), candidates re-scored exactly; k is at most 1000",
               "not verified against a live server here; set STOREBRIDGE_TEST_CASSANDRA_URL to run the suite"),
    )

    def __init__(self, url: str | None = None, *, session: Any = None, keyspace: str | None = None,
                 range_fields: Any = None, prefix: str | None = None, consistency: str | None = None,
                 username: str | None = None, password: str | None = None, local_dc: str | None = None,
                 timeout: float | None = None, concurrency: int | None = None, ann_limit: int | None = None,
                 secure_bundle: str | None = None, token: str | None = None,
                 cluster_options: dict[str, Any] | None = None) -> None:
        self._closed = False
        self._cluster: Any = None
        self._tables: dict[str, _Table] = {}
        self._prepared: OrderedDict[str, Any] = OrderedDict()
        self._prepared_lock = threading.Lock()
        if (url is None) == (session is None):
            raise ConfigurationError("pass either a cassandra URL or session= to the cassandra store")
        options: dict[str, str] = {}
        hosts: list[str] = []
        port = 9042
        astra = False
        if url is not None:
            parsed = parse_url(url)
            if parsed.scheme != "cassandra" or parsed.driver not in (None, "astra"):
                raise ConfigurationError(f"not a cassandra URL: {parsed}; use cassandra://host:9042/keyspace")
            astra = parsed.driver == "astra"
            options = url_options(parsed.query, _OPTIONS, "cassandra")
            keyspace = option("keyspace", keyspace, parsed.database)
            username = option("username", username, parsed.username or options.get("username"))
            password = option("password", password, parsed.password or options.get("password"))
            token = option("token", token, options.get("token"))
            secure_bundle = option("secure_bundle", secure_bundle, options.get("secure_bundle"))
            local_dc = option("local_dc", local_dc, options.get("local_dc"))
            if not astra:
                hosts = [h for h in (parsed.host or "").split(",") if h]
                if not hosts:
                    raise ConfigurationError(f"the cassandra URL {parsed} names no host")
                port = parsed.port or 9042
        self._secrets = (password, token)
        if keyspace is None and session is not None:
            keyspace = getattr(session, "keyspace", None)
        self._keyspace = q.check_keyspace(keyspace)
        self._prefix = q.check_prefix(option("prefix", prefix, options.get("prefix")) or q.DEFAULT_PREFIX)
        fields = range_fields if range_fields is not None else options.get("range_fields", "")
        if range_fields is not None and "range_fields" in options:
            raise ConfigurationError("range_fields is given twice: as an argument and in the URL; give it once")
        self._range_fields = q.check_range_fields(fields)
        if self._range_fields:
            self.capabilities = dataclasses.replace(type(self).capabilities,
                                                    filter_operators=q.SUPPORTED | q.RANGES)
        level = option("consistency", consistency, options.get("consistency")) or "LOCAL_QUORUM"
        self._consistency = ConsistencyLevel.name_to_value.get(str(level).upper())
        if self._consistency is None:
            raise ConfigurationError(f"unknown cassandra consistency level {level!r}; use e.g. LOCAL_QUORUM or QUORUM")
        self._timeout = seconds_option("timeout", option("timeout", timeout, options.get("timeout")), zero_ok=False)
        self._concurrency = count_option("concurrency", option("concurrency", concurrency, options.get("concurrency")),
                                         64)
        self._ann_limit = count_option("ann_limit", option("ann_limit", ann_limit, options.get("ann_limit")),
                                       q.ANN_MAX_LIMIT)
        use_ssl = flag_option("ssl", options.get("ssl"), False)
        if session is not None:
            self._session = session
            self._where = f"the given Cassandra session (keyspace {self._keyspace!r})"
        else:
            if astra and (not secure_bundle or not token):
                raise ConfigurationError("cassandra+astra URLs need secure_bundle=<path to the bundle zip> and "
                                         "token=<AstraCS:... application token>")
            self._where = (f"cassandra+astra keyspace {self._keyspace!r}" if astra
                           else f"cassandra://{','.join(hosts)}:{port}/{self._keyspace}")
            kwargs: dict[str, Any] = dict(cluster_options or {})
            policy = TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=local_dc))
            kwargs.setdefault("execution_profiles", {EXEC_PROFILE_DEFAULT: ExecutionProfile(
                load_balancing_policy=policy, consistency_level=self._consistency,
                request_timeout=self._timeout or 30.0)})
            if astra:
                kwargs["cloud"] = {"secure_connect_bundle": secure_bundle}
                kwargs["auth_provider"] = PlainTextAuthProvider("token", token)
            else:
                kwargs.update(contact_points=hosts, port=port)
                if username is not None or password is not None:
                    kwargs["auth_provider"] = PlainTextAuthProvider(username or "", password or "")
                if use_ssl:
                    kwargs.setdefault("ssl_context", ssl.create_default_context())
            try:
                self._cluster = Cluster(**kwargs)
                self._session = self._cluster.connect()
            except Exception as exc:
                self._engine_close()
                raise self._translate_error(exc, "connect") from exc
        with self._call("create the catalog table"):
            self._execute(q.create_catalog(self._keyspace, self._prefix), (), ddl=True)

    def __repr__(self) -> str:
        return f"CassandraKnowledgeStore({self._where}, prefix={self._prefix!r})"

    def _engine_close(self) -> None:
        if self._cluster is not None:  # a cluster this store made (not the caller's session)
            self._cluster.shutdown()

    # -- plumbing -------------------------------------------------------------------------------------

    def _translate_error(self, exc: Exception, what: str) -> StorebridgeError:
        text = mask_secrets(exc, *self._secrets)
        if isinstance(exc, AuthenticationFailed) or (
                isinstance(exc, NoHostAvailable) and any(isinstance(e, AuthenticationFailed)
                                                         for e in getattr(exc, "errors", {}).values())):
            return ConfigurationError(f"cassandra {what}: {self._where} refused the credentials; check the user name "
                                      f"and password or token ({text})")
        if isinstance(exc, Unauthorized):
            return OperationFailedError(f"cassandra {what}: the user may not do this on {self._where} ({text})")
        if isinstance(exc, (NoHostAvailable, OperationTimedOut, Unavailable, ConnectionError, TimeoutError)):
            return ConnectionFailedError(f"cassandra {what}: cannot reach enough replicas of {self._where} ({text})")
        if isinstance(exc, InvalidRequest) and "does not exist" in str(exc) and "eyspace" in str(exc):
            return ConfigurationError(f"cassandra {what}: keyspace {self._keyspace!r} does not exist; create it "
                                      f"(CREATE KEYSPACE ... WITH replication = ...) ({text})")
        return OperationFailedError(f"cassandra {what} failed on {self._where}: {text}")

    def _statement(self, cql: str) -> Any:
        """A prepared statement (cached; the statement texts are few: one per table and filter shape)."""
        with self._prepared_lock:
            found = self._prepared.get(cql)
            if found is not None:
                self._prepared.move_to_end(cql)
                return found
        prepared = self._session.prepare(cql)
        prepared.consistency_level = self._consistency
        with self._prepared_lock:
            self._prepared[cql] = prepared
            while len(self._prepared) > 512:
                self._prepared.popitem(last=False)
        return prepared

    def _execute(self, cql: str, values: tuple[Any, ...] | list[Any], *, ddl: bool = False,
                 fetch_size: int | None = None) -> Any:
        if ddl:
            statement = SimpleStatement(cql, consistency_level=self._consistency)
            return self._session.execute(statement, timeout=max(self._timeout or 0, 60.0))
        bound = self._statement(cql).bind(tuple(values))
        if fetch_size is not None:
            bound.fetch_size = fetch_size
        return self._session.execute(bound)

    def _execute_many(self, cql: str, rows: list[tuple[Any, ...]], what: str, ids: list[str]) -> list[Any]:
        """Run one prepared statement for many rows concurrently; any failure raises, naming the rows."""
        if not rows:
            return []
        results = execute_concurrent_with_args(self._session, self._statement(cql), rows,
                                               concurrency=self._concurrency, raise_on_first_error=False)
        failed = [(doc_id, outcome) for doc_id, (ok, outcome) in zip(ids, results) if not ok]
        if failed:
            detail = "; ".join(f"{doc_id!r}: {mask_secrets(error, *self._secrets)}" for doc_id, error in failed[:5])
            raise OperationFailedError(f"cassandra {what} failed for {len(failed)} of {len(rows)} documents on "
                                       f"{self._where} (the others went through): {detail}")
        return [outcome for _, outcome in results]

    def _table(self, info: CollectionInfo) -> _Table:
        table = self._tables.get(info.name)
        if table is None:  # pragma: no cover - _engine_describe runs before every operation
            raise OperationFailedError(f"no table known for collection {info.name!r}")
        return table

    # -- collections ----------------------------------------------------------------------------------

    def _engine_describe(self, name: str) -> CollectionInfo | None:
        row = self._execute(q.select_collection(self._keyspace, self._prefix), (name,)).one()
        if row is None:
            self._tables.pop(name, None)
            return None
        table_name, dimension, distance, fields, layout = row[0], row[1], row[2], row[3], row[4]
        try:
            if layout != q.LAYOUT:
                raise ValueError(f"layout {layout!r}")
            info = CollectionInfo(name, int(dimension), Distance.parse(distance))
            q.quote(table_name)
            self._tables[name] = _Table(table_name, q.check_range_fields(list(fields or ())))
        except (ValueError, TypeError, StorebridgeError) as exc:
            raise OperationFailedError(f"the catalog row of collection {name!r} is not one this version of "
                                       f"storebridge wrote ({exc})") from None
        return info

    def _engine_create(self, info: CollectionInfo) -> None:
        table = q.new_table_name(self._prefix, info.name)
        claim = self._execute(q.claim_collection(self._keyspace, self._prefix),
                              (info.name, table, info.dimension, info.distance.value, list(self._range_fields),
                               q.LAYOUT))
        if not claim.was_applied:  # created meanwhile by another store
            existing = self._engine_describe(info.name)
            if existing != info:
                raise AlreadyExistsError(f"knowledge collection {info.name!r} was created meanwhile as {existing}")
            return
        try:
            self._execute(q.create_table(self._keyspace, table, info.dimension, self._range_fields), (), ddl=True)
            for statement in q.create_indexes(self._keyspace, table, info.distance, self._range_fields):
                self._execute(statement, (), ddl=True)
            self._wait_for_indexes(table)
        except Exception as exc:
            try:  # give the name back, so a retry can create it
                self._execute(q.release_collection(self._keyspace, self._prefix), (info.name,))
                self._execute(q.drop_table(self._keyspace, table), (), ddl=True)
            except Exception as cleanup:  # noqa: BLE001 - reported with the original error, not swallowed
                raise OperationFailedError(
                    f"creating collection {info.name!r} failed ({mask_secrets(exc, *self._secrets)}), and removing "
                    f"its half-made table {table!r} failed too ({mask_secrets(cleanup, *self._secrets)}); drop it "
                    "with drop_collection") from exc
            raise
        self._tables[info.name] = _Table(table, self._range_fields)

    def _wait_for_indexes(self, table: str, limit: float = 120.0) -> None:
        """Return once every SAI index of ``table`` is queryable on the coordinator (servers without
        ``system_views.sai_column_indexes`` are not asked)."""
        wanted = set(q.index_names(table, self._range_fields))
        ready: set[str] = set()
        for _ in poll(limit, delay=0.2, most=0.2):
            try:  # a node-local virtual table: read at ONE
                status = self._session.prepare(q.index_status(self._keyspace))
                status.consistency_level = ConsistencyLevel.ONE
                rows = self._session.execute(status.bind((self._keyspace,)))
            except InvalidRequest:
                return  # no such view (not Apache Cassandra 5): the driver's schema agreement is all there is
            ready = {row[0] for row in rows if row[0] in wanted and row[1]}
            if ready == wanted:
                return
        raise OperationFailedError(f"the SAI indexes {sorted(wanted - ready)} of table {table!r} are not queryable "
                                   f"after {limit:.0f} s")

    def _engine_drop(self, name: str) -> None:
        table = self._tables.get(name)
        self._execute(q.release_collection(self._keyspace, self._prefix), (name,))
        self._tables.pop(name, None)
        if table is not None:
            self._execute(q.drop_table(self._keyspace, table.name), (), ddl=True)

    def _engine_names(self) -> list[str]:
        return [row[0] for row in self._execute(q.list_collections(self._keyspace, self._prefix), ())]

    # -- writes ---------------------------------------------------------------------------------------

    def _engine_write(self, info: CollectionInfo, documents: list[KnowledgeDocument], vectors: np.ndarray) -> None:
        table = self._table(info)
        rows = []
        for doc, vector in zip(documents, vectors, strict=True):
            equal, contains = q.indexed(doc.metadata)
            rows.append((doc.id, doc.content, doc.source_id, metadata_json(doc), _vector_bytes(vector), equal,
                         contains, _engine_vector(vector, info.distance),
                         *q.range_values(doc.metadata, table.range_fields)))
        self._execute_many(q.insert_row(self._keyspace, table.name, table.range_fields), rows, "write",
                           [doc.id for doc in documents])

    def _engine_existing(self, info: CollectionInfo, ids: list[str]) -> list[str]:
        table = self._table(info)
        results = self._execute_many(q.select_ids(self._keyspace, table.name), [(i,) for i in ids], "read", ids)
        return [row[0] for result in results for row in result]

    def _rows(self, info: CollectionInfo, ids: list[str]) -> list[Any]:
        table = self._table(info)
        results = self._execute_many(q.select_rows(self._keyspace, table.name), [(i,) for i in ids], "read", ids)
        return [row for result in results for row in result]

    def _engine_delete(self, info: CollectionInfo, ids: list[str] | None, where: Filter | None) -> int:
        table = self._table(info)
        compiled = q.compile_filter(where, table.range_fields)  # refuses what SAI cannot evaluate, in every case
        if compiled.never:
            return 0
        if ids is not None:
            doomed = [row[0] for row in self._rows(info, ids)
                      if where is None or evaluate(where, json.loads(row[3] or "{}"))]
        else:
            doomed = [row[0] for row in self._execute(q.matching_ids(self._keyspace, table.name, compiled),
                                                      compiled.values)]
        self._execute_many(q.delete_row(self._keyspace, table.name), [(i,) for i in doomed], "delete", doomed)
        return len(doomed)

    # -- reads ----------------------------------------------------------------------------------------

    @staticmethod
    def _document(row: Any, info: CollectionInfo, with_vector: bool) -> tuple[KnowledgeDocument, np.ndarray]:
        doc_id, content, source, meta, raw = row[0], row[1], row[2], row[3], row[4]
        vector = np.frombuffer(bytes(raw or b""), dtype="<f4").astype(np.float32)
        if vector.shape != (info.dimension,):
            raise OperationFailedError(f"the row {doc_id!r} of {info.name!r} holds {vector.shape[0]} vector values, "
                                       f"not {info.dimension}; it was not written by storebridge")
        doc = KnowledgeDocument(id=doc_id, content=content or "", metadata=json.loads(meta or "{}"), source_id=source,
                                embedding=vector.tolist() if with_vector else None)
        return doc, vector

    def _engine_nearest(self, info: CollectionInfo, query: np.ndarray, limit: int,
                        where: Filter | None) -> list[Candidate]:
        k = limit - self.rerank_margin
        if k > self._ann_limit:
            raise ValidationError(f"k={k} is more than Cassandra's ANN queries return (LIMIT {self._ann_limit}); "
                                  "ask for fewer, or page through the collection with scroll")
        limit = min(limit, self._ann_limit)
        table = self._table(info)
        compiled = q.compile_filter(where, table.range_fields)
        if compiled.never:
            return []
        rows = self._execute(q.search(self._keyspace, table.name, compiled),
                             (*compiled.values, query.tolist(), limit), fetch_size=limit)
        return [Candidate(*self._document(row, info, False)) for row in rows]

    def _engine_get(self, info: CollectionInfo, ids: list[str], with_vectors: bool) -> list[KnowledgeDocument]:
        return [self._document(row, info, with_vectors)[0] for row in self._rows(info, ids)]

    def _engine_count(self, info: CollectionInfo, where: Filter | None) -> int:
        table = self._table(info)
        compiled = q.compile_filter(where, table.range_fields)
        if compiled.never:
            return 0
        return int(self._execute(q.count(self._keyspace, table.name, compiled), compiled.values).one()[0])

    def _engine_page(self, info: CollectionInfo, limit: int, cursor: str | None, where: Filter | None,
                     with_vectors: bool) -> DocumentPage:
        after: int | None = None
        if cursor is not None:
            if not _TOKEN_RE.fullmatch(cursor) or not -_INT64 <= int(cursor) < _INT64:
                raise ValidationError(f"invalid scroll cursor {cursor!r}; pass the next_cursor of the previous page")
            after = int(cursor)
        table = self._table(info)
        compiled = q.compile_filter(where, table.range_fields)
        if compiled.never:
            return DocumentPage([], None)
        values = ((after,) if after is not None else ()) + compiled.values + (limit + 1,)
        rows = list(self._execute(q.page(self._keyspace, table.name, compiled, after is not None), values,
                                  fetch_size=limit + 1))
        page = rows[:limit]
        documents = [self._document(row, info, with_vectors)[0] for row in page]
        return DocumentPage(documents, str(page[-1][5]) if len(rows) > limit else None)


__all__ = ["CassandraKnowledgeStore"]
