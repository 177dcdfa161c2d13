"""The migration runner, on stdlib sqlite3 (autocommit connections; the runner issues BEGIN/COMMIT)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from storebridge.errors import InvalidIdentifierError, SchemaVersionError
from storebridge.migrations import Migration, latest_version, migrate, schema_version

V1 = Migration(1, "create items", ("CREATE TABLE {prefix}items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",))
V2 = Migration(2, "add a tag column", ("ALTER TABLE {prefix}items ADD COLUMN tag TEXT NOT NULL DEFAULT 'none'",))


def _upper_tags(cursor, prefix):
    cursor.execute(f"UPDATE {prefix}items SET tag = upper(name)")


V3 = Migration(3, "tags from names (a data transform)", apply=_upper_tags)


def connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None, timeout=10)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "app.db"


@pytest.fixture
def conn(db_path: Path):
    connection = connect(db_path)
    yield connection
    connection.close()


def tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def version(conn: sqlite3.Connection, component: str = "things", prefix: str = "") -> int:
    cursor = conn.cursor()
    try:
        return schema_version(cursor, component, prefix=prefix)
    finally:
        cursor.close()


# ---------------------------------------------------------------------------------------------------------


def test_applies_steps_in_order_and_records_the_version(conn):
    order: list[int] = []

    def step(n):
        return lambda cursor, prefix: order.append(n)

    migrations = [
        Migration(1, "one", V1.statements, apply=step(1)),
        Migration(2, "two", V2.statements, apply=step(2)),
        Migration(3, "three", apply=step(3)),
    ]
    assert migrate(conn, "things", migrations) == 3
    assert order == [1, 2, 3]
    assert version(conn) == 3
    assert columns(conn, "items") == ["id", "name", "tag"]
    row = conn.execute("SELECT component, version, updated_at FROM schema_versions").fetchone()
    assert row[0] == "things" and row[1] == 3 and row[2] > 0
    assert not conn.in_transaction


def test_statements_run_in_the_order_given(conn):
    # V2 alters the table V1 creates: reversing the statements inside one step would fail
    step = Migration(1, "both", V1.statements + V2.statements)
    assert migrate(conn, "things", [step]) == 1
    assert columns(conn, "items") == ["id", "name", "tag"]


def test_rerunning_applies_nothing(conn):
    calls: list[int] = []
    migrations = [V1, Migration(2, "count", V2.statements, apply=lambda c, p: calls.append(2))]
    migrate(conn, "things", migrations)
    stamp = conn.execute("SELECT updated_at FROM schema_versions").fetchone()[0]
    conn.execute("INSERT INTO items (name) VALUES ('a')")
    # V1 is a plain CREATE TABLE and V2 an ALTER: running either again would raise
    assert migrate(conn, "things", migrations) == 2
    assert migrate(conn, "things", migrations) == 2
    assert calls == [2]
    assert conn.execute("SELECT updated_at FROM schema_versions").fetchone()[0] == stamp
    assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 1
    assert not conn.in_transaction


def test_adding_a_step_later_upgrades_and_keeps_data(db_path):
    old = connect(db_path)
    assert migrate(old, "things", [V1]) == 1
    old.executemany("INSERT INTO items (name) VALUES (?)", [("alpha",), ("beta",)])
    old.close()

    new = connect(db_path)
    assert version(new) == 1
    assert migrate(new, "things", [V1, V2]) == 2
    assert version(new) == 2
    assert new.execute("SELECT id, name, tag FROM items ORDER BY id").fetchall() == [
        (1, "alpha", "none"),
        (2, "beta", "none"),
    ]
    # and one more release later, with a Python data transform
    assert migrate(new, "things", [V1, V2, V3]) == 3
    assert new.execute("SELECT name, tag FROM items ORDER BY id").fetchall() == [("alpha", "ALPHA"), ("beta", "BETA")]
    assert version(new) == 3
    new.close()


def test_only_the_new_steps_run_on_upgrade(conn):
    seen: list[int] = []
    migrate(conn, "things", [Migration(1, "one", V1.statements, apply=lambda c, p: seen.append(1))])
    migrate(conn, "things", [
        Migration(1, "one", V1.statements, apply=lambda c, p: seen.append(1)),
        Migration(2, "two", V2.statements, apply=lambda c, p: seen.append(2)),
    ])
    assert seen == [1, 2]


# ---------------------------------------------------------------------------------------------------------
# Failures roll back everything of that run


BAD_SQL = Migration(3, "fails halfway", (
    "CREATE TABLE {prefix}partial (x INTEGER)",
    "INSERT INTO {prefix}items (name) VALUES ('ghost')",
    "INSERT INTO {prefix}no_such_table VALUES (1)",
))


def _bad_python(cursor, prefix):
    cursor.execute(f"CREATE TABLE {prefix}partial_py (x INTEGER)")
    raise RuntimeError("transform failed")


BAD_PY = Migration(3, "python step fails", apply=_bad_python)


@pytest.mark.parametrize("bad", [BAD_SQL, BAD_PY])
def test_failed_first_run_leaves_nothing(conn, bad):
    with pytest.raises(SchemaVersionError, match="rolled back"):
        migrate(conn, "things", [V1, V2, bad])
    assert tables(conn) == set()
    assert not conn.in_transaction


@pytest.mark.parametrize("bad", [BAD_SQL, BAD_PY])
def test_failed_upgrade_keeps_the_old_schema_and_data(conn, bad):
    migrate(conn, "things", [V1])
    conn.execute("INSERT INTO items (name) VALUES ('kept')")

    with pytest.raises(SchemaVersionError) as info:
        migrate(conn, "things", [V1, V2, bad])
    assert "'things'" in str(info.value)
    assert info.value.__cause__ is not None

    assert version(conn) == 1
    assert columns(conn, "items") == ["id", "name"]  # V2's column is gone too
    assert tables(conn) == {"items", "schema_versions"}
    assert conn.execute("SELECT name FROM items").fetchall() == [("kept",)]
    assert not conn.in_transaction

    # fixing the step lets the upgrade through
    assert migrate(conn, "things", [V1, V2]) == 2
    assert conn.execute("SELECT name, tag FROM items").fetchall() == [("kept", "none")]


def test_python_step_error_is_the_cause(conn):
    with pytest.raises(SchemaVersionError) as info:
        migrate(conn, "things", [V1, V2, BAD_PY])
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "transform failed" in str(info.value)


def test_base_exceptions_roll_back_and_pass_through(conn):
    def interrupted(cursor, prefix):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        migrate(conn, "things", [V1, Migration(2, "ctrl-c", apply=interrupted)])
    assert tables(conn) == set()
    assert not conn.in_transaction


# ---------------------------------------------------------------------------------------------------------
# Versions the runner does not know


def test_newer_database_raises(conn):
    migrate(conn, "things", [V1, V2, V3])
    with pytest.raises(SchemaVersionError) as info:
        migrate(conn, "things", [V1, V2])
    message = str(info.value)
    assert "3" in message and "2" in message and "upgrade" in message
    assert version(conn) == 3
    assert not conn.in_transaction
    assert columns(conn, "items") == ["id", "name", "tag"]


def test_newer_database_raises_even_with_no_migrations(conn):
    migrate(conn, "things", [V1])
    with pytest.raises(SchemaVersionError):
        migrate(conn, "things", [])


@pytest.mark.parametrize(
    "migrations",
    [
        [V2],
        [V1, V3],
        [V2, V1],
        [V1, V1],
        [Migration(0, "zero"), V1],
        [V1, V2, Migration(2, "dup")],
    ],
)
def test_migrations_not_numbered_1_to_n_are_refused(conn, migrations):
    with pytest.raises(ValueError, match="1..n"):
        migrate(conn, "things", migrations)
    assert tables(conn) == set()


@pytest.mark.parametrize("prefix", ["bad-prefix", "1abc", "a;drop table x", 'a"b', "a b", "x" * 40, None, "é"])
def test_invalid_prefix_is_refused(conn, prefix):
    with pytest.raises(InvalidIdentifierError):
        migrate(conn, "things", [V1], prefix=prefix)
    assert tables(conn) == set()


# ---------------------------------------------------------------------------------------------------------
# Prefixes and components


def test_prefix_names_every_table(conn):
    assert migrate(conn, "things", [V1, V2], prefix="app_") == 2
    assert tables(conn) == {"app_items", "app_schema_versions"}
    assert version(conn, prefix="app_") == 2


def test_two_prefixes_in_one_database_are_independent(conn):
    migrate(conn, "things", [V1], prefix="a_")
    migrate(conn, "things", [V1, V2], prefix="b_")
    assert version(conn, prefix="a_") == 1
    assert version(conn, prefix="b_") == 2
    assert columns(conn, "a_items") == ["id", "name"]


def test_components_have_their_own_versions(conn):
    other = [Migration(1, "other", ("CREATE TABLE {prefix}other (x)",))]
    migrate(conn, "things", [V1, V2])
    migrate(conn, "other", other)
    assert version(conn, "things") == 2
    assert version(conn, "other") == 1
    assert version(conn, "never") == 0
    # the other component being at 1 does not make "things" look newer, or vice versa
    assert migrate(conn, "other", other) == 1


def test_statements_are_format_templates_with_doubled_braces(conn):
    # adapters rely on this for JSON defaults: '{{}}' in a statement is '{}' in the database
    step = Migration(1, "json default", ("CREATE TABLE {prefix}docs (id INTEGER, meta TEXT NOT NULL DEFAULT '{{}}')",))
    migrate(conn, "docs", [step], prefix="p_")
    conn.execute("INSERT INTO p_docs (id) VALUES (1)")
    assert conn.execute("SELECT meta FROM p_docs").fetchone() == ("{}",)


def test_latest_version():
    assert latest_version([]) == 0
    assert latest_version([V1, V2, V3]) == 3


def test_concurrent_first_runs_apply_each_step_once(db_path):
    applied: list[int] = []
    lock = threading.Lock()

    def count(cursor, prefix):
        with lock:
            applied.append(1)

    migrations = [Migration(1, "create", V1.statements, apply=count), V2]
    barrier = threading.Barrier(4)
    results: list[object] = []

    def run() -> None:
        connection = connect(db_path)
        try:
            barrier.wait(timeout=5)
            results.append(migrate(connection, "things", migrations))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            results.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results == [2, 2, 2, 2]
    assert applied == [1]
