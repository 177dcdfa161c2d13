"""The state conformance suite on Redis, over both native flavours: ``RedisStateStore`` (its async face
is its own ``AsyncRedisStateStore`` twin) and ``AsyncRedisStateStore`` (its sync face a
``RedisStateStore`` twin). The server is started for the session by ``tests/servers/redis.py``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from storebridge.testing import StateStoreSuite, StoreFactory
from tests.servers.redis import RedisServer, redis_server  # noqa: F401  (the session fixture)

pytestmark = pytest.mark.engine("redis")


def _factory(store_class: type, server: RedisServer, request: pytest.FixtureRequest) -> StoreFactory:
    """New store objects over the shared server; every namespace a test used is cleared afterwards, so a
    server given by URL keeps nothing of the run."""
    from storebridge.adapters.redis import RedisStateStore

    used: set[str] = set()

    def cleanup() -> None:
        for namespace in used:
            with RedisStateStore(server.url, namespace=namespace) as store:
                store.clear()

    request.addfinalizer(cleanup)

    def open_store(namespace: str = "") -> object:
        store = store_class(server.url, namespace=namespace)  # validates the namespace before it is recorded
        used.add(namespace)
        return store

    return open_store


class TestRedisState(StateStoreSuite):
    @pytest.fixture
    def store_factory(self, redis_server: RedisServer, request: pytest.FixtureRequest) -> Iterator[StoreFactory]:  # noqa: F811
        from storebridge.adapters.redis import RedisStateStore

        yield _factory(RedisStateStore, redis_server, request)


class TestAsyncRedisState(StateStoreSuite):
    @pytest.fixture
    def store_factory(self, redis_server: RedisServer, request: pytest.FixtureRequest) -> Iterator[StoreFactory]:  # noqa: F811
        from storebridge.adapters.redis import AsyncRedisStateStore

        yield _factory(AsyncRedisStateStore, redis_server, request)
