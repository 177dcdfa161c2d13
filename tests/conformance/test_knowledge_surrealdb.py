"""The knowledge conformance suite on ``surrealdb_vector`` with the engines embedded in the client, so these
cases run on every machine and never skip for want of an engine:

* ``mem``: one in-memory engine per test, shared by every store object through ``connection=`` (an
  in-memory engine is private to its connection); the data outlives each store object.
* ``surrealkv``: an on-disk engine in the test's temporary directory, through a ``surrealkv:///`` URL.

SurrealDB servers are not exercised here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from storebridge.testing import KnowledgeStoreSuite, StoreFactory


class TestSurrealDBKnowledge(KnowledgeStoreSuite):
    @pytest.fixture(params=["mem", "surrealkv"])
    def store_factory(self, request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
        from storebridge.adapters.surrealdb.knowledge import SurrealDBKnowledgeStore

        if request.param == "mem":
            import surrealdb

            conn: Any = surrealdb.Surreal("mem://")  # embedded: the stubs only know ws/http
            conn.connect()
            request.addfinalizer(conn.close)
            return lambda: SurrealDBKnowledgeStore(connection=conn)
        return lambda: SurrealDBKnowledgeStore(f"surrealkv:///{tmp_path}/kv", namespace="test", database="know")
