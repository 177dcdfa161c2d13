"""The conversation conformance suite over every conversation engine that runs here (ids: registry names)."""

from __future__ import annotations

from pathlib import Path

import pytest

from storebridge.testing import ConversationStoreSuite, StoreFactory
from tests.engines import build_factory, engine_params


class TestConversation(ConversationStoreSuite):
    @pytest.fixture(params=engine_params("conversation"))
    def store_factory(self, request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
        return build_factory(request, tmp_path)
