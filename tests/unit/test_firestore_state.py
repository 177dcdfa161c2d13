"""Unit tests of the Firestore state store that need no emulator: document ids, prefix ranges, URL and
option parsing, document fields, the increment type rules, error mapping and both stores' lifecycle."""

from __future__ import annotations

import asyncio
import datetime
import re
import socket
from typing import Any
from unittest import mock

import pytest
from google.api_core import exceptions as google_exceptions
from hypothesis import given
from hypothesis import strategies as st

import storebridge
from storebridge.adapters.firestore import AsyncFirestoreStateStore, FirestoreStateStore
from storebridge.adapters.firestore._layout import (
    DEFAULT_COLLECTION,
    MAX_ID_BYTES,
    document_fields,
    document_id,
    from_timestamp,
    options_from_url,
    successor,
    validate_collection,
)
from storebridge.errors import (
    ConfigurationError,
    ConnectionFailedError,
    InvalidIdentifierError,
    OperationFailedError,
    StoreClosedError,
    ValidationError,
)
from storebridge.state import incremented, scan_prefix

TEXT = st.text(st.characters(exclude_categories=["Cs"]))
HOSTILE_KEYS = ["a/b", "/", ".", "..", "__x__", "__", "_", "~", "=", "%", "%2F", "a~b", " ", "\n", "日本:🚀",
                "e\u0301", "k" * 400, "*?[]", "x" * 1499]


def valid_firestore_id(doc_id: str) -> bool:
    """Firestore's documented rules for document ids."""
    return (0 < len(doc_id.encode("utf-8")) <= MAX_ID_BYTES and "/" not in doc_id and doc_id not in (".", "..")
            and not re.fullmatch(r"__.*__", doc_id))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> str:
    """``FIRESTORE_EMULATOR_HOST`` at an address where nothing listens (clients connect lazily)."""
    host = f"127.0.0.1:{closed_port()}"
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", host)
    return host


# -- document ids -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", ["", "app", "app:v1", "a/b", "__", "ünï"])
@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_document_ids_are_valid_for_any_key(namespace: str, key: str) -> None:
    assert valid_firestore_id(document_id(namespace, key))


@given(TEXT, TEXT.filter(bool))
def test_document_ids_are_valid_for_any_text(namespace: str, key: str) -> None:
    assert valid_firestore_id(document_id(namespace, key))


def test_document_ids_are_unique_across_namespaces_and_keys() -> None:
    pairs = [(ns, key) for ns in ["", "a", "a~b", "a/b", "a:b", "a_b", "a.b"] for key in ["b", "b~c", "~", "c", "a~b"]]
    ids = [document_id(ns, key) for ns, key in pairs]
    assert len(set(ids)) == len(ids)
    assert document_id("a~b", "c") != document_id("a", "b~c")


def test_long_ids_are_hashed() -> None:
    long_key = "日" * 600
    doc_id = document_id("app", long_key)
    assert re.fullmatch(r"=[0-9a-f]{64}", doc_id)
    assert document_id("other", long_key) != doc_id, "the namespace is part of the hash"
    assert document_id("app", long_key + "x") != doc_id
    assert document_id("app", "short") == "app~short"


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(ValidationError, match="lone surrogate"):
        document_id("", "a\ud800")


# -- key ranges ---------------------------------------------------------------------------------------------


@given(TEXT, TEXT)
def test_successor_bounds_exactly_the_keys_with_a_prefix(prefix: str, key: str) -> None:
    upper = successor(prefix)
    in_range = prefix <= key and (upper is None or key < upper)
    assert in_range == key.startswith(prefix)


def test_successor_edges() -> None:
    assert successor("a") == "b"
    assert successor("a\U0010ffff") == "b"
    assert successor("\U0010ffff") is None
    assert successor("a\ud7ff") == "a\ue000", "the surrogate range is skipped"


@pytest.mark.parametrize(("pattern", "prefix", "expected"), [
    (None, None, ""), ("user:*", None, "user:"), ("[ab]*", None, ""), ("*1", "user", "user"), ("ab?", "a", "ab"),
])
def test_narrowing_prefix(pattern: str | None, prefix: str | None, expected: str) -> None:
    assert scan_prefix(pattern, prefix) == expected


# -- documents ----------------------------------------------------------------------------------------------


def test_document_fields() -> None:
    fields = document_fields("ns", "k", b"sv", 1700000000.5)
    assert fields == {"ns": "ns", "k": "k", "v": b"sv",
                      "expires_at": datetime.datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=datetime.timezone.utc)}
    assert document_fields("ns", "k", b"sv", None)["expires_at"] is None
    with pytest.raises(ValidationError, match="1 MiB"):
        document_fields("ns", "k", b"x" * 1_048_576, None)


def test_expires_at_is_read_back_or_refused() -> None:
    moment = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
    assert from_timestamp(moment, "doc") == moment.timestamp()
    assert from_timestamp(None, "doc") is None
    for bad in ("2030-01-01", 1893456000, datetime.datetime(2030, 1, 1)):
        with pytest.raises(OperationFailedError, match="unreadable"):
            from_timestamp(bad, "doc")


def test_increment_type_rules() -> None:
    assert incremented("k", 1, 2) == 3 and type(incremented("k", 1, 2)) is int
    assert incremented("k", -1, 0.5) == -0.5
    assert incremented("k", 2**70, 1) == 2**70 + 1
    for current in ("1", False, None, [1], b"1"):
        with pytest.raises(ValidationError, match="not a number"):
            incremented("k", current, 1)
    with pytest.raises(ValidationError, match="overflows"):
        incremented("k", 1.7e308, 1.7e308)


# -- options and URLs ---------------------------------------------------------------------------------------


def test_url_options() -> None:
    assert options_from_url("firestore://my-project/app_state?namespace=prod&database=db2") == {
        "project": "my-project", "collection": "app_state", "namespace": "prod", "database": "db2"}
    assert options_from_url("firestore://my-project") == {"project": "my-project", "collection": None}
    assert options_from_url("firestore:///coll")["project"] is None


@pytest.mark.parametrize(("url", "message"), [
    ("datastore://p/c", "not a Firestore URL"), ("firestore+x://p/c", "not a Firestore URL"),
    ("firestore://p/c/doc/sub", "one collection"), ("firestore://u:secret@p/c", "not a user"),
    ("firestore://p:8080/c", "not a user"), ("firestore://p/c?colour=red", "colour"),
])
def test_bad_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        options_from_url(url)
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize("name", ["__state__", "a/b", ".", "..", "", "-x", "x" * 64, None])
def test_bad_collections_are_refused(name: Any) -> None:
    with pytest.raises(InvalidIdentifierError):
        validate_collection(name)


def test_store_takes_a_url_or_options(offline: str) -> None:
    with FirestoreStateStore("firestore://proj-1/things?namespace=app") as by_url:
        assert (by_url.project, by_url.collection, by_url.namespace, by_url.host) == ("proj-1", "things", "app", offline)
    with FirestoreStateStore(project="proj-1") as by_options:
        assert by_options.collection == DEFAULT_COLLECTION and by_options.database == "(default)"
    store = storebridge.connect("firestore://proj-1/things")
    try:
        assert isinstance(store, FirestoreStateStore) and store.collection == "things"
    finally:
        store.close()


@pytest.mark.parametrize(("url", "options", "error"), [
    ("firestore://p1/c", {"project": "p2"}, ConfigurationError),
    ("firestore://p1/c", {"collection": "d"}, ConfigurationError),
    ("firestore://p1/c?namespace=a", {"namespace": "b"}, ConfigurationError),
    (None, {"namespace": "a b"}, InvalidIdentifierError),
    (None, {"collection": "__x__"}, InvalidIdentifierError),
    (None, {"timeout": -1}, ConfigurationError),
    (None, {"conflict_timeout": float("nan")}, ConfigurationError),
])
@pytest.mark.parametrize("store_class", [FirestoreStateStore, AsyncFirestoreStateStore])
def test_conflicting_or_bad_options_are_refused(offline: str, store_class: type, url: str | None,
                                                options: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        store_class(url, **options)


def test_a_client_excludes_project_and_database(offline: str) -> None:
    from google.cloud import firestore

    client = firestore.Client(project="p1")
    with pytest.raises(ConfigurationError, match="either client"):
        FirestoreStateStore(client=client, database="other")


def test_missing_credentials_are_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    def no_credentials(*args: Any, **kwargs: Any) -> Any:
        raise DefaultCredentialsError("no ADC here")

    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    monkeypatch.setattr(google.auth, "default", no_credentials)
    for store_class in (FirestoreStateStore, AsyncFirestoreStateStore):
        with pytest.raises(ConfigurationError, match="no Google credentials"):
            store_class(project="p1")


# -- errors -------------------------------------------------------------------------------------------------


def test_unreachable_emulator_is_a_connection_error(offline: str) -> None:
    with FirestoreStateStore(project="p1", timeout=0.5) as store:
        with pytest.raises(ConnectionFailedError, match=re.escape(offline)) as caught:
            store.get("k")
        assert caught.value.__cause__ is not None

    async def use_async() -> None:
        store = AsyncFirestoreStateStore(project="p1", timeout=0.5)
        try:
            with pytest.raises(ConnectionFailedError, match=re.escape(offline)):
                await store.keys()
        finally:
            await store.close()

    asyncio.run(use_async())


def test_transactions_retry_contention_and_report_failures_typed(offline: str) -> None:
    """What ``_transact`` makes of what the transaction machinery raises (no server needed)."""
    with FirestoreStateStore(project="p1") as store:
        attempts = 0

        def contended_twice(transaction: Any) -> str:
            nonlocal attempts
            attempts += 1
            if attempts < 3:  # the library's "gave up after N attempts", over the server's abort
                raise ValueError("Failed to commit transaction in 5 attempts.") from google_exceptions.Aborted("lock")
            return "done"

        assert store._transact(contended_twice, "increment") == "done" and attempts == 3

        def never_began(transaction: Any) -> None:
            try:
                raise google_exceptions.RetryError("gave up", cause=google_exceptions.ServiceUnavailable("down"))
            except google_exceptions.RetryError:  # the library's rollback then fails over the real error
                raise ValueError("Cannot rollback transaction: not in progress.") from None

        with pytest.raises(ConnectionFailedError, match=re.escape(offline)) as caught:
            store._transact(never_began, "increment")
        assert isinstance(caught.value.__cause__, google_exceptions.RetryError)

        def not_a_number(transaction: Any) -> None:
            raise ValidationError("cannot increment: not a number")

        with pytest.raises(ValidationError):
            store._transact(not_a_number, "increment")

    with FirestoreStateStore(project="p1", conflict_timeout=0.05) as store:
        def always_contended(transaction: Any) -> None:
            raise google_exceptions.Aborted("Transaction lock timeout.")

        with pytest.raises(OperationFailedError, match="kept conflicting") as caught:
            store._transact(always_contended, "increment")
        assert isinstance(caught.value.__cause__, google_exceptions.Aborted)


def test_missing_index_error_names_the_index(offline: str) -> None:
    with FirestoreStateStore(project="p1", collection="things") as store:
        driver_error = google_exceptions.FailedPrecondition("The query requires an index. You can create it here")
        with pytest.raises(OperationFailedError, match=r"composite index on \(ns ASC, k ASC\)") as caught, \
                store._errors("query"):
            raise driver_error
        assert caught.value.__cause__ is driver_error
        with pytest.raises(OperationFailedError) as caught, store._errors("write"):
            raise google_exceptions.PermissionDenied("no")
        assert isinstance(caught.value.__cause__, google_exceptions.PermissionDenied)


# -- lifecycle ----------------------------------------------------------------------------------------------


def test_closing_releases_only_its_own_client(offline: str) -> None:
    from google.cloud import firestore

    client = firestore.Client(project="p1")
    client._firestore_api_internal = mock.Mock()
    FirestoreStateStore(client=client).close()
    client._firestore_api_internal.transport.close.assert_not_called()

    store = FirestoreStateStore(project="p1")
    store._client._firestore_api_internal = api = mock.Mock()
    store.close()
    store.close()  # twice is safe
    api.transport.close.assert_called_once()
    for call in (lambda: store.get("k"), lambda: store.keys(), lambda: store.get_many([]), lambda: store.clear(),
                 lambda: store.increment("k"), lambda: store.set_many({})):
        with pytest.raises(StoreClosedError):
            call()


def test_async_twin_shares_the_lifecycle(offline: str) -> None:
    store = FirestoreStateStore(project="p1", collection="things", namespace="ns")
    twin = store.as_async()
    assert isinstance(twin, AsyncFirestoreStateStore) and store.as_async() is twin and twin.as_sync() is store
    assert (twin.project, twin.collection, twin.namespace) == ("p1", "things", "ns")
    assert twin.capabilities == store.capabilities
    store.close()
    with pytest.raises(StoreClosedError):
        asyncio.run(twin.get("k"))
    asyncio.run(twin.close())  # still safe


def test_a_client_passed_in_gets_the_thread_face(offline: str) -> None:
    from google.cloud import firestore

    from storebridge.bridge import AsyncOverSync

    with FirestoreStateStore(client=firestore.Client(project="p1")) as store:
        assert isinstance(store.as_async(), AsyncOverSync), "no way to build an async client with its credentials"


def test_repr_names_where_not_secrets(offline: str) -> None:
    with FirestoreStateStore(project="p1", collection="things", namespace="ns") as store:
        text = repr(store)
    assert "p1" in text and "things" in text and offline in text and "closed" in repr(store)


def test_bad_input_is_refused_before_any_request(offline: str) -> None:
    with FirestoreStateStore(project="p1", timeout=0.5) as store:  # a request would be a ConnectionFailedError
        with pytest.raises(ValidationError):
            store.get_many("abc")
        with pytest.raises(ValidationError):
            store.set_many({"ok": 1, "bad": object()})
        with pytest.raises(ValidationError):
            store.set("k", 1, ttl=0)
        with pytest.raises(ValidationError):
            store.increment("k", "1")
        with pytest.raises(ValidationError):
            store.keys("\ud800")
        with pytest.raises(ValidationError):
            store.expire("", 1)
