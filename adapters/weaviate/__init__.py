"""Weaviate backends (``storebridge[weaviate]``): the knowledge store."""

from .knowledge import WeaviateKnowledgeStore

__all__ = ["WeaviateKnowledgeStore"]
