"""The Redis state store: key layout and glob escaping, value codecs, the command plans, URL parsing and
error mapping without a server; then what only a server can show (raw layout, foreign keys surviving
``clear()``, the increment script, twins of the other flavour, processes racing on one counter)."""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import json
import multiprocessing
import string
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio  # binds ``redis`` too
from hypothesis import given
from hypothesis import strategies as st

import storebridge
from storebridge.adapters.redis import AsyncRedisStateStore, RedisStateStore
from storebridge.adapters.redis._common import (
    CHUNK,
    INCREMENT_SCRIPT,
    BinaryCodec,
    Commands,
    Keyspace,
    ScriptCall,
    StatePlans,
    TextCodec,
    decode_stored,
    drive,
    escape_glob,
    ttl_milliseconds,
)
from storebridge.adapters.redis._connection import describe_client, resolve_settings, translate_error
from storebridge.errors import (
    ConfigurationError,
    ConnectionFailedError,
    InvalidIdentifierError,
    OperationFailedError,
    StoreClosedError,
    ValidationError,
)
from storebridge.state import check_keys, encode_value, scan_prefix
from tests.servers._ports import free_port
from tests.servers.redis import RedisServer, redis_server  # noqa: F401  (the session fixture)

NAMESPACE_CHARS = string.ascii_letters + string.digits + "_.-:/é"


# -- key layout ---------------------------------------------------------------------------------------------


def test_full_key_is_length_prefixed() -> None:
    assert Keyspace("app").full_key("user:1") == "sb:3:app:user:1"
    assert Keyspace("").full_key("k") == "sb:0::k"
    assert Keyspace("a:b").prefix == "sb:3:a:b:"


def test_namespace_and_key_cannot_be_confused() -> None:
    assert Keyspace("a").full_key("b:c") != Keyspace("a:b").full_key("c")
    assert Keyspace("a").full_key("1:x") != Keyspace("a:1").full_key("x")
    # No namespace's prefix starts another namespace's prefix, so SCAN MATCH on one never sees the other.
    assert not Keyspace("a:x").prefix.startswith(Keyspace("a").prefix)
    assert not Keyspace("ns_x").prefix.startswith(Keyspace("ns").prefix)


@given(st.text(NAMESPACE_CHARS, max_size=12), st.text(min_size=1, max_size=12).filter(lambda k: "\x00" not in k),
       st.text(NAMESPACE_CHARS, max_size=12), st.text(min_size=1, max_size=12).filter(lambda k: "\x00" not in k))
def test_key_layout_is_injective(ns1: str, key1: str, ns2: str, key2: str) -> None:
    try:
        full1, full2 = Keyspace(ns1).full_key(key1), Keyspace(ns2).full_key(key2)
    except ValidationError:  # lone surrogates are refused, tested below
        return
    assert (full1 == full2) == ((ns1, key1) == (ns2, key2))
    if ns1 != ns2:
        assert not full1.startswith(Keyspace(ns2).prefix)


def test_user_key_strips_the_prefix() -> None:
    space = Keyspace("app")
    assert space.user_key(b"sb:3:app:x:y") == "x:y"
    assert space.user_key("sb:3:app:日本") == "日本"
    with pytest.raises(ValidationError):
        space.user_key(b"sb:4:app2:x")


@pytest.mark.parametrize("key", ["", None, 5, "nul\x00", "lone \ud800 surrogate"])
def test_bad_keys_are_refused(key: Any) -> None:
    with pytest.raises(ValidationError):
        Keyspace("app").full_key(key)


def test_key_list_refuses_a_bare_string_and_dedupes() -> None:
    with pytest.raises(ValidationError):
        check_keys("abc")
    assert check_keys(["b", "a", "b"]) == ["b", "a"]


@pytest.mark.parametrize("namespace", ["a*", "a?b", "[ab]", "a\\b", "a b", "n" * 129])
def test_glob_characters_never_reach_a_namespace(namespace: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        Keyspace(namespace)


# -- glob escaping ------------------------------------------------------------------------------------------


def test_escape_glob_escapes_every_redis_metacharacter() -> None:
    assert escape_glob("a*b?c[d]e\\f^g-h") == "a\\*b\\?c\\[d\\]e\\\\f^g-h"
    assert escape_glob("plain:text/ü") == "plain:text/ü"


def test_scan_pattern_escapes_namespace_and_prefix() -> None:
    assert Keyspace("ns").scan_pattern() == "sb:2:ns:*"
    assert Keyspace("ns").scan_pattern("x*[") == "sb:2:ns:x\\*\\[*"
    assert Keyspace("a.b").scan_pattern("\\") == "sb:3:a.b:\\\\*"


@pytest.mark.parametrize(("pattern", "prefix"), [
    ("user:*", "user:"), ("?", ""), ("[ab]*", ""), ("x_y", "x_y"), ("a\\b*", "a\\b"), ("*1", ""), ("ab[!c]", "ab"),
])
def test_literal_prefix_stops_at_the_first_wildcard(pattern: str, prefix: str) -> None:
    assert scan_prefix(pattern, None) == prefix
    assert all(key.startswith(prefix) for key in ["user:1", "a", "x_y", "a\\bc", "abd"] if fnmatch.fnmatchcase(key, pattern))


# -- values -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["text", "", "日本 🚀", b"\x00\xff", b"", 0, 2**70, 1.5, True, None, [1, "a"], {"k": [1]}])
def test_both_codecs_round_trip(value: Any) -> None:
    for stored in (BinaryCodec().encode(value), TextCodec().encode(value)):
        got = decode_stored(stored)
        assert got == value and type(got) is type(value)


def test_text_codec_keeps_bytes_as_base64_text() -> None:
    assert TextCodec().encode(b"\x00\xff") == "B" + base64.b64encode(b"\x00\xff").decode()
    assert TextCodec().encode("x") == "sx"
    assert TextCodec().encode({"n": 1}) == 'j{"n":1}'
    assert BinaryCodec().encode(b"\x00") == b"b\x00"
    with pytest.raises(ValidationError):
        decode_stored("B!!not base64")


def test_lone_surrogates_in_values_are_a_validation_error() -> None:
    for codec in (BinaryCodec(), TextCodec()):
        with pytest.raises(ValidationError):
            codec.encode("\udc80")


def test_ttl_milliseconds() -> None:
    assert ttl_milliseconds(None) is None
    assert ttl_milliseconds(0.3) == 300
    assert ttl_milliseconds(1.5) == 1500
    assert ttl_milliseconds(0.0001) == 1, "a tiny TTL must stay a TTL, not become PX 0"
    for bad in (0, -1, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValidationError):
            ttl_milliseconds(bad)


# -- plans: what each operation sends, and how replies map --------------------------------------------------


class Recorder:
    """Runs plans against canned replies, recording every request."""

    def __init__(self, *replies: Any) -> None:
        self.replies = list(replies)
        self.requests: list[Any] = []

    def __call__(self, request: Any) -> Any:
        self.requests.append(request)
        return self.replies.pop(0)


def plans(namespace: str = "ns") -> StatePlans:
    return StatePlans(Keyspace(namespace), BinaryCodec())


def test_set_sends_px_and_get_decodes() -> None:
    sent = Recorder([True], [b"sv"], [None])
    drive(plans().set("k", "v", 1.5), sent)
    assert drive(plans().get("k", "d"), sent) == "v"
    assert drive(plans().get("k", "d"), sent) == "d"
    assert sent.requests[0] == Commands((("SET", "sb:2:ns:k", b"sv", "PX", 1500),))
    assert sent.requests[1] == Commands((("GET", "sb:2:ns:k"),))


def test_set_many_is_one_transaction_and_validates_first() -> None:
    sent = Recorder([True, True])
    drive(plans().set_many({"a": 1, "b": "x"}, None), sent)
    assert sent.requests == [Commands((("SET", "sb:2:ns:a", b"j1"), ("SET", "sb:2:ns:b", b"sx")), atomic=True)]
    nothing = Recorder()
    for items in ({"a": 1, "": 2}, {"a": object()}):
        with pytest.raises(ValidationError):
            drive(plans().set_many(items, None), nothing)
    with pytest.raises(ValidationError):
        drive(plans().set_many({"a": 1}, 0), nothing)
    assert nothing.requests == [], "a rejected batch must send nothing"


def test_get_many_and_delete_many_chunk_into_one_round_trip() -> None:
    keys = [f"k{i}" for i in range(CHUNK * 2 + 1)]
    values = [b"j1"] * len(keys)
    sent = Recorder([values[:CHUNK], values[CHUNK:2 * CHUNK], [None]])
    got = drive(plans().get_many(keys + ["k0"]), sent)
    assert len(got) == len(keys) - 1 and "k1000" not in got
    (request,) = sent.requests
    assert [len(command) - 1 for command in request.commands] == [CHUNK, CHUNK, 1]
    assert all(command[0] == "MGET" for command in request.commands) and not request.atomic
    deleted = Recorder([CHUNK, 3, 0])
    assert drive(plans().delete_many(keys), deleted) == CHUNK + 3
    assert drive(plans().get_many([]), Recorder()) == {}


def test_keys_follows_the_scan_cursor_filters_and_sorts() -> None:
    sent = Recorder([(17, [b"sb:2:ns:user:2", b"sb:2:ns:user:10"])], [(0, [b"sb:2:ns:user:2", b"sb:2:ns:user:x"])])
    assert drive(plans().keys("user:?", None), sent) == ["user:2", "user:x"]
    assert [r.commands[0] for r in sent.requests] == [
        ("SCAN", 0, "MATCH", "sb:2:ns:user:*", "COUNT", 1000),
        ("SCAN", 17, "MATCH", "sb:2:ns:user:*", "COUNT", 1000),
    ]


def test_keys_pushes_the_longest_literal_prefix_escaped() -> None:
    sent = Recorder([(0, [])])
    drive(plans().keys("a*b[c]*", "a*"), sent)
    assert sent.requests[0].commands[0][3] == "sb:2:ns:a\\**", "prefix 'a*' is literal: escaped, then one wildcard"
    sent = Recorder([(0, [])])
    drive(plans().keys("[ab]*", None), sent)
    assert sent.requests[0].commands[0][3] == "sb:2:ns:*"


def test_clear_unlinks_page_by_page_and_counts_what_existed() -> None:
    sent = Recorder([(5, [b"sb:2:ns:a", b"sb:2:ns:b"])], [2], [(9, [])], [(0, [b"sb:2:ns:c"])], [0])
    assert drive(plans().clear(), sent) == 2
    commands = [r.commands[0] for r in sent.requests]
    assert commands[1] == ("UNLINK", b"sb:2:ns:a", b"sb:2:ns:b")
    assert commands[4] == ("UNLINK", b"sb:2:ns:c")
    assert not any(c[0] in ("FLUSHDB", "FLUSHALL", "KEYS") for c in commands)


def test_ttl_and_expire() -> None:
    assert drive(plans().ttl("k"), Recorder([-2])) is None
    assert drive(plans().ttl("k"), Recorder([-1])) is None
    assert drive(plans().ttl("k"), Recorder([1234])) == 1.234
    sent = Recorder([True])
    assert drive(plans().expire("k", 2), sent) is True
    assert sent.requests[0] == Commands((("PEXPIRE", "sb:2:ns:k", 2000),))
    sent = Recorder([1, 0])
    assert drive(plans().expire("k", None), sent) is True, "a key without a TTL still exists"
    assert sent.requests[0] == Commands((("EXISTS", "sb:2:ns:k"), ("PERSIST", "sb:2:ns:k")), atomic=True)
    assert drive(plans().expire("k", None), Recorder([0, 0])) is False


def test_increment_sends_the_script_and_maps_its_reply() -> None:
    sent = Recorder([1, b"j6"])
    assert drive(plans().increment("n", 5), sent) == 6
    assert sent.requests == [ScriptCall(keys=("sb:2:ns:n",), args=("5",))]
    assert drive(plans().increment("n", 0.5), Recorder([1, b"j1.0"])) == 1.0
    with pytest.raises(ValidationError, match="its value is a str"):
        drive(plans().increment("n", 1), Recorder([0, b"sx"]))
    with pytest.raises(ValidationError, match="bool"):
        drive(plans().increment("n", 1), Recorder([0, b"jtrue"]))
    with pytest.raises(ValidationError, match="overflows"):
        drive(plans().increment("n", 1e308), Recorder([2]))
    nothing = Recorder()
    for amount in (True, "1", float("nan"), None):
        with pytest.raises(ValidationError):
            drive(plans().increment("n", amount), nothing)
    assert nothing.requests == []


# -- URLs and options ---------------------------------------------------------------------------------------


def settings(url: str | None = None, **kwargs: Any) -> Any:
    options: dict[str, Any] = {name: None for name in (
        "host", "port", "db", "username", "password", "ssl", "socket_timeout", "socket_connect_timeout",
        "client_options")}
    options.update(kwargs)
    return resolve_settings(url, **options)


def test_url_with_everything() -> None:
    resolved, namespace = settings("redis://bob:s%40cret@cache.local:6380/3?namespace=app&socket_timeout=2.5")
    assert namespace == "app"
    assert resolved.options == {"host": "cache.local", "port": 6380, "db": 3, "username": "bob",
                                "password": "s@cret", "ssl": False, "socket_timeout": 2.5, "decode_responses": False}
    assert resolved.where == "redis://bob:***@cache.local:6380/3"
    assert "s@cret" not in repr(resolved) and "cret" not in resolved.where


@pytest.mark.parametrize(("url", "expected"), [
    ("redis://h", {"host": "h", "port": 6379, "db": 0, "ssl": False}),
    ("valkey://h:1/2", {"host": "h", "port": 1, "db": 2, "ssl": False}),
    ("rediss://h", {"host": "h", "port": 6379, "ssl": True}),
    ("redis://:pw@h?db=4", {"password": "pw", "username": None, "db": 4}),
    ("unix:///var/run/redis.sock?db=1", {"unix_socket_path": "/var/run/redis.sock", "db": 1}),
])
def test_url_forms(url: str, expected: dict[str, Any]) -> None:
    options = settings(url)[0].options
    assert {name: options.get(name) for name in expected} == expected


def test_keyword_options_without_url() -> None:
    resolved, namespace = settings(host="h", port=7000, password="pw", ssl=True, client_options={"client_name": "x"})
    assert namespace is None
    assert resolved.options["host"] == "h" and resolved.options["ssl"] is True
    assert resolved.options["client_name"] == "x"
    assert resolved.where == "rediss://:***@h:7000/0"
    assert settings()[0].options["host"] == "localhost"


@pytest.mark.parametrize(("url", "kwargs", "message"), [
    ("redis://h?bogus=1", {}, "unknown Redis URL option"),
    ("redis://h/notanumber", {}, "database number"),
    ("redis://h?db=x", {}, "db='x'"),
    ("redis://h/1?db=2", {}, "db given twice"),
    ("redis://h:1", {"port": 2}, "port given twice"),
    ("redis://:a@h", {"password": "b"}, "password given twice"),
    ("unix:///s.sock", {"host": "h"}, "takes no host"),
    ("mysql://h", {}, "starts with one of"),
    ("redis://h", {"client_options": {"decode_responses": True}}, "decode_responses"),
])
def test_bad_configuration_is_refused(url: str, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        settings(url, **kwargs)


def test_conflict_messages_never_show_the_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings("redis://:hunter2@h", password="other")
    assert "hunter2" not in str(caught.value) and "other" not in str(caught.value)


def test_namespace_from_url_and_argument_must_agree() -> None:
    assert RedisStateStore("redis://h?namespace=a").namespace == "a"
    assert RedisStateStore("redis://h?namespace=a", namespace="a").namespace == "a"
    with pytest.raises(ConfigurationError):
        RedisStateStore("redis://h?namespace=a", namespace="b")
    with pytest.raises(InvalidIdentifierError):
        RedisStateStore("redis://h?namespace=a*")


def test_registry_picks_redis_for_its_schemes() -> None:
    for url in ("redis://h", "rediss://h", "valkey://h", "unix:///tmp/r.sock"):
        store = storebridge.STATE_STORES.from_url(url + "?namespace=reg")
        assert isinstance(store, RedisStateStore) and store.namespace == "reg"
        store.close()
    assert storebridge.STATE_STORES.load("valkey") is RedisStateStore


def test_repr_masks_the_password() -> None:
    store = RedisStateStore("redis://u:topsecret@h:1/2", namespace="n")
    assert repr(store) == "RedisStateStore('redis://u:***@h:1/2', namespace='n')"
    store.close()


# -- errors -------------------------------------------------------------------------------------------------


def test_translate_error() -> None:
    kwargs: dict[str, Any] = {"where": "redis://h:1/0", "secrets": ("pw",), "closed": False}
    failed = translate_error(redis.exceptions.ConnectionError("Error connecting with pw"), **kwargs)
    assert isinstance(failed, ConnectionFailedError) and "redis://h:1/0" in str(failed) and "pw" not in str(failed)
    assert isinstance(translate_error(redis.exceptions.TimeoutError("slow"), **kwargs), ConnectionFailedError)
    refused = translate_error(redis.exceptions.AuthenticationError("invalid password"), **kwargs)
    assert isinstance(refused, ConnectionFailedError) and "credentials" in str(refused)
    assert isinstance(translate_error(redis.exceptions.ResponseError("WRONGTYPE"), **kwargs), OperationFailedError)
    kwargs["closed"] = True
    assert isinstance(translate_error(redis.exceptions.ConnectionError("x"), **kwargs), StoreClosedError)


def test_client_and_options_exclude_each_other() -> None:
    client = redis.Redis()
    with pytest.raises(ConfigurationError, match="either client"):
        RedisStateStore("redis://h", client=client)
    with pytest.raises(ConfigurationError, match="AsyncRedisStateStore"):
        RedisStateStore(client=redis.asyncio.Redis())
    with pytest.raises(ConfigurationError, match="RedisStateStore"):
        AsyncRedisStateStore(client=client)
    with pytest.raises(ConfigurationError, match="decode_responses"):
        RedisStateStore(client=redis.Redis(decode_responses=True))
    assert describe_client(redis.Redis(host="h", port=2, db=3, password="pw")) == "redis://:***@h:2/3"
    client.close()


def test_unreachable_server_names_the_host_not_the_password() -> None:
    port = free_port()  # nothing listens there
    store = RedisStateStore(f"redis://:hunter2@127.0.0.1:{port}/0", socket_connect_timeout=1)
    with pytest.raises(ConnectionFailedError) as caught:
        store.get("k")
    assert f"127.0.0.1:{port}" in str(caught.value) and "hunter2" not in str(caught.value)
    assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)
    store.close()


# -- against the session's server ---------------------------------------------------------------------------


@pytest.fixture
def namespace() -> str:
    return "u" + uuid.uuid4().hex[:10]


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:  # noqa: F811
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture
def store(redis_server: RedisServer, namespace: str) -> Iterator[RedisStateStore]:  # noqa: F811
    with RedisStateStore(redis_server.url, namespace=namespace) as opened:
        yield opened
        opened.clear()


def test_raw_layout_on_the_server(store: RedisStateStore, raw: redis.Redis, namespace: str) -> None:
    store.set("k", {"v": 1}, ttl=1.5)
    full = f"sb:{len(namespace)}:{namespace}:k".encode()
    assert raw.get(full) == b'j{"v":1}'
    assert 1400 < raw.pttl(full) <= 1500, "TTLs are native, in milliseconds"
    store.set("b", b"\x00\xff")
    assert raw.get(f"sb:{len(namespace)}:{namespace}:b") == b"b\x00\xff", "bytes stay raw on a RESP connection"


def test_clear_leaves_foreign_keys_alone(store: RedisStateStore, raw: redis.Redis, namespace: str) -> None:
    foreign = {
        b"foreign-" + namespace.encode(): b"1",                            # outside any namespace
        f"sb:{len(namespace)}:{namespace}".encode(): b"2",                 # the prefix without its colon
        f"sb:{len(namespace) + 2}:{namespace}:x:k".encode(): b"3",        # namespace + ":x"
        f"{namespace}:k".encode(): b"4",                                   # an app's own naming
    }
    raw.mset(foreign)
    try:
        store.set_many({"k": 1, "x:k": 2})
        assert store.keys() == ["k", "x:k"]
        assert store.clear() == 2
        assert raw.mget(list(foreign)) == list(foreign.values())
    finally:
        raw.delete(*foreign)


def test_glob_metacharacters_in_prefixes_are_literal(store: RedisStateStore) -> None:
    keys = ["a*b", "a*c", "axb", "a\\x", "a\\\\y", "[x]1", "x1", "a?", "ab"]
    store.set_many({key: key for key in keys})
    assert store.keys(prefix="a*") == ["a*b", "a*c"]
    assert store.keys(prefix="a\\") == ["a\\\\y", "a\\x"]
    assert store.keys(prefix="[x]") == ["[x]1"]
    assert store.keys(prefix="a?") == ["a?"]
    assert store.keys("a?") == ["a?", "ab"]


def test_big_batches_span_chunks_and_scan_pages(store: RedisStateStore) -> None:
    items = {f"k{i:05d}": i for i in range(CHUNK * 3 + 7)}
    store.set_many(items, ttl=60)
    assert store.get_many(list(items)) == items
    assert store.keys() == sorted(items)
    assert store.delete_many([*list(items)[:CHUNK + 1], "missing"]) == CHUNK + 1
    assert store.clear() == len(items) - CHUNK - 1


@pytest.mark.parametrize(("start", "amount"), [
    (2**70, 1), (-(2**70), 2**70), (10**30, -(10**30) + 1), (123456789012345678901234567890, 987654321),
    (5, -10), (1, 0.5), (1.0, 1), (0.1, 0.2), (2**53 + 1, 1.0), (-1, -999), (1000, -999),
])
def test_increment_follows_python_arithmetic_on_the_server(store: RedisStateStore, start: Any, amount: Any) -> None:
    store.set("n", start)
    result = store.increment("n", amount)
    assert result == start + amount and type(result) is type(start + amount)
    assert store.get("n") == result


def test_increment_refuses_non_numbers_and_overflow(store: RedisStateStore) -> None:
    store.set("big", 1e308)
    with pytest.raises(ValidationError, match="overflows"):
        store.increment("big", 1e308)
    assert store.get("big") == 1e308
    store.set("t", True)
    with pytest.raises(ValidationError, match="bool"):
        store.increment("t")


def test_wrong_type_at_a_key_is_an_operation_failure(store: RedisStateStore, raw: redis.Redis, namespace: str) -> None:
    raw.hset(f"sb:{len(namespace)}:{namespace}:h", "f", "v")
    with pytest.raises(OperationFailedError) as caught:
        store.get("h")
    assert isinstance(caught.value.__cause__, redis.exceptions.ResponseError)
    with pytest.raises(OperationFailedError):
        store.increment("h")


def test_evalsha_falls_back_when_the_script_cache_is_empty(store: RedisStateStore, raw: redis.Redis) -> None:
    raw.script_flush()
    assert store.increment("n") == 1
    assert raw.script_exists(INCREMENT_SCRIPT.sha1) == [True]


def test_as_async_is_a_native_twin_with_its_own_pool(redis_server: RedisServer, namespace: str) -> None:  # noqa: F811
    sync = RedisStateStore(redis_server.url, namespace=namespace)
    twin = sync.as_async()
    assert isinstance(twin, AsyncRedisStateStore) and twin.namespace == namespace
    assert twin._client is not sync._client

    async def use_twin() -> None:
        await twin.set("k", "from async")
        back = twin.as_sync()
        assert isinstance(back, RedisStateStore)
        assert back.get("k") == "from async"
        back.close()
        await twin.close()
        with pytest.raises(StoreClosedError):
            await twin.get("k")

    asyncio.run(use_twin())
    assert sync.get("k") == "from async", "closing the twin leaves the original open"
    sync.clear()
    sync.close()
    with pytest.raises(StoreClosedError):
        sync.as_async()
    with pytest.raises(StoreClosedError):
        sync.get_many([])


def test_a_callers_client_is_never_closed(redis_server: RedisServer, namespace: str) -> None:  # noqa: F811
    client = redis.Redis.from_url(redis_server.url)
    store = RedisStateStore(client=client, namespace=namespace)
    assert store.where == redis_server.url
    store.set("k", 1)
    face = store.as_async()
    assert not isinstance(face, AsyncRedisStateStore), "no settings to open a twin from: the bridge face"
    assert asyncio.run(face.get("k")) == 1
    store.clear()
    store.close()
    assert client.ping() is True
    client.close()


def test_async_store_from_a_callers_async_client(redis_server: RedisServer, namespace: str) -> None:  # noqa: F811
    async def main() -> None:
        client = redis.asyncio.Redis.from_url(redis_server.url)
        store = AsyncRedisStateStore(client=client, namespace=namespace)
        assert await store.increment("n", 2) == 2
        assert await store.clear() == 1
        await store.close()
        assert await client.ping() is True
        await client.aclose()

    asyncio.run(main())


def _increment_in_child(url: str, namespace: str, rounds: int) -> None:
    with RedisStateStore(url, namespace=namespace) as store:
        for _ in range(rounds):
            store.increment("counter")
            store.increment("float", 0.25)


def test_increment_is_atomic_across_processes(store: RedisStateStore, redis_server: RedisServer,  # noqa: F811
                                              namespace: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    rounds, workers = 150, 3
    processes = [ctx.Process(target=_increment_in_child, args=(redis_server.url, namespace, rounds))
                 for _ in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    assert store.get("counter") == rounds * workers
    assert store.get("float") == rounds * workers * 0.25


def test_registry_create_async_gives_the_native_async_store(redis_server: RedisServer, namespace: str) -> None:  # noqa: F811
    async def main() -> None:
        store = storebridge.STATE_STORES.create_async("redis", url=redis_server.url, namespace=namespace)
        assert isinstance(store, AsyncRedisStateStore)
        await store.set("k", json.dumps({"a": 1}))
        assert json.loads(await store.get("k")) == {"a": 1}
        await store.clear()
        await store.close()

    asyncio.run(main())


def test_values_written_raw_are_read_as_tagged(store: RedisStateStore, raw: redis.Redis, namespace: str) -> None:
    raw.set(f"sb:{len(namespace)}:{namespace}:k", encode_value([1, "x"]))
    assert store.get("k") == [1, "x"]
    raw.set(f"sb:{len(namespace)}:{namespace}:bad", b"?untagged")
    with pytest.raises(ValidationError):
        store.get("bad")
