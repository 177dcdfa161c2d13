"""Qdrant backends (``storebridge[qdrant]``): the knowledge store."""

from .knowledge import QdrantKnowledgeStore

__all__ = ["QdrantKnowledgeStore"]
