"""The knowledge conformance suite on ``surrealdb_vector`` with the engines embedded in the client, so these
cases run on every machine and never skip for want of an engine:

* ``mem``: one in-memory engine per test, shared by every store object through ``connection=`` (an
  in-memory engine is private to its connection); the data outlives each store object.
* ``surrealkv``: an on-disk engine in the test's temporary directory, through a ``surrealkv:///`` URL.
* ``mem-hnsw`` and ``surrealkv-hnsw``: the same with ``hnsw_threshold=0``, so every cosine and l2 collection
  has its HNSW index from its creation and every search of one goes through the KNN operator (the suite's
  collections are far below the default threshold, so the two cases above test the exact scan). The
  ranking cases then check the index against the declared recall floor; the filter cases, whose few dozen
  documents are too few for a filtered answer from the index, check the exact fallback behind it (the
  filtered index path itself is checked on 1,000 documents in ``tests/unit/test_surrealdb_knowledge.py``).

SurrealDB servers are not exercised here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from storebridge.testing import KnowledgeStoreSuite, StoreFactory


class TestSurrealDBKnowledge(KnowledgeStoreSuite):
    @pytest.fixture(params=["mem", "surrealkv", "mem-hnsw", "surrealkv-hnsw"])
    def store_factory(self, request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
        from storebridge.adapters.surrealdb.knowledge import SurrealDBKnowledgeStore

        engine, _, hnsw = request.param.partition("-")
        options: dict[str, Any] = {"hnsw_threshold": 0} if hnsw else {}
        if engine == "mem":
            import surrealdb

            conn: Any = surrealdb.Surreal("mem://")  # embedded: the stubs only know ws/http
            conn.connect()
            request.addfinalizer(conn.close)
            return lambda: SurrealDBKnowledgeStore(connection=conn, **options)
        return lambda: SurrealDBKnowledgeStore(f"surrealkv:///{tmp_path}/kv", namespace="test", database="know",
                                               **options)
