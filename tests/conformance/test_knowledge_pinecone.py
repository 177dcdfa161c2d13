"""The knowledge conformance suite on a live Pinecone (serverless).

No Pinecone is reachable from these machines: without ``STOREBRIDGE_TEST_PINECONE_URL`` (for example
``pinecone://?api_key=...&cloud=aws&region=us-east-1``, or ``pinecone://`` with ``PINECONE_API_KEY``
set) every case skips with the no-engine marker CI accepts. The same suite runs on every machine
against a stand-in of the SDK in tests/unit/test_pinecone_knowledge.py.

Each run uses its own index prefix (``sbt`` + 10 hex digits), so the indexes it creates are its own;
they are deleted when the module is done. The suite needs five serverless indexes at once (cosine
4, 8 and 16 dimensions, l2 16, dot 16): the project's index quota must leave room for them. The first
case of each (metric, dimension) waits while Pinecone creates the index.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from storebridge.testing import KnowledgeStoreSuite, StoreFactory
from storebridge.urls import parse_url
from tests.engines import engine_url

pytestmark = pytest.mark.engine("pinecone")


@pytest.fixture(scope="module")
def pinecone_run() -> Iterator[tuple[str, str]]:
    """``(url, index prefix)``; the run's indexes are deleted when the module is done."""
    url = engine_url("pinecone")  # skips with the no-engine marker when unset
    prefix = f"sbt{uuid.uuid4().hex[:10]}"
    yield url, prefix
    from pinecone import Pinecone

    parsed = parse_url(url)
    host = None
    if parsed.host:
        scheme = "http" if parsed.driver == "http" else "https"
        host = f"{scheme}://{parsed.host}" + (f":{parsed.port}" if parsed.port else "")
    api_key = parsed.query.get("api_key") or os.environ["PINECONE_API_KEY"]
    with Pinecone(api_key=api_key, host=host) as client:
        for model in list(client.indexes.list()):
            if model.name.startswith(prefix + "-"):
                client.indexes.delete(model.name, timeout=-1)


class TestPineconeKnowledgeLive(KnowledgeStoreSuite):
    @pytest.fixture
    def store_factory(self, pinecone_run: tuple[str, str]) -> StoreFactory:
        from storebridge.adapters.pinecone import PineconeKnowledgeStore

        url, prefix = pinecone_run
        return lambda: PineconeKnowledgeStore(url, index_prefix=prefix)
