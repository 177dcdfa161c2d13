"""Unit tests of the in-process memory state store (storebridge.adapters.memory)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from storebridge import STATE_STORES
from storebridge.adapters.memory import SNAPSHOT_FORMAT, MemoryBacking, MemoryStateStore
from storebridge.errors import (
    ConfigurationError,
    InvalidIdentifierError,
    OperationFailedError,
    SchemaVersionError,
    StoreClosedError,
    ValidationError,
)
from storebridge.state import StateStore, encode_value

SHORT_TTL = 0.2


@pytest.fixture
def store() -> Iterator[MemoryStateStore]:
    with MemoryStateStore() as opened:
        yield opened


# -- values -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    "text", "", "ünïcødé ✓", b"\x00\xffbytes", b"", 0, -7, 2**80, 1.5, True, False, None,
    [1, "two", [3.0]], {"nested": {"list": [1, 2], "none": None}}, [],
])
def test_values_round_trip_with_their_type(store: MemoryStateStore, value: object) -> None:
    store.set("k", value)
    got = store.get("k", default="missing")
    assert got == value
    assert type(got) is type(value)


def test_bytearray_comes_back_as_bytes(store: MemoryStateStore) -> None:
    store.set("k", bytearray(b"abc"))
    assert store.get("k") == b"abc" and type(store.get("k")) is bytes


def test_stored_value_is_a_copy_both_ways(store: MemoryStateStore) -> None:
    original = {"items": [1, 2]}
    store.set("k", original)
    original["items"].append(3)
    assert store.get("k") == {"items": [1, 2]}
    returned = store.get("k")
    returned["items"].append(99)
    assert store.get("k") == {"items": [1, 2]}


def test_unserialisable_value_is_rejected_and_nothing_written(store: MemoryStateStore) -> None:
    with pytest.raises(ValidationError):
        store.set_many({"good": 1, "bad": object()})
    with pytest.raises(ValidationError):
        store.set("nan", float("nan"))
    assert store.keys() == []


def test_missing_key_gives_default(store: MemoryStateStore) -> None:
    assert store.get("nope") is None
    assert store.get("nope", 42) == 42
    assert not store.exists("nope")


@pytest.mark.parametrize("key", ["", 5, None, b"k", "a\x00b"])
def test_bad_keys_are_rejected(store: MemoryStateStore, key: object) -> None:
    with pytest.raises(ValidationError):
        store.set(key, 1)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        store.get(key)  # type: ignore[arg-type]


def test_batch_operations(store: MemoryStateStore) -> None:
    store.set_many({"a": 1, "b": "two", "c": b"3"})
    assert store.get_many(["a", "c", "missing"]) == {"a": 1, "c": b"3"}
    assert store.delete_many(["a", "missing", "a"]) == 1
    assert store.delete("b") is True
    assert store.delete("b") is False
    assert store.keys() == ["c"]


def test_batch_of_keys_must_not_be_a_single_string(store: MemoryStateStore) -> None:
    with pytest.raises(ValidationError, match="single str"):
        store.get_many("abc")
    with pytest.raises(ValidationError):
        store.set_many([("a", 1)])  # type: ignore[arg-type]


def test_keys_are_sorted_and_filtered(store: MemoryStateStore) -> None:
    store.set_many({"user:2": 1, "user:10": 1, "session:1": 1, "User:3": 1})
    assert store.keys() == ["User:3", "session:1", "user:10", "user:2"]
    assert store.keys("user:*") == ["user:10", "user:2"]
    assert store.keys("user:?") == ["user:2"]
    assert store.keys(prefix="session:") == ["session:1"]
    assert store.keys("*:1*", prefix="user") == ["user:10"]


# -- TTL ----------------------------------------------------------------------------------------------------


def test_expired_keys_are_never_returned(store: MemoryStateStore) -> None:
    store.set("short", "v", ttl=SHORT_TTL)
    store.set_many({"batch": 1}, ttl=SHORT_TTL)
    store.set("forever", "v")
    assert store.get("short") == "v" and store.exists("batch")
    time.sleep(SHORT_TTL + 0.05)
    assert store.get("short", "gone") == "gone"
    assert not store.exists("batch")
    assert store.get_many(["short", "batch", "forever"]) == {"forever": "v"}
    assert store.keys() == ["forever"]
    assert store.ttl("short") is None
    assert store.expire("short", 10) is False
    assert store.delete("short") is False
    assert store.increment("batch") == 1  # an expired counter starts again from 0


def test_ttl_reports_remaining_seconds(store: MemoryStateStore) -> None:
    store.set("k", 1, ttl=10)
    remaining = store.ttl("k")
    assert remaining is not None and 9 < remaining <= 10
    store.set("plain", 1)
    assert store.ttl("plain") is None
    assert store.ttl("missing") is None


def test_set_replaces_ttl_and_expire_none_removes_it(store: MemoryStateStore) -> None:
    store.set("k", 1, ttl=SHORT_TTL)
    store.set("k", 2)
    assert store.ttl("k") is None
    store.expire("k", SHORT_TTL)
    assert store.expire("k", None) is True
    time.sleep(SHORT_TTL + 0.05)
    assert store.get("k") == 2


def test_expire_sets_a_ttl_that_expires(store: MemoryStateStore) -> None:
    store.set("k", 1)
    assert store.expire("k", SHORT_TTL) is True
    time.sleep(SHORT_TTL + 0.05)
    assert not store.exists("k")


def test_increment_keeps_ttl(store: MemoryStateStore) -> None:
    store.set("counter", 1, ttl=SHORT_TTL)
    assert store.increment("counter") == 2
    assert store.ttl("counter") is not None
    time.sleep(SHORT_TTL + 0.05)
    assert store.get("counter") is None


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), float("nan"), True, "10"])
def test_bad_ttls_are_rejected(store: MemoryStateStore, ttl: object) -> None:
    with pytest.raises(ValidationError):
        store.set("k", 1, ttl=ttl)  # type: ignore[arg-type]
    store.set("k", 1)
    with pytest.raises(ValidationError):
        store.expire("k", ttl)  # type: ignore[arg-type]


def test_clear_counts_only_live_keys(store: MemoryStateStore) -> None:
    store.set("short", 1, ttl=SHORT_TTL)
    store.set_many({"a": 1, "b": 2})
    time.sleep(SHORT_TTL + 0.05)
    assert store.clear() == 2
    assert store.keys() == []


# -- increment ----------------------------------------------------------------------------------------------


def test_increment_types(store: MemoryStateStore) -> None:
    assert store.increment("n") == 1
    result = store.increment("n", 5)
    assert result == 6 and type(result) is int
    result = store.increment("n", 0.5)
    assert result == 6.5 and type(result) is float
    assert store.get("n") == 6.5
    store.set("f", 1.0)
    result = store.increment("f", 2)
    assert result == 3.0 and type(result) is float
    assert store.increment("neg", -3) == -3


@pytest.mark.parametrize("stored", ["5", b"5", True, [1], {"n": 1}, None])
def test_increment_rejects_non_numeric_values(store: MemoryStateStore, stored: object) -> None:
    store.set("k", stored)
    with pytest.raises(ValidationError):
        store.increment("k")
    assert store.get("k") == stored


@pytest.mark.parametrize("amount", [True, "1", float("nan"), float("inf"), None])
def test_increment_rejects_bad_amounts(store: MemoryStateStore, amount: object) -> None:
    with pytest.raises(ValidationError):
        store.increment("k", amount)  # type: ignore[arg-type]
    assert not store.exists("k")


def test_increment_overflow_is_a_validation_error(store: MemoryStateStore) -> None:
    store.set("k", 1.7e308)
    with pytest.raises(ValidationError, match="overflow"):
        store.increment("k", 1.7e308)
    store.set("big", 10**400)
    with pytest.raises(ValidationError, match="overflow"):
        store.increment("big", 1.5)
    assert store.get("k") == 1.7e308


def test_increment_is_atomic_across_threads(store: MemoryStateStore) -> None:
    threads, rounds = 8, 200
    start = threading.Barrier(threads)

    def work() -> None:
        start.wait()
        for _ in range(rounds):
            store.increment("counter")

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert store.get("counter") == threads * rounds


# -- namespaces and shared backings ----------------------------------------------------------------------


def test_namespaces_on_a_shared_backing_are_isolated() -> None:
    shared = MemoryStateStore.new_backing()
    app, other, default = (MemoryStateStore(namespace=ns, data=shared) for ns in ("app", "other", ""))
    app.set("k", "app")
    other.set("k", "other")
    default.set("k", "default")
    other.set("only-other", 1)
    assert (app.get("k"), other.get("k"), default.get("k")) == ("app", "other", "default")
    assert app.keys() == ["k"]
    assert other.keys() == ["k", "only-other"]
    assert app.clear() == 1
    assert app.keys() == [] and other.get("k") == "other" and default.get("k") == "default"


def test_same_namespace_on_a_shared_backing_sees_the_same_data() -> None:
    shared = MemoryBacking()
    first, second = MemoryStateStore(namespace="ns", data=shared), MemoryStateStore(namespace="ns", data=shared)
    first.set("k", 1, ttl=60)
    assert second.get("k") == 1 and second.ttl("k") is not None
    first.close()
    assert second.increment("k") == 2  # closing one store leaves the backing usable by others


def test_private_backings_are_separate() -> None:
    first, second = MemoryStateStore(), MemoryStateStore()
    first.set("k", 1)
    assert second.get("k") is None


def test_namespace_prefix_cannot_collide_with_keys() -> None:
    shared = MemoryBacking()
    short, long = MemoryStateStore(namespace="a", data=shared), MemoryStateStore(namespace="a:b", data=shared)
    short.set("b:c", "short")
    assert long.keys() == [] and long.get("c") is None


@pytest.mark.parametrize("namespace", ["has space", "glob*", "x" * 129])
def test_bad_namespaces_are_rejected(namespace: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        MemoryStateStore(namespace=namespace)


# -- URLs ---------------------------------------------------------------------------------------------------


def test_url_gives_namespace_and_snapshot_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = MemoryStateStore("memory:///snap.json?namespace=app")
    assert relative.namespace == "app"
    assert relative.snapshot_path == str(tmp_path / "snap.json")
    absolute = MemoryStateStore(f"memory:///{tmp_path}/sub/abs.json")
    assert absolute.snapshot_path == str(tmp_path / "sub" / "abs.json")
    assert (tmp_path / "sub").is_dir()  # created at open, so a bad path fails early
    plain = MemoryStateStore("memory://")
    assert plain.snapshot_path is None and plain.namespace == ""
    assert not plain.capabilities.persistent and absolute.capabilities.persistent
    assert MemoryStateStore.capabilities.persistent is False  # the class default: no snapshot


def test_registry_opens_memory_urls(tmp_path: Path) -> None:
    path = tmp_path / "dir with space" / "state.json"
    for scheme in ("memory", "mem"):
        store = STATE_STORES.from_url(f"{scheme}:///{path}?namespace=app")
        assert isinstance(store, MemoryStateStore)
        assert store.namespace == "app" and store.snapshot_path == str(path)
    assert isinstance(STATE_STORES.create("memory"), MemoryStateStore)


@pytest.mark.parametrize("url", [
    "sqlite:///x.db", "memory://host/x.json", "memory:///x.json?colour=red", "memory+fast://", "not a url",
])
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        MemoryStateStore(url)


def test_conflicting_options_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="namespace"):
        MemoryStateStore("memory://?namespace=a", namespace="b")
    assert MemoryStateStore("memory://?namespace=a", namespace="a").namespace == "a"
    with pytest.raises(ConfigurationError, match="snapshot_path"):
        MemoryStateStore(f"memory:///{tmp_path}/a.json", snapshot_path=tmp_path / "b.json")
    with pytest.raises(ConfigurationError, match="shared backing"):
        MemoryStateStore(snapshot_path=tmp_path / "a.json", data=MemoryBacking())
    with pytest.raises(ConfigurationError, match="MemoryBacking"):
        MemoryStateStore(data={})  # type: ignore[arg-type]
    shared = MemoryBacking(tmp_path / "a.json")
    assert MemoryStateStore(snapshot_path=tmp_path / "a.json", data=shared).snapshot_path == shared.snapshot_path


def test_repr_shows_namespace_and_snapshot_path(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = MemoryStateStore(namespace="app", snapshot_path=path)
    assert repr(store) == f"MemoryStateStore(namespace='app', snapshot_path={str(path)!r})"
    store.close()
    assert "closed" in repr(store)


# -- snapshots ----------------------------------------------------------------------------------------------


def test_snapshot_round_trip_with_ttl_bytes_and_namespaces(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    shared = MemoryBacking(path)
    app, other = MemoryStateStore(namespace="app", data=shared), MemoryStateStore(namespace="other", data=shared)
    app.set_many({"text": "hello", "raw": b"\x00\x01\xff", "doc": {"a": [1, 2.5, None]}, "n": 3})
    app.set("ttl", "soon", ttl=60)
    app.set("short", "gone", ttl=SHORT_TTL)
    other.set("k", "other")
    app.close()

    time.sleep(SHORT_TTL + 0.05)
    reopened = MemoryStateStore(namespace="app", snapshot_path=path)
    assert reopened.capabilities.persistent
    assert reopened.get_many(["text", "raw", "doc", "n", "ttl", "short"]) == {
        "text": "hello", "raw": b"\x00\x01\xff", "doc": {"a": [1, 2.5, None]}, "n": 3, "ttl": "soon",
    }
    assert type(reopened.get("raw")) is bytes
    remaining = reopened.ttl("ttl")
    assert remaining is not None and 50 < remaining <= 60
    assert reopened.ttl("text") is None
    # Other namespaces survive in the file even when opened with one namespace.
    reopened.close()
    assert MemoryStateStore(namespace="other", snapshot_path=path).get("k") == "other"


def test_snapshot_carries_data_to_another_process(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    writer = (
        "import sys\n"
        "from storebridge.adapters.memory import MemoryStateStore\n"
        "with MemoryStateStore(snapshot_path=sys.argv[1], namespace='p') as store:\n"
        "    store.set('k', b'from child', ttl=60)\n"
        "    store.increment('n', 3)\n"
    )
    subprocess.run([sys.executable, "-c", writer, str(path)], check=True, timeout=60)
    store = MemoryStateStore(snapshot_path=path, namespace="p")
    assert store.get_many(["k", "n"]) == {"k": b"from child", "n": 3}
    remaining = store.ttl("k")
    assert remaining is not None and 0 < remaining <= 60


def test_snapshot_file_format(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = MemoryStateStore(namespace="ns", snapshot_path=path)
    store.set("k", b"\x01")
    store.snapshot()
    document = json.loads(path.read_text("utf-8"))
    assert document["format"] == SNAPSHOT_FORMAT and document["version"] == 1
    record = document["namespaces"]["ns"]["k"]
    assert base64.b64decode(record["value"]) == encode_value(b"\x01")
    assert record["expires_at"] is None
    assert [name for name in os.listdir(tmp_path)] == ["state.json"]  # no temp file left behind


def test_snapshot_expiry_is_wall_clock(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = MemoryStateStore(snapshot_path=path)
    store.set("k", 1, ttl=100)
    store.close()
    expires_at = json.loads(path.read_text("utf-8"))["namespaces"][""]["k"]["expires_at"]
    assert abs(expires_at - (time.time() + 100)) < 5


def test_keys_expired_while_down_are_dropped_on_load(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    document = {"format": SNAPSHOT_FORMAT, "version": 1, "saved_at": 0, "namespaces": {"": {
        "old": {"value": base64.b64encode(encode_value("x")).decode(), "expires_at": time.time() - 1},
        "new": {"value": base64.b64encode(encode_value("y")).decode(), "expires_at": time.time() + 60},
    }}}
    path.write_text(json.dumps(document), "utf-8")
    assert MemoryStateStore(snapshot_path=path).keys() == ["new"]


def test_missing_snapshot_file_starts_empty_and_is_written_on_close(tmp_path: Path) -> None:
    path = tmp_path / "new.json"
    store = MemoryStateStore(snapshot_path=path)
    assert store.keys() == [] and not path.exists()
    store.set("k", 1)
    store.close()
    assert path.exists()


def test_snapshot_without_path_is_a_configuration_error(store: MemoryStateStore) -> None:
    with pytest.raises(ConfigurationError, match="snapshot_path"):
        store.snapshot()


@pytest.mark.parametrize("content", [
    "{not json",
    "[]",
    json.dumps({"format": "something else", "version": 1, "namespaces": {}}),
    json.dumps({"format": SNAPSHOT_FORMAT, "version": 1}),
    json.dumps({"format": SNAPSHOT_FORMAT, "version": 1, "namespaces": {"": {"k": {"value": "***"}}}}),
    json.dumps({"format": SNAPSHOT_FORMAT, "version": 1,
                "namespaces": {"": {"k": {"value": base64.b64encode(b"?bad tag").decode(), "expires_at": None}}}}),
    json.dumps({"format": SNAPSHOT_FORMAT, "version": 1,
                "namespaces": {"bad ns": {"k": {"value": base64.b64encode(b"s1").decode(), "expires_at": None}}}}),
    json.dumps({"format": SNAPSHOT_FORMAT, "version": 1,
                "namespaces": {"": {"k": {"value": base64.b64encode(b"s1").decode(), "expires_at": "soon"}}}}),
    json.dumps({"format": SNAPSHOT_FORMAT, "version": 1, "namespaces": {"": ["k"]}}),
])
def test_corrupt_snapshot_raises_naming_the_path(tmp_path: Path, content: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content, "utf-8")
    with pytest.raises(OperationFailedError) as caught:
        MemoryStateStore(snapshot_path=path)
    message = str(caught.value)
    assert str(path) in message and "corrupt" in message and "move it aside" in message
    assert path.read_text("utf-8") == content  # never overwritten


def test_newer_snapshot_version_asks_for_an_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"format": SNAPSHOT_FORMAT, "version": 99, "namespaces": {}}), "utf-8")
    with pytest.raises(SchemaVersionError, match="upgrade"):
        MemoryStateStore(snapshot_path=path)


def test_failed_snapshot_write_keeps_the_store_open(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = MemoryStateStore(snapshot_path=path)
    store.set("k", 1)
    path.mkdir()  # os.replace cannot put a file over a directory
    with pytest.raises(OperationFailedError, match="cannot write"):
        store.close()
    assert store.get("k") == 1
    assert [name for name in os.listdir(tmp_path)] == ["state.json"]  # temp file cleaned up
    path.rmdir()
    store.close()
    assert MemoryStateStore(snapshot_path=path).get("k") == 1


# -- lifecycle and the async face ------------------------------------------------------------------------


def test_closed_store_refuses_every_call() -> None:
    store = MemoryStateStore()
    store.set("k", 1)
    store.close()
    store.close()  # twice is fine
    calls = [
        lambda: store.get("k"), lambda: store.set("k", 1), lambda: store.delete("k"), lambda: store.exists("k"),
        lambda: store.get_many(["k"]), lambda: store.set_many({"k": 1}), lambda: store.delete_many(["k"]),
        lambda: store.keys(), lambda: store.ttl("k"), lambda: store.expire("k", 1),
        lambda: store.increment("k"), lambda: store.clear(), lambda: store.snapshot(),
    ]
    for call in calls:
        with pytest.raises(StoreClosedError):
            call()


def test_is_a_state_store_with_the_declared_capabilities(store: MemoryStateStore) -> None:
    assert isinstance(store, StateStore)
    assert store.backend_name == "memory"
    assert store.capabilities.atomic_increment and not store.capabilities.native_ttl


def test_async_face() -> None:
    store = MemoryStateStore()

    async def scenario() -> None:
        face = store.as_async()
        assert face.as_sync() is store
        assert face.capabilities is store.capabilities
        await face.set("k", {"v": 1}, ttl=60)
        assert await face.get("k") == {"v": 1}
        assert 0 < await face.ttl("k") <= 60
        results = await asyncio.gather(*(face.increment("n") for _ in range(50)))
        assert sorted(results) == list(range(1, 51))
        assert await face.keys() == ["k", "n"]
        assert await face.clear() == 2
        await face.close()
        with pytest.raises(StoreClosedError):
            await face.get("k")

    asyncio.run(scenario())


@pytest.mark.asyncio
async def test_async_face_with_pytest_asyncio() -> None:
    face = MemoryStateStore().as_async()
    await face.set_many({"a": b"1", "b": "2"})
    assert await face.get_many(["a", "b", "c"]) == {"a": b"1", "b": "2"}
    assert await face.delete_many(["a", "c"]) == 1
    assert await face.exists("b") and not await face.exists("a")
    await face.close()
