"""The state conformance suite on MongoDB, sync (pymongo) and async (pymongo's AsyncMongoClient).

No MongoDB runs on this machine: without ``STOREBRIDGE_TEST_MONGODB_URL`` (e.g.
``mongodb://127.0.0.1:27017/storebridge_test``) every case skips with the no-engine marker CI accepts.
Each test module run uses a fresh collection (dropped at the end); tests share it through their own
namespaces, as apps do.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from storebridge.testing import StateStoreSuite, StoreFactory
from tests.engines import engine_url, unique_prefix

pytestmark = pytest.mark.engine("mongodb")


@pytest.fixture(scope="module")
def mongodb_collection() -> Iterator[tuple[str, str]]:
    """``(url, collection)``; the collection is dropped when the module is done."""
    url = engine_url("mongodb")
    collection = unique_prefix("sb_state_").rstrip("_")
    yield url, collection
    from pymongo import MongoClient

    from storebridge.adapters.mongodb._documents import resolve_options

    options = resolve_options(url, database=None, collection=None, namespace=None)
    client: MongoClient[dict[str, object]]
    with MongoClient(options.driver_uri, serverSelectionTimeoutMS=5000) as client:
        client.get_database(options.database).drop_collection(collection)


class TestMongoDBState(StateStoreSuite):
    @pytest.fixture
    def store_factory(self, mongodb_collection: tuple[str, str]) -> StoreFactory:
        from storebridge.adapters.mongodb import MongoDBStateStore

        url, collection = mongodb_collection
        return lambda namespace="": MongoDBStateStore(url, namespace=namespace, collection=collection)


class TestAsyncMongoDBState(StateStoreSuite):
    @pytest.fixture
    def store_factory(self, mongodb_collection: tuple[str, str]) -> StoreFactory:
        from storebridge.adapters.mongodb import AsyncMongoDBStateStore

        url, collection = mongodb_collection
        return lambda namespace="": AsyncMongoDBStateStore(url, namespace=namespace, collection=collection)

