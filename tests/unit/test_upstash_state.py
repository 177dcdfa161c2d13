"""The Upstash state store, with no Upstash service in reach.

1. What it sends: a fake client records every command (key layout, text values, PX, escaped SCAN
   patterns, EVAL of the shared script, MULTI for batches).
2. Configuration: URL forms, the token from the URL, options or environment, never shown.
3. The whole state suite through the official upstash-redis client against ``UpstashRestShim`` (a
   stand-in for the REST protocol in front of the session's Redis). That checks the adapter and the
   client together, not Upstash itself: the live suite is tests/conformance/test_state_upstash.py.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from upstash_redis.errors import UpstashError

from storebridge.adapters.redis import RedisStateStore
from storebridge.adapters.redis._common import INCREMENT_SCRIPT
from storebridge.adapters.upstash import AsyncUpstashStateStore, UpstashStateStore
from storebridge.adapters.upstash.state import resolve_settings, translate_error
from storebridge.errors import (
    ConfigurationError,
    ConnectionFailedError,
    InvalidIdentifierError,
    OperationFailedError,
    StoreClosedError,
    ValidationError,
)
from storebridge.testing import StateStoreSuite, StoreFactory
from tests.servers._ports import free_port
from tests.servers.redis import (  # noqa: F401  (session fixtures)
    RedisServer,
    UpstashRestShim,
    redis_server,
    upstash_shim,
)

TOKEN = "AXxx-secret-token"


# -- what it sends ------------------------------------------------------------------------------------------


class FakePipeline:
    def __init__(self, client: FakeUpstash, mode: str) -> None:
        self.client, self.mode = client, mode
        self.commands: list[list[Any]] = []

    def execute(self, command: list[Any]) -> FakePipeline:
        self.commands.append(command)
        return self

    def exec(self) -> list[Any]:
        self.client.sent.append((self.mode, self.commands))
        return self.client.replies.pop(0)


class FakeUpstash:
    """Records what the store sends; answers from a queue of canned replies."""

    def __init__(self, *replies: Any) -> None:
        self.replies = list(replies)
        self.sent: list[tuple[str, Any]] = []
        self.closed = False

    def execute(self, command: list[Any]) -> Any:
        self.sent.append(("single", command))
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def pipeline(self) -> FakePipeline:
        return FakePipeline(self, "pipeline")

    def multi(self) -> FakePipeline:
        return FakePipeline(self, "multi")

    def close(self) -> None:
        self.closed = True


def fake_store(*replies: Any, namespace: str = "app") -> tuple[UpstashStateStore, FakeUpstash]:
    client = FakeUpstash(*replies)
    return UpstashStateStore(client=client, namespace=namespace), client


def test_set_and_get_send_text_with_the_shared_key_layout() -> None:
    store, client = fake_store(True, True, "B" + base64.b64encode(b"\x00\xff").decode(), None)
    store.set("user:1", {"n": 1}, ttl=1.5)
    store.set("raw", b"\x00\xff")
    assert store.get("raw") == b"\x00\xff"
    assert store.get("missing", "d") == "d"
    assert client.sent == [
        ("single", ["SET", "sb:3:app:user:1", 'j{"n":1}', "PX", 1500]),
        ("single", ["SET", "sb:3:app:raw", "BAP8="]),
        ("single", ["GET", "sb:3:app:raw"]),
        ("single", ["GET", "sb:3:app:missing"]),
    ]
    assert all(isinstance(part, (str, int)) for _, command in client.sent for part in command), "REST carries text"


def test_batches_use_multi_and_pipelines() -> None:
    store, client = fake_store([True, True], ["j1", None], [1, 0])
    store.set_many({"a": 1, "b": "x"}, ttl=2)
    assert store.get_many(["a", "b"]) == {"a": 1}
    assert store.expire("a", None) is True
    assert client.sent == [
        ("multi", [["SET", "sb:3:app:a", "j1", "PX", 2000], ["SET", "sb:3:app:b", "sx", "PX", 2000]]),
        ("single", ["MGET", "sb:3:app:a", "sb:3:app:b"]),
        ("multi", [["EXISTS", "sb:3:app:a"], ["PERSIST", "sb:3:app:a"]]),
    ]


def test_keys_and_clear_scan_with_escaped_patterns() -> None:
    store, client = fake_store((4, ["sb:3:app:a*1"]), (0, ["sb:3:app:a*2", "sb:3:app:a*1"]), (0, ["sb:3:app:k"]), 1)
    assert store.keys(prefix="a*") == ["a*1", "a*2"]
    assert store.clear() == 1
    assert client.sent == [
        ("single", ["SCAN", 0, "MATCH", "sb:3:app:a\\**", "COUNT", 1000]),
        ("single", ["SCAN", 4, "MATCH", "sb:3:app:a\\**", "COUNT", 1000]),
        ("single", ["SCAN", 0, "MATCH", "sb:3:app:*", "COUNT", 1000]),
        ("single", ["UNLINK", "sb:3:app:k"]),
    ]


def test_increment_evals_the_shared_script() -> None:
    store, client = fake_store([1, "j7"], [0, "sx"])
    assert store.increment("n", 7) == 7
    with pytest.raises(ValidationError, match="str"):
        store.increment("n", 1)
    assert client.sent[0] == ("single", ["EVAL", INCREMENT_SCRIPT.source, 1, "sb:3:app:n", "7"])


def test_ttl_reads_pttl() -> None:
    store, client = fake_store(2500, -1, -2)
    assert store.ttl("k") == 2.5
    assert store.ttl("k") is None and store.ttl("k") is None
    assert client.sent[0] == ("single", ["PTTL", "sb:3:app:k"])


def test_client_errors_become_typed_errors() -> None:
    store, _ = fake_store(UpstashError("ERR something"), httpx.ConnectError("refused"), UpstashError("Unauthorized"))
    with pytest.raises(OperationFailedError) as caught:
        store.get("k")
    assert isinstance(caught.value.__cause__, UpstashError)
    with pytest.raises(ConnectionFailedError):
        store.get("k")
    with pytest.raises(ConnectionFailedError, match="refused the token"):
        store.get("k")


def test_a_callers_client_is_not_closed_and_use_after_close_raises() -> None:
    store, client = fake_store()
    store.close()
    store.close()
    assert client.closed is False
    with pytest.raises(StoreClosedError):
        store.get("k")
    with pytest.raises(StoreClosedError):
        store.get_many([])


def test_validation_happens_before_anything_is_sent() -> None:
    store, client = fake_store()
    for call in (lambda: store.set("", 1), lambda: store.set("k", object()), lambda: store.set("k", 1, ttl=0),
                 lambda: store.increment("k", True), lambda: store.set_many({"a": 1, "b": {1}})):
        with pytest.raises(ValidationError):
            call()
    assert client.sent == []
    with pytest.raises(InvalidIdentifierError):
        UpstashStateStore(client=FakeUpstash(), namespace="a*")


# -- configuration ------------------------------------------------------------------------------------------


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("UPSTASH_REDIS_REST_URL", raising=False)
    monkeypatch.delenv("UPSTASH_REDIS_REST_TOKEN", raising=False)
    return monkeypatch


@pytest.mark.parametrize(("url", "rest_url", "namespace"), [
    (f"upstash://db.upstash.io?token={TOKEN}", "https://db.upstash.io", None),
    (f"upstash-redis://:{TOKEN}@db.upstash.io?namespace=app", "https://db.upstash.io", "app"),
    (f"upstash+http://127.0.0.1:8079?token={TOKEN}", "http://127.0.0.1:8079", None),
    (f"https://db.upstash.io/?token={TOKEN}", "https://db.upstash.io", None),
])
def test_url_forms(no_env: pytest.MonkeyPatch, url: str, rest_url: str, namespace: str | None) -> None:
    settings, url_namespace = resolve_settings(url, None, {})
    assert (settings.rest_url, settings.token, url_namespace) == (rest_url, TOKEN, namespace)
    assert TOKEN not in repr(settings)


def test_token_as_an_option_and_from_the_environment(no_env: pytest.MonkeyPatch) -> None:
    assert resolve_settings("https://db.upstash.io", TOKEN, {})[0].token == TOKEN
    no_env.setenv("UPSTASH_REDIS_REST_URL", "https://env.upstash.io")
    no_env.setenv("UPSTASH_REDIS_REST_TOKEN", "env-token")
    settings, _ = resolve_settings(None, None, {})
    assert (settings.rest_url, settings.token) == ("https://env.upstash.io", "env-token")
    store = UpstashStateStore(namespace="n")
    assert repr(store) == "UpstashStateStore('https://env.upstash.io', namespace='n')"
    store.close()


@pytest.mark.parametrize(("url", "token", "message"), [
    (None, None, "UPSTASH_REDIS_REST_URL"),
    ("https://db.upstash.io", None, "no Upstash token"),
    ("redis://db.upstash.io?token=x", None, "starts with one of"),
    ("upstash://db.upstash.io?token=x&db=1", None, "unknown Upstash URL option"),
    ("upstash://?token=x", None, "needs the database's host"),
    (f"upstash://db.upstash.io?token={TOKEN}", "other", "token given twice"),
])
def test_bad_configuration(no_env: pytest.MonkeyPatch, url: str | None, token: str | None, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        resolve_settings(url, token, {})
    assert TOKEN not in str(caught.value)


def test_client_and_options_exclude_each_other(no_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="either client"):
        UpstashStateStore("https://db.upstash.io", token="t", client=FakeUpstash())
    import upstash_redis.asyncio

    with pytest.raises(ConfigurationError, match="upstash_redis"):
        UpstashStateStore(client=upstash_redis.asyncio.Redis("https://db.upstash.io", "t"))


def test_translate_error_masks_the_token() -> None:
    kwargs: dict[str, Any] = {"where": "https://db.upstash.io", "secrets": (TOKEN,), "closed": False}
    error = translate_error(httpx.ConnectError(f"failed with {TOKEN}"), **kwargs)
    assert isinstance(error, ConnectionFailedError) and TOKEN not in str(error) and "db.upstash.io" in str(error)
    assert isinstance(translate_error(UpstashError("WRONGTYPE"), **kwargs), OperationFailedError)
    assert isinstance(translate_error(ValueError("bad json"), **kwargs), OperationFailedError)
    kwargs["closed"] = True
    assert isinstance(translate_error(UpstashError("x"), **kwargs), StoreClosedError)


def test_registry_picks_upstash_for_its_schemes(no_env: pytest.MonkeyPatch) -> None:
    import storebridge

    for url in (f"upstash://db.upstash.io?token={TOKEN}", f"upstash-redis://db.upstash.io?token={TOKEN}"):
        store = storebridge.STATE_STORES.from_url(url)
        assert isinstance(store, UpstashStateStore) and TOKEN not in repr(store)
        store.close()


# -- end to end through the official client, against the REST stand-in ---------------------------------------


def _shim_factory(store_class: type, shim: UpstashRestShim) -> StoreFactory:
    return lambda namespace="": store_class(url=shim.url, token=shim.token, namespace=namespace, rest_retries=0)


class TestUpstashStateThroughRestShim(StateStoreSuite):
    """The state suite on UpstashStateStore (async face: its AsyncUpstashStateStore twin)."""

    @pytest.fixture
    def store_factory(self, upstash_shim: UpstashRestShim) -> StoreFactory:  # noqa: F811
        return _shim_factory(UpstashStateStore, upstash_shim)


class TestAsyncUpstashStateThroughRestShim(StateStoreSuite):
    """The state suite on AsyncUpstashStateStore (sync face: its UpstashStateStore twin)."""

    @pytest.fixture
    def store_factory(self, upstash_shim: UpstashRestShim) -> StoreFactory:  # noqa: F811
        return _shim_factory(AsyncUpstashStateStore, upstash_shim)


@pytest.fixture
def namespace() -> str:
    return "u" + uuid.uuid4().hex[:10]


@pytest.fixture
def pair(upstash_shim: UpstashRestShim, redis_server: RedisServer,  # noqa: F811
         namespace: str) -> Iterator[tuple[UpstashStateStore, RedisStateStore]]:
    """An Upstash store and a Redis store over the same database and namespace."""
    over_rest = UpstashStateStore(url=upstash_shim.url, token=upstash_shim.token, namespace=namespace)
    over_resp = RedisStateStore(redis_server.url, namespace=namespace)
    yield over_rest, over_resp
    over_resp.clear()
    over_rest.close()
    over_resp.close()


def test_redis_and_upstash_stores_share_data(pair: tuple[UpstashStateStore, RedisStateStore]) -> None:
    over_rest, over_resp = pair
    over_rest.set_many({"bytes": b"\x00\xff", "text": "日本", "json": {"n": [1]}}, ttl=30)
    assert over_resp.get_many(["bytes", "text", "json"]) == {"bytes": b"\x00\xff", "text": "日本", "json": {"n": [1]}}
    over_resp.set("counter", 5)
    assert over_rest.increment("counter", 2) == 7
    assert over_resp.increment("counter", 0.5) == 7.5
    assert sorted(over_rest.keys()) == over_resp.keys() == ["bytes", "counter", "json", "text"]


def test_the_token_goes_in_the_header_only(upstash_shim: UpstashRestShim, namespace: str) -> None:  # noqa: F811
    store = UpstashStateStore(url=upstash_shim.url, token=upstash_shim.token, namespace=namespace)
    before = len(upstash_shim.requests)
    store.set("k", "v")
    assert store.get("k") == "v"
    assert all(upstash_shim.token not in str(body) for _, body in upstash_shim.requests[before:])
    store.clear()
    store.close()
    wrong = UpstashStateStore(url=upstash_shim.url, token="wrong-token", namespace=namespace, rest_retries=0)
    with pytest.raises(ConnectionFailedError) as caught:
        wrong.get("k")
    assert "wrong-token" not in str(caught.value)
    wrong.close()


def test_unreachable_rest_endpoint(namespace: str) -> None:
    store = UpstashStateStore(url=f"http://127.0.0.1:{free_port()}", token=TOKEN, namespace=namespace,
                              rest_retries=0)
    with pytest.raises(ConnectionFailedError) as caught:
        store.get("k")
    assert "127.0.0.1" in str(caught.value) and TOKEN not in str(caught.value)
    store.close()


def test_as_async_is_a_native_twin(upstash_shim: UpstashRestShim, namespace: str) -> None:  # noqa: F811
    store = UpstashStateStore(url=upstash_shim.url, token=upstash_shim.token, namespace=namespace)
    twin = store.as_async()
    assert isinstance(twin, AsyncUpstashStateStore) and twin.namespace == namespace

    async def main() -> None:
        await twin.set("k", 1, ttl=10)
        assert await twin.increment("k") == 2
        await twin.close()

    asyncio.run(main())
    assert store.get("k") == 2 and 0 < (store.ttl("k") or 0) <= 10
    store.clear()
    store.close()
    with pytest.raises(StoreClosedError):
        store.as_async()
