"""pgvector: a knowledge store on PostgreSQL with the pgvector extension (psycopg 3 + psycopg_pool)."""

from .knowledge import PgVectorKnowledgeStore

__all__ = ["PgVectorKnowledgeStore"]
