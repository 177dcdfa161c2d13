"""The ``clickhouse`` knowledge store: chDB (embedded ClickHouse) or a ClickHouse server.

Tested with chDB 4.4.0 (the ``chdb`` package; embedded ClickHouse 26.9.2.1) only. A server URL
(``clickhouse://user:pass@host:8123/database``, ``clickhouse+https://``) goes through
``clickhouse-connect``; that path is written but NOT verified here.

Where the data is: ``chdb:///relative/dir`` / ``chdb:////absolute/dir`` / ``path=``. chDB runs one
embedded server per process and it can only ever be on ONE directory: stores on the same directory
share one reference-counted ``chdb.session.Session``; a second directory while one is open raises
``ConfigurationError``. Use ``database=`` (a ClickHouse database, default ``storebridge``) to keep
independent data sets apart in one directory.

Data model (``<database>.<prefix>knowledge_collections`` and ``<prefix>knowledge_documents``, MergeTree):
documents are ``(collection, id, content, source_id, metadata, embedding)`` ordered by
``(collection, id)``; metadata is JSON text (exact round-trip, None values kept), embeddings
``Array(Float32)``. Collection names are validated by the core and travel as quoted string values, never
identifiers, so no mapping is needed.

Values: chDB's ``params=`` serialises Python values naively (a str containing a quote fails to parse), so
it is not used. String values are written as ClickHouse string literals by :func:`quote` (backslash,
quote and every control character escaped as ``\\xHH``); rows are inserted with ``FORMAT JSONEachRow``
(Python's JSON encoder with ``ensure_ascii``, parsed by ClickHouse's JSON reader, never by the SQL
parser). Numbers are formatted from validated finite floats/ints.

Native: exact brute-force search ``ORDER BY cosineDistance / L2Distance / -dotProduct LIMIT k+margin``
over the collection, re-scored in float64 with :func:`storebridge.vectors.exact_scores` (recall 1.0).
Not native: filters are evaluated client-side (``client_side_filters=True``) with
:func:`storebridge.filters.matcher` while paging through the collection (``JSONExtract*`` cannot tell
1 from 1.0 from true the way FILTERS.md requires without a lot of care, not attempted in this version).

Writes: insert checks the ids do not exist, then inserts (one INSERT per sequence: all or nothing on the
engine side; the check and the insert are not one transaction, ClickHouse has none). Upsert is a
lightweight ``DELETE FROM ... WHERE id IN`` followed by an INSERT (not atomic: a crash in between loses
the replaced documents). Deletes are lightweight ``DELETE FROM``.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from typing import Any

import numpy as np

from storebridge.errors import (
    AlreadyExistsError,
    BackendNotAvailableError,
    CollectionNotFoundError,
    ConfigurationError,
    ConnectionFailedError,
    OperationFailedError,
    StorebridgeError,
    StoreClosedError,
    ValidationError,
)
from storebridge.filters import ALL_OPS, FilterLike, matcher, parse_filter, require_operators
from storebridge.identifiers import validate_collection_name, validate_table_prefix
from storebridge.knowledge import KnowledgeCapabilities, KnowledgeStore, Vector
from storebridge.models import CollectionInfo, Distance, DocumentPage, KnowledgeDocument, SearchHit
from storebridge.urls import mask_secrets, parse_url
from storebridge.vectors import (
    BATCH_SIZE,
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

PAGE = 1000
_MARGIN = 16
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_NATIVE = {Distance.COSINE: "cosineDistance", Distance.L2: "L2Distance", Distance.DOT: "dotProduct"}


def quote(value: str) -> str:
    """A ClickHouse string literal for ``value``: backslash, quote and control characters escaped."""
    out = ["'"]
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "'":
            out.append("\\'")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append("'")
    return "".join(out)


def quote_list(values: Iterable[str]) -> str:
    return "[" + ",".join(quote(v) for v in values) + "]"


def _floats(vector: np.ndarray) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


class _Chdb:
    """One chDB session per process (chDB's embedded server holds one directory), reference-counted."""

    def __init__(self, path: str) -> None:
        try:
            import chdb.session
        except ImportError as exc:  # pragma: no cover
            raise BackendNotAvailableError('the clickhouse store needs chdb: pip install "storebridge[clickhouse]"') \
                from exc
        self.path = path
        self.lock = threading.RLock()
        self.refs = 0
        try:
            self.session = chdb.session.Session(path)
        except Exception as exc:
            raise ConfigurationError(f"cannot open chDB on {path!r}: {exc}; chDB holds one directory per process, "
                                     "close the stores on the other directory first") from exc

    def rows(self, sql: str) -> list[dict[str, Any]]:
        with self.lock:
            text = self.session.query(sql, "JSONEachRow").bytes().decode("utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def execute(self, sql: str) -> None:
        with self.lock:
            self.session.query(sql)

    def close(self) -> None:
        with self.lock, suppress(Exception):
            self.session.close()


class _Server:
    """A ClickHouse server through clickhouse-connect (NOT verified by the tests here)."""

    def __init__(self, **kwargs: Any) -> None:
        try:
            import clickhouse_connect
        except ImportError as exc:
            raise BackendNotAvailableError("a ClickHouse server needs clickhouse-connect: pip install clickhouse-connect") \
                from exc
        self.lock = threading.RLock()
        self.refs = 1
        self.client = clickhouse_connect.get_client(**kwargs)

    def rows(self, sql: str) -> list[dict[str, Any]]:
        with self.lock:
            text = self.client.raw_query(sql, fmt="JSONEachRow").decode("utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def execute(self, sql: str) -> None:
        with self.lock:
            self.client.raw_query(sql)

    def close(self) -> None:
        with suppress(Exception):
            self.client.close()


_engines: dict[str, _Chdb] = {}
_guard = threading.Lock()


class ClickHouseKnowledgeStore(KnowledgeStore):
    """Knowledge store on ClickHouse (chDB embedded, or a server). Thread-safe (calls serialised)."""

    backend_name = "clickhouse"
    capabilities = KnowledgeCapabilities(
        filter_operators=ALL_OPS,
        nested_keys=True,
        client_side_filters=True,
        distances=frozenset(Distance),
        recall_floor=1.0,
        persistent=True,
        max_batch=BATCH_SIZE,
        notes=("exact brute-force search in ClickHouse, re-scored in float64",
               "filters are evaluated client-side after paging through the collection",
               "upsert is delete + insert (not atomic)"),
    )

    def __init__(self, url: str | None = None, *, path: str | os.PathLike[str] | None = None,
                 database: str | None = None, table_prefix: str = "sb_", username: str | None = None,
                 password: str | None = None) -> None:
        self.table_prefix = validate_table_prefix(table_prefix)
        self._password = password
        server: dict[str, Any] | None = None
        query: dict[str, str] = {}
        if url is not None and path is not None:
            raise ConfigurationError("give either url or path, not both")
        if url is None:
            if path is None:
                raise ConfigurationError("the clickhouse store needs chdb:///dir, clickhouse://host or path=")
            directory = os.path.abspath(os.fspath(path))
        else:
            parsed = parse_url(url)
            query = dict(parsed.query)
            if parsed.scheme == "chdb" or parsed.driver == "chdb":
                raw = (parsed.host or "") + parsed.path if parsed.host else parsed.file_path
                if not raw:
                    raise ConfigurationError(f"{parsed}: chdb needs a directory, e.g. chdb:///data/knowledge")
                directory = os.path.abspath(raw)
            elif parsed.scheme == "clickhouse" and parsed.host:
                segments = [s for s in parsed.path.split("/") if s]
                if segments:
                    query.setdefault("database", segments[0])
                self._password = password or parsed.password
                server = {"host": parsed.host, "port": parsed.port or (8443 if parsed.driver == "https" else 8123),
                          "username": username or parsed.username or "default", "password": self._password or "",
                          "secure": parsed.driver == "https"}
                directory = ""
            else:
                raise ConfigurationError(f"not a ClickHouse URL: {parsed}; use chdb:///dir or clickhouse://host:8123")
        self.database = database or query.get("database") or "storebridge"
        if not _IDENT.fullmatch(self.database):
            raise ConfigurationError(f"database must be an identifier ([A-Za-z_][A-Za-z0-9_]*), got {self.database!r}")
        self.url = directory or f"clickhouse://{server['host'] if server else ''}"
        self._closed = False
        self._key: str | None = None
        if server is not None:
            try:
                self._engine: Any = _Server(**server)
            except StorebridgeError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise ConnectionFailedError(f"cannot connect to ClickHouse: {mask_secrets(exc, self._password)}") \
                    from None
        else:
            with _guard:
                engine = _engines.get(directory)
                if engine is None:
                    if _engines:
                        other = next(iter(_engines))
                        raise ConfigurationError(
                            f"chDB is already open on {other!r} in this process; it holds one directory per "
                            f"process (close those stores, or use database= to separate data sets)")
                    engine = _Chdb(directory)
                    _engines[directory] = engine
                engine.refs += 1
            self._engine = engine
            self._key = directory
        self._coll = f"`{self.database}`.`{self.table_prefix}knowledge_collections`"
        self._docs = f"`{self.database}`.`{self.table_prefix}knowledge_documents`"
        try:
            self._exec("migrate", f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
            self._exec("migrate", f"CREATE TABLE IF NOT EXISTS {self._coll} (name String, dimension UInt32, "
                       "distance String) ENGINE = MergeTree ORDER BY name")
            self._exec("migrate", f"CREATE TABLE IF NOT EXISTS {self._docs} (collection String, id String, "
                       "content String, source_id Nullable(String), metadata String, embedding Array(Float32)) "
                       "ENGINE = MergeTree ORDER BY (collection, id)")
        except BaseException:
            self._release()
            raise

    def __repr__(self) -> str:
        return f"ClickHouseKnowledgeStore(url={self.url!r}, database={self.database!r})"

    def _release(self) -> None:
        with _guard:
            self._engine.refs -= 1
            last = self._engine.refs <= 0
            if last and self._key is not None:
                _engines.pop(self._key, None)
        if last:
            self._engine.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._release()

    # -- plumbing -------------------------------------------------------------------------------------

    def _wrap(self, action: str, fn: Any, sql: str) -> Any:
        if self._closed:
            raise StoreClosedError(f"the clickhouse store on {self.url!r} is closed")
        try:
            return fn(sql)
        except StorebridgeError:
            raise
        except Exception as exc:
            raise OperationFailedError(
                f"ClickHouse {action} on {self.url!r} failed: {mask_secrets(exc, self._password)}"
            ) from exc

    def _rows(self, action: str, sql: str) -> list[dict[str, Any]]:
        return self._wrap(action, self._engine.rows, sql)  # type: ignore[no-any-return]

    def _exec(self, action: str, sql: str) -> None:
        self._wrap(action, self._engine.execute, sql)

    def _info(self, name: str) -> CollectionInfo:
        rows = self._rows("read", f"SELECT dimension, distance FROM {self._coll} WHERE name = {quote(name)} LIMIT 1")
        if not rows:
            raise CollectionNotFoundError(f"knowledge collection {name!r} does not exist")
        return CollectionInfo(name, int(rows[0]["dimension"]), Distance.parse(rows[0]["distance"]))

    def _filter(self, filter: FilterLike) -> Any:
        tree = parse_filter(filter)
        if tree is None:
            return None
        caps = self.capabilities
        require_operators(tree, caps.filter_operators, backend=self.backend_name, nested_keys=caps.nested_keys)
        return matcher(tree)

    @staticmethod
    def _columns(embeddings: bool) -> str:
        return "id, content, source_id, metadata" + (", embedding" if embeddings else "")

    @staticmethod
    def _document(row: dict[str, Any], embeddings: bool) -> KnowledgeDocument:
        return KnowledgeDocument(id=row["id"], content=row["content"], metadata=json.loads(row["metadata"]),
                                 source_id=row.get("source_id"),
                                 embedding=[float(x) for x in row["embedding"]] if embeddings else None)

    def _pages(self, name: str, columns: str, after: str | None = None) -> Iterator[list[dict[str, Any]]]:
        while True:
            cond = "" if after is None else f" AND id > {quote(after)}"
            rows = self._rows("read", f"SELECT {columns} FROM {self._docs} WHERE collection = {quote(name)}{cond} "
                                      f"ORDER BY id LIMIT {PAGE}")
            if rows:
                yield rows
            if len(rows) < PAGE:
                return
            after = rows[-1]["id"]

    # -- collections ----------------------------------------------------------------------------------

    def create_collection(self, name: str, dimension: int, distance: Distance | str = Distance.COSINE, *,
                          exist_ok: bool = True) -> CollectionInfo:
        name = validate_collection_name(name)
        dimension = positive_int(dimension, "dimension")
        metric = Distance.parse(distance)
        wanted = CollectionInfo(name, dimension, metric)
        with self._engine.lock:
            try:
                existing = self._info(name)
            except CollectionNotFoundError:
                self._exec("create collection", f"INSERT INTO {self._coll} (name, dimension, distance) VALUES "
                                                f"({quote(name)}, {dimension}, {quote(metric.value)})")
                return wanted
        if not exist_ok:
            raise AlreadyExistsError(f"knowledge collection {name!r} exists already; pass exist_ok=True to reuse it")
        if existing != wanted:
            raise AlreadyExistsError(
                f"knowledge collection {name!r} exists with dimension {existing.dimension} and distance "
                f"{existing.distance.value!r}, not {dimension} and {metric.value!r}; drop it or use another name"
            )
        return existing

    def get_collection(self, name: str) -> CollectionInfo:
        return self._info(validate_collection_name(name))

    def list_collections(self) -> list[str]:
        return sorted({r["name"] for r in self._rows("list", f"SELECT name FROM {self._coll}")})

    def drop_collection(self, name: str) -> bool:
        name = validate_collection_name(name)
        with self._engine.lock:
            try:
                self._info(name)
            except CollectionNotFoundError:
                return False
            self._exec("drop collection", f"DELETE FROM {self._docs} WHERE collection = {quote(name)}")
            self._exec("drop collection", f"DELETE FROM {self._coll} WHERE name = {quote(name)}")
        return True

    # -- writes ---------------------------------------------------------------------------------------

    def insert(self, collection: str, documents: Iterable[KnowledgeDocument]) -> list[str]:
        return self._write(collection, documents, replace=False)

    def upsert(self, collection: str, documents: Iterable[KnowledgeDocument]) -> list[str]:
        return self._write(collection, documents, replace=True)

    def _write(self, collection: str, documents: Iterable[KnowledgeDocument], *, replace: bool) -> list[str]:
        name = validate_collection_name(collection)
        if isinstance(documents, (KnowledgeDocument, str, bytes)) or not isinstance(documents, Iterable):
            raise ValidationError(f"documents must be a list of KnowledgeDocument, got {type(documents).__name__}")
        info = self._info(name)
        groups: Iterable[Sequence[KnowledgeDocument]] = (
            [documents] if isinstance(documents, Sequence) else batches(documents)
        )
        ids: list[str] = []
        for group in groups:
            if group:
                self._commit(name, info, group, replace=replace)
                ids.extend(doc.id for doc in group)
        return ids

    def _existing(self, name: str, ids: Sequence[str]) -> list[str]:
        found: list[str] = []
        for start in range(0, len(ids), PAGE):
            found += [r["id"] for r in self._rows("read", (
                f"SELECT id FROM {self._docs} WHERE collection = {quote(name)} "
                f"AND has({quote_list(ids[start:start + PAGE])}, id)"))]
        return found

    def _commit(self, name: str, info: CollectionInfo, documents: Sequence[KnowledgeDocument], *,
                replace: bool) -> None:
        check_documents(documents)
        if not replace:
            repeated = [doc_id for doc_id, n in Counter(doc.id for doc in documents).items() if n > 1]
            if repeated:
                raise AlreadyExistsError(
                    f"document id(s) {repeated[:5]} appear twice in one insert; nothing of the batch was written"
                )
        last = {doc.id: i for i, doc in enumerate(documents)}  # upsert: the last of a repeated id wins
        lines: list[str] = []
        for start in range(0, len(documents), BATCH_SIZE):
            chunk = documents[start:start + BATCH_SIZE]
            vectors = embedding_matrix(chunk, info.dimension, info.distance)
            for offset, (doc, vector) in enumerate(zip(chunk, vectors, strict=True)):
                if last[doc.id] != start + offset:
                    continue
                lines.append(json.dumps({
                    "collection": name, "id": storable_text(doc.id, f"document id {doc.id!r}"),
                    "content": storable_text(doc.content, f"content of document {doc.id!r}"),
                    "source_id": None if doc.source_id is None
                    else storable_text(doc.source_id, f"source_id of {doc.id!r}"),
                    "metadata": metadata_json(doc), "embedding": [float(x) for x in vector],
                }, ensure_ascii=True, allow_nan=False))
        ids = list(last)
        with self._engine.lock:
            self._info(name)
            if replace:
                for start in range(0, len(ids), PAGE):
                    self._exec("upsert", f"DELETE FROM {self._docs} WHERE collection = {quote(name)} "
                                         f"AND has({quote_list(ids[start:start + PAGE])}, id)")
            else:
                existing = self._existing(name, ids)
                if existing:
                    raise AlreadyExistsError(
                        f"document id(s) {existing[:5]} exist already in collection {name!r}; use upsert to "
                        "replace them. Nothing of this batch was written"
                    )
            self._exec("write", f"INSERT INTO {self._docs} FORMAT JSONEachRow\n" + "\n".join(lines) + "\n")

    def delete(self, collection: str, ids: Sequence[str] | None = None, *, filter: FilterLike = None) -> int:
        name = validate_collection_name(collection)
        match = self._filter(filter)
        wanted = None if ids is None else list(dict.fromkeys(id_list(ids)))
        self._info(name)
        if wanted is None and match is None:
            return 0
        with self._engine.lock:
            rows: list[dict[str, Any]] = []
            if wanted is None:
                rows = [r for page in self._pages(name, "id, metadata") for r in page]
            else:
                for start in range(0, len(wanted), PAGE):
                    rows += self._rows("read", f"SELECT id, metadata FROM {self._docs} WHERE collection = "
                                               f"{quote(name)} AND has({quote_list(wanted[start:start + PAGE])}, id)")
            gone = [r["id"] for r in rows if match is None or match(json.loads(r["metadata"]))]
            for start in range(0, len(gone), PAGE):
                self._exec("delete", f"DELETE FROM {self._docs} WHERE collection = {quote(name)} "
                                     f"AND has({quote_list(gone[start:start + PAGE])}, id)")
        return len(gone)

    # -- reads ----------------------------------------------------------------------------------------

    def search(self, collection: str, vector: Vector, *, k: int = 10, filter: FilterLike = None,
               score_threshold: float | None = None, include_embeddings: bool = False) -> list[SearchHit]:
        name = validate_collection_name(collection)
        k = positive_int(k, "k")
        match = self._filter(filter)
        if score_threshold is not None and (isinstance(score_threshold, bool)
                                            or not isinstance(score_threshold, (int, float))
                                            or math.isnan(score_threshold)):
            raise ValidationError(f"score_threshold must be a number or None, got {score_threshold!r}")
        info = self._info(name)
        q64, _ = query_vectors(vector, info.dimension, info.distance)
        columns = self._columns(True)
        if match is None:
            fn = _NATIVE[info.distance]
            sign = "-" if info.distance is Distance.DOT else ""
            rows = self._rows("search", (
                f"SELECT {columns}, {sign}{fn}(CAST(embedding AS Array(Float64)), {_floats(q64)}) AS sb_d "
                f"FROM {self._docs} WHERE collection = {quote(name)} ORDER BY sb_d ASC, id ASC "
                f"LIMIT {k + _MARGIN}"))
        else:
            rows = [r for page in self._pages(name, columns) for r in page if match(json.loads(r["metadata"]))]
        if not rows:
            return []
        stored = np.array([r["embedding"] for r in rows], dtype=np.float32)
        raw, scores = exact_scores(info.distance, stored, q64)
        order = np.lexsort(([r["id"] for r in rows], -scores))[:k]
        if score_threshold is not None:
            order = order[scores[order] >= score_threshold]
        return [SearchHit(self._document(rows[i], include_embeddings), float(scores[i]), float(raw[i]))
                for i in order]

    def get(self, collection: str, ids: Sequence[str], *, include_embeddings: bool = True) -> list[KnowledgeDocument]:
        name = validate_collection_name(collection)
        wanted = id_list(ids)
        self._info(name)
        unique = list(dict.fromkeys(wanted))
        found: dict[str, KnowledgeDocument] = {}
        for start in range(0, len(unique), PAGE):
            for row in self._rows("get", (
                f"SELECT {self._columns(include_embeddings)} FROM {self._docs} WHERE collection = {quote(name)} "
                f"AND has({quote_list(unique[start:start + PAGE])}, id)")):
                found[row["id"]] = self._document(row, include_embeddings)
        return [found[doc_id] for doc_id in wanted if doc_id in found]

    def count(self, collection: str, *, filter: FilterLike = None) -> int:
        name = validate_collection_name(collection)
        match = self._filter(filter)
        self._info(name)
        if match is None:
            rows = self._rows("count", f"SELECT count() AS n FROM {self._docs} WHERE collection = {quote(name)}")
            return int(rows[0]["n"]) if rows else 0
        return sum(1 for page in self._pages(name, "id, metadata") for r in page if match(json.loads(r["metadata"])))

    def scroll(self, collection: str, *, limit: int = 100, cursor: str | None = None, filter: FilterLike = None,
               include_embeddings: bool = True) -> DocumentPage:
        name = validate_collection_name(collection)
        limit = positive_int(limit, "limit")
        match = self._filter(filter)
        after = self._parse_cursor(cursor)
        self._info(name)
        columns = self._columns(include_embeddings)
        out: list[dict[str, Any]] = []
        if match is None:
            cond = "" if after is None else f" AND id > {quote(after)}"
            out = self._rows("scroll", f"SELECT {columns} FROM {self._docs} WHERE collection = {quote(name)}{cond} "
                                       f"ORDER BY id LIMIT {limit + 1}")
        else:
            for page in self._pages(name, columns, after):
                out += [r for r in page if match(json.loads(r["metadata"]))]
                if len(out) > limit:
                    break
        page_rows = out[:limit]
        next_cursor = json.dumps(page_rows[-1]["id"]) if len(out) > limit else None
        return DocumentPage([self._document(r, include_embeddings) for r in page_rows], next_cursor)

    @staticmethod
    def _parse_cursor(cursor: str | None) -> str | None:
        if cursor is None:
            return None
        try:
            value = json.loads(cursor) if isinstance(cursor, str) else None
        except ValueError:
            value = None
        if not isinstance(value, str):
            raise ValidationError(f"invalid scroll cursor {cursor!r}; pass the next_cursor of the previous page")
        return value


__all__ = ["ClickHouseKnowledgeStore", "quote", "quote_list"]
