"""The engine template (storebridge.engine) under the whole knowledge conformance suite.

A dictionary stands in for the engine here (a unit test of the core): the template must give any
engine that implements its primitives faithfully the suite's exact behaviour. Real engines run the
same suite in tests/conformance.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from storebridge.engine import Candidate, EngineKnowledgeStore
from storebridge.errors import OperationFailedError, StoreClosedError, ValidationError
from storebridge.filters import Filter, evaluate
from storebridge.knowledge import KnowledgeCapabilities
from storebridge.models import CollectionInfo, Distance, DocumentPage, KnowledgeDocument
from storebridge.testing import KnowledgeStoreSuite, StoreFactory

_DATABASES: dict[str, dict[str, tuple[CollectionInfo, dict[str, tuple[KnowledgeDocument, np.ndarray]]]]] = {}


class DictEngineStore(EngineKnowledgeStore):
    """The smallest faithful engine: collections of (document, vector) rows in a shared dict."""

    backend_name = "dict-engine"
    capabilities = KnowledgeCapabilities(max_batch=7)
    write_batch = 7  # small, so the suite's writes cross batch boundaries

    def __init__(self, database: str, *, fail_with: Exception | None = None) -> None:
        self._db = _DATABASES.setdefault(database, {})
        self._where = f"dict {database}"
        self._fail_with = fail_with
        self.writes: list[int] = []

    def close(self) -> None:
        self._closed = True

    def _rows(self, info: CollectionInfo) -> dict[str, tuple[KnowledgeDocument, np.ndarray]]:
        if self._fail_with is not None:
            raise self._fail_with
        return self._db[info.name][1]

    def _matching(self, info: CollectionInfo, where: Filter | None) -> list[tuple[KnowledgeDocument, np.ndarray]]:
        return [row for _, row in sorted(self._rows(info).items()) if evaluate(where, row[0].metadata)]

    def _engine_describe(self, name: str) -> CollectionInfo | None:
        entry = self._db.get(name)
        return None if entry is None else entry[0]

    def _engine_create(self, info: CollectionInfo) -> None:
        self._db[info.name] = (info, {})

    def _engine_drop(self, name: str) -> None:
        del self._db[name]

    def _engine_names(self) -> list[str]:
        return list(self._db)

    def _engine_existing(self, info: CollectionInfo, ids: list[str]) -> list[str]:
        return [i for i in ids if i in self._rows(info)]

    def _engine_write(self, info: CollectionInfo, documents: list[KnowledgeDocument], vectors: np.ndarray) -> None:
        self.writes.append(len(documents))
        rows = self._rows(info)
        for doc, vector in zip(documents, vectors, strict=True):
            rows[doc.id] = (doc.replace(embedding=None), vector.copy())

    def _engine_delete(self, info: CollectionInfo, ids: list[str] | None, where: Filter | None) -> int:
        rows = self._rows(info)
        doomed = [d.id for d, _ in self._matching(info, where) if ids is None or d.id in ids]
        for doc_id in doomed:
            del rows[doc_id]
        return len(doomed)

    def _engine_nearest(self, info: CollectionInfo, query: np.ndarray, limit: int,
                        where: Filter | None) -> list[Candidate]:
        rows = self._matching(info, where)
        if not rows:
            return []
        matrix = np.stack([v for _, v in rows]).astype(np.float64)
        if info.distance is Distance.COSINE:
            matrix = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
        if info.distance is Distance.L2:
            order = np.argsort(((matrix - query) ** 2).sum(axis=1), kind="stable")
        else:
            order = np.argsort(-(matrix @ query), kind="stable")
        return [Candidate(rows[i][0], rows[i][1]) for i in order[:limit]]

    def _document(self, row: tuple[KnowledgeDocument, np.ndarray], with_vectors: bool) -> KnowledgeDocument:
        return row[0].replace(embedding=row[1].tolist()) if with_vectors else row[0]

    def _engine_get(self, info: CollectionInfo, ids: list[str], with_vectors: bool) -> list[KnowledgeDocument]:
        rows = self._rows(info)
        return [self._document(rows[i], with_vectors) for i in ids if i in rows]

    def _engine_count(self, info: CollectionInfo, where: Filter | None) -> int:
        return len(self._matching(info, where))

    def _engine_page(self, info: CollectionInfo, limit: int, cursor: str | None, where: Filter | None,
                     with_vectors: bool) -> DocumentPage:
        rows = [row for row in self._matching(info, where) if cursor is None or row[0].id > cursor]
        page = [self._document(row, with_vectors) for row in rows[:limit]]
        return DocumentPage(page, page[-1].id if len(rows) > limit else None)


_COUNTER = itertools.count()


class TestEngineTemplate(KnowledgeStoreSuite):
    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> StoreFactory:
        database = f"{tmp_path}-{next(_COUNTER)}"
        return lambda: DictEngineStore(database)


def _docs(n: int, prefix: str = "d") -> list[KnowledgeDocument]:
    return [KnowledgeDocument(id=f"{prefix}{i}", content="c", embedding=[1.0, float(i)]) for i in range(n)]


def test_generator_writes_one_batch_at_a_time() -> None:
    store = DictEngineStore("gen")
    store.create_collection("c", 2)
    produced: list[int] = []

    def documents() -> Any:
        for doc in _docs(20):
            produced.append(1)
            assert len(produced) - sum(store.writes) <= store.write_batch, "more than one batch held"
            yield doc

    assert store.insert("c", documents()) == [f"d{i}" for i in range(20)]
    assert store.writes == [7, 7, 6]


def test_a_bad_document_late_in_a_sequence_writes_nothing() -> None:
    store = DictEngineStore("seq")
    store.create_collection("c", 2)
    docs = _docs(15)
    docs[13] = docs[13].replace(embedding=[float("nan"), 1.0])
    with pytest.raises(ValidationError, match="d13"):
        store.insert("c", docs)
    assert store.count("c") == 0 and store.writes == []


def test_upsert_keeps_the_last_of_repeated_ids() -> None:
    store = DictEngineStore("repeat")
    store.create_collection("c", 2)
    first, second = _docs(1)[0], _docs(1)[0].replace(content="second")
    assert store.upsert("c", [first, second]) == ["d0", "d0"]
    assert [d.content for d in store.get("c", ["d0"])] == ["second"]


def test_engine_errors_are_typed_and_secret_free() -> None:
    store = DictEngineStore("broken", fail_with=RuntimeError("auth failed for https://u:hunter2@host/x"))
    store._engine_create(CollectionInfo("c", 2, Distance.COSINE))
    with pytest.raises(OperationFailedError, match="dict-engine count failed") as caught:
        store.count("c")
    assert "hunter2" not in str(caught.value)
    store.close()
    with pytest.raises(StoreClosedError):
        store.count("c")
