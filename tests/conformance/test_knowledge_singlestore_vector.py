"""The knowledge conformance suite on a live SingleStore 8.5+ (exact search, and with an HNSW vector index).

No SingleStore server can run on the project's machines: without ``STOREBRIDGE_TEST_SINGLESTORE_VECTOR_URL``
(e.g. ``singlestore://admin:...@host:3306/test``) every case skips with the no-engine marker CI accepts.
The SQL that does not touch vectors runs on MariaDB in ``tests/integration/test_singlestore_vector_mariadb.py``.
Each test uses its own table prefix, dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from storebridge.testing import KnowledgeStoreSuite, StoreFactory
from tests.engines import engine_url

pytestmark = pytest.mark.engine("singlestore_vector")


def _drop_prefix(url: str, prefix: str) -> None:
    import singlestoredb

    from storebridge.adapters.mysql.conversation import connect_kwargs
    from storebridge.adapters.singlestore_vector.knowledge import parse_singlestore_url

    parsed, _ = parse_singlestore_url(url)
    conn = singlestoredb.connect(**connect_kwargs(parsed, 10.0), results_type="tuples")
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() "
                       "AND table_name LIKE %s", (prefix.replace("_", "\\_") + "%",))
        rows: list[Any] = list(cursor.fetchall())
        tables = [str(row[0]) for row in rows]
        if tables:
            cursor.execute("DROP TABLE IF EXISTS " + ", ".join(f"`{t}`" for t in tables))
    finally:
        conn.close()


@pytest.fixture
def singlestore_target() -> Iterator[tuple[str, str]]:
    url = engine_url("singlestore_vector")
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    yield url, prefix
    _drop_prefix(url, prefix)


def _factory(target: tuple[str, str], **options: Any) -> StoreFactory:
    from storebridge.adapters.singlestore_vector import SingleStoreVectorKnowledgeStore

    url, prefix = target
    return lambda: SingleStoreVectorKnowledgeStore(url, table_prefix=prefix, **options)


class TestSingleStoreVectorKnowledge(KnowledgeStoreSuite):
    @pytest.fixture
    def store_factory(self, singlestore_target: tuple[str, str]) -> StoreFactory:
        return _factory(singlestore_target)


class TestSingleStoreVectorKnowledgeHNSW(KnowledgeStoreSuite):
    """Every collection gets an HNSW vector index; searches may take the approximate path."""

    @pytest.fixture
    def store_factory(self, singlestore_target: tuple[str, str]) -> StoreFactory:
        return _factory(singlestore_target, vector_index="HNSW_FLAT")
