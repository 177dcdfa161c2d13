"""libSQL / Turso: the ``turso`` conversation store (alias ``libsql``), the SQLite store's schema and SQL
over the ``libsql`` client. Importing this package imports no driver (the store imports ``libsql`` when
it connects)."""

from .conversation import TursoConversationStore, async_turso_store

__all__ = ["TursoConversationStore", "async_turso_store"]
