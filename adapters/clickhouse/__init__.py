"""ClickHouse: the ``clickhouse`` knowledge store on chDB (embedded ClickHouse) or a server through
``clickhouse-connect``. Importing this package imports no client."""

from .knowledge import ClickHouseKnowledgeStore

__all__ = ["ClickHouseKnowledgeStore"]
