"""The knowledge conformance suite on a live Cassandra 5 server (vector type + SAI).

No Cassandra runs on these machines: without ``STOREBRIDGE_TEST_CASSANDRA_URL`` (e.g.
``cassandra://127.0.0.1:9042/storebridge_test``; the keyspace must exist) every case skips with the
no-engine marker CI accepts. Each module run uses a fresh table prefix; its collections and catalog
table are dropped at the end. The suite runs twice: with range fields for the keys the filter cases range
over, and without (range operators then must raise ``UnsupportedFilterError``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from storebridge.testing import KnowledgeStoreSuite, StoreFactory
from tests.engines import engine_url

pytestmark = pytest.mark.engine("cassandra")

#: The keys ``storebridge.testing.data.FILTER_CASES`` uses with range operators.
RANGE_FIELDS = ("num", "flag", "text", "a-b")


@pytest.fixture(scope="module")
def cassandra_target() -> Iterator[tuple[str, str]]:
    """``(url, prefix)``; everything under the prefix (``r``/``p`` per variant) is dropped at the end."""
    url = engine_url("cassandra")
    pytest.importorskip("cassandra", reason="[no engine on this machine] cassandra-driver is not installed")
    prefix = "t" + uuid.uuid4().hex[:10]
    yield url, prefix
    from storebridge.adapters.cassandra import CassandraKnowledgeStore
    from storebridge.adapters.cassandra import _query as q

    for variant in ("r", "p"):
        cleaner = CassandraKnowledgeStore(url, prefix=f"{prefix}{variant}_")
        try:
            for name in cleaner.list_collections():
                cleaner.drop_collection(name)
            cleaner._execute(q.drop_table(cleaner._keyspace, q.catalog_table(cleaner._prefix)), (), ddl=True)
        finally:
            cleaner.close()


class TestCassandraKnowledgeWithRanges(KnowledgeStoreSuite):
    @pytest.fixture
    def store_factory(self, cassandra_target: tuple[str, str]) -> StoreFactory:
        from storebridge.adapters.cassandra import CassandraKnowledgeStore

        url, prefix = cassandra_target
        return lambda: CassandraKnowledgeStore(url, prefix=f"{prefix}r_", range_fields=RANGE_FIELDS)


class TestCassandraKnowledgePlain(KnowledgeStoreSuite):
    @pytest.fixture
    def store_factory(self, cassandra_target: tuple[str, str]) -> StoreFactory:
        from storebridge.adapters.cassandra import CassandraKnowledgeStore

        url, prefix = cassandra_target
        return lambda: CassandraKnowledgeStore(url, prefix=f"{prefix}p_")
