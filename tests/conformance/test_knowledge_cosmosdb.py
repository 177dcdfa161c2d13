"""The whole knowledge conformance suite on Azure Cosmos DB for NoSQL, vector search included.

No account runs on this machine: without ``STOREBRIDGE_TEST_COSMOSDB_URL`` every case skips with the
no-engine marker CI accepts. Point it at an account with "Vector Search for NoSQL API" enabled, e.g.
``cosmosdb://<account>.documents.azure.com:443/?key=<url-encoded key>&database=storebridge_test``
(or an ``AccountEndpoint=...;AccountKey=...;`` connection string); leave ``prefix`` out of it. Each module
run uses a fresh container prefix in that database and deletes its containers at the end.

The emulator that runs here has no ``VectorDistance``; the suite's other cases run on it in
``tests/integration/test_cosmosdb_emulator.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from storebridge.testing import KnowledgeStoreSuite, StoreFactory
from tests.engines import engine_url, unique_prefix

pytestmark = pytest.mark.engine("cosmosdb")


@pytest.fixture(scope="module")
def cosmosdb_account() -> Iterator[tuple[str, str]]:
    """``(url, prefix)``; the containers under the prefix are deleted when the module is done."""
    url = engine_url("cosmosdb")
    pytest.importorskip("azure.cosmos", reason="azure-cosmos is needed (pip install 'storebridge[cosmosdb]')")
    prefix = unique_prefix("sbc")
    yield url, prefix
    from storebridge.adapters.cosmosdb import CosmosDBKnowledgeStore

    with CosmosDBKnowledgeStore(url, prefix=prefix) as store:
        for name in store.list_collections():
            store.drop_collection(name)


class TestCosmosDBKnowledge(KnowledgeStoreSuite):
    @pytest.fixture
    def store_factory(self, cosmosdb_account: tuple[str, str]) -> StoreFactory:
        from storebridge.adapters.cosmosdb import CosmosDBKnowledgeStore

        url, prefix = cosmosdb_account
        return lambda: CosmosDBKnowledgeStore(url, prefix=prefix)
