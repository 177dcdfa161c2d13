"""The knowledge conformance suite on ``clickhouse`` over chDB (embedded ClickHouse), so these cases run
on every machine. chDB holds ONE directory per process, so every test uses the same per-process directory
and its own ClickHouse database. ClickHouse servers (clickhouse-connect) are not exercised here."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid

import pytest

from storebridge.testing import KnowledgeStoreSuite, StoreFactory

pytest.importorskip("chdb", reason="[no engine on this machine] chdb is not installed")

CHDB_DIR = os.path.join(tempfile.gettempdir(), f"storebridge-chdb-{os.getpid()}")
atexit.register(shutil.rmtree, CHDB_DIR, True)  # the per-process chDB directory goes with the process


class TestClickHouseKnowledge(KnowledgeStoreSuite):
    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        from storebridge.adapters.clickhouse import ClickHouseKnowledgeStore

        database = "t_" + uuid.uuid4().hex[:12]
        return lambda: ClickHouseKnowledgeStore(f"chdb:///{CHDB_DIR}", database=database)
