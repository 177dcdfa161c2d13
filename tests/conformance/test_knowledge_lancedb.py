"""The knowledge conformance suite over embedded LanceDB (a directory per test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from storebridge.testing import KnowledgeStoreSuite, StoreFactory

pytest.importorskip("lancedb", reason="[no engine on this machine] lancedb is not installed")


class TestLanceDBKnowledge(KnowledgeStoreSuite):
    @pytest.fixture
    def store_factory(self, tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
        from tests.engines import _lancedb_knowledge

        return _lancedb_knowledge(tmp_path, request)  # the builder of the framework tests' row
