"""``storebridge migrate [URL] [--apply]``: the schema version of each SQL component and its pending steps.

Stores run their migrations themselves when they open; this command shows where a database stands
*without* opening a store (it reads ``<prefix>schema_versions`` read-only), and ``--apply`` opens each
store that has pending steps, which applies them in the store's own way (one transaction on SQLite and
PostgreSQL; idempotent steps under a named lock on MySQL), then reads the versions again.

Schemas it knows: the SQLite file (conversation, knowledge, state; the default with no URL), PostgreSQL
conversations (``postgresql://``), pgvector knowledge (``pgvector://``) and MySQL/MariaDB conversations
(``mysql://``). Other backends keep no versioned SQL schema that can be read from outside; they are
listed as such.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._output import (
    close_quietly,
    console,
    echo_json,
    embedded_path,
    fail,
    kinds_for_url,
    mask,
    open_store,
    parse_options,
    remember_url,
    show_url,
    store_options_option,
)

if TYPE_CHECKING:
    from storebridge.registry import Kind

Reader = Callable[[str], int]  # component -> recorded version (0: never migrated)


@dataclass
class Component:
    kind: Kind
    backend: str
    component: str
    steps: list[tuple[int, str]]  # (version, description) of every migration the code has
    current: int | None = None  # None: this backend has no schema the CLI can read
    note: str = ""

    @property
    def latest(self) -> int:
        return max((v for v, _ in self.steps), default=0)

    @property
    def pending(self) -> list[tuple[int, str]]:
        if self.current is None:
            return []
        return [(v, d) for v, d in self.steps if v > self.current]


# -- reading versions without opening a store --------------------------------------------------------------

def _sqlite_reader(path: str, prefix: str) -> Reader:
    def read(component: str) -> int:
        if path == ":memory:" or not os.path.exists(path):
            return 0
        conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        try:
            table = f"{prefix}schema_versions"
            if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is None:
                return 0
            row = conn.execute(f'SELECT version FROM "{table}" WHERE component = ?', (component,)).fetchone()
            return int(row[0]) if row else 0
        finally:
            conn.close()

    return read


def _postgres_reader(conninfo: str, prefix: str) -> Reader:
    def read(component: str) -> int:
        import psycopg

        from storebridge.errors import ConnectionFailedError
        from storebridge.identifiers import quote_identifier

        table = quote_identifier(f"{prefix}schema_versions")
        try:
            conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise ConnectionFailedError(f"cannot connect to PostgreSQL: {mask(exc)}") from None
        try:
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:  # type: ignore[index]
                return 0
            row = conn.execute(f"SELECT version FROM {table} WHERE component = %s", (component,)).fetchone()
            return int(row[0]) if row else 0
        finally:
            conn.close()

    return read


def _mysql_reader(kwargs: dict[str, Any], prefix: str) -> Reader:
    def read(component: str) -> int:
        import pymysql

        from storebridge.errors import ConnectionFailedError
        from storebridge.identifiers import quote_identifier

        table = f"{prefix}schema_versions"
        try:
            conn = pymysql.connect(**kwargs)
        except pymysql.MySQLError as exc:
            raise ConnectionFailedError(f"cannot connect to MySQL: {mask(exc)}") from None
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() "
                               "AND table_name = %s", (table,))
                if cursor.fetchone() is None:
                    return 0
                cursor.execute(f"SELECT version FROM {quote_identifier(table, '`')} WHERE component = %s",
                               (component,))
                row = cursor.fetchone()
                return int(row[0]) if row else 0
        finally:
            conn.close()

    return read


def _steps(migrations: Sequence[Any]) -> list[tuple[int, str]]:
    return [(m.version, m.description) for m in migrations]


def inspect_url(url: str | None, prefix: str) -> list[Component]:
    """Every component the URL's database holds (or would hold), with its recorded version."""
    import storebridge
    from storebridge.identifiers import validate_table_prefix

    validate_table_prefix(prefix)
    found: list[Component] = []
    if url is None:
        pairs: list[tuple[Kind, str]] = [("conversation", "sqlite"), ("knowledge", "sqlite"), ("state", "sqlite")]
    else:
        kinds = kinds_for_url(url)
        if not kinds:
            fail(f"no backend of any kind handles {mask(url)}; `storebridge backends` lists the URL schemes")
        pairs = [(k, storebridge.registries()[k].backend_for_url(url)) for k in kinds]
    for kind, backend in pairs:
        component, steps, reader = _schema(kind, backend, url, prefix)
        item = Component(kind, backend, component, steps)
        if reader is None:
            item.note = "no versioned SQL schema to read; the store sets itself up when it opens"
        else:
            item.current = reader(component)
            if item.current > item.latest:
                item.note = f"the database is newer ({item.current}) than this storebridge ({item.latest}): upgrade"
        found.append(item)
    return found


def _schema(kind: Kind, backend: str, url: str | None, prefix: str) -> tuple[str, list[tuple[int, str]], Reader | None]:
    if backend in ("sqlite", "async_sqlite"):
        from storebridge.adapters.sqlite import conversation, knowledge, state
        from storebridge.adapters.sqlite._connection import resolve_path

        module = {"conversation": conversation, "knowledge": knowledge, "state": state}[kind]
        path = resolve_path(url, None)
        return kind, _steps(module.MIGRATIONS), _sqlite_reader(path, prefix)
    if kind == "conversation" and backend in ("postgres", "async_postgres"):
        from storebridge.adapters.postgres.conversation import driver_dsn, parse_postgres_url
        from storebridge.adapters.sql.dialects import POSTGRES
        from storebridge.adapters.sql.schema import COMPONENT, conversation_migrations

        assert url is not None
        return COMPONENT, _steps(conversation_migrations(POSTGRES, prefix)), \
            _postgres_reader(driver_dsn(parse_postgres_url(url)), prefix)
    if kind == "conversation" and backend in ("mysql", "async_mysql"):
        from storebridge.adapters.mysql.conversation import connect_kwargs, parse_mysql_url
        from storebridge.adapters.sql.dialects import MYSQL
        from storebridge.adapters.sql.schema import COMPONENT, conversation_migrations

        assert url is not None
        return COMPONENT, _steps(conversation_migrations(MYSQL, prefix)), \
            _mysql_reader(connect_kwargs(parse_mysql_url(url), 10.0), prefix)
    if kind == "knowledge" and backend == "pgvector":
        from storebridge.adapters.pgvector.knowledge import COMPONENT, MIGRATIONS, parse_pgvector_url

        assert url is not None
        conninfo = parse_pgvector_url(url).render(reveal=True, scheme="postgresql")
        return COMPONENT, _steps(MIGRATIONS), _postgres_reader(conninfo, prefix)
    return kind, [], None


# -- the command ---------------------------------------------------------------------------------------------

def _print(components: Sequence[Component], url: str | None) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"schema of {show_url(url)}")
    for column in ("kind", "backend", "component", "current", "latest", "pending"):
        table.add_column(column, overflow="fold")
    for c in components:
        if c.current is None:
            pending = Text(c.note, style="dim")
        elif c.note:
            pending = Text(c.note, style="red")
        elif c.pending:
            pending = Text("; ".join(f"{v}: {d}" for v, d in c.pending), style="yellow")
        else:
            pending = Text("up to date", style="green")
        table.add_row(Text(c.kind), Text(c.backend), Text(c.component),
                      "-" if c.current is None else str(c.current), str(c.latest) if c.steps else "-", pending)
    console().print(table)


def _as_json(components: Sequence[Component]) -> list[dict[str, Any]]:
    return [{"kind": c.kind, "backend": c.backend, "component": c.component, "current": c.current,
             "latest": c.latest if c.steps else None,
             "pending": [{"version": v, "description": d} for v, d in c.pending], "note": c.note}
            for c in components]


@click.command()
@click.argument("url", required=False)
@click.option("--apply", "apply_", is_flag=True, help="Apply the pending migrations.")
@click.option("--table-prefix", default="sb_", show_default=True, help="The stores' table prefix.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@store_options_option()
def migrate(url: str | None, apply_: bool, table_prefix: str, as_json: bool, options: tuple[str, ...]) -> None:
    """Show the schema version and pending migrations of URL's database (default: the embedded SQLite
    file), and apply them with --apply."""
    remember_url(url)
    extra = parse_options(options)
    components = inspect_url(url, table_prefix)
    newer = [c for c in components if c.current is not None and c.current > c.latest]
    if newer:
        if as_json:
            echo_json(_as_json(components))
        else:
            _print(components, url)
        fail(f"the {newer[0].component} schema is newer than this storebridge knows; upgrade storebridge")
    pending = [c for c in components if c.pending]
    if apply_ and pending:
        for c in pending:
            store = open_store(c.kind, url, {"table_prefix": table_prefix, **extra})
            problem = close_quietly(store)
            if problem is not None:
                raise problem
        before = {(c.kind, c.component): c.current for c in components}
        components = inspect_url(url, table_prefix)
        if not as_json:
            for c in components:
                if before.get((c.kind, c.component)) != c.current:
                    click.echo(f"applied: {c.kind} {c.component} schema {before[(c.kind, c.component)]} -> {c.current}")
    if as_json:
        echo_json(_as_json(components))
        return
    _print(components, url)
    remaining = sum(len(c.pending) for c in components)
    if remaining and not apply_:
        click.echo(f"{remaining} migration(s) pending: run `storebridge migrate{' ' + mask(url) if url else ''} "
                   "--apply` to apply them")
    elif not remaining:
        click.echo("nothing to migrate" + ("" if url else f" in {embedded_path()}"))


__all__ = ["Component", "inspect_url", "migrate"]
