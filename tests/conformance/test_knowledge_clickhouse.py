"""The knowledge conformance suite on ``clickhouse``: chDB (embedded ClickHouse) by default, so every case runs
on every machine; ``STOREBRIDGE_TEST_CLICKHOUSE_URL`` (``clickhouse://user:pass@host:8123``) runs it on a
server instead. chDB holds ONE directory per process, so every test uses the same per-process directory
(``tests.engines.CHDB_DIR``); each test gets its own ClickHouse database, dropped when the test ends."""

from __future__ import annotations

from pathlib import Path

import pytest

from storebridge.testing import KnowledgeStoreSuite, StoreFactory


class TestClickHouseKnowledge(KnowledgeStoreSuite):
    @pytest.fixture
    def store_factory(self, tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
        from tests.engines import _clickhouse_knowledge

        return _clickhouse_knowledge(tmp_path, request)  # the builder of the framework tests' row
