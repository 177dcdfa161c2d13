"""LanceDB backends (``storebridge[lancedb]``): the knowledge store."""

from .knowledge import LanceDBKnowledgeStore

__all__ = ["LanceDBKnowledgeStore"]
