"""The knowledge conformance suite over Milvus: milvus-lite on a local file (id ``milvus-lite``).
``STOREBRIDGE_TEST_MILVUS_URL`` (``milvus+http://host:19530``) adds a run against a server (id
``milvus-server``); without it that variant skips with the marker CI accepts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storebridge.testing import KnowledgeStoreSuite, StoreFactory
from tests.conftest import NO_ENGINE_HERE

pytest.importorskip("pymilvus", reason="pymilvus is needed for these tests (pip install 'storebridge[milvus]')")

SERVER_VARIABLE = "STOREBRIDGE_TEST_MILVUS_URL"


class TestMilvusKnowledge(KnowledgeStoreSuite):
    @pytest.fixture(params=["milvus-lite", "milvus-server"])
    def store_factory(self, request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
        from storebridge.adapters.milvus import MilvusKnowledgeStore
        from tests.engines import _milvus_knowledge

        if request.param == "milvus-lite":
            return _milvus_knowledge(tmp_path, request)  # the builder of the framework tests' row
        url = os.environ.get(SERVER_VARIABLE)
        if not url:
            pytest.skip(f"{NO_ENGINE_HERE} set {SERVER_VARIABLE} to run the Milvus cases against a server")
        return lambda: MilvusKnowledgeStore(url)
