"""The knowledge conformance suite over Qdrant's local mode: on a directory and in memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from storebridge.testing import KnowledgeStoreSuite, StoreFactory

pytest.importorskip("qdrant_client", reason="[no engine on this machine] qdrant-client is not installed")


class TestQdrantKnowledgePath(KnowledgeStoreSuite):
    @pytest.fixture
    def store_factory(self, tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
        from tests.engines import _qdrant_knowledge

        return _qdrant_knowledge(tmp_path, request)  # the builder of the framework tests' row


class TestQdrantKnowledgeMemory(KnowledgeStoreSuite):
    @pytest.fixture
    def store_factory(self):  # type: ignore[no-untyped-def]
        from qdrant_client import QdrantClient

        from storebridge.adapters.qdrant import QdrantKnowledgeStore

        client = QdrantClient(":memory:")  # every store object of the test reaches the same data
        yield lambda: QdrantKnowledgeStore(client=client)
        client.close()
