"""Azure Cosmos DB for NoSQL (``storebridge[cosmosdb]``, azure-cosmos): the knowledge store, with vector search.

The store is imported on first use, so the pure query and layout modules (``_query``, ``_layout``) load
without the client library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .knowledge import CosmosDBKnowledgeStore


def __getattr__(name: str) -> Any:
    if name == "CosmosDBKnowledgeStore":
        from .knowledge import CosmosDBKnowledgeStore

        return CosmosDBKnowledgeStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CosmosDBKnowledgeStore"]
