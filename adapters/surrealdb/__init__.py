"""SurrealDB: the ``surrealdb`` conversation store (:mod:`.conversation`) and the ``surrealdb_vector``
knowledge store (:mod:`.knowledge`) on the official ``surrealdb`` client (embedded ``mem://`` /
``surrealkv://`` engines or a server), sharing :mod:`._connection`. Importing this package imports no
client (the stores import ``surrealdb`` when they connect)."""

from .conversation import SurrealDBConversationStore, async_surrealdb_store

__all__ = ["SurrealDBConversationStore", "async_surrealdb_store"]
