"""``storebridge migrate``: versions read without opening a store (nothing is created), ``--apply``
brings every component to the newest version, on the embedded SQLite file and on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from storebridge.adapters.sql.dialects import POSTGRES
from storebridge.adapters.sql.schema import conversation_migrations
from storebridge.adapters.sqlite import conversation, knowledge, state
from tests.servers.postgres import PostgresServer, postgres_server, unique_prefix  # noqa: F401

from .conftest import Invoke, assert_error_line

LATEST = {"conversation": len(conversation.MIGRATIONS), "knowledge": len(knowledge.MIGRATIONS),
          "state": len(state.MIGRATIONS)}


def test_embedded_file_pending_then_applied(invoke: Invoke, workdir: Path) -> None:
    db = workdir / "embedded.db"
    result = invoke("migrate", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["kind"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"conversation", "knowledge", "state"}
    for kind, row in rows.items():
        assert row["current"] == 0 and row["latest"] == LATEST[kind]
        assert [p["version"] for p in row["pending"]] == list(range(1, LATEST[kind] + 1))
    assert not db.exists(), "showing migrations creates nothing"
    table = invoke("migrate")
    assert "migration(s) pending" in table.stdout and "--apply" in table.stdout

    applied = invoke("migrate", "--apply")
    assert applied.exit_code == 0, applied.output
    assert "applied: conversation conversation schema 0 ->" in applied.stdout
    rows = {r["kind"]: r for r in json.loads(invoke("migrate", "--json").stdout)}
    assert all(r["current"] == LATEST[k] and r["pending"] == [] for k, r in rows.items())
    assert "nothing to migrate" in invoke("migrate").stdout


def test_sqlite_url_and_table_prefix(invoke: Invoke, workdir: Path) -> None:
    url = f"sqlite:///{workdir}/app.db"
    assert invoke("migrate", url, "--apply", "--table-prefix", "one_").exit_code == 0
    mine = {r["kind"]: r["current"] for r in json.loads(invoke("migrate", url, "--table-prefix", "one_", "--json").stdout)}
    other = {r["kind"]: r["current"] for r in json.loads(invoke("migrate", url, "--table-prefix", "two_", "--json").stdout)}
    assert mine == LATEST and other == {k: 0 for k in LATEST}
    assert_error_line(invoke("migrate", url, "--table-prefix", "bad-prefix"), "invalid table prefix")


def test_backends_without_a_versioned_schema(invoke: Invoke) -> None:
    rows = json.loads(invoke("migrate", "memory://", "--json").stdout)
    assert rows == [{"kind": "state", "backend": "memory", "component": "state", "current": None, "latest": None,
                     "pending": [], "note": rows[0]["note"]}]
    assert "no versioned SQL schema" in rows[0]["note"]
    assert_error_line(invoke("migrate", "nosuch://x"), "no backend of any kind handles")


def test_newer_database_is_refused(invoke: Invoke, workdir: Path) -> None:
    url = f"sqlite:///{workdir}/app.db"
    invoke("migrate", url, "--apply")
    import sqlite3

    with sqlite3.connect(workdir / "app.db") as conn:
        conn.execute("UPDATE sb_schema_versions SET version = 99 WHERE component = 'state'")
    assert_error_line(invoke("migrate", url, "--apply"), "newer than this storebridge")


@pytest.fixture
def pg_prefix(postgres_server: PostgresServer) -> Iterator[str]:  # noqa: F811
    prefix = unique_prefix("climg")
    yield prefix
    postgres_server.drop_prefix(prefix)


def test_postgres_conversation_schema(invoke: Invoke, postgres_server: PostgresServer,  # noqa: F811
                                      pg_prefix: str) -> None:
    latest = len(conversation_migrations(POSTGRES, pg_prefix))
    rows = json.loads(invoke("migrate", postgres_server.url, "--table-prefix", pg_prefix, "--json").stdout)
    assert [(r["backend"], r["current"], len(r["pending"])) for r in rows] == [("postgres", 0, latest)]
    applied = invoke("migrate", postgres_server.url, "--table-prefix", pg_prefix, "--apply", "-O", "min_size=0")
    assert applied.exit_code == 0, applied.output
    rows = json.loads(invoke("migrate", postgres_server.url, "--table-prefix", pg_prefix, "--json").stdout)
    assert rows[0]["current"] == latest and rows[0]["pending"] == []
