"""PostgreSQL stores: the ``postgres`` (psycopg 3) and ``async_postgres`` (asyncpg) conversation stores.

Imported on first use by the registry; importing this package imports no driver (the stores import
psycopg / asyncpg when they are built)."""

from .conversation import AsyncPostgresConversationStore, PostgresConversationStore

__all__ = ["AsyncPostgresConversationStore", "PostgresConversationStore"]
