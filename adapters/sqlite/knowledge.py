"""The embedded default knowledge store: documents in SQLite, exact search in numpy.

Layout. ``<prefix>knowledge_collections`` holds each collection's dimension, distance and a revision
counter; ``<prefix>knowledge_documents`` holds the documents (metadata as JSON text exactly as given,
the embedding as a float32 BLOB), keyed by an integer ``rowid`` and unique on (collection, id).

Search. Each store object keeps, per searched collection, a float32 matrix of its vectors (rows
pre-normalised for cosine) and the sorted rowid array. The entry is tagged with the collection's
(id, revision); every write bumps the revision in its own transaction, so one cheap query per search
tells whether the matrix is current, including after writes by other store objects and processes.
A search runs in one read transaction (one snapshot): revision, filter, matrix and the fetched hits
all describe the same committed state. Top-k is ``argpartition`` over one matrix-vector product;
the few candidates are then re-scored in float64 from their stored vectors, so scores are exact per
:class:`~storebridge.models.Distance`. A filter is compiled to SQL (``_sql_filters``) and yields the
matching rowids, mapped onto matrix rows; recent filter results are cached per revision.

Writes made through this store object update its matrix in place of a reload: appended rows go into
spare capacity that no published snapshot can see, deletes and replacements make a new compacted
copy. Writes by anyone else are picked up by a full reload on the next search.

Atomicity. ``insert``/``upsert`` validate every document before writing. A sequence (list, tuple) is
written in one transaction: all or nothing. Any other iterable (a generator of 100k documents) is
consumed in batches of :data:`BATCH_SIZE`, each validated and committed on its own, so memory stays
bounded; an error in a later batch leaves the earlier batches written.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sqlite3
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from storebridge.errors import (
    AlreadyExistsError,
    CollectionNotFoundError,
    ConfigurationError,
    OperationFailedError,
    StorebridgeError,
    StoreClosedError,
    ValidationError,
)
from storebridge.filters import ALL_OPS, FilterLike
from storebridge.identifiers import validate_collection_name, validate_table_prefix
from storebridge.knowledge import KnowledgeCapabilities, KnowledgeStore, Vector
from storebridge.migrations import Migration
from storebridge.models import (
    CollectionInfo,
    Distance,
    DocumentPage,
    KnowledgeDocument,
    SearchHit,
)
from storebridge.urls import parse_url
from storebridge.vectors import BATCH_SIZE
from storebridge.vectors import (
    batches as _batches,
)
from storebridge.vectors import (
    check_documents as _check_documents,
)
from storebridge.vectors import (
    embedding_matrix as _vectors,
)
from storebridge.vectors import (
    exact_scores as _exact_scores,
)
from storebridge.vectors import (
    id_list as _id_list,
)
from storebridge.vectors import (
    metadata_json as _metadata_json,
)
from storebridge.vectors import (
    positive_int as _positive_int,
)
from storebridge.vectors import (
    query_vectors as _query_vector,
)
from storebridge.vectors import (
    storable_text as _storable,
)

from ._connection import SQLiteConnections, resolve_path
from ._sql_filters import compile_filter

COMPONENT = "knowledge"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "create the knowledge collections and documents tables",
        (
            # AUTOINCREMENT: a dropped and re-created collection never reuses an id, so cached matrices
            # (keyed by id and revision) of the old one can never be mistaken for the new one.
            (
                "CREATE TABLE {prefix}knowledge_collections ("
                "id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, dimension INTEGER NOT NULL, "
                "distance TEXT NOT NULL, revision INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL)"
            ),
            # Small columns first, so filters read metadata without touching overflow pages of big rows.
            (
                "CREATE TABLE {prefix}knowledge_documents ("
                "rowid INTEGER PRIMARY KEY, collection_id INTEGER NOT NULL, id TEXT NOT NULL, "
                "metadata TEXT NOT NULL, source_id TEXT, content TEXT NOT NULL, embedding BLOB NOT NULL, "
                "UNIQUE (collection_id, id))"
            ),
            # A collection's documents in rowid order (loads and scroll need no sort), and covering for
            # filters: they read metadata from this narrow index, not from rows fat with embeddings and
            # content (2-3x faster over 100k documents). The cost is a second copy of the metadata.
            (
                "CREATE INDEX {prefix}knowledge_documents_collection "
                "ON {prefix}knowledge_documents (collection_id, rowid, metadata)"
            ),
        ),
    ),
)

#: Ids per ``IN (...)`` statement, well under SQLite's oldest default limit of 999 bound variables.
_CHUNK = 500
#: Candidates re-scored in float64 beyond k, so float32 rounding cannot reorder the boundary.
_RERANK_MARGIN = 16
#: Filter results remembered per store object (each is an int array of matching rows).
_FILTER_CACHE_SIZE = 32
#: Above this matching fraction, one product over the whole matrix beats gathering the matching rows.
_GATHER_FRACTION = 0.3
#: Rows re-scored per step in float64 (bounds the scratch space when k is huge).
_BLOCK = 8192
_F32_MAX = float(np.finfo(np.float32).max)
_DOC_COLUMNS = "rowid, id, content, metadata, source_id"


# -- validation and encoding ------------------------------------------------------------------------------

def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _placeholders(count: int) -> str:
    return ", ".join("?" * count)


# -- the in-memory matrix -------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Collection:
    """One row of the collections table, as read inside a transaction."""

    id: int
    name: str
    dimension: int
    distance: Distance
    revision: int

    @property
    def key(self) -> tuple[int, int]:
        return (self.id, self.revision)

    @property
    def info(self) -> CollectionInfo:
        return CollectionInfo(self.name, self.dimension, self.distance)


def _prepare_rows(vectors: np.ndarray, distance: Distance) -> np.ndarray | None:
    """Ready ``vectors`` (float32, modified in place) for scanning; returns the squared norms for l2.

    Norms are taken in float32 (the float64 re-scoring of the candidates makes the final scores exact);
    rows whose float32 norm overflows or underflows are redone in float64."""
    if distance is Distance.DOT:
        return None
    with np.errstate(over="ignore", under="ignore"):
        squares = np.einsum("ij,ij->i", vectors, vectors).astype(np.float64)
    odd = np.flatnonzero(~np.isfinite(squares) | (squares < np.finfo(np.float32).tiny))
    if len(odd):
        wide = vectors[odd].astype(np.float64)
        squares[odd] = np.einsum("ij,ij->i", wide, wide)
    if distance is Distance.L2:
        return squares
    norms = np.sqrt(squares)
    norms[norms == 0.0] = 1.0  # never written by this store; such a row keeps score 0
    if len(odd):
        vectors[odd] = (vectors[odd].astype(np.float64) / norms[odd, None]).astype(np.float32)
        norms[odd] = 1.0
    vectors /= norms.astype(np.float32)[:, None]
    return None


_Buffers = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


def _allocate(size: int, dimension: int, distance: Distance) -> _Buffers:
    """Vector, rowid and (l2) squared-norm buffers for ``size`` rows plus room for appends."""
    capacity = size + max(64, size // 4)
    return (np.empty((capacity, dimension), dtype=np.float32), np.empty(capacity, dtype=np.int64),
            np.empty(capacity, dtype=np.float64) if distance is Distance.L2 else None)


def _prepare_range(buffers: _Buffers, start: int, end: int, distance: Distance) -> None:
    """Make raw rows ``start:end`` of ``buffers`` ready for scanning, in place."""
    vectors, _, sq_norms = buffers
    squares = _prepare_rows(vectors[start:end], distance)
    if sq_norms is not None and squares is not None:
        sq_norms[start:end] = squares


class _Matrix:
    """The search data of one collection at one revision. Never changes once built: appends fill
    spare capacity past ``len(rowids)`` of a shared buffer, where no existing snapshot looks."""

    __slots__ = ("_buffers", "distance", "key", "rowids", "sq_norms", "vectors")

    def __init__(self, key: tuple[int, int], distance: Distance, buffers: _Buffers, size: int) -> None:
        self.key = key
        self.distance = distance
        self._buffers = buffers
        vectors, rowids, sq_norms = buffers
        self.vectors = vectors[:size]
        self.rowids = rowids[:size]
        self.sq_norms = None if sq_norms is None else sq_norms[:size]

    def advanced(self, key: tuple[int, int], rowids: np.ndarray, vectors: np.ndarray, *,
                 removed: np.ndarray) -> _Matrix:
        """This matrix after the changes of one write: ``rowids``/``vectors`` (raw float32, sorted by
        rowid) were added or replaced, ``removed`` rowids were deleted. Appends cost only the new
        rows; anything else makes one compacted copy."""
        size, added = len(self.rowids), len(rowids)
        if (not len(removed) and (not size or not added or rowids[0] > self.rowids[-1])
                and size + added <= len(self._buffers[1])):
            self._buffers[0][size:size + added] = vectors
            self._buffers[1][size:size + added] = rowids
            _prepare_range(self._buffers, size, size + added, self.distance)
            return _Matrix(key, self.distance, self._buffers, size + added)
        keep = np.flatnonzero(~np.isin(self.rowids, np.concatenate([removed, rowids])))
        kept, total = len(keep), len(keep) + added
        buffers = _allocate(total, self.vectors.shape[1], self.distance)
        new_vectors, new_rowids, new_sq = buffers
        np.take(self.vectors, keep, axis=0, out=new_vectors[:kept], mode="clip")
        np.take(self.rowids, keep, out=new_rowids[:kept], mode="clip")
        if new_sq is not None and self.sq_norms is not None:
            np.take(self.sq_norms, keep, out=new_sq[:kept], mode="clip")
        new_vectors[kept:total] = vectors
        new_rowids[kept:total] = rowids
        _prepare_range(buffers, kept, total, self.distance)
        if added and kept and rowids[0] < new_rowids[kept - 1]:  # replaced rows keep their rowid
            order = np.argsort(new_rowids[:total], kind="stable")
            for buffer in buffers:
                if buffer is not None:
                    buffer[:total] = buffer[:total][order]
        return _Matrix(key, self.distance, buffers, total)


class _SnapshotBehind(Exception):
    """This read's snapshot is older than the cached matrix: start a newer snapshot and retry."""


class _Cache:
    """Per-store matrices (by collection name) and recent filter results; safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._matrices: dict[str, _Matrix] = {}
        self._loading: dict[str, threading.Lock] = {}
        self._filters: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()

    def matrix(self, name: str) -> _Matrix | None:
        with self._lock:
            return self._matrices.get(name)

    def loading_lock(self, name: str) -> threading.Lock:
        """Serialises loads of one collection, so a burst of searches after a write loads it once."""
        with self._lock:
            return self._loading.setdefault(name, threading.Lock())

    def publish(self, name: str, matrix: _Matrix, *, replacing: _Matrix | None = None) -> None:
        """Keep ``matrix`` if it is newer than the cached one (or, with ``replacing``, only if that
        exact matrix is still the cached one)."""
        with self._lock:
            current = self._matrices.get(name)
            if replacing is not None:
                if current is replacing:
                    self._matrices[name] = matrix
            elif current is None or matrix.key > current.key:
                self._matrices[name] = matrix

    def forget(self, name: str) -> None:
        with self._lock:
            self._matrices.pop(name, None)

    def clear(self) -> None:
        with self._lock:
            self._matrices.clear()
            self._filters.clear()

    def filtered(self, key: tuple[Any, ...]) -> np.ndarray | None:
        with self._lock:
            rows = self._filters.get(key)
            if rows is not None:
                self._filters.move_to_end(key)
            return rows

    def remember_filtered(self, key: tuple[Any, ...], rows: np.ndarray) -> None:
        with self._lock:
            self._filters[key] = rows
            while len(self._filters) > _FILTER_CACHE_SIZE:
                self._filters.popitem(last=False)


# -- the store ------------------------------------------------------------------------------------------

class SQLiteKnowledgeStore(KnowledgeStore):
    """Collections of documents with vectors in a SQLite file (or ``:memory:``); exact search in numpy.

    Thread-safe: any number of threads may search and write at once (one writer at a time per file).
    """

    backend_name = "sqlite"
    capabilities = KnowledgeCapabilities(
        filter_operators=ALL_OPS,
        nested_keys=True,
        distances=frozenset(Distance),
        recall_floor=1.0,
        persistent=True,
        notes=("exact search: each searched collection's vectors are held in memory as float32",),
    )

    def __init__(self, url: str | None = None, *, path: str | os.PathLike[str] | None = None,
                 table_prefix: str = "sb_", durable: bool = True) -> None:
        if url is not None and parse_url(url).query:
            raise ConfigurationError(
                f"the SQLite knowledge store takes no URL options, got {sorted(parse_url(url).query)}"
            )
        try:
            db_path = resolve_path(url, path)
        except StorebridgeError:
            raise
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        self.table_prefix = validate_table_prefix(table_prefix)
        self._collections = f"{self.table_prefix}knowledge_collections"
        self._documents = f"{self.table_prefix}knowledge_documents"
        self._conns = SQLiteConnections(db_path, durable=durable)
        self.path = self._conns.path
        if self._conns.memory:
            self.capabilities = dataclasses.replace(type(self).capabilities, persistent=False)
        self._cache = _Cache()
        try:
            with self._errors():
                self._conns.migrate(COMPONENT, MIGRATIONS, prefix=self.table_prefix)
        except BaseException:
            self._conns.close()
            raise

    def __repr__(self) -> str:
        return f"SQLiteKnowledgeStore(path={self.path!r}, table_prefix={self.table_prefix!r})"

    def close(self) -> None:
        self._conns.close()
        self._cache.clear()

    # -- plumbing -------------------------------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn driver errors into storebridge's typed errors (the driver's stays as ``__cause__``)."""
        try:
            yield
        except sqlite3.Error as exc:
            if self._conns.closed:  # another thread closed the store under this call
                raise StoreClosedError(f"the SQLite knowledge store on {self.path!r} is closed") from exc
            raise OperationFailedError(f"SQLite knowledge operation on {self.path!r} failed: {exc}") from exc

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed state."""
        with self._errors(), self._conns.read() as conn:
            conn.execute("BEGIN")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # only an open one, so the original error is the one raised
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._errors(), self._conns.write() as conn:
            yield conn

    def _collection(self, conn: sqlite3.Connection, name: str) -> _Collection:
        row = conn.execute(
            f"SELECT id, dimension, distance, revision FROM {self._collections} WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            raise CollectionNotFoundError(f"knowledge collection {name!r} does not exist; create it with create_collection")
        return _Collection(row[0], name, row[1], Distance(row[2]), row[3])

    def _bump(self, conn: sqlite3.Connection, collection: _Collection) -> tuple[int, int]:
        """Mark a change to the collection (in the writing transaction); returns the new cache key."""
        conn.execute(f"UPDATE {self._collections} SET revision = revision + 1 WHERE id = ?", (collection.id,))
        return (collection.id, collection.revision + 1)

    def _load(self, conn: sqlite3.Connection, collection: _Collection) -> _Matrix:
        """The collection's matrix, read inside the caller's transaction straight into its buffers."""
        (size,) = conn.execute(
            f"SELECT count(*) FROM {self._documents} WHERE collection_id = ?", (collection.id,)
        ).fetchone()
        cursor = conn.execute(
            f"SELECT rowid, embedding FROM {self._documents} WHERE collection_id = ? ORDER BY rowid",
            (collection.id,),
        )
        buffers = _allocate(size, collection.dimension, collection.distance)
        size = self._decode(cursor, buffers[1][:size], buffers[0][:size])
        _prepare_range(buffers, 0, size, collection.distance)
        return _Matrix(collection.key, collection.distance, buffers, size)

    def _decode(self, cursor: sqlite3.Cursor, rowids: np.ndarray, vectors: np.ndarray) -> int:
        """Fill ``rowids``/``vectors`` from ``(rowid, embedding)`` rows, a few thousand at a time (no
        second full copy in memory); returns how many rows there were."""
        dimension = vectors.shape[1]
        filled = 0
        while rows := cursor.fetchmany(4096):
            data = b"".join(row[1] for row in rows)
            if filled + len(rows) > len(rowids) or len(data) != len(rows) * dimension * 4:
                raise OperationFailedError(
                    f"stored embeddings in {self.path!r} do not match the collection's dimension {dimension}; "
                    "the table was changed outside storebridge"
                )
            rowids[filled:filled + len(rows)] = [row[0] for row in rows]
            vectors[filled:filled + len(rows)] = np.frombuffer(data, dtype=np.float32).reshape(len(rows), dimension)
            filled += len(rows)
        return filled

    def _current_matrix(self, conn: sqlite3.Connection, collection: _Collection, *, last_try: bool) -> _Matrix:
        cached = self._cache.matrix(collection.name)
        if cached is not None and cached.key == collection.key:
            return cached
        if cached is not None and cached.key > collection.key:
            if not last_try:
                raise _SnapshotBehind
            return self._load(conn, collection)  # a rare race: this snapshot only, not cached
        with self._cache.loading_lock(collection.name):
            cached = self._cache.matrix(collection.name)
            if cached is not None and cached.key == collection.key:
                return cached
            matrix = self._load(conn, collection)
            self._cache.publish(collection.name, matrix)
            return matrix

    def _matching_rows(self, conn: sqlite3.Connection, matrix: _Matrix, collection: _Collection,
                       where: tuple[str, list[Any]]) -> np.ndarray:
        """Matrix rows of the documents matching a compiled filter (cached per revision)."""
        sql, params = where
        key = (collection.name, matrix.key, sql, tuple((type(p), p) for p in params))
        rows = self._cache.filtered(key)
        if rows is not None:
            return rows
        cursor = conn.execute(
            f"SELECT rowid FROM {self._documents} WHERE collection_id = ? AND {sql} ORDER BY rowid",
            (collection.id, *params),
        )
        matched = np.fromiter((row[0] for row in cursor), dtype=np.int64)
        rows = np.searchsorted(matrix.rowids, matched)
        if len(rows) and (rows[-1] >= len(matrix.rowids) or not np.array_equal(matrix.rowids[rows], matched)):
            raise OperationFailedError("the cached vectors do not match the database; this is a storebridge bug")
        self._cache.remember_filtered(key, rows)
        return rows

    def _rows_by_rowid(self, conn: sqlite3.Connection, rowids: Sequence[int]) -> list[tuple[Any, ...]]:
        """``_DOC_COLUMNS`` + embedding of the given rows, in no particular order."""
        rows: list[tuple[Any, ...]] = []
        for chunk in _chunks(rowids):
            rows += conn.execute(
                f"SELECT {_DOC_COLUMNS}, embedding FROM {self._documents} WHERE rowid IN ({_placeholders(len(chunk))})",
                chunk,
            ).fetchall()
        return rows

    @staticmethod
    def _document(row: Sequence[Any]) -> KnowledgeDocument:
        """A document from ``_DOC_COLUMNS`` (+ embedding) of one row."""
        embedding = np.frombuffer(row[5], dtype=np.float32).tolist() if len(row) > 5 else None
        return KnowledgeDocument(id=row[1], content=row[2], metadata=json.loads(row[3]), source_id=row[4],
                                 embedding=embedding)

    # -- collections ----------------------------------------------------------------------------------

    def create_collection(self, name: str, dimension: int, distance: Distance | str = Distance.COSINE, *,
                          exist_ok: bool = True) -> CollectionInfo:
        name = validate_collection_name(name)
        dimension = _positive_int(dimension, "dimension")
        metric = Distance.parse(distance)
        wanted = CollectionInfo(name, dimension, metric)
        with self._write() as conn:
            try:
                existing = self._collection(conn, name).info
            except CollectionNotFoundError:
                conn.execute(
                    f"INSERT INTO {self._collections} (name, dimension, distance, revision, created_at) "
                    "VALUES (?, ?, ?, 0, ?)",
                    (name, dimension, metric.value, time.time()),
                )
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
        name = validate_collection_name(name)
        with self._snapshot() as conn:
            return self._collection(conn, name).info

    def list_collections(self) -> list[str]:
        with self._snapshot() as conn:
            return [row[0] for row in conn.execute(f"SELECT name FROM {self._collections} ORDER BY name")]

    def drop_collection(self, name: str) -> bool:
        name = validate_collection_name(name)
        with self._write() as conn:
            try:
                collection = self._collection(conn, name)
            except CollectionNotFoundError:
                return False
            conn.execute(f"DELETE FROM {self._documents} WHERE collection_id = ?", (collection.id,))
            conn.execute(f"DELETE FROM {self._collections} WHERE id = ?", (collection.id,))
        self._cache.forget(name)
        return True

    # -- writes ---------------------------------------------------------------------------------------

    def insert(self, collection: str, documents: Iterable[KnowledgeDocument]) -> list[str]:
        return self._write_documents(collection, documents, replace=False)

    def upsert(self, collection: str, documents: Iterable[KnowledgeDocument]) -> list[str]:
        return self._write_documents(collection, documents, replace=True)

    def _write_documents(self, name: str, documents: Iterable[KnowledgeDocument], *, replace: bool) -> list[str]:
        name = validate_collection_name(name)
        if isinstance(documents, (KnowledgeDocument, str, bytes)) or not isinstance(documents, Iterable):
            raise ValidationError(f"documents must be a list of KnowledgeDocument, got {type(documents).__name__}")
        with self._snapshot() as conn:
            collection = self._collection(conn, name)
        groups: Iterable[Sequence[KnowledgeDocument]] = (
            [documents] if isinstance(documents, Sequence) else _batches(documents)
        )
        ids: list[str] = []
        for group in groups:
            if group:
                rows = self._rows(group, collection, replace=replace)
                collection = self._commit(group, rows, collection, replace=replace)
                ids.extend(doc.id for doc in group)
        return ids

    def _rows(self, documents: Sequence[KnowledgeDocument], collection: _Collection, *,
              replace: bool) -> list[tuple[Any, ...]]:
        """Validate documents and encode them as table rows (without the collection id).
        Raises before anything is written."""
        _check_documents(documents)
        if not replace:
            repeated = [doc_id for doc_id, n in Counter(doc.id for doc in documents).items() if n > 1]
            if repeated:
                raise AlreadyExistsError(
                    f"document id(s) {repeated[:5]} appear twice in one insert; nothing of the batch was written"
                )
        rows: list[tuple[Any, ...]] = []
        for chunk in _chunks(documents, BATCH_SIZE):
            vectors = _vectors(chunk, collection.dimension, collection.distance)
            for doc, vector in zip(chunk, vectors):
                rows.append((
                    _storable(doc.id, f"document id {doc.id!r}"),
                    _metadata_json(doc),
                    None if doc.source_id is None else _storable(doc.source_id, f"source_id of {doc.id!r}"),
                    _storable(doc.content, f"content of document {doc.id!r}"),
                    vector.tobytes(),
                ))
        return rows

    def _commit(self, documents: Sequence[KnowledgeDocument], rows: list[tuple[Any, ...]],
                collection: _Collection, *, replace: bool) -> _Collection:
        """Write prepared rows in one transaction; returns the collection as it is afterwards."""
        sql = (f"INSERT INTO {self._documents} (collection_id, id, metadata, source_id, content, embedding) "
               "VALUES (?, ?, ?, ?, ?, ?)")
        if replace:
            sql += (" ON CONFLICT (collection_id, id) DO UPDATE SET metadata = excluded.metadata, "
                    "source_id = excluded.source_id, content = excluded.content, embedding = excluded.embedding")
        ids = list(dict.fromkeys(doc.id for doc in documents))
        with self._write() as conn:
            current = self._collection(conn, collection.name)
            if (current.id, current.dimension, current.distance) != (collection.id, collection.dimension,
                                                                      collection.distance):
                rows = self._rows(documents, current, replace=replace)  # re-created since validation
            base = self._cache.matrix(current.name)
            base = base if base is not None and base.key == current.key else None
            conn.execute("SAVEPOINT sb_insert")
            try:
                conn.executemany(sql, ((current.id, *row) for row in rows))
            except sqlite3.IntegrityError:
                conn.execute("ROLLBACK TO sb_insert")
                existing = self._existing_ids(conn, current.id, ids)
                if not existing:
                    raise
                raise AlreadyExistsError(
                    f"document id(s) {existing[:5]} exist already in collection {current.name!r}; use upsert to "
                    "replace them. Nothing of this batch was written"
                ) from None
            conn.execute("RELEASE sb_insert")
            key = self._bump(conn, current)
            written = self._written(conn, current, ids) if base is not None else None
        if base is not None and written is not None:
            self._cache.publish(current.name, base.advanced(key, *written, removed=np.empty(0, np.int64)),
                                replacing=base)
        return _Collection(current.id, current.name, current.dimension, current.distance, key[1])

    def _written(self, conn: sqlite3.Connection, collection: _Collection,
                 ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(rowids, vectors)`` of the documents just written, sorted by rowid, read back in the same
        transaction (upserts keep an existing document's rowid)."""
        rowids = np.empty(len(ids), dtype=np.int64)
        vectors = np.empty((len(ids), collection.dimension), dtype=np.float32)
        filled = 0
        for chunk in _chunks(ids):
            cursor = conn.execute(
                f"SELECT rowid, embedding FROM {self._documents} WHERE collection_id = ? "
                f"AND id IN ({_placeholders(len(chunk))})",
                (collection.id, *chunk),
            )
            filled += self._decode(cursor, rowids[filled:], vectors[filled:])
        order = np.argsort(rowids[:filled], kind="stable")
        return rowids[:filled][order], vectors[:filled][order]

    def _existing_ids(self, conn: sqlite3.Connection, collection_id: int, ids: Sequence[str]) -> list[str]:
        existing: list[str] = []
        for chunk in _chunks(ids):
            existing += [row[0] for row in conn.execute(
                f"SELECT id FROM {self._documents} WHERE collection_id = ? AND id IN ({_placeholders(len(chunk))})",
                (collection_id, *chunk),
            )]
        return existing

    def delete(self, collection: str, ids: Sequence[str] | None = None, *, filter: FilterLike = None) -> int:
        name = validate_collection_name(collection)
        where = compile_filter(filter)
        id_list = None if ids is None else _id_list(ids)
        if id_list is None and where is None:
            self.get_collection(name)  # a missing collection is still an error
            return 0
        condition, params = where if where is not None else ("1", [])
        removed: list[int] = []
        with self._write() as conn:
            current = self._collection(conn, name)
            base = self._cache.matrix(name)
            base = base if base is not None and base.key == current.key else None
            statement = f"DELETE FROM {self._documents} WHERE collection_id = ? AND {condition}"
            if id_list is None:
                removed += [row[0] for row in conn.execute(statement + " RETURNING rowid", (current.id, *params))]
            for chunk in _chunks(list(dict.fromkeys(id_list or []))):
                removed += [row[0] for row in conn.execute(
                    f"{statement} AND id IN ({_placeholders(len(chunk))}) RETURNING rowid",
                    (current.id, *params, *chunk),
                )]
            key = self._bump(conn, current) if removed else None
        if key is not None and base is not None:
            nothing = np.empty((0, base.vectors.shape[1]), np.float32)
            self._cache.publish(
                name,
                base.advanced(key, np.empty(0, np.int64), nothing, removed=np.array(removed, dtype=np.int64)),
                replacing=base,
            )
        return len(removed)

    # -- reads ----------------------------------------------------------------------------------------

    def search(self, collection: str, vector: Vector, *, k: int = 10, filter: FilterLike = None,
               score_threshold: float | None = None, include_embeddings: bool = False) -> list[SearchHit]:
        name = validate_collection_name(collection)
        k = _positive_int(k, "k")
        where = compile_filter(filter)
        if score_threshold is not None and (isinstance(score_threshold, bool)
                                            or not isinstance(score_threshold, (int, float))
                                            or math.isnan(score_threshold)):
            raise ValidationError(f"score_threshold must be a number or None, got {score_threshold!r}")
        for attempt in range(2):
            try:
                with self._snapshot() as conn:
                    current = self._collection(conn, name)
                    q64, q32 = _query_vector(vector, current.dimension, current.distance)
                    matrix = self._current_matrix(conn, current, last_try=attempt == 1)
                    rows = None if where is None else self._matching_rows(conn, matrix, current, where)
                    candidates = self._candidates(matrix, rows, q32, k + _RERANK_MARGIN)
                    fetched = self._rows_by_rowid(conn, matrix.rowids[candidates].tolist())
                break
            except _SnapshotBehind:
                continue
        if not fetched:
            return []
        # Exact float64 scores from the stored vectors; ties go to the older document.
        stored = np.frombuffer(b"".join(row[5] for row in fetched), dtype=np.float32).reshape(len(fetched), -1)
        raw, scores = _exact_scores(current.distance, stored, q64)
        order = np.lexsort(([row[0] for row in fetched], -scores))[:k]
        if score_threshold is not None:
            order = order[scores[order] >= score_threshold]
        width = len(fetched[0]) if include_embeddings else len(fetched[0]) - 1
        return [SearchHit(self._document(fetched[i][:width]), float(scores[i]), float(raw[i])) for i in order]

    @staticmethod
    def _candidates(matrix: _Matrix, rows: np.ndarray | None, q32: np.ndarray, count: int) -> np.ndarray:
        """Matrix rows of the best ``count`` by the float32 scan (restricted to ``rows``), unordered."""
        vectors = matrix.vectors
        if rows is None:
            similarity = vectors @ q32
        elif len(rows) > _GATHER_FRACTION * len(vectors):
            similarity = (vectors @ q32)[rows]
        else:
            similarity = vectors[rows] @ q32
        if matrix.sq_norms is not None:  # l2: rank by 2 x.q - |x|^2, i.e. by -|x - q|^2 + |q|^2
            similarity = 2.0 * similarity - (matrix.sq_norms if rows is None else matrix.sq_norms[rows])
        size = len(similarity)
        best = np.argpartition(similarity, size - count)[size - count:] if count < size else np.arange(size)
        return best if rows is None else rows[best]

    def get(self, collection: str, ids: Sequence[str], *, include_embeddings: bool = True) -> list[KnowledgeDocument]:
        name = validate_collection_name(collection)
        wanted = _id_list(ids)
        columns = _DOC_COLUMNS + (", embedding" if include_embeddings else "")
        found: dict[str, KnowledgeDocument] = {}
        with self._snapshot() as conn:
            current = self._collection(conn, name)
            for chunk in _chunks(list(dict.fromkeys(wanted))):
                for row in conn.execute(
                    f"SELECT {columns} FROM {self._documents} WHERE collection_id = ? "
                    f"AND id IN ({_placeholders(len(chunk))})",
                    (current.id, *chunk),
                ):
                    found[row[1]] = self._document(row)
        return [found[doc_id] for doc_id in wanted if doc_id in found]

    def count(self, collection: str, *, filter: FilterLike = None) -> int:
        name = validate_collection_name(collection)
        condition, params = compile_filter(filter) or ("1", [])
        with self._snapshot() as conn:
            current = self._collection(conn, name)
            (total,) = conn.execute(
                f"SELECT count(*) FROM {self._documents} WHERE collection_id = ? AND {condition}",
                (current.id, *params),
            ).fetchone()
        return int(total)

    def scroll(self, collection: str, *, limit: int = 100, cursor: str | None = None, filter: FilterLike = None,
               include_embeddings: bool = True) -> DocumentPage:
        name = validate_collection_name(collection)
        limit = _positive_int(limit, "limit")
        after = self._parse_cursor(cursor)
        condition, params = compile_filter(filter) or ("1", [])
        columns = _DOC_COLUMNS + (", embedding" if include_embeddings else "")
        with self._snapshot() as conn:
            current = self._collection(conn, name)
            rows = conn.execute(
                f"SELECT {columns} FROM {self._documents} WHERE collection_id = ? AND rowid > ? AND {condition} "
                "ORDER BY rowid LIMIT ?",
                (current.id, after, *params, limit + 1),
            ).fetchall()
        page = rows[:limit]
        next_cursor = str(page[-1][0]) if len(rows) > limit else None
        return DocumentPage([self._document(row) for row in page], next_cursor)

    @staticmethod
    def _parse_cursor(cursor: str | None) -> int:
        if cursor is None:
            return 0
        if isinstance(cursor, str) and cursor.isascii() and cursor.isdigit():
            return int(cursor)
        raise ValidationError(f"invalid scroll cursor {cursor!r}; pass the next_cursor of the previous page")


__all__ = ["BATCH_SIZE", "COMPONENT", "MIGRATIONS", "SQLiteKnowledgeStore"]
