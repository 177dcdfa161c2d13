"""The knowledge conformance suite on MongoDB Atlas Vector Search (an Atlas cluster, an Atlas Local
deployment, or MongoDB 8.2+ with mongot), over the sync store and its derived async face.

No such deployment can run on these machines (ENGINES.md): without ``STOREBRIDGE_TEST_MONGODB_VECTOR_URL``
(e.g. ``mongodb://127.0.0.1:27017/storebridge_test?directConnection=true`` for Atlas Local) every case
skips with the no-engine marker CI accepts. Each test uses its own collection prefix; every collection
it made, and its registry, are dropped afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from storebridge.testing import KnowledgeStoreSuite, StoreFactory
from tests.engines import engine_url, unique_prefix

pytestmark = pytest.mark.engine("mongodb_vector")


class TestMongoDBVectorKnowledge(KnowledgeStoreSuite):
    @pytest.fixture
    def store_factory(self) -> Iterator[StoreFactory]:
        url = engine_url("mongodb_vector")
        from storebridge.adapters.mongodb.knowledge import MongoDBVectorKnowledgeStore

        prefix = unique_prefix("sbk")
        yield lambda: MongoDBVectorKnowledgeStore(url, prefix=prefix)
        with MongoDBVectorKnowledgeStore(url, prefix=prefix) as cleaner:
            database = cleaner._database  # every collection of the run, half-created ones and the registry too
            for name in database.list_collection_names():
                if name.startswith(prefix):
                    database.drop_collection(name)
