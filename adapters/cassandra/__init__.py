"""Cassandra backends (``storebridge[cassandra]``): the knowledge store (Cassandra 5 vectors + SAI)."""

from .knowledge import CassandraKnowledgeStore

__all__ = ["CassandraKnowledgeStore"]
