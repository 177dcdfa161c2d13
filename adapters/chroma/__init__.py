"""Chroma (``chromadb``): a knowledge store over an embedded ``PersistentClient`` or a Chroma server."""

from .knowledge import ChromaKnowledgeStore, chroma_collection_name

__all__ = ["ChromaKnowledgeStore", "chroma_collection_name"]
