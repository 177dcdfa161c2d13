"""The knowledge conformance suite on a live Weaviate server (1.27+), over both vector indexes.

No Weaviate runs on these machines: without ``STOREBRIDGE_TEST_WEAVIATE_URL`` (e.g.
``weaviate://127.0.0.1:8080?grpc_port=50051``, or ``weaviate+https://...?api_key=...``) every case skips
with the no-engine marker CI accepts. Each module run uses a fresh class-name prefix, and every class
under it is deleted at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from storebridge.testing import KnowledgeStoreSuite, StoreFactory
from tests.engines import engine_url

pytestmark = pytest.mark.engine("weaviate")


@pytest.fixture(scope="module")
def weaviate_target() -> Iterator[tuple[str, str]]:
    """``(url, prefix)``; the classes under the prefix (plus ``H``/``F`` per index) are deleted at the end."""
    url = engine_url("weaviate")
    pytest.importorskip("weaviate", reason="[no engine on this machine] weaviate-client is not installed")
    prefix = "Sbt" + uuid.uuid4().hex[:12]
    yield url, prefix
    from storebridge.adapters.weaviate import WeaviateKnowledgeStore

    for variant in ("H", "F"):
        cleaner = WeaviateKnowledgeStore(url, prefix=prefix + variant)
        try:
            for name in cleaner.list_collections():
                cleaner.drop_collection(name)
        finally:
            cleaner.close()


class TestWeaviateKnowledgeHNSW(KnowledgeStoreSuite):
    @pytest.fixture
    def store_factory(self, weaviate_target: tuple[str, str]) -> StoreFactory:
        from storebridge.adapters.weaviate import WeaviateKnowledgeStore

        url, prefix = weaviate_target
        return lambda: WeaviateKnowledgeStore(url, prefix=prefix + "H")


class TestWeaviateKnowledgeFlat(KnowledgeStoreSuite):
    @pytest.fixture
    def store_factory(self, weaviate_target: tuple[str, str]) -> StoreFactory:
        from storebridge.adapters.weaviate import WeaviateKnowledgeStore

        url, prefix = weaviate_target
        return lambda: WeaviateKnowledgeStore(url, prefix=prefix + "F", index="flat")
