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
  ``name``, ``dimension``, ``distance``, ``inexact`` (set once a document of :mod:`._filters`'s "inexact"
  kind was written) and ``hnsw`` (set once its HNSW index is defined). Collection names are validated by
  the core and only travel as bound values, except as hex in the vector field's name (below).
* ``<prefix>kdoc``: one record per document, ``type::thing('<prefix>kdoc', [$collection, $key])`` (ids are
  unique per collection by construction; ``key`` is the id through
  :func:`~._connection.escape_text`: SurrealDB refuses NUL in keys and results, so ``content`` and
  ``source_id`` are escaped alike), with ``collection``, ``key``, ``content``, ``source_id``,
  ``metadata`` (JSON text: exact round trips, None and 1.0 kept), the vector (the float32 values, as
  floats) in the collection's own field ``v_<hex of the collection name>`` (:func:`._filters.vector_field`:
  an HNSW index covers one field of one table with one dimension, so each collection needs its own), and
  the filter copy ``fmeta`` / ``fnull`` / ``finexact`` (:mod:`._filters`). Index ``(collection, key)``,
  and per indexed collection ``<prefix>kdoc_v_<hex>``: ``HNSW DIMENSION n DIST COSINE|EUCLIDEAN TYPE F32
  EFC 150 M 12`` on that field (records without the field are skipped by it).

Version 3 (this one) moved the vectors out of version 2's shared ``embedding`` field: the first store to
connect moves them (one ``UPDATE`` per collection) and builds the index of each collection at the
threshold, before writing the version, so an interrupted migration is taken up again (a store made with
``hnsw=False`` only moves them; an index then comes with the collection's next write by another store).

Every value is a bound ``$parameter``; table names come only from the validated table prefix, field and
index names from hex; the HNSW numbers (``DIMENSION``, ``EFC``, ``M``; ``k`` and ``ef`` of ``<|k,ef|>``)
are written into the text as checked integers because SurrealDB 2.3.10 takes no parameter there.

Search. Exact: a brute-force scan in SurrealQL (``vector::similarity::cosine``,
``vector::distance::euclidean``, ``vector::dot``; ``WHERE <filter> ORDER BY score, key LIMIT``). HNSW, like
the pgvector store's design: a cosine or l2 collection gets its index in the write that takes it to
``hnsw_threshold`` documents (default 10,000; 0 = from its creation; ``hnsw=False``: never, and existing
indexes are not used), in that write's last step (:meth:`_engine_settle`), because SurrealDB builds the graph
one document at a time and maintains it on every later write. SurrealDB has no inner-product HNSW distance
(``DIST DOT`` is a parse error; the names it takes are EUCLIDEAN, COSINE, MANHATTAN, MINKOWSKI n, CHEBYSHEV,
HAMMING, JACCARD, PEARSON), so ``dot`` collections are always scanned. An indexed collection is searched with
``SELECT ... FROM (SELECT VALUE id FROM <docs> WHERE v_<hex> <|k,ef|> $q) WHERE <filter> ORDER BY score``: the
filter is applied AFTER the top-k, in the outer SELECT, never beside the KNN operator, because SurrealDB
2.3.10 gets that combination wrong (seen here on 39 two-dimensional records, ``g`` one of 0, 1, 2: ``g = 2 AND
v <|3,10|> $q`` returned 2 of the 3 nearest matches; ``v <|5,40|> $q AND (type::is::number(g) AND g == 2)`` 2
of 5; ``v <|5,40|> $q AND (g = 2 OR g = 0)`` none, and in another run of that shape a record with ``g = 1``).
So without a filter the index is asked for the template's ``k + 16`` candidates; with one, for its whole
candidate list (``hnsw_ef``, default 1,600, at least ``k + 16``), which is then filtered. The search scans
exactly instead when fewer than ``k + 16`` come back without a filter (a collection smaller than that, an
index that lost records: the KNN operator on a missing index returns nothing) or fewer than ``FILTER_MARGIN``
(8) times ``k + 16`` of the candidates match a filter (a selective filter, whose best matches would lie deep
in the candidate list, where HNSW's recall falls): so a filtered search never returns fewer hits than there
are matching documents, and its recall is that of an unfiltered one. Either way the template re-scores the
candidates in float64 from their original float32 vectors, so scores follow
:class:`~storebridge.models.Distance` exactly and ties go by id; HNSW only chooses which candidates. Reads by
id (``get``, the insert check, ``delete`` with ids) address records directly (``array::map($rids, |$r|
type::thing(...))``), no scan.

Measured here (2 shared cores under varying load from other work; 20,000 x 384 normal random vectors, the
hardest case for HNSW; cosine; exact numpy reference). SurrealDB's graph matches faiss' ``IndexHNSWFlat`` at
the same M / EFC (recall@10 0.49 vs 0.52 at ef 200), so recall comes from ``ef``: with M 12 / EFC 150,
recall@10 of the raw KNN operator was 0.48 at ef 200, 0.73 at 400, 0.91 at 800, 0.97-0.99 at 1,600 (query sets
of 20 and 60), 0.99-1.0 at 2,000 and 3,200. Through this store with the defaults (50 queries, k=10): 0.98
without a filter, 0.974 / 0.98 / 0.98 with filters matching 20 / 30 / 50 % (answered by the index), 1.0 with
one matching 3.3 % (answered by the scan; before ``FILTER_MARGIN`` it was answered by the index with 0.946).
Time per search: 0.5 s through the index against 4.9 s for the scan without a filter, 0.7 s against 1.8 s with
the 20 % filter; a selective filter pays the index's attempt before the scan (3.1 s against 1.5 s for the
3.3 % filter). Building the index over the 20,000 documents took 310-440 s (about 15-20 ms a document, one at a
time; an insert into an indexed collection costs 15-30 ms, so ``hnsw_threshold=0`` makes every insert
that slow), the 20,000 inserts without it 13-17 s. Hence ``recall_floor`` 0.95 (1.0 with ``hnsw=False``),
``hnsw_ef`` 1,600, and the threshold: below about 10,000 documents the scan takes under about 2.5 s and the
index's build costs more than it saves. Real embeddings, with a far lower intrinsic dimension than random
vectors, reach the same recall at much smaller ``ef``. The unit tests check the HNSW path on 1,000 documents
(recall, filters against the reference, either way they are answered, the exact fallback, the migration); the
conformance suite runs whole with ``hnsw_threshold=0`` too (its ranking cases then go through the index; its
filter cases, on a few dozen documents, through the fallback).

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
transaction (``UPSERT ... CONTENT``) that fails if the collection was dropped meanwhile; into a collection
with an HNSW index, transactions of :data:`INDEXED_WRITE_BATCH` (64) documents, halved while the engine
answers that one is too large (surrealkv refused 150 inserts into a 20,000-document index in one
transaction: "Record is too large to fit in a segment"; 100 passed), so such a batch is not atomic. Insert
refuses existing ids by reading them first (not atomic against a concurrent writer of the same ids).
Deleting from an indexed collection is slow in SurrealDB (it repairs the graph: 1,000 deletes took 130 s
on the 20,000 x 384 index, on surrealkv); dropping one removes the index first.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from storebridge.engine import Candidate, EngineKnowledgeStore, count_option, flag_option
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
from ._filters import (
    HNSW_DISTANCE,
    HNSW_MAX_DIMENSION,
    INEXACT_FIELD,
    Where,
    compile_where,
    hnsw_index,
    hnsw_index_name,
    knn_source,
    metadata_copy,
    vector_field,
)

SCHEMA_VERSION = 3
#: Documents per write transaction.
WRITE_BATCH = BATCH_SIZE
_GONE = "sb: collection gone"
#: Field of a collection record: set once a document with an inexact filter copy was written to it.
_HAS_INEXACT = "inexact"
#: Field of a collection record: set once its HNSW index is defined.
_INDEXED = "hnsw"
#: A collection gets its HNSW index in the write that takes it to this many documents (default).
HNSW_THRESHOLD = 10_000
#: HNSW candidate list of a search (``<|k,ef|>``); see the module docstring for the recall it gives.
HNSW_EF = 1_600
#: HNSW graph options: SurrealDB's own defaults, written out so another server version cannot change them.
HNSW_M = 12
HNSW_EFC = 150
#: A filtered HNSW answer is kept only when this many times ``k + 16`` of the candidates match (see
#: :meth:`SurrealDBKnowledgeStore._approximate`).
FILTER_MARGIN = 8
#: Documents per write transaction into a collection with an HNSW index (see ``_engine_write``).
INDEXED_WRITE_BATCH = 64
#: What surrealkv answers for a transaction too large for its log.
_TOO_LARGE = "too large to fit in a segment"
_NATIVE = {
    Distance.COSINE: ("vector::similarity::cosine({field}, $q)", "DESC"),
    Distance.L2: ("vector::distance::euclidean({field}, $q)", "ASC"),
    Distance.DOT: ("vector::dot({field}, $q)", "DESC"),
}


class SurrealDBKnowledgeStore(EngineKnowledgeStore):
    """Knowledge store on SurrealDB: embedded (``mem://``, ``surrealkv://``) or a server. Thread-safe."""

    backend_name = "surrealdb_vector"
    capabilities = KnowledgeCapabilities(
        filter_operators=ALL_OPS,
        nested_keys=True,
        client_side_filters=False,
        distances=frozenset(Distance),
        recall_floor=0.95,
        persistent=True,
        max_batch=WRITE_BATCH,
        notes=(("cosine and l2 collections of 10,000 documents or more (hnsw_threshold) are searched through "
                "their HNSW index (approximate: recall@10 floor 0.95); smaller ones, dot collections and stores "
                "made with hnsw=False exactly; candidates are re-scored in float64"),
               ("a filter is applied to the HNSW candidates (hnsw_ef of them); unless 8 x (k + 16) of them "
                "match, the search scans exactly, so a filtered search never returns fewer hits than there "
                "are matches"),
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
                 table_prefix: str = "sb_", hnsw: bool = True, hnsw_threshold: int | None = None,
                 hnsw_ef: int | None = None) -> None:
        self._closed = False
        self.table_prefix = validate_table_prefix(table_prefix)
        #: Whether this store builds and uses HNSW indexes (False: every search is exact).
        self.hnsw = flag_option("hnsw", hnsw, True)
        #: Documents from which a cosine / l2 collection gets its HNSW index (0: from its creation).
        self.hnsw_threshold = count_option("hnsw_threshold", hnsw_threshold, HNSW_THRESHOLD, low=0)
        #: Candidate list of an HNSW search (at least the number of candidates asked for).
        self.hnsw_ef = count_option("hnsw_ef", hnsw_ef, HNSW_EF, low=1, high=1_000_000)
        self._conn = SurrealDBConnection(
            url, path=path, connection=connection, namespace=namespace, database=database, username=username,
            password=password, token=token, auth_namespace=auth_namespace, auth_database=auth_database,
            label="surrealdb_vector knowledge")
        self._secrets = self._conn.secrets()
        self._where = f"{self._conn.url} ({self._conn.namespace}/{self._conn.database})"
        changes: dict[str, Any] = {}
        if self._conn.memory and not self._conn.external:
            changes["persistent"] = False
        notes = type(self).capabilities.notes
        if not self.hnsw:
            changes["recall_floor"] = 1.0
            changes["notes"] = ("exact search in SurrealQL (hnsw=False), re-scored in float64", *notes[2:])
        elif self.hnsw_threshold != HNSW_THRESHOLD:
            first = notes[0].replace(f"{HNSW_THRESHOLD:,} documents", f"{self.hnsw_threshold:,} documents")
            changes["notes"] = (first, *notes[1:])
        if changes:
            self.capabilities = dataclasses.replace(type(self).capabilities, **changes)
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
                f"database={self.database!r}, table_prefix={self.table_prefix!r}, hnsw={self.hnsw!r})")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._conn.close()

    # -- plumbing -------------------------------------------------------------------------------------

    def _translate_error(self, exc: Exception, what: str) -> StorebridgeError:
        return self._conn.translate(exc, what)

    def _migrate(self) -> None:
        """Tables and indexes; documents written before the filter copy existed (version 1) get it; vectors
        written to the shared ``embedding`` field (versions 1 and 2) move to their collection's field, and
        collections that have reached the threshold get their HNSW index (version 3)."""
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
        names = self._conn.query("migrate", f"SELECT VALUE name FROM {self._coll}")[0] or []
        for name in names:
            self._conn.query("migrate", (
                f"UPDATE {self._docs} SET {vector_field(name)} = embedding, embedding = NONE "
                "WHERE collection = $c AND embedding != NONE RETURN NONE"), {"c": name})
        for name in names:  # before the version: an interrupted index build is taken up again
            try:
                self._ensure_index(name)
            except StorebridgeError:
                raise
            except Exception as exc:
                raise self._conn.translate(exc, "migrate (HNSW index)") from exc
        self._conn.query("migrate", (
            f"UPSERT type::thing('{self._versions}', 'knowledge') SET version = $version, applied_at = $now "
            "RETURN NONE"), {"version": SCHEMA_VERSION, "now": now()})

    @staticmethod
    def _columns(info: CollectionInfo, embeddings: bool) -> str:
        vector = f", {vector_field(info.name)} AS embedding" if embeddings else ""
        return "key, content, source_id, metadata" + vector

    def _ensure_index(self, name: str) -> None:
        """Define the HNSW index of collection ``name`` if this store uses HNSW, the collection's distance
        has one and it holds ``hnsw_threshold`` documents or more. Building it takes a while (it indexes
        every document, one by one, in the statement: see the module docstring for timings)."""
        if not self.hnsw:
            return
        rows = self._conn.run(
            f"SELECT dimension, distance, {_INDEXED} AS indexed FROM type::thing('{self._coll}', $c)",
            {"c": name})[0]
        if not rows or rows[0].get("indexed") is True:
            return  # dropped meanwhile, or indexed already
        info = CollectionInfo(name, int(rows[0]["dimension"]), Distance.parse(rows[0]["distance"]))
        if info.distance not in HNSW_DISTANCE or info.dimension > HNSW_MAX_DIMENSION:
            return
        if self.hnsw_threshold > 0:
            counted = self._conn.run(f"SELECT count() AS n FROM {self._docs} WHERE collection = $c GROUP ALL",
                                     {"c": name})[0]
            if (int(counted[0]["n"]) if counted else 0) < self.hnsw_threshold:
                return
        try:
            self._conn.run((
                "BEGIN TRANSACTION;"
                f"IF type::thing('{self._coll}', $c).dimension != $dimension {{ THROW '{_GONE}' }};"
                + hnsw_index(self._docs, name, info.dimension, info.distance, m=HNSW_M, efc=HNSW_EFC) + ";"
                f"UPDATE type::thing('{self._coll}', $c) SET {_INDEXED} = true RETURN NONE;"
                "COMMIT TRANSACTION;"
            ), {"c": name, "dimension": info.dimension})
        except QueryFailed as exc:
            if _GONE not in str(exc):  # dropped (or re-made with another dimension) meanwhile: nothing to do
                raise

    def _has_index(self, info: CollectionInfo) -> bool:
        """Whether the collection has its HNSW index (whether or not this store uses it)."""
        if info.distance not in HNSW_DISTANCE:
            return False
        flag = self._conn.run(f"SELECT VALUE {_INDEXED} FROM type::thing('{self._coll}', $c)", {"c": info.name})[0]
        return bool(flag) and flag[0] is True

    def _indexed(self, info: CollectionInfo) -> bool:
        """Whether searches of this collection go through its HNSW index."""
        return self.hnsw and self._has_index(info)

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
                           f"distance = $distance, {_INDEXED} = false RETURN NONE",
                           {"name": info.name, "dimension": info.dimension, "distance": info.distance.value})
        except QueryFailed as exc:
            if "already exists" in str(exc):
                raise AlreadyExistsError(f"knowledge collection {info.name!r} was created meanwhile by another "
                                         "store; call create_collection again to reuse it") from exc
            raise
        if self.hnsw_threshold == 0:
            self._ensure_index(info.name)

    def _engine_settle(self, name: str) -> None:
        """After each write: the write that takes a collection to the threshold builds its HNSW index."""
        self._ensure_index(name)

    def _engine_drop(self, name: str) -> None:
        self._conn.run((
            "BEGIN TRANSACTION;"
            f"REMOVE INDEX IF EXISTS {hnsw_index_name(self._docs, name)} ON TABLE {self._docs};"
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
        rows: list[tuple[dict[str, Any], bool]] = []
        for doc, vector in zip(documents, vectors, strict=True):
            copy = metadata_copy(doc.metadata)
            key = escape_text(doc.id)
            rows.append(({"key": key, "doc": {
                "collection": info.name, "key": key, "content": escape_text(doc.content),
                "source_id": escape_optional(doc.source_id), "metadata": metadata_json(doc),
                vector_field(info.name): vector.astype(np.float64).tolist(), **copy.fields(),
            }}, copy.inexact))
        # An indexed collection is written in smaller transactions: on surrealkv, a transaction inserting
        # 150 documents into a 20,000-document HNSW index failed ("Record is too large to fit in a
        # segment"), 100 passed; a transaction that fails so is retried in halves (it wrote nothing).
        step = INDEXED_WRITE_BATCH if self._has_index(info) else len(rows)
        start = 0
        while start < len(rows):
            chunk = rows[start:start + step]
            try:
                self._conn.run((
                    "BEGIN TRANSACTION;"
                    f"IF type::thing('{self._coll}', $c).dimension == NONE {{ THROW '{_GONE}' }};"
                    f"IF $inexact {{ UPDATE type::thing('{self._coll}', $c) SET {_HAS_INEXACT} = true "
                    "RETURN NONE };"
                    f"FOR $r IN $rows {{ UPSERT type::thing('{self._docs}', [$c, $r.key]) CONTENT $r.doc "
                    "RETURN NONE; };"
                    "COMMIT TRANSACTION;"
                ), {"c": info.name, "rows": [row for row, _ in chunk], "inexact": any(flag for _, flag in chunk)})
            except QueryFailed as exc:
                if _GONE in str(exc):
                    written = "nothing was" if start == 0 else f"only its first {start} documents were"
                    raise CollectionNotFoundError(
                        f"knowledge collection {info.name!r} was dropped during the write; of this batch, "
                        f"{written} written") from exc
                if _TOO_LARGE in str(exc) and step > 1:
                    step = max(1, len(chunk) // 2)
                    continue
                raise
            start += len(chunk)

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
        score = expression.format(field=vector_field(info.name))
        columns = self._columns(info, True)
        if self._indexed(info):
            rows = self._approximate(info, score, order, columns, compiled, where, query, limit)
            if rows is not None:
                return self._candidates(rows)
        params: dict[str, Any] = {"c": info.name, "q": query.astype(np.float64).tolist(), "n": limit}
        results = self._conn.run((
            f"SELECT {columns}, {score} AS sb_score FROM {self._docs} WHERE {self._condition(compiled, params)} "
            f"ORDER BY sb_score {order}, key ASC LIMIT $n;"
            + self._flagged(columns, compiled)
        ), params)
        return self._candidates((results[0] or []) + self._matching(results[1], where))

    def _approximate(self, info: CollectionInfo, score: str, order: str, columns: str, compiled: Where | bool,
                     where: Filter | None, query: np.ndarray, limit: int) -> list[dict[str, Any]] | None:
        """The ``limit`` best candidates through the HNSW index, or None when the index's answer is not
        good enough and the caller must scan exactly.

        Without a filter, the index is asked for ``limit`` neighbours; fewer (a collection smaller than
        that, an index that lost records) means None. With a filter, the index is asked for its whole
        candidate list (``hnsw_ef``), the filter is applied to it in an outer SELECT (never beside the KNN
        operator: SurrealDB 2.3.10 gets that combination wrong, see the module docstring), and the answer is
        kept only if at least ``FILTER_MARGIN * limit`` candidates match: then the ``limit``-th best match
        lies, on average, in the first eighth of the list, where HNSW's recall is that of an unfiltered
        search (measured: with matches deep in the list, 3.3 % of 20,000 matching, recall@10 fell to 0.946)."""
        filtered = compiled is not True
        depth = max(limit, self.hnsw_ef) if filtered else limit
        if filtered and FILTER_MARGIN * limit > depth:
            return None  # the candidate list cannot hold enough matches: do not ask
        params: dict[str, Any] = {"c": info.name, "q": query.astype(np.float64).tolist(), "n": limit}
        source = knn_source(self._docs, info.name, depth, max(depth, self.hnsw_ef))
        results = self._conn.run((
            f"LET $hits = (SELECT {columns}, {score} AS sb_score FROM ({source}) "
            f"WHERE {self._condition(compiled, params)} ORDER BY sb_score {order}, key ASC);"
            "RETURN array::len($hits);"
            "RETURN array::slice($hits, 0, $n);"
            + self._flagged(columns, compiled)
        ), params)
        matched = int(results[1] or 0)
        if matched < (FILTER_MARGIN * limit if filtered else limit):
            return None
        return (results[2] or []) + self._matching(results[3], where)

    def _candidates(self, rows: list[dict[str, Any]]) -> list[Candidate]:
        return [Candidate(self._document(row, False), np.asarray(row["embedding"], dtype=np.float32)) for row in rows]

    def _engine_get(self, info: CollectionInfo, ids: list[str], with_vectors: bool) -> list[KnowledgeDocument]:
        source, params = self._record_ids(info, ids)
        rows = self._conn.run(f"SELECT {self._columns(info, with_vectors)} FROM {source}", params)[0] or []
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
        columns = self._columns(info, with_vectors)
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
