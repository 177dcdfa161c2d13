"""The ``surrealdb_vector`` knowledge store on the official ``surrealdb`` 2.x client (sync ``Surreal``).

Tested with the client's embedded engines (``mem://``, ``surrealkv://``) of ``surrealdb`` 2.0.0 (Python
package); servers (``surrealdb://host:8000``, ``+ws``/``+wss``/``+http(s)``) are supported in code through
the same connection handling as the conversation store (:mod:`.conversation`: URL parsing, credentials,
one shared reference-counted engine per ``surrealkv`` directory, ``connection=`` for a caller's
``Surreal``), NOT verified here.

Data model (schemaless tables, created with ``DEFINE ... IF NOT EXISTS``):

* ``<prefix>kcollection``: one record per collection, ``type::thing('<prefix>kcollection', $name)``, with
  ``name``, ``dimension``, ``distance``. Collection names are validated by the core and only ever travel as
  bound values (record id parts), so SurrealDB's identifier rules never apply: no mapping is needed.
* ``<prefix>kdoc``: one record per document, ``type::thing('<prefix>kdoc', [$collection, $id])`` (so ids are
  unique per collection by construction; ``key`` is the id with NUL escaped, see :func:`_key`: SurrealDB
  refuses NUL in keys and in query results, so ``content`` and ``source_id`` are escaped alike), with
  ``collection``, ``key``, ``content``, ``source_id``,
  ``metadata`` (JSON text: SurrealDB drops object keys whose value is ``None``, text round-trips exactly)
  and ``embedding`` (array of floats, the float32-rounded values). Index ``(collection, key)``.

Every value is a bound ``$parameter``; table names come only from the validated table prefix.

What is native and what is not:

* Search without a filter is an exact brute-force scan in SurrealQL (``vector::similarity::cosine``,
  ``vector::distance::euclidean``, ``vector::dot``; ``ORDER BY ... LIMIT``) over-fetching a few candidates,
  which are then re-scored in float64 with :func:`storebridge.vectors.exact_scores` so scores and
  distances follow :class:`~storebridge.models.Distance` exactly. Recall 1.0.
* Filters are evaluated client-side (``client_side_filters=True``) with :func:`storebridge.filters.matcher`:
  the metadata is JSON text, and SurrealQL's comparison semantics (``NONE``/``NULL``, ``1 == 1.0``,
  ``true`` vs numbers, mixed-type ordering) differ from FILTERS.md in enough corners that a native
  compilation was not attempted in this version. A filtered search / count / delete / scroll pages
  through the collection (``key`` order, :data:`PAGE` rows per query) and keeps what matches; a
  filtered search then scores the matches exactly in numpy. Every operator and nested keys are supported.

Writes: an insert is one transaction per batch (``CREATE`` of each record; an existing id fails the
transaction, so nothing of the batch is written: ``AlreadyExistsError``). Upserts are ``UPSERT ...
CONTENT``. A sequence is written as one batch; any other iterable is consumed in batches of
:data:`storebridge.vectors.BATCH_SIZE`, each committed on its own.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from storebridge.errors import (
    AlreadyExistsError,
    CollectionNotFoundError,
    ConfigurationError,
    ValidationError,
)
from storebridge.filters import ALL_OPS, FilterLike, matcher, parse_filter, require_operators
from storebridge.identifiers import validate_collection_name, validate_table_prefix
from storebridge.knowledge import KnowledgeCapabilities, KnowledgeStore, Vector
from storebridge.models import CollectionInfo, Distance, DocumentPage, KnowledgeDocument, SearchHit
from storebridge.urls import merge_url_option
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

from .conversation import SurrealDBConversationStore, resolve_url

_ESCAPED = re.compile("\x01([\x01\x02])")
#: Rows fetched per query when a filter is evaluated client-side.
PAGE = 1000
#: Extra candidates fetched by the native scan, re-scored exactly in float64.
_MARGIN = 16
_NATIVE = {
    Distance.COSINE: ("vector::similarity::cosine(embedding, $q)", "DESC"),
    Distance.L2: ("vector::distance::euclidean(embedding, $q)", "ASC"),
    Distance.DOT: ("vector::dot(embedding, $q)", "DESC"),
}


def _key(doc_id: str) -> str:
    """The record key of a document id: SurrealDB refuses NUL in record ids and index keys, so NUL and
    \\x01 are escaped (order-preserving, injective). Query results cannot carry NUL either, so content and
    source_id are stored with the same escaping; metadata is JSON text, where NUL is ``\\u0000``."""
    return doc_id.replace("\x01", "\x01\x02").replace("\x00", "\x01\x01")


def _unkey(key: str) -> str:
    return _ESCAPED.sub(lambda m: "\x00" if m.group(1) == "\x01" else "\x01", key) if "\x01" in key else key


class SurrealDBKnowledgeStore(KnowledgeStore):
    """Knowledge store on SurrealDB: embedded (``mem://``, ``surrealkv://``) or a server. Thread-safe."""

    backend_name = "surrealdb_vector"
    capabilities = KnowledgeCapabilities(
        filter_operators=ALL_OPS,
        nested_keys=True,
        client_side_filters=True,
        distances=frozenset(Distance),
        recall_floor=1.0,
        persistent=True,
        max_batch=BATCH_SIZE,
        notes=("exact brute-force search in SurrealQL, re-scored in float64",
               "filters are evaluated client-side after paging through the collection"),
    )

    # The conversation store's connection handling, reused as is (same attributes).
    _secrets = SurrealDBConversationStore._secrets
    _open = SurrealDBConversationStore._open
    _attach = SurrealDBConversationStore._attach
    _detach = SurrealDBConversationStore._detach
    _run = SurrealDBConversationStore._run
    _call = SurrealDBConversationStore._call

    def __init__(self, url: str | None = None, *, path: str | os.PathLike[str] | None = None,
                 connection: Any = None, namespace: str | None = None, database: str | None = None,
                 username: str | None = None, password: str | None = None, token: str | None = None,
                 auth_namespace: str | None = None, auth_database: str | None = None,
                 table_prefix: str = "sb_") -> None:
        import dataclasses

        self.table_prefix = validate_table_prefix(table_prefix)
        if connection is not None:
            if url is not None or path is not None:
                raise ConfigurationError("give url/path or connection=, not both")
            client_url = str(getattr(connection, "raw_url", "mem://"))
            query: dict[str, str] = {}
            creds: dict[str, Any] = {}
        else:
            client_url, query, creds = resolve_url(url, path)
        self.namespace = merge_url_option("namespace", namespace, query.get("ns") or query.get("namespace")) \
            or "storebridge"
        self.database = merge_url_option("database", database, query.get("db") or query.get("database")) \
            or "storebridge"
        self._username = merge_url_option("username", username, creds.get("username"))
        self._password = merge_url_option("password", password, creds.get("password"))
        self._token = merge_url_option("token", token, query.get("token"))
        self._auth_namespace = auth_namespace
        self._auth_database = auth_database
        self.url = client_url
        memory = client_url.startswith(("mem://", "memory://"))
        if memory and connection is None:
            self.capabilities = dataclasses.replace(type(self).capabilities, persistent=False)
        self._closed = False
        self._coll = f"{self.table_prefix}kcollection"
        self._docs = f"{self.table_prefix}kdoc"
        self._engine = self._attach(client_url, connection)
        try:
            self._call("migrate", (
                "BEGIN TRANSACTION;"
                f"DEFINE TABLE IF NOT EXISTS {self._coll} SCHEMALESS;"
                f"DEFINE TABLE IF NOT EXISTS {self._docs} SCHEMALESS;"
                f"DEFINE INDEX IF NOT EXISTS {self._docs}_collection_id ON TABLE {self._docs} "
                "FIELDS collection, key UNIQUE;"
                "COMMIT TRANSACTION;"
            ))
        except BaseException:
            self._detach()
            raise

    def __repr__(self) -> str:
        return f"SurrealDBKnowledgeStore(url={self.url!r}, namespace={self.namespace!r}, database={self.database!r})"

    def close(self) -> None:
        if self._closed:
            return
        with self._engine.lock:
            self._closed = True
        self._detach()

    # -- plumbing -------------------------------------------------------------------------------------

    def _info(self, name: str) -> CollectionInfo:
        rows = self._call("read", f"SELECT dimension, distance FROM type::thing('{self._coll}', $name)",
                          {"name": name})[0]
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

    def _columns(self, embeddings: bool) -> str:
        return "key, content, source_id, metadata" + (", embedding" if embeddings else "")

    @staticmethod
    def _document(row: Mapping[str, Any], embeddings: bool) -> KnowledgeDocument:
        return KnowledgeDocument(
            id=_unkey(row["key"]), content=_unkey(row.get("content") or ""), metadata=json.loads(row["metadata"]),
            source_id=None if row.get("source_id") is None else _unkey(row["source_id"]),
            embedding=[float(x) for x in row["embedding"]] if embeddings else None,
        )

    def _pages(self, name: str, columns: str, after: str | None = None) -> Iterator[list[dict[str, Any]]]:
        """Every document of ``name`` in ``key`` order, :data:`PAGE` rows per query."""
        while True:
            cond = "" if after is None else " AND key > $after"
            rows = self._call("read", (
                f"SELECT {columns} FROM {self._docs} WHERE collection = $c{cond} ORDER BY key LIMIT $n"
            ), {"c": name, "after": after, "n": PAGE})[0] or []
            if rows:
                yield rows
            if len(rows) < PAGE:
                return
            after = rows[-1]["key"]

    # -- collections ----------------------------------------------------------------------------------

    def create_collection(self, name: str, dimension: int, distance: Distance | str = Distance.COSINE, *,
                          exist_ok: bool = True) -> CollectionInfo:
        name = validate_collection_name(name)
        dimension = positive_int(dimension, "dimension")
        metric = Distance.parse(distance)
        wanted = CollectionInfo(name, dimension, metric)
        try:
            self._call("create collection", (
                f"CREATE type::thing('{self._coll}', $name) SET name = $name, dimension = $dimension, "
                "distance = $distance RETURN NONE"
            ), {"name": name, "dimension": dimension, "distance": metric.value})
            return wanted
        except Exception as exc:
            if "already exists" not in str(exc):
                raise
        existing = self._info(name)
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
        names = self._call("list", f"SELECT VALUE name FROM {self._coll}")[0] or []
        return sorted(names)

    def drop_collection(self, name: str) -> bool:
        name = validate_collection_name(name)
        result = self._call("drop collection", (
            "BEGIN TRANSACTION;"
            f"LET $existed = (SELECT VALUE id FROM type::thing('{self._coll}', $name));"
            f"DELETE {self._docs} WHERE collection = $name;"
            f"DELETE type::thing('{self._coll}', $name);"
            "RETURN array::len($existed) > 0;"
            "COMMIT TRANSACTION;"
        ), {"name": name})
        return bool(result[-1])

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

    def _commit(self, name: str, info: CollectionInfo, documents: Sequence[KnowledgeDocument], *,
                replace: bool) -> None:
        check_documents(documents)
        if not replace:
            repeated = [doc_id for doc_id, n in Counter(doc.id for doc in documents).items() if n > 1]
            if repeated:
                raise AlreadyExistsError(
                    f"document id(s) {repeated[:5]} appear twice in one insert; nothing of the batch was written"
                )
        rows: list[dict[str, Any]] = []
        for start in range(0, len(documents), BATCH_SIZE):
            chunk = documents[start:start + BATCH_SIZE]
            vectors = embedding_matrix(chunk, info.dimension, info.distance)
            for doc, vector in zip(chunk, vectors, strict=True):
                rows.append({
                    "key": _key(storable_text(doc.id, f"document id {doc.id!r}")),
                    "content": _key(storable_text(doc.content, f"content of document {doc.id!r}")),
                    "source_id": None if doc.source_id is None
                    else _key(storable_text(doc.source_id, f"source_id of {doc.id!r}")),
                    "metadata": metadata_json(doc),
                    "embedding": vector.astype(np.float64).tolist(),
                })
        verb = "UPSERT" if replace else "CREATE"
        sql = (
            "BEGIN TRANSACTION;"
            f"IF array::len((SELECT VALUE id FROM type::thing('{self._coll}', $c))) == 0 {{ THROW 'sb: collection gone' }};"
            f"FOR $r IN $rows {{ {verb} type::thing('{self._docs}', [$c, $r.key]) SET collection = $c, "
            "key = $r.key, content = $r.content, source_id = $r.source_id, metadata = $r.metadata, "
            "embedding = $r.embedding RETURN NONE; };"
            "COMMIT TRANSACTION;"
        )
        for start in range(0, len(rows), BATCH_SIZE):
            part = rows[start:start + BATCH_SIZE] if replace else rows
            try:
                self._call("write", sql, {"c": name, "rows": part})
            except Exception as exc:
                text = str(exc)
                if "An error occurred: sb: collection gone" in text:
                    raise CollectionNotFoundError(f"knowledge collection {name!r} does not exist") from exc
                if not replace and "already exists" in text:
                    raise AlreadyExistsError(
                        f"a document id of this batch exists already in collection {name!r}; use upsert to "
                        "replace it. Nothing of this batch was written"
                    ) from exc
                raise
            if not replace:
                return

    def delete(self, collection: str, ids: Sequence[str] | None = None, *, filter: FilterLike = None) -> int:
        name = validate_collection_name(collection)
        match = self._filter(filter)
        wanted = None if ids is None else list(dict.fromkeys(id_list(ids)))
        self._info(name)
        if wanted is None and match is None:
            return 0
        candidates: list[dict[str, Any]]
        if match is not None:
            if wanted is None:
                candidates = [r for page in self._pages(name, "key, metadata") for r in page]
            else:
                candidates = []
                for start in range(0, len(wanted), PAGE):
                    candidates += self._call("read", (
                        f"SELECT key, metadata FROM {self._docs} WHERE collection = $c AND key IN $ids"
                    ), {"c": name, "ids": [_key(i) for i in wanted[start:start + PAGE]]})[0] or []
            wanted = [_unkey(r["key"]) for r in candidates if match(json.loads(r["metadata"]))]
        assert wanted is not None
        removed = 0
        for start in range(0, len(wanted), PAGE):
            result = self._call("delete", (
                f"DELETE {self._docs} WHERE collection = $c AND key IN $ids RETURN BEFORE"
            ), {"c": name, "ids": [_key(i) for i in wanted[start:start + PAGE]]})[0] or []
            removed += len(result)
        return removed

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
            expression, order = _NATIVE[info.distance]
            rows = self._call("search", (
                f"SELECT {columns}, {expression} AS sb_score FROM {self._docs} WHERE collection = $c "
                f"ORDER BY sb_score {order} LIMIT $n"
            ), {"c": name, "q": q64.tolist(), "n": k + _MARGIN})[0] or []
        else:
            rows = [r for page in self._pages(name, columns) for r in page
                    if match(json.loads(r["metadata"]))]
        if not rows:
            return []
        stored = np.array([r["embedding"] for r in rows], dtype=np.float64)
        raw, scores = exact_scores(info.distance, stored, q64)
        order_idx = np.lexsort(([r["key"] for r in rows], -scores))[:k]
        if score_threshold is not None:
            order_idx = order_idx[scores[order_idx] >= score_threshold]
        return [SearchHit(self._document(rows[i], include_embeddings), float(scores[i]), float(raw[i]))
                for i in order_idx]

    def get(self, collection: str, ids: Sequence[str], *, include_embeddings: bool = True) -> list[KnowledgeDocument]:
        name = validate_collection_name(collection)
        wanted = id_list(ids)
        self._info(name)
        unique = list(dict.fromkeys(wanted))
        found: dict[str, KnowledgeDocument] = {}
        for start in range(0, len(unique), PAGE):
            for row in self._call("get", (
                f"SELECT {self._columns(include_embeddings)} FROM {self._docs} "
                "WHERE collection = $c AND key IN $ids"
            ), {"c": name, "ids": [_key(i) for i in unique[start:start + PAGE]]})[0] or []:
                found[_unkey(row["key"])] = self._document(row, include_embeddings)
        return [found[doc_id] for doc_id in wanted if doc_id in found]

    def count(self, collection: str, *, filter: FilterLike = None) -> int:
        name = validate_collection_name(collection)
        match = self._filter(filter)
        self._info(name)
        if match is None:
            rows = self._call("count", f"SELECT count() AS n FROM {self._docs} WHERE collection = $c GROUP ALL",
                              {"c": name})[0] or []
            return int(rows[0]["n"]) if rows else 0
        return sum(1 for page in self._pages(name, "key, metadata") for r in page
                   if match(json.loads(r["metadata"])))

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
            cond = "" if after is None else " AND key > $after"
            out = self._call("scroll", (
                f"SELECT {columns} FROM {self._docs} WHERE collection = $c{cond} ORDER BY key LIMIT $n"
            ), {"c": name, "after": after, "n": limit + 1})[0] or []
        else:
            for page in self._pages(name, columns, after):
                out += [r for r in page if match(json.loads(r["metadata"]))]
                if len(out) > limit:
                    break
        page_rows = out[:limit]
        next_cursor = json.dumps(page_rows[-1]["key"]) if len(out) > limit else None
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


__all__ = ["PAGE", "SurrealDBKnowledgeStore"]
