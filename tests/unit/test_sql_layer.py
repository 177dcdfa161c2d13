"""The shared SQL layer without an engine: dialect rendering, statements that never hold values, JSONB-safe
JSON, the migration plan, the runner's retry/verify/error decisions (against fake drivers), the
thread-safe pool, and URL handling of every SQL backend. The engines themselves are exercised in
tests/conformance/test_conversation_sql.py and tests/integration/test_sql_conversation_*.py."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest

from storebridge.adapters.sql import (
    ASYNCPG,
    MYSQL,
    POSTGRES,
    SINGLESTORE,
    SINGLESTORE_SHARDED,
    ConversationSQL,
)
from storebridge.adapters.sql.dialects import Failure
from storebridge.adapters.sql.plan import EXECUTE, ROW, ROWS, Call, Op, Plan
from storebridge.adapters.sql.pool import ConnectionPool
from storebridge.adapters.sql.rows import dump_jsonb
from storebridge.adapters.sql.runner import AsyncRunner, RetryPolicy, SyncRunner, Target, drive
from storebridge.adapters.sql.schema import conversation_migrations, migrate_plan
from storebridge.errors import (
    AlreadyExistsError,
    ConfigurationError,
    ConnectionFailedError,
    OperationFailedError,
    SchemaVersionError,
    SessionNotFoundError,
    StoreClosedError,
    ValidationError,
)
from storebridge.models import ConversationMessage
from storebridge.testing.data import HOSTILE_SESSION_IDS, ROUND_TRIP_METADATA

FAST = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)

# -- dialects and statements ------------------------------------------------------------------------------


def test_placeholders_rendered_per_driver() -> None:
    sql = "SELECT a FROM t WHERE b = ? AND c IN (?, ?)"
    assert POSTGRES.sql(sql) == "SELECT a FROM t WHERE b = %s AND c IN (%s, %s)"
    assert ASYNCPG.sql(sql) == "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)"
    assert MYSQL.sql(sql) == POSTGRES.sql(sql)


@pytest.mark.parametrize("dialect", [POSTGRES, ASYNCPG, MYSQL, SINGLESTORE], ids=lambda d: d.name + d.paramstyle)
def test_values_are_never_in_sql(dialect: Any) -> None:
    """Hostile session ids, message ids and contents reach the engine as parameters only."""
    ops = ConversationSQL(dialect, "p_")
    seen: list[Op] = []

    def fake(op: Op) -> Any:
        seen.append(op)
        if op.kind is ROWS:
            return [(7,)] if op.sql.startswith("WITH") else []  # the one-statement append returns sequences
        return {ROW: (7, 7), EXECUTE: 1}.get(op.kind, (1, 7))

    for sid in HOSTILE_SESSION_IDS:
        drive(ops.add_messages(sid, [ConversationMessage(id=f"'{sid}", role="user", content=sid)]).plan(), fake)
        drive(ops.get_messages(sid, limit=3, before=1.0).plan(), fake)
        drive(ops.delete_messages(sid, [sid, "x"]).plan(), fake)
    distinctive = [sid for sid in HOSTILE_SESSION_IDS if len(sid) > 3 and sid.upper() != sid]  # not ".", "CON"
    for op in seen:
        for sid in distinctive:
            assert sid not in op.sql and f"'{sid}" not in op.sql, op.sql
    assert all('"p_' in op.sql or "`p_" in op.sql for op in seen if "LAST_INSERT_ID()" not in op.sql[:30]), \
        "table names are quoted"


def test_mysql_keys_are_hashes() -> None:
    assert MYSQL.key("é" * 512) == MYSQL.key("é" * 512) and len(MYSQL.key("é" * 512)) == 32
    assert MYSQL.key("Abc") != MYSQL.key("abc")
    assert POSTGRES.key("Abc") == "Abc"


def test_schema_per_dialect() -> None:
    pg = " ".join(s.sql for m in conversation_migrations(POSTGRES, "p_") for s in m.steps)
    assert "JSONB" in pg and "ON DELETE CASCADE" in pg and "WHERE user_id IS NOT NULL" in pg
    my = " ".join(s.sql for m in conversation_migrations(MYSQL, "p_") for s in m.steps)
    assert "utf8mb4_bin" in my and "BINARY(32)" in my and "ON DELETE CASCADE" in my and "CREATE INDEX" not in my
    s2 = " ".join(s.sql for m in conversation_migrations(SINGLESTORE, "p_") for s in m.steps)
    assert "FOREIGN KEY" not in s2 and "SHARD KEY" not in s2
    sharded = " ".join(s.sql for m in conversation_migrations(SINGLESTORE_SHARDED, "p_") for s in m.steps)
    assert sharded.count("SHARD KEY (session_key)") == 2 and "ROWSTORE" in sharded
    assert [m.version for m in conversation_migrations(POSTGRES, "p_")] == [1, 2]


def test_explicit_cascade_where_no_foreign_keys() -> None:
    for dialect, statements in ((SINGLESTORE, 2), (MYSQL, 1), (POSTGRES, 1)):
        seen: list[Op] = []
        drive(ConversationSQL(dialect, "p_").delete_session("s").plan(), lambda op, seen=seen: seen.append(op) or 1)
        assert len(seen) == statements and "sessions" in seen[0].sql, dialect.name


def _drive_migration(dialect: Any, version: int | None, tables: bool) -> tuple[int, list[Op]]:
    seen: list[Op] = []

    def fake(op: Op) -> Any:
        seen.append(op)
        if "schema_versions" in op.sql and op.sql.startswith("SELECT version"):
            return None if version is None else (version,)
        if op.kind is ROW:
            return (1,) if tables or "LOCK" in op.sql else None
        return 0

    migrations = conversation_migrations(dialect, "p_")
    return drive(migrate_plan(dialect, "p_", migrations), fake), seen


def test_migration_fast_path_takes_no_lock() -> None:
    result, seen = _drive_migration(POSTGRES, 2, tables=True)
    assert result == 2 and len(seen) == 2 and not any("lock" in op.sql for op in seen)


def test_migration_runs_each_step_once_and_records_it() -> None:
    result, seen = _drive_migration(MYSQL, None, tables=False)
    sql = [op.sql for op in seen]
    assert result == 2 and "GET_LOCK" in sql[1] and "RELEASE_LOCK" in sql[-1]
    assert sum("INSERT INTO `p_schema_versions`" in s for s in sql) == 2, "recorded after each migration"
    assert all(op.tolerate_exists for op in seen if op.sql.startswith(("CREATE TABLE", "ALTER")))
    _, pg = _drive_migration(POSTGRES, None, tables=False)
    assert "pg_advisory_xact_lock" in pg[1].sql
    assert not any(op.tolerate_exists for op in pg), "Postgres DDL runs in one locked transaction"


def test_newer_schema_is_refused() -> None:
    with pytest.raises(SchemaVersionError, match="99"):
        _drive_migration(POSTGRES, 99, tables=True)


# -- JSON -------------------------------------------------------------------------------------------------


def test_jsonb_text_keeps_float_types() -> None:
    value = {"big": 1e20, "max": 1.7976931348623157e308, "tiny": 1e-300, "neg": -2.5e-7, "int": 10 ** 20,
             "text": "1e20 stays text", "list": [1.5e300, 1.0], "ok": 0.1}
    text = dump_jsonb(value, "metadata")
    assert "e+" not in text.replace("1e20 stays", "") and "e-" not in text
    back = json.loads(text)
    assert back == value and all(type(back[k]) is type(value[k]) for k in value)
    assert dump_jsonb({}, "m") == "{}"
    for payload in ROUND_TRIP_METADATA:
        assert json.loads(dump_jsonb(payload, "m")) == payload


def test_jsonb_refuses_nan() -> None:
    with pytest.raises(ValidationError):
        dump_jsonb({"x": float("nan")}, "metadata")


# -- the runner -------------------------------------------------------------------------------------------


class DriverError(Exception):
    def __init__(self, failure: Failure, text: str = "boom") -> None:
        super().__init__(text)
        self.failure = failure


class FakeDriver:
    """Runs ops from a script: each entry is a result, or an exception to raise. Records everything."""

    def __init__(self, script: list[Any], *, commit: list[Any] | None = None, connect: Exception | None = None) -> None:
        self.script, self.commits, self.connect_error = list(script), list(commit or []), connect
        self.log: list[str] = []

    @contextmanager
    def connection(self) -> Iterator[str]:
        if self.connect_error is not None:
            raise self.connect_error
        yield "conn"

    def _step(self, queue: list[Any]) -> Any:
        item = queue.pop(0) if queue else None
        if isinstance(item, BaseException):
            raise item
        return item

    def perform(self, conn: Any, op: Op) -> Any:
        self.log.append(op.sql)
        return self._step(self.script)

    def begin(self, conn: Any) -> None:
        self.log.append("BEGIN")

    def commit(self, conn: Any) -> None:
        self.log.append("COMMIT")
        self._step(self.commits)

    def rollback(self, conn: Any) -> None:
        self.log.append("ROLLBACK")

    def discard(self, conn: Any) -> None:
        self.log.append("DISCARD")

    def classify(self, exc: BaseException) -> Failure | None:
        return exc.failure if isinstance(exc, DriverError) else None

    def close(self) -> None:
        self.log.append("CLOSE")


class AsyncFakeDriver(FakeDriver):
    @asynccontextmanager  # type: ignore[arg-type]
    async def connection(self) -> Any:  # type: ignore[override]
        if self.connect_error is not None:
            raise self.connect_error
        yield "conn"

    async def perform(self, conn: Any, op: Op) -> Any:  # type: ignore[override]
        return FakeDriver.perform(self, conn, op)

    async def begin(self, conn: Any) -> None:  # type: ignore[override]
        FakeDriver.begin(self, conn)

    async def commit(self, conn: Any) -> None:  # type: ignore[override]
        FakeDriver.commit(self, conn)

    async def rollback(self, conn: Any) -> None:  # type: ignore[override]
        FakeDriver.rollback(self, conn)

    async def discard(self, conn: Any) -> None:  # type: ignore[override]
        FakeDriver.discard(self, conn)


def one(sql: str = "Q", kind: Any = ROW) -> Any:
    def plan() -> Plan[Any]:
        return (yield Op(kind, sql))
    return plan


def run(driver: FakeDriver, call: Call[Any], secret: str = "") -> Any:
    """Run ``call`` through the sync runner, or the async one for an AsyncFakeDriver."""
    target = Target(POSTGRES, "PostgreSQL at db:5432/x", (secret,) if secret else ())
    if isinstance(driver, AsyncFakeDriver):
        return asyncio.run(AsyncRunner(driver, target, FAST).run(call))  # type: ignore[arg-type]
    return SyncRunner(driver, target, FAST).run(call)


DRIVERS = [FakeDriver, AsyncFakeDriver]


@pytest.mark.parametrize("make", DRIVERS)
def test_reads_are_retried_after_lost_connections(make: type[FakeDriver]) -> None:
    driver = make([DriverError(Failure.DISCONNECTED), DriverError(Failure.TRANSIENT), ("ok",)])
    assert run(driver, Call("read", one())) == ("ok",)
    assert driver.log == ["Q", "Q", "Q"]


@pytest.mark.parametrize("make", DRIVERS)
def test_retries_are_bounded(make: type[FakeDriver]) -> None:
    driver = make([DriverError(Failure.DISCONNECTED)] * 5)
    with pytest.raises(ConnectionFailedError, match="3 times") as info:
        run(driver, Call("read", one()))
    assert isinstance(info.value.__cause__, DriverError) and driver.log == ["Q"] * 3
    driver = make([DriverError(Failure.TRANSIENT, "deadlock")] * 5)
    with pytest.raises(OperationFailedError, match="rolled back by the server 3 times"):
        run(driver, Call("read", one()))


@pytest.mark.parametrize("make", DRIVERS)
def test_write_rolled_back_before_commit_is_retried(make: type[FakeDriver]) -> None:
    driver = make([DriverError(Failure.DISCONNECTED), 1])
    assert run(driver, Call("write", one(kind=EXECUTE), write=True)) == 1
    assert driver.log == ["BEGIN", "Q", "ROLLBACK", "BEGIN", "Q", "COMMIT"]


@pytest.mark.parametrize("make", DRIVERS)
def test_connection_lost_during_commit_is_not_retried(make: type[FakeDriver]) -> None:
    driver = make([1, 1], commit=[DriverError(Failure.DISCONNECTED)])
    with pytest.raises(OperationFailedError, match="may or may not have been applied"):
        run(driver, Call("write", one(kind=EXECUTE), write=True))
    assert driver.log == ["BEGIN", "Q", "COMMIT"]


@pytest.mark.parametrize("make", DRIVERS)
def test_unknown_outcome_is_verified(make: type[FakeDriver]) -> None:
    # Applied: the verification's answer is the result, nothing is written twice.
    driver = make([1, "applied"], commit=[DriverError(Failure.DISCONNECTED)])
    call = Call("append", one(kind=EXECUTE), write=True, verify=one("VERIFY"))
    assert run(driver, call) == "applied"
    assert driver.log == ["BEGIN", "Q", "COMMIT", "VERIFY"]
    # Not applied (a one-statement write this time): it is tried again.
    driver = make([DriverError(Failure.DISCONNECTED), None, "second"])
    call = Call("append", one(kind=ROWS), write=True, transaction=False, verify=one("VERIFY"))
    assert run(driver, call) == "second"
    assert driver.log == ["Q", "VERIFY", "Q"]


@pytest.mark.parametrize("make", DRIVERS)
def test_failures_map_to_typed_errors(make: type[FakeDriver]) -> None:
    def taken() -> Plan[Exception]:
        row = yield Op(ROW, "WHICH")
        return AlreadyExistsError(f"id {row[0]} is taken")

    driver = make([DriverError(Failure.DUPLICATE), ("m1",)])
    with pytest.raises(AlreadyExistsError, match="id m1 is taken") as info:
        run(driver, Call("append", one(), write=True, on_duplicate=taken))
    assert isinstance(info.value.__cause__, DriverError)
    with pytest.raises(AlreadyExistsError):
        run(make([DriverError(Failure.DUPLICATE)]), Call("create", one(), write=True))
    with pytest.raises(ValidationError):
        run(make([DriverError(Failure.INVALID)]), Call("w", one(), write=True))
    with pytest.raises(OperationFailedError):
        run(make([DriverError(Failure.OTHER)]), Call("r", one()))
    with pytest.raises(SessionNotFoundError):  # not the driver's: passes through untouched
        run(make([SessionNotFoundError("gone")]), Call("r", one()))
    with pytest.raises(ConnectionFailedError, match="cannot reach PostgreSQL at db:5432/x"):
        run(make([], connect=DriverError(Failure.DISCONNECTED)), Call("r", one()))


@pytest.mark.parametrize("make", DRIVERS)
def test_secrets_never_reach_messages(make: type[FakeDriver]) -> None:
    driver = make([DriverError(Failure.OTHER, "failed for postgresql://u:hunter2@db/x password=hunter2")])
    with pytest.raises(OperationFailedError) as info:
        run(driver, Call("r", one()), secret="hunter2")
    assert "hunter2" not in str(info.value)


def test_closed_store_error_wins() -> None:
    target = Target(POSTGRES, "PostgreSQL at db:5432/x", closed=True)
    with pytest.raises(StoreClosedError):
        SyncRunner(FakeDriver([DriverError(Failure.OTHER)]), target, FAST).run(Call("r", one()))


def test_tolerated_exists_counts_as_done() -> None:
    def plan() -> Plan[str]:
        yield Op(EXECUTE, "ALTER", tolerate_exists=True)
        return "done"

    driver = FakeDriver([DriverError(Failure.EXISTS)])
    assert SyncRunner(driver, Target(MYSQL, "x"), FAST).run(Call("migrate", plan)) == "done"
    with pytest.raises(OperationFailedError):
        SyncRunner(FakeDriver([DriverError(Failure.EXISTS)]), Target(MYSQL, "x"), FAST).run(Call("m", one()))


# -- the pool ---------------------------------------------------------------------------------------------


class Conn:
    def __init__(self, n: int) -> None:
        self.n, self.open = n, True

    def close(self) -> None:
        self.open = False


def make_pool(max_size: int = 2, timeout: float = 0.2) -> tuple[ConnectionPool[Conn], list[Conn]]:
    made: list[Conn] = []

    def connect() -> Conn:
        made.append(Conn(len(made)))
        return made[-1]

    return ConnectionPool(connect, close=Conn.close, usable=lambda c: c.open, max_size=max_size,
                          timeout=timeout), made


def test_pool_reuses_bounds_and_times_out() -> None:
    pool, made = make_pool()
    with pool.connection() as a, pool.connection() as b:
        assert a is not b
        started = time.monotonic()
        with pytest.raises(OperationFailedError, match="no connection became free"):
            pool.acquire()
        assert time.monotonic() - started >= 0.15
    with pool.connection() as c:
        assert c in (a, b)
    assert len(made) == 2


def test_pool_drops_broken_connections_and_closes_everything() -> None:
    pool, made = make_pool()
    with pytest.raises(RuntimeError), pool.connection() as a:
        a.close()  # the driver noticed the connection died
        raise RuntimeError
    assert pool.size == 0
    busy = pool.acquire()
    with pool.connection():
        pass
    pool.close()
    assert [c.open for c in made] == [False, True, False]
    pool.release(busy)
    assert not busy.open, "a connection lent out at close() is closed when it comes back"
    with pytest.raises(StoreClosedError):
        pool.acquire()


def test_pool_under_threads_never_exceeds_max_size() -> None:
    pool, made = make_pool(max_size=3, timeout=5)
    in_use, peak, lock = [0], [0], threading.Lock()

    def work() -> None:
        for _ in range(200):
            with pool.connection():
                with lock:
                    in_use[0] += 1
                    peak[0] = max(peak[0], in_use[0])
                with lock:
                    in_use[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] <= 3 and len(made) <= 3
    pool.close()
    assert not any(c.open for c in made)


# -- URLs -------------------------------------------------------------------------------------------------


def test_postgres_urls() -> None:
    from storebridge.adapters.postgres.conversation import describe, driver_dsn, parse_postgres_url

    for url in ("postgresql://u:p@h:5433/db", "postgres://u:p@h:5433/db", "postgresql+psycopg://u:p@h:5433/db",
                "postgresql+asyncpg://u:p@h:5433/db"):
        parsed = parse_postgres_url(url)
        assert driver_dsn(parsed) == "postgresql://u:p@h:5433/db" and describe(parsed) == "h:5433/db"
    for bad in ("mysql://h/db", "postgresql+pg8000://h/db", "sqlite:///x.db"):
        with pytest.raises(ConfigurationError):
            parse_postgres_url(bad)


def test_supabase_urls() -> None:
    from storebridge.adapters.supabase.conversation import TRANSACTION_POOLER_PORT, supabase_url

    pooled = supabase_url("supabase://postgres.ref:pw@aws-0-eu-west-1.pooler.supabase.com/postgres")
    assert pooled.scheme == "postgresql" and pooled.port == TRANSACTION_POOLER_PORT
    assert pooled.query == {"sslmode": "require"} and pooled.username == "postgres.ref"
    direct = supabase_url("postgresql://postgres.ref:pw@aws-0-eu-west-1.pooler.supabase.com:5432/postgres"
                          "?sslmode=verify-full")
    assert direct.port == 5432 and direct.query == {"sslmode": "verify-full"}
    assert supabase_url("postgresql+supabase://u@127.0.0.1:5432/test").query == {}


def test_mysql_urls() -> None:
    from storebridge.adapters.mysql.conversation import connect_kwargs, parse_mysql_url

    parsed = parse_mysql_url("mariadb://u:p%40ss@h:3307/db?ssl_disabled=true")
    kwargs = connect_kwargs(parsed, 5)
    assert (kwargs["password"], kwargs["port"], kwargs["database"], kwargs["ssl_disabled"]) == ("p@ss", 3307, "db", True)
    assert kwargs["charset"] == "utf8mb4" and kwargs["autocommit"] is True
    for bad in ("mysql://h:3306/db?charset=latin1", "mysql://h:3306", "mysql://h/db?ssl_disabled=maybe",
                "postgresql://h/db"):
        with pytest.raises(ConfigurationError):
            parse_mysql_url(bad)


def test_importing_the_adapters_imports_no_driver() -> None:
    code = ("import sys; import storebridge.adapters.postgres, storebridge.adapters.mysql, "
            "storebridge.adapters.singlestore, storebridge.adapters.supabase, storebridge.importers; "
            "heavy = {'psycopg', 'psycopg_pool', 'asyncpg', 'pymysql', 'aiomysql', 'singlestoredb'} & set(sys.modules); "
            "print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
