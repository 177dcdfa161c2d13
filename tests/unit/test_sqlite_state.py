"""Unit tests of the SQLite state store: values, TTL, namespaces, atomic increment, hostile input."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from storebridge.adapters.sqlite.state import MIGRATIONS, SQLiteStateStore
from storebridge.errors import (
    ConfigurationError,
    InvalidIdentifierError,
    SchemaVersionError,
    StoreClosedError,
    ValidationError,
)
from storebridge.migrations import Migration
from storebridge.state import AsyncStateStore, StateStore

TTL = 0.2
HOSTILE = "'; DROP TABLE sb_state; --"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def store(db: Path) -> Any:
    with SQLiteStateStore(path=db) as s:
        yield s


def raw_rows(db: Path, table: str = "sb_state") -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        sql = f"SELECT namespace, key, expires_at FROM {table} ORDER BY namespace, key"
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# -- values ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    "text", "", "ünïcødé ✓ 🚀", "{\"looks\": \"like json\"}", b"", b"\x00\xff\x80 raw", 0, -7, 2**70, 3.25,
    True, False, None, [], [1, "two", None, [3.5]], {"a": {"b": [1, 2]}, "": True},
])
def test_values_round_trip_as_their_own_type(store: Any, value: Any) -> None:
    store.set("k", value)
    got = store.get("k", default="<missing>")
    assert got == value
    assert type(got) is type(value)
    assert store.get_many(["k"]) == {"k": value}


def test_tuple_comes_back_as_list(store: Any) -> None:
    store.set("k", (1, 2))
    assert store.get("k") == [1, 2]


def test_values_survive_reopening(db: Path) -> None:
    with SQLiteStateStore(path=db) as first:
        first.set("k", {"n": 1})
    with SQLiteStateStore(f"sqlite:///{db}") as again:
        assert again.get("k") == {"n": 1}
        assert again.capabilities.persistent is True


@pytest.mark.parametrize("value", [object(), {1, 2}, float("nan"), float("inf"), {"x": object()}])
def test_unstorable_values_are_refused_and_nothing_is_written(store: Any, value: Any) -> None:
    with pytest.raises(ValidationError):
        store.set_many({"good": 1, "bad": value})
    assert store.keys() == []


def test_missing_key_gives_default(store: Any) -> None:
    assert store.get("nope") is None
    assert store.get("nope", 42) == 42
    assert store.exists("nope") is False
    assert store.delete("nope") is False
    assert store.ttl("nope") is None


def test_set_replaces_value_and_drops_old_ttl(store: Any) -> None:
    store.set("k", 1, ttl=100)
    store.set("k", 2)
    assert store.get("k") == 2
    assert store.ttl("k") is None


# -- TTL ------------------------------------------------------------------------------------------------

def test_expired_key_is_never_returned(store: Any) -> None:
    store.set("short", "v", ttl=TTL)
    store.set_many({"m1": 1, "m2": 2}, ttl=TTL)
    store.set("forever", "v")
    remaining = store.ttl("short")
    assert remaining is not None and 0 < remaining <= TTL
    assert store.get("short") == "v"
    time.sleep(TTL + 0.05)
    assert store.get("short") is None
    assert store.exists("short") is False
    assert store.ttl("short") is None
    assert store.get_many(["short", "m1", "m2", "forever"]) == {"forever": "v"}
    assert store.keys() == ["forever"]
    assert store.expire("short", 10) is False
    assert store.delete("short") is False
    assert store.delete_many(["m1", "m2"]) == 0


def test_expire_sets_and_removes_ttl(store: Any) -> None:
    store.set("k", 1)
    assert store.expire("k", 100) is True
    remaining = store.ttl("k")
    assert remaining is not None and 99 < remaining <= 100
    assert store.expire("k", None) is True
    assert store.ttl("k") is None
    assert store.expire("missing", 5) is False
    store.expire("k", TTL)
    time.sleep(TTL + 0.05)
    assert store.exists("k") is False


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf"), True, "5"])
def test_bad_ttl_is_refused(store: Any, ttl: Any) -> None:
    with pytest.raises(ValidationError):
        store.set("k", 1, ttl=ttl)
    store.set("k", 1)
    with pytest.raises(ValidationError):
        store.expire("k", ttl)
    assert store.ttl("k") is None


def test_expired_rows_are_purged_without_touching_live_keys(db: Path) -> None:
    with SQLiteStateStore(path=db, namespace="a") as a, SQLiteStateStore(path=db, namespace="b") as b:
        a.set("gone", 1, ttl=TTL)
        b.set("gone-too", 1, ttl=TTL)
        b.set("stays", 1, ttl=100)
        b.set("stays-forever", 1)
        time.sleep(TTL + 0.05)
        assert len(raw_rows(db)) == 4  # expired rows linger until a purge
        a.purge_interval = 0  # purge on the next write
        a.set("new", 1)
        assert raw_rows(db) == [("a", "new", None), ("b", "stays", pytest.approx(time.time() + 100, abs=5)),
                                ("b", "stays-forever", None)]
        assert b.keys() == ["stays", "stays-forever"]


def test_purge_expired_reports_count(store: Any, db: Path) -> None:
    store.set_many({"x": 1, "y": 2}, ttl=TTL)
    store.set("z", 3)
    time.sleep(TTL + 0.05)
    assert store.purge_expired() == 2
    assert [row[1] for row in raw_rows(db)] == ["z"]


def test_writes_purge_at_most_every_interval(store: Any, db: Path) -> None:
    store.purge_interval = 3600
    store.set("warm-up", 1)  # the first write purges and starts the interval
    store.set("x", 1, ttl=TTL)
    time.sleep(TTL + 0.05)
    store.set("y", 1)
    assert "x" in [row[1] for row in raw_rows(db)]


# -- namespaces -----------------------------------------------------------------------------------------

def test_namespaces_on_one_file_are_isolated(db: Path) -> None:
    with SQLiteStateStore(path=db, namespace="app1") as one, \
            SQLiteStateStore(path=db, namespace="app2") as two:
        one.set("k", "one")
        two.set("k", "two")
        one.set("only-one", 1, ttl=100)
        assert one.get("k") == "one" and two.get("k") == "two"
        assert two.exists("only-one") is False
        assert two.keys() == ["k"]
        assert two.increment("only-one") == 1
        assert one.get("only-one") == 1
        assert one.clear() == 2
        assert one.keys() == []
        assert two.get_many(["k", "only-one"]) == {"k": "two", "only-one": 1}


def test_default_namespace_is_its_own(db: Path) -> None:
    with SQLiteStateStore(path=db) as default, SQLiteStateStore(path=db, namespace="x") as other:
        default.set("k", 1)
        assert other.get("k") is None
        assert other.clear() == 0
        assert default.get("k") == 1


def test_namespace_from_url(db: Path) -> None:
    with SQLiteStateStore(f"sqlite:///{db}?namespace=tenant-1") as via_url:
        assert via_url.namespace == "tenant-1"
        via_url.set("k", 1)
    with SQLiteStateStore(path=db, namespace="tenant-1") as direct:
        assert direct.get("k") == 1


def test_clear_counts_only_live_keys(store: Any) -> None:
    store.set_many({"a": 1, "b": 2})
    store.set("old", 1, ttl=TTL)
    time.sleep(TTL + 0.05)
    assert store.clear() == 2
    assert store.clear() == 0


# -- increment ------------------------------------------------------------------------------------------

def test_increment_types(store: Any) -> None:
    assert store.increment("i") == 1
    r = store.increment("i", 41)
    assert r == 42 and type(r) is int
    f = store.increment("i", 0.5)
    assert f == 42.5 and type(f) is float
    store.set("f", 1.5)
    assert store.increment("f", 1) == 2.5
    assert store.increment("neg", -3) == -3
    big = store.increment("big", 2**64)
    assert big == 2**64 and type(big) is int
    assert store.get("i") == 42.5


def test_increment_keeps_ttl_and_missing_or_expired_gets_none(store: Any) -> None:
    store.set("k", 1, ttl=100)
    store.increment("k")
    remaining = store.ttl("k")
    assert remaining is not None and remaining > 99
    assert store.get("k") == 2
    store.set("e", 10, ttl=TTL)
    time.sleep(TTL + 0.05)
    assert store.increment("e", 5) == 5  # expired counts as 0
    assert store.ttl("e") is None and store.exists("e")
    store.increment("fresh")
    assert store.ttl("fresh") is None


@pytest.mark.parametrize("value", ["5", b"5", True, None, [1], {"n": 1}])
def test_increment_non_number_is_refused_and_value_kept(store: Any, value: Any) -> None:
    store.set("k", value)
    with pytest.raises(ValidationError):
        store.increment("k")
    assert store.get("k", "<missing>") == value


@pytest.mark.parametrize("amount", [True, "1", float("nan"), float("inf"), None])
def test_increment_bad_amount_is_refused(store: Any, amount: Any) -> None:
    with pytest.raises(ValidationError):
        store.increment("k", amount)
    assert store.exists("k") is False


def test_increment_overflow_to_infinity_is_refused_and_rolled_back(store: Any) -> None:
    store.set("k", 1e308)
    with pytest.raises(ValidationError):
        store.increment("k", 1e308)
    assert store.get("k") == 1e308


@pytest.mark.parametrize("where", ["file", "memory"])
def test_increment_is_atomic_across_threads(db: Path, where: str) -> None:
    s = SQLiteStateStore(path=db) if where == "file" else SQLiteStateStore("sqlite:///:memory:")
    threads, rounds = 8, 200
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def work() -> None:
        try:
            start.wait()
            for _ in range(rounds):
                s.increment("counter")
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    try:
        assert errors == []
        assert s.get("counter") == threads * rounds
    finally:
        s.close()


def _increment_in_child(path: str, rounds: int) -> None:
    with SQLiteStateStore(path=path, namespace="procs") as s:
        for _ in range(rounds):
            s.increment("counter")


def test_increment_is_atomic_across_processes(db: Path) -> None:
    SQLiteStateStore(path=db).close()  # create the schema up front
    ctx = multiprocessing.get_context("spawn")
    rounds = 100
    procs = [ctx.Process(target=_increment_in_child, args=(str(db), rounds)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    with SQLiteStateStore(path=db, namespace="procs") as s:
        assert s.get("counter") == 2 * rounds


# -- keys -----------------------------------------------------------------------------------------------

def test_keys_glob_and_prefix_sorted(store: Any) -> None:
    names = ["user:2", "user:10", "user:1", "users", "admin:1", "u", "user:%", "user_x", "ab", "ac", "b"]
    store.set_many({k: 1 for k in names})
    assert store.keys() == sorted(names)
    assert store.keys("user:*") == ["user:%", "user:1", "user:10", "user:2"]
    assert store.keys(prefix="user:") == ["user:%", "user:1", "user:10", "user:2"]
    assert store.keys("user:?") == ["user:%", "user:1", "user:2"]
    assert store.keys("a[bc]") == ["ab", "ac"]
    assert store.keys("[!u]*") == ["ab", "ac", "admin:1", "b"]
    assert store.keys("*:1", prefix="user") == ["user:1"]
    assert store.keys("*1", prefix="admin") == ["admin:1"]
    assert store.keys("admin*", prefix="user") == []
    assert store.keys("U*") == []  # case-sensitive
    assert store.keys(prefix="") == sorted(names)
    assert store.keys("nomatch") == []


def test_keys_prefix_is_literal_not_like(store: Any) -> None:
    # Characters that mean something to LIKE or GLOB in SQL must be plain characters in a prefix.
    store.set_many({k: 1 for k in ["a%b", "axb", "a_b", "a\\b", "a*b", "a[b", "a?b"]})
    assert store.keys(prefix="a%") == ["a%b"]
    assert store.keys(prefix="a_") == ["a_b"]
    assert store.keys(prefix="a\\") == ["a\\b"]
    assert store.keys(prefix="a*") == ["a*b"]
    assert store.keys(prefix="a[") == ["a[b"]
    assert store.keys("a[[]b") == ["a[b"]
    assert store.keys("a[*]b") == ["a*b"]


def test_keys_prefix_at_the_edges_of_unicode(store: Any) -> None:
    keys = ["a\U0010ffff", "a\U0010ffffz", "b", "\ud7ffx", "\ue000", "é", "éa"]
    store.set_many({k: 1 for k in keys})
    assert store.keys(prefix="a\U0010ffff") == ["a\U0010ffff", "a\U0010ffffz"]
    assert store.keys(prefix="a") == ["a\U0010ffff", "a\U0010ffffz"]
    assert store.keys(prefix="\ud7ff") == ["\ud7ffx"]
    assert store.keys(prefix="é") == ["é", "éa"]
    assert store.keys() == sorted(keys)


# -- batches --------------------------------------------------------------------------------------------

def test_batches_larger_than_sqlite_variable_limit(store: Any) -> None:
    items = {f"k{i:05d}": i for i in range(2500)}
    store.set_many(items)
    assert store.get_many(list(items) + ["missing"]) == items
    assert len(store.keys(prefix="k")) == 2500
    assert store.delete_many([*items, "k00000", "missing"]) == 2500
    assert store.keys() == []


def test_batch_edge_cases(store: Any) -> None:
    store.set_many({})
    assert store.get_many([]) == {}
    assert store.delete_many([]) == 0
    store.set_many({"a": 1, "b": 2}, ttl=100)
    assert store.get_many(iter(["b", "a", "b"])) == {"b": 2, "a": 1}
    assert store.ttl("a") is not None
    with pytest.raises(ValidationError):
        store.get_many("ab")  # a bare string is not a list of keys
    with pytest.raises(ValidationError):
        store.delete_many("ab")
    with pytest.raises(ValidationError):
        store.set_many([("a", 1)])  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        store.delete_many(["a", ""])
    assert store.get_many(["a", "b"]) == {"a": 1, "b": 2}  # the failed delete removed nothing


# -- hostile and invalid input --------------------------------------------------------------------------

def test_hostile_key_is_just_data(store: Any, db: Path) -> None:
    store.set(HOSTILE, HOSTILE)
    assert store.get(HOSTILE) == HOSTILE
    assert store.keys(prefix="'; DROP") == [HOSTILE]
    assert store.keys("*DROP TABLE*") == [HOSTILE]
    assert store.increment(HOSTILE + "n") == 1
    assert store.delete(HOSTILE) is True
    assert raw_rows(db) == [("", HOSTILE + "n", None)]


@pytest.mark.parametrize("namespace", [HOSTILE, "a b", "x*", "n" * 129, "ns\x00", 5])
def test_hostile_namespace_is_refused(db: Path, namespace: Any) -> None:
    with pytest.raises(InvalidIdentifierError):
        SQLiteStateStore(path=db, namespace=namespace)


@pytest.mark.parametrize("prefix", [HOSTILE, "1abc", "a-b", "x" * 40])
def test_hostile_table_prefix_is_refused(db: Path, prefix: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        SQLiteStateStore(path=db, table_prefix=prefix)
    assert not db.exists() or raw_rows_tables(db) == []


def raw_rows_tables(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    finally:
        conn.close()


@pytest.mark.parametrize("key", ["", None, 5, b"k", "nul\x00", "lone\ud800surrogate"])
def test_invalid_keys_are_refused(store: Any, key: Any) -> None:
    with pytest.raises(ValidationError):
        store.set(key, 1)
    for call in (store.get, store.exists, store.delete, store.ttl, store.increment):
        with pytest.raises(ValidationError):
            call(key)
    with pytest.raises(ValidationError):
        store.expire(key, 1)
    with pytest.raises(ValidationError):
        store.get_many(["ok", key])


@pytest.mark.parametrize("bad", [5, b"x", "\ud800"])
def test_invalid_pattern_or_prefix_is_refused(store: Any, bad: Any) -> None:
    with pytest.raises(ValidationError):
        store.keys(bad)
    with pytest.raises(ValidationError):
        store.keys(prefix=bad)


# -- construction, schema, lifecycle --------------------------------------------------------------------

def test_migration_is_recorded(db: Path) -> None:
    with SQLiteStateStore(path=db, table_prefix="app_"):
        pass
    with SQLiteStateStore(path=db, table_prefix="app_"):  # reopening does not re-run it
        pass
    conn = sqlite3.connect(db)
    try:
        versions = conn.execute("SELECT component, version FROM app_schema_versions").fetchall()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        ddl = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'app_state'").fetchone()[0]
    finally:
        conn.close()
    assert versions == [("state", len(MIGRATIONS))]
    assert {"app_state", "app_schema_versions", "app_state_expires_at"} <= tables
    assert "WITHOUT ROWID" in ddl


def test_newer_schema_is_refused(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    future = (*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "from the future", ("SELECT 1",)))
    monkeypatch.setattr("storebridge.adapters.sqlite.state.MIGRATIONS", future)
    SQLiteStateStore(path=db).close()
    monkeypatch.undo()
    with pytest.raises(SchemaVersionError):
        SQLiteStateStore(path=db)


def test_memory_store_is_not_persistent_and_private() -> None:
    with SQLiteStateStore("sqlite:///:memory:") as a, SQLiteStateStore("sqlite:///:memory:") as b:
        assert a.capabilities.persistent is False
        assert SQLiteStateStore.capabilities.persistent is True  # the class default is untouched
        assert a.capabilities.atomic_increment is True and a.capabilities.native_ttl is False
        a.set("k", 1)
        assert b.get("k") is None


def test_default_path_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "zero-config.db"
    monkeypatch.setenv("STOREBRIDGE_DB", str(target))
    with SQLiteStateStore() as s:
        s.set("k", 1)
        assert s.backend_name == "sqlite"
    assert [row[1] for row in raw_rows(target)] == ["k"]


@pytest.mark.parametrize("kwargs", [
    {"url": "postgresql://u:p@h/db"},
    {"url": "sqlite:///x.db?namespace=a", "namespace": "b"},
    {"url": "sqlite:///x.db?colour=blue"},
    {"url": "not a url"},
])
def test_bad_configuration_is_refused(kwargs: dict[str, Any], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError):
        SQLiteStateStore(**kwargs)


def test_url_and_path_together_are_refused(db: Path) -> None:
    with pytest.raises(ConfigurationError):
        SQLiteStateStore(f"sqlite:///{db}", path=db)


def test_closed_store_refuses_every_operation(db: Path) -> None:
    s = SQLiteStateStore(path=db)
    s.set("k", 1)
    s.close()
    s.close()  # twice is fine
    calls = [
        lambda: s.get("k"), lambda: s.set("k", 2), lambda: s.delete("k"), lambda: s.exists("k"),
        lambda: s.get_many(["k"]), lambda: s.get_many([]),
        lambda: s.set_many({"k": 1}), lambda: s.set_many({}),
        lambda: s.delete_many(["k"]), lambda: s.delete_many([]), lambda: s.keys(), lambda: s.ttl("k"),
        lambda: s.expire("k", 1), lambda: s.increment("k"), lambda: s.clear(), lambda: s.purge_expired(),
    ]
    for call in calls:
        with pytest.raises(StoreClosedError):
            call()


def test_is_a_state_store_and_thread_safe_for_mixed_use(store: Any) -> None:
    assert isinstance(store, StateStore)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(50):
                store.set(f"t{n}:{i}", i, ttl=100 if i % 2 else None)
                assert store.get(f"t{n}:{i}") == i
                store.keys(prefix=f"t{n}:")
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert errors == []
    assert len(store.keys()) == 300


@pytest.mark.asyncio
async def test_async_face(store: Any) -> None:
    face = store.as_async()
    assert isinstance(face, AsyncStateStore)
    assert face.as_sync() is store
    assert face.capabilities is store.capabilities
    await face.set("a", {"x": 1}, ttl=100)
    await face.set_many({"b": b"raw", "c": "text"})
    assert await face.get("a") == {"x": 1}
    assert await face.get_many(["b", "c", "zz"]) == {"b": b"raw", "c": "text"}
    assert await face.exists("a") is True
    assert await face.keys("[ab]") == ["a", "b"]
    assert (await face.ttl("a") or 0) > 99
    assert await face.expire("a", None) is True
    counts = await asyncio.gather(*(face.increment("n") for _ in range(20)))
    assert sorted(counts) == list(range(1, 21))
    assert await face.delete("a") is True
    assert await face.delete_many(["b", "zz"]) == 1
    with pytest.raises(ValidationError):
        await face.increment("c")
    assert await face.clear() == 2
    await face.close()
    with pytest.raises(StoreClosedError):
        await face.get("n")
