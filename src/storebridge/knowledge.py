"""The knowledge interface: collections of documents with vectors, searched by similarity + filter.

The core writes and searches with vectors the caller computed (see :mod:`storebridge.embedders` for
text in, vectors out). Each collection has a fixed dimension and a distance metric.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ._base import AsyncStore, SyncStore
from .bridge import derive_async, derive_sync
from .errors import CollectionNotFoundError
from .filters import ALL_OPS, FilterLike, Op
from .models import CollectionInfo, Distance, DocumentPage, KnowledgeDocument, SearchHit

Vector = Sequence[float]


@dataclass(frozen=True)
class KnowledgeCapabilities:
    """What a knowledge backend declares it can do; the conformance suite reads this.

    ``filter_operators`` are evaluated by the engine (or, where ``client_side_filters`` is set, after
    over-fetching); any other operator raises :class:`~storebridge.errors.UnsupportedFilterError`.
    ``recall_floor`` is the recall@10 the backend guarantees against exact search (1.0 = exact).
    ``max_batch`` is the most documents the engine takes in one write call (None: no limit; the store
    splits larger writes itself). ``client_side_filters`` says filters are evaluated in Python after
    over-fetching from the engine rather than by the engine (same answers, slower on large collections).
    """

    filter_operators: frozenset[Op] = ALL_OPS
    nested_keys: bool = False
    client_side_filters: bool = False
    distances: frozenset[Distance] = frozenset(Distance)
    recall_floor: float = 1.0
    get_by_id: bool = True
    scroll: bool = True
    delete_by_filter: bool = True
    count_with_filter: bool = True
    insert_rejects_duplicates: bool = True
    persistent: bool = True
    max_batch: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


OPERATIONS = (
    "create_collection", "get_collection", "list_collections", "drop_collection", "has_collection",
    "insert", "upsert", "search", "get", "delete", "count", "scroll", "close",
)


class KnowledgeStore(SyncStore, ABC):
    """Sync knowledge store. Implement the abstract methods; the async face is derived.

    Every method of a closed store raises ``StoreClosedError``; ``close()`` itself may be called twice.
    ``has_collection`` validates the name like every other method (``InvalidIdentifierError``).
    """

    capabilities: KnowledgeCapabilities = KnowledgeCapabilities()

    @abstractmethod
    def create_collection(self, name: str, dimension: int, distance: Distance | str = Distance.COSINE, *,
                          exist_ok: bool = True) -> CollectionInfo:
        """Create a collection. If it exists with the same dimension and distance and ``exist_ok``,
        return it; a different dimension or distance raises ``AlreadyExistsError``. A distance the backend
        does not declare in ``capabilities.distances`` raises ``NotSupportedError``."""

    @abstractmethod
    def get_collection(self, name: str) -> CollectionInfo:
        """The collection's dimension and distance; ``CollectionNotFoundError`` if missing."""

    @abstractmethod
    def list_collections(self) -> list[str]:
        """Names of all collections, sorted."""

    @abstractmethod
    def drop_collection(self, name: str) -> bool:
        """Delete a collection and its documents; False if it did not exist."""

    def has_collection(self, name: str) -> bool:
        try:
            self.get_collection(name)
        except CollectionNotFoundError:
            return False
        return True

    @abstractmethod
    def insert(self, collection: str, documents: Iterable[KnowledgeDocument]) -> list[str]:
        """Add new documents (each with an embedding); an id that exists raises ``AlreadyExistsError``
        and nothing from that batch is written. Returns the ids in order."""

    @abstractmethod
    def upsert(self, collection: str, documents: Iterable[KnowledgeDocument]) -> list[str]:
        """Insert or replace documents by id. Idempotent. Returns the ids in order."""

    @abstractmethod
    def search(self, collection: str, vector: Vector, *, k: int = 10, filter: FilterLike = None,
               score_threshold: float | None = None, include_embeddings: bool = False) -> list[SearchHit]:
        """The ``k`` most similar documents matching ``filter``, best first. ``score_threshold`` keeps
        hits whose higher-is-better score is >= the threshold."""

    @abstractmethod
    def get(self, collection: str, ids: Sequence[str], *, include_embeddings: bool = True) -> list[KnowledgeDocument]:
        """Documents by id, in the order asked; missing ids are skipped. With ``include_embeddings=False``
        the documents' ``embedding`` is None (cheaper on most engines)."""

    @abstractmethod
    def delete(self, collection: str, ids: Sequence[str] | None = None, *, filter: FilterLike = None) -> int:
        """Delete by ids, by filter, or by both (ids AND filter). Returns how many were deleted; missing
        ids are not an error. Calling with neither deletes nothing and returns 0 (or raises
        ``ValidationError``): use ``drop_collection`` to empty a collection."""

    @abstractmethod
    def count(self, collection: str, *, filter: FilterLike = None) -> int:
        """How many documents (matching ``filter``) the collection holds."""

    @abstractmethod
    def scroll(self, collection: str, *, limit: int = 100, cursor: str | None = None, filter: FilterLike = None,
               include_embeddings: bool = True) -> DocumentPage:
        """Page through all documents (matching ``filter``) in a stable order."""


class AsyncKnowledgeStore(AsyncStore, ABC):
    """Async knowledge store: the same methods as :class:`KnowledgeStore`, awaited."""

    capabilities: KnowledgeCapabilities = KnowledgeCapabilities()

    @abstractmethod
    async def create_collection(self, name: str, dimension: int, distance: Distance | str = Distance.COSINE, *,
                                exist_ok: bool = True) -> CollectionInfo: ...

    @abstractmethod
    async def get_collection(self, name: str) -> CollectionInfo: ...

    @abstractmethod
    async def list_collections(self) -> list[str]: ...

    @abstractmethod
    async def drop_collection(self, name: str) -> bool: ...

    async def has_collection(self, name: str) -> bool:
        try:
            await self.get_collection(name)
        except CollectionNotFoundError:
            return False
        return True

    @abstractmethod
    async def insert(self, collection: str, documents: Iterable[KnowledgeDocument]) -> list[str]: ...

    @abstractmethod
    async def upsert(self, collection: str, documents: Iterable[KnowledgeDocument]) -> list[str]: ...

    @abstractmethod
    async def search(self, collection: str, vector: Vector, *, k: int = 10, filter: FilterLike = None,
                     score_threshold: float | None = None,
                     include_embeddings: bool = False) -> list[SearchHit]: ...

    @abstractmethod
    async def get(self, collection: str, ids: Sequence[str], *,
                  include_embeddings: bool = True) -> list[KnowledgeDocument]: ...

    @abstractmethod
    async def delete(self, collection: str, ids: Sequence[str] | None = None, *, filter: FilterLike = None) -> int: ...

    @abstractmethod
    async def count(self, collection: str, *, filter: FilterLike = None) -> int: ...

    @abstractmethod
    async def scroll(self, collection: str, *, limit: int = 100, cursor: str | None = None,
                     filter: FilterLike = None, include_embeddings: bool = True) -> DocumentPage: ...


KnowledgeStore._async_face = derive_async(AsyncKnowledgeStore, OPERATIONS)
AsyncKnowledgeStore._sync_face = derive_sync(KnowledgeStore, OPERATIONS)

__all__ = ["AsyncKnowledgeStore", "KnowledgeCapabilities", "KnowledgeStore"]
