"""The state conformance suite on Redis, over both native flavours: ``RedisStateStore`` (its async face
is its own ``AsyncRedisStateStore`` twin) and ``AsyncRedisStateStore`` (its sync face a
``RedisStateStore`` twin). The server is started for the session by ``tests/servers/redis.py`` (a plugin of
``tests/conftest.py``, so its fixtures need no import)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from storebridge.testing import StateStoreSuite, StoreFactory
from tests.servers.redis import RedisServer, state_store_factory

pytestmark = pytest.mark.engine("redis")


class TestRedisState(StateStoreSuite):
    @pytest.fixture
    def store_factory(self, redis_server: RedisServer, request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
        yield state_store_factory(redis_server, request)


class TestAsyncRedisState(StateStoreSuite):
    @pytest.fixture
    def store_factory(self, redis_server: RedisServer, request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
        yield state_store_factory(redis_server, request, asynchronous=True)
