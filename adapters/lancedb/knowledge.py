"""LanceDB knowledge store (sync, on ``lancedb.connect(directory)``), embedded.

Tested with lancedb 0.40.0 (pylance) on a local directory. Search is flat (no ANN index is built), so
it is exact: ``recall_floor`` 1.0.

Layout. One Lance table per collection, named exactly as the collection (storebridge's collection
names, ``[A-Za-z0-9_][A-Za-z0-9_-]{0,62}``, are all valid Lance table names). Columns: ``id``,
``content``, ``source_id`` (strings), ``metadata`` (the user's metadata as JSON text, so it
round-trips exactly), ``vector`` (fixed-size list of float32: what Lance scans) and ``embedding``
(the original float32 vector). For cosine collections ``vector`` holds the unit vector (normalised
in float64 by this store, so extreme vectors scan correctly) and is searched with Lance's ``dot``
metric; for l2 and dot collections it is the original vector, searched with ``l2`` / ``dot``. The
dimension is the width of ``vector``; the distance is kept in the table's schema metadata
(``storebridge.distance``).

Scores. Lance's raw ``_distance`` is not our formula (its l2 is the *squared* distance, cosine is
``1 - cos``, dot is ``1 - dot``); it is only used for ranking. The candidates (k plus a margin of 16)
are re-scored in float64 from the original vectors with ``storebridge.vectors.exact_scores``.

Filters are evaluated client-side (``client_side_filters=True``) with ``storebridge.filters.matcher``
over the decoded JSON metadata, so every operator has exactly the reference meaning: a filtered
search over-fetches (doubling the limit until k matching hits are found or the table is exhausted);
count, delete and scroll with a filter read the ``id`` and ``metadata`` columns. Dotted (nested) keys
work too (``nested_keys=True``). Scroll pages in id order (the cursor is the last id, as JSON) and
reads the id column on every page: O(n) per page, fine for exports, not for huge tables. Nothing user-supplied
is interpolated raw into Lance SQL: the only predicates this store builds are ``id IN (...)`` over
document ids, each a string literal with ``'`` doubled (Lance SQL string literals have no backslash
escapes), refused if it contains NUL.

Writes. ``upsert`` is ``merge_insert("id").when_matched_update_all().when_not_matched_insert_all()``;
``insert`` checks for existing ids first and then appends. A sequence of documents is validated whole
before the first write; any other iterable is written in batches of :data:`WRITE_BATCH`.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from storebridge.errors import (
    AlreadyExistsError,
    CollectionNotFoundError,
    ConfigurationError,
    NotSupportedError,
    OperationFailedError,
    StorebridgeError,
    StoreClosedError,
    ValidationError,
)
from storebridge.filters import ALL_OPS, FilterLike, matcher, parse_filter, require_operators
from storebridge.identifiers import validate_collection_name
from storebridge.knowledge import KnowledgeCapabilities, KnowledgeStore, Vector
from storebridge.models import CollectionInfo, Distance, DocumentPage, KnowledgeDocument, SearchHit
from storebridge.urls import parse_url
from storebridge.vectors import (
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

try:
    import lancedb
    import pyarrow as pa
except ImportError as exc:  # pragma: no cover - the registry checks first
    raise ImportError("the lancedb backend needs lancedb: pip install \"storebridge[lancedb]\"") from exc

#: Rows written per Lance write call (a generator is never materialised beyond one batch).
WRITE_BATCH = 1000
#: Ids per ``id IN (...)`` predicate.
_ID_CHUNK = 500
_RERANK_MARGIN = 16
_DISTANCE_KEY = b"storebridge.distance"
_METRIC = {Distance.COSINE: "dot", Distance.L2: "l2", Distance.DOT: "dot"}
_DOC_COLUMNS = ["id", "content", "source_id", "metadata"]


def sql_string(value: str) -> str:
    """A Lance SQL string literal for ``value``: single quotes doubled (no backslash escapes exist)."""
    if not isinstance(value, str):
        raise ValidationError(f"expected a string, got {type(value).__name__}")
    if "\x00" in value:
        raise ValidationError(f"{value!r:.80} contains NUL, which Lance SQL literals cannot hold")
    return "'" + value.replace("'", "''") + "'"


def id_predicate(ids: Sequence[str]) -> str:
    return "id IN (" + ", ".join(sql_string(i) for i in ids) + ")"


def _schema(dimension: int, distance: Distance) -> pa.Schema:
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("content", pa.string()),
            pa.field("source_id", pa.string()),
            pa.field("metadata", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), dimension)),
            pa.field("embedding", pa.list_(pa.float32(), dimension)),
        ],
        metadata={_DISTANCE_KEY: distance.value.encode()},
    )


class LanceDBKnowledgeStore(KnowledgeStore):
    """Knowledge collections as Lance tables in one directory; exact search, client-side filters."""

    backend_name = "lancedb"
    capabilities = KnowledgeCapabilities(
        filter_operators=ALL_OPS,
        nested_keys=True,
        client_side_filters=True,
        distances=frozenset(Distance),
        recall_floor=1.0,
        persistent=True,
        max_batch=WRITE_BATCH,
        notes=("flat (exact) search; filters are evaluated in Python after over-fetching",),
    )

    def __init__(self, url: str | None = None, *, uri: str | os.PathLike[str] | None = None,
                 path: str | os.PathLike[str] | None = None, connection: Any = None) -> None:
        self._closed = False
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

    # -- plumbing -------------------------------------------------------------------------------------

    @contextmanager
    def _call(self, what: str) -> Iterator[Any]:
        if self._closed:
            raise StoreClosedError(f"the lancedb knowledge store on {self._where} is closed")
        try:
            yield self._db
        except StorebridgeError:
            raise
        except Exception as exc:
            raise OperationFailedError(f"lancedb {what} failed on {self._where}: {exc}") from exc

    def _names(self) -> list[str]:
        names: list[str] = []
        token = None
        with self._call("list_tables") as db:
            while True:
                response = db.list_tables(page_token=token)
                names += list(response.tables)
                token = response.page_token
                if not token:
                    return names

    def _open(self, name: str) -> tuple[Any, CollectionInfo]:
        if name not in self._names():
            raise CollectionNotFoundError(
                f"knowledge collection {name!r} does not exist; create it with create_collection")
        with self._call("open_table") as db:
            table = db.open_table(name)
            schema = table.schema
        raw = (schema.metadata or {}).get(_DISTANCE_KEY)
        vector = schema.field("vector").type if "vector" in schema.names else None
        if raw is None or vector is None or "embedding" not in schema.names:
            raise OperationFailedError(f"the Lance table {name!r} was not made by storebridge")
        return table, CollectionInfo(name, int(vector.list_size), Distance(raw.decode()))

    @staticmethod
    def _document(row: dict[str, Any], with_vector: bool) -> KnowledgeDocument:
        embedding = None
        if with_vector:
            embedding = np.asarray(row["embedding"], dtype=np.float32).tolist()
        return KnowledgeDocument(id=row["id"], content=row["content"] or "", source_id=row["source_id"],
                                 metadata=json.loads(row["metadata"]), embedding=embedding)

    def _rows(self, table: Any, where: str | None, columns: list[str]) -> list[dict[str, Any]]:
        """Rows (``columns`` only) matching a predicate this store built (``id IN (...)``), or all rows."""
        with self._call("read"):
            query = table.search().select(columns)
            if where is not None:
                query = query.where(where)
            return query.limit(None).to_arrow().to_pylist()  # type: ignore[no-any-return]

    def _matching_ids(self, table: Any, spec: FilterLike) -> list[str]:
        """Ids (in id order) of the documents whose metadata matches ``spec``, evaluated in Python."""
        match = matcher(spec)
        rows = self._rows(table, None, ["id", "metadata"])
        return sorted(row["id"] for row in rows if match(json.loads(row["metadata"])))

    # -- collections ----------------------------------------------------------------------------------

    def create_collection(self, name: str, dimension: int, distance: Distance | str = Distance.COSINE, *,
                          exist_ok: bool = True) -> CollectionInfo:
        name = validate_collection_name(name)
        dimension = positive_int(dimension, "dimension")
        metric = Distance.parse(distance)
        if metric not in self.capabilities.distances:
            raise NotSupportedError(f"the lancedb backend does not support the {metric.value!r} distance")
        wanted = CollectionInfo(name, dimension, metric)
        try:
            existing = self._open(name)[1]
        except CollectionNotFoundError:
            with self._call("create_table") as db:
                db.create_table(name, schema=_schema(dimension, metric))
            return wanted
        if not exist_ok:
            raise AlreadyExistsError(f"knowledge collection {name!r} exists already; pass exist_ok=True to reuse it")
        if existing != wanted:
            raise AlreadyExistsError(
                f"knowledge collection {name!r} exists with dimension {existing.dimension} and distance "
                f"{existing.distance.value!r}, not {dimension} and {metric.value!r}; drop it or use another name")
        return existing

    def get_collection(self, name: str) -> CollectionInfo:
        return self._open(validate_collection_name(name))[1]

    def list_collections(self) -> list[str]:
        return sorted(self._names())

    def drop_collection(self, name: str) -> bool:
        name = validate_collection_name(name)
        if name not in self._names():
            return False
        with self._call("drop_table") as db:
            db.drop_table(name)
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
        table, info = self._open(name)
        if isinstance(documents, Sequence):
            docs = list(documents)
            prepared = [(group, self._arrow(group, info)) for group in batches(docs, WRITE_BATCH)]
            if not replace:
                self._refuse_duplicates(table, docs)
            for group, data in prepared:
                self._commit(table, group, data, replace=replace)
            return [doc.id for doc in docs]
        ids: list[str] = []
        for group in batches(documents, WRITE_BATCH):
            data = self._arrow(group, info)
            if not replace:
                self._refuse_duplicates(table, group)
            self._commit(table, group, data, replace=replace)
            ids.extend(doc.id for doc in group)
        return ids

    def _arrow(self, documents: list[KnowledgeDocument], info: CollectionInfo) -> pa.Table:
        check_documents(documents)
        for doc in documents:
            if not isinstance(doc.id, str):
                raise ValidationError(f"document ids are strings, got {doc.id!r}")
            storable_text(doc.id, f"document id {doc.id!r}")
            if "\x00" in doc.id:
                raise ValidationError(f"document id {doc.id!r} contains NUL, which this store cannot address")
            storable_text(doc.content, f"content of document {doc.id!r}")
            if doc.source_id is not None:
                storable_text(doc.source_id, f"source_id of document {doc.id!r}")
        matrix = embedding_matrix(documents, info.dimension, info.distance)
        if info.distance is Distance.COSINE:
            wide = matrix.astype(np.float64)
            scan = (wide / np.linalg.norm(wide, axis=1, keepdims=True)).astype(np.float32)
        else:
            scan = matrix
        width = info.dimension
        vector_type = pa.list_(pa.float32(), width)
        schema = _schema(width, info.distance)
        return pa.Table.from_arrays(
            [
                pa.array([doc.id for doc in documents], pa.string()),
                pa.array([doc.content for doc in documents], pa.string()),
                pa.array([doc.source_id for doc in documents], pa.string()),
                pa.array([metadata_json(doc) for doc in documents], pa.string()),
                pa.FixedSizeListArray.from_arrays(pa.array(scan.reshape(-1), pa.float32()), width).cast(vector_type),
                pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), pa.float32()), width).cast(vector_type),
            ],
            schema=schema,
        )

    def _refuse_duplicates(self, table: Any, documents: Sequence[KnowledgeDocument]) -> None:
        repeated = [doc_id for doc_id, n in Counter(doc.id for doc in documents).items() if n > 1]
        if repeated:
            raise AlreadyExistsError(
                f"document id(s) {repeated[:5]} appear twice in one insert; nothing of the batch was written")
        existing: list[str] = []
        for group in batches([doc.id for doc in documents], _ID_CHUNK):
            existing += [row["id"] for row in self._rows(table, id_predicate(group), ["id"])]
        if existing:
            raise AlreadyExistsError(
                f"document id(s) {existing[:5]} exist already in collection {table.name!r}; use upsert to replace "
                "them. Nothing of this batch was written")

    def _commit(self, table: Any, documents: Sequence[KnowledgeDocument], data: pa.Table, *, replace: bool) -> None:
        with self._call("write"):
            if replace:
                if len({doc.id for doc in documents}) != len(documents):  # last one wins, like a loop of upserts
                    last = {doc.id: i for i, doc in enumerate(documents)}
                    data = data.take(sorted(last.values()))
                (table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(data))
            else:
                table.add(data)

    def delete(self, collection: str, ids: Sequence[str] | None = None, *, filter: FilterLike = None) -> int:
        name = validate_collection_name(collection)
        tree = parse_filter(filter)
        require_operators(tree, self.capabilities.filter_operators, backend="lancedb", nested_keys=True)
        wanted = None if ids is None else list(dict.fromkeys(id_list(ids)))
        table, _ = self._open(name)
        if wanted is None and tree is None:
            return 0
        if wanted is not None:
            wanted = [i for i in wanted if "\x00" not in i]  # never stored
        if tree is not None:
            matching = self._matching_ids(table, tree)
            targets = matching if wanted is None else sorted(set(matching) & set(wanted))
        else:
            targets = []
            for group in batches(wanted or [], _ID_CHUNK):
                targets += [row["id"] for row in self._rows(table, id_predicate(group), ["id"])]
        for group in batches(targets, _ID_CHUNK):
            with self._call("delete"):
                table.delete(id_predicate(group))
        return len(targets)

    # -- reads ----------------------------------------------------------------------------------------

    def search(self, collection: str, vector: Vector, *, k: int = 10, filter: FilterLike = None,
               score_threshold: float | None = None, include_embeddings: bool = False) -> list[SearchHit]:
        name = validate_collection_name(collection)
        k = positive_int(k, "k")
        tree = parse_filter(filter)
        require_operators(tree, self.capabilities.filter_operators, backend="lancedb", nested_keys=True)
        if score_threshold is not None and (isinstance(score_threshold, bool)
                                            or not isinstance(score_threshold, (int, float))
                                            or math.isnan(score_threshold)):
            raise ValidationError(f"score_threshold must be a number or None, got {score_threshold!r}")
        table, info = self._open(name)
        q64, q32 = query_vectors(vector, info.dimension, info.distance)
        match = matcher(tree) if tree is not None else None
        with self._call("count_rows"):
            total = table.count_rows()
        limit = k + _RERANK_MARGIN if match is None else max(4 * k, 64)
        while True:
            limit = min(limit, max(total, 1))
            with self._call("search"):
                rows = (table.search(q32.tolist(), vector_column_name="vector").metric(_METRIC[info.distance])
                        .select([*_DOC_COLUMNS, "embedding", "_distance"]).limit(limit).to_arrow().to_pylist())
            if match is None:
                candidates = rows
                break
            candidates = [row for row in rows if match(json.loads(row["metadata"]))]
            if len(candidates) >= k + _RERANK_MARGIN or len(rows) < limit or limit >= total:
                break
            limit *= 4
        if not candidates:
            return []
        stored = np.asarray([row["embedding"] for row in candidates], dtype=np.float32)
        raw, scores = exact_scores(info.distance, stored, q64)
        ids = [row["id"] for row in candidates]
        order = sorted(range(len(candidates)), key=lambda i: (-scores[i], ids[i]))[:k]  # ties: by id
        if score_threshold is not None:
            order = [i for i in order if scores[i] >= score_threshold]
        return [SearchHit(self._document(candidates[i], include_embeddings), float(scores[i]), float(raw[i]))
                for i in order]

    def get(self, collection: str, ids: Sequence[str], *, include_embeddings: bool = True) -> list[KnowledgeDocument]:
        name = validate_collection_name(collection)
        wanted = id_list(ids)
        table, _ = self._open(name)
        columns = _DOC_COLUMNS + (["embedding"] if include_embeddings else [])
        found: dict[str, KnowledgeDocument] = {}
        unique = [i for i in dict.fromkeys(wanted) if "\x00" not in i]
        for group in batches(unique, _ID_CHUNK):
            for row in self._rows(table, id_predicate(group), columns):
                found[row["id"]] = self._document(row, include_embeddings)
        return [found[i] for i in wanted if i in found]

    def count(self, collection: str, *, filter: FilterLike = None) -> int:
        name = validate_collection_name(collection)
        tree = parse_filter(filter)
        require_operators(tree, self.capabilities.filter_operators, backend="lancedb", nested_keys=True)
        table, _ = self._open(name)
        if tree is None:
            with self._call("count_rows"):
                return int(table.count_rows())
        return len(self._matching_ids(table, tree))

    def scroll(self, collection: str, *, limit: int = 100, cursor: str | None = None, filter: FilterLike = None,
               include_embeddings: bool = True) -> DocumentPage:
        """Pages in id order; the cursor is the last id of the previous page (as JSON text)."""
        name = validate_collection_name(collection)
        limit = positive_int(limit, "limit")
        tree = parse_filter(filter)
        require_operators(tree, self.capabilities.filter_operators, backend="lancedb", nested_keys=True)
        after: str | None = None
        if cursor is not None:
            try:
                after = json.loads(cursor) if isinstance(cursor, str) else None
            except ValueError:
                after = None
            if not isinstance(after, str):
                raise ValidationError(f"invalid scroll cursor {cursor!r}; pass the next_cursor of the previous page")
        table, _ = self._open(name)
        if tree is None:
            ids = sorted(row["id"] for row in self._rows(table, None, ["id"]))
        else:
            ids = self._matching_ids(table, tree)
        if after is not None:
            ids = [i for i in ids if i > after]
        page_ids = ids[:limit]
        columns = _DOC_COLUMNS + (["embedding"] if include_embeddings else [])
        found: dict[str, KnowledgeDocument] = {}
        for group in batches(page_ids, _ID_CHUNK):
            for row in self._rows(table, id_predicate(group), columns):
                found[row["id"]] = self._document(row, include_embeddings)
        docs = [found[i] for i in page_ids if i in found]
        next_cursor = json.dumps(page_ids[-1]) if len(ids) > limit else None
        return DocumentPage(docs, next_cursor)


__all__ = ["LanceDBKnowledgeStore", "id_predicate", "sql_string"]
