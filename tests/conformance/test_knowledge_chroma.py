"""The knowledge conformance suite over Chroma: embedded (``PersistentClient``) and a real ``chroma run``
server started for the session (ids ``chroma-embedded`` / ``chroma-server``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storebridge.testing import KnowledgeStoreSuite, StoreFactory
from tests.servers.chroma import ChromaServer, start_chroma_server

pytest.importorskip("chromadb", reason="chromadb is needed for these tests (pip install 'storebridge[chroma]')")


@pytest.fixture(scope="session")
def chroma_server() -> Iterator[ChromaServer]:
    server = start_chroma_server()
    try:
        yield server
    finally:
        server.stop()


class TestChromaKnowledge(KnowledgeStoreSuite):
    @pytest.fixture(params=["chroma-embedded", "chroma-server"])
    def store_factory(self, request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
        from storebridge.adapters.chroma import ChromaKnowledgeStore
        from tests.engines import _chroma_knowledge

        if request.param == "chroma-embedded":
            return _chroma_knowledge(tmp_path, request)  # the builder of the framework tests' row
        server: ChromaServer = request.getfixturevalue("chroma_server")
        return lambda: ChromaKnowledgeStore(server.url)
