"""The state conformance suite over every state engine that runs here (ids: registry names)."""

from __future__ import annotations

from pathlib import Path

import pytest

from storebridge.testing import StateStoreSuite, StoreFactory
from tests.engines import build_factory, engine_params


class TestState(StateStoreSuite):
    @pytest.fixture(params=engine_params("state"))
    def store_factory(self, request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
        return build_factory(request, tmp_path)
