"""Conformance cases for state (key-value) stores: typed values, TTL, glob keys, batches, atomic
increments, namespaces that really isolate, and persistence."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
import pytest_asyncio

from ..errors import InvalidIdentifierError, ValidationError
from ..state import StateCapabilities, key_matches
from ._facade import StoreFacade
from ._suite import (
    OpenStore,
    StoreSuite,
    assert_same_json,
    expect_error,
    run_workers,
    skip_not_declared,
    unique,
)
from .data import HOSTILE_NAMESPACES, STATE_KEYS, STATE_PATTERNS, STATE_VALUES

#: Short TTLs keep the suite fast; the sleep leaves a wide margin for slow engines and CI.
#: Seconds a "short" key lives in the TTL cases, and how long the case waits for it to be gone. Long enough
#: for a network engine on a loaded machine to answer the checks made before expiry; a slow backend's
#: suite subclass can raise both (``short_ttl`` / ``past_ttl`` class attributes).
SHORT_TTL = 1.0
PAST_TTL = 1.6
BAD_TTLS: list[Any] = [0, -1, float("nan"), float("inf"), "x", True]


def fresh_namespace() -> str:
    return unique("t", 10)


class StateStoreSuite(StoreSuite):
    """Subclass this and define ``store_factory`` (accepting ``namespace=``) to run every state case."""

    capabilities_type = StateCapabilities
    short_ttl: float = SHORT_TTL
    past_ttl: float = PAST_TTL

    @pytest.fixture
    def namespace(self) -> str:
        """A fresh namespace per test, so cases never see each other's keys on a shared server."""
        return fresh_namespace()

    @pytest_asyncio.fixture
    async def store(self, open_store: OpenStore, namespace: str) -> StoreFacade:  # type: ignore[override]
        return await open_store(namespace=namespace)

    async def probe(self, s: StoreFacade) -> Any:
        return await s.get("probe")

    # -- values ----------------------------------------------------------------------------------------

    async def test_values_round_trip_with_type(self, store: StoreFacade) -> None:
        for i, value in enumerate(STATE_VALUES):
            await store.set(f"k{i}", value)
        for i, value in enumerate(STATE_VALUES):
            assert_same_json(await store.get(f"k{i}", "default"), value, f"value {value!r}")
        got = await store.get_many([f"k{i}" for i in range(len(STATE_VALUES))])
        assert set(got) == {f"k{i}" for i in range(len(STATE_VALUES))}, "get_many must include stored None"
        for i, value in enumerate(STATE_VALUES):
            assert_same_json(got[f"k{i}"], value, f"get_many value {value!r}")

    async def test_unserialisable_values_rejected(self, store: StoreFacade) -> None:
        for value in (object(), {1, 2}, float("nan"), {"x": float("inf")}, [1, object()]):
            await expect_error(ValidationError, store.set("bad", value), f"set() of {value!r}")
        with pytest.raises(ValidationError):
            await store.set_many({"good": 1, "bad": object()})
        assert await store.keys() == [], "nothing of a rejected write may be stored"

    async def test_get_set_delete_exists(self, store: StoreFacade) -> None:
        assert await store.get("missing") is None
        assert await store.get("missing", "fallback") == "fallback"
        assert await store.exists("missing") is False
        await store.set("k", "v1")
        await store.set("k", {"v": 2})
        assert await store.get("k") == {"v": 2}
        assert await store.exists("k") is True
        await store.set("none", None)
        assert await store.exists("none") is True, "a stored None is a value, not a missing key"
        assert await store.get("none", "fallback") is None
        assert await store.delete("k") is True
        assert await store.delete("k") is False
        assert await store.exists("k") is False
        assert await store.get("k", 0) == 0

    async def test_invalid_keys_rejected(self, store: StoreFacade) -> None:
        for key in ("", "nul\x00", None, 5):
            for operation, args in [("get", (key,)), ("set", (key, 1)), ("delete", (key,)), ("exists", (key,)),
                                    ("ttl", (key,)), ("increment", (key,))]:
                await expect_error(ValidationError, getattr(store, operation)(*args), f"{operation}({key!r})")
        with pytest.raises(ValidationError):
            await store.set_many({"ok": 1, "": 2})
        assert await store.keys() == []

    async def test_odd_keys_are_data(self, store: StoreFacade) -> None:
        keys = ["'; DROP TABLE kv; --", "../../etc/passwd", "a/b\\c", "日本:🚀", "*", "%", "_", "k" * 500, " "]
        await store.set_many({key: key for key in keys})
        assert await store.keys() == sorted(keys)
        for key in keys:
            assert await store.get(key) == key
        assert await store.delete_many(keys) == len(keys)

    # -- TTL -------------------------------------------------------------------------------------------

    async def test_ttl_expiry(self, store: StoreFacade) -> None:
        """An expired key is gone from every read, whatever the engine's own lazy expiry does."""
        await store.set("short", "v", ttl=self.short_ttl)
        await store.set_many({"many1": 1, "many2": 2}, ttl=self.short_ttl)
        await store.set("counter", 100, ttl=self.short_ttl)
        await store.set("stays", "v")
        for key in ("short", "many1", "many2", "counter"):
            assert await store.exists(key) is True
            remaining = await store.ttl(key)
            assert remaining is not None and 0 < remaining <= self.short_ttl, f"ttl({key!r}) = {remaining!r}"
        await asyncio.sleep(self.past_ttl)
        assert await store.get("short", "gone") == "gone"
        assert await store.exists("short") is False
        assert await store.ttl("short") is None
        assert await store.keys() == ["stays"]
        assert await store.get_many(["short", "many1", "many2", "stays"]) == {"stays": "v"}
        assert await store.expire("many1", 10) is False, "expire() on an expired key must say it is missing"
        assert await store.delete("many2") is False
        assert await store.increment("counter", 1) == 1, "an expired counter counts as missing"
        assert await store.ttl("counter") is None
        assert await store.keys() == ["counter", "stays"]

    async def test_ttl_and_expire(self, store: StoreFacade) -> None:
        await store.set("plain", 1)
        assert await store.ttl("plain") is None
        assert await store.ttl("missing") is None
        assert await store.expire("plain", 100) is True
        remaining = await store.ttl("plain")
        assert remaining is not None and 90 < remaining <= 100
        assert await store.expire("plain", None) is True
        assert await store.ttl("plain") is None
        assert await store.get("plain") == 1
        assert await store.expire("missing", 10) is False
        assert await store.exists("missing") is False, "expire() must not create a key"

    async def test_set_replaces_value_and_ttl(self, store: StoreFacade) -> None:
        await store.set("k", "old", ttl=100)
        await store.set("k", "new")
        assert await store.get("k") == "new"
        assert await store.ttl("k") is None, "set() without ttl must drop the old TTL"
        await store.set("k", "newer", ttl=50)
        remaining = await store.ttl("k")
        assert remaining is not None and 40 < remaining <= 50

    async def test_bad_ttl_rejected(self, store: StoreFacade) -> None:
        await store.set("k", "v")
        for ttl in BAD_TTLS:
            for operation, args in [("set", ("new", 1)), ("set_many", ({"new": 1},))]:
                await expect_error(ValidationError, getattr(store, operation)(*args, ttl=ttl), f"{operation}(ttl={ttl!r})")
            await expect_error(ValidationError, store.expire("k", ttl), f"expire(ttl={ttl!r})")
        assert await store.keys() == ["k"]
        assert await store.ttl("k") is None

    # -- keys and batches ------------------------------------------------------------------------------

    async def test_keys_patterns_and_prefix(self, store: StoreFacade) -> None:
        await store.set_many({key: i for i, key in enumerate(STATE_KEYS)})
        for pattern, prefix in STATE_PATTERNS:
            expected = sorted(k for k in STATE_KEYS if key_matches(k, pattern, prefix))
            assert await store.keys(pattern, prefix=prefix) == expected, f"keys({pattern!r}, prefix={prefix!r})"
        assert any(0 < sum(key_matches(k, p, q) for k in STATE_KEYS) < len(STATE_KEYS) for p, q in STATE_PATTERNS)

    async def test_get_many_set_many_delete_many(self, store: StoreFacade) -> None:
        items = {"a": 1, "b": "two", "c": [3], "d": None}
        await store.set_many(items)
        assert await store.get_many(["a", "missing", "c", "d"]) == {"a": 1, "c": [3], "d": None}
        assert await store.get_many([]) == {}
        await store.set_many({"a": 10, "e": 5}, ttl=100)
        assert await store.get("a") == 10
        for key in ("a", "e"):
            remaining = await store.ttl(key)
            assert remaining is not None and 0 < remaining <= 100
        assert await store.ttl("b") is None
        assert await store.delete_many(["a", "b", "missing"]) == 2
        assert await store.delete_many([]) == 0
        assert await store.keys() == ["c", "d", "e"]

    # -- increment -------------------------------------------------------------------------------------

    async def test_increment(self, store: StoreFacade) -> None:
        assert_same_json(await store.increment("n", 5), 5, "increment of a missing key")
        assert_same_json(await store.increment("n"), 6, "default amount")
        assert_same_json(await store.increment("n", -10), -4, "negative amount")
        assert_same_json(await store.get("n"), -4, "stored int")
        assert_same_json(await store.increment("f", 0.5), 0.5, "float amount on a missing key")
        assert_same_json(await store.increment("n", 1.5), -2.5, "int + float")
        assert_same_json(await store.get("n"), -2.5, "stored float")
        await store.set("ttl", 1, ttl=100)
        assert await store.increment("ttl", 1) == 2
        remaining = await store.ttl("ttl")
        assert remaining is not None and 0 < remaining <= 100, "increment must keep the TTL"

    async def test_increment_rejects_non_numbers(self, store: StoreFacade) -> None:
        for value in ("5", "x", True, [1], {"n": 1}, None, b"1"):
            await store.set("v", value)
            await expect_error(ValidationError, store.increment("v", 1), f"increment() of stored {value!r}")
            assert_same_json(await store.get("v"), value, "a failed increment must not change the value")
        for amount in ("1", float("nan"), float("inf"), True, None):
            await expect_error(ValidationError, store.increment("n", amount), f"increment(amount={amount!r})")
        assert await store.exists("n") is False

    async def test_increment_is_atomic(self, store: StoreFacade) -> None:
        """Sync face: 8 threads x 100 (each also adding 0.5 to a float 100 times); async face: 50 tasks x 20.
        The totals must be exact."""

        def bump(face: Any, worker: int, step: int) -> Any:
            return face.increment("total") if step % 2 == 0 else face.increment("float", 0.5)

        workers, steps = await run_workers(store, bump, threads=(8, 200), tasks=(50, 40))
        per_worker = steps // 2
        assert_same_json(await store.get("total"), workers * per_worker, "concurrent int total")
        total = await store.get("float")
        assert math.isclose(total, workers * per_worker * 0.5), f"concurrent float total {total}"

    # -- namespaces ------------------------------------------------------------------------------------

    async def test_namespaces_are_isolated(self, open_store: OpenStore, namespace: str) -> None:
        a = await open_store(namespace=namespace + "a")
        b = await open_store(namespace=namespace + "b")
        await a.set("shared", "from a")
        await b.set("shared", "from b")
        await b.set("foreign", 1, ttl=100)
        assert await a.get("shared") == "from a" and await b.get("shared") == "from b"
        assert await a.exists("foreign") is False
        assert await a.keys() == ["shared"]
        assert await a.get_many(["shared", "foreign"]) == {"shared": "from a"}
        assert await a.delete("foreign") is False
        assert await a.delete_many(["foreign"]) == 0
        assert await a.expire("foreign", 5) is False
        assert await a.clear() == 1
        assert await b.keys() == ["foreign", "shared"], "clear() must leave other namespaces alone"
        assert await b.get("shared") == "from b"
        assert await a.clear() == 0

    async def test_namespace_prefixes_do_not_collide(self, open_store: OpenStore, namespace: str) -> None:
        """Namespaces ``ns`` and ``ns:x`` (or ``ns_x``) must stay apart even when a backend joins namespace
        and key into one string; clear() on ``ns`` must not match ``ns:x``'s keys by prefix."""
        outer = await open_store(namespace=namespace)
        inners = [await open_store(namespace=namespace + sep + "x") for sep in (":", "_", "/", ".")]
        for inner in inners:
            await inner.set("k", "inner")
        await outer.set("x:k", "outer")
        await outer.set("x_k", "outer")
        assert await outer.keys() == ["x:k", "x_k"]
        for inner in inners:
            assert await inner.keys() == ["k"] and await inner.get("k") == "inner"
        assert await outer.clear() == 2
        for inner in inners:
            assert await inner.get("k") == "inner"

    async def test_invalid_namespace_rejected(self, open_store: OpenStore) -> None:
        async def open_and_write(namespace: str) -> None:
            opened = await open_store(namespace=namespace)
            await opened.set("k", "v")  # a backend may validate lazily, on first use

        for namespace in HOSTILE_NAMESPACES:
            await expect_error(InvalidIdentifierError, open_and_write(namespace), f"namespace {namespace!r}")

    # -- persistence -----------------------------------------------------------------------------------

    async def test_persists_across_reopen(self, store: StoreFacade, open_store: OpenStore, namespace: str) -> None:
        if not store.capabilities.persistent:
            skip_not_declared("persistent=False", "data need not survive closing the store object")
        await store.set("plain", {"v": [1, 2]})
        await store.set("bytes", b"\x00\x01")
        await store.set("ttl", "x", ttl=100)
        await store.close()
        reopened = await open_store(namespace=namespace)
        assert await reopened.get("plain") == {"v": [1, 2]}
        assert await reopened.get("bytes") == b"\x00\x01"
        remaining = await reopened.ttl("ttl")
        assert remaining is not None and 0 < remaining <= 100, "the TTL must survive a reopen"
        other = await open_store(namespace=namespace + "other")
        assert await other.keys() == []

    async def test_second_object_sees_writes(self, store: StoreFacade, open_store: OpenStore, namespace: str) -> None:
        """Two objects over one database (what every factory call gives) share data, persistent or not."""
        second = await open_store(namespace=namespace)
        await store.set("k", "v")
        assert await second.get("k") == "v"
        assert await second.increment("n", 2) == 2
        assert await store.get("n") == 2


__all__ = ["StateStoreSuite"]
