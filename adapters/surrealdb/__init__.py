"""SurrealDB: the ``surrealdb`` conversation store on the official ``surrealdb`` client (embedded ``mem://`` /
``surrealkv://`` engines or a server). Importing this package imports no client (the store imports
``surrealdb`` when it connects)."""

from .conversation import SurrealDBConversationStore, async_surrealdb_store

__all__ = ["SurrealDBConversationStore", "async_surrealdb_store"]
