"""The ``couchbase`` knowledge store: Couchbase Server 7.6+ through the official ``couchbase`` SDK 4.x.

Targets Couchbase Server 7.6.4 and later (Search vector indexes arrived in 7.6.0; pre-filtered vector
search, which filtered searches use, in 7.6.4) and the Python SDK 4.x (written against 4.6.3). The live
conformance suite runs only when ``STOREBRIDGE_TEST_COUCHBASE_URL`` is set; it has NOT run against a
Couchbase server on the project's machines (no server can be installed there). What the unit tests check
without a server: the document bodies, the Search index definition, every SQL++ statement and Search query
this store sends (:mod:`._query`), URL parsing, masking, error mapping, and the calls made on a fake client.

Layout. Each storebridge collection is a Couchbase collection ``<collection_prefix><name>`` (default prefix
``sbk_``; Couchbase collection names may not start with ``_``, ours may) in the URL's bucket and scope, with:

* the documents (bodies and keys: see :mod:`._query`), plus ``_sb:info`` holding dimension and distance,
  written last when a collection is created (a collection without it does not exist for this store);
* a primary SQL++ index (count, delete by filter, scroll: ``scan_consistency=request_plus``, so they see
  every write that returned before them);
* a scoped Search index ``<collection>_sbvec`` with the vector field (``dot_product`` for cosine, on unit
  vectors, and for dot; ``l2_norm`` for l2) and the typed metadata copies ``sbf``.
``create_collection`` returns once the collection answers KV requests, the primary index is online and the
Search index answers queries (``ready_timeout``, default 120 s, else ``OperationFailedError``).

Search. ``k + 16`` candidates come from the Search service (``VectorQuery`` with the compiled prefilter,
``SearchOptions(limit=k+16, consistent_with=...)``: the mutation tokens of every write this store object
made, so it reads its own writes); they are read back through KV (the metadata bytes as written, the
original vector) and re-scored exactly in float64 by :mod:`storebridge.engine`. Search's vector index is
approximate on large collections: ``recall_floor`` is declared 0.9. At most 10,000 candidates per search.
Writes by OTHER clients reach the Search index eventually: until then a search can miss them (never return
a document that does not match: results are checked against the exact filter after the KV read).

Filters: every operator (FILTERS.md's meaning, see :mod:`._query`), top-level keys only; nested (dotted)
keys raise ``UnsupportedFilterError``. Writes are KV ``upsert_multi`` per batch of 256 (not atomic across
documents: a failure names what was not written); deletes select keys with SQL++ and remove them by KV.

URL: ``couchbase://host?bucket=B&scope=S&username=U&password=P`` (``couchbases://`` for TLS; user and
password may also be ``couchbase://U:P@host``; ``collection_prefix=`` optional). The password is masked in
every repr, log and error. ``client=`` takes a connected ``couchbase.cluster.Cluster`` (not closed by the
store) with ``bucket=``/``scope=`` arguments.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np

from storebridge.engine import Candidate, EngineKnowledgeStore, option, poll, url_options
from storebridge.errors import (
    AlreadyExistsError,
    CollectionNotFoundError,
    ConfigurationError,
    ConnectionFailedError,
    NotSupportedError,
    OperationFailedError,
    StorebridgeError,
)
from storebridge.filters import Filter, evaluate
from storebridge.knowledge import KnowledgeCapabilities
from storebridge.models import CollectionInfo, Distance, DocumentPage, KnowledgeDocument
from storebridge.urls import mask_secrets, parse_url

from ._query import (
    INFO_KEY,
    VECTOR_FIELD,
    body,
    compile_fts,
    count_statement,
    decode_cursor,
    document_key,
    encode_cursor,
    index_name,
    index_params,
    info_body,
    keys_statement,
    keyspace,
    page_statement,
    parse_body,
    validate_bucket,
    validate_prefix,
    validate_scope,
)

SCHEMES = frozenset({"couchbase", "couchbases"})
URL_OPTIONS = frozenset({"bucket", "scope", "username", "password", "collection_prefix"})
#: The most hits one Search request returns (the Search service's default result window).
MAX_CANDIDATES = 10_000
T = TypeVar("T")


def parse_couchbase_url(url: str) -> dict[str, Any]:
    """``connection_string``, ``bucket``, ``scope``, ``username``, ``password``, ``collection_prefix``."""
    parsed = parse_url(url)
    if parsed.scheme not in SCHEMES or parsed.driver is not None:
        raise ConfigurationError(f"not a Couchbase URL: {parsed}; use couchbase://host?bucket=B&scope=S&username=U"
                                 "&password=P (couchbases:// for TLS)")
    query = url_options(parsed.query, URL_OPTIONS, "Couchbase")
    if not parsed.host:
        raise ConfigurationError(f"the Couchbase URL {parsed} names no host")
    if parsed.path not in ("", "/"):
        raise ConfigurationError(f"the Couchbase URL {parsed} has a path; give the bucket as ?bucket=")
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    return {
        "connection_string": f"{parsed.scheme}://{host}" + (f":{parsed.port}" if parsed.port else ""),
        "bucket": query.get("bucket"),
        "scope": query.get("scope"),
        "username": option("username", parsed.username, query.get("username")),
        "password": option("password", parsed.password, query.get("password")),
        "collection_prefix": query.get("collection_prefix"),
    }


class CouchbaseKnowledgeStore(EngineKnowledgeStore):
    """Knowledge collections as Couchbase collections with a Search vector index (see the module docstring)."""

    backend_name = "couchbase"
    write_batch = 256
    capabilities = KnowledgeCapabilities(  # every operator, top-level keys, every distance
        recall_floor=0.9,
        max_batch=256,
        notes=(
            "vector search: Couchbase Search (7.6.4+ for filtered searches); count/delete/scroll: SQL++",
            "writes by other clients reach the Search index eventually",
            "numbers are compared as doubles: integers beyond 2**53 round",
        ),
    )

    def __init__(self, url: str | None = None, *, bucket: str | None = None, scope: str | None = None,
                 username: str | None = None, password: str | None = None, collection_prefix: str | None = None,
                 client: Any = None, connect_timeout: float = 10.0, ready_timeout: float = 120.0,
                 **cluster_options: Any) -> None:
        self._closed = True  # until connected
        if (url is None) == (client is None):
            raise ConfigurationError("pass a couchbase:// URL or a connected client= (a couchbase Cluster), not both")
        options: dict[str, Any] = {"bucket": None, "scope": None, "username": None, "password": None,
                                   "collection_prefix": None, "connection_string": None}
        if url is not None:
            options = parse_couchbase_url(url)
        self._secrets = tuple(s for s in (options["password"], password) if s)
        self._bucket_name = validate_bucket(option("bucket", bucket, options["bucket"]))
        self._scope_name = validate_scope(option("scope", scope, options["scope"]) or "_default")
        self._prefix = validate_prefix(
            option("collection_prefix", collection_prefix, options["collection_prefix"]) or "sbk_")
        self._ready_timeout = float(ready_timeout)
        where = options["connection_string"] or "the given Couchbase cluster"
        self._where = f"Couchbase {where} bucket {self._bucket_name!r} scope {self._scope_name!r}"
        self._state_lock = threading.Lock()
        self._tokens: dict[tuple[str, int], Any] = {}  # newest mutation token per (bucket, partition)
        from couchbase.exceptions import CouchbaseException

        if client is None:
            user = option("username", username, options["username"])
            secret = option("password", password, options["password"])
            if not user or not secret:
                raise ConfigurationError("the Couchbase URL needs username= and password= (or user:password@host)")
            from couchbase.auth import PasswordAuthenticator
            from couchbase.cluster import Cluster
            from couchbase.diagnostics import ServiceType
            from couchbase.options import ClusterOptions, ClusterTimeoutOptions, WaitUntilReadyOptions

            if "timeout_options" not in cluster_options:
                wait = timedelta(seconds=connect_timeout)
                cluster_options["timeout_options"] = ClusterTimeoutOptions(bootstrap_timeout=wait, connect_timeout=wait)
            try:
                client = self._owned_client = Cluster(
                    options["connection_string"], ClusterOptions(PasswordAuthenticator(user, secret), **cluster_options))
                client.wait_until_ready(timedelta(seconds=connect_timeout), WaitUntilReadyOptions(
                    service_types=[ServiceType.KeyValue, ServiceType.Query, ServiceType.Search]))
            except CouchbaseException as exc:
                raise self._translate_error(exc, "connect") from exc
        elif username or password or cluster_options:
            raise ConfigurationError("with client=, give no username, password or cluster options")
        self._cluster = client
        try:
            self._bucket = client.bucket(self._bucket_name)
            self._scope = self._bucket.scope(self._scope_name)
        except CouchbaseException as exc:
            raise self._translate_error(exc, "open bucket") from exc
        self._closed = False

    def __repr__(self) -> str:
        return f"CouchbaseKnowledgeStore({self._where}, collection_prefix={self._prefix!r})"

    # -- plumbing ---------------------------------------------------------------------------------------

    def _translate_error(self, exc: Exception, what: str) -> StorebridgeError:
        import couchbase.exceptions as cb

        text = f"couchbase {what} failed on {self._where}: {mask_secrets(exc, *self._secrets)}"
        if isinstance(exc, cb.AuthenticationException):
            return ConfigurationError(text + " (check the username, password and the user's roles)")
        if isinstance(exc, (cb.BucketNotFoundException, cb.ScopeNotFoundException)):
            return ConfigurationError(text + " (create the bucket and scope first)")
        if isinstance(exc, cb.CollectionNotFoundException):
            return CollectionNotFoundError(text)
        if isinstance(exc, cb.DocumentExistsException):
            return AlreadyExistsError(text)
        if isinstance(exc, cb.FeatureUnavailableException):
            return NotSupportedError(text + " (vector search needs Couchbase Server 7.6+, prefilters 7.6.4+)")
        if isinstance(exc, cb.AmbiguousTimeoutException):
            return OperationFailedError(text + " (the operation may or may not have been applied)")
        if isinstance(exc, (cb.UnAmbiguousTimeoutException, cb.ServiceUnavailableException,
                            cb.RequestCanceledException, cb.MissingConnectionException)):
            return ConnectionFailedError(text)
        return OperationFailedError(text)

    def _cb_name(self, name: str) -> str:
        return self._prefix + name

    def _collection(self, name: str) -> Any:
        return self._scope.collection(self._cb_name(name))

    def _space(self, name: str) -> str:
        return keyspace(self._bucket_name, self._scope_name, self._cb_name(name))

    def _query(self, statement: str, params: dict[str, Any]) -> list[Any]:
        from couchbase.n1ql import QueryScanConsistency
        from couchbase.options import QueryOptions

        result = self._scope.query(statement, QueryOptions(named_parameters=params,
                                                           scan_consistency=QueryScanConsistency.REQUEST_PLUS))
        return list(result.rows())

    def _record(self, results: Any) -> None:
        """Keep the newest mutation token per partition of this store's writes (a bounded set), for
        ``consistent_with`` on searches. A result without a token (tokens disabled on the connection)
        leaves nothing to wait for."""
        with self._state_lock:
            for result in results.values():
                token = result.mutation_token() if result is not None else None
                if token is None:
                    continue
                slot = (token.bucket_name, token.partition_id)
                known = self._tokens.get(slot)
                if known is None or known.partition_uuid != token.partition_uuid \
                        or known.sequence_number < token.sequence_number:
                    self._tokens[slot] = token

    def _consistency(self) -> Any:
        """A ``MutationState`` of the tokens kept by :meth:`_record`, or None before the first write."""
        from couchbase.mutation_state import MutationState

        with self._state_lock:
            if not self._tokens:
                return None
            state = MutationState()
            for token in self._tokens.values():
                state.add_mutation_token(token)
            return state

    def _wait(self, what: str, attempt: Callable[[], T], retry_on: tuple[type[BaseException], ...]) -> T:
        """Run ``attempt`` until it stops raising ``retry_on`` (a resource that is still being created)."""
        last: BaseException | None = None
        for _ in poll(self._ready_timeout, delay=0.1):
            try:
                return attempt()
            except retry_on as exc:
                last = exc
        raise OperationFailedError(f"{what} on {self._where} was not ready after {self._ready_timeout:.0f}s: "
                                   f"{mask_secrets(last, *self._secrets)}") from last

    @staticmethod
    def _raise_first(exceptions: dict[str, Any], ignore: tuple[type[BaseException], ...] = ()) -> None:
        """Raise the first per-key exception of a multi operation that is not an expected one."""
        for exc in exceptions.values():
            if exc is not None and not isinstance(exc, ignore):
                raise exc

    # -- collections ------------------------------------------------------------------------------------

    def _engine_describe(self, name: str) -> CollectionInfo | None:
        import couchbase.exceptions as cb

        try:
            data = self._collection(name).get(INFO_KEY).content_as[dict]
        except (cb.DocumentNotFoundException, cb.CollectionNotFoundException):
            return None
        try:
            return CollectionInfo(name, int(data["dimension"]), Distance(data["distance"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise OperationFailedError(f"{INFO_KEY} of collection {name!r} on {self._where} was not written by "
                                       f"storebridge: {exc}") from exc

    def _engine_create(self, info: CollectionInfo) -> None:
        import couchbase.exceptions as cb
        from couchbase.management.options import CreatePrimaryQueryIndexOptions, WatchQueryIndexOptions
        from couchbase.management.search import SearchIndex
        from couchbase.options import SearchOptions
        from couchbase.search import MatchNoneQuery, SearchRequest

        cb_name = self._cb_name(info.name)
        try:
            self._bucket.collections().create_collection(self._scope_name, cb_name)
        except cb.CollectionAlreadyExistsException:
            pass  # left by an interrupted create, or a concurrent one: the steps below are idempotent
        collection = self._collection(info.name)
        self._wait("the new collection", lambda: collection.exists(INFO_KEY),
                   (cb.CollectionNotFoundException, cb.UnAmbiguousTimeoutException))
        indexes = collection.query_indexes()
        self._wait("the primary index", lambda: indexes.create_primary_index(
            CreatePrimaryQueryIndexOptions(ignore_if_exists=True)),
            (cb.KeyspaceNotFoundException, cb.CollectionNotFoundException, cb.InternalServerFailureException))
        indexes.watch_indexes([], WatchQueryIndexOptions(watch_primary=True,
                                                         timeout=timedelta(seconds=self._ready_timeout)))
        search_indexes = self._scope.search_indexes()
        name = index_name(cb_name)
        search_indexes.upsert_index(SearchIndex(
            name=name, source_type="gocbcore", idx_type="fulltext-index", source_name=self._bucket_name,
            params=index_params(self._scope_name, cb_name, info.dimension, info.distance),
            plan_params={"indexPartitions": 1}))

        def probe() -> None:
            search_indexes.get_indexed_documents_count(name)
            list(self._scope.search(name, SearchRequest.create(MatchNoneQuery()), SearchOptions(limit=1)).rows())

        self._wait("the Search index", probe, (cb.SearchIndexNotFoundException, cb.InternalServerFailureException,
                                                cb.ServiceUnavailableException, cb.UnAmbiguousTimeoutException))
        try:
            collection.insert(INFO_KEY, info_body(info.dimension, info.distance))
        except cb.DocumentExistsException:
            existing = self._engine_describe(info.name)
            if existing != info:
                raise AlreadyExistsError(
                    f"knowledge collection {info.name!r} was created concurrently with dimension "
                    f"{getattr(existing, 'dimension', '?')} and distance "
                    f"{getattr(getattr(existing, 'distance', None), 'value', '?')!r}") from None

    def _engine_drop(self, name: str) -> None:
        import couchbase.exceptions as cb

        cb_name = self._cb_name(name)
        try:
            self._collection(name).remove(INFO_KEY)  # gone for this store from here on
        except cb.DocumentNotFoundException:
            pass
        try:
            self._scope.search_indexes().drop_index(index_name(cb_name))
        except cb.SearchIndexNotFoundException:
            pass
        try:
            self._bucket.collections().drop_collection(self._scope_name, cb_name)
        except cb.CollectionNotFoundException:
            pass

    def _engine_names(self) -> list[str]:
        names: list[str] = []
        for scope in self._bucket.collections().get_all_scopes():
            if scope.name != self._scope_name:
                continue
            for spec in scope.collections:
                if spec.name.startswith(self._prefix):
                    name = spec.name[len(self._prefix):]
                    try:
                        name = super()._collection_name(name)
                    except StorebridgeError:
                        continue
                    if self._engine_describe(name) is not None:
                        names.append(name)
        return names

    # -- writes -----------------------------------------------------------------------------------------

    def _engine_existing(self, info: CollectionInfo, ids: list[str]) -> list[str]:
        keys = {document_key(i): i for i in ids}
        result = self._collection(info.name).exists_multi(list(keys))
        self._raise_first(result.exceptions)
        return [keys[k] for k, r in result.results.items() if r.exists]

    def _engine_write(self, info: CollectionInfo, documents: list[KnowledgeDocument], vectors: np.ndarray) -> None:
        bodies = {document_key(doc.id): body(doc, vector, info.distance)
                  for doc, vector in zip(documents, vectors, strict=True)}
        result = self._collection(info.name).upsert_multi(bodies)
        self._record(result.results)
        if not result.all_ok:
            failed = sorted(k for k, e in result.exceptions.items() if e is not None)
            first = next(e for e in result.exceptions.values() if e is not None)
            raise OperationFailedError(
                f"couchbase write of {len(failed)} of {len(bodies)} documents failed on {self._where} (the others "
                f"were written): keys {failed[:5]}: {mask_secrets(first, *self._secrets)}") from first

    def _engine_delete(self, info: CollectionInfo, ids: list[str] | None, where: Filter | None) -> int:
        import couchbase.exceptions as cb

        listed = None if ids is None else [document_key(i) for i in ids]
        if where is None and listed is not None:
            keys = listed
        else:
            statement, params = keys_statement(self._space(info.name), listed, where)
            keys = [str(k) for k in self._query(statement, params)]
        removed = 0
        collection = self._collection(info.name)
        for start in range(0, len(keys), self.write_batch):
            result = collection.remove_multi(keys[start:start + self.write_batch])
            self._record(result.results)
            self._raise_first(result.exceptions, ignore=(cb.DocumentNotFoundException,))
            removed += sum(1 for r in result.results.values() if r is not None)
        return removed

    # -- reads ------------------------------------------------------------------------------------------

    def _fetch(self, info: CollectionInfo, keys: list[str]) -> dict[str, tuple[KnowledgeDocument, np.ndarray]]:
        import couchbase.exceptions as cb

        if not keys:
            return {}
        result = self._collection(info.name).get_multi(keys)
        self._raise_first(result.exceptions, ignore=(cb.DocumentNotFoundException,))
        return {key: parse_body(r.content_as[dict], info.dimension) for key, r in result.results.items()}

    def _engine_get(self, info: CollectionInfo, ids: list[str], with_vectors: bool) -> list[KnowledgeDocument]:
        found = self._fetch(info, [document_key(i) for i in ids])
        return [doc.replace(embedding=vector.tolist()) if with_vectors else doc for doc, vector in found.values()]

    def _engine_count(self, info: CollectionInfo, where: Filter | None) -> int:
        statement, params = count_statement(self._space(info.name), where)
        rows = self._query(statement, params)
        return int(rows[0]) if rows else 0

    def _engine_page(self, info: CollectionInfo, limit: int, cursor: str | None, where: Filter | None,
                     with_vectors: bool) -> DocumentPage:
        after = None if cursor is None else decode_cursor(cursor)
        statement, params = page_statement(self._space(info.name), after, where, limit + 1)
        keys = [str(k) for k in self._query(statement, params)]
        page = keys[:limit]
        found = self._fetch(info, page)
        docs = []
        for key in page:  # a document removed since the query is left out
            if key in found:
                doc, vector = found[key]
                docs.append(doc.replace(embedding=vector.tolist()) if with_vectors else doc)
        return DocumentPage(docs, encode_cursor(page[-1]) if len(keys) > limit else None)

    def _engine_nearest(self, info: CollectionInfo, query: np.ndarray, limit: int,
                        where: Filter | None) -> list[Candidate]:
        from couchbase.options import SearchOptions
        from couchbase.search import RawQuery, SearchRequest
        from couchbase.vector_search import VectorQuery, VectorSearch

        if limit > MAX_CANDIDATES:
            raise NotSupportedError(f"Couchbase Search returns at most {MAX_CANDIDATES} hits; ask for k <= "
                                    f"{MAX_CANDIDATES - self.rerank_margin}")
        prefilter = None
        if where is not None:
            compiled = compile_fts(where)
            if compiled is False:
                return []
            if compiled is not True:
                prefilter = RawQuery(compiled)
        vector_query = VectorQuery(VECTOR_FIELD, [float(x) for x in query], num_candidates=limit, prefilter=prefilter)
        options: dict[str, Any] = {"limit": limit}
        state = self._consistency()
        if state is not None:
            options["consistent_with"] = state
        result = self._scope.search(index_name(self._cb_name(info.name)),
                                    SearchRequest.create(VectorSearch.from_vector_query(vector_query)),
                                    SearchOptions(**options))
        keys = list(dict.fromkeys(str(row.id) for row in result.rows()))
        found = self._fetch(info, keys)
        candidates = []
        for key in keys:
            if key in found:
                doc, vector = found[key]
                if where is None or evaluate(where, doc.metadata):  # a stale index can never add a wrong hit
                    candidates.append(Candidate(doc, vector))
        return candidates


__all__ = ["CouchbaseKnowledgeStore", "parse_couchbase_url"]
