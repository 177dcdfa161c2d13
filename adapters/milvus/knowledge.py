"""Milvus knowledge store (``milvus``) on ``pymilvus.MilvusClient``, tested with pymilvus 3.0.2 and
milvus-lite 3.2.2 (a local file, in process). A Milvus server (``milvus+http://host:19530``, ``token=``)
uses the same code but was not run here.

URLs: ``milvus:///relative/file.db`` / ``milvus:////abs/file.db`` (also ``milvus+lite://``) open a
milvus-lite file; ``milvus+http://host:port`` / ``milvus+https://`` a server. Options: ``uri=``, ``token=``
(masked in every repr and error), ``db_name=``, or a ready ``client=`` (not closed by ``close()``).

Collection names. Milvus allows ``[A-Za-z_][A-Za-z0-9_]*``; our name ``n`` maps deterministically to
``sb_<n with '-' as '_'>_<12 hex of sha256(n)>`` (the hash keeps ``a-b`` and ``a_b`` apart). The original
name, dimension and distance are collection properties (``sb.name``, ``sb.dimension``, ``sb.distance``);
``list_collections`` returns our names only.

Schema: ``id`` VARCHAR primary key (our id), ``vector`` FLOAT_VECTOR(dim), ``content`` VARCHAR,
``source_id`` VARCHAR (nullable), ``metadata`` JSON (the user's metadata whole). Index FLAT (exact),
metric COSINE / L2 / IP. Milvus's L2 is squared and its IP/COSINE are similarities; we never report its
numbers: the candidates' vectors come back with the hits and are re-scored exactly (float64,
:func:`storebridge.vectors.exact_scores`), so ``score``/``distance`` follow
:class:`~storebridge.models.Distance`. FLAT is exact, so ``recall_floor`` is 1.0: an unfiltered search
asks for ``k + 32`` candidates (re-ranked exactly); one with a filter scores every matching document.

Filters are evaluated client-side (``client_side_filters=True``) with the reference evaluator, because
Milvus's JSON semantics differ from FILTERS.md (seen on milvus-lite: ``metadata["t"] == true`` matches
the number 1, ``!=`` and ``not (...)`` do not match documents missing the key). Milvus evaluates only
an exact pre-filter: ``$eq``/``$in`` on string values (and ``$and``/``$or`` of those), written as
``metadata["key"] == "value"`` with the value escaped by :func:`milvus_string` (backslash, quote, CR,
LF, TAB; Milvus has no ``\\u`` escapes, other characters go in raw; hostile values are tested).
Expression templates (``filter_params``) are not supported by milvus-lite 3.2, and ``MilvusClient.get``
/ ``delete(ids=)`` / ``query_iterator`` build unescaped expressions there, so ids are always written
into ``id in [...]`` through :func:`milvus_string` too.

Writes: ``insert`` reads the batch's ids first and raises ``AlreadyExistsError`` if any exists, then
inserts (Milvus has no conditional insert: not atomic against a concurrent writer of the same ids).
``upsert`` is ``client.upsert``. Batches of 1000; a sequence is validated whole before the first write.

Scroll pages in id order (keyset: the cursor is the last id); Milvus ignores ``order_by`` on queries
here, so each page reads the ids (and metadata) after the cursor and sorts them client-side.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from storebridge.engine import Candidate, EngineKnowledgeStore
from storebridge.errors import (
    ConfigurationError,
    ConnectionFailedError,
    OperationFailedError,
    StorebridgeError,
    ValidationError,
)
from storebridge.filters import (
    ALL_OPS,
    And,
    Comparison,
    Filter,
    Op,
    Or,
    matcher,
)
from storebridge.knowledge import KnowledgeCapabilities
from storebridge.models import CollectionInfo, Distance, DocumentPage, KnowledgeDocument
from storebridge.urls import mask_secrets, parse_url
from storebridge.vectors import (
    BATCH_SIZE,
)

_METRIC = {Distance.COSINE: "COSINE", Distance.L2: "L2", Distance.DOT: "IP"}
#: Milvus's largest ``limit`` (topk) for one search.
_MAX_TOPK = 16384
_CHUNK = 500
_MAX_VARCHAR = 65535
_ALL = 'id >= ""'
_FIELDS = ["id", "content", "content_more", "source_id", "metadata"]
#: Pieces of one document's content beyond the first (each at most ``_MAX_VARCHAR`` bytes): 256 MB.
_MAX_PIECES = 4096


def _split_text(text: str) -> list[str]:
    """``text`` in pieces of at most ``_MAX_VARCHAR`` UTF-8 bytes, never splitting a character."""
    pieces: list[str] = []
    start = 0
    while start < len(text) or not pieces:
        end = min(len(text), start + _MAX_VARCHAR)  # a character is at least one byte
        while len(text[start:end].encode("utf-8")) > _MAX_VARCHAR:
            end -= max(1, (len(text[start:end].encode("utf-8")) - _MAX_VARCHAR) // 4)
        pieces.append(text[start:end])
        start = end
    return pieces


def milvus_collection_name(name: str) -> str:
    """The Milvus collection name for our (validated) collection name: deterministic, always valid."""
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:12]
    return f"sb_{name.replace('-', '_')}_{digest}"


def milvus_string(value: str) -> str:
    """A Milvus expression string literal for ``value`` (bound safely: every quote and backslash escaped)."""
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
               .replace("\t", "\\t"))
    return f'"{escaped}"'


def _key(field: str) -> str:
    return f"metadata[{milvus_string(field)}]"


def prefilter(node: Any) -> str | None:
    """A Milvus boolean expression selecting a superset of what ``node`` matches (exact for what it
    covers), or None. Only string equality / membership: there Milvus's meaning is exactly ours."""
    if isinstance(node, Comparison):
        if "." in node.field:
            return None
        if node.op is Op.EQ and isinstance(node.value, str):
            return f"{_key(node.field)} == {milvus_string(node.value)}"
        if node.op is Op.IN and node.value and all(isinstance(v, str) for v in node.value):
            return " or ".join(f"{_key(node.field)} == {milvus_string(v)}" for v in node.value)
        return None
    if isinstance(node, And):
        parts = [p for p in (prefilter(c) for c in node.children) if p is not None]
        return " and ".join(f"({p})" for p in parts) if parts else None
    if isinstance(node, Or):
        maybe = [prefilter(c) for c in node.children]
        parts = [p for p in maybe if p is not None]
        if len(parts) != len(maybe):
            return None
        return " or ".join(f"({p})" for p in parts)
    return None


def _id_expression(ids: Sequence[str]) -> str:
    return f"id in [{', '.join(milvus_string(i) for i in ids)}]"


class MilvusKnowledgeStore(EngineKnowledgeStore):
    """Knowledge collections in Milvus (milvus-lite file or a server), FLAT exact search."""

    rerank_margin = 32

    backend_name = "milvus"
    capabilities = KnowledgeCapabilities(
        filter_operators=ALL_OPS,
        nested_keys=True,
        client_side_filters=True,
        distances=frozenset(Distance),
        recall_floor=1.0,
        persistent=True,
        max_batch=BATCH_SIZE,
        notes=(
            "FLAT index: exact search, candidates re-scored in float64",
            "filters evaluated client-side after a string-equality pre-filter in Milvus",
            "insert checks ids first: not atomic against concurrent writers of the same ids",
        ),
    )

    def __init__(self, url: str | None = None, *, uri: str | None = None, token: str | None = None,
                 db_name: str | None = None, client: Any = None) -> None:
        self._closed = False
        self._loaded: set[str] = set()
        self._secrets = (token,)
        self._owns_client = client is None
        if client is not None:
            if url is not None or uri is not None:
                raise ConfigurationError("pass either client= or a URL / uri=, not both")
            self._client = client
            self._where = "a given client"
            return
        if url is not None:
            if uri is not None:
                raise ConfigurationError("pass either a URL or uri=, not both")
            parsed = parse_url(url)
            if parsed.scheme != "milvus" or parsed.driver not in (None, "lite", "http", "https"):
                raise ConfigurationError(f"not a Milvus URL: {mask_secrets(url)!r}; use milvus:///file.db or "
                                         "milvus+http://host:19530")
            unknown = set(parsed.query) - {"token", "db_name"}
            if unknown:
                raise ConfigurationError(f"unknown Milvus URL options {sorted(unknown)}")
            token = token or parsed.query.get("token") or (
                f"{parsed.username}:{parsed.password}" if parsed.username and parsed.password else None)
            db_name = db_name or parsed.query.get("db_name")
            if parsed.driver in ("http", "https"):
                uri = f"{parsed.driver}://{parsed.host}:{parsed.port or 19530}"
            else:
                if parsed.host:
                    raise ConfigurationError("a milvus-lite URL has no host: use milvus:///relative/file.db or "
                                             "milvus:////absolute/file.db")
                uri = parsed.file_path
        if not uri:
            raise ConfigurationError("the Milvus store needs a URL or uri= (a milvus-lite .db file or a server)")
        uri = os.fspath(uri)
        self._secrets = (token,)
        self._where = uri
        try:
            from pymilvus import MilvusClient
        except ImportError as exc:  # pragma: no cover - the registry checks first
            raise ConfigurationError("pymilvus is not installed: pip install 'storebridge[milvus]'") from exc
        kwargs: dict[str, Any] = {}
        if token:
            kwargs["token"] = token
        if db_name:
            kwargs["db_name"] = db_name
        try:
            self._client = MilvusClient(uri, **kwargs)
        except Exception as exc:
            raise ConnectionFailedError(f"cannot open Milvus at {self._mask(uri)}: {self._mask(exc)}") from exc

    def _mask(self, text: Any) -> str:
        return mask_secrets(text, *self._secrets)

    def __repr__(self) -> str:
        return f"MilvusKnowledgeStore({self._mask(self._where)!r})"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            try:
                self._client.close()
            except Exception as exc:
                raise OperationFailedError(f"closing the Milvus client failed: {self._mask(exc)}") from exc

    # -- plumbing -------------------------------------------------------------------------------------

    def _translate_error(self, exc: Exception, what: str) -> StorebridgeError:
        return OperationFailedError(f"Milvus {what} failed: {self._mask(exc)}")

    def _query(self, info: CollectionInfo, expression: str, fields: list[str]) -> list[dict[str, Any]]:
        return list(self._client.query(milvus_collection_name(info.name), filter=expression, output_fields=fields))

    @staticmethod
    def _document(row: dict[str, Any], *, with_embedding: bool) -> KnowledgeDocument:
        vector = row.get("vector")
        return KnowledgeDocument(
            id=row["id"], content=(row.get("content") or "") + "".join(row.get("content_more") or ()),
            metadata=dict(row.get("metadata") or {}), source_id=row.get("source_id"),
            embedding=np.asarray(vector, dtype=np.float32).tolist() if with_embedding and vector is not None else None,
        )

    def _matching_ids(self, info: CollectionInfo, where: Filter | None, extra: str = "") -> list[str]:
        """Ids of the documents matching ``where``: Milvus pre-filters, the reference evaluator decides."""
        expression = (prefilter(where) if where is not None else None) or _ALL
        if extra:
            expression = f"({expression}) and {extra}"
        check = None if where is None else matcher(where)
        rows = self._query(info, expression, ["id"] if check is None else ["id", "metadata"])
        return [row["id"] for row in rows if check is None or check(dict(row.get("metadata") or {}))]

    def _rows(self, info: CollectionInfo, ids: Sequence[str], fields: list[str]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for start in range(0, len(ids), _CHUNK):
            rows += self._query(info, _id_expression(ids[start:start + _CHUNK]), fields)
        return rows

    # -- engine primitives ------------------------------------------------------------------------------

    def _engine_describe(self, name: str) -> CollectionInfo | None:
        target = milvus_collection_name(name)
        if not self._client.has_collection(target):
            self._loaded.discard(target)
            return None
        props = self._client.describe_collection(target).get("properties") or {}
        if props.get("sb.name") != name:
            raise OperationFailedError(f"the Milvus collection {target!r} was not made by storebridge for {name!r}")
        if target not in self._loaded:  # a collection is searchable once loaded
            self._client.load_collection(target)
            self._loaded.add(target)
        return CollectionInfo(name, int(props["sb.dimension"]), Distance(props["sb.distance"]))

    def _engine_create(self, info: CollectionInfo) -> None:
        from pymilvus import DataType

        schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=_MAX_VARCHAR)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=info.dimension)
        schema.add_field("content", DataType.VARCHAR, max_length=_MAX_VARCHAR)
        schema.add_field("content_more", DataType.ARRAY, element_type=DataType.VARCHAR,
                         max_capacity=_MAX_PIECES, max_length=_MAX_VARCHAR)
        schema.add_field("source_id", DataType.VARCHAR, max_length=_MAX_VARCHAR, nullable=True)
        schema.add_field("metadata", DataType.JSON)
        index = self._client.prepare_index_params()
        index.add_index(field_name="vector", index_type="FLAT", metric_type=_METRIC[info.distance])
        self._client.create_collection(
            milvus_collection_name(info.name), schema=schema, index_params=index, consistency_level="Strong",
            properties={"sb.name": info.name, "sb.dimension": str(info.dimension), "sb.distance": info.distance.value},
        )

    def _engine_drop(self, name: str) -> None:
        target = milvus_collection_name(name)
        self._client.drop_collection(target)
        self._loaded.discard(target)

    def _engine_names(self) -> list[str]:
        names = []
        for target in self._client.list_collections():
            if not target.startswith("sb_"):
                continue
            ours = (self._client.describe_collection(target).get("properties") or {}).get("sb.name")
            if isinstance(ours, str) and milvus_collection_name(ours) == target:
                names.append(ours)
        return names

    def _engine_existing(self, info: CollectionInfo, ids: list[str]) -> list[str]:
        return [row["id"] for row in self._rows(info, ids, ["id"])]

    def _engine_validate(self, info: CollectionInfo, documents: list[KnowledgeDocument]) -> None:
        for doc in documents:
            for what, text in (("id", doc.id), ("source_id", doc.source_id or "")):
                if len(text.encode("utf-8")) > _MAX_VARCHAR:
                    raise ValidationError(f"the {what} of document {doc.id!r} is longer than Milvus's "
                                          f"{_MAX_VARCHAR} bytes")
            if len(_split_text(doc.content)) > _MAX_PIECES + 1:
                raise ValidationError(f"the content of document {doc.id!r} is too long for this store "
                                      f"({_MAX_PIECES + 1} pieces of {_MAX_VARCHAR} bytes)")

    def _engine_write(self, info: CollectionInfo, documents: list[KnowledgeDocument], vectors: np.ndarray) -> None:
        rows = []
        for doc, vector in zip(documents, vectors, strict=True):
            pieces = _split_text(doc.content)
            rows.append({"id": doc.id, "vector": vector.tolist(), "content": pieces[0], "content_more": pieces[1:],
                         "source_id": doc.source_id, "metadata": dict(doc.metadata)})
        self._client.upsert(milvus_collection_name(info.name), rows)

    def _engine_delete(self, info: CollectionInfo, ids: list[str] | None, where: Filter | None) -> int:
        if ids is not None:
            check = None if where is None else matcher(where)
            rows = self._rows(info, ids, ["id", "metadata"])
            doomed = [r["id"] for r in rows if check is None or check(dict(r.get("metadata") or {}))]
        else:
            doomed = self._matching_ids(info, where)
        target = milvus_collection_name(info.name)
        for start in range(0, len(doomed), _CHUNK):
            self._client.delete(target, filter=_id_expression(doomed[start:start + _CHUNK]))
        return len(doomed)

    def _engine_nearest(self, info: CollectionInfo, query: np.ndarray, limit: int,
                        where: Filter | None) -> list[Candidate]:
        fields = [*_FIELDS, "vector"]
        if where is None and limit <= _MAX_TOPK:
            result = self._client.search(
                milvus_collection_name(info.name), data=[query.tolist()], limit=limit, anns_field="vector",
                output_fields=fields, search_params={"metric_type": _METRIC[info.distance]})
            rows = [dict(hit["entity"], id=hit["id"]) for hit in result[0]]
        else:  # exact over every matching document
            rows = self._rows(info, self._matching_ids(info, where), fields)
        return [Candidate(self._document(row, with_embedding=False), np.asarray(row["vector"], dtype=np.float32))
                for row in rows]

    def _engine_get(self, info: CollectionInfo, ids: list[str], with_vectors: bool) -> list[KnowledgeDocument]:
        fields = _FIELDS + (["vector"] if with_vectors else [])
        return [self._document(row, with_embedding=with_vectors) for row in self._rows(info, ids, fields)]

    def _engine_count(self, info: CollectionInfo, where: Filter | None) -> int:
        if where is None:
            rows = self._query(info, "", ["count(*)"])
            return int(rows[0]["count(*)"]) if rows else 0
        return len(self._matching_ids(info, where))

    def _engine_page(self, info: CollectionInfo, limit: int, cursor: str | None, where: Filter | None,
                     with_vectors: bool) -> DocumentPage:
        """Keyset pages in id order (Milvus ignores ``order_by`` on queries: the ids are sorted here)."""
        ids = sorted(self._matching_ids(info, where, "" if cursor is None else f"id > {milvus_string(cursor)}"))
        page_ids = ids[:limit]
        fields = _FIELDS + (["vector"] if with_vectors else [])
        found = {row["id"]: row for row in self._rows(info, page_ids, fields)}
        documents = [self._document(found[i], with_embedding=with_vectors) for i in page_ids if i in found]
        return DocumentPage(documents, page_ids[-1] if len(ids) > limit else None)


__all__ = ["MilvusKnowledgeStore", "milvus_collection_name", "milvus_string", "prefilter"]
