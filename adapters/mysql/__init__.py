"""MySQL / MariaDB stores: the ``mysql`` (PyMySQL) and ``async_mysql`` (aiomysql) conversation stores.

Importing this package imports no driver (the stores import PyMySQL / aiomysql when they are built)."""

from .conversation import AsyncMySQLConversationStore, MySQLConversationStore

__all__ = ["AsyncMySQLConversationStore", "MySQLConversationStore"]
