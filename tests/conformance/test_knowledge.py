"""The knowledge conformance suite over every knowledge engine that runs here (ids: registry names)."""

from __future__ import annotations

from pathlib import Path

import pytest

from storebridge.testing import KnowledgeStoreSuite, StoreFactory
from tests.engines import build_factory, engine_params


class TestKnowledge(KnowledgeStoreSuite):
    @pytest.fixture(params=engine_params("knowledge"))
    def store_factory(self, request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
        return build_factory(request, tmp_path)
