"""LightRAG knowledge store (async, embedded): documents with the caller's vectors + a LightRAG graph.

Tested with lightrag-hku 1.5.7 (nano-vectordb 0.0.4.3), fully offline with a user-supplied LLM function,
embedding function and tokenizer.

Layout. ``LightRAGKnowledgeStore("lightrag:///dir", llm_model_func=..., embedding_func=..., tokenizer=...)``
keeps one sub-directory per collection (named exactly as the collection: storebridge's names,
``[A-Za-z0-9_][A-Za-z0-9_-]{0,62}``, are valid directory names; on a case-insensitive file system two
names differing only in case would collide). Each holds ``collection.json`` (dimension, distance and
a random generation id), ``documents.json`` and ``lightrag/`` (one LightRAG instance's ``working_dir``,
with ``workspace="sb_<generation>"`` so LightRAG's process-wide shared state never mixes collections,
nor a dropped collection with its re-creation).

Two indexes, on purpose. LightRAG embeds text itself with its ``embedding_func``: it cannot take the
vectors the caller computed. So:

* ``documents.json`` is a NanoVectorDB (the vector engine LightRAG's own default ``NanoVectorDBStorage``
  is built on) holding each document whole, one row per document: the caller's vector (unit-normalised
  in float64 for the scan) and, as data, the original float32 embedding, content, source_id and the
  metadata as JSON text. ``search(vector)``, ``get``, ``scroll``, ``count`` and ``delete`` use it. The
  scan is brute force (exact), candidates (k + 16) are re-scored in float64 from the original vectors
  with ``storebridge.vectors.exact_scores``: ``recall_floor`` 1.0. NanoVectorDB is cosine-only, so is
  this store (l2/dot raise ``NotSupportedError``). Filters are evaluated in Python with
  ``storebridge.filters.matcher`` inside the scan (``client_side_filters=True``, every operator, dotted keys).
* The LightRAG instance gets every document with non-blank content (``ainsert(content, ids=doc id,
  file_paths=graph_file_path(id, source_id))``, a path unique per document: LightRAG refuses a second
  document under the same file name): it re-chunks and **re-embeds** the content with the given embedding
  function and the LLM extracts entities and relations into its graph. That is what :meth:`query` (LightRAG's own
  retrieval + answer generation, modes naive/local/global/hybrid/mix/bypass) uses; it is not part of the
  common interface. Use the same embedding model for the vectors you write and for ``embedding_func``
  if you want both indexes to agree. An upsert that changes a document's content or source re-indexes it
  (``adelete_by_doc_id`` + ``ainsert``); ``delete`` removes it from the graph too. Writing therefore
  calls the LLM once per chunk: slow and costly with a real model. Without ``llm_model_func`` the graph
  is off: writes and search work, :meth:`query` raises ``NotSupportedError``.

Nothing reaches an engine query language: NanoVectorDB and LightRAG's JSON/NetworkX storages are Python
objects and files. The default tokenizer is :class:`CodePointTokenizer` (one token per character, so
LightRAG's chunk sizes count characters) because LightRAG's own default downloads a tiktoken file;
pass ``tokenizer=`` (a ``lightrag.utils.Tokenizer`` or any object with ``encode``/``decode``) to change it.

One event loop. LightRAG binds its state to the first event loop that uses it, and part of that state is
process-wide (shared-storage locks, the per-workspace pipeline ingress, the worker queues behind its
rate-limited LLM/embedding calls): from a second live loop it raises or deadlocks. So every method of
this store runs on storebridge's background loop (the one its sync face uses anyway); awaiting it from
your own loop only waits for the result there. ``llm_model_func`` and ``embedding_func`` are therefore
awaited on that loop: do not pass functions holding clients bound to your own loop.

Limits: NanoVectorDB rewrites ``documents.json`` whole on every write batch and keeps the collection in
memory (O(n) per write): fine for thousands of documents, not millions. One store object per directory
at a time (each caches its collections).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import math
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote

import numpy as np

from storebridge import bridge
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
from storebridge.knowledge import AsyncKnowledgeStore, KnowledgeCapabilities, Vector
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
    from lightrag import LightRAG, QueryParam
    from lightrag.base import DocStatus
    from lightrag.utils import EmbeddingFunc, Tokenizer
    from nano_vectordb import NanoVectorDB
except ImportError as exc:  # pragma: no cover - the registry checks first
    raise ImportError("the lightrag backend needs lightrag-hku: pip install \"storebridge[lightrag]\"") from exc

#: Documents validated and written per NanoVectorDB save / LightRAG ``ainsert`` call.
WRITE_BATCH = 500
QUERY_MODES = ("naive", "local", "global", "hybrid", "mix", "bypass")
_RERANK_MARGIN = 16
_META_FILE = "collection.json"
_DOCS_FILE = "documents.json"
_GRAPH_DIR = "lightrag"

P = ParamSpec("P")
R = TypeVar("R")


async def on_store_loop(coro: Coroutine[Any, Any, R]) -> R:
    """Await ``coro`` on storebridge's background event loop, from any loop (or on it, directly).

    LightRAG binds its state to the first loop that uses it, process-wide: its pipeline ingress, its
    shared-storage locks and the worker queues behind the rate-limited LLM and embedding functions. Used
    from a second live loop it raises ("belongs to another event loop") or waits forever on a future only
    the first loop's workers can resolve: a deadlock whenever the first loop is blocked in a sync call,
    as the LangChain/LangGraph bridges do when they use a store's sync face inside async code. So every
    call of this store runs on the one loop that also serves its sync face; the caller's loop only awaits
    the result (its context variables go along, as with ``run_sync``)."""
    return await bridge.run_on_background_loop(coro)


def graph_file_path(doc_id: str, source_id: str | None) -> str:
    """The ``file_path`` LightRAG gets for a document: unique per document id.

    LightRAG 1.5 treats ``file_path`` as a document's identity: a second document whose path has the same
    *basename* (after stripping parser hints such as ``.[native].pdf``) is refused as a duplicate, even in
    the same ``ainsert``. A storebridge ``source_id`` names a source shared by many documents (the chunks
    of one file), so it cannot be used as it is. Percent-encoding both parts leaves no ``/``, ``\\``,
    ``[`` or ``#`` in them, so the basename is the whole string and ``<source>#<id>`` is unambiguous;
    the source stays readable in LightRAG's references."""
    name = quote(doc_id, safe="")
    return name if source_id is None else f"{quote(source_id, safe='')}#{name}"


def _on_store_loop(method: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Run a public method on storebridge's background loop (see :func:`on_store_loop`)."""

    @functools.wraps(method)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return await on_store_loop(method(*args, **kwargs))

    return run


class CodePointTokenizer:
    """One token per Unicode code point: offline, deterministic, thread-safe (no state)."""

    def encode(self, content: str) -> list[int]:
        return [ord(c) for c in content]

    def decode(self, tokens: list[int]) -> str:
        return "".join(chr(t) for t in tokens)

    def __deepcopy__(self, memo: dict[int, Any]) -> CodePointTokenizer:
        return self


def _tokenizer(value: Any) -> Tokenizer:
    if value is None:
        return Tokenizer("storebridge-codepoints", CodePointTokenizer())
    if isinstance(value, Tokenizer):
        return value
    if callable(getattr(value, "encode", None)) and callable(getattr(value, "decode", None)):
        return Tokenizer(type(value).__name__, value)
    raise ConfigurationError(f"tokenizer must be a lightrag Tokenizer or have encode/decode, got {value!r:.80}")


def _embedding(value: Any, factory: Callable[[int], Any] | None, dimension: int) -> EmbeddingFunc:
    """A LightRAG ``EmbeddingFunc`` of ``dimension`` from what the user passed."""
    if factory is not None:
        value = factory(dimension)
    if value is None:
        raise ConfigurationError("the lightrag backend needs embedding_func= (or embedding_factory=): LightRAG "
                                 "embeds the content itself")
    if isinstance(value, EmbeddingFunc):
        if value.embedding_dim != dimension:
            raise ConfigurationError(f"embedding_func makes {value.embedding_dim}-d vectors but the collection is "
                                     f"{dimension}-d; pass embedding_factory=(dimension -> function) for mixed sizes")
        return value
    own = getattr(value, "dimension", None)
    if isinstance(own, int) and own != dimension:
        raise ConfigurationError(f"the embedder makes {own}-d vectors but the collection is {dimension}-d; pass "
                                 "embedding_factory=(dimension -> embedder) for collections of several sizes")
    if callable(getattr(value, "embed_documents", None)):  # a storebridge / LangChain-style embedder
        embedder = value

        async def embed(texts: list[str], **_: Any) -> np.ndarray:
            return np.asarray(await asyncio.to_thread(embedder.embed_documents, list(texts)), dtype=np.float32)
    elif callable(value):
        function = value

        async def embed(texts: list[str], **_: Any) -> np.ndarray:
            result = function(list(texts))
            if inspect.isawaitable(result):
                result = await result
            return np.asarray(result, dtype=np.float32)
    else:
        raise ConfigurationError(f"embedding_func must be an EmbeddingFunc, an embedder or a callable, got {value!r:.80}")
    return EmbeddingFunc(embedding_dim=dimension, func=embed)


class _Collection:
    """An open collection: its NanoVectorDB of documents and (lazily) its LightRAG instance."""

    def __init__(self, info: CollectionInfo, generation: str, directory: Path) -> None:
        self.info = info
        self.generation = generation
        self.directory = directory
        self.db = NanoVectorDB(info.dimension, storage_file=str(directory / _DOCS_FILE))
        self.rag: Any = None

    def rows(self) -> list[dict[str, Any]]:
        """Every stored row (NanoVectorDB has no public listing; this relies on its 0.0.4.x layout)."""
        return self.db._NanoVectorDB__storage["data"]  # type: ignore[attr-defined,no-any-return]

    def by_id(self) -> dict[str, dict[str, Any]]:
        return {row["__id__"]: row for row in self.rows()}


class LightRAGKnowledgeStore(AsyncKnowledgeStore):
    """Knowledge collections as LightRAG instances (graph + answers) beside an exact index of the
    caller's vectors; see the module docstring."""

    backend_name = "lightrag"
    capabilities = KnowledgeCapabilities(
        filter_operators=ALL_OPS,
        nested_keys=True,
        client_side_filters=True,
        distances=frozenset({Distance.COSINE}),
        recall_floor=1.0,
        persistent=True,
        max_batch=WRITE_BATCH,
        notes=(
            "cosine only (NanoVectorDB, LightRAG's vector engine, is cosine-only)",
            "search(vector) is exact over the caller's vectors; filters are evaluated in Python",
            ("LightRAG re-embeds each document's content with embedding_func for its own graph/chunk indexes "
             "and cannot use the caller's vectors; query(text, mode=...) uses those"),
            "writes call the LLM (entity extraction) once per chunk when llm_model_func is given",
            ("every call runs on storebridge's background event loop (LightRAG's state is bound to one loop); "
             "llm_model_func and embedding_func are awaited there"),
        ),
    )

    def __init__(self, url: str | None = None, *, working_dir: str | os.PathLike[str] | None = None,
                 llm_model_func: Callable[..., Any] | None = None, embedding_func: Any = None,
                 embedding_factory: Callable[[int], Any] | None = None, tokenizer: Any = None,
                 lightrag_options: dict[str, Any] | None = None) -> None:
        self._closed = False
        self._collections: dict[str, _Collection] = {}
        if (url is None) == (working_dir is None):
            raise ConfigurationError("pass exactly one of url or working_dir to the lightrag store")
        if url is not None:
            parsed = parse_url(url)
            if parsed.scheme != "lightrag" or parsed.driver:
                raise ConfigurationError(f"not a lightrag URL: {parsed}")
            if parsed.query:
                raise ConfigurationError(f"lightrag URLs take no options, got {sorted(parsed.query)}")
            working_dir = ((parsed.host or "") + parsed.path) if parsed.host else parsed.file_path
            if not working_dir:
                raise ConfigurationError("the lightrag URL names no directory: use lightrag:///relative or "
                                         "lightrag:////abs")
        if embedding_func is None and embedding_factory is None:
            raise ConfigurationError("the lightrag backend needs embedding_func= (or embedding_factory=): LightRAG "
                                     "embeds the content itself")
        if embedding_func is not None and embedding_factory is not None:
            raise ConfigurationError("pass embedding_func or embedding_factory, not both")
        if llm_model_func is not None and not callable(llm_model_func):
            raise ConfigurationError("llm_model_func must be an async function (prompt, system_prompt=..., ...)")
        self._root = Path(os.fspath(working_dir))  # type: ignore[arg-type]
        self._llm = llm_model_func
        self._embedding_func = embedding_func
        self._embedding_factory = embedding_factory
        self._tokenizer = _tokenizer(tokenizer)
        self._options = dict(lightrag_options or {})
        for reserved in ("working_dir", "workspace", "llm_model_func", "embedding_func", "tokenizer"):
            if reserved in self._options:
                raise ConfigurationError(f"lightrag_options cannot set {reserved!r}; pass it to the store")
        self._lock = asyncio.Lock()
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(f"cannot create the lightrag directory {str(self._root)!r}: {exc}") from exc

    def __repr__(self) -> str:
        return f"LightRAGKnowledgeStore({str(self._root)!r})"

    @_on_store_loop
    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        opened, self._collections = list(self._collections.values()), {}
        for coll in opened:
            await self._finalize(coll)

    # -- plumbing -------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the lightrag knowledge store on {str(self._root)!r} is closed")

    @staticmethod
    async def _finalize(coll: _Collection) -> None:
        rag, coll.rag = coll.rag, None
        if rag is not None:
            try:
                await rag.finalize_storages()
            except Exception as exc:
                raise OperationFailedError(f"lightrag finalize_storages failed: {exc}") from exc

    def _read_meta(self, name: str) -> tuple[CollectionInfo, str] | None:
        path = self._root / name / _META_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise OperationFailedError(f"cannot read {str(path)!r}: {exc}") from exc
        try:
            return CollectionInfo(name, int(raw["dimension"]), Distance(raw["distance"])), str(raw["generation"])
        except (KeyError, TypeError, ValueError) as exc:
            raise OperationFailedError(f"{str(path)!r} was not written by storebridge") from exc

    async def _open(self, name: str) -> _Collection:
        self._check_open()
        meta = self._read_meta(name)
        if meta is None:
            stale = self._collections.pop(name, None)
            if stale is not None:
                await self._finalize(stale)
            raise CollectionNotFoundError(
                f"knowledge collection {name!r} does not exist; create it with create_collection")
        info, generation = meta
        coll = self._collections.get(name)
        if coll is not None and coll.generation == generation:
            return coll
        if coll is not None:  # dropped and re-created by another store object
            await self._finalize(coll)
        try:
            coll = _Collection(info, generation, self._root / name)
        except Exception as exc:
            raise OperationFailedError(f"cannot open the documents of collection {name!r}: {exc}") from exc
        self._collections[name] = coll
        return coll

    async def _rag(self, coll: _Collection) -> Any:
        """The collection's LightRAG instance, created and initialised on first use (None without an LLM)."""
        if self._llm is None:
            return None
        if coll.rag is None:
            try:
                rag = LightRAG(
                    working_dir=str(coll.directory / _GRAPH_DIR),
                    workspace=f"sb_{coll.generation}",
                    llm_model_func=self._llm,
                    embedding_func=_embedding(self._embedding_func, self._embedding_factory, coll.info.dimension),
                    tokenizer=self._tokenizer,
                    **self._options,
                )
                await rag.initialize_storages()
            except StorebridgeError:
                raise
            except Exception as exc:
                raise OperationFailedError(f"cannot start LightRAG for collection {coll.info.name!r}: {exc}") from exc
            coll.rag = rag
        return coll.rag

    def _save(self, coll: _Collection) -> None:
        try:
            coll.db.save()
        except Exception as exc:
            raise OperationFailedError(f"cannot save the documents of collection {coll.info.name!r}: {exc}") from exc

    @staticmethod
    def _document(row: dict[str, Any], with_vector: bool) -> KnowledgeDocument:
        return KnowledgeDocument(id=row["__id__"], content=row["content"], source_id=row["source_id"],
                                 metadata=json.loads(row["metadata"]),
                                 embedding=list(row["embedding"]) if with_vector else None)

    @staticmethod
    def _matching(coll: _Collection, spec: FilterLike) -> list[dict[str, Any]]:
        match = matcher(spec)
        return [row for row in coll.rows() if match(json.loads(row["metadata"]))]

    def _tree(self, spec: FilterLike) -> Any:
        tree = parse_filter(spec)
        require_operators(tree, self.capabilities.filter_operators, backend="lightrag", nested_keys=True)
        return tree

    # -- collections ----------------------------------------------------------------------------------

    @_on_store_loop
    async def create_collection(self, name: str, dimension: int, distance: Distance | str = Distance.COSINE, *,
                                exist_ok: bool = True) -> CollectionInfo:
        name = validate_collection_name(name)
        dimension = positive_int(dimension, "dimension")
        metric = Distance.parse(distance)
        self._check_open()
        if metric not in self.capabilities.distances:
            raise NotSupportedError(f"the lightrag backend supports only the cosine distance (NanoVectorDB), "
                                    f"not {metric.value!r}")
        wanted = CollectionInfo(name, dimension, metric)
        async with self._lock:
            meta = self._read_meta(name)
            if meta is not None:
                existing = meta[0]
                if not exist_ok:
                    raise AlreadyExistsError(
                        f"knowledge collection {name!r} exists already; pass exist_ok=True to reuse it")
                if existing != wanted:
                    raise AlreadyExistsError(
                        f"knowledge collection {name!r} exists with dimension {existing.dimension} and distance "
                        f"{existing.distance.value!r}, not {dimension} and {metric.value!r}; drop it or use another "
                        "name")
                return existing
            directory = self._root / name
            try:
                if directory.exists():  # leftovers of a half-finished drop
                    shutil.rmtree(directory)
                directory.mkdir(parents=True)
                tmp = directory / (_META_FILE + ".tmp")
                tmp.write_text(json.dumps({"dimension": dimension, "distance": metric.value,
                                           "generation": uuid.uuid4().hex}), encoding="utf-8")
                os.replace(tmp, directory / _META_FILE)
            except OSError as exc:
                raise OperationFailedError(f"cannot create collection {name!r} in {str(self._root)!r}: {exc}") from exc
            return wanted

    @_on_store_loop
    async def get_collection(self, name: str) -> CollectionInfo:
        name = validate_collection_name(name)
        self._check_open()
        meta = self._read_meta(name)
        if meta is None:
            raise CollectionNotFoundError(
                f"knowledge collection {name!r} does not exist; create it with create_collection")
        return meta[0]

    @_on_store_loop
    async def list_collections(self) -> list[str]:
        self._check_open()
        try:
            return sorted(p.name for p in self._root.iterdir() if (p / _META_FILE).is_file())
        except OSError as exc:
            raise OperationFailedError(f"cannot list {str(self._root)!r}: {exc}") from exc

    @_on_store_loop
    async def drop_collection(self, name: str) -> bool:
        name = validate_collection_name(name)
        self._check_open()
        async with self._lock:
            coll = self._collections.pop(name, None)
            if coll is not None:
                await self._finalize(coll)
            if self._read_meta(name) is None:
                return False
            directory = self._root / name
            try:
                os.remove(directory / _META_FILE)  # first: a half-removed directory is no collection
                shutil.rmtree(directory)
            except OSError as exc:
                raise OperationFailedError(f"cannot drop collection {name!r}: {exc}") from exc
            return True

    # -- writes ---------------------------------------------------------------------------------------

    @_on_store_loop
    async def insert(self, collection: str, documents: Iterable[KnowledgeDocument]) -> list[str]:
        return await self._write(collection, documents, replace=False)

    @_on_store_loop
    async def upsert(self, collection: str, documents: Iterable[KnowledgeDocument]) -> list[str]:
        return await self._write(collection, documents, replace=True)

    async def _write(self, collection: str, documents: Iterable[KnowledgeDocument], *, replace: bool) -> list[str]:
        name = validate_collection_name(collection)
        if isinstance(documents, (KnowledgeDocument, str, bytes)) or not isinstance(documents, Iterable):
            raise ValidationError(f"documents must be a list of KnowledgeDocument, got {type(documents).__name__}")
        async with self._lock:
            coll = await self._open(name)
            if isinstance(documents, Sequence):
                docs = list(documents)
                prepared = [(group, self._rows_for(group, coll.info)) for group in batches(docs, WRITE_BATCH)]
                if not replace:
                    self._refuse_duplicates(coll, docs)
                for group, rows in prepared:
                    await self._commit(coll, group, rows)
                return [doc.id for doc in docs]
            ids: list[str] = []
            for group in batches(documents, WRITE_BATCH):
                rows = self._rows_for(group, coll.info)
                if not replace:
                    self._refuse_duplicates(coll, group)
                await self._commit(coll, group, rows)
                ids.extend(doc.id for doc in group)
            return ids

    @staticmethod
    def _rows_for(documents: list[KnowledgeDocument], info: CollectionInfo) -> list[dict[str, Any]]:
        check_documents(documents)
        for doc in documents:
            if not isinstance(doc.id, str):
                raise ValidationError(f"document ids are strings, got {doc.id!r}")
            storable_text(doc.id, f"document id {doc.id!r}")
            storable_text(doc.content, f"content of document {doc.id!r}")
            if doc.source_id is not None:
                storable_text(doc.source_id, f"source_id of document {doc.id!r}")
        matrix = embedding_matrix(documents, info.dimension, info.distance)
        wide = matrix.astype(np.float64)
        unit = (wide / np.linalg.norm(wide, axis=1, keepdims=True)).astype(np.float32)
        return [{"__id__": doc.id, "__vector__": unit[i], "content": doc.content, "source_id": doc.source_id,
                 "metadata": metadata_json(doc), "embedding": matrix[i].tolist()}
                for i, doc in enumerate(documents)]

    @staticmethod
    def _refuse_duplicates(coll: _Collection, documents: Sequence[KnowledgeDocument]) -> None:
        repeated = [doc_id for doc_id, n in Counter(doc.id for doc in documents).items() if n > 1]
        if repeated:
            raise AlreadyExistsError(
                f"document id(s) {repeated[:5]} appear twice in one insert; nothing of the batch was written")
        have = coll.by_id()
        existing = [doc.id for doc in documents if doc.id in have]
        if existing:
            raise AlreadyExistsError(
                f"document id(s) {existing[:5]} exist already in collection {coll.info.name!r}; use upsert to "
                "replace them. Nothing of this batch was written")

    async def _commit(self, coll: _Collection, documents: list[KnowledgeDocument],
                      rows: list[dict[str, Any]]) -> None:
        last = {row["__id__"]: row for row in rows}  # repeated ids in one upsert: the last one wins
        before = coll.by_id()
        old = {i: (before[i]["content"], before[i]["source_id"]) for i in last if i in before}
        try:
            coll.db.upsert(list(last.values()))
        except Exception as exc:
            raise OperationFailedError(f"nano-vectordb upsert failed in {coll.info.name!r}: {exc}") from exc
        self._save(coll)
        rag = await self._rag(coll)
        if rag is None:
            return
        stale = {i: content for i, (content, source) in old.items()
                 if (content, source) != (last[i]["content"], last[i]["source_id"]) and content.strip()}
        if stale:
            await self._graph_delete(coll, stale)
        unchanged = [i for i in old if i not in stale and last[i]["content"].strip()]
        try:  # an unchanged document that is not in the graph (an earlier failure) is indexed again
            status = await rag.aget_docs_by_ids(unchanged) if unchanged else {}
        except Exception as exc:
            raise OperationFailedError(f"LightRAG status lookup failed in {coll.info.name!r}: {exc}") from exc
        fresh = [row for i, row in last.items() if row["content"].strip()
                 and (i not in unchanged or _status(status.get(i)) != DocStatus.PROCESSED)]
        if fresh:
            await self._graph_insert(coll, fresh)

    async def _graph_insert(self, coll: _Collection, rows: list[dict[str, Any]]) -> None:
        """Send documents to LightRAG. LightRAG keeps each text once (it refuses a document whose content
        hash it holds already): such a document counts as indexed when another stored document with the
        same content is in the graph."""
        ids = [row["__id__"] for row in rows]
        try:
            await coll.rag.ainsert([row["content"] for row in rows], ids=ids,
                                   file_paths=[graph_file_path(row["__id__"], row["source_id"]) for row in rows])
            status = await coll.rag.aget_docs_by_ids(ids)
        except Exception as exc:
            raise OperationFailedError(
                f"LightRAG indexing failed in {coll.info.name!r} (the documents are stored and searchable by "
                f"vector, but not in the graph): {exc}") from exc
        failed = [row for row in rows if _status(status.get(row["__id__"])) != DocStatus.PROCESSED]
        if failed:
            texts = {row["content"] for row in failed if row["__id__"] not in status}
            holders = [row["__id__"] for row in coll.rows() if row["content"] in texts]
            try:
                held = await coll.rag.aget_docs_by_ids(holders) if holders else {}
            except Exception as exc:
                raise OperationFailedError(f"LightRAG status lookup failed in {coll.info.name!r}: {exc}") from exc
            in_graph = {row["content"] for row in coll.rows()
                        if _status(held.get(row["__id__"])) == DocStatus.PROCESSED}
            failed = [row for row in failed if row["__id__"] in status or row["content"] not in in_graph]
        if failed:
            reasons = {row["__id__"]: _error(status.get(row["__id__"])) for row in failed[:3]}
            raise OperationFailedError(
                f"LightRAG did not index document(s) {[row['__id__'] for row in failed[:5]]} of "
                f"{coll.info.name!r} (they are stored and searchable by vector, but not in the graph; upsert "
                f"them again to retry): {reasons}")

    async def _graph_delete(self, coll: _Collection, removed: dict[str, str]) -> None:
        """Remove documents (id -> their old content) from the graph; a stored document that still holds
        one of those texts (it was deduplicated against the removed one) is then indexed in its place."""
        for doc_id in removed:
            try:
                result = await coll.rag.adelete_by_doc_id(doc_id)
            except Exception as exc:
                raise OperationFailedError(f"LightRAG could not delete document {doc_id!r}: {exc}") from exc
            if getattr(result, "status", "success") not in ("success", "not_found"):
                raise OperationFailedError(f"LightRAG could not delete document {doc_id!r}: {result}")
        texts = set(removed.values())
        orphans = [row for row in coll.rows() if row["content"] in texts]
        if orphans:
            await self._graph_insert(coll, orphans)

    @_on_store_loop
    async def delete(self, collection: str, ids: Sequence[str] | None = None, *, filter: FilterLike = None) -> int:
        name = validate_collection_name(collection)
        tree = self._tree(filter)
        wanted = None if ids is None else list(dict.fromkeys(id_list(ids)))
        async with self._lock:
            coll = await self._open(name)
            if wanted is None and tree is None:
                return 0
            have = coll.by_id()
            if tree is not None:
                matching = [row["__id__"] for row in self._matching(coll, tree)]
                targets = matching if wanted is None else [i for i in matching if i in set(wanted)]
            else:
                targets = [i for i in wanted or [] if i in have]
            if not targets:
                return 0
            try:
                coll.db.delete(targets)
            except Exception as exc:
                raise OperationFailedError(f"nano-vectordb delete failed in {name!r}: {exc}") from exc
            self._save(coll)
            if await self._rag(coll) is not None:
                removed = {i: have[i]["content"] for i in targets if have[i]["content"].strip()}
                if removed:
                    await self._graph_delete(coll, removed)
            return len(targets)

    # -- reads ----------------------------------------------------------------------------------------

    @_on_store_loop
    async def search(self, collection: str, vector: Vector, *, k: int = 10, filter: FilterLike = None,
                     score_threshold: float | None = None, include_embeddings: bool = False) -> list[SearchHit]:
        name = validate_collection_name(collection)
        k = positive_int(k, "k")
        tree = self._tree(filter)
        if score_threshold is not None and (isinstance(score_threshold, bool)
                                            or not isinstance(score_threshold, (int, float))
                                            or math.isnan(score_threshold)):
            raise ValidationError(f"score_threshold must be a number or None, got {score_threshold!r}")
        coll = await self._open(name)
        q64, q32 = query_vectors(vector, coll.info.dimension, coll.info.distance)
        if tree is not None:
            match = matcher(tree)
            if not any(match(json.loads(row["metadata"])) for row in coll.rows()):
                return []  # (NanoVectorDB's filtered scan cannot index an empty selection)

            def keep(row: dict[str, Any]) -> bool:
                return match(json.loads(row["metadata"]))
        else:
            keep = None  # type: ignore[assignment]
        try:
            candidates = coll.db.query(q32, top_k=k + _RERANK_MARGIN, filter_lambda=keep)
        except Exception as exc:
            raise OperationFailedError(f"nano-vectordb query failed in {name!r}: {exc}") from exc
        if not candidates:
            return []
        stored = np.asarray([row["embedding"] for row in candidates], dtype=np.float32)
        raw, scores = exact_scores(coll.info.distance, stored, q64)
        ids = [row["__id__"] for row in candidates]
        order = sorted(range(len(candidates)), key=lambda i: (-scores[i], ids[i]))[:k]
        if score_threshold is not None:
            order = [i for i in order if scores[i] >= score_threshold]
        return [SearchHit(self._document(candidates[i], include_embeddings), float(scores[i]), float(raw[i]))
                for i in order]

    @_on_store_loop
    async def get(self, collection: str, ids: Sequence[str], *,
                  include_embeddings: bool = True) -> list[KnowledgeDocument]:
        name = validate_collection_name(collection)
        wanted = id_list(ids)
        coll = await self._open(name)
        have = coll.by_id()
        return [self._document(have[i], include_embeddings) for i in wanted if i in have]

    @_on_store_loop
    async def count(self, collection: str, *, filter: FilterLike = None) -> int:
        name = validate_collection_name(collection)
        tree = self._tree(filter)
        coll = await self._open(name)
        if tree is None:
            return len(coll.db)
        return len(self._matching(coll, tree))

    @_on_store_loop
    async def scroll(self, collection: str, *, limit: int = 100, cursor: str | None = None,
                     filter: FilterLike = None, include_embeddings: bool = True) -> DocumentPage:
        """Pages in id order; the cursor is the last id of the previous page (as JSON text)."""
        name = validate_collection_name(collection)
        limit = positive_int(limit, "limit")
        tree = self._tree(filter)
        after: str | None = None
        if cursor is not None:
            try:
                after = json.loads(cursor) if isinstance(cursor, str) else None
            except ValueError:
                after = None
            if not isinstance(after, str):
                raise ValidationError(f"invalid scroll cursor {cursor!r}; pass the next_cursor of the previous page")
        coll = await self._open(name)
        rows = coll.rows() if tree is None else self._matching(coll, tree)
        ordered = sorted((row for row in rows if after is None or row["__id__"] > after), key=lambda r: r["__id__"])
        page = ordered[:limit]
        next_cursor = json.dumps(page[-1]["__id__"]) if len(ordered) > limit else None
        return DocumentPage([self._document(row, include_embeddings) for row in page], next_cursor)

    # -- LightRAG's own retrieval (not part of the common interface) ----------------------------------

    @_on_store_loop
    async def query(self, collection: str, text: str, *, mode: str = "mix", only_need_context: bool = False,
                    **param: Any) -> Any:
        """LightRAG's answer to ``text`` (or, with ``only_need_context``, the retrieved context) over the
        collection's graph and chunks: ``mode`` is one of naive/local/global/hybrid/mix/bypass; other
        keyword arguments go to ``lightrag.QueryParam`` (``top_k``, ``chunk_top_k``, ``enable_rerank``...)."""
        name = validate_collection_name(collection)
        if not isinstance(text, str) or not text.strip():
            raise ValidationError("query text must be a non-empty string")
        if mode not in QUERY_MODES:
            raise ValidationError(f"mode must be one of {QUERY_MODES}, got {mode!r}")
        param.setdefault("enable_rerank", False)
        try:
            query_param = QueryParam(mode=mode, only_need_context=only_need_context, **param)  # type: ignore[arg-type]
        except TypeError as exc:
            raise ValidationError(f"invalid LightRAG query parameter: {exc}") from None
        coll = await self._open(name)
        rag = await self._rag(coll)
        if rag is None:
            raise NotSupportedError("query() needs the store to be opened with llm_model_func=: LightRAG builds "
                                    "its graph and answers with the LLM")
        try:
            return await rag.aquery(text, param=query_param)
        except Exception as exc:
            raise OperationFailedError(f"LightRAG query ({mode}) failed on {name!r}: {exc}") from exc


def _status(entry: Any) -> Any:
    if entry is None:
        return None
    value = entry.get("status") if isinstance(entry, dict) else getattr(entry, "status", None)
    try:
        return DocStatus(value)
    except ValueError:
        return value


def _error(entry: Any) -> Any:
    if entry is None:
        return "no status"
    return entry.get("error_msg") if isinstance(entry, dict) else getattr(entry, "error_msg", None)


__all__ = ["QUERY_MODES", "CodePointTokenizer", "LightRAGKnowledgeStore"]
