"""The knowledge conformance suite on a live Upstash Vector index.

No Upstash is reachable from these machines: without ``STOREBRIDGE_TEST_UPSTASH_VECTOR_URL``
(``upstash-vector://<host>?token=...``, or the host alone with ``UPSTASH_VECTOR_REST_TOKEN`` set)
every case skips with the no-engine marker CI accepts. The same suite runs on every machine against a
stand-in of the REST API in tests/unit/test_upstash_vector_knowledge.py.

Use a dedicated dense index of dimension 16 or more (the suite's vectors have up to 16 dimensions;
shorter ones are zero-padded), COSINE or EUCLIDEAN: the store declares the index's one function and the
cases for the other two check that they are refused (Upstash documents that DOT_PRODUCT indexes need
unit-length vectors, which the suite's random vectors are not). Collections are namespaces with fresh
random names, dropped by the cases that create them.
"""

from __future__ import annotations

import pytest

from storebridge.testing import KnowledgeStoreSuite, StoreFactory
from tests.engines import engine_url

pytestmark = pytest.mark.engine("upstash_vector")


class TestUpstashVectorKnowledgeLive(KnowledgeStoreSuite):
    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        url = engine_url("upstash_vector")  # skips with the no-engine marker when unset
        from storebridge.adapters.upstash_vector import UpstashVectorKnowledgeStore

        return lambda: UpstashVectorKnowledgeStore(url)
