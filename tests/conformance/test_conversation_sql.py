"""The conversation conformance suite on the SQL engines that run on every project machine: PostgreSQL
(``postgres``, ``async_postgres``, ``supabase`` through a ``supabase://`` URL) and MariaDB (``mysql``,
``async_mysql``, ``singlestore`` through the singlestoredb client). Each case runs on the sync and the
async face (test ids: ``test_x[postgres-sync]``...).

One table prefix per backend for the module (cases use unique session ids, as on any shared
database), dropped at the end: creating tables per case would spend the time budget on DDL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from storebridge.testing import ConversationStoreSuite, StoreFactory
from tests.servers.mariadb import MariaDBServer, mariadb_server  # noqa: F401  (session fixture)
from tests.servers.postgres import PostgresServer, postgres_server, unique_prefix  # noqa: F401

POSTGRES_BACKENDS = ("postgres", "async_postgres", "supabase")
MARIADB_BACKENDS = ("mysql", "async_mysql", "singlestore")


def open_store(name: str, pg: PostgresServer | None, maria: MariaDBServer | None, prefix: str,
               **options: Any) -> Any:
    """A new store object of backend ``name`` on the test servers (small pools: many run at once)."""
    if name == "postgres":
        from storebridge.adapters.postgres import PostgresConversationStore

        assert pg is not None
        return PostgresConversationStore(pg.url, table_prefix=prefix, max_size=options.pop("max_size", 8), **options)
    if name == "async_postgres":
        from storebridge.adapters.postgres import AsyncPostgresConversationStore

        assert pg is not None
        return AsyncPostgresConversationStore(pg.asyncpg_url, table_prefix=prefix,
                                              max_size=options.pop("max_size", 8), **options)
    if name == "supabase":
        from storebridge.adapters.supabase import SupabaseConversationStore

        assert pg is not None
        return SupabaseConversationStore(pg.with_scheme("supabase"), table_prefix=prefix,
                                         max_size=options.pop("max_size", 8), **options)
    assert maria is not None
    if name == "mysql":
        from storebridge.adapters.mysql import MySQLConversationStore

        return MySQLConversationStore(maria.with_scheme("mysql", query="?ssl_disabled=true"), table_prefix=prefix,
                                      **options)
    if name == "async_mysql":
        from storebridge.adapters.mysql import AsyncMySQLConversationStore

        return AsyncMySQLConversationStore(maria.with_scheme("mysql+aiomysql"), table_prefix=prefix, **options)
    if name == "singlestore":
        from storebridge.adapters.singlestore import SingleStoreConversationStore

        return SingleStoreConversationStore(maria.with_scheme("singlestore", query="?ssl_disabled=true"),
                                            table_prefix=prefix, **options)
    raise AssertionError(name)


@pytest.fixture(scope="module")
def backend_prefixes() -> Iterator[Callable[[str, Any], str]]:
    """One prefix per backend for this module; every one used is dropped at the end (on the server it
    was made on, so a Postgres-only run never needs MariaDB)."""
    made: dict[str, tuple[str, Any]] = {}

    def prefix(name: str, server: Any) -> str:
        if name not in made:
            made[name] = (unique_prefix(f"sbc{len(made)}"), server)
        return made[name][0]

    yield prefix
    for p, server in made.values():
        server.drop_prefix(p)


def _param(name: str) -> Any:
    engine = "postgres" if name in POSTGRES_BACKENDS else "mariadb"
    return pytest.param(name, id=name, marks=pytest.mark.engine(engine))


class TestSQLConversation(ConversationStoreSuite):
    @pytest.fixture(params=[_param(n) for n in (*POSTGRES_BACKENDS, *MARIADB_BACKENDS)])
    def store_factory(self, request: pytest.FixtureRequest,
                      backend_prefixes: Callable[[str, Any], str]) -> StoreFactory:
        name: str = request.param
        server = "postgres_server" if name in POSTGRES_BACKENDS else "mariadb_server"
        srv = request.getfixturevalue(server)
        pg, maria = (srv, None) if name in POSTGRES_BACKENDS else (None, srv)
        prefix = backend_prefixes(name, srv)
        return lambda: open_store(name, pg, maria, prefix)
