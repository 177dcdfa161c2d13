"""Unit tests of the GCS state store that need no server: object names and key escaping, URL and option
parsing, metadata parsing, the increment type rules, error mapping and the store's lifecycle."""

from __future__ import annotations

import re
import socket
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import storebridge
from storebridge.adapters.gcs import GCSStateStore
from storebridge.adapters.gcs._layout import (
    MAX_NAME_BYTES,
    ObjectLayout,
    escape,
    normalise_prefix,
    options_from_url,
    unescape,
    validate_bucket,
)
from storebridge.adapters.gcs.state import expires_at_from
from storebridge.errors import (
    ConfigurationError,
    ConnectionFailedError,
    InvalidIdentifierError,
    OperationFailedError,
    StoreClosedError,
    ValidationError,
)
from storebridge.state import incremented, scan_prefix

#: Text without lone surrogates, which no engine can store (they are refused, tested separately).
TEXT = st.text(st.characters(exclude_categories=["Cs"]))
HOSTILE_KEYS = ["a/b", "/", "//", ".", "..", "../../etc/passwd", "a\\b", "%", "%2F", "~", "=", "*?[]#",
                " ", "\n\r\t", "日本:🚀", "é", "e\u0301", "k" * 300, "user:1", "x" + "\x7f"]
TOKEN_RE = re.compile(r"(?:[A-Za-z0-9\-_:]|%[0-9A-F]{2})+")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


def offline_store(**options: Any) -> GCSStateStore:
    """A store on an address where nothing listens: construction must not touch the network."""
    options.setdefault("endpoint", f"http://127.0.0.1:{closed_port()}")
    return GCSStateStore(bucket="unit-bucket", **options)


# -- key escaping -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_keys_escape_to_safe_tokens_and_back(key: str) -> None:
    token = escape(key)
    assert TOKEN_RE.fullmatch(token), token
    assert "/" not in token and token not in (".", "..") and "." not in token
    assert unescape(token) == key


@given(TEXT.filter(bool))
def test_escaping_round_trips_any_text(key: str) -> None:
    assert unescape(escape(key)) == key


@given(TEXT, TEXT)
def test_escaping_preserves_prefixes_exactly(prefix: str, key: str) -> None:
    """What lets keys(prefix=) list only part of a namespace: token prefixes mirror key prefixes."""
    assert escape(key).startswith(escape(prefix)) == key.startswith(prefix)
    assert escape(prefix + key).startswith(escape(prefix))


@pytest.mark.parametrize("token", ["", "a.b", "%2f", "%ZZ", "%2", "%FF", "a/b", "%41", "=" + "0" * 64, "a b"])
def test_unescape_refuses_tokens_this_store_cannot_have_written(token: str) -> None:
    assert unescape(token) is None, "a non-canonical or foreign name must not be read as a key"


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(ValidationError, match="lone surrogate"):
        escape("a\ud800")
    with pytest.raises(ValidationError):
        ObjectLayout("", "").name_for("\udfff")


# -- object names -------------------------------------------------------------------------------------------


def test_namespaces_never_share_a_listing_prefix() -> None:
    namespaces = ["", "ns", "ns/x", "ns:x", "ns_x", "ns.x", "ns-x", "n", "~", "ns/"]
    prefixes = [ObjectLayout("app/", ns).namespace_prefix for ns in namespaces if ns != "~"]
    assert len(set(prefixes)) == len(prefixes)
    for a in prefixes:
        for b in prefixes:
            assert a == b or not b.startswith(a), f"{a!r} would list {b!r}'s objects"
    assert ObjectLayout("", "").namespace_prefix == "~/"
    assert ObjectLayout("p/", "app:v1").namespace_prefix == "p/app:v1/"


def test_names_round_trip_through_the_layout() -> None:
    layout = ObjectLayout("state/", "ns")
    for key in HOSTILE_KEYS:
        name = layout.name_for(key)
        assert name.startswith("state/ns/") and name.count("/") == 2
        assert layout.key_from(name, None) == key
        assert not layout.is_hashed(name)


def test_long_keys_are_hashed_and_kept_in_metadata() -> None:
    layout = ObjectLayout("p/", "ns")
    key = "日" * 400  # 1200 bytes, 3600 once escaped
    name = layout.name_for(key)
    assert layout.is_hashed(name) and len(name.encode()) <= MAX_NAME_BYTES
    assert re.fullmatch(r"p/ns/=[0-9a-f]{64}", name)
    assert layout.key_from(name, {"key": key}) == key
    assert layout.key_from(name, {"key": "another key"}) is None, "metadata must match the hash"
    assert layout.key_from(name, None) is None
    assert layout.name_for(key + "x") != name
    with pytest.raises(ValidationError, match="too long"):
        layout.name_for("k" * 7000)


def test_foreign_names_are_not_keys() -> None:
    layout = ObjectLayout("p/", "ns")
    for name in ["p/ns/a.b", "p/ns/sub/dir", "p/other/k", "p/ns/", "elsewhere", "p/ns/%2f"]:
        assert layout.key_from(name, None) is None, name


def test_prefix_and_namespace_must_leave_room_for_a_key() -> None:
    with pytest.raises(ConfigurationError, match="no room"):
        ObjectLayout("p" * 1000 + "/", "ns").check_fits()


def test_listing_prefixes_cover_hashed_names() -> None:
    layout = ObjectLayout("", "ns")
    assert layout.listing_prefixes("") == ["ns/"]
    assert layout.listing_prefixes("user:") == ["ns/user:", "ns/="]
    assert layout.listing_prefixes("a/") == ["ns/a%2F", "ns/="]


@pytest.mark.parametrize(("pattern", "prefix", "expected"), [
    (None, None, ""), ("user:*", None, "user:"), ("[ab]*", None, ""), ("x?y", None, "x"), ("abc", None, "abc"),
    ("*1", "user", "user"), ("user:1*", "us", "user:1"),
])
def test_narrowing_prefix(pattern: str | None, prefix: str | None, expected: str) -> None:
    assert scan_prefix(pattern, prefix) == expected
    if pattern is not None:
        assert pattern.startswith(scan_prefix(pattern, None))


# -- options and URLs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [
    (None, ""), ("", ""), ("/", ""), ("a", "a/"), ("/a/b/", "a/b/"), ("a/b", "a/b/"), ("ünï", "ünï/"),
])
def test_normalise_prefix(raw: str | None, expected: str) -> None:
    assert normalise_prefix(raw) == expected


@pytest.mark.parametrize("raw", ["a//b", "a/../b", "./a", "a/*", "a\nb", "a/#", 5])
def test_bad_prefixes_are_refused(raw: Any) -> None:
    with pytest.raises(InvalidIdentifierError):
        normalise_prefix(raw)


@pytest.mark.parametrize("bucket", ["ab", "Bucket", "-bucket", "bucket-", "a b", "a/b", "", None, "b" * 223])
def test_bad_bucket_names_are_refused(bucket: Any) -> None:
    with pytest.raises(InvalidIdentifierError):
        validate_bucket(bucket)


def test_url_options() -> None:
    assert options_from_url("gs://my-bucket/app/state?namespace=prod&project=p1") == {
        "bucket": "my-bucket", "prefix": "/app/state", "namespace": "prod", "project": "p1"}
    assert options_from_url("gcs://my-bucket")["bucket"] == "my-bucket"
    endpoint = options_from_url("gs://b-1?endpoint=http%3A%2F%2F127.0.0.1%3A9023")["endpoint"]
    assert endpoint == "http://127.0.0.1:9023"


@pytest.mark.parametrize(("url", "message"), [
    ("s3://bucket", "not a GCS URL"), ("gs+x://bucket", "not a GCS URL"), ("gs:///prefix", "no bucket"),
    ("gs://user:secret@bucket", "not a user"), ("gs://bucket:99", "not a user"), ("gs://bucket?colour=red", "colour"),
])
def test_bad_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        options_from_url(url)
    assert "secret" not in str(caught.value)


def test_store_takes_a_url_or_options() -> None:
    with offline_store() as by_options:
        assert (by_options.bucket_name, by_options.prefix, by_options.namespace) == ("unit-bucket", "", "")
    endpoint = f"http://127.0.0.1:{closed_port()}"
    with GCSStateStore("gs://unit-bucket/a/b?namespace=app", endpoint=endpoint, prefix="a/b/") as by_url:
        assert (by_url.bucket_name, by_url.prefix, by_url.namespace) == ("unit-bucket", "a/b/", "app")
        assert by_url.endpoint == endpoint


@pytest.mark.parametrize(("url", "options", "error"), [
    ("gs://one-bucket", {"bucket": "another-bucket"}, ConfigurationError),
    ("gs://b-1/x", {"prefix": "y"}, ConfigurationError),
    ("gs://b-1?namespace=a", {"namespace": "b"}, ConfigurationError),
    (None, {}, ConfigurationError),
    (None, {"bucket": "b-1", "namespace": "a*"}, InvalidIdentifierError),
    (None, {"bucket": "b-1", "timeout": 0}, ConfigurationError),
    (None, {"bucket": "b-1", "max_workers": 0}, ConfigurationError),
])
def test_conflicting_or_bad_options_are_refused(url: str | None, options: dict[str, Any], error: type) -> None:
    options.setdefault("endpoint", "http://127.0.0.1:1")
    with pytest.raises(error):
        GCSStateStore(url, **options)


def test_a_client_excludes_project_and_endpoint() -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage  # type: ignore[attr-defined]

    client = storage.Client(project="p", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": "http://127.0.0.1:1"})
    with pytest.raises(ConfigurationError, match="either client"):
        GCSStateStore(bucket="b-1", client=client, project="p")


def test_emulator_host_variable_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
    with GCSStateStore("gs://b-1") as store:
        assert store.endpoint == endpoint


def test_missing_credentials_are_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    def no_credentials(*args: Any, **kwargs: Any) -> Any:
        raise DefaultCredentialsError("no ADC here")

    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setattr(google.auth, "default", no_credentials)
    with pytest.raises(ConfigurationError, match="no Google credentials"):
        GCSStateStore("gs://b-1", project="p")


def test_registry_opens_gs_urls() -> None:
    store = storebridge.connect(f"gs://unit-bucket/x?endpoint=http://127.0.0.1:{closed_port()}")
    try:
        assert isinstance(store, GCSStateStore) and store.prefix == "x/"
    finally:
        store.close()


# -- values, metadata, increments ---------------------------------------------------------------------------


def test_expires_at_metadata() -> None:
    assert expires_at_from(None, "n") is None
    assert expires_at_from({}, "n") is None
    assert expires_at_from({"expires_at": "1700000000.25"}, "n") == 1700000000.25
    for bad in ("soon", "nan", "inf", ""):
        if bad:
            with pytest.raises(OperationFailedError, match="unreadable"):
                expires_at_from({"expires_at": bad}, "n")


def test_increment_type_rules() -> None:
    assert incremented("k", 1, 2) == 3 and type(incremented("k", 1, 2)) is int
    assert incremented("k", 1, 0.5) == 1.5
    assert incremented("k", 2**70, 1) == 2**70 + 1, "ints are not bounded to 64 bits"
    for current in ("1", True, None, [1], {"n": 1}, b"1"):
        with pytest.raises(ValidationError, match="not a number"):
            incremented("k", current, 1)
    with pytest.raises(ValidationError, match="overflows"):
        incremented("k", 1.7e308, 1.7e308)
    with pytest.raises(ValidationError, match="overflows"):
        incremented("k", 10**400, 0.5)


# -- errors and lifecycle -----------------------------------------------------------------------------------


def test_unreachable_endpoint_is_a_connection_error() -> None:
    port = closed_port()
    with offline_store(endpoint=f"http://127.0.0.1:{port}", timeout=0.5) as store:
        with pytest.raises(ConnectionFailedError, match=f"127.0.0.1:{port}") as caught:
            store.get("k")  # a read: retried until ``timeout``, then reported
        assert caught.value.__cause__ is not None
        with pytest.raises(ConnectionFailedError, match=f"127.0.0.1:{port}"):
            store.set("k", "v")  # an unconditional upload: not retried


def test_repr_and_errors_hide_credentials_in_the_endpoint() -> None:
    with offline_store(endpoint=f"http://user:s3cret@127.0.0.1:{closed_port()}", timeout=0.5) as store:
        assert "s3cret" not in repr(store)
        with pytest.raises(ConnectionFailedError) as caught:
            store.exists("k")
        assert "s3cret" not in str(caught.value)


def test_close_releases_only_its_own_client() -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage  # type: ignore[attr-defined]

    class TrackedClient(storage.Client):
        closed = False

        def close(self) -> None:
            TrackedClient.closed = True
            super().close()

    client = TrackedClient(project="p", credentials=AnonymousCredentials(),
                           client_options={"api_endpoint": "http://127.0.0.1:1"})
    GCSStateStore(bucket="b-1", client=client).close()
    assert not TrackedClient.closed, "a client passed in belongs to the caller"
    store = offline_store()
    store.close()
    store.close()  # twice is safe
    for call in (lambda: store.get("k"), lambda: store.keys(), lambda: store.get_many([]), lambda: store.clear(),
                 lambda: store.increment("k")):
        with pytest.raises(StoreClosedError):
            call()


def test_bad_input_is_refused_before_any_request() -> None:
    with offline_store() as store:  # nothing listens: a request would be a ConnectionFailedError
        with pytest.raises(ValidationError):
            store.get_many("abc")
        with pytest.raises(ValidationError):
            store.set_many({"ok": 1, "bad": object()})
        with pytest.raises(ValidationError):
            store.set("k", 1, ttl=-1)
        with pytest.raises(ValidationError):
            store.increment("k", float("nan"))
        with pytest.raises(ValidationError):
            store.keys(prefix="\ud800")
        assert store.get_many([]) == {} and store.delete_many([]) == 0
