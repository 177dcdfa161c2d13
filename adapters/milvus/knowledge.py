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
import math
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from storebridge.errors import (
    AlreadyExistsError,
    CollectionNotFoundError,
    ConfigurationError,
    ConnectionFailedError,
    NotSupportedError,
    OperationFailedError,
    StorebridgeError,
    StoreClosedError,
    ValidationError,
)
from storebridge.filters import (
    ALL_OPS,
    And,
    Comparison,
    FilterLike,
    Op,
    Or,
    matcher,
    parse_filter,
    require_operators,
)
from storebridge.identifiers import validate_collection_name
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

_METRIC = {Distance.COSINE: "COSINE", Distance.L2: "L2", Distance.DOT: "IP"}
_MARGIN = 32
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


class MilvusKnowledgeStore(KnowledgeStore):
    """Knowledge collections in Milvus (milvus-lite file or a server), FLAT exact search."""

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
        self._lock = threading.Lock()
        self._secrets = [token] if token else []
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
        if token:
            self._secrets.append(token)
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

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        if self._closed:
            raise StoreClosedError("the Milvus knowledge store is closed")
        try:
            yield
        except StorebridgeError:
            raise
        except Exception as exc:
            if self._closed:
                raise StoreClosedError("the Milvus knowledge store is closed") from exc
            raise OperationFailedError(f"Milvus {what} failed: {self._mask(exc)}") from exc

    def _info(self, name: str) -> CollectionInfo:
        """Our collection's info (and make sure it is loaded); ``CollectionNotFoundError`` if missing."""
        target = milvus_collection_name(name)
        with self._errors("describe_collection"):
            if not self._client.has_collection(target):
                self._loaded.discard(target)
                raise CollectionNotFoundError(
                    f"knowledge collection {name!r} does not exist; create it with create_collection")
            described = self._client.describe_collection(target)
        props = described.get("properties") or {}
        if props.get("sb.name") != name:
            raise OperationFailedError(f"the Milvus collection {target!r} was not made by storebridge for {name!r}")
        if target not in self._loaded:
            with self._errors("load_collection"):
                self._client.load_collection(target)
            self._loaded.add(target)
        return CollectionInfo(name, int(props["sb.dimension"]), Distance(props["sb.distance"]))

    def _query(self, name: str, expression: str, fields: list[str], **kwargs: Any) -> list[dict[str, Any]]:
        with self._errors("query"):
            return list(self._client.query(milvus_collection_name(name), filter=expression,
                                           output_fields=fields, **kwargs))

    @staticmethod
    def _document(row: dict[str, Any], *, with_embedding: bool) -> KnowledgeDocument:
        vector = row.get("vector")
        return KnowledgeDocument(
            id=row["id"], content=(row.get("content") or "") + "".join(row.get("content_more") or ()), metadata=dict(row.get("metadata") or {}),
            source_id=row.get("source_id"),
            embedding=np.asarray(vector, dtype=np.float32).tolist() if with_embedding and vector is not None else None,
        )

    def _compile(self, filter: FilterLike) -> tuple[Any, str, Callable[[dict[str, Any]], bool] | None]:
        tree = parse_filter(filter)
        require_operators(tree, self.capabilities.filter_operators, backend="milvus",
                          nested_keys=self.capabilities.nested_keys)
        if tree is None:
            return None, _ALL, None
        return tree, prefilter(tree) or _ALL, matcher(tree)

    def _matching_ids(self, name: str, expression: str, check: Callable[[dict[str, Any]], bool] | None,
                      ) -> list[str]:
        rows = self._query(name, expression, ["id"] if check is None else ["id", "metadata"])
        return [row["id"] for row in rows if check is None or check(dict(row.get("metadata") or {}))]

    def _rows(self, name: str, ids: Sequence[str], fields: list[str]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for start in range(0, len(ids), _CHUNK):
            rows += self._query(name, _id_expression(ids[start:start + _CHUNK]), fields)
        return rows

    # -- collections ----------------------------------------------------------------------------------

    def create_collection(self, name: str, dimension: int, distance: Distance | str = Distance.COSINE, *,
                          exist_ok: bool = True) -> CollectionInfo:
        name = validate_collection_name(name)
        dimension = positive_int(dimension, "dimension")
        metric = Distance.parse(distance)
        if metric not in self.capabilities.distances:
            raise NotSupportedError(f"the milvus backend does not support the {metric.value!r} distance")
        wanted = CollectionInfo(name, dimension, metric)
        try:
            existing = self._info(name)
        except CollectionNotFoundError:
            from pymilvus import DataType

            target = milvus_collection_name(name)
            with self._errors("create_collection"):
                schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
                schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=_MAX_VARCHAR)
                schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
                schema.add_field("content", DataType.VARCHAR, max_length=_MAX_VARCHAR)
                schema.add_field("content_more", DataType.ARRAY, element_type=DataType.VARCHAR,
                                 max_capacity=_MAX_PIECES, max_length=_MAX_VARCHAR)
                schema.add_field("source_id", DataType.VARCHAR, max_length=_MAX_VARCHAR, nullable=True)
                schema.add_field("metadata", DataType.JSON)
                index = self._client.prepare_index_params()
                index.add_index(field_name="vector", index_type="FLAT", metric_type=_METRIC[metric])
                self._client.create_collection(
                    target, schema=schema, index_params=index, consistency_level="Strong",
                    properties={"sb.name": name, "sb.dimension": str(dimension), "sb.distance": metric.value},
                )
            return self._info(name)
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
        with self._errors("list_collections"):
            targets = self._client.list_collections()
        names = []
        for target in targets:
            if not target.startswith("sb_"):
                continue
            with self._errors("describe_collection"):
                props = self._client.describe_collection(target).get("properties") or {}
            ours = props.get("sb.name")
            if isinstance(ours, str) and milvus_collection_name(ours) == target:
                names.append(ours)
        return sorted(names)

    def drop_collection(self, name: str) -> bool:
        name = validate_collection_name(name)
        try:
            self._info(name)
        except CollectionNotFoundError:
            return False
        target = milvus_collection_name(name)
        with self._errors("drop_collection"):
            self._client.drop_collection(target)
        self._loaded.discard(target)
        return True

    # -- writes ---------------------------------------------------------------------------------------

    def insert(self, collection: str, documents: Iterable[KnowledgeDocument]) -> list[str]:
        return self._write(collection, documents, replace=False)

    def upsert(self, collection: str, documents: Iterable[KnowledgeDocument]) -> list[str]:
        return self._write(collection, documents, replace=True)

    def _write(self, name: str, documents: Iterable[KnowledgeDocument], *, replace: bool) -> list[str]:
        name = validate_collection_name(name)
        if isinstance(documents, (KnowledgeDocument, str, bytes)) or not isinstance(documents, Iterable):
            raise ValidationError(f"documents must be a list of KnowledgeDocument, got {type(documents).__name__}")
        info = self._info(name)
        target = milvus_collection_name(name)
        sequence = isinstance(documents, Sequence)
        if sequence:
            docs = list(documents)
            if not replace:
                self._refuse_repeats(docs)
            prepared = [self._prepare(batch, info) for batch in batches(docs, BATCH_SIZE)]
            if not replace:
                self._refuse_existing(name, [d.id for d in docs])
            groups: Iterable[tuple[list[KnowledgeDocument], list[dict[str, Any]]]] = zip(
                batches(docs, BATCH_SIZE), prepared)
        else:
            groups = ((batch, self._prepare(batch, info)) for batch in batches(documents, BATCH_SIZE))
        ids: list[str] = []
        for batch, rows in groups:
            if not replace and not sequence:
                self._refuse_repeats(batch)
                self._refuse_existing(name, [d.id for d in batch])
            if replace:
                last = {row["id"]: row for row in rows}  # a repeated id: the last one wins
                rows = list(last.values())
            with self._errors("upsert" if replace else "insert"):
                (self._client.upsert if replace else self._client.insert)(target, rows)
            ids.extend(doc.id for doc in batch)
        return ids

    @staticmethod
    def _prepare(batch: list[KnowledgeDocument], info: CollectionInfo) -> list[dict[str, Any]]:
        check_documents(batch)
        vectors = embedding_matrix(batch, info.dimension, info.distance)
        rows = []
        for doc, vector in zip(batch, vectors):
            metadata_json(doc)  # refuses what JSON cannot hold exactly (NaN, non-string keys, ...)
            doc_id = storable_text(doc.id, f"document id {doc.id!r}")
            if not doc_id:
                raise ValidationError("Milvus does not accept an empty document id")
            for what, text in (("id", doc_id), ("source_id", doc.source_id or "")):
                if len(text.encode("utf-8")) > _MAX_VARCHAR:
                    raise ValidationError(f"the {what} of document {doc.id!r} is longer than Milvus's "
                                          f"{_MAX_VARCHAR} bytes")
            pieces = _split_text(storable_text(doc.content, f"content of document {doc.id!r}"))
            if len(pieces) > _MAX_PIECES + 1:
                raise ValidationError(f"the content of document {doc.id!r} is too long for this store "
                                      f"({_MAX_PIECES + 1} pieces of {_MAX_VARCHAR} bytes)")
            rows.append({
                "id": doc_id, "vector": vector.tolist(),
                "content": pieces[0], "content_more": pieces[1:],
                "source_id": None if doc.source_id is None else storable_text(doc.source_id, f"source_id of {doc.id!r}"),
                "metadata": dict(doc.metadata),
            })
        return rows

    @staticmethod
    def _refuse_repeats(documents: Sequence[KnowledgeDocument]) -> None:
        seen: set[str] = set()
        repeated = []
        for doc in documents:
            if doc.id in seen:
                repeated.append(doc.id)
            seen.add(getattr(doc, "id", None))  # type: ignore[arg-type]
        if repeated:
            raise AlreadyExistsError(
                f"document id(s) {repeated[:5]} appear twice in one insert; nothing of the batch was written")

    def _refuse_existing(self, name: str, ids: Sequence[str]) -> None:
        existing = [row["id"] for row in self._rows(name, list(dict.fromkeys(ids)), ["id"])]
        if existing:
            raise AlreadyExistsError(
                f"document id(s) {existing[:5]} exist already in collection {name!r}; use upsert to replace them. "
                "Nothing of this batch was written"
            )

    def delete(self, collection: str, ids: Sequence[str] | None = None, *, filter: FilterLike = None) -> int:
        name = validate_collection_name(collection)
        tree, expression, check = self._compile(filter)
        wanted = None if ids is None else list(dict.fromkeys(id_list(ids)))
        self._info(name)
        if wanted is None and tree is None:
            return 0
        if wanted is not None:
            rows = self._rows(name, wanted, ["id", "metadata"])
            doomed = [r["id"] for r in rows if check is None or check(dict(r.get("metadata") or {}))]
        else:
            doomed = self._matching_ids(name, expression, check)
        target = milvus_collection_name(name)
        for start in range(0, len(doomed), _CHUNK):
            with self._errors("delete"):
                self._client.delete(target, filter=_id_expression(doomed[start:start + _CHUNK]))
        return len(doomed)

    # -- reads ----------------------------------------------------------------------------------------

    def search(self, collection: str, vector: Vector, *, k: int = 10, filter: FilterLike = None,
               score_threshold: float | None = None, include_embeddings: bool = False) -> list[SearchHit]:
        name = validate_collection_name(collection)
        k = positive_int(k, "k")
        tree, expression, check = self._compile(filter)
        if score_threshold is not None and (isinstance(score_threshold, bool)
                                            or not isinstance(score_threshold, (int, float))
                                            or math.isnan(score_threshold)):
            raise ValidationError(f"score_threshold must be a number or None, got {score_threshold!r}")
        info = self._info(name)
        q64, _ = query_vectors(vector, info.dimension, info.distance)
        fields = [*_FIELDS, "vector"]
        if tree is None and k + _MARGIN <= _MAX_TOPK:
            with self._errors("search"):
                result = self._client.search(
                    milvus_collection_name(name), data=[q64.astype(np.float32).tolist()], limit=k + _MARGIN,
                    anns_field="vector", output_fields=fields, search_params={"metric_type": _METRIC[info.distance]},
                )
            rows = [dict(hit["entity"], id=hit["id"]) for hit in result[0]]
        else:
            rows = self._rows(name, self._matching_ids(name, expression, check), fields)
        if not rows:
            return []
        stored = np.asarray([row["vector"] for row in rows], dtype=np.float32)
        raw, scores = exact_scores(info.distance, stored, q64)
        order = np.lexsort((np.arange(len(rows)), -scores))[:k]
        if score_threshold is not None:
            order = order[scores[order] >= score_threshold]
        return [SearchHit(self._document(rows[i], with_embedding=include_embeddings), float(scores[i]),
                          float(raw[i])) for i in order]

    def get(self, collection: str, ids: Sequence[str], *, include_embeddings: bool = True) -> list[KnowledgeDocument]:
        name = validate_collection_name(collection)
        wanted = id_list(ids)
        self._info(name)
        fields = _FIELDS + (["vector"] if include_embeddings else [])
        found = {row["id"]: self._document(row, with_embedding=include_embeddings)
                 for row in self._rows(name, list(dict.fromkeys(wanted)), fields)}
        return [found[doc_id] for doc_id in wanted if doc_id in found]

    def count(self, collection: str, *, filter: FilterLike = None) -> int:
        name = validate_collection_name(collection)
        tree, expression, check = self._compile(filter)
        self._info(name)
        if tree is None:
            rows = self._query(name, "", ["count(*)"])
            return int(rows[0]["count(*)"]) if rows else 0
        return len(self._matching_ids(name, expression, check))

    def scroll(self, collection: str, *, limit: int = 100, cursor: str | None = None, filter: FilterLike = None,
               include_embeddings: bool = True) -> DocumentPage:
        name = validate_collection_name(collection)
        limit = positive_int(limit, "limit")
        if cursor is not None and not isinstance(cursor, str):
            raise ValidationError(f"invalid scroll cursor {cursor!r}; pass the next_cursor of the previous page")
        _, expression, check = self._compile(filter)
        self._info(name)
        if cursor is not None:
            expression = f"({expression}) and id > {milvus_string(cursor)}"
        ids = sorted(self._matching_ids(name, expression, check))
        page_ids = ids[:limit]
        fields = _FIELDS + (["vector"] if include_embeddings else [])
        found = {row["id"]: row for row in self._rows(name, page_ids, fields)}
        documents = [self._document(found[i], with_embedding=include_embeddings) for i in page_ids if i in found]
        next_cursor = page_ids[-1] if len(ids) > limit else None
        return DocumentPage(documents, next_cursor)


__all__ = ["MilvusKnowledgeStore", "milvus_collection_name", "milvus_string", "prefilter"]
