"""Unit tests of the MongoDB state stores without a server: the URL handling, the documents, filters
and updates they send (pure functions in ``_documents``), the increment's compare-and-set plan, the
error translation, and the stores' control flow over a scripted collection that records each call.

These check what the stores ask of MongoDB, not what MongoDB answers: no server runs here, and the
live conformance run needs ``STOREBRIDGE_TEST_MONGODB_URL`` (tests/conformance/test_state_mongodb.py).
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pymongo import ReplaceOne
from pymongo import errors as mongo_errors
from pymongo.results import DeleteResult, UpdateResult

from storebridge.adapters.mongodb import AsyncMongoDBStateStore, MongoDBStateStore
from storebridge.adapters.mongodb import _documents as docs
from storebridge.errors import (
    ConfigurationError,
    ConnectionFailedError,
    InvalidIdentifierError,
    OperationFailedError,
    StoreClosedError,
    ValidationError,
)
from storebridge.state import check_key, check_keys, encode_value, key_matches

SECRET = "pa:ss@w/rd-not-for-logs"
NOW = datetime(2030, 1, 2, 3, 4, 5, 600000, tzinfo=timezone.utc)


# -- URLs -----------------------------------------------------------------------------------------------


def resolve(url: str | None, **kwargs: Any) -> docs.MongoOptions:
    return docs.resolve_options(url, **{"database": None, "collection": None, "namespace": None, **kwargs})


def test_replica_set_url_keeps_driver_options_verbatim_and_takes_ours_out() -> None:
    got = resolve("mongodb://app:pw%40x@h1:27017,h2:27018/appdb?replicaSet=rs0&collection=kv"
                  "&readPreferenceTags=dc:ny,rack:1&namespace=svc&authSource=admin")
    assert got.driver_uri == ("mongodb://app:pw%40x@h1:27017,h2:27018/appdb?replicaSet=rs0"
                              "&readPreferenceTags=dc:ny,rack:1&authSource=admin")
    assert (got.database, got.collection, got.namespace) == ("appdb", "kv", "svc")
    assert got.hosts == "h1:27017,h2:27018"
    assert got.password == "pw@x"


@pytest.mark.parametrize("url, driver_uri", [
    ("mongodb+async://localhost/app", "mongodb://localhost/app"),
    ("mongodb+srv://u:p@cluster0.example.net/app?retryWrites=true", "mongodb+srv://u:p@cluster0.example.net/app?retryWrites=true"),
    ("mongodb://localhost", "mongodb://localhost/"),
    ("mongodb://localhost/?collection=c", "mongodb://localhost/"),
    ("MONGODB://localhost/app?collection=c;w=majority", "mongodb://localhost/app?w=majority"),
])
def test_driver_uri(url: str, driver_uri: str) -> None:
    assert resolve(url).driver_uri == driver_uri


def test_defaults_and_arguments() -> None:
    assert resolve(None) == docs.MongoOptions()
    assert resolve("mongodb://localhost/").database == docs.DEFAULT_DATABASE
    got = resolve("mongodb://localhost/db1", database="db1", collection="c", namespace="n")
    assert (got.database, got.collection, got.namespace) == ("db1", "c", "n")
    with pytest.raises(ConfigurationError, match="database is given twice"):
        resolve("mongodb://localhost/db1", database="db2")
    with pytest.raises(ConfigurationError, match="collection is given twice"):
        resolve("mongodb://localhost/db1?collection=a", collection="b")
    with pytest.raises(ConfigurationError, match="namespace is given twice"):
        resolve("mongodb://localhost/db1?namespace=a", namespace="b")


@pytest.mark.parametrize("url", ["redis://localhost/0", "mongodb:/nohost", "mongodb:///db", "not a url",
                                 f"postgres://u:{SECRET}@h/db"])
def test_bad_urls_are_configuration_errors_without_secrets(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        resolve(url)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("name", ["", "a.b", "a b", "a/b", "a$b", "a\x00b", "x" * 64, 'a"b', "a:b"])
def test_invalid_database_names(name: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        docs.check_database_name(name)


@pytest.mark.parametrize("name", ["", "a$b", "a\x00b", "system.users", ".a", "a.", "c" * 201])
def test_invalid_collection_names(name: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        docs.check_collection_name(name)


def test_valid_names_pass() -> None:
    assert docs.check_database_name("app_db-1") == "app_db-1"
    assert docs.check_collection_name("state.v1") == "state.v1"


# -- documents --------------------------------------------------------------------------------------------


def test_document_layout() -> None:
    expiry = NOW + timedelta(seconds=5)
    assert docs.document("svc", "k", b"sv", expiry) == {
        "_id": {"ns": "svc", "k": "k"}, "ns": "svc", "k": "k", "v": b"sv", "expires_at": expiry,
    }
    assert "expires_at" not in docs.document("", "k", b"sv", None)
    assert list(docs.doc_id("a", "b")) == ["ns", "k"], "subdocument _id equality depends on field order"


def test_document_size_limit_is_checked_before_sending() -> None:
    docs.document("", "k", b"x" * (docs.MAX_DOCUMENT_BYTES - 1000), None)
    with pytest.raises(ValidationError, match="16 MB"):
        docs.document("", "k", b"x" * docs.MAX_DOCUMENT_BYTES, None)


def test_replace_ops_are_whole_document_upserts_and_encode_everything_first() -> None:
    ops = docs.replace_ops("n", {"a": 1, "b": "x"}, None)
    assert ops == [
        ReplaceOne({"_id": {"ns": "n", "k": "a"}}, docs.document("n", "a", encode_value(1), None), upsert=True),
        ReplaceOne({"_id": {"ns": "n", "k": "b"}}, docs.document("n", "b", encode_value("x"), None), upsert=True),
    ]
    with pytest.raises(ValidationError):
        docs.replace_ops("n", {"a": 1, "b": object()}, None)
    with pytest.raises(ValidationError):
        docs.replace_ops("n", {"a": 1, "": 2}, None)


def test_keys_are_checked_for_bson() -> None:
    with pytest.raises(ValidationError, match="lone surrogate"):
        check_key("a\udc80")
    for bad in ("", None, 1, "a\x00"):
        with pytest.raises(ValidationError):
            check_key(bad)
    assert check_keys(["b", "a", "b"]) == ["b", "a"]
    with pytest.raises(ValidationError, match="single str"):
        check_keys("ab")


def test_expiry_and_remaining_ttl_with_naive_or_aware_datetimes() -> None:
    assert docs.expires_at(None, NOW) is None
    assert docs.expires_at(1.5, NOW) == NOW + timedelta(seconds=1.5)
    for bad in (0, -1, float("nan"), True):
        with pytest.raises(ValidationError):
            docs.expires_at(bad, NOW)
    naive = (NOW + timedelta(seconds=10)).replace(tzinfo=None)  # what a tz_aware=False client returns
    assert docs.remaining_ttl({"expires_at": naive}, NOW) == 10.0
    assert docs.is_live({"expires_at": naive}, NOW) and not docs.is_live({"expires_at": NOW}, NOW)
    assert docs.remaining_ttl({}, NOW) is None and docs.is_live({}, NOW)


# -- filters ----------------------------------------------------------------------------------------------


def test_every_read_filter_hides_expired_documents() -> None:
    live = {"$or": [{"expires_at": None}, {"expires_at": {"$gt": NOW}}]}
    assert docs.live(NOW) == live
    assert docs.live_key_filter("n", "k", NOW) == {"_id": {"ns": "n", "k": "k"}, **live}
    assert docs.live_keys_filter("n", ["a", "b"], NOW) == {"ns": "n", "k": {"$in": ["a", "b"]}, **live}
    assert docs.keys_filter("n", None, None, NOW) == {"ns": "n", **live}


KEYS = ["user:1", "user:", "users", "User:1", "x%y", "x_y", "x.y", "xay", "[lit]", "l", "a\\b", "a b", "a.b",
        "(x)", "^caret", "$d", "a+b", "a|b", "nl\nx", "ünï:1", "日本:🚀"]


@pytest.mark.parametrize("prefix", ["user:", "x.", "x%", "[", "a\\", "a b", "(", "^", "$", "a+", "a|", "nl\n", "ü",
                                    "日本:"])
def test_prefix_regex_is_anchored_and_literal(prefix: str) -> None:
    """``re.escape`` only adds backslashes before non-alphanumerics, which PCRE (MongoDB) reads as
    literals exactly as Python does, so Python's ``re`` stands in for the server here."""
    regex = docs.prefix_regex(prefix)
    assert regex.startswith("^")
    assert [k for k in KEYS if re.search(regex, k)] == [k for k in KEYS if k.startswith(prefix)]


@pytest.mark.parametrize("pattern, prefix, narrowed", [
    ("user:*", None, "user:"), ("*:1", None, None), ("[ab]*", None, None), ("x?y", None, "x"),
    (None, "x_", "x_"), ("*1", "user", "user"), ("user:1*", "us", "user:1"), (None, "", None),
])
def test_keys_filter_narrows_by_the_longest_literal_prefix(pattern: str | None, prefix: str | None,
                                                           narrowed: str | None) -> None:
    query = docs.keys_filter("n", pattern, prefix, NOW)
    if narrowed is None:
        assert "k" not in query
    else:
        assert query["k"] == {"$regex": docs.prefix_regex(narrowed)}
        assert all(k.startswith(narrowed) for k in KEYS if key_matches(k, pattern, prefix))


def test_expire_update() -> None:
    assert docs.expire_update(None) == {"$unset": {"expires_at": ""}}
    assert docs.expire_update(NOW) == {"$set": {"expires_at": NOW}}


def test_indexes_ttl_and_keys() -> None:
    ttl, keys = docs.TTL_INDEX.document, docs.KEYS_INDEX.document
    assert ttl["expireAfterSeconds"] == 0 and list(ttl["key"].items()) == [("expires_at", 1)]
    assert list(keys["key"].items()) == [("ns", 1), ("k", 1)]


# -- increment plan -------------------------------------------------------------------------------------


def test_increment_of_a_live_document_is_conditioned_on_its_value_and_keeps_the_ttl() -> None:
    current = {"v": encode_value(2), "expires_at": NOW + timedelta(seconds=30)}
    plan = docs.plan_increment("n", "k", current, 3, NOW)
    assert plan.result == 5 and plan.upsert is False
    assert plan.filter == {**docs.live_key_filter("n", "k", NOW), "v": encode_value(2)}
    assert plan.update == {"$set": {"v": encode_value(5)}}, "only v changes: expires_at stays"


@pytest.mark.parametrize("current", [None, {"v": encode_value(100), "expires_at": NOW - timedelta(seconds=1)}])
def test_increment_of_a_missing_or_expired_key_starts_from_zero_without_ttl(current: Any) -> None:
    plan = docs.plan_increment("n", "k", current, 1.5, NOW)
    assert plan.result == 1.5 and plan.upsert is True
    assert plan.filter == {"_id": {"ns": "n", "k": "k"}, "expires_at": {"$lte": NOW}}
    assert plan.update == {"$set": {"ns": "n", "k": "k", "v": encode_value(1.5)}, "$unset": {"expires_at": ""}}


@pytest.mark.parametrize("stored, amount, expected", [
    (1, 1, 2), (1, 0.5, 1.5), (0.5, 1, 1.5), (2**70, 1, 2**70 + 1), (-1, -1, -2),
])
def test_increment_type_rules(stored: float, amount: float, expected: float) -> None:
    result, encoded = docs.incremented("k", encode_value(stored), amount)
    assert result == expected and type(result) is type(expected) and encoded == encode_value(expected)


@pytest.mark.parametrize("value", [True, "1", None, [1], {"a": 1}, b"1"])
def test_increment_refuses_non_numbers(value: Any) -> None:
    with pytest.raises(ValidationError, match="not a number"):
        docs.plan_increment("n", "k", {"v": encode_value(value)}, 1, NOW)


def test_increment_refuses_float_overflow() -> None:
    with pytest.raises(ValidationError, match="overflows"):
        docs.incremented("k", encode_value(1e308), 1e308)


def test_took_effect() -> None:
    assert docs.took_effect(1, None) and docs.took_effect(0, {"ns": "n", "k": "k"})
    assert not docs.took_effect(0, None)


# -- errors -----------------------------------------------------------------------------------------------

OPTIONS = resolve(f"mongodb://app:{SECRET.replace(':', '%3A').replace('@', '%40').replace('/', '%2F')}"
                  "@db1:27017,db2:27017/appdb")


@pytest.mark.parametrize("exc, expected", [
    (mongo_errors.ServerSelectionTimeoutError("db1:27017: timed out"), ConnectionFailedError),
    (mongo_errors.AutoReconnect("connection reset"), ConnectionFailedError),
    (mongo_errors.NetworkTimeout("slow"), ConnectionFailedError),
    (mongo_errors.DocumentTooLarge("too big"), ValidationError),
    (mongo_errors.OperationFailure("Authentication failed", code=18), OperationFailedError),
    (mongo_errors.WriteError("bad write", code=2), OperationFailedError),
    (mongo_errors.ConfigurationError("bad option"), ConfigurationError),
])
def test_driver_errors_become_typed_errors_naming_the_hosts(exc: Exception, expected: type[Exception]) -> None:
    error = docs.translate_error(exc, "get", OPTIONS)
    assert type(error) is expected
    assert "db1:27017,db2:27017" in str(error) or expected is ConfigurationError


def test_error_text_never_holds_the_password() -> None:
    assert OPTIONS.password == SECRET
    echo = mongo_errors.OperationFailure(f"auth failed for mongodb://app:{SECRET}@db1 with {SECRET}")
    assert SECRET not in str(docs.translate_error(echo, "get", OPTIONS))
    assert SECRET not in repr(OPTIONS)


# -- the stores' control flow over a scripted collection ----------------------------------------------------


class ScriptedCollection:
    """Records every call; answers from a queue of results per method (an exception is raised)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.answers: dict[str, deque[Any]] = {}

    def script(self, method: str, *answers: Any) -> None:
        self.answers.setdefault(method, deque()).extend(answers)

    def answer(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self.calls.append((method, args, kwargs))
        queue = self.answers.get(method)
        result = queue.popleft() if queue else None
        if isinstance(result, BaseException):
            raise result
        return result

    def called(self, method: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        return [(args, kwargs) for name, args, kwargs in self.calls if name == method]

    def __getattr__(self, method: str) -> Any:
        return lambda *args, **kwargs: self.answer(method, args, kwargs)


class AsyncScriptedCollection(ScriptedCollection):
    def __getattr__(self, method: str) -> Any:
        if method == "find":
            def find(*args: Any, **kwargs: Any) -> Any:
                found = self.answer("find", args, kwargs) or []

                async def cursor() -> Any:
                    for doc in found:
                        yield doc
                return cursor()
            return find

        async def call(*args: Any, **kwargs: Any) -> Any:
            return self.answer(method, args, kwargs)
        return call


class FakeClient:
    def __init__(self, collection: ScriptedCollection) -> None:
        self.collection = collection
        self.asked: list[tuple[str, str, dict[str, Any]]] = []
        self.closed = False

    def get_database(self, database: str) -> Any:
        client = self

        class Database:
            def get_collection(self, name: str, **options: Any) -> ScriptedCollection:
                client.asked.append((database, name, options))
                return client.collection
        return Database()

    def close(self) -> None:
        self.closed = True


def updated(matched: int, upserted: Any = None) -> UpdateResult:
    raw = {"n": matched or int(upserted is not None), "nModified": matched, "upserted": upserted}
    return UpdateResult({k: v for k, v in raw.items() if v is not None}, acknowledged=True)


@pytest.fixture
def sync_store() -> Iterator[tuple[MongoDBStateStore, ScriptedCollection, FakeClient]]:
    collection = ScriptedCollection()
    client = FakeClient(collection)
    store = MongoDBStateStore(namespace="svc", database="appdb", collection="kv", client=client)  # type: ignore[arg-type]
    yield store, collection, client
    store.close()


def test_collection_options_force_primary_reads_and_aware_datetimes(sync_store: Any) -> None:
    _, _, client = sync_store
    assert client.asked == [("appdb", "kv", docs.COLLECTION_OPTIONS)]
    assert docs.COLLECTION_OPTIONS["codec_options"].tz_aware


def test_indexes_are_created_once_on_first_use(sync_store: Any) -> None:
    store, coll, _ = sync_store
    assert coll.calls == [], "nothing is sent before the first operation"
    store.get("a")
    store.exists("b")
    assert coll.called("create_indexes") == [((docs.INDEXES,), {})]


def test_get_sends_the_live_filter_and_decodes(sync_store: Any) -> None:
    store, coll, _ = sync_store
    coll.script("find_one", {"v": encode_value({"x": [1]})}, None)
    assert store.get("k") == {"x": [1]}
    assert store.get("k", "dflt") == "dflt"
    (args, _), _ = coll.called("find_one")
    assert args[0]["_id"] == {"ns": "svc", "k": "k"} and "$or" in args[0]


def test_sync_increment_retries_lost_races(sync_store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    store, coll, _ = sync_store
    monkeypatch.setattr("storebridge.adapters.mongodb.state.backoff_delay", lambda attempt: 0.0)
    coll.script("find_one", None, {"v": encode_value(4)}, {"v": encode_value(5)})
    coll.script("update_one", mongo_errors.DuplicateKeyError("E11000"), updated(0), updated(1))
    assert store.increment("n") == 6
    filters = [args[0] for args, _ in coll.called("update_one")]
    assert filters[0] == {"_id": {"ns": "svc", "k": "n"}, "expires_at": {"$lte": filters[0]["expires_at"]["$lte"]}}
    assert filters[1]["v"] == encode_value(4) and filters[2]["v"] == encode_value(5)
    assert [kwargs["upsert"] for _, kwargs in coll.called("update_one")] == [True, False, False]


def test_sync_increment_gives_up_after_too_many_races(sync_store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    store, coll, _ = sync_store
    monkeypatch.setattr("storebridge.adapters.mongodb.state.backoff_delay", lambda attempt: 0.0)
    monkeypatch.setattr("storebridge.adapters.mongodb.state.MAX_INCREMENT_ATTEMPTS", 3)
    coll.script("find_one", *[{"v": encode_value(1)}] * 3)
    coll.script("update_one", *[updated(0)] * 3)
    with pytest.raises(OperationFailedError, match="compare-and-set"):
        store.increment("n")


def test_clear_counts_live_documents_and_removes_leftovers(sync_store: Any) -> None:
    store, coll, _ = sync_store
    coll.script("delete_many", DeleteResult({"n": 3}, True), DeleteResult({"n": 1}, True))
    assert store.clear() == 3
    (live_filter,), _ = coll.called("delete_many")[0]
    (everything,), _ = coll.called("delete_many")[1]
    assert live_filter["ns"] == "svc" and "$or" in live_filter
    assert everything == {"ns": "svc"}, "clear() touches only its namespace"


def test_driver_errors_surface_typed_with_cause(sync_store: Any) -> None:
    store, coll, _ = sync_store
    coll.script("create_indexes", mongo_errors.ServerSelectionTimeoutError("no servers"))
    with pytest.raises(ConnectionFailedError) as caught:
        store.get("k")
    assert isinstance(caught.value.__cause__, mongo_errors.ServerSelectionTimeoutError)


def test_passed_client_stays_open_and_closed_store_refuses(sync_store: Any) -> None:
    store, _, client = sync_store
    store.close()
    store.close()
    assert client.closed is False
    for call in (lambda: store.get("k"), lambda: store.keys(), lambda: store.get_many(["a"]),
                 lambda: store.set_many({"a": 1}), lambda: store.increment("n"), lambda: store.clear()):
        with pytest.raises(StoreClosedError):
            call()


def test_own_client_is_closed_and_repr_hides_the_password() -> None:
    store = MongoDBStateStore(f"mongodb://app:{SECRET.replace(':', '%3A').replace('@', '%40').replace('/', '%2F')}"
                              "@127.0.0.1:1/appdb?serverSelectionTimeoutMS=50&collection=kv")
    assert SECRET not in repr(store) and "appdb" in repr(store)
    closed: list[bool] = []
    real_close = store._client.close

    def close_and_note() -> None:
        closed.append(True)
        real_close()

    store._client.close = close_and_note  # type: ignore[method-assign]
    store.close()
    assert closed == [True]


def test_messages_name_the_servers_of_a_callers_client() -> None:
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient("mongodb://h1:27017,h2:27018/?replicaSet=rs", connect=False)
    try:
        store = MongoDBStateStore(client=client, database="appdb")
        assert "h1:27017,h2:27018" in repr(store)
        store.close()
        with pytest.raises(StoreClosedError, match="h1:27017"):
            store.get("k")
    finally:
        client.close()


def test_url_and_client_together_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        MongoDBStateStore("mongodb://localhost/app", client=FakeClient(ScriptedCollection()))  # type: ignore[arg-type]


def test_unreachable_server_is_a_connection_error() -> None:
    url = "mongodb://127.0.0.1:1/appdb?serverSelectionTimeoutMS=100&connectTimeoutMS=100"
    with MongoDBStateStore(url) as store, pytest.raises(ConnectionFailedError, match="127.0.0.1:1"):
        store.set("k", 1)


def test_backend_names() -> None:
    assert MongoDBStateStore.backend_name == "mongodb"
    assert AsyncMongoDBStateStore.backend_name == "async_mongodb"
    assert MongoDBStateStore.capabilities == AsyncMongoDBStateStore.capabilities


def test_async_store_runs_the_same_plan() -> None:
    async def scenario() -> None:
        coll = AsyncScriptedCollection()
        client = FakeClient(coll)
        store = AsyncMongoDBStateStore(namespace="svc", database="appdb", client=client)  # type: ignore[arg-type]
        coll.script("find_one", {"v": encode_value(1.5)}, {"v": encode_value(2)})
        coll.script("update_one", updated(0), updated(1))
        coll.script("find", [{"k": "b"}, {"k": "a"}, {"k": "ab"}])
        real_sleep = asyncio.sleep
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("storebridge.adapters.mongodb.state.backoff_delay", lambda attempt: 0.0)
            assert await store.increment("n", 1) == 3
            assert await store.keys("a*") == ["a", "ab"]
        (find_args, _), = coll.called("find")
        assert find_args[0]["k"] == {"$regex": "^a"}
        assert len(coll.called("create_indexes")) == 1
        await store.close()
        assert client.closed is False
        with pytest.raises(StoreClosedError):
            await store.get("k")
        await real_sleep(0)

    asyncio.run(scenario())


def test_async_store_owns_and_closes_its_client() -> None:
    async def scenario() -> None:
        store = AsyncMongoDBStateStore("mongodb+async://127.0.0.1:1/appdb?serverSelectionTimeoutMS=100")
        with pytest.raises(ConnectionFailedError, match="127.0.0.1:1"):
            await store.set("k", 1)
        await store.close()
        await store.close()
        with pytest.raises(StoreClosedError):
            await store.set("k", 1)

    asyncio.run(scenario())
