"""The PostgreSQL server the tests use: ``STOREBRIDGE_TEST_POSTGRES_URL``, else the server that runs on
every project machine (ENGINES.md: PostgreSQL 15 on 127.0.0.1:5432, trust auth, database ``test``).

It runs here, so an unreachable server FAILS the tests that need it (never a skip): the message says how
to start it again. Tests share it through unique table prefixes (and their own databases where a test
needs one) and drop everything they made."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from storebridge.identifiers import quote_identifier, validate_table_prefix
from storebridge.urls import parse_url

URL_VARIABLE = "STOREBRIDGE_TEST_POSTGRES_URL"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
START_HINT = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
TABLES = ("messages", "sessions", "schema_versions")


@dataclass(frozen=True)
class PostgresServer:
    url: str

    @property
    def asyncpg_url(self) -> str:
        return parse_url(self.url).render(reveal=True, scheme="postgresql+asyncpg")

    def with_scheme(self, scheme: str) -> str:
        return parse_url(self.url).render(reveal=True, scheme=scheme)

    @contextmanager
    def connect(self) -> Iterator[Any]:
        import psycopg

        conn = psycopg.connect(self.url, autocommit=True)
        try:
            yield conn
        finally:
            conn.close()

    def execute(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def drop_prefix(self, prefix: str, tables: tuple[str, ...] = TABLES) -> None:
        """Drop the store tables with this prefix (validated, quoted)."""
        validate_table_prefix(prefix)
        names = ", ".join(quote_identifier(prefix + t) for t in tables)
        self.execute(f"DROP TABLE IF EXISTS {names} CASCADE")


def unique_prefix(stem: str = "sbt") -> str:
    return f"{stem}{uuid.uuid4().hex[:10]}_"


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    url = os.environ.get(URL_VARIABLE) or DEFAULT_URL
    server = PostgresServer(url)
    try:
        server.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - reported as the failure
        pytest.fail(f"PostgreSQL is not reachable at {parse_url(url)} ({exc}); it runs on every project machine: "
                    f"start it with `{START_HINT}` or set {URL_VARIABLE}", pytrace=False)
    return server


__all__ = ["PostgresServer", "postgres_server", "unique_prefix"]
