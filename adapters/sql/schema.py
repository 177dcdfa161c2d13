"""The conversation schema for every SQL dialect, its migrations, and the migration runner as a plan.

Tables (the SQLite store's columns; see :mod:`.dialects` for the session key of the MySQL family):

* ``{prefix}sessions``: one row per session; ``last_sequence`` hands out message sequences.
* ``{prefix}messages``: ``PRIMARY KEY (session, id)`` (ids are unique per session), ``UNIQUE (session,
  sequence)`` (serves "the conversation in order" and "the newest n"), ``(session, created_at)`` for the
  ``before``/``after`` windows, and a cascade from the session where the engine has foreign keys.
* ``{prefix}schema_versions``: the version of each component, as :mod:`storebridge.migrations` records it.

History: version 1 created the tables without ``tool_call_id``; version 2 adds it. That is the upgrade
users of the format we import from went through (tool calls came later there too), and it keeps a real
``ALTER TABLE`` step on every engine, exercised by the upgrade test.

:func:`migrate_plan` is the runner. It is a plan (see :mod:`.plan`), so the same code migrates through
psycopg, asyncpg, PyMySQL, aiomysql and singlestoredb:

* Postgres: everything in one transaction (DDL is transactional there), after
  ``pg_advisory_xact_lock``, so concurrent starts queue and a failed step leaves nothing behind.
* MySQL family: DDL commits implicitly, so there is no such transaction. Migrations take the named lock
  ``GET_LOCK`` (SingleStore: none), every step is idempotent (``CREATE TABLE IF NOT EXISTS`` with its
  indexes inline, ``ALTER`` guarded by an ``information_schema`` check) and the version is recorded
  after each migration: a run interrupted half-way is completed by the next start.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from storebridge.errors import SchemaVersionError
from storebridge.identifiers import validate_table_prefix
from storebridge.migrations import check_migrations, latest_version

from .dialects import Dialect
from .plan import EXECUTE, ROW, Op, Plan

COMPONENT = "conversation"
#: Seconds a start waits for another process's migration (MySQL family).
LOCK_TIMEOUT = 60


@dataclass(frozen=True)
class Step:
    """One DDL statement; skipped when ``unless`` (a query and its parameters) returns a row."""

    sql: str
    unless: tuple[str, tuple[Any, ...]] | None = None


@dataclass(frozen=True)
class SQLMigration:
    version: int
    description: str
    steps: tuple[Step, ...]


def _column_exists(d: Dialect, table: str, column: str) -> tuple[str, tuple[Any, ...]]:
    return (d.sql(f"SELECT 1 FROM information_schema.columns WHERE table_schema = {d.current_schema} "
                  f"AND table_name = ? AND column_name = ?"), (table, column))


def _table_exists(d: Dialect, table: str) -> tuple[str, tuple[Any, ...]]:
    """Guard of CREATE TABLE IF NOT EXISTS: skipping the statement also spares the engine's "already
    exists" warning, which some drivers (aiomysql) turn into Python warnings."""
    return d.sql(d.table_exists_sql), (table,)


def conversation_migrations(d: Dialect, prefix: str) -> tuple[SQLMigration, ...]:
    """The migrations of the conversation tables, rendered for one dialect and table prefix."""
    p = validate_table_prefix(prefix)
    sessions, messages = d.table(p, "sessions"), d.table(p, "messages")
    k = d.key_column
    create = "CREATE ROWSTORE TABLE IF NOT EXISTS" if d.sharded else "CREATE TABLE IF NOT EXISTS"
    shard = f", SHARD KEY ({k})" if d.sharded else ""
    key_column = "session_key BINARY(32) NOT NULL, session_id VARCHAR(512) NOT NULL" if d.hashed_keys \
        else "session_id TEXT NOT NULL"

    def index(name: str, table: str, columns: str, *, unique: bool = False, where: str = "") -> str:
        """An index: inline in CREATE TABLE, or its own idempotent statement."""
        if d.inline_indexes:
            return f", {'UNIQUE ' if unique else ''}KEY {d.q(p + name)} ({columns})"
        partial = f" WHERE {where}" if where and d.partial_indexes else ""
        return (f"CREATE {'UNIQUE ' if unique else ''}INDEX IF NOT EXISTS {d.q(p + name)} ON {table} "
                f"({columns}){partial}")

    session_indexes = [
        index("sessions_user_updated", sessions, "user_id, updated_at", where="user_id IS NOT NULL"),
        index("sessions_agent_updated", sessions, "agent_id, updated_at", where="agent_id IS NOT NULL"),
        index("sessions_updated", sessions, "updated_at"),
    ]
    message_indexes = [
        index("messages_session_sequence", messages, f"{k}, sequence", unique=True),
        index("messages_session_created", messages, f"{k}, created_at"),
    ]
    cascade = (f", FOREIGN KEY ({k}) REFERENCES {sessions} ({k}) ON DELETE CASCADE" if d.foreign_keys else "")
    sessions_table = (
        f"{create} {sessions} ({key_column}, user_id {d.owner_type} NULL, agent_id {d.owner_type} NULL, "
        f"name {d.text_type} NULL, state {d.json_type} NOT NULL, metadata {d.json_type} NOT NULL, "
        f"created_at {d.float_type} NOT NULL, updated_at {d.float_type} NOT NULL, "
        f"last_sequence BIGINT NOT NULL DEFAULT 0, PRIMARY KEY ({k})"
        + ("".join(session_indexes) if d.inline_indexes else "") + f"{shard}){d.table_options}"
    )
    messages_table = (
        f"{create} {messages} ({key_column}, id {d.message_id_type} NOT NULL, sequence BIGINT NOT NULL, "
        f"role VARCHAR(16) NOT NULL, content {d.text_type} NOT NULL, tool_calls {d.json_type} NULL, "
        f"metadata {d.json_type} NOT NULL, created_at {d.float_type} NOT NULL, PRIMARY KEY ({k}, id)"
        + ("".join(message_indexes) if d.inline_indexes else "") + f"{cascade}{shard}){d.table_options}"
    )
    v1 = [Step(sessions_table, unless=_table_exists(d, p + "sessions")),
          Step(messages_table, unless=_table_exists(d, p + "messages"))]
    if not d.inline_indexes:
        v1 += [Step(sql) for sql in (*session_indexes, *message_indexes)]
    return (
        SQLMigration(1, "sessions and messages tables", tuple(v1)),
        SQLMigration(2, "messages.tool_call_id", (
            Step(f"ALTER TABLE {messages} ADD COLUMN tool_call_id {d.text_type} NULL",
                 unless=_column_exists(d, p + "messages", "tool_call_id")),
        )),
    )


def _lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key for a name (Postgres advisory locks take a bigint)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big", signed=True)


def migrate_plan(d: Dialect, prefix: str, migrations: Sequence[SQLMigration],
                 component: str = COMPONENT) -> Plan[int]:
    """Bring ``component`` to the newest of ``migrations``; returns the version. Run it in one
    transaction where DDL is transactional (``Call(write=d.transactional_ddl)``), on a connection that
    is closed afterwards (a MySQL named lock dies with its connection if a step fails)."""
    check_migrations(migrations)  # type: ignore[arg-type]  # needs only .version
    target = latest_version(migrations)  # type: ignore[arg-type]
    versions = d.table(prefix, "schema_versions")
    lock_name = f"storebridge:{prefix}{component}"
    read_version = d.sql(f"SELECT version FROM {versions} WHERE component = ?")
    # Fast path, the common case of every start: already at the target version, no lock taken.
    exists = yield Op(ROW, *_table_exists(d, prefix + "schema_versions"))
    if exists is not None:
        row = yield Op(ROW, read_version, (component,))
        if row is not None and int(row[0]) == target:
            return target
    if d.migration_lock == "advisory_xact":
        yield Op(ROW, d.sql("SELECT pg_advisory_xact_lock(?)"), (_lock_key(lock_name),))
    elif d.migration_lock == "get_lock":  # server-wide names: qualify with the database, hash to <= 64 chars
        row = yield Op(ROW, d.sql("SELECT GET_LOCK(SHA1(CONCAT(DATABASE(), ?)), ?)"), (lock_name, LOCK_TIMEOUT))
        if not row or row[0] != 1:
            raise SchemaVersionError(f"another process held the migration lock of {prefix}{component} for "
                                     f"{LOCK_TIMEOUT}s; try again when its migration has finished")
    if exists is None:
        yield Op(EXECUTE, f"CREATE TABLE IF NOT EXISTS {versions} (component VARCHAR(64) NOT NULL PRIMARY KEY, "
                          f"version INTEGER NOT NULL, updated_at {d.float_type} NOT NULL){d.table_options}",
                 tolerate_exists=not d.transactional_ddl)
    row = yield Op(ROW, read_version, (component,))  # again, under the lock: another process may have migrated
    current = int(row[0]) if row else 0
    if current > target:
        raise SchemaVersionError(
            f"the database's {component!r} schema ({prefix}*) is version {current}, newer than this "
            f"storebridge knows ({target}); upgrade storebridge"
        )
    record = d.sql(f"INSERT INTO {versions} (component, version, updated_at) VALUES (?, ?, ?) "
                   f"{d.upsert_clause('component')} version = {d.excluded('version')}, "
                   f"updated_at = {d.excluded('updated_at')}")
    for migration in migrations:
        if migration.version <= current:
            continue
        for step in migration.steps:
            if step.unless is not None:
                found = yield Op(ROW, *step.unless)
                if found is not None:
                    continue
            # Where DDL is not transactional, a concurrent migrator may win the race between the guard and
            # the statement; its "already exists" means the step is done (the lock makes this moot elsewhere).
            yield Op(EXECUTE, step.sql, tolerate_exists=not d.transactional_ddl)
        yield Op(EXECUTE, record, (component, migration.version, time.time()))
    if d.migration_lock == "get_lock":
        yield Op(ROW, d.sql("SELECT RELEASE_LOCK(SHA1(CONCAT(DATABASE(), ?)))"), (lock_name,))
    return target


__all__ = ["COMPONENT", "SQLMigration", "Step", "conversation_migrations", "migrate_plan"]
