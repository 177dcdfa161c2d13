"""LanceDB knowledge store (sync, on ``lancedb.connect(directory)``), embedded.

Tested with lancedb 0.40.0 (Lance 13) on a local directory. Search is flat (no ANN index is built), so
it is exact: ``recall_floor`` 1.0. Built on :class:`storebridge.engine.EngineKnowledgeStore`, which does
validation, batching, duplicate-id refusal, exact float64 re-ranking and error typing; this module
implements the engine primitives.

Layout (format 2). One Lance table per collection, named exactly as the collection (storebridge's
collection names are all valid Lance table names). Columns: ``id``, ``content``, ``source_id``
(strings), ``metadata`` (the user's metadata as JSON text, so it round-trips exactly), ``vector``
(fixed-size list of float32: what Lance scans), ``embedding`` (the original float32 vector: what the
template re-scores and what reads return) and the filter columns ``_sb_keys``, ``_sb_eq``, ``_sb_el``,
``_sb_num`` (typed copies of the metadata, see :mod:`._filters`). For cosine collections ``vector``
holds the unit vector (normalised in float64, so extreme vectors scan correctly) searched with Lance's
``dot``; for l2 and dot it is the original vector, searched with ``l2`` / ``dot``. The dimension is the
width of ``vector``; the distance is the table's schema metadata ``storebridge.distance``; the layout
format is the field metadata ``storebridge.format`` of ``_sb_keys``.

Earlier layout (format 1: no filter columns, written by storebridge before filters were compiled).
Such tables keep working for everything but filters: a filtered search, count, scroll or delete raises
:class:`~storebridge.errors.SchemaVersionError` saying to run :meth:`LanceDBKnowledgeStore.migrate_collection`
once, which adds the filter columns and rewrites every row (in batches; running it again after an
interruption finishes the job). A format newer than 2 raises ``SchemaVersionError`` on every use.

Filters: every operator and dotted (nested) keys, compiled to Lance SQL by :func:`._filters.compile_filter`
with FILTERS.md's exact meaning (bool never equals a number, ranges see numbers only and compare them
exactly, ``ne``/``nin``/``$not`` match missing fields, ``in []`` matches nothing, ``contains`` only on
lists, a list never equals a scalar). Nothing is evaluated client-side. Searches use Lance's prefilter,
so the ``k`` best *matching* documents come back. Values reach the SQL text only as string literals
made by :func:`._filters.sql_string` (unit-tested with hostile values).

Writes: ``merge_insert("id")`` (update all when matched, insert otherwise) per batch of
:data:`WRITE_BATCH`. Scroll pages in id order (``order_by``; the cursor is the last id of the page).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from storebridge.engine import Candidate, EngineKnowledgeStore
from storebridge.errors import ConfigurationError, OperationFailedError, SchemaVersionError
from storebridge.filters import ALL_OPS, Filter
from storebridge.knowledge import KnowledgeCapabilities
from storebridge.models import CollectionInfo, Distance, DocumentPage, KnowledgeDocument
from storebridge.urls import parse_url
from storebridge.vectors import metadata_json

from ._filters import (
    ELEMENTS,
    EQ,
    FILTER_COLUMNS,
    KEYS,
    NUMBERS,
    TRUE,
    both,
    compile_filter,
    filter_columns,
    id_predicate,
    sql_string,
)

try:
    import lancedb
    import pyarrow as pa
    from lancedb.query import ColumnOrdering
except ImportError as exc:  # pragma: no cover - the registry checks first
    raise ImportError("the lancedb backend needs lancedb: pip install \"storebridge[lancedb]\"") from exc

#: Rows per Lance write call and per ``id IN (...)`` predicate.
WRITE_BATCH = 1000
#: The layout this code writes; older tables are format 1 (no filter columns).
FORMAT = 2
_DISTANCE_KEY = b"storebridge.distance"
_FORMAT_KEY = "storebridge.format"
_PENDING = f"{FORMAT}-pending"
_METRIC = {Distance.COSINE: "dot", Distance.L2: "l2", Distance.DOT: "dot"}
_DOC_COLUMNS = ["id", "content", "source_id", "metadata"]
_STRINGS = pa.list_(pa.string())
_NUMBERS = pa.map_(pa.string(), pa.string())


def _filter_fields(format_mark: str) -> list[pa.Field]:
    return [pa.field(KEYS, _STRINGS, metadata={_FORMAT_KEY: format_mark}), pa.field(EQ, _STRINGS),
            pa.field(ELEMENTS, _STRINGS), pa.field(NUMBERS, _NUMBERS)]


def _schema(dimension: int, distance: Distance) -> pa.Schema:
    vector = pa.list_(pa.float32(), dimension)
    return pa.schema(
        [pa.field("id", pa.string(), nullable=False), pa.field("content", pa.string()),
         pa.field("source_id", pa.string()), pa.field("metadata", pa.string()), pa.field("vector", vector),
         pa.field("embedding", vector), *_filter_fields(str(FORMAT))],
        metadata={_DISTANCE_KEY: distance.value.encode()},
    )


def layout_format(schema: pa.Schema) -> str:
    """``"1"`` (no filter columns), ``"2"``, ``"2-pending"`` (a migration was interrupted) or newer."""
    if KEYS not in schema.names:
        return "1"
    raw = (schema.field(KEYS).metadata or {}).get(_FORMAT_KEY.encode())
    return raw.decode() if raw else "1"


class LanceDBKnowledgeStore(EngineKnowledgeStore):
    """Knowledge collections as Lance tables in one directory; exact search, filters compiled to Lance SQL."""

    backend_name = "lancedb"
    capabilities = KnowledgeCapabilities(
        filter_operators=ALL_OPS,
        nested_keys=True,
        client_side_filters=False,
        distances=frozenset(Distance),
        recall_floor=1.0,
        persistent=True,
        max_batch=WRITE_BATCH,
        notes=("flat (exact) search with Lance's prefilter",
               "every filter operator and dotted key is compiled to Lance SQL over typed filter columns",
               "tables written before filter columns existed need migrate_collection() before filtering"),
    )
    write_batch = WRITE_BATCH

    def __init__(self, url: str | None = None, *, uri: str | os.PathLike[str] | None = None,
                 path: str | os.PathLike[str] | None = None, connection: Any = None) -> None:
        if sum(x is not None for x in (url, uri, path, connection)) != 1:
            raise ConfigurationError("pass exactly one of url, uri, path or connection to the lancedb store")
        if url is not None:
            parsed = parse_url(url)
            if parsed.scheme not in ("lancedb", "lance") or parsed.driver:
                raise ConfigurationError(f"not a lancedb URL: {parsed}")
            if parsed.query:
                raise ConfigurationError(f"lancedb URLs take no options, got {sorted(parsed.query)}")
            path = ((parsed.host or "") + parsed.path) if parsed.host else parsed.file_path
            if not path:
                raise ConfigurationError("the lancedb URL names no directory: use lancedb:///relative or lancedb:////abs")
        if connection is not None:
            self._db = connection
            self._where = repr(getattr(connection, "uri", "the given connection"))
            return
        location = os.fspath(uri if uri is not None else path)  # type: ignore[arg-type]
        self._where = repr(location)
        try:
            self._db = lancedb.connect(location)
        except Exception as exc:
            raise ConfigurationError(f"cannot open the LanceDB directory {location!r}: {exc}") from exc

    def __repr__(self) -> str:
        return f"LanceDBKnowledgeStore({self._where})"

    def close(self) -> None:
        self._closed = True

    # -- tables ---------------------------------------------------------------------------------------

    def _table(self, name: str) -> Any | None:
        try:
            return self._db.open_table(name)
        except ValueError as exc:  # lancedb: "Table 'x' was not found"
            if "not found" in str(exc):
                return None
            raise

    def _open(self, info: CollectionInfo, *, filtered: bool = False) -> Any:
        """The collection's table; ``filtered``: it must have the filter columns (format 2)."""
        table = self._table(info.name)
        if table is None:
            raise OperationFailedError(f"the Lance table {info.name!r} disappeared during the operation")
        version = layout_format(table.schema)
        if filtered and version != str(FORMAT):
            why = ("its migration to format 2 was interrupted" if version == _PENDING else
                   "it was written by an earlier storebridge (LanceDB layout format 1, without filter columns)")
            raise SchemaVersionError(
                f"collection {info.name!r} on {self._where} cannot be filtered: {why}; run "
                f"LanceDBKnowledgeStore(...).migrate_collection({info.name!r}) once (it rewrites every row)")
        return table

    def _engine_describe(self, name: str) -> CollectionInfo | None:
        table = self._table(name)
        if table is None:
            return None
        schema = table.schema
        raw = (schema.metadata or {}).get(_DISTANCE_KEY)
        if raw is None or "vector" not in schema.names or "embedding" not in schema.names:
            raise OperationFailedError(f"the Lance table {name!r} was not made by storebridge")
        version = layout_format(schema)
        if version not in ("1", str(FORMAT), _PENDING):
            raise SchemaVersionError(
                f"collection {name!r} uses LanceDB layout format {version}, newer than this storebridge "
                f"understands ({FORMAT}); upgrade storebridge")
        return CollectionInfo(name, int(schema.field("vector").type.list_size), Distance(raw.decode()))

    def _engine_create(self, info: CollectionInfo) -> None:
        self._db.create_table(info.name, schema=_schema(info.dimension, info.distance))

    def _engine_drop(self, name: str) -> None:
        self._db.drop_table(name)

    def _engine_names(self) -> list[str]:
        names: list[str] = []
        token = None
        while True:
            response = self._db.list_tables(page_token=token)
            names += list(response.tables)
            token = response.page_token
            if not token:
                return names

    # -- rows -----------------------------------------------------------------------------------------

    def _arrow(self, documents: list[KnowledgeDocument], vectors: np.ndarray, info: CollectionInfo) -> pa.Table:
        if info.distance is Distance.COSINE:
            wide = vectors.astype(np.float64)
            scan = (wide / np.linalg.norm(wide, axis=1, keepdims=True)).astype(np.float32)
        else:
            scan = vectors
        texts = [metadata_json(doc) for doc in documents]
        columns = [filter_columns(json.loads(text)) for text in texts]
        schema = _schema(info.dimension, info.distance)
        width = info.dimension

        def fixed(matrix: np.ndarray) -> pa.Array:
            flat = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).reshape(-1), pa.float32())
            return pa.FixedSizeListArray.from_arrays(flat, width)

        return pa.Table.from_arrays(
            [pa.array([doc.id for doc in documents], pa.string()),
             pa.array([doc.content for doc in documents], pa.string()),
             pa.array([doc.source_id for doc in documents], pa.string()),
             pa.array(texts, pa.string()), fixed(scan), fixed(vectors),
             *(pa.array([c[i] for c in columns], schema.field(name).type) for i, name in enumerate(FILTER_COLUMNS))],
            schema=schema)

    def _engine_write(self, info: CollectionInfo, documents: list[KnowledgeDocument], vectors: np.ndarray) -> None:
        table = self._open(info)
        data = self._arrow(documents, vectors, info)
        if layout_format(table.schema) == "1":  # an earlier table keeps its own columns
            data = data.select(table.schema.names)
        table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(data)

    @staticmethod
    def _document(row: dict[str, Any], with_vector: bool) -> KnowledgeDocument:
        embedding = np.asarray(row["embedding"], dtype=np.float32).tolist() if with_vector else None
        return KnowledgeDocument(id=row["id"], content=row["content"] or "", source_id=row["source_id"],
                                 metadata=json.loads(row["metadata"]), embedding=embedding)

    def _rows(self, table: Any, where: str | None, columns: list[str], limit: int | None = None,
              ordered: bool = False) -> list[dict[str, Any]]:
        query = table.search().select(columns)
        if where is not None and where != TRUE:
            query = query.where(where)
        if ordered:
            query = query.order_by([ColumnOrdering(column_name="id")])
        return query.limit(limit).to_arrow().to_pylist()  # type: ignore[no-any-return]

    def _where_clause(self, info: CollectionInfo, where: Filter | None) -> tuple[Any, str | None]:
        table = self._open(info, filtered=where is not None)
        return table, compile_filter(where)

    def _engine_existing(self, info: CollectionInfo, ids: list[str]) -> list[str]:
        return [row["id"] for row in self._rows(self._open(info), id_predicate(ids), ["id"])]

    def _engine_get(self, info: CollectionInfo, ids: list[str], with_vectors: bool) -> list[KnowledgeDocument]:
        columns = _DOC_COLUMNS + (["embedding"] if with_vectors else [])
        return [self._document(row, with_vectors) for row in self._rows(self._open(info), id_predicate(ids), columns)]

    def _engine_delete(self, info: CollectionInfo, ids: list[str] | None, where: Filter | None) -> int:
        table, predicate = self._where_clause(info, where)
        predicate = both(None if ids is None else id_predicate(ids), predicate)
        if predicate is None:
            return 0
        found = int(table.count_rows(predicate)) if predicate != TRUE else int(table.count_rows())
        if found:
            table.delete(predicate)
        return found

    def _engine_count(self, info: CollectionInfo, where: Filter | None) -> int:
        table, predicate = self._where_clause(info, where)
        return int(table.count_rows(predicate if predicate != TRUE else None))

    def _engine_nearest(self, info: CollectionInfo, query: np.ndarray, limit: int,
                        where: Filter | None) -> list[Candidate]:
        table, predicate = self._where_clause(info, where)
        search = (table.search(query.tolist(), vector_column_name="vector").distance_type(_METRIC[info.distance])
                  .select([*_DOC_COLUMNS, "embedding", "_distance"]).limit(limit))
        if predicate is not None and predicate != TRUE:
            search = search.where(predicate, prefilter=True)
        return [Candidate(self._document(row, False), np.asarray(row["embedding"], dtype=np.float32))
                for row in search.to_arrow().to_pylist()]

    def _engine_page(self, info: CollectionInfo, limit: int, cursor: str | None, where: Filter | None,
                     with_vectors: bool) -> DocumentPage:
        """Pages in id order; the cursor is the last id of the previous page."""
        table, predicate = self._where_clause(info, where)
        after = None if cursor is None else f"id > {sql_string(cursor)}"
        columns = _DOC_COLUMNS + (["embedding"] if with_vectors else [])
        rows = self._rows(table, both(after, predicate), columns, limit + 1, ordered=True)
        docs = [self._document(row, with_vectors) for row in rows[:limit]]
        return DocumentPage(docs, docs[-1].id if len(rows) > limit else None)

    # -- migration ------------------------------------------------------------------------------------

    def migrate_collection(self, name: str) -> int:
        """Bring a collection written by an earlier storebridge (layout format 1) to format 2, so filters
        work on it: add the filter columns, rewrite every row (in batches), then mark the table. Safe to
        run again after an interruption; a collection already at format 2 is left alone. Returns the
        number of documents rewritten."""
        name = self._collection_name(name)
        info = self._info(name)
        with self._call("migrate collection"):
            table = self._open(info)
            version = layout_format(table.schema)
            if version == str(FORMAT):
                return 0
            if version == "1":
                table.add_columns(_filter_fields(_PENDING))
            rewritten, cursor = 0, None
            columns = [*_DOC_COLUMNS, "embedding"]
            while True:
                after = None if cursor is None else f"id > {sql_string(cursor)}"
                rows = self._rows(table, after, columns, self.write_batch, ordered=True)
                if not rows:
                    break
                docs = [self._document(row, True) for row in rows]
                vectors = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
                data = self._arrow(docs, vectors, info)
                table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(data)
                rewritten += len(rows)
                cursor = rows[-1]["id"]
            table.update_field_metadata({"path": KEYS, "metadata": {_FORMAT_KEY: str(FORMAT)}})
        return rewritten


__all__ = ["FORMAT", "WRITE_BATCH", "LanceDBKnowledgeStore", "layout_format"]
