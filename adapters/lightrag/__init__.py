"""LightRAG backends (``storebridge[lightrag]``): the knowledge store."""

from .knowledge import QUERY_MODES, CodePointTokenizer, LightRAGKnowledgeStore

__all__ = ["QUERY_MODES", "CodePointTokenizer", "LightRAGKnowledgeStore"]
