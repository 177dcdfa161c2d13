"""Conformance cases for knowledge (vector) stores.

Every expected result is computed here, from the same data the store holds: filter matches by the
reference evaluator, rankings and scores by exact numpy search. Capabilities gate the cases, and a
feature a backend does not declare must raise its typed error, never be silently ignored.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from ..errors import (
    AlreadyExistsError,
    CollectionNotFoundError,
    DimensionMismatchError,
    FilterError,
    InvalidIdentifierError,
    NotSupportedError,
    UnsupportedFilterError,
    ValidationError,
)
from ..filters import Comparison, FilterLike, evaluate, operators_used, parse_filter, walk
from ..knowledge import KnowledgeCapabilities
from ..models import CollectionInfo, Distance, KnowledgeDocument, SearchHit
from ._facade import StoreFacade
from ._suite import OpenStore, StoreSuite, assert_same_json, expect_error, skip_not_declared, unique
from .data import (
    FILTER_CASES,
    FILTER_DIMENSION,
    HOSTILE_COLLECTION_NAMES,
    HOSTILE_FILTER_KEYS,
    MALFORMED_FILTERS,
    ROUND_TRIP_METADATA,
    filter_documents,
    random_vectors,
)

NewCollection = Callable[..., Awaitable[str]]

RANKING_DIMENSION = 16
RANKING_DOCS = 200
RANKING_QUERIES = 5
SCORE_TOLERANCE = 1e-4
EMBEDDING_RTOL = 1e-5
#: Errors a backend may raise for an operation its capabilities say it cannot do.
UNSUPPORTED = (NotSupportedError, UnsupportedFilterError)


def make_documents(count: int, dimension: int, *, seed: int = 0, prefix: str = "d",
                   metadata: Callable[[int], dict[str, Any]] | None = None) -> list[KnowledgeDocument]:
    """Documents with seeded vectors and (optionally) per-index metadata."""
    vectors = random_vectors(count, dimension, seed)
    return [
        KnowledgeDocument(id=f"{prefix}{i:04d}", content=f"content {i}", embedding=vectors[i].tolist(),
                          metadata=metadata(i) if metadata else {"i": i})
        for i in range(count)
    ]


def filter_supported(capabilities: KnowledgeCapabilities, spec: FilterLike) -> bool:
    """Whether the backend declares every operator (and nested path) ``spec`` uses."""
    tree = parse_filter(spec)
    if tree is None:
        return True
    nested = any(isinstance(node, Comparison) and "." in node.field for node in walk(tree))
    return operators_used(tree) <= set(capabilities.filter_operators) and (capabilities.nested_keys or not nested)


def reference(distance: Distance, vectors: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``(distance, score)`` of every row against ``query``, per the table on :class:`Distance`."""
    docs, q = vectors.astype(np.float64), np.asarray(query, dtype=np.float64)
    if distance is Distance.COSINE:
        similarity = docs @ q / (np.linalg.norm(docs, axis=1) * np.linalg.norm(q))
        return 1.0 - similarity, similarity
    if distance is Distance.L2:
        dist = np.linalg.norm(docs - q, axis=1)
        return dist, 1.0 / (1.0 + dist)
    dot = docs @ q
    return -dot, dot


def default_distance(capabilities: KnowledgeCapabilities) -> Distance:
    """Cosine where declared (nearly everywhere), else the first declared metric."""
    return Distance.COSINE if Distance.COSINE in capabilities.distances else min(capabilities.distances)


def close(actual: float, expected: float) -> bool:
    return math.isclose(actual, expected, rel_tol=EMBEDDING_RTOL, abs_tol=SCORE_TOLERANCE)


def assert_best_first(hits: Sequence[SearchHit]) -> None:
    scores = [hit.score for hit in hits]
    assert all(a >= b - 1e-6 for a, b in pairwise(scores)), f"hits are not best first: {scores}"
    ids = [hit.id for hit in hits]
    assert len(ids) == len(set(ids)), f"a document came back twice: {ids}"


def assert_embedding(actual: Sequence[float] | None, expected: Sequence[float], what: str) -> None:
    assert actual is not None, f"{what}: no embedding returned"
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64),
                               rtol=EMBEDDING_RTOL, atol=1e-6, err_msg=what)


class KnowledgeStoreSuite(StoreSuite):
    """Subclass this and define ``store_factory`` to run every knowledge case on your backend."""

    capabilities_type = KnowledgeCapabilities

    async def probe(self, s: StoreFacade) -> Any:
        return await s.list_collections()

    @pytest_asyncio.fixture
    async def new_collection(self, store: StoreFacade, open_store: OpenStore) -> AsyncIterator[NewCollection]:
        """Creates uniquely named collections and drops them at teardown (shared servers stay clean)."""
        names: list[str] = []

        async def make(dimension: int = FILTER_DIMENSION, distance: Distance | str | None = None) -> str:
            name = unique("c_")
            distance = Distance.parse(distance or default_distance(store.capabilities))
            info = await store.create_collection(name, dimension, distance)
            names.append(name)
            assert info == CollectionInfo(name, dimension, distance)
            return name

        yield make
        cleaner = await open_store() if store.closed else store
        for name in names:
            await cleaner.drop_collection(name)

    # -- helpers ---------------------------------------------------------------------------------------

    async def fetch(self, s: StoreFacade, collection: str, ids: Sequence[str]) -> list[KnowledgeDocument]:
        """Documents by id through whichever read the backend declares (get, scroll, else search)."""
        caps = s.capabilities
        if caps.get_by_id:
            return await s.get(collection, list(ids), include_embeddings=True)  # type: ignore[no-any-return]
        if caps.scroll:
            found = {doc.id: doc for doc in await self.scroll_all(s, collection)}
        else:
            info = await s.get_collection(collection)
            hits = await s.search(collection, [1.0] * info.dimension, k=max(1, await s.count(collection)),
                                  include_embeddings=True)
            found = {hit.id: hit.document for hit in hits}
        return [found[i] for i in ids if i in found]

    async def scroll_all(self, s: StoreFacade, collection: str, *, limit: int = 100,
                         filter: FilterLike = None) -> list[KnowledgeDocument]:
        documents: list[KnowledgeDocument] = []
        cursor: str | None = None
        for _ in range(10_000):
            page = await s.scroll(collection, limit=limit, cursor=cursor, filter=filter)
            assert len(page.documents) <= limit, f"scroll returned {len(page.documents)} > limit {limit}"
            documents.extend(page.documents)
            cursor = page.next_cursor
            if cursor is None:
                return documents
        raise AssertionError("scroll never returned next_cursor=None")

    async def check_filter_cases(self, s: StoreFacade, new_collection: NewCollection, case: str) -> None:
        """Search (and count) with every filter of ``FILTER_CASES[case]`` against the reference result,
        or, where the backend does not declare what the filter uses, expect ``UnsupportedFilterError``."""
        docs = filter_documents()
        expected_sets = [{d.id for d in docs if evaluate(spec, d.metadata)} for spec in FILTER_CASES[case]]
        assert any(0 < len(e) < len(docs) for e in expected_sets), f"dataset does not discriminate {case!r}"
        name = await new_collection(FILTER_DIMENSION)
        await s.upsert(name, docs)
        query = docs[0].embedding
        caps = s.capabilities
        for spec, expected in zip(FILTER_CASES[case], expected_sets):
            if not filter_supported(caps, spec):
                await expect_error(UnsupportedFilterError, s.search(name, query, k=len(docs), filter=spec),
                                   f"search(filter={spec!r}) uses what the backend does not declare")
                continue
            hits = await s.search(name, query, k=len(docs), filter=spec)
            got = [hit.id for hit in hits]
            assert len(got) == len(set(got)), f"filter {spec!r}: duplicate hits {got}"
            assert set(got) == expected, (
                f"filter {spec!r}: missing {sorted(expected - set(got))}, unexpected {sorted(set(got) - expected)}"
            )
            if caps.count_with_filter:
                assert await s.count(name, filter=spec) == len(expected), f"count(filter={spec!r})"
            else:
                await expect_error(UNSUPPORTED, s.count(name, filter=spec),
                                   f"count(filter={spec!r}) with count_with_filter=False")

    async def ranking_collection(self, s: StoreFacade, new_collection: NewCollection,
                                 distance: Distance) -> tuple[str, list[KnowledgeDocument], np.ndarray] | None:
        """A collection of seeded random documents for ``distance``; None (after checking that creating
        it raises ``NotSupportedError``) when the backend does not declare the metric."""
        if distance not in s.capabilities.distances:
            with pytest.raises(NotSupportedError):
                await s.create_collection(unique("c_"), RANKING_DIMENSION, distance)
            return None
        name = await new_collection(RANKING_DIMENSION, distance)
        docs = make_documents(RANKING_DOCS, RANKING_DIMENSION, seed=11)
        await s.insert(name, docs)
        return name, docs, random_vectors(RANKING_QUERIES, RANKING_DIMENSION, seed=12)

    # -- collections -----------------------------------------------------------------------------------

    async def test_create_collection(self, store: StoreFacade, new_collection: NewCollection) -> None:
        distance = default_distance(store.capabilities)
        name = await new_collection(8, distance)
        expected = CollectionInfo(name, 8, distance)
        assert await store.get_collection(name) == expected
        assert await store.create_collection(name, 8, distance.value, exist_ok=True) == expected
        alias = {Distance.COSINE: "cos", Distance.L2: "euclidean", Distance.DOT: "ip"}[distance]
        assert await store.create_collection(name, 8, alias) == expected, "distance aliases must be accepted"
        assert await store.has_collection(name) is True
        assert await store.count(name) == 0

    async def test_create_collection_conflicts(self, store: StoreFacade, new_collection: NewCollection) -> None:
        distance = default_distance(store.capabilities)
        name = await new_collection(8, distance)
        with pytest.raises(AlreadyExistsError):
            await store.create_collection(name, 9, distance)
        with pytest.raises(AlreadyExistsError):
            await store.create_collection(name, 8, distance, exist_ok=False)
        for other in sorted(set(store.capabilities.distances) - {distance}):
            await expect_error(AlreadyExistsError, store.create_collection(name, 8, other),
                               f"create_collection() of an existing collection with distance {other.value!r}")
        assert await store.get_collection(name) == CollectionInfo(name, 8, distance)

    async def test_create_collection_bad_arguments(self, store: StoreFacade) -> None:
        name = unique("c_")
        for dimension in (0, -1, 1.5, "8", True, None):
            await expect_error(ValidationError, store.create_collection(name, dimension),
                               f"create_collection(dimension={dimension!r})")
        with pytest.raises(ValidationError):
            await store.create_collection(name, 8, "hamming")
        assert await store.has_collection(name) is False

    async def test_list_collections(self, store: StoreFacade, new_collection: NewCollection) -> None:
        names = {await new_collection(4), await new_collection(4)}
        listed = await store.list_collections()
        assert listed == sorted(listed), "list_collections must be sorted"
        assert names <= set(listed)
        assert len(listed) == len(set(listed))

    async def test_drop_collection(self, store: StoreFacade, new_collection: NewCollection) -> None:
        name = await new_collection(4)
        await store.insert(name, make_documents(3, 4))
        assert await store.drop_collection(name) is True
        assert await store.drop_collection(name) is False
        assert await store.has_collection(name) is False
        assert name not in await store.list_collections()
        with pytest.raises(CollectionNotFoundError):
            await store.get_collection(name)
        await store.create_collection(name, 4)
        assert await store.count(name) == 0, "a re-created collection must not see the dropped documents"

    async def test_missing_collection_raises(self, store: StoreFacade) -> None:
        name = unique("missing_")
        doc = make_documents(1, 4)
        operations: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
            ("get_collection", (name,), {}),
            ("insert", (name, doc), {}),
            ("upsert", (name, doc), {}),
            ("search", (name, [0.1, 0.2, 0.3, 0.4]), {"k": 3}),
            ("delete", (name, ["x"]), {}),
            ("count", (name,), {}),
        ]
        if store.capabilities.get_by_id:
            operations.append(("get", (name, ["x"]), {}))
        if store.capabilities.scroll:
            operations.append(("scroll", (name,), {}))
        for operation, args, kwargs in operations:
            await expect_error(CollectionNotFoundError, getattr(store, operation)(*args, **kwargs),
                               f"{operation}() on a missing collection")
        assert await store.has_collection(name) is False
        assert await store.drop_collection(name) is False

    async def test_hostile_collection_names(self, store: StoreFacade) -> None:
        """Names reach engines as identifiers or file names: refuse them before anything runs."""
        doc = make_documents(1, 4)
        for name in HOSTILE_COLLECTION_NAMES:
            for operation, args in [
                ("create_collection", (name, 4)), ("get_collection", (name,)), ("drop_collection", (name,)),
                ("insert", (name, doc)), ("search", (name, [0.1, 0.2, 0.3, 0.4])), ("count", (name,)),
            ]:
                await expect_error(InvalidIdentifierError, getattr(store, operation)(*args),
                                   f"{operation}({name!r})")
        assert not set(HOSTILE_COLLECTION_NAMES) & set(await store.list_collections())

    async def test_edge_collection_names(self, store: StoreFacade) -> None:
        """Every name the core accepts must work, whatever the engine's own rules (63 chars, leading digit,
        dashes, mixed case)."""
        suffix = unique("")
        for name in (("n" + suffix + "x" * 63)[:63], "9-" + suffix, "_Mixed-Case_" + suffix):
            try:
                assert (await store.create_collection(name, 4)).name == name
                await store.insert(name, make_documents(2, 4))
                assert await store.count(name) == 2
                assert name in await store.list_collections()
            finally:
                await store.drop_collection(name)

    # -- writes and reads ------------------------------------------------------------------------------

    async def test_insert_returns_ids_in_order(self, store: StoreFacade, new_collection: NewCollection) -> None:
        name = await new_collection(4)
        docs = make_documents(5, 4)
        docs = [docs[3], docs[0], docs[4], docs[1], docs[2]]
        assert await store.insert(name, docs) == [d.id for d in docs]
        generated = [KnowledgeDocument(content="auto id", embedding=[1.0, 0.0, 0.0, 0.0])]
        assert await store.upsert(name, generated) == [generated[0].id]
        assert await store.count(name) == 6

    async def test_get_in_asked_order_skipping_missing(self, store: StoreFacade,
                                                       new_collection: NewCollection) -> None:
        name = await new_collection(4)
        docs = make_documents(4, 4)
        await store.insert(name, docs)
        if not store.capabilities.get_by_id:
            with pytest.raises(NotSupportedError):
                await store.get(name, [docs[0].id])
            return
        got = await store.get(name, [docs[2].id, "missing", docs[0].id, docs[3].id])
        assert [d.id for d in got] == [docs[2].id, docs[0].id, docs[3].id]
        assert await store.get(name, ["missing"]) == []
        assert await store.get(name, []) == []

    async def test_insert_duplicate_is_atomic(self, store: StoreFacade, new_collection: NewCollection) -> None:
        if not store.capabilities.insert_rejects_duplicates:
            skip_not_declared("insert_rejects_duplicates=False", "insert of an existing id is not detected, so "
                              "there is no error to check")
        name = await new_collection(4)
        docs = make_documents(4, 4)
        await store.insert(name, docs[:1])
        with pytest.raises(AlreadyExistsError):
            await store.insert(name, [docs[1], docs[0].replace(content="changed"), docs[2]])
        assert await store.count(name) == 1, "nothing of a rejected batch may be written"
        [kept] = await self.fetch(store, name, [docs[0].id])
        assert kept.content == docs[0].content

    async def test_upsert_is_idempotent(self, store: StoreFacade, new_collection: NewCollection) -> None:
        name = await new_collection(4)
        docs = make_documents(3, 4, metadata=lambda i: {"i": i, "old": True})
        await store.upsert(name, docs)
        await store.upsert(name, docs)
        assert await store.count(name) == 3
        replacement = docs[1].replace(content="new content", metadata={"i": 99}, embedding=[0.5, 0.5, -0.5, 1.0],
                                      source_id="new-source")
        assert await store.upsert(name, [replacement]) == [replacement.id]
        assert await store.count(name) == 3
        [got] = await self.fetch(store, name, [replacement.id])
        assert got.content == "new content" and got.source_id == "new-source"
        assert_same_json(got.metadata, {"i": 99}, "metadata (replaced, not merged)")
        assert_embedding(got.embedding, replacement.embedding or [], "replaced embedding")

    async def test_delete_by_ids(self, store: StoreFacade, new_collection: NewCollection) -> None:
        name = await new_collection(4)
        docs = make_documents(5, 4)
        await store.insert(name, docs)
        assert await store.delete(name, [docs[0].id, "missing", docs[3].id]) == 2
        assert await store.delete(name, ["missing", docs[0].id]) == 0
        assert await store.delete(name, []) == 0
        assert await store.count(name) == 3
        remaining = await self.fetch(store, name, [d.id for d in docs])
        assert [d.id for d in remaining] == [docs[1].id, docs[2].id, docs[4].id]

    async def test_delete_by_filter(self, store: StoreFacade, new_collection: NewCollection) -> None:
        name = await new_collection(4)
        docs = make_documents(12, 4, metadata=lambda i: {"group": i % 3})
        await store.insert(name, docs)
        spec = {"group": 1}
        if not store.capabilities.delete_by_filter:
            with pytest.raises(UNSUPPORTED):
                await store.delete(name, filter=spec)
            assert await store.count(name) == len(docs)
            return
        matching = [d.id for d in docs if evaluate(spec, d.metadata)]
        assert await store.delete(name, filter=spec) == len(matching)
        assert await store.count(name) == len(docs) - len(matching)
        # ids AND filter: only listed documents that also match are deleted.
        both = {"group": 2}
        listed = [docs[0].id, docs[2].id, docs[5].id]
        expected = [i for i in listed if evaluate(both, docs[int(i[1:])].metadata)]
        assert await store.delete(name, listed, filter=both) == len(expected)
        assert await self.fetch(store, name, expected) == []
        assert len(await self.fetch(store, name, [docs[0].id])) == 1

    async def test_delete_without_ids_or_filter_deletes_nothing(self, store: StoreFacade,
                                                                new_collection: NewCollection) -> None:
        name = await new_collection(4)
        await store.insert(name, make_documents(3, 4))
        try:
            assert await store.delete(name) == 0
        except ValidationError:
            pass  # refusing the ambiguous call is as good as deleting nothing
        assert await store.count(name) == 3

    async def test_count(self, store: StoreFacade, new_collection: NewCollection) -> None:
        name = await new_collection(4)
        assert await store.count(name) == 0
        docs = make_documents(7, 4, metadata=lambda i: {"even": i % 2 == 0})
        await store.insert(name, docs)
        assert await store.count(name) == 7
        spec = {"even": True}
        if store.capabilities.count_with_filter and filter_supported(store.capabilities, spec):
            assert await store.count(name, filter=spec) == sum(evaluate(spec, d.metadata) for d in docs)
        else:
            with pytest.raises(UNSUPPORTED):
                await store.count(name, filter=spec)

    async def test_scroll_pages_every_document_once(self, store: StoreFacade,
                                                    new_collection: NewCollection) -> None:
        name = await new_collection(4)
        docs = make_documents(23, 4, metadata=lambda i: {"mod": i % 4})
        await store.insert(name, docs)
        if not store.capabilities.scroll:
            with pytest.raises(NotSupportedError):
                await store.scroll(name, limit=5)
            return
        for limit in (1, 5, 23, 100):
            seen = [d.id for d in await self.scroll_all(store, name, limit=limit)]
            assert sorted(seen) == sorted(d.id for d in docs), f"scroll(limit={limit}) missed or repeated documents"
        spec = {"mod": 1}
        if filter_supported(store.capabilities, spec):
            seen = [d.id for d in await self.scroll_all(store, name, limit=2, filter=spec)]
            assert sorted(seen) == sorted(d.id for d in docs if evaluate(spec, d.metadata))
        else:
            with pytest.raises(UnsupportedFilterError):
                await store.scroll(name, limit=2, filter=spec)
        page = await store.scroll(name, limit=5)
        assert page.documents[0].embedding is not None, "scroll returns embeddings by default"

    async def test_embeddings_round_trip(self, store: StoreFacade, new_collection: NewCollection) -> None:
        name = await new_collection(RANKING_DIMENSION)
        docs = make_documents(6, RANKING_DIMENSION, seed=3)
        docs.append(KnowledgeDocument(id="extreme", embedding=[1e-30, -1e30, 3.0e38, -7.0] + [0.25] * 12))
        await store.insert(name, docs)
        for got, want in zip(await self.fetch(store, name, [d.id for d in docs]), docs, strict=True):
            assert got.id == want.id
            assert_embedding(got.embedding, want.embedding or [], f"embedding of {want.id}")
        hits = await store.search(name, docs[0].embedding, k=len(docs), include_embeddings=True)
        by_id = {d.id: d for d in docs}
        for hit in hits:
            assert_embedding(hit.document.embedding, by_id[hit.id].embedding or [], f"search embedding of {hit.id}")

    async def test_metadata_round_trip(self, store: StoreFacade, new_collection: NewCollection) -> None:
        name = await new_collection(4)
        vectors = random_vectors(len(ROUND_TRIP_METADATA), 4, seed=5)
        docs = [KnowledgeDocument(id=f"m{i}", embedding=vectors[i].tolist(), metadata=meta)
                for i, meta in enumerate(ROUND_TRIP_METADATA)]
        await store.insert(name, docs)
        for got, want in zip(await self.fetch(store, name, [d.id for d in docs]), docs, strict=True):
            assert_same_json(got.metadata, want.metadata, f"metadata of {want.id}")
        for hit in await store.search(name, vectors[0].tolist(), k=len(docs)):
            assert_same_json(hit.document.metadata, docs[int(hit.id[1:])].metadata, f"search metadata of {hit.id}")

    async def test_content_and_source_round_trip(self, store: StoreFacade, new_collection: NewCollection) -> None:
        name = await new_collection(4)
        contents = ["", "plain", "知识 🚀 ünïcödé", "quotes ' \" ` and ; -- /* */", "line\nbreaks\r\n\ttabs",
                    "x" * 100_000, "\\N null-ish \\0"]
        sources = [None, "src-1", "docs/ü 1.pdf", "'; drop table x; --", None, "s" * 300, ""]
        vectors = random_vectors(len(contents), 4, seed=9)
        docs = [KnowledgeDocument(id=f"t{i}", content=c, source_id=s, embedding=vectors[i].tolist())
                for i, (c, s) in enumerate(zip(contents, sources))]
        await store.insert(name, docs)
        for got, want in zip(await self.fetch(store, name, [d.id for d in docs]), docs, strict=True):
            assert got.content == want.content, f"content of {want.id}"
            assert got.source_id == want.source_id, f"source_id of {want.id}"
            assert_same_json(got.metadata, {}, f"metadata of {want.id}")

    async def test_unicode_and_odd_ids(self, store: StoreFacade, new_collection: NewCollection) -> None:
        name = await new_collection(4)
        ids = ["文書-1", "with space", "'; drop table x; --", "a/b\\c", "..", "🚀", "x" * 200]
        vectors = random_vectors(len(ids), 4, seed=13)
        docs = [KnowledgeDocument(id=i, embedding=v.tolist()) for i, v in zip(ids, vectors)]
        assert await store.insert(name, docs) == ids
        assert [d.id for d in await self.fetch(store, name, ids)] == ids
        assert await store.delete(name, [ids[2]]) == 1
        assert await store.count(name) == len(ids) - 1

    # -- bad input, nothing written --------------------------------------------------------------------

    async def test_invalid_vectors_rejected(self, store: StoreFacade, new_collection: NewCollection) -> None:
        name = await new_collection(4)
        good = make_documents(1, 4)[0]
        for bad_vector in ([1.0, float("nan"), 0.0, 0.0], [float("inf"), 0.0, 0.0, 1.0], [0.0, 0.0, -math.inf, 1.0],
                           None, []):
            bad = KnowledgeDocument(id="bad", embedding=bad_vector)
            for operation in ("insert", "upsert"):
                await expect_error(ValidationError, getattr(store, operation)(name, [good, bad]),
                                   f"{operation}() of embedding {bad_vector!r}")
        assert await store.count(name) == 0, "nothing of a rejected batch may be written"

    async def test_wrong_dimension_rejected(self, store: StoreFacade, new_collection: NewCollection) -> None:
        name = await new_collection(4)
        await store.insert(name, make_documents(2, 4))
        good = make_documents(1, 4, prefix="g")[0]
        for vector in ([1.0, 2.0, 3.0], [1.0] * 5):
            bad = KnowledgeDocument(id="bad", embedding=vector)
            for operation in ("insert", "upsert"):
                await expect_error(DimensionMismatchError, getattr(store, operation)(name, [good, bad]),
                                   f"{operation}() of a {len(vector)}-d vector into a 4-d collection")
        assert await store.count(name) == 2

    async def test_search_rejects_bad_queries(self, store: StoreFacade, new_collection: NewCollection) -> None:
        name = await new_collection(4)
        await store.insert(name, make_documents(2, 4))
        for query in ([1.0, 2.0, 3.0], [1.0] * 5):
            await expect_error(DimensionMismatchError, store.search(name, query), f"search() with {query!r}")
        with pytest.raises(ValidationError):
            await store.search(name, [float("nan"), 1.0, 0.0, 0.0])

    async def test_malformed_filters_rejected(self, store: StoreFacade, new_collection: NewCollection) -> None:
        await self._check_rejected_filters(store, new_collection, MALFORMED_FILTERS)

    async def test_hostile_filter_keys_rejected(self, store: StoreFacade, new_collection: NewCollection) -> None:
        await self._check_rejected_filters(store, new_collection, [{key: 1} for key in HOSTILE_FILTER_KEYS])

    async def _check_rejected_filters(self, s: StoreFacade, new_collection: NewCollection,
                                      filters: Sequence[Any]) -> None:
        """Each filter must raise a plain ``FilterError`` (it is malformed, not merely unsupported) on
        every operation that takes one, and nothing may be deleted."""
        name = await new_collection(4)
        await s.insert(name, make_documents(3, 4))
        caps = s.capabilities
        calls: list[tuple[str, tuple[Any, ...]]] = [("search", (name, [0.1, 0.2, 0.3, 0.4]))]
        calls += [("count", (name,))] if caps.count_with_filter else []
        calls += [("delete", (name,))] if caps.delete_by_filter else []
        calls += [("scroll", (name,))] if caps.scroll else []
        for spec in filters:
            for operation, args in calls:
                error = await expect_error(FilterError, getattr(s, operation)(*args, filter=spec),
                                           f"{operation}(filter={spec!r})")
                assert not isinstance(error, UnsupportedFilterError), (
                    f"{operation}(filter={spec!r}) is malformed, not unsupported: {error}"
                )
        assert await s.count(name) == 3

    # -- ranking against exact numpy search ------------------------------------------------------------

    @pytest.mark.parametrize("distance", list(Distance), ids=[d.value for d in Distance])
    async def test_search_ranking(self, store: StoreFacade, new_collection: NewCollection,
                                  distance: Distance) -> None:
        made = await self.ranking_collection(store, new_collection, distance)
        if made is None:
            return
        name, docs, queries = made
        vectors = np.array([d.embedding for d in docs], dtype=np.float32)
        recalls = []
        for query in queries:
            ref_distance, ref_score = reference(distance, vectors, query)
            top = {docs[i].id for i in np.argsort(-ref_score, kind="stable")[:10]}
            hits = await store.search(name, query.tolist(), k=10)
            assert len(hits) == 10
            assert_best_first(hits)
            recalls.append(len(top & {h.id for h in hits}) / 10)
            for hit in hits:
                i = int(hit.id[1:])
                assert close(hit.score, ref_score[i]), f"{distance.value} score of {hit.id}: {hit.score} != {ref_score[i]}"
                assert close(hit.distance, ref_distance[i]), (
                    f"{distance.value} distance of {hit.id}: {hit.distance} != {ref_distance[i]}"
                )
        assert float(np.mean(recalls)) >= store.capabilities.recall_floor, f"recall@10 per query: {recalls}"

    @pytest.mark.parametrize("distance", list(Distance), ids=[d.value for d in Distance])
    async def test_search_score_threshold(self, store: StoreFacade, new_collection: NewCollection,
                                          distance: Distance) -> None:
        made = await self.ranking_collection(store, new_collection, distance)
        if made is None:
            return
        name, docs, queries = made
        vectors = np.array([d.embedding for d in docs], dtype=np.float32)
        _, ref_score = reference(distance, vectors, queries[0])
        ordered = np.sort(ref_score)[::-1]
        threshold = float((ordered[19] + ordered[20]) / 2)  # halfway between the 20th and 21st best
        expected = {docs[i].id for i in np.flatnonzero(ref_score >= threshold)}
        hits = await store.search(name, queries[0].tolist(), k=len(docs), score_threshold=threshold)
        assert_best_first(hits)
        assert all(hit.score >= threshold for hit in hits), "a hit below score_threshold came back"
        got = {hit.id for hit in hits}
        if store.capabilities.recall_floor >= 1.0:
            assert got == expected
        else:
            assert got <= expected and len(got) >= store.capabilities.recall_floor * len(expected)
        assert await store.search(name, queries[0].tolist(), k=10, score_threshold=float(ordered[0]) + 1.0) == []

    async def test_search_k_larger_than_collection(self, store: StoreFacade, new_collection: NewCollection) -> None:
        name = await new_collection(RANKING_DIMENSION)
        query = random_vectors(1, RANKING_DIMENSION, seed=4)[0].tolist()
        assert await store.search(name, query, k=5) == [], "an empty collection has no hits"
        docs = make_documents(37, RANKING_DIMENSION, seed=21)
        await store.insert(name, docs)
        hits = await store.search(name, query, k=len(docs) + 50)
        assert_best_first(hits)
        assert {hit.id for hit in hits} == {d.id for d in docs}
        assert len(await store.search(name, query, k=1)) == 1

    # -- filters against the reference evaluator -------------------------------------------------------

    async def test_filter_eq(self, store: StoreFacade, new_collection: NewCollection) -> None:
        await self.check_filter_cases(store, new_collection, "eq")

    async def test_filter_ne(self, store: StoreFacade, new_collection: NewCollection) -> None:
        await self.check_filter_cases(store, new_collection, "ne")

    async def test_filter_gt(self, store: StoreFacade, new_collection: NewCollection) -> None:
        await self.check_filter_cases(store, new_collection, "gt")

    async def test_filter_gte(self, store: StoreFacade, new_collection: NewCollection) -> None:
        await self.check_filter_cases(store, new_collection, "gte")

    async def test_filter_lt(self, store: StoreFacade, new_collection: NewCollection) -> None:
        await self.check_filter_cases(store, new_collection, "lt")

    async def test_filter_lte(self, store: StoreFacade, new_collection: NewCollection) -> None:
        await self.check_filter_cases(store, new_collection, "lte")

    async def test_filter_in(self, store: StoreFacade, new_collection: NewCollection) -> None:
        await self.check_filter_cases(store, new_collection, "in")

    async def test_filter_nin(self, store: StoreFacade, new_collection: NewCollection) -> None:
        await self.check_filter_cases(store, new_collection, "nin")

    async def test_filter_exists(self, store: StoreFacade, new_collection: NewCollection) -> None:
        await self.check_filter_cases(store, new_collection, "exists")

    async def test_filter_contains(self, store: StoreFacade, new_collection: NewCollection) -> None:
        await self.check_filter_cases(store, new_collection, "contains")

    async def test_filter_and(self, store: StoreFacade, new_collection: NewCollection) -> None:
        await self.check_filter_cases(store, new_collection, "and")

    async def test_filter_or(self, store: StoreFacade, new_collection: NewCollection) -> None:
        await self.check_filter_cases(store, new_collection, "or")

    async def test_filter_not(self, store: StoreFacade, new_collection: NewCollection) -> None:
        await self.check_filter_cases(store, new_collection, "not")

    async def test_filter_mixed_types(self, store: StoreFacade, new_collection: NewCollection) -> None:
        await self.check_filter_cases(store, new_collection, "mixed_types")

    async def test_filter_none_and_missing(self, store: StoreFacade, new_collection: NewCollection) -> None:
        await self.check_filter_cases(store, new_collection, "none_and_missing")

    async def test_filter_nested_logic(self, store: StoreFacade, new_collection: NewCollection) -> None:
        await self.check_filter_cases(store, new_collection, "nested_logic")

    async def test_filter_nested_keys(self, store: StoreFacade, new_collection: NewCollection) -> None:
        """Dotted paths: evaluated where ``nested_keys`` is declared, ``UnsupportedFilterError`` elsewhere."""
        await self.check_filter_cases(store, new_collection, "nested_keys")

    async def test_filter_combined_with_k(self, store: StoreFacade, new_collection: NewCollection) -> None:
        """A filter must apply before the top-k cut: the k best *matching* documents come back."""
        spec = {"tags": {"$contains": "ml"}}
        docs = filter_documents()
        name = await new_collection(FILTER_DIMENSION)
        await store.upsert(name, docs)
        if not filter_supported(store.capabilities, spec):
            with pytest.raises(UnsupportedFilterError):
                await store.search(name, docs[5].embedding, k=3, filter=spec)
            return
        matching = [d for d in docs if evaluate(spec, d.metadata)]
        vectors = np.array([d.embedding for d in matching], dtype=np.float32)
        _, scores = reference(default_distance(store.capabilities), vectors, np.asarray(docs[5].embedding))
        expected = [matching[i].id for i in np.argsort(-scores, kind="stable")[:3]]
        hits = await store.search(name, docs[5].embedding, k=3, filter=spec)
        assert [hit.id for hit in hits] == expected

    # -- persistence -----------------------------------------------------------------------------------

    async def test_persists_across_reopen(self, store: StoreFacade, open_store: OpenStore,
                                          new_collection: NewCollection) -> None:
        if not store.capabilities.persistent:
            skip_not_declared("persistent=False", "data need not survive closing the store object")
        name = await new_collection(4)
        info = await store.get_collection(name)
        docs = make_documents(5, 4, metadata=lambda i: {"i": i, "nested": {"l": [i]}})
        await store.insert(name, docs)
        await store.close()
        reopened = await open_store()
        assert await reopened.get_collection(name) == info
        assert await reopened.count(name) == 5
        for got, want in zip(await self.fetch(reopened, name, [d.id for d in docs]), docs, strict=True):
            assert_same_json(got.metadata, want.metadata, f"metadata of {want.id} after reopen")
            assert_embedding(got.embedding, want.embedding or [], f"embedding of {want.id} after reopen")


__all__ = ["KnowledgeStoreSuite", "default_distance", "filter_supported", "make_documents", "reference"]
