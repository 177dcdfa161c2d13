"""One template for knowledge adapters over a vector engine.

Every engine adapter validates the same inputs, refuses duplicate ids on insert, writes in batches,
re-scores the engine's candidates exactly and breaks ties the same way. :class:`EngineKnowledgeStore`
does all of that once; an adapter implements only the engine's primitives (the ``_engine_*``
methods), each of which receives validated input: a :class:`~storebridge.models.CollectionInfo`, a
parsed filter tree (or None) whose operators the backend declared, float32 matrices of checked
vectors. Adapters import this module (it imports numpy; ``import storebridge`` never does).

Contracts the template keeps, so every adapter keeps them:

* ``insert`` of a sequence is checked whole (types, vectors, repeated and existing ids) before the first
  write; an iterable that is not a sequence is checked and written one batch at a time, so a 100,000
  document generator never holds more than one batch of copies.
* ``search`` asks the engine for ``k + rerank_margin`` candidates with their original vectors and
  re-scores them in float64 (:func:`~storebridge.vectors.exact_scores`): scores follow
  :class:`~storebridge.models.Distance` exactly whatever the engine's own formula, and ties go by id.
* every engine error becomes a typed :class:`~storebridge.errors.StorebridgeError` whose text has
  secrets masked; a closed store raises :class:`~storebridge.errors.StoreClosedError`.
* ``insert``, ``upsert`` and ``delete`` return only after :meth:`EngineKnowledgeStore._engine_settle`
  (a no-op unless an eventually consistent engine overrides it), so reads see the write; :func:`poll`
  paces such waits.

The constructor helpers at the end (:func:`url_options`, :func:`option`, :func:`seconds_option`,
:func:`count_option`, :func:`flag_option`) read an adapter's options from its URL and arguments the same
way everywhere: unknown URL options refused, an option given twice with different meanings refused, a bad
value named in a :class:`~storebridge.errors.ConfigurationError`.
"""

from __future__ import annotations

import math
import time
from abc import abstractmethod
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, overload

import numpy as np

from .errors import (
    AlreadyExistsError,
    CollectionNotFoundError,
    ConfigurationError,
    FilterError,
    NotSupportedError,
    OperationFailedError,
    StorebridgeError,
    StoreClosedError,
    ValidationError,
)
from .filters import And, Comparison, Filter, FilterLike, Not, Or, parse_filter, require_operators
from .identifiers import validate_collection_name
from .knowledge import KnowledgeStore, Vector
from .models import CollectionInfo, Distance, DocumentPage, KnowledgeDocument, SearchHit
from .urls import mask_secrets, merge_url_option
from .vectors import (
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


@dataclass(frozen=True, slots=True)
class Candidate:
    """A search candidate from the engine: the stored document and its original float32 vector."""

    document: KnowledgeDocument
    vector: np.ndarray


def check_documents_argument(documents: Any) -> None:
    """Refuse a single document, a string or a non-iterable where a list of documents is expected."""
    if isinstance(documents, (KnowledgeDocument, str, bytes)) or not isinstance(documents, Iterable):
        raise ValidationError(f"documents must be a list of KnowledgeDocument, got {type(documents).__name__}")


def check_texts(documents: Sequence[KnowledgeDocument]) -> None:
    """Ids, content and source ids must be valid UTF-8: engines take them as JSON or UTF-8 text."""
    for doc in documents:
        if not isinstance(doc.id, str) or not doc.id:
            raise ValidationError(f"document ids are non-empty strings, got {doc.id!r}")
        storable_text(doc.id, f"document id {doc.id!r}")
        storable_text(doc.content, f"content of document {doc.id!r}")
        if doc.source_id is not None:
            storable_text(doc.source_id, f"source_id of document {doc.id!r}")


def refuse_repeated_ids(documents: Sequence[KnowledgeDocument]) -> None:
    repeated = [doc_id for doc_id, n in Counter(doc.id for doc in documents).items() if n > 1]
    if repeated:
        raise AlreadyExistsError(
            f"document id(s) {repeated[:5]} appear twice in one insert; nothing of the batch was written")


def check_score_threshold(value: Any) -> float | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value)):
        raise ValidationError(f"score_threshold must be a number or None, got {value!r}")
    return value


def reconcile_collection(existing: CollectionInfo, wanted: CollectionInfo, exist_ok: bool) -> CollectionInfo:
    """``create_collection`` on a name that exists: the existing one if it matches, else a clear error."""
    if not exist_ok:
        raise AlreadyExistsError(
            f"knowledge collection {wanted.name!r} exists already; pass exist_ok=True to reuse it")
    if existing != wanted:
        raise AlreadyExistsError(
            f"knowledge collection {wanted.name!r} exists with dimension {existing.dimension} and distance "
            f"{existing.distance.value!r}, not {wanted.dimension} and {wanted.distance.value!r}; "
            "drop it or use another name")
    return existing


def rank(candidates: Sequence[Candidate], distance: Distance, q64: np.ndarray, k: int,
         score_threshold: float | None, include_embeddings: bool) -> list[SearchHit]:
    """Exact float64 scores for the engine's candidates, best first, ties by id, cut at ``k``."""
    if not candidates:
        return []
    raw, scores = exact_scores(distance, np.stack([c.vector for c in candidates]), q64)
    order = sorted(range(len(candidates)), key=lambda i: (-scores[i], candidates[i].document.id))[:k]
    if score_threshold is not None:
        order = [i for i in order if scores[i] >= score_threshold]
    hits = []
    for i in order:
        doc = candidates[i].document
        if include_embeddings and doc.embedding is None:
            doc = doc.replace(embedding=candidates[i].vector.tolist())
        elif not include_embeddings and doc.embedding is not None:
            doc = doc.replace(embedding=None)
        hits.append(SearchHit(doc, float(scores[i]), float(raw[i])))
    return hits


def sql_predicate(node: Filter | None, comparison: Callable[[Comparison], str], *, true: str = "TRUE",
                  false: str = "FALSE") -> str | None:
    """A SQL boolean for a parsed filter (None for no filter). ``comparison`` compiles one comparison to a
    two-valued expression (never NULL, so ``NOT`` is the exact complement), or to ``true``/``false`` when
    the value alone decides (``$in: []``); this joins them with ``AND``, ``OR`` and ``NOT (...)``, folding
    those constants."""
    if node is None:
        return None

    def walk(node: Filter) -> str:
        if isinstance(node, Comparison):
            return comparison(node)
        if isinstance(node, Not):
            inner = walk(node.child)
            return false if inner == true else true if inner == false else f"NOT ({inner})"
        word, absorbing, neutral = ("AND", false, true) if isinstance(node, And) else ("OR", true, false)
        parts = [walk(child) for child in node.children]
        if absorbing in parts:
            return absorbing
        parts = [part for part in parts if part != neutral]
        if not parts:
            return neutral
        return parts[0] if len(parts) == 1 else "(" + f" {word} ".join(f"({part})" for part in parts) + ")"

    return walk(node)


def sql_condition(node: Filter, comparison: Callable[[Comparison], str]) -> str:
    """A SQL boolean for a parsed filter as written: every ``AND``, ``OR`` and ``NOT`` parenthesised and
    nothing folded, for compilers whose comparisons are always TRUE or FALSE (never NULL), so ``NOT`` is
    the exact complement, and keep their constants in the text."""
    if isinstance(node, Comparison):
        return comparison(node)
    if isinstance(node, Not):
        return f"(NOT {sql_condition(node.child, comparison)})"
    if isinstance(node, (And, Or)):
        word = " AND " if isinstance(node, And) else " OR "
        return "(" + word.join(sql_condition(child, comparison) for child in node.children) + ")"
    raise FilterError(f"not a filter node: {node!r}")


class EngineKnowledgeStore(KnowledgeStore):
    """The knowledge interface over an engine's primitives. Subclasses set ``backend_name``,
    ``capabilities`` and ``self._where`` (a secret-free description of the engine for messages), and
    implement the ``_engine_*`` methods; they may override :meth:`_translate_error` and
    :meth:`_collection_name` (extra naming rules of the engine)."""

    #: Documents per engine write call (and per existence check on insert).
    write_batch: ClassVar[int] = BATCH_SIZE
    #: Candidates fetched beyond ``k`` and re-scored exactly, so the engine's float32 (or approximate)
    #: order cannot misplace the boundary.
    rerank_margin: ClassVar[int] = 16

    _closed: bool = False
    _where: str = "the engine"
    #: Secrets (API keys, passwords) to blank out of any error text.
    _secrets: tuple[str | None, ...] = ()
    #: A client the store made itself, closed by :meth:`close` (None: the caller's client, left open).
    _owned_client: Any = None

    # -- engine primitives ------------------------------------------------------------------------------

    @abstractmethod
    def _engine_describe(self, name: str) -> CollectionInfo | None:
        """The collection's info, or None if it does not exist."""

    @abstractmethod
    def _engine_create(self, info: CollectionInfo) -> None:
        """Create the collection (and any index it needs); return when it is ready for writes."""

    @abstractmethod
    def _engine_drop(self, name: str) -> None:
        """Drop an existing collection and its documents."""

    @abstractmethod
    def _engine_names(self) -> list[str]:
        """Names of the collections this store made."""

    @abstractmethod
    def _engine_existing(self, info: CollectionInfo, ids: list[str]) -> list[str]:
        """Which of ``ids`` (at most ``write_batch``, distinct) the collection holds."""

    @abstractmethod
    def _engine_write(self, info: CollectionInfo, documents: list[KnowledgeDocument], vectors: np.ndarray) -> None:
        """Insert-or-replace a batch (ids distinct within it); ``vectors`` is the checked float32 matrix."""

    @abstractmethod
    def _engine_delete(self, info: CollectionInfo, ids: list[str] | None, where: Filter | None) -> int:
        """Delete the documents with these ids (None: any id) matching ``where``; how many went."""

    @abstractmethod
    def _engine_nearest(self, info: CollectionInfo, query: np.ndarray, limit: int,
                        where: Filter | None) -> list[Candidate]:
        """Up to ``limit`` nearest candidates matching ``where``, with their original vectors.
        ``query`` is float32 (unit length for cosine)."""

    @abstractmethod
    def _engine_get(self, info: CollectionInfo, ids: list[str], with_vectors: bool) -> list[KnowledgeDocument]:
        """Documents with these ids (distinct, at most ``write_batch``), any order, missing ones left out."""

    @abstractmethod
    def _engine_count(self, info: CollectionInfo, where: Filter | None) -> int: ...

    @abstractmethod
    def _engine_page(self, info: CollectionInfo, limit: int, cursor: str | None, where: Filter | None,
                     with_vectors: bool) -> DocumentPage:
        """One page in a stable order; the adapter validates its own cursors (``ValidationError``)."""

    # -- hooks ----------------------------------------------------------------------------------------

    def _engine_settle(self, name: str) -> None:
        """Return once reads see this store's writes to collection ``name``; runs after every ``insert``,
        ``upsert`` and ``delete`` (override for an eventually consistent engine)."""

    def _engine_close(self) -> None:
        """Free the engine's resources, once, when the store closes: by default the client it made."""
        if self._owned_client is not None:
            self._owned_client.close()

    def _engine_validate(self, info: CollectionInfo, documents: list[KnowledgeDocument]) -> None:
        """Refuse documents the engine cannot hold (size limits...) with a ValidationError; runs before
        any write of a sequence, so a bad document late in it leaves the collection untouched."""

    def _collection_name(self, name: Any) -> str:
        """Validate a user's collection name (override to add an engine's own rules)."""
        return validate_collection_name(name)

    def _translate_error(self, exc: Exception, what: str) -> StorebridgeError:
        """The typed error for an engine exception (override to recognise the client's own errors)."""
        return OperationFailedError(f"{self.backend_name} {what} failed on {self._where}: "
                                    f"{mask_secrets(exc, *self._secrets)}")

    @contextmanager
    def _call(self, what: str) -> Iterator[None]:
        """Run an engine call: closed stores refuse, engine errors become typed and secret-free."""
        self._check_open()
        try:
            yield
        except StorebridgeError:
            raise
        except Exception as exc:
            if self._closed:
                raise StoreClosedError(f"the {self.backend_name} knowledge store is closed") from exc
            raise self._translate_error(exc, what) from exc

    def close(self) -> None:
        """Close the store (a second call does nothing); every later call raises StoreClosedError."""
        if self._closed:
            return
        self._closed = True
        self._engine_close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the {self.backend_name} knowledge store ({self._where}) is closed")

    def _filter(self, spec: FilterLike) -> Filter | None:
        tree = parse_filter(spec)
        require_operators(tree, self.capabilities.filter_operators, backend=self.backend_name,
                          nested_keys=self.capabilities.nested_keys)
        return tree

    def _info(self, name: str) -> CollectionInfo:
        self._check_open()
        with self._call("describe collection"):
            info = self._engine_describe(name)
        if info is None:
            raise CollectionNotFoundError(
                f"knowledge collection {name!r} does not exist; create it with create_collection")
        return info

    # -- collections ----------------------------------------------------------------------------------

    def create_collection(self, name: str, dimension: int, distance: Distance | str = Distance.COSINE, *,
                          exist_ok: bool = True) -> CollectionInfo:
        name = self._collection_name(name)
        dimension = positive_int(dimension, "dimension")
        metric = Distance.parse(distance)
        if metric not in self.capabilities.distances:
            raise NotSupportedError(f"the {self.backend_name} backend does not support the {metric.value!r} "
                                    f"distance; use one of {sorted(d.value for d in self.capabilities.distances)}")
        wanted = CollectionInfo(name, dimension, metric)
        self._check_open()
        with self._call("describe collection"):
            existing = self._engine_describe(name)
        if existing is not None:
            return reconcile_collection(existing, wanted, exist_ok)
        with self._call("create collection"):
            self._engine_create(wanted)
        return wanted

    def get_collection(self, name: str) -> CollectionInfo:
        return self._info(self._collection_name(name))

    def list_collections(self) -> list[str]:
        self._check_open()
        with self._call("list collections"):
            return sorted(self._engine_names())

    def drop_collection(self, name: str) -> bool:
        name = self._collection_name(name)
        self._check_open()
        with self._call("describe collection"):
            if self._engine_describe(name) is None:
                return False
        with self._call("drop collection"):
            self._engine_drop(name)
        return True

    # -- writes ---------------------------------------------------------------------------------------

    def insert(self, collection: str, documents: Iterable[KnowledgeDocument]) -> list[str]:
        return self._write(collection, documents, replace=False)

    def upsert(self, collection: str, documents: Iterable[KnowledgeDocument]) -> list[str]:
        return self._write(collection, documents, replace=True)

    def _checked(self, group: list[KnowledgeDocument], info: CollectionInfo) -> np.ndarray:
        check_documents(group)
        check_texts(group)
        for doc in group:
            metadata_json(doc)  # refuses what JSON cannot hold exactly (NaN, non-string keys, ...)
        self._engine_validate(info, group)
        return embedding_matrix(group, info.dimension, info.distance)

    def _write(self, collection: str, documents: Iterable[KnowledgeDocument], *, replace: bool) -> list[str]:
        name = self._collection_name(collection)
        check_documents_argument(documents)
        info = self._info(name)
        if isinstance(documents, Sequence):
            docs = list(documents)
            for group in batches(docs, self.write_batch):  # check everything before the first write
                self._checked(group, info)
            if not replace:
                self._refuse_existing(info, docs)
            groups: Iterable[list[KnowledgeDocument]] = batches(docs, self.write_batch)
        else:
            groups = batches(documents, self.write_batch)
        ids: list[str] = []
        for group in groups:
            vectors = self._checked(group, info)
            if not replace and not isinstance(documents, Sequence):
                self._refuse_existing(info, group)
            if replace:  # the last of repeated ids wins, as if written one by one
                last = {doc.id: i for i, doc in enumerate(group)}
                if len(last) < len(group):
                    keep = sorted(last.values())
                    group_to_write, vectors = [group[i] for i in keep], vectors[keep]
                else:
                    group_to_write = group
            else:
                group_to_write = group
            with self._call("write"):
                self._engine_write(info, group_to_write, vectors)
            ids.extend(doc.id for doc in group)
        with self._call("wait for freshness"):
            self._engine_settle(name)
        return ids

    def _refuse_existing(self, info: CollectionInfo, documents: Sequence[KnowledgeDocument]) -> None:
        refuse_repeated_ids(documents)
        existing: list[str] = []
        for group in batches([doc.id for doc in documents], self.write_batch):
            with self._call("check existing ids"):
                existing += self._engine_existing(info, group)
        if existing:
            raise AlreadyExistsError(
                f"document id(s) {sorted(existing)[:5]} exist already in collection {info.name!r}; use upsert "
                "to replace them. Nothing of this batch was written")

    def delete(self, collection: str, ids: Sequence[str] | None = None, *, filter: FilterLike = None) -> int:
        name = self._collection_name(collection)
        tree = self._filter(filter)
        wanted = None if ids is None else list(dict.fromkeys(id_list(ids)))
        info = self._info(name)
        removed = 0
        if wanted is None:
            if tree is not None:
                with self._call("delete"):
                    removed = self._engine_delete(info, None, tree)
        else:
            for group in batches(wanted, self.write_batch):
                with self._call("delete"):
                    removed += self._engine_delete(info, group, tree)
        with self._call("wait for freshness"):
            self._engine_settle(name)
        return removed

    # -- reads ----------------------------------------------------------------------------------------

    def search(self, collection: str, vector: Vector, *, k: int = 10, filter: FilterLike = None,
               score_threshold: float | None = None, include_embeddings: bool = False) -> list[SearchHit]:
        name = self._collection_name(collection)
        k = positive_int(k, "k")
        tree = self._filter(filter)
        threshold = check_score_threshold(score_threshold)
        info = self._info(name)
        q64, q32 = query_vectors(vector, info.dimension, info.distance)
        with self._call("search"):
            candidates = self._engine_nearest(info, q32, k + self.rerank_margin, tree)
        return rank(candidates, info.distance, q64, k, threshold, include_embeddings)

    def get(self, collection: str, ids: Sequence[str], *, include_embeddings: bool = True) -> list[KnowledgeDocument]:
        name = self._collection_name(collection)
        wanted = id_list(ids)
        info = self._info(name)
        found: dict[str, KnowledgeDocument] = {}
        for group in batches(list(dict.fromkeys(wanted)), self.write_batch):
            with self._call("get"):
                for doc in self._engine_get(info, group, include_embeddings):
                    found[doc.id] = doc
        return [found[i] for i in wanted if i in found]

    def count(self, collection: str, *, filter: FilterLike = None) -> int:
        name = self._collection_name(collection)
        tree = self._filter(filter)
        info = self._info(name)
        with self._call("count"):
            return int(self._engine_count(info, tree))

    def scroll(self, collection: str, *, limit: int = 100, cursor: str | None = None, filter: FilterLike = None,
               include_embeddings: bool = True) -> DocumentPage:
        name = self._collection_name(collection)
        limit = positive_int(limit, "limit")
        tree = self._filter(filter)
        if cursor is not None and (not isinstance(cursor, str) or not cursor):
            raise ValidationError(f"invalid scroll cursor {cursor!r}; pass the next_cursor of the previous page")
        info = self._info(name)
        with self._call("scroll"):
            return self._engine_page(info, limit, cursor, tree, include_embeddings)


def poll(timeout: float, *, delay: float = 0.05, most: float = 1.0, factor: float = 2.0,
         sleep: Callable[[float], None] | None = None) -> Iterator[int]:
    """Pace a wait for an engine to catch up: yields the attempt number at once, then again after pauses
    growing from ``delay`` by ``factor`` up to ``most`` seconds, until ``timeout`` seconds have passed.
    The caller returns from its loop when the condition holds and reports the time-out after the loop."""
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        yield attempt
        if time.monotonic() > deadline:
            return
        (sleep or time.sleep)(delay)
        delay = min(delay * factor, most)
        attempt += 1


# -- constructor options ------------------------------------------------------------------------------

_TRUE_WORDS = ("1", "true", "yes", "on")
_FALSE_WORDS = ("0", "false", "no", "off")


def url_options(query: Mapping[str, str], accepted: Collection[str], engine: str) -> dict[str, str]:
    """The query options of a store URL, refusing any the store does not take (a misspelt option must not
    be silently ignored)."""
    unknown = sorted(set(query) - set(accepted))
    if unknown:
        raise ConfigurationError(f"unknown {engine} URL options {unknown}; accepted: {sorted(accepted)}")
    return dict(query)


def _same(given: Any, text: str) -> bool:
    """Does the URL's text mean the argument's value?"""
    if isinstance(given, bool):
        return text.strip().lower() in (_TRUE_WORDS if given else _FALSE_WORDS)
    if isinstance(given, (int, float)):
        try:
            return float(text) == given
        except ValueError:
            return False
    return bool(given == text or str(given) == text)


def option(name: str, given: Any, from_url: str | None) -> Any:
    """An option given as an argument, in the URL (as text), or both: whichever is given. Both, meaning
    different things, is a ConfigurationError; the URL's text means what it says (``5.0`` and ``"5"``,
    ``True`` and ``"true"``). Secrets are never shown (see ``merge_url_option``)."""
    if given is not None and from_url is not None and _same(given, from_url):
        return given
    return merge_url_option(name, given, from_url)


@overload
def seconds_option(name: str, value: Any, default: float, *, zero_ok: bool = True) -> float: ...
@overload
def seconds_option(name: str, value: Any, default: None = None, *, zero_ok: bool = True) -> float | None: ...


def seconds_option(name: str, value: Any, default: float | None = None, *, zero_ok: bool = True) -> float | None:
    """A duration option (a number, or URL text) in seconds: None gives ``default``; anything but a number
    >= 0 (> 0 unless ``zero_ok``) is a ConfigurationError naming the option."""
    if value is None:
        return default
    try:
        seconds = math.nan if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (seconds > 0 or (zero_ok and seconds == 0)):
        raise ConfigurationError(f"{name} must be a {'non-negative' if zero_ok else 'positive'} number of seconds, "
                                 f"got {value!r}")
    return seconds


def count_option(name: str, value: Any, default: int, *, low: int = 1, high: int | None = None) -> int:
    """A whole-number option (an int, or URL text) from ``low`` to ``high``: None gives ``default``."""
    if value is None:
        return default
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            number = None
    if number is None or number < low or (high is not None and number > high):
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise ConfigurationError(f"{name} must be a whole number {span}, got {value!r}")
    return number


def flag_option(name: str, value: Any, default: bool) -> bool:
    """A yes/no option: a bool, or URL text (``true``/``false``, ``1``/``0``, ``yes``/``no``, ``on``/``off``)."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE_WORDS or text in _FALSE_WORDS:
        return text in _TRUE_WORDS
    raise ConfigurationError(f"{name} must be true or false, got {value!r}")


__all__ = [
    "Candidate",
    "EngineKnowledgeStore",
    "check_documents_argument",
    "check_score_threshold",
    "check_texts",
    "count_option",
    "flag_option",
    "option",
    "poll",
    "rank",
    "reconcile_collection",
    "refuse_repeated_ids",
    "seconds_option",
    "sql_condition",
    "sql_predicate",
    "url_options",
]
