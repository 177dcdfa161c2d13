"""Conversation stores on PostgreSQL: ``postgres`` (psycopg 3 + ``psycopg_pool``, sync) and
``async_postgres`` (asyncpg, async). Also the base of ``supabase``. The SQL, schema, migrations, retries
and row conversion are the shared layer's (:mod:`storebridge.adapters.sql`); this module only opens
connections.

Session ids are any string (TEXT, not UUID). JSON columns are JSONB; floats the caller wrote with an
exponent are stored positionally so they come back as floats (see
:func:`storebridge.adapters.sql.rows.dump_jsonb`). PostgreSQL cannot store NUL characters in text or
JSONB: such values raise ``ValidationError``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from storebridge.adapters.sql import (
    ASYNCPG,
    POSTGRES,
    AsyncSQLConversationStore,
    ConversationSQL,
    SQLConversationStore,
)
from storebridge.adapters.sql.dbapi import DBAPIDriver
from storebridge.adapters.sql.dialects import Failure
from storebridge.adapters.sql.plan import EXECUTE, MANY, ROW, ROWS, Op
from storebridge.adapters.sql.runner import RetryPolicy, Target
from storebridge.adapters.sql.store import check_sizes
from storebridge.errors import ConfigurationError, ConnectionFailedError
from storebridge.urls import StoreURL, parse_url

#: URL schemes (before any ``+driver``) that name PostgreSQL or a service speaking its protocol.
SCHEMES = frozenset({"postgresql", "postgres", "cockroachdb", "neon"})
DRIVERS = frozenset({None, "psycopg", "psycopg3", "asyncpg"})


def parse_postgres_url(url: str | StoreURL, *, schemes: frozenset[str] = SCHEMES) -> StoreURL:
    """Parse a PostgreSQL URL; ``postgresql+asyncpg://`` and friends are accepted, the ``+driver`` is
    dropped before the URL reaches a driver (:func:`driver_dsn`)."""
    parsed = parse_url(url)
    if parsed.scheme not in schemes or parsed.driver not in DRIVERS:
        raise ConfigurationError(
            f"not a PostgreSQL URL: {parsed}; use postgresql://user:password@host:5432/database "
            "(postgres://, postgresql+psycopg:// and postgresql+asyncpg:// work too)")
    return parsed


def driver_dsn(parsed: StoreURL) -> str:
    """The URL a driver gets: plain ``postgresql://``, the real password, query parameters kept."""
    return parsed.render(reveal=True, scheme="postgresql")


def describe(parsed: StoreURL) -> str:
    """``host:port/database`` for messages: never the password."""
    host = parsed.host or parsed.query.get("host") or "localhost"
    return f"{host}:{parsed.port or 5432}/{parsed.database or parsed.username or ''}"


def _target(dialect: Any, parsed: StoreURL) -> Target:
    return Target(dialect, f"PostgreSQL at {describe(parsed)}", tuple(parsed.secrets()))


def _connect_failed(target: Target, exc: BaseException) -> ConnectionFailedError:
    return ConnectionFailedError(f"cannot connect to {target.where}: {target.mask(exc) or type(exc).__name__}")


# -- psycopg ----------------------------------------------------------------------------------------------


def _configure(conn: Any) -> None:
    """JSONB comes back as text, as from every other driver, for the shared row converters."""
    from psycopg.types.string import TextLoader

    conn.adapters.register_loader("jsonb", TextLoader)


class PsycopgDriver(DBAPIDriver):
    """psycopg 3 connections from a ``psycopg_pool.ConnectionPool`` (ours, or a caller's)."""

    def __init__(self, conninfo: str, target: Target, *, connect_kwargs: Mapping[str, Any],
                 pool: Any = None) -> None:
        self.conninfo, self.target, self.connect_kwargs = conninfo, target, dict(connect_kwargs)
        self.pool = pool
        self.own_pool = pool is None

    def open_pool(self, *, min_size: int, max_size: int, timeout: float) -> None:
        from psycopg_pool import ConnectionPool

        self.pool = ConnectionPool(self.conninfo, min_size=min_size, max_size=max_size, kwargs=self.connect_kwargs,
                                   configure=_configure, open=False, timeout=timeout,
                                   name=f"storebridge {self.target.where}")
        self.pool.open(wait=False)

    def connect(self) -> Any:
        import psycopg

        try:
            conn = psycopg.connect(self.conninfo, **self.connect_kwargs)
        except psycopg.Error as exc:
            raise _connect_failed(self.target, exc) from exc
        _configure(conn)
        return conn

    def dedicated(self) -> contextlib.AbstractContextManager[Any]:
        if not self.own_pool:
            return self.connection()
        return contextlib.closing(self.connect())

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        with self.pool.connection() as conn:
            if not self.own_pool:  # a caller's pool: the same settings as ours, per checkout
                if not conn.autocommit:
                    conn.autocommit = True
                _configure(conn)
            yield conn

    def classify(self, exc: BaseException) -> Failure | None:
        import psycopg
        from psycopg_pool import PoolClosed, PoolTimeout

        if isinstance(exc, PoolClosed):
            return Failure.OTHER
        if isinstance(exc, PoolTimeout):
            return Failure.DISCONNECTED
        if isinstance(exc, psycopg.Error):
            found = POSTGRES.classify_code(exc.sqlstate)
            if found is not None:
                return found
            if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)) and exc.sqlstate is None:
                return Failure.DISCONNECTED  # detected client side: the socket is gone
            if isinstance(exc, psycopg.DataError):
                return Failure.INVALID  # e.g. NUL characters, refused before they are sent
            return Failure.OTHER
        if isinstance(exc, UnicodeEncodeError):
            return Failure.INVALID
        return None

    def close(self) -> None:
        if self.own_pool and self.pool is not None:
            self.pool.close()


class PostgresConversationStore(SQLConversationStore):
    """Conversation store on PostgreSQL through psycopg 3, with a ``psycopg_pool.ConnectionPool``.

    ``url``: ``postgresql://user:password@host:5432/database?sslmode=require`` (``postgres://`` and
    ``postgresql+psycopg://`` too; libpq query parameters pass through). ``min_size``/``max_size``: the
    pool's bounds; ``pool_timeout``: how long a call waits for a free connection. ``pool=``: a caller's
    ``ConnectionPool`` instead of ours (its connections are switched to autocommit, since storebridge
    issues BEGIN/COMMIT itself; it is not closed by :meth:`close`). ``prepare_threshold``: psycopg's
    automatic server-side prepared statements (``None`` disables them, as pgbouncer in transaction
    mode requires). Opening the store connects once, runs the migrations, then opens the pool.
    """

    backend_name = "postgres"
    dialect = POSTGRES

    def __init__(self, url: str | None = None, *, min_size: int = 1, max_size: int = 10, table_prefix: str = "sb_",
                 connect_timeout: float = 10.0, pool: Any = None, pool_timeout: float = 30.0,
                 prepare_threshold: int | None = 5, retry: RetryPolicy | None = None) -> None:
        if url is None and pool is None:
            raise ConfigurationError(f"{type(self).__name__} needs a url (postgresql://...) or a pool")
        parsed = self._parse(url) if url is not None else None
        check_sizes(min_size, max_size)
        ops = ConversationSQL(self.dialect, table_prefix)
        if parsed is not None:
            target, conninfo = _target(POSTGRES, parsed), driver_dsn(parsed)
        else:
            target, conninfo = Target(POSTGRES, f"PostgreSQL pool {getattr(pool, 'name', '')!s}".strip()), ""
        kwargs = {"autocommit": True, "prepare_threshold": prepare_threshold,
                  "connect_timeout": max(1, round(connect_timeout))}
        driver = PsycopgDriver(conninfo, target, connect_kwargs=kwargs, pool=pool)
        self._start(ops, driver, target, retry)
        if driver.own_pool:
            try:
                driver.open_pool(min_size=min_size, max_size=max_size, timeout=pool_timeout)
            except BaseException:
                driver.close()
                raise

    def _parse(self, url: str) -> StoreURL:
        return parse_postgres_url(url)


# -- asyncpg ----------------------------------------------------------------------------------------------


async def _keep_session(conn: Any) -> None:
    """Pool ``reset``: nothing. asyncpg's default runs RESET ALL, UNLISTEN, advisory unlocks... on every
    release, a round trip per call; our calls leave no session state (an open transaction is rolled
    back by asyncpg before this is called)."""


class AsyncpgDriver:
    def __init__(self, dsn: str, target: Target, *, connect_kwargs: Mapping[str, Any], acquire_timeout: float) -> None:
        self.dsn, self.target, self.connect_kwargs = dsn, target, dict(connect_kwargs)
        self.acquire_timeout = acquire_timeout
        self.pool: Any = None

    async def connect(self) -> Any:
        import asyncpg

        try:
            return await asyncpg.connect(self.dsn, **self.connect_kwargs)
        except (asyncpg.PostgresError, OSError, asyncio.TimeoutError, asyncpg.InterfaceError) as exc:
            raise _connect_failed(self.target, exc) from exc

    async def open_pool(self, *, min_size: int, max_size: int) -> None:
        import asyncpg

        try:
            self.pool = await asyncpg.create_pool(self.dsn, min_size=min_size, max_size=max_size,
                                                  reset=_keep_session, **self.connect_kwargs)
        except (asyncpg.PostgresError, OSError, asyncio.TimeoutError, asyncpg.InterfaceError) as exc:
            raise _connect_failed(self.target, exc) from exc

    def connection(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self.pool.acquire(timeout=self.acquire_timeout)  # type: ignore[no-any-return]

    async def perform(self, conn: Any, op: Op) -> Any:
        kind = op.kind
        if kind is ROWS:
            return await conn.fetch(op.sql, *op.params)
        if kind is ROW:
            return await conn.fetchrow(op.sql, *op.params)
        if kind is MANY:
            await conn.executemany(op.sql, op.params)
            return None
        if kind is EXECUTE:
            status = await conn.execute(op.sql, *op.params)
            count = status.rpartition(" ")[2]  # "DELETE 3", "INSERT 0 1", "CREATE TABLE"
            return int(count) if count.isdigit() else 0
        raise TypeError(f"{kind} is not a PostgreSQL operation")

    async def begin(self, conn: Any) -> None:
        await conn.execute("BEGIN")

    async def commit(self, conn: Any) -> None:
        await conn.execute("COMMIT")

    async def rollback(self, conn: Any) -> None:
        await conn.execute("ROLLBACK")

    async def discard(self, conn: Any) -> None:
        conn.terminate()

    def classify(self, exc: BaseException) -> Failure | None:
        import asyncpg

        if isinstance(exc, asyncpg.PostgresError):
            return POSTGRES.classify_code(exc.sqlstate) or Failure.OTHER
        if isinstance(exc, (asyncpg.exceptions.ConnectionDoesNotExistError, ConnectionError, OSError,
                            asyncio.TimeoutError)):
            return Failure.DISCONNECTED
        if isinstance(exc, asyncpg.InterfaceError):
            return Failure.OTHER
        if isinstance(exc, UnicodeEncodeError):
            return Failure.INVALID
        return None

    async def close(self) -> None:
        pool, self.pool = self.pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), timeout=10)
        except asyncio.TimeoutError:  # a call still holds a connection: do not wait for it forever
            pool.terminate()


class AsyncPostgresConversationStore(AsyncSQLConversationStore):
    """Conversation store on PostgreSQL through asyncpg. The pool is created on first use, inside the
    running event loop (asyncpg pools belong to one loop); statements are prepared once per connection
    through asyncpg's statement cache (``statement_cache_size``; 0 for pgbouncer in transaction mode).

    ``url``: ``postgresql+asyncpg://user:password@host:5432/database`` (or plain ``postgresql://``).
    """

    backend_name = "async_postgres"

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10, table_prefix: str = "sb_",
                 connect_timeout: float = 10.0, pool_timeout: float = 30.0, statement_cache_size: int = 100,
                 retry: RetryPolicy | None = None) -> None:
        parsed = parse_postgres_url(url)
        check_sizes(min_size, max_size)
        self._sizes = (min_size, max_size)
        target = _target(ASYNCPG, parsed)
        self._driver = AsyncpgDriver(driver_dsn(parsed), target, acquire_timeout=pool_timeout, connect_kwargs={
            "timeout": connect_timeout, "statement_cache_size": statement_cache_size})
        self._prepare(ConversationSQL(ASYNCPG, table_prefix), target, retry)

    async def _open_driver(self) -> AsyncpgDriver:
        driver = self._driver
        conn = await driver.connect()
        try:
            await self._migrate(driver, conn)
        finally:
            await conn.close()
        await driver.open_pool(min_size=self._sizes[0], max_size=self._sizes[1])
        return driver


__all__ = [
    "AsyncPostgresConversationStore",
    "PostgresConversationStore",
    "describe",
    "driver_dsn",
    "parse_postgres_url",
]
