"""The knowledge conformance suite on a live Couchbase Server 7.6.4+ (Search and Query services on).

No Couchbase server can run on the project's machines: without ``STOREBRIDGE_TEST_COUCHBASE_URL``
(e.g. ``couchbase://127.0.0.1?bucket=test&scope=_default&username=Administrator&password=...``; the bucket and
scope must exist, the user needs the Data, Query and Search roles) every case skips with the no-engine
marker CI accepts. Each module run uses a fresh collection prefix; the cases drop what they create and
the module drops whatever is left under its prefix.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from storebridge.testing import KnowledgeStoreSuite, StoreFactory
from tests.engines import engine_url

pytestmark = pytest.mark.engine("couchbase")


@pytest.fixture(scope="module")
def couchbase_target() -> Iterator[tuple[str, str]]:
    """``(url, collection_prefix)``; everything under the prefix is dropped when the module is done."""
    url = engine_url("couchbase")
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    yield url, prefix
    from storebridge.adapters.couchbase import CouchbaseKnowledgeStore

    store = CouchbaseKnowledgeStore(url, collection_prefix=prefix)
    try:
        for name in store.list_collections():
            store.drop_collection(name)
    finally:
        store.close()


class TestCouchbaseKnowledge(KnowledgeStoreSuite):
    @pytest.fixture
    def store_factory(self, couchbase_target: tuple[str, str]) -> StoreFactory:
        from storebridge.adapters.couchbase import CouchbaseKnowledgeStore

        url, prefix = couchbase_target
        return lambda: CouchbaseKnowledgeStore(url, collection_prefix=prefix)
