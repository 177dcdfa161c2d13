"""The MariaDB server the tests use: ``STOREBRIDGE_TEST_MARIADB_URL``, else the server that runs on every
project machine (ENGINES.md: MariaDB 10.11 on 127.0.0.1:3306, root without password, database ``test``).

It runs here, so an unreachable server FAILS the tests that need it (never a skip). Tests share it
through unique table prefixes, or a scratch database they create and drop (:meth:`scratch_database`)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import pytest

from storebridge.identifiers import quote_identifier, validate_table_prefix
from storebridge.urls import parse_url

URL_VARIABLE = "STOREBRIDGE_TEST_MARIADB_URL"
DEFAULT_URL = "mysql://root@127.0.0.1:3306/test"
START_HINT = "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd"
TABLES = ("messages", "sessions", "schema_versions")


@dataclass(frozen=True)
class MariaDBServer:
    url: str

    def with_scheme(self, scheme: str, *, database: str | None = None, query: str = "") -> str:
        parsed = parse_url(self.url)
        if database is not None:
            parsed = replace(parsed, path="/" + database)
        return parsed.render(reveal=True, scheme=scheme) + query

    @property
    def database(self) -> str:
        return parse_url(self.url).database or "test"

    @contextmanager
    def connect(self, database: str | None = None) -> Iterator[Any]:
        import pymysql

        p = parse_url(self.url)
        conn = pymysql.connect(host=p.host or "127.0.0.1", port=p.port or 3306, user=p.username or "root",
                               password=p.password or "", database=database or p.database, charset="utf8mb4",
                               autocommit=True)
        try:
            yield conn
        finally:
            conn.close()

    def execute(self, sql: str, params: Any = None, *, database: str | None = None) -> list[tuple[Any, ...]]:
        with self.connect(database) as conn, conn.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    def drop_prefix(self, prefix: str, tables: tuple[str, ...] = TABLES, *, database: str | None = None) -> None:
        validate_table_prefix(prefix)
        names = ", ".join(quote_identifier(prefix + t, "`") for t in tables)
        self.execute(f"DROP TABLE IF EXISTS {names}", database=database)

    @contextmanager
    def scratch_database(self) -> Iterator[str]:
        """A database of its own for one test (e.g. to count its connections), dropped afterwards."""
        name = f"sbt_{uuid.uuid4().hex[:12]}"
        self.execute(f"CREATE DATABASE {quote_identifier(name, '`')} CHARACTER SET utf8mb4")
        try:
            yield name
        finally:
            self.execute(f"DROP DATABASE IF EXISTS {quote_identifier(name, '`')}")


@pytest.fixture(scope="session")
def mariadb_server() -> MariaDBServer:
    url = os.environ.get(URL_VARIABLE) or DEFAULT_URL
    server = MariaDBServer(url)
    try:
        server.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - reported as the failure
        pytest.fail(f"MariaDB is not reachable at {parse_url(url)} ({exc}); it runs on every project machine: "
                    f"start it with `{START_HINT}` or set {URL_VARIABLE}", pytrace=False)
    return server


__all__ = ["MariaDBServer", "mariadb_server"]
