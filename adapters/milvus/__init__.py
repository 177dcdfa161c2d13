"""Milvus (``pymilvus``; milvus-lite for local files): a knowledge store with FLAT exact search."""

from .knowledge import MilvusKnowledgeStore, milvus_collection_name, milvus_string, prefilter

__all__ = ["MilvusKnowledgeStore", "milvus_collection_name", "milvus_string", "prefilter"]
