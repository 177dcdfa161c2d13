"""The ``surrealdb_vector`` knowledge store on the official ``surrealdb`` 2.x client (sync ``Surreal``),
built on :class:`storebridge.engine.EngineKnowledgeStore`.

Tested with the client's embedded engines (``mem://``, ``surrealkv://``) of ``surrealdb`` 2.0.0, which embeds
SurrealDB core 2.3.10. Servers (``surrealdb://host:8000``, ``+ws``/``+wss``/``+http(s)``) go through the same
connection code as the conversation store (:mod:`._connection`: URL parsing, credentials, one shared
reference-counted engine per ``surrealkv`` directory, ``connection=`` for a caller's ``Surreal``), NOT
verified here.

Data layout (schemaless tables made with ``DEFINE ... IF NOT EXISTS``; version in
``<prefix>schema_versions:knowledge``):

* ``<prefix>kcollection``: one record per collection, ``type::thing('<prefix>kcollection', $name)``, with
  ``name``, ``dimension``, ``distance`` and ``inexact`` (set once a document of :mod:`._filters`'s "inexact"
  kind was written). Collection names are validated by the core and only travel as bound values.
* ``<prefix>kdoc``: one record per document, ``type::thing('<prefix>kdoc', [$collection, $key])`` (ids are
  unique per collection by construction; ``key`` is the id through
  :func:`~._connection.escape_text`: SurrealDB refuses NUL in keys and results, so ``content`` and
  ``source_id`` are escaped alike), with ``collection``, ``key``, ``content``, ``source_id``,
  ``metadata`` (JSON text: exact round trips, None and 1.0 kept), ``embedding`` (the float32 values, as
  floats), and the filter copy ``fmeta`` / ``fnull`` / ``finexact`` (:mod:`._filters`). Index
  ``(collection, key)``.

Every value is a bound ``$parameter``; table names come only from the validated table prefix.

Search is an exact brute-force scan in SurrealQL (``vector::similarity::cosine``,
``vector::distance::euclidean``, ``vector::dot``; ``WHERE <filter> ORDER BY score, key LIMIT``; no HNSW
index, so recall is 1.0 with or without a filter), over-fetching the template's margin; the template
re-scores the candidates in float64 from their original float32 vectors, so scores follow
:class:`~storebridge.models.Distance` exactly and ties go by id. Reads by id (``get``, the insert check,
``delete`` with ids) address records directly (``array::map($rids, |$r| type::thing(...))``), no scan.

Filters are native: :func:`._filters.compile_where` turns every operator, with nested (dotted) keys, into
the ``WHERE`` clause of the search, count, scroll and delete queries (see :mod:`._filters` for the mapping;
the unit tests check it against the reference evaluator on corner data and 400 random filters).
The one exception is a document whose metadata holds an integer SurrealDB cannot represent exactly (beyond
``2**96`` and not a float; ``finexact``): the native condition leaves such documents out and, when the
collection has any (``inexact``), a second statement of the same query (a query before the delete) fetches
them for the reference evaluator to decide (tested). A constant
filter (``$in: []``) is decided without asking the engine. (SurrealDB 2.3.10 miscounts ``SELECT count() ...
GROUP ALL`` when two conditions are on indexed fields, seen here, a relative of its issue #5581: filtered
counts here have one indexed condition, ``collection``, and are checked against the reference.)

Writes: the template checks ids and documents first, then each batch of :data:`WRITE_BATCH` is one
transaction (``UPSERT ... CONTENT``) that fails if the collection was dropped meanwhile. Insert refuses
existing ids by reading them first (not atomic against a concurrent writer of the same ids).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from storebridge.engine import Candidate, EngineKnowledgeStore
from storebridge.errors import (
    AlreadyExistsError,
    CollectionNotFoundError,
    SchemaVersionError,
    StorebridgeError,
    ValidationError,
)
from storebridge.filters import ALL_OPS, Filter, matcher
from storebridge.identifiers import validate_table_prefix
from storebridge.knowledge import KnowledgeCapabilities
from storebridge.models import CollectionInfo, Distance, DocumentPage, KnowledgeDocument, now
from storebridge.vectors import BATCH_SIZE, metadata_json

from ._connection import (
    QueryFailed,
    SurrealDBConnection,
    escape_optional,
    escape_text,
    unescape_optional,
    unescape_text,
)
from ._filters import INEXACT_FIELD, Where, compile_where, metadata_copy

SCHEMA_VERSION = 2
#: Documents per write transaction.
WRITE_BATCH = BATCH_SIZE
_GONE = "sb: collection gone"
#: Field of a collection record: set once a document with an inexact filter copy was written to it.
_HAS_INEXACT = "inexact"
_NATIVE = {
    Distance.COSINE: ("vector::similarity::cosine(embedding, $q)", "DESC"),
    Distance.L2: ("vector::distance::euclidean(embedding, $q)", "ASC"),
    Distance.DOT: ("vector::dot(embedding, $q)", "DESC"),
}


class SurrealDBKnowledgeStore(EngineKnowledgeStore):
    """Knowledge store on SurrealDB: embedded (``mem://``, ``surrealkv://``) or a server. Thread-safe."""

    backend_name = "surrealdb_vector"
    capabilities = KnowledgeCapabilities(
        filter_operators=ALL_OPS,
        nested_keys=True,
        client_side_filters=False,
        distances=frozenset(Distance),
        recall_floor=1.0,
        persistent=True,
        max_batch=WRITE_BATCH,
        notes=("exact brute-force search in SurrealQL, re-scored in float64",
               ("every filter operator, nested keys included, is evaluated by SurrealDB; only documents "
                "holding an integer SurrealDB cannot represent (beyond 2**96, not a float) are checked "
                "client-side"),
               "insert checks ids first: not atomic against concurrent writers of the same ids"),
    )
    write_batch = WRITE_BATCH

    def __init__(self, url: str | None = None, *, path: str | os.PathLike[str] | None = None,
                 connection: Any = None, namespace: str | None = None, database: str | None = None,
                 username: str | None = None, password: str | None = None, token: str | None = None,
                 auth_namespace: str | None = None, auth_database: str | None = None,
                 table_prefix: str = "sb_") -> None:
        self._closed = False
        self.table_prefix = validate_table_prefix(table_prefix)
        self._conn = SurrealDBConnection(
            url, path=path, connection=connection, namespace=namespace, database=database, username=username,
            password=password, token=token, auth_namespace=auth_namespace, auth_database=auth_database,
            label="surrealdb_vector knowledge")
        self._secrets = self._conn.secrets()
        self._where = f"{self._conn.url} ({self._conn.namespace}/{self._conn.database})"
        if self._conn.memory and not self._conn.external:
            self.capabilities = dataclasses.replace(type(self).capabilities, persistent=False)
        p = self.table_prefix
        self._coll, self._docs, self._versions = f"{p}kcollection", f"{p}kdoc", f"{p}schema_versions"
        try:
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    @property
    def url(self) -> str:
        return self._conn.url

    @property
    def namespace(self) -> str:
        return self._conn.namespace

    @property
    def database(self) -> str:
        return self._conn.database

    def __repr__(self) -> str:
        return (f"SurrealDBKnowledgeStore(url={self.url!r}, namespace={self.namespace!r}, "
                f"database={self.database!r}, table_prefix={self.table_prefix!r})")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._conn.close()

    # -- plumbing -------------------------------------------------------------------------------------

    def _translate_error(self, exc: Exception, what: str) -> StorebridgeError:
        return self._conn.translate(exc, what)

    def _migrate(self) -> None:
        """Tables and indexes; documents written before the filter copy existed (version 1) get it."""
        got = self._conn.query("migrate", f"SELECT VALUE version FROM type::thing('{self._versions}', 'knowledge')")
        current = (got[0] or [0])[0] if got else 0
        if current > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the knowledge tables with prefix {self.table_prefix!r} are at schema version {current}, newer "
                f"than this storebridge ({SCHEMA_VERSION}); upgrade storebridge")
        if current == SCHEMA_VERSION:
            return
        self._conn.query("migrate", (
            "BEGIN TRANSACTION;"
            f"DEFINE TABLE IF NOT EXISTS {self._coll} SCHEMALESS;"
            f"DEFINE TABLE IF NOT EXISTS {self._docs} SCHEMALESS;"
            f"DEFINE TABLE IF NOT EXISTS {self._versions} SCHEMALESS;"
            f"DEFINE INDEX IF NOT EXISTS {self._docs}_collection_id ON TABLE {self._docs} FIELDS collection, key UNIQUE;"
            "COMMIT TRANSACTION;"
        ))
        old = self._conn.query("migrate", f"SELECT id, collection, metadata FROM {self._docs} WHERE fmeta = NONE")[0]
        for start in range(0, len(old or []), WRITE_BATCH):
            rows, inexact = [], set()
            for row in old[start:start + WRITE_BATCH]:
                copy = metadata_copy(json.loads(row["metadata"]))
                rows.append({"id": row["id"], "fields": copy.fields()})
                if copy.inexact:
                    inexact.add(row["collection"])
            self._conn.query("migrate", (
                "BEGIN TRANSACTION;"
                "FOR $r IN $rows { UPDATE $r.id MERGE $r.fields RETURN NONE; };"
                f"FOR $c IN $inexact {{ UPDATE type::thing('{self._coll}', $c) SET {_HAS_INEXACT} = true RETURN NONE; }};"
                "COMMIT TRANSACTION;"
            ), {"rows": rows, "inexact": sorted(inexact)})
        self._conn.query("migrate", (
            f"UPSERT type::thing('{self._versions}', 'knowledge') SET version = $version, applied_at = $now "
            "RETURN NONE"), {"version": SCHEMA_VERSION, "now": now()})

    def _columns(self, embeddings: bool) -> str:
        return "key, content, source_id, metadata" + (", embedding" if embeddings else "")

    @staticmethod
    def _document(row: Mapping[str, Any], embeddings: bool) -> KnowledgeDocument:
        return KnowledgeDocument(
            id=unescape_text(row["key"]), content=unescape_text(row.get("content") or ""),
            metadata=json.loads(row["metadata"]), source_id=unescape_optional(row.get("source_id")),
            embedding=np.asarray(row["embedding"], dtype=np.float32).tolist() if embeddings else None,
        )

    def _record_ids(self, info: CollectionInfo, ids: list[str]) -> tuple[str, dict[str, Any]]:
        """A SurrealQL source of the records of ``ids`` (point reads, no scan) and its parameter."""
        return (f"array::map($rids, |$r| type::thing('{self._docs}', $r))",
                {"rids": [[info.name, escape_text(i)] for i in ids]})

    def _flagged(self, columns: str, where: Where | bool, extra: str = "") -> str:
        """A statement returning the documents whose filter copy is inexact (``finexact``), if the collection
        has any and a value-dependent filter applies: those are decided client-side."""
        if not isinstance(where, Where):
            return "RETURN []"
        return (f"RETURN IF type::thing('{self._coll}', $c).{_HAS_INEXACT} == true THEN "
                f"(SELECT {columns} FROM {self._docs} WHERE collection = $c AND {INEXACT_FIELD} = true{extra}) "
                "ELSE [] END")

    @staticmethod
    def _condition(where: Where | bool, params: dict[str, Any], base: str = "collection = $c") -> str:
        """``base`` and the filter, for the documents SurrealDB decides (those with an exact copy); the
        filter's parameters are added to ``params``."""
        if not isinstance(where, Where):
            return base
        params.update(where.params)
        return f"{base} AND {INEXACT_FIELD} != true AND ({where.sql})"

    @staticmethod
    def _matching(rows: list[dict[str, Any]] | None, tree: Filter | None) -> list[dict[str, Any]]:
        check = matcher(tree)
        return [row for row in rows or [] if check(json.loads(row["metadata"]))]

    # -- engine primitives ------------------------------------------------------------------------------

    def _engine_describe(self, name: str) -> CollectionInfo | None:
        rows = self._conn.run(f"SELECT dimension, distance FROM type::thing('{self._coll}', $name)",
                              {"name": name})[0]
        if not rows:
            return None
        return CollectionInfo(name, int(rows[0]["dimension"]), Distance.parse(rows[0]["distance"]))

    def _engine_create(self, info: CollectionInfo) -> None:
        try:
            self._conn.run(f"CREATE type::thing('{self._coll}', $name) SET name = $name, dimension = $dimension, "
                           "distance = $distance RETURN NONE",
                           {"name": info.name, "dimension": info.dimension, "distance": info.distance.value})
        except QueryFailed as exc:
            if "already exists" in str(exc):
                raise AlreadyExistsError(f"knowledge collection {info.name!r} was created meanwhile by another "
                                         "store; call create_collection again to reuse it") from exc
            raise

    def _engine_drop(self, name: str) -> None:
        self._conn.run((
            "BEGIN TRANSACTION;"
            f"DELETE {self._docs} WHERE collection = $name;"
            f"DELETE type::thing('{self._coll}', $name);"
            "COMMIT TRANSACTION;"
        ), {"name": name})

    def _engine_names(self) -> list[str]:
        return list(self._conn.run(f"SELECT VALUE name FROM {self._coll}")[0] or [])

    def _engine_existing(self, info: CollectionInfo, ids: list[str]) -> list[str]:
        source, params = self._record_ids(info, ids)
        return [unescape_text(k) for k in self._conn.run(f"SELECT VALUE key FROM {source}", params)[0] or []]

    def _engine_write(self, info: CollectionInfo, documents: list[KnowledgeDocument], vectors: np.ndarray) -> None:
        rows: list[dict[str, Any]] = []
        inexact = False
        for doc, vector in zip(documents, vectors, strict=True):
            copy = metadata_copy(doc.metadata)
            inexact = inexact or copy.inexact
            key = escape_text(doc.id)
            rows.append({"key": key, "doc": {
                "collection": info.name, "key": key, "content": escape_text(doc.content),
                "source_id": escape_optional(doc.source_id), "metadata": metadata_json(doc),
                "embedding": vector.astype(np.float64).tolist(), **copy.fields(),
            }})
        try:
            self._conn.run((
                "BEGIN TRANSACTION;"
                f"IF type::thing('{self._coll}', $c).dimension == NONE {{ THROW '{_GONE}' }};"
                f"IF $inexact {{ UPDATE type::thing('{self._coll}', $c) SET {_HAS_INEXACT} = true RETURN NONE }};"
                f"FOR $r IN $rows {{ UPSERT type::thing('{self._docs}', [$c, $r.key]) CONTENT $r.doc RETURN NONE; }};"
                "COMMIT TRANSACTION;"
            ), {"c": info.name, "rows": rows, "inexact": inexact})
        except QueryFailed as exc:
            if _GONE in str(exc):
                raise CollectionNotFoundError(
                    f"knowledge collection {info.name!r} was dropped during the write; nothing of this batch "
                    "was written") from exc
            raise

    def _engine_delete(self, info: CollectionInfo, ids: list[str] | None, where: Filter | None) -> int:
        compiled = compile_where(where)
        if compiled is False:
            return 0
        params: dict[str, Any] = {"c": info.name}
        source = self._docs
        if ids is not None:
            source, id_params = self._record_ids(info, ids)
            params.update(id_params)
        condition = self._condition(compiled, params)
        if isinstance(compiled, Where):  # documents with an inexact copy: the reference evaluator decides
            flagged = self._conn.run(self._flagged("key, metadata", compiled), params)[0]
            keys = [row["key"] for row in self._matching(flagged, where)]
            if ids is not None:
                wanted = {escape_text(i) for i in ids}
                keys = [k for k in keys if k in wanted]
            params["fkeys"] = keys
            condition = f"collection = $c AND (({self._condition(compiled, params, 'TRUE')}) OR key IN $fkeys)"
        result = self._conn.run((
            "BEGIN TRANSACTION;"
            f"LET $gone = (SELECT VALUE id FROM {source} WHERE {condition});"
            "DELETE $gone;"
            "RETURN array::len($gone);"
            "COMMIT TRANSACTION;"
        ), params)
        return int(result[-1])

    def _engine_nearest(self, info: CollectionInfo, query: np.ndarray, limit: int,
                        where: Filter | None) -> list[Candidate]:
        compiled = compile_where(where)
        if compiled is False:
            return []
        expression, order = _NATIVE[info.distance]
        columns = self._columns(True)
        params: dict[str, Any] = {"c": info.name, "q": query.astype(np.float64).tolist(), "n": limit}
        results = self._conn.run((
            f"SELECT {columns}, {expression} AS sb_score FROM {self._docs} WHERE {self._condition(compiled, params)} "
            f"ORDER BY sb_score {order}, key ASC LIMIT $n;"
            + self._flagged(columns, compiled)
        ), params)
        rows = (results[0] or []) + self._matching(results[1], where)
        return [Candidate(self._document(row, False), np.asarray(row["embedding"], dtype=np.float32)) for row in rows]

    def _engine_get(self, info: CollectionInfo, ids: list[str], with_vectors: bool) -> list[KnowledgeDocument]:
        source, params = self._record_ids(info, ids)
        rows = self._conn.run(f"SELECT {self._columns(with_vectors)} FROM {source}", params)[0] or []
        return [self._document(row, with_vectors) for row in rows]

    def _engine_count(self, info: CollectionInfo, where: Filter | None) -> int:
        compiled = compile_where(where)
        if compiled is False:
            return 0
        params: dict[str, Any] = {"c": info.name}
        results = self._conn.run((
            f"SELECT count() AS n FROM {self._docs} WHERE {self._condition(compiled, params)} GROUP ALL;"
            + self._flagged("key, metadata", compiled)
        ), params)
        counted = int(results[0][0]["n"]) if results[0] else 0
        return counted + len(self._matching(results[1], where))

    def _engine_page(self, info: CollectionInfo, limit: int, cursor: str | None, where: Filter | None,
                     with_vectors: bool) -> DocumentPage:
        after = _parse_cursor(cursor)
        compiled = compile_where(where)
        if compiled is False:
            return DocumentPage([], None)
        columns = self._columns(with_vectors)
        params: dict[str, Any] = {"c": info.name, "after": after, "n": limit + 1}
        keyset = "" if after is None else " AND key > $after"
        condition = self._condition(compiled, params, "collection = $c" + keyset)
        results = self._conn.run((
            f"SELECT {columns} FROM {self._docs} WHERE {condition} ORDER BY key LIMIT $n;"
            + self._flagged(columns, compiled, keyset)
        ), params)
        rows = (results[0] or []) + self._matching(results[1], where)
        rows = sorted(rows, key=lambda row: row["key"])[:limit + 1]
        page = rows[:limit]
        next_cursor = json.dumps(page[-1]["key"]) if len(rows) > limit else None
        return DocumentPage([self._document(row, with_vectors) for row in page], next_cursor)


def _parse_cursor(cursor: str | None) -> str | None:
    """The (escaped) key a scroll cursor continues after: a cursor is that key as JSON text."""
    if cursor is None:
        return None
    try:
        value = json.loads(cursor)
    except ValueError:
        value = None
    if not isinstance(value, str):
        raise ValidationError(f"invalid scroll cursor {cursor!r}; pass the next_cursor of the previous page")
    return value


__all__ = ["SCHEMA_VERSION", "WRITE_BATCH", "SurrealDBKnowledgeStore"]
