"""Schema migrations for SQL stores: a list of small numbered steps and a table recording which ran.

Each store declares its migrations for one *component* (e.g. ``"conversation"``). On connect,
:func:`migrate` opens a transaction, reads the component's version from ``<prefix>schema_versions``,
applies the newer steps in order and records the new version, so a database created by an older
storebridge upgrades in place with no data lost, and a failed step leaves nothing half-done.

Statements are ``str.format`` templates: ``{prefix}`` is replaced by the (validated) table prefix, and
literal braces are doubled (``DEFAULT '{{}}'`` creates ``DEFAULT '{}'``). A step may also be
a Python function for data transforms; it receives the DB-API cursor and the prefix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import SchemaVersionError
from .identifiers import validate_table_prefix


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...] = ()
    apply: Callable[[Any, str], None] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class SQLDialect:
    """What the migration runner needs to know about a DB-API driver."""

    name: str
    placeholder: str = "?"  # "?" (qmark) or "%s" (format)
    begin: str = "BEGIN"
    real_type: str = "REAL"
    text_key_type: str = "VARCHAR(64)"


SQLITE = SQLDialect("sqlite", "?", "BEGIN IMMEDIATE")


def latest_version(migrations: Sequence[Migration]) -> int:
    return max((m.version for m in migrations), default=0)


def check_migrations(migrations: Sequence[Migration]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations must be numbered 1..n in order, got {versions}")


def schema_version(cursor: Any, component: str, *, prefix: str = "", dialect: SQLDialect = SQLITE) -> int:
    """The recorded version of ``component`` (0 when it was never migrated)."""
    p = dialect.placeholder
    cursor.execute(f"SELECT version FROM {prefix}schema_versions WHERE component = {p}", (component,))
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def migrate(connection: Any, component: str, migrations: Sequence[Migration], *, prefix: str = "",
            dialect: SQLDialect = SQLITE) -> int:
    """Bring ``component`` up to the newest migration inside one transaction; returns the version.

    ``connection`` is a DB-API connection in autocommit mode (the runner issues BEGIN/COMMIT itself).
    """
    validate_table_prefix(prefix)
    check_migrations(migrations)
    target = latest_version(migrations)
    p = dialect.placeholder
    cursor = connection.cursor()
    try:
        cursor.execute(dialect.begin)
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {prefix}schema_versions ("
            f"component {dialect.text_key_type} PRIMARY KEY, version INTEGER NOT NULL, "
            f"updated_at {dialect.real_type} NOT NULL)"
        )
        current = schema_version(cursor, component, prefix=prefix, dialect=dialect)
        if current > target:
            raise SchemaVersionError(
                f"the database's {component!r} schema is version {current}, newer than this storebridge "
                f"knows ({target}); upgrade storebridge"
            )
        for step in migrations:
            if step.version <= current:
                continue
            for statement in step.statements:
                cursor.execute(statement.format(prefix=prefix))
            if step.apply is not None:
                step.apply(cursor, prefix)
        if target != current:
            if current == 0:
                cursor.execute(
                    f"INSERT INTO {prefix}schema_versions (component, version, updated_at) VALUES ({p}, {p}, {p})",
                    (component, target, time.time()),
                )
            else:
                cursor.execute(
                    f"UPDATE {prefix}schema_versions SET version = {p}, updated_at = {p} WHERE component = {p}",
                    (target, time.time(), component),
                )
        cursor.execute("COMMIT")
    except BaseException as exc:
        try:
            cursor.execute("ROLLBACK")
        except Exception:  # noqa: BLE001 - the original error is what matters; it is re-raised below
            pass
        if isinstance(exc, SchemaVersionError) or not isinstance(exc, Exception):
            raise
        raise SchemaVersionError(f"migrating the {component!r} schema failed and was rolled back: {exc}") from exc
    finally:
        cursor.close()
    return target


__all__ = ["SQLITE", "Migration", "SQLDialect", "latest_version", "migrate", "schema_version"]
