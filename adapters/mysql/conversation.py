"""Conversation stores on MySQL and MariaDB: ``mysql`` (PyMySQL, sync, with storebridge's thread-safe
pool) and ``async_mysql`` (aiomysql). Also the base of ``singlestore`` (same protocol, same SQL). The
SQL, schema, migrations, retries and row conversion are the shared layer's
(:mod:`storebridge.adapters.sql`); this module only opens connections.

On these engines (see :mod:`storebridge.adapters.sql.dialects`): tables are ``utf8mb4`` with the
binary collation (emoji; ids compared exactly, not case-insensitively); the session key is SHA-256 of
the session id (InnoDB's index keys stop at 3,072 bytes, a 512-character id can take 2,048), the id
itself is kept beside it; message ids and ``user_id``/``agent_id`` are ``VARCHAR(255)`` (longer values
raise ``ValidationError``); JSON is MariaDB's ``JSON`` (``LONGTEXT`` checked by ``JSON_VALID``), so the
caller's JSON text is kept byte for byte; message content is ``LONGTEXT``, bounded in practice by the
server's ``max_allowed_packet`` (16 MB by default on MariaDB). Migrations take ``GET_LOCK`` and every
step is idempotent, because MySQL DDL commits implicitly and cannot be rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from storebridge.adapters.sql import (
    MYSQL,
    AsyncSQLConversationStore,
    ConversationSQL,
    Dialect,
    SQLConversationStore,
)
from storebridge.adapters.sql.dbapi import DBAPIDriver
from storebridge.adapters.sql.dialects import Failure
from storebridge.adapters.sql.plan import EXECUTE, INSERT_ID, MANY, ROW, ROWS, Op
from storebridge.adapters.sql.pool import ConnectionPool
from storebridge.adapters.sql.runner import RetryPolicy, Target
from storebridge.adapters.sql.store import check_sizes
from storebridge.errors import ConfigurationError, ConnectionFailedError
from storebridge.urls import StoreURL, parse_url

SCHEMES = frozenset({"mysql", "mariadb"})
DRIVERS = frozenset({None, "pymysql", "aiomysql"})
#: Query parameters a MySQL URL may carry (TLS); anything else is refused, never ignored.
SSL_PARAMS = ("ssl_ca", "ssl_cert", "ssl_key", "ssl_disabled")
_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def parse_mysql_url(url: str | StoreURL, *, schemes: frozenset[str] = SCHEMES,
                    drivers: frozenset[str | None] = DRIVERS, what: str = "MySQL") -> StoreURL:
    parsed = parse_url(url)
    if parsed.scheme not in schemes or parsed.driver not in drivers:
        raise ConfigurationError(f"not a {what} URL: {parsed}; use mysql://user:password@host:3306/database "
                                 "(mariadb://, mysql+pymysql:// and mysql+aiomysql:// work too)")
    unknown = sorted(set(parsed.query) - set(SSL_PARAMS))
    if unknown:
        raise ConfigurationError(f"unsupported {what} URL parameters {unknown}; supported: {list(SSL_PARAMS)}")
    if "ssl_disabled" in parsed.query and parsed.query["ssl_disabled"].lower() not in _BOOLEANS:
        raise ConfigurationError(f"ssl_disabled must be true or false, got {parsed.query['ssl_disabled']!r}")
    if not parsed.database:
        raise ConfigurationError(f"the {what} URL {parsed} names no database: add /database_name")
    return parsed


def connect_kwargs(parsed: StoreURL, connect_timeout: float) -> dict[str, Any]:
    """Keyword arguments for PyMySQL / singlestoredb ``connect``: utf8mb4 (4-byte characters), autocommit
    (storebridge issues BEGIN/COMMIT itself), TLS files flat (``ssl_ca=``). Without any, PyMySQL 1.2 and
    singlestoredb try TLS ("preferred") and build a TLS context per connection, loading the system's CA
    bundle (about 90 ms here): ``?ssl_disabled=true`` skips that for a server without TLS."""
    kwargs: dict[str, Any] = {
        "host": parsed.host or "localhost", "port": parsed.port or 3306, "user": parsed.username or "root",
        "password": parsed.password or "", "database": parsed.database, "charset": "utf8mb4",
        "autocommit": True, "connect_timeout": max(1, round(connect_timeout)),
    }
    for key in SSL_PARAMS:
        if key in parsed.query:
            value = parsed.query[key]
            kwargs[key] = _BOOLEANS[value.lower()] if key == "ssl_disabled" else value
    return kwargs


def mysql_target(dialect: Dialect, parsed: StoreURL) -> Target:
    where = f"{parsed.host or 'localhost'}:{parsed.port or 3306}/{parsed.database}"
    return Target(dialect, f"{dialect.display} at {where}", tuple(parsed.secrets()))


def _connect_failed(target: Target, exc: BaseException) -> ConnectionFailedError:
    return ConnectionFailedError(f"cannot connect to {target.where}: {target.mask(exc) or type(exc).__name__}")


def classify_mysql(exc: BaseException, dialect: Dialect, errors: Any) -> Failure | None:
    """What a PyMySQL-style exception means (``errors``: ``pymysql.err`` or ``singlestoredb.exceptions``,
    which share the class names and put the MySQL error number first in ``args``)."""
    if isinstance(exc, errors.MySQLError):
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        found = dialect.classify_code(code)
        if found is not None:
            return found
        if isinstance(exc, errors.InterfaceError) or (isinstance(exc, errors.OperationalError) and not code):
            return Failure.DISCONNECTED  # e.g. InterfaceError(0, ''): the connection was already closed
        if isinstance(exc, errors.DataError):
            return Failure.INVALID
        return Failure.OTHER
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return Failure.DISCONNECTED
    if isinstance(exc, UnicodeEncodeError):
        return Failure.INVALID
    return None


class PyMySQLDriver(DBAPIDriver):
    """DB-API MySQL connections (PyMySQL, or singlestoredb's fork of it) in a :class:`ConnectionPool`."""

    def __init__(self, connect: Any, errors: Any, dialect: Dialect, target: Target, kwargs: Mapping[str, Any], *,
                 max_size: int, pool_timeout: float) -> None:
        self._connect_fn, self.errors, self.dialect, self.target = connect, errors, dialect, target
        self.kwargs = dict(kwargs)
        self.pool: ConnectionPool[Any] = ConnectionPool(
            self.connect, close=self.discard, usable=lambda conn: bool(conn.open), max_size=max_size,
            timeout=pool_timeout, name=f"the connection pool of {target.where}")

    def connect(self) -> Any:
        try:
            return self._connect_fn(**self.kwargs)
        except self.errors.MySQLError as exc:
            raise _connect_failed(self.target, exc) from exc

    def connection(self) -> contextlib.AbstractContextManager[Any]:
        return self.pool.connection()

    @contextlib.contextmanager
    def dedicated(self) -> Iterator[Any]:
        """The first connection: it runs the migrations and joins the pool, unless something failed (it may
        hold the migration's named lock then: closing it releases the lock)."""
        conn = self.pool.acquire()
        try:
            yield conn
        except BaseException:
            self.pool.release(conn, broken=True)
            raise
        self.pool.release(conn)

    def classify(self, exc: BaseException) -> Failure | None:
        return classify_mysql(exc, self.dialect, self.errors)

    def fill(self, min_size: int) -> None:
        """Open connections until the pool holds ``min_size`` (the migrations' connection counts)."""
        try:
            while self.pool.size < min_size:
                self.pool.add(self.connect())
        except BaseException:
            self.pool.close()
            raise

    def close(self) -> None:
        self.pool.close()


class MySQLConversationStore(SQLConversationStore):
    """Conversation store on MySQL 5.7+ / MariaDB 10.3+ through PyMySQL.

    ``url``: ``mysql://user:password@host:3306/database`` (``mariadb://``, ``mysql+pymysql://``; TLS files
    as ``?ssl_ca=...&ssl_cert=...&ssl_key=...``; ``?ssl_disabled=true`` for a server without TLS). The pool
    keeps ``min_size`` connections open from the start and opens more on demand up to ``max_size``;
    ``pool_timeout`` is how long a call waits for a free connection.
    """

    backend_name = "mysql"
    dialect = MYSQL

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10, table_prefix: str = "sb_",
                 connect_timeout: float = 10.0, pool_timeout: float = 30.0, retry: RetryPolicy | None = None) -> None:
        import pymysql

        parsed = parse_mysql_url(url)
        check_sizes(min_size, max_size)
        target = mysql_target(self.dialect, parsed)
        driver = PyMySQLDriver(pymysql.connect, pymysql.err, self.dialect, target,
                               connect_kwargs(parsed, connect_timeout), max_size=max_size, pool_timeout=pool_timeout)
        self._start(ConversationSQL(self.dialect, table_prefix), driver, target, retry)
        driver.fill(min_size)


# -- aiomysql ---------------------------------------------------------------------------------------------


def _patch_aiomysql_bytes() -> None:
    """aiomysql 0.3 escapes ``bytes`` with ``pymysql.converters.escape_bytes_prefixed``, which PyMySQL 1.2
    replaced by a placeholder string ("DO NOT IMPORT THIS!!!"), so any bytes parameter (our session keys)
    fails with "'str' object is not callable". Point aiomysql's reference at the equivalent
    ``escape_bytes`` (``_binary X'..'``), only while it is broken."""
    import aiomysql.connection
    from pymysql.converters import escape_bytes

    if not callable(getattr(aiomysql.connection, "escape_bytes_prefixed", None)):
        aiomysql.connection.escape_bytes_prefixed = escape_bytes


class AiomysqlDriver:
    def __init__(self, target: Target, kwargs: Mapping[str, Any]) -> None:
        _patch_aiomysql_bytes()
        self.target = target
        self.kwargs = dict(kwargs)
        self.kwargs["db"] = self.kwargs.pop("database")
        files = {key: self.kwargs.pop(key) for key in ("ssl_ca", "ssl_cert", "ssl_key") if key in self.kwargs}
        self.kwargs.pop("ssl_disabled", None)  # aiomysql uses TLS only when given a context
        if files:
            import ssl

            context = ssl.create_default_context(cafile=files.get("ssl_ca"))
            if "ssl_cert" in files:
                context.load_cert_chain(files["ssl_cert"], files.get("ssl_key"))
            self.kwargs["ssl"] = context
        self.pool: Any = None

    async def connect(self) -> Any:
        import aiomysql
        import pymysql

        try:
            return await aiomysql.connect(**self.kwargs)
        except (pymysql.MySQLError, OSError, asyncio.TimeoutError) as exc:
            raise _connect_failed(self.target, exc) from exc

    async def open_pool(self, *, min_size: int, max_size: int) -> None:
        import aiomysql
        import pymysql

        try:
            self.pool = await aiomysql.create_pool(minsize=min_size, maxsize=max_size, **self.kwargs)
        except (pymysql.MySQLError, OSError, asyncio.TimeoutError) as exc:
            raise _connect_failed(self.target, exc) from exc

    def connection(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self.pool.acquire()  # type: ignore[no-any-return]

    async def perform(self, conn: Any, op: Op) -> Any:
        async with conn.cursor() as cursor:
            kind = op.kind
            if kind is MANY:
                await cursor.executemany(op.sql, op.params)
                return None
            await cursor.execute(op.sql, op.params)
            if kind is ROWS:
                return await cursor.fetchall()
            if kind is ROW:
                return await cursor.fetchone()
            if kind is EXECUTE:
                return cursor.rowcount
            if kind is INSERT_ID:
                return cursor.rowcount, cursor.lastrowid
            raise TypeError(f"unknown operation {kind}")

    async def _command(self, conn: Any, sql: str) -> None:
        async with conn.cursor() as cursor:
            await cursor.execute(sql)

    async def begin(self, conn: Any) -> None:
        await self._command(conn, "BEGIN")

    async def commit(self, conn: Any) -> None:
        await self._command(conn, "COMMIT")

    async def rollback(self, conn: Any) -> None:
        await self._command(conn, "ROLLBACK")

    async def discard(self, conn: Any) -> None:
        conn.close()

    def classify(self, exc: BaseException) -> Failure | None:
        import pymysql

        if isinstance(exc, (OSError, asyncio.TimeoutError)) and not isinstance(exc, pymysql.MySQLError):
            return Failure.DISCONNECTED
        return classify_mysql(exc, MYSQL, pymysql.err)

    async def close(self) -> None:
        pool, self.pool = self.pool, None
        if pool is None:
            return
        pool.close()
        try:
            await asyncio.wait_for(pool.wait_closed(), timeout=10)
        except asyncio.TimeoutError:  # a call still holds a connection: do not wait for it forever
            pool.terminate()
            await pool.wait_closed()


class AsyncMySQLConversationStore(AsyncSQLConversationStore):
    """Conversation store on MySQL / MariaDB through aiomysql (``aiomysql.create_pool``), created on first
    use inside the running loop. ``url``: ``mysql+aiomysql://user:password@host:3306/database``."""

    backend_name = "async_mysql"

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10, table_prefix: str = "sb_",
                 connect_timeout: float = 10.0, retry: RetryPolicy | None = None) -> None:
        parsed = parse_mysql_url(url)
        check_sizes(min_size, max_size)
        self._sizes = (min_size, max_size)
        target = mysql_target(MYSQL, parsed)
        self._driver = AiomysqlDriver(target, connect_kwargs(parsed, connect_timeout))
        self._prepare(ConversationSQL(MYSQL, table_prefix), target, retry)

    async def _open_driver(self) -> AiomysqlDriver:
        driver = self._driver
        conn = await driver.connect()
        try:
            await self._migrate(driver, conn)
        finally:
            conn.close()
        await driver.open_pool(min_size=self._sizes[0], max_size=self._sizes[1])
        return driver


__all__ = [
    "AsyncMySQLConversationStore",
    "MySQLConversationStore",
    "PyMySQLDriver",
    "check_sizes",
    "classify_mysql",
    "connect_kwargs",
    "mysql_target",
    "parse_mysql_url",
]
