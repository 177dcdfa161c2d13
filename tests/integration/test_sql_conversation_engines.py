"""The SQL conversation stores on the real engines, beyond the conformance suite: many writers on one
session, upgrades from an older schema made by hand, concurrent first starts, connection failures and
lost connections, engine limits, the schema itself, and 1,000 open/close cycles that must leak nothing.

PostgreSQL and MariaDB run on every project machine (tests/servers/): these tests never skip."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from storebridge.errors import (
    AlreadyExistsError,
    ConnectionFailedError,
    InvalidIdentifierError,
    SchemaVersionError,
    ValidationError,
)
from storebridge.models import ConversationMessage, ConversationSession
from tests.conformance.test_conversation_sql import open_store
from tests.servers.mariadb import MariaDBServer, mariadb_server  # noqa: F401  (session fixture)
from tests.servers.postgres import PostgresServer, postgres_server, unique_prefix  # noqa: F401

PG_BACKENDS = ("postgres", "async_postgres", "supabase")


def msg(content: str = "hi", **fields: Any) -> ConversationMessage:
    return ConversationMessage(role=fields.pop("role", "user"), content=content, **fields)


class Engines:
    """The two servers and the prefixes a test made (dropped afterwards)."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.request = request
        self.made: list[tuple[Any, str]] = []

    def server(self, backend: str) -> Any:
        fixture = "postgres_server" if backend in PG_BACKENDS else "mariadb_server"
        return self.request.getfixturevalue(fixture)

    def prefix(self, backend: str) -> str:
        p = unique_prefix("sbi")
        self.made.append((self.server(backend), p))
        return p

    def open(self, backend: str, prefix: str | None = None, **options: Any) -> Any:
        server = self.server(backend)
        prefix = prefix or self.prefix(backend)
        pg, maria = (server, None) if backend in PG_BACKENDS else (None, server)
        return open_store(backend, pg, maria, prefix, **options)


@pytest.fixture
def engines(request: pytest.FixtureRequest) -> Iterator[Engines]:
    made = Engines(request)
    yield made
    for server, prefix in made.made:
        server.drop_prefix(prefix)


def check_history(got: list[ConversationMessage], writers: int, per_writer: int) -> None:
    """Every message is there once, sequences are 1..n, and each writer's messages are in its order."""
    assert len(got) == writers * per_writer
    assert [m.sequence for m in got] == list(range(1, writers * per_writer + 1))
    assert len({m.id for m in got}) == len(got)
    for w in range(writers):
        assert [m.metadata["n"] for m in got if m.metadata["w"] == w] == list(range(per_writer)), f"writer {w}"


# -- many writers, one session --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
def test_threads_append_to_one_session(engines: Engines, backend: str) -> None:
    """8 threads x 500 appends to ONE session: the per-session counter holds under contention."""
    store = engines.open(backend, max_size=8)
    sid, errors = f"busy-{uuid.uuid4().hex[:6]}", []

    def writer(w: int) -> None:
        try:
            for n in range(500):
                store.add_message(sid, msg(f"{w}:{n}", metadata={"w": w, "n": n}))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors[:3]
        check_history(store.get_messages(sid), 8, 500)
        assert store.count_messages(sid) == 4000
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["async_postgres", "async_mysql"])
def test_tasks_append_to_one_session(engines: Engines, backend: str) -> None:
    """50 asyncio tasks x 100 appends to ONE session, through the async-native stores."""
    sid = f"busy-{uuid.uuid4().hex[:6]}"

    async def run() -> list[ConversationMessage]:
        store = engines.open(backend, max_size=10)
        try:
            async def writer(w: int) -> None:
                for n in range(100):
                    await store.add_message(sid, msg(f"{w}:{n}", metadata={"w": w, "n": n}))

            await asyncio.gather(*(writer(w) for w in range(50)))
            return await store.get_messages(sid)
        finally:
            await store.close()

    check_history(asyncio.run(run()), 50, 100)


# -- migrations -------------------------------------------------------------------------------------------

PG_V1 = [
    ('CREATE TABLE "{p}sessions" (session_id TEXT PRIMARY KEY, user_id TEXT, agent_id TEXT, name TEXT, '
     'state JSONB NOT NULL, metadata JSONB NOT NULL, created_at DOUBLE PRECISION NOT NULL, '
     'updated_at DOUBLE PRECISION NOT NULL, last_sequence BIGINT NOT NULL DEFAULT 0)'),
    ('CREATE TABLE "{p}messages" (session_id TEXT NOT NULL REFERENCES "{p}sessions" (session_id) ON DELETE CASCADE, '
     'id TEXT NOT NULL, sequence BIGINT NOT NULL, role VARCHAR(16) NOT NULL, content TEXT NOT NULL, tool_calls JSONB, '
     'metadata JSONB NOT NULL, created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (session_id, id))'),
    'CREATE UNIQUE INDEX "{p}messages_session_sequence" ON "{p}messages" (session_id, sequence)',
    ('CREATE TABLE "{p}schema_versions" (component VARCHAR(64) PRIMARY KEY, version INTEGER NOT NULL, '
     'updated_at DOUBLE PRECISION NOT NULL)'),
]
MARIA_V1 = [
    ("CREATE TABLE `{p}sessions` (session_key BINARY(32) NOT NULL PRIMARY KEY, session_id VARCHAR(512) NOT NULL, "
     "user_id VARCHAR(255), agent_id VARCHAR(255), name LONGTEXT, state JSON NOT NULL, metadata JSON NOT NULL, "
     "created_at DOUBLE NOT NULL, updated_at DOUBLE NOT NULL, last_sequence BIGINT NOT NULL DEFAULT 0) "
     "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"),
    ("CREATE TABLE `{p}messages` (session_key BINARY(32) NOT NULL, session_id VARCHAR(512) NOT NULL, "
     "id VARCHAR(255) NOT NULL, sequence BIGINT NOT NULL, role VARCHAR(16) NOT NULL, content LONGTEXT NOT NULL, "
     "tool_calls JSON, metadata JSON NOT NULL, created_at DOUBLE NOT NULL, PRIMARY KEY (session_key, id), "
     "UNIQUE KEY `{p}messages_session_sequence` (session_key, sequence), "
     "FOREIGN KEY (session_key) REFERENCES `{p}sessions` (session_key) ON DELETE CASCADE) "
     "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"),
    ("CREATE TABLE `{p}schema_versions` (component VARCHAR(64) PRIMARY KEY, version INTEGER NOT NULL, "
     "updated_at DOUBLE NOT NULL)"),
]


def make_v1(server: Any, backend: str, p: str, *, with_column: bool = False) -> None:
    """The version-1 schema (no messages.tool_call_id) written by hand, with a session of two messages.
    ``with_column``: a MariaDB upgrade that was interrupted after its ALTER (the version still says 1)."""
    pg = backend in PG_BACKENDS
    for sql in PG_V1 if pg else MARIA_V1:
        server.execute(sql.format(p=p))
    q = (lambda n: f'"{p}{n}"') if pg else (lambda n: f"`{p}{n}`")
    key = () if pg else (hashlib.sha256(b"old-session").digest(),)
    kc, kp = ("", "") if pg else ("session_key, ", "%s, ")
    server.execute(f"INSERT INTO {q('schema_versions')} VALUES ('conversation', 1, 0)")
    server.execute(f"INSERT INTO {q('sessions')} ({kc}session_id, user_id, state, metadata, created_at, updated_at, "
                   f"last_sequence) VALUES ({kp}%s, %s, %s, %s, %s, %s, %s)",
                   (*key, "old-session", "u1", '{"turn": 2}', '{"m": [1]}', 1000.0, 1001.0, 2))
    for i, (role, calls) in enumerate([("user", None), ("assistant", '[{"id": "call_1", "type": "function"}]')]):
        server.execute(f"INSERT INTO {q('messages')} ({kc}session_id, id, sequence, role, content, tool_calls, "
                       f"metadata, created_at) VALUES ({kp}%s, %s, %s, %s, %s, %s, %s, %s)",
                       (*key, "old-session", f"old-{i}", i + 1, role, f"v1 message {i}", calls, "{}", 1000.0 + i))
    if with_column:
        server.execute(f"ALTER TABLE {q('messages')} ADD COLUMN tool_call_id LONGTEXT NULL")


@pytest.mark.parametrize("backend,interrupted", [("postgres", False), ("mysql", False), ("mysql", True),
                                                 ("async_postgres", False), ("async_mysql", False)])
def test_upgrade_from_v1_keeps_data(engines: Engines, backend: str, interrupted: bool) -> None:
    server, p = engines.server(backend), engines.prefix(backend)
    make_v1(server, backend, p, with_column=interrupted)
    store = engines.open(backend, prefix=p).as_sync()
    try:
        old = store.get_messages("old-session")
        assert [(m.id, m.sequence, m.content, m.tool_call_id) for m in old] == [
            ("old-0", 1, "v1 message 0", None), ("old-1", 2, "v1 message 1", None)]
        assert old[1].tool_calls == [{"id": "call_1", "type": "function"}]
        session = store.get_session("old-session")
        assert session is not None and session.state == {"turn": 2} and session.user_id == "u1"
        added = store.add_message("old-session", msg('{"ok": 1}', role="tool", tool_call_id="call_1"))
        assert added.sequence == 3
        assert store.get_messages("old-session", limit=1)[0].tool_call_id == "call_1"
    finally:
        store.close()
    q = '"' if backend in PG_BACKENDS else "`"
    assert server.execute(f"SELECT version FROM {q}{p}schema_versions{q}") == [(2,)]


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
def test_newer_schema_is_refused(engines: Engines, backend: str) -> None:
    p = engines.prefix(backend)
    engines.open(backend, prefix=p).close()
    q = '"' if backend in PG_BACKENDS else "`"
    engines.server(backend).execute(f"UPDATE {q}{p}schema_versions{q} SET version = 99")
    with pytest.raises(SchemaVersionError, match="99"):
        engines.open(backend, prefix=p)


@pytest.mark.parametrize("backend", ["postgres", "mysql", "singlestore"])
def test_concurrent_first_starts_migrate_once(engines: Engines, backend: str) -> None:
    """Six processes' worth of stores start at once on an empty database: the advisory lock (Postgres),
    GET_LOCK (MySQL) or the idempotent steps (SingleStore) let every one of them open."""
    p = engines.prefix(backend)
    stores: list[Any] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def start() -> None:
        barrier.wait()
        try:
            stores.append(engines.open(backend, prefix=p, max_size=2))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        stores[0].add_message("s", msg())
        assert all(s.count_messages("s") == 1 for s in stores)
    finally:
        for s in stores:
            s.close()


# -- connections ------------------------------------------------------------------------------------------

SECRET = "s3cr3t-Pa55word"


@pytest.mark.parametrize("backend,url", [
    ("postgres", f"postgresql://nobody:{SECRET}@127.0.0.1:1/db"),
    ("async_postgres", f"postgresql+asyncpg://nobody:{SECRET}@127.0.0.1:1/db"),
    ("supabase", f"supabase://nobody:{SECRET}@127.0.0.1:1/db"),
    ("mysql", f"mysql://nobody:{SECRET}@127.0.0.1:1/db"),
    ("async_mysql", f"mysql+aiomysql://nobody:{SECRET}@127.0.0.1:1/db"),
    ("singlestore", f"singlestore://nobody:{SECRET}@127.0.0.1:1/db?ssl_disabled=true"),
])
def test_closed_port_names_host_not_password(backend: str, url: str) -> None:
    exc = _connect_error(backend, url)
    assert "127.0.0.1:1" in str(exc)
    assert SECRET not in str(exc) and SECRET not in repr(exc)
    assert exc.__cause__ is not None


def test_wrong_password_and_unknown_role(postgres_server: PostgresServer,  # noqa: F811
                                         mariadb_server: MariaDBServer) -> None:  # noqa: F811
    maria = mariadb_server.with_scheme("mysql").replace("mysql://root@", f"mysql://root:{SECRET}@")
    for backend, url in [("mysql", maria), ("async_mysql", maria.replace("mysql://", "mysql+aiomysql://"))]:
        exc = _connect_error(backend, url)
        assert SECRET not in str(exc) and "Access denied" in str(exc) and ":3306/" in str(exc)
    pg = postgres_server.url.replace("postgres@", f"no_such_role_x:{SECRET}@")
    for backend in ("postgres", "async_postgres"):
        exc = _connect_error(backend, pg)
        assert SECRET not in str(exc) and "no_such_role_x" in str(exc) and ":5432/" in str(exc)


def _connect_error(backend: str, url: str) -> ConnectionFailedError:
    from storebridge.adapters.mysql import AsyncMySQLConversationStore, MySQLConversationStore
    from storebridge.adapters.postgres import AsyncPostgresConversationStore, PostgresConversationStore
    from storebridge.adapters.singlestore import SingleStoreConversationStore
    from storebridge.adapters.supabase import SupabaseConversationStore

    cls = {"postgres": PostgresConversationStore, "async_postgres": AsyncPostgresConversationStore,
           "supabase": SupabaseConversationStore, "mysql": MySQLConversationStore,
           "async_mysql": AsyncMySQLConversationStore, "singlestore": SingleStoreConversationStore}[backend]
    with pytest.raises(ConnectionFailedError) as info:
        store = cls(url, connect_timeout=2).as_sync()  # async stores connect on first use
        try:
            store.count_messages("x")
        finally:
            store.close()
    return info.value


def _kill_connections(backend: str, server: Any, marker: str) -> int:
    """Terminate every server connection of the store under test (found by application name on Postgres,
    by its scratch database on MariaDB)."""
    if backend in PG_BACKENDS:
        rows = server.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                              (marker,))
        return len(rows)
    ids = server.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
                         (marker,))
    for (conn_id,) in ids:
        server.execute(f"KILL CONNECTION {int(conn_id)}")
    return len(ids)


@pytest.mark.parametrize("backend", ["postgres", "async_postgres", "mysql", "async_mysql"])
def test_lost_connections_are_retried(engines: Engines, backend: str) -> None:
    """The server drops every pooled connection between two calls: reads and writes still succeed (the
    failure happened before anything committed, so the runner retries on a fresh connection)."""
    server = engines.server(backend)
    marker = f"sbkill{uuid.uuid4().hex[:8]}"
    if backend in PG_BACKENDS:
        _run_killed(engines, backend, server, marker, server.url + f"?application_name={marker}")
    else:
        with server.scratch_database() as db:
            _run_killed(engines, backend, server, db, None)


def _run_killed(engines: Engines, backend: str, server: Any, marker: str, pg_url: str | None) -> None:
    from storebridge.adapters.mysql import AsyncMySQLConversationStore, MySQLConversationStore
    from storebridge.adapters.postgres import AsyncPostgresConversationStore, PostgresConversationStore

    prefix = unique_prefix("sbk")
    if pg_url is not None:
        engines.made.append((server, prefix))
        store = (PostgresConversationStore(pg_url, table_prefix=prefix, max_size=2) if backend == "postgres" else
                 AsyncPostgresConversationStore(pg_url, table_prefix=prefix, max_size=2)).as_sync()
    else:
        url = server.with_scheme("mysql", database=marker, query="?ssl_disabled=true")
        store = (MySQLConversationStore(url, table_prefix=prefix, max_size=2) if backend == "mysql" else
                 AsyncMySQLConversationStore(url.replace("mysql://", "mysql+aiomysql://").split("?")[0],
                                             table_prefix=prefix, max_size=2)).as_sync()
    try:
        store.add_message("s", msg("before"))
        assert _kill_connections(backend, server, marker) >= 1
        time.sleep(0.2)
        assert [m.content for m in store.get_messages("s")] == ["before"]  # a read, retried
        _kill_connections(backend, server, marker)
        time.sleep(0.2)
        store.add_message("s", msg("after"))  # a write, retried: it never reached COMMIT
        assert [m.content for m in store.get_messages("s")] == ["before", "after"]
    finally:
        store.close()


@pytest.mark.parametrize("backend,cycles", [("postgres", 1000), ("mysql", 1000), ("async_postgres", 1000),
                                            ("async_mysql", 1000)])
def test_open_close_leaks_no_connection(engines: Engines, backend: str, cycles: int) -> None:
    """Open and close a store 1,000 times (ours: psycopg_pool, storebridge's PyMySQL pool; and asyncpg's
    and aiomysql's pools), using it every 10th time: the server must be left with no connection of ours. Small pools
    (min 0, max 2): a cycle costs one connection, so the test spends its time on our code, not on
    connection setup (10-15 ms each for PostgreSQL on these machines)."""
    server = engines.server(backend)
    if backend in PG_BACKENDS:
        marker = f"sbleak{uuid.uuid4().hex[:8]}"
        prefix = engines.prefix(backend)
        url = server.url + f"?application_name={marker}"
        count = lambda: server.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (marker,))[0][0]
        _cycle(backend, url, prefix, cycles, count)
    else:
        with server.scratch_database() as db:
            url = server.with_scheme("mysql", database=db, query="?ssl_disabled=true")
            count = lambda: server.execute(
                "SELECT count(*) FROM information_schema.PROCESSLIST WHERE DB = %s", (db,))[0][0]
            _cycle(backend, url, unique_prefix("sbl"), cycles, count)


def _cycle(backend: str, url: str, prefix: str, cycles: int, count: Any) -> None:
    from storebridge.adapters.mysql import AsyncMySQLConversationStore, MySQLConversationStore
    from storebridge.adapters.postgres import AsyncPostgresConversationStore, PostgresConversationStore

    if backend == "postgres":
        make = lambda: PostgresConversationStore(url, table_prefix=prefix, min_size=0, max_size=2)
    elif backend == "mysql":
        make = lambda: MySQLConversationStore(url, table_prefix=prefix, max_size=2)
    elif backend == "async_postgres":
        make = lambda: AsyncPostgresConversationStore(url, table_prefix=prefix, min_size=0, max_size=2)
    else:
        make = lambda: AsyncMySQLConversationStore(
            url.replace("mysql://", "mysql+aiomysql://").split("?")[0], table_prefix=prefix, min_size=0, max_size=2)

    async def run_async() -> int:
        peak = 0
        for i in range(cycles):
            store = make()
            if i % 10 == 0:
                await store.add_message("s", msg(str(i)))
                peak = max(peak, count())
            await store.close()
        return peak

    if backend.startswith("async_"):
        peak = asyncio.run(run_async())
    else:
        peak = 0
        for i in range(cycles):
            store = make()
            if i % 10 == 0:
                store.add_message("s", msg(str(i)))
                peak = max(peak, count())
            store.close()
    assert peak <= 3, f"{peak} connections open while cycling (pool max 2)"
    deadline = time.monotonic() + 10
    while count() and time.monotonic() < deadline:  # the server reaps closed sessions asynchronously
        time.sleep(0.05)
    assert count() == 0, f"{count()} connections left after {cycles} open/close cycles"


# -- engine limits, schema, identifiers -------------------------------------------------------------------


def test_postgres_refuses_nul_with_validation_error(engines: Engines) -> None:
    for backend in ("postgres", "async_postgres"):
        store = engines.open(backend).as_sync()
        try:
            for bad in (msg("nul\x00here"), msg("ok", metadata={"k": "nul\x00"})):
                with pytest.raises(ValidationError) as info:
                    store.add_message("s", bad)
                assert info.value.__cause__ is not None
            assert store.count_messages("s") == 0
        finally:
            store.close()


def test_mysql_limits_and_exact_ids(engines: Engines) -> None:
    """MariaDB: NUL round-trips, over-long user ids are a ValidationError, and ids differing only in case
    or accents are different sessions (binary collation; the default collations would merge them)."""
    store = engines.open("mysql")
    try:
        store.add_message("s", msg("nul\x00kept 🚀"))
        assert store.get_messages("s")[0].content == "nul\x00kept 🚀"
        with pytest.raises(ValidationError):
            store.create_session(ConversationSession(session_id="long-user", user_id="u" * 300))
        for sid in ("Case", "case", "cáse"):
            store.add_message(sid, msg(sid))
        assert [store.get_messages(sid)[0].content for sid in ("Case", "case", "cáse")] == ["Case", "case", "cáse"]
    finally:
        store.close()


def test_duplicate_is_typed_with_driver_cause(engines: Engines) -> None:
    for backend in ("postgres", "mysql", "async_postgres", "async_mysql"):
        store = engines.open(backend).as_sync()
        try:
            first = store.add_message("s", msg())
            with pytest.raises(AlreadyExistsError, match=first.id) as info:
                store.add_message("s", msg(id=first.id))
            assert type(info.value.__cause__).__module__.split(".")[0] in ("psycopg", "asyncpg", "pymysql")
            store.create_session(ConversationSession(session_id="dup"))
            with pytest.raises(AlreadyExistsError, match="dup"):
                store.create_session(ConversationSession(session_id="dup"))
        finally:
            store.close()


def test_postgres_schema(engines: Engines) -> None:
    p = engines.prefix("postgres")
    engines.open("postgres", prefix=p).close()
    server = engines.server("postgres")
    types = dict(server.execute("SELECT column_name, data_type FROM information_schema.columns "
                                "WHERE table_name = %s", (p + "messages",)))
    assert types["metadata"] == "jsonb" and types["tool_calls"] == "jsonb" and types["session_id"] == "text"
    indexes = {r[0] for r in server.execute("SELECT indexname FROM pg_indexes WHERE tablename IN (%s, %s)",
                                            (p + "messages", p + "sessions"))}
    assert {p + "messages_session_sequence", p + "messages_session_created", p + "sessions_user_updated",
            p + "sessions_agent_updated", p + "sessions_updated", p + "messages_pkey"} <= indexes


def test_mariadb_schema(engines: Engines) -> None:
    p = engines.prefix("mysql")
    engines.open("mysql", prefix=p).close()
    server = engines.server("mysql")
    rows = server.execute("SELECT column_name, column_type, collation_name FROM information_schema.columns "
                          "WHERE table_schema = DATABASE() AND table_name = %s", (p + "messages",))
    columns = {r[0]: (r[1], r[2]) for r in rows}
    assert columns["session_key"][0] == "binary(32)"
    assert columns["session_id"] == ("varchar(512)", "utf8mb4_bin")
    assert columns["content"] == ("longtext", "utf8mb4_bin")
    keys = {r[0] for r in server.execute(
        "SELECT index_name FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = %s",
        (p + "messages",))}
    assert {"PRIMARY", p + "messages_session_sequence", p + "messages_session_created"} <= keys


def test_invalid_prefix_is_refused_before_connecting() -> None:
    from storebridge.adapters.mysql import MySQLConversationStore
    from storebridge.adapters.postgres import PostgresConversationStore

    for bad in ('x"; DROP TABLE t; --', "a-b", "1abc", "x" * 40):
        with pytest.raises(InvalidIdentifierError):
            PostgresConversationStore("postgresql://127.0.0.1:1/db", table_prefix=bad)
        with pytest.raises(InvalidIdentifierError):
            MySQLConversationStore("mysql://127.0.0.1:1/db", table_prefix=bad)


def test_url_schemes(engines: Engines) -> None:
    """Every scheme the registry routes here reaches the engine; the +driver never reaches the driver."""
    from storebridge.adapters.mysql import MySQLConversationStore
    from storebridge.adapters.postgres import AsyncPostgresConversationStore, PostgresConversationStore

    pg, maria = engines.server("postgres"), engines.server("mysql")
    p, q = engines.prefix("postgres"), engines.prefix("mysql")
    for scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        PostgresConversationStore(pg.with_scheme(scheme), table_prefix=p, max_size=1).close()
    for scheme in ("postgresql+asyncpg", "postgres+asyncpg", "postgresql"):
        store = AsyncPostgresConversationStore(pg.with_scheme(scheme), table_prefix=p, max_size=1).as_sync()
        store.count_messages("s")
        store.close()
    for scheme in ("mysql", "mariadb", "mysql+pymysql"):
        MySQLConversationStore(maria.with_scheme(scheme, query="?ssl_disabled=true"), table_prefix=q).close()


def test_reprs_hide_passwords() -> None:
    from storebridge.adapters.postgres import AsyncPostgresConversationStore

    store = AsyncPostgresConversationStore(f"postgresql+asyncpg://u:{SECRET}@db.example:5432/app")
    assert SECRET not in repr(store) and "db.example:5432/app" in repr(store)
    asyncio.run(store.close())
    assert json.dumps(repr(store))  # a plain string
