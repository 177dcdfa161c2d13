"""The knowledge conformance suite over embedded LanceDB (a directory per test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from storebridge.testing import KnowledgeStoreSuite, StoreFactory

pytest.importorskip("lancedb", reason="[no engine on this machine] lancedb is not installed")


class TestLanceDBKnowledge(KnowledgeStoreSuite):
    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> StoreFactory:
        from storebridge.adapters.lancedb import LanceDBKnowledgeStore

        return lambda: LanceDBKnowledgeStore(f"lancedb:///{tmp_path / 'lance'}")
