"""The state conformance suite on a live Upstash Redis database. No Upstash is reachable from these
machines, so it runs only with ``STOREBRIDGE_TEST_UPSTASH_URL`` (``upstash://host``, or the REST URL
``https://host``) and ``STOREBRIDGE_TEST_UPSTASH_TOKEN`` (unless the URL carries the token); otherwise
it skips with the no-engine marker. The same suite runs on every machine against a stand-in for the
REST protocol in tests/unit/test_upstash_state.py."""

from __future__ import annotations

import os

import pytest

from storebridge.testing import StateStoreSuite, StoreFactory
from tests.engines import engine_url

pytestmark = pytest.mark.engine("upstash")
TOKEN_VARIABLE = "STOREBRIDGE_TEST_UPSTASH_TOKEN"


def _live_factory(store_class_name: str, request: pytest.FixtureRequest) -> StoreFactory:
    url = engine_url("upstash")  # skips with the no-engine marker when unset
    token = os.environ.get(TOKEN_VARIABLE) or None
    from storebridge.adapters import upstash

    store_class = getattr(upstash, store_class_name)
    used: set[str] = set()

    def cleanup() -> None:  # leave nothing behind in the live database
        for namespace in used:
            with upstash.UpstashStateStore(url, token=token, namespace=namespace) as store:
                store.clear()

    request.addfinalizer(cleanup)

    def open_store(namespace: str = "") -> object:
        store = store_class(url, token=token, namespace=namespace)
        used.add(namespace)
        return store

    return open_store


class TestUpstashStateLive(StateStoreSuite):
    @pytest.fixture
    def store_factory(self, request: pytest.FixtureRequest) -> StoreFactory:
        return _live_factory("UpstashStateStore", request)


class TestAsyncUpstashStateLive(StateStoreSuite):
    @pytest.fixture
    def store_factory(self, request: pytest.FixtureRequest) -> StoreFactory:
        return _live_factory("AsyncUpstashStateStore", request)
