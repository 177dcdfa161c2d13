"""Unit tests of the DynamoDB state store.

Most run without any server: the pure item/expression/URL helpers, and the store's request logic
driven through botocore's ``Stubber`` (which checks every request against the API model and feeds
canned responses and errors). The last section uses the session's moto server for what only a live
engine shows: the table's TTL setting, the resource path, items that expired but were not deleted yet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import Binary
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber

from storebridge.adapters.dynamodb import DynamoDBStateStore
from storebridge.adapters.dynamodb import _items as items
from storebridge.errors import (
    ConfigurationError,
    ConnectionFailedError,
    InvalidIdentifierError,
    OperationFailedError,
    StoreClosedError,
    ValidationError,
)
from storebridge.state import encode_value, scan_prefix
from tests.engines import unique_prefix
from tests.servers._ports import free_port
from tests.servers.moto import MotoServer, moto_server  # noqa: F401  (the session fixture)

SECRET = "s3cr3t-not-for-logs"


# -- URL and options --------------------------------------------------------------------------------------


def options(url: str | None = None, **kwargs: Any) -> items.DynamoDBOptions:
    arguments: dict[str, Any] = {"table": None, "region": None, "endpoint_url": None, "namespace": None,
                                 "create_table": None}
    return items.resolve_options(url, **{**arguments, **kwargs})


def test_url_gives_region_table_and_options() -> None:
    got = options("dynamodb://eu-west-1/app_state?endpoint_url=http://127.0.0.1:8000&namespace=svc:a"
                  "&create_table=false")
    assert got == items.DynamoDBOptions(table="app_state", region="eu-west-1", endpoint_url="http://127.0.0.1:8000",
                                        namespace="svc:a", create_table=False)


def test_defaults_without_url() -> None:
    assert options() == items.DynamoDBOptions(table=items.DEFAULT_TABLE, region=None, endpoint_url=None,
                                              namespace="", create_table=True)
    assert options("dynamodb:///t_1").region is None, "no host: the region comes from the boto3 chain"
    assert options("dynamodb://us-east-1").table == items.DEFAULT_TABLE


def test_url_and_arguments_agree_or_fail() -> None:
    assert options("dynamodb://us-east-1/tbl", table="tbl", region="us-east-1").table == "tbl"
    with pytest.raises(ConfigurationError, match="table is given twice"):
        options("dynamodb://us-east-1/tbl", table="other")
    with pytest.raises(ConfigurationError, match="region is given twice"):
        options("dynamodb://us-east-1/tbl", region="eu-west-1")
    with pytest.raises(ConfigurationError, match="namespace is given twice"):
        options("dynamodb://us-east-1/tbl?namespace=a", namespace="b")


@pytest.mark.parametrize("url, message", [
    ("dynamodb://us-east-1/tbl?bogus=1", "unknown DynamoDB URL option"),
    ("dynamodb://us-east-1/tbl?create_table=maybe", "must be true or false"),
    (f"dynamodb://key:{SECRET}@us-east-1/tbl", "take no credentials"),
    ("dynamodb://us-east-1:443/tbl", "take no credentials or port"),
    ("redis://localhost/0", "not a DynamoDB URL"),
])
def test_bad_urls_are_configuration_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        options(url)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("table", ["ab", "a b", "x" * 256, "semi;colon", "tab\tle", "é_table", "a/b"])
def test_invalid_table_names_rejected(table: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        options(table=table)


def test_table_path_with_a_slash_rejected() -> None:
    with pytest.raises(InvalidIdentifierError):
        options("dynamodb://us-east-1/a/b")


# -- keys, items and expressions ------------------------------------------------------------------------


def test_key_size_is_checked_in_utf8_bytes() -> None:
    assert items.check_item_key("k" * 1024) == "k" * 1024
    with pytest.raises(ValidationError, match="1024 bytes"):
        items.check_item_key("k" * 1025)
    with pytest.raises(ValidationError, match="1024 bytes"):
        items.check_item_key("é" * 513)  # 1026 bytes in 513 characters
    with pytest.raises(ValidationError, match="lone surrogate"):
        items.check_item_key("a\ud800")
    for bad in ("", None, 3, "nul\x00"):
        with pytest.raises(ValidationError):
            items.check_item_key(bad)


def test_key_list_deduplicates_and_refuses_a_bare_string() -> None:
    assert items.key_list(["b", "a", "b"]) == ["b", "a"]
    with pytest.raises(ValidationError, match="single str"):
        items.key_list("abc")


def test_partition_keeps_the_empty_namespace_distinct_and_nonempty() -> None:
    assert items.item_key("", "k") == {"ns": "ns:", "k": "k"}
    assert items.item_key("app", "k") == {"ns": "ns:app", "k": "k"}
    assert items.partition("") != items.partition("a")


def test_new_item_layout_and_size_limit() -> None:
    expires = Decimal("1700000000.250")
    assert items.new_item("app", "k", b"sv", expires) == {"ns": "ns:app", "k": "k", "v": b"sv", "expires_at": expires}
    assert "expires_at" not in items.new_item("app", "k", b"sv", None)
    items.new_item("", "k", b"x" * (400 * 1024 - 100), None)
    with pytest.raises(ValidationError, match="400"):
        items.new_item("", "k", b"x" * (400 * 1024), None)


def test_epoch_numbers_keep_milliseconds() -> None:
    assert items.epoch_number(1700000000.12345) == Decimal("1700000000.123")
    assert isinstance(items.epoch_number(1.0), Decimal)


def test_liveness_and_remaining_ttl() -> None:
    now = 1000.0
    assert items.is_live({"k": "a"}, now) and items.remaining_ttl({"k": "a"}, now) is None
    assert items.is_live({"expires_at": Decimal("1000.5")}, now)
    assert not items.is_live({"expires_at": Decimal(1000)}, now), "expiring exactly now counts as expired"
    assert items.remaining_ttl({"expires_at": Decimal("1002.5")}, now) == 2.5
    assert items.remaining_ttl({"expires_at": Decimal(999)}, now) == 0.0


@pytest.mark.parametrize("pattern, prefix, expected", [
    (None, None, ""),
    ("user:*", None, "user:"),
    ("*:1", None, ""),
    ("[ab]*", None, ""),
    ("x?y", None, "x"),
    ("exact", None, "exact"),
    (None, "user:", "user:"),
    ("*1", "user", "user"),
    ("user:1*", "us", "user:1"),
])
def test_query_prefix_is_the_longest_literal_prefix(pattern: str | None, prefix: str | None, expected: str) -> None:
    assert scan_prefix(pattern, prefix) == expected


def test_key_condition_uses_begins_with_only_for_a_prefix() -> None:
    assert items.key_condition("app", "") == ("#ns = :ns", {":ns": "ns:app"})
    condition, values = items.key_condition("app", "us%_*")
    assert condition == "#ns = :ns AND begins_with(#k, :prefix)"
    assert values == {":ns": "ns:app", ":prefix": "us%_*"}, "the prefix is a value, never spliced into the expression"


def test_attribute_names_lists_only_the_placeholders_used() -> None:
    assert items.attribute_names("#k, #v") == {"#k": "k", "#v": "v"}
    assert items.attribute_names(items.LIVE) == {"#e": "expires_at"}
    assert items.attribute_names("#ns = :ns", "#k") == {"#ns": "ns", "#k": "k"}


@pytest.mark.parametrize("stored, amount, expected", [
    (None, 5, 5),
    (None, 0.5, 0.5),
    (encode_value(2), 3, 5),
    (encode_value(2), 1.5, 3.5),
    (encode_value(2.5), 1, 3.5),
    (encode_value(2**80), 1, 2**80 + 1),
    (encode_value(-1), -1, -2),
])
def test_incremented_follows_pythons_number_rules(stored: bytes | None, amount: float, expected: float) -> None:
    result, encoded = items.incremented("k", stored, amount)
    assert result == expected and type(result) is type(expected)
    assert encoded == encode_value(expected)


@pytest.mark.parametrize("value", [True, False, "5", None, [1], {"n": 1}, b"1"])
def test_incremented_refuses_non_numbers(value: Any) -> None:
    with pytest.raises(ValidationError, match="not a number"):
        items.incremented("k", encode_value(value), 1)


def test_incremented_refuses_a_float_overflow() -> None:
    with pytest.raises(ValidationError, match="overflows"):
        items.incremented("k", encode_value(1.7e308), 1e308)
    with pytest.raises(ValidationError, match="overflows"):
        items.incremented("k", encode_value(10**400), 1.0)


def test_backoff_is_jittered_and_capped() -> None:
    delays = [items.backoff_delay(attempt) for attempt in range(40)]
    assert all(0 <= delay <= 0.25 for delay in delays)
    assert items.backoff_delay(0, base=0.01) <= 0.01


def test_wire_low_level_round_trip_and_high_level_identity() -> None:
    item = {"ns": "ns:a", "k": "key", "v": b"\x00j1", "expires_at": Decimal("12.5")}
    low = items.Wire(high_level=False)
    wire = low.out(item)
    assert wire == {"ns": {"S": "ns:a"}, "k": {"S": "key"}, "v": {"B": b"\x00j1"}, "expires_at": {"N": "12.5"}}
    back = low.back(wire)
    assert items.stored_bytes(back) == b"\x00j1" and isinstance(back["v"], Binary)
    assert back["expires_at"] == Decimal("12.5")
    high = items.Wire(high_level=True)
    assert high.out(item) == item and high.back(item) == item
    assert items.Wire.raw({"k": {"S": "x"}}) == {"k": "x"}


# -- request logic through botocore's Stubber -------------------------------------------------------------

TABLE = "unit_table"
ACTIVE_TABLE = {"Table": {"TableName": TABLE, "TableStatus": "ACTIVE", "KeySchema": items.KEY_SCHEMA}}


def stub_client() -> Any:
    return boto3.session.Session().client("dynamodb", region_name="us-east-1", aws_access_key_id="x",
                                          aws_secret_access_key="x", endpoint_url="http://127.0.0.1:9")


@pytest.fixture
def stubbed() -> Iterator[tuple[Any, Stubber]]:
    client = stub_client()
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()
    client.close()


def client_error(code: str, message: str = "boom", **extra: Any) -> dict[str, Any]:
    return {"service_error_code": code, "service_message": message, **extra}


def test_first_use_creates_the_table_and_enables_ttl(stubbed: tuple[Any, Stubber]) -> None:
    client, stub = stubbed
    stub.add_client_error("describe_table", "ResourceNotFoundException", "not found",
                          expected_params={"TableName": TABLE})
    stub.add_response("create_table", {"TableDescription": {"TableName": TABLE, "TableStatus": "ACTIVE",
                                                            "KeySchema": items.KEY_SCHEMA}},
                      {"TableName": TABLE, "KeySchema": items.KEY_SCHEMA,
                       "AttributeDefinitions": items.ATTRIBUTE_DEFINITIONS, "BillingMode": "PAY_PER_REQUEST"})
    stub.add_response("describe_time_to_live", {"TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}},
                      {"TableName": TABLE})
    stub.add_response("update_time_to_live",
                      {"TimeToLiveSpecification": {"Enabled": True, "AttributeName": "expires_at"}},
                      {"TableName": TABLE,
                       "TimeToLiveSpecification": {"Enabled": True, "AttributeName": "expires_at"}})
    stub.add_response("get_item", {}, {"TableName": TABLE, "Key": {"ns": {"S": "ns:app"}, "k": {"S": "k"}},
                                       "ConsistentRead": True, "ProjectionExpression": "#k, #v, #e",
                                       "ExpressionAttributeNames": {"#k": "k", "#v": "v", "#e": "expires_at"}})
    stub.add_response("get_item", {}, {"TableName": TABLE, "Key": ANY, "ConsistentRead": True,
                                       "ProjectionExpression": ANY, "ExpressionAttributeNames": ANY})
    store = DynamoDBStateStore(table=TABLE, namespace="app", client=client)
    assert store.get("k", "missing") == "missing"
    assert store.get("k") is None, "the table is checked once per store, not on every call"


def test_a_table_created_concurrently_and_ttl_already_enabled_are_fine(stubbed: tuple[Any, Stubber]) -> None:
    client, stub = stubbed
    stub.add_client_error("describe_table", "ResourceNotFoundException")
    stub.add_client_error("create_table", "ResourceInUseException", "Table already exists")
    stub.add_response("describe_table", ACTIVE_TABLE, {"TableName": TABLE})
    stub.add_response("describe_time_to_live", {"TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}})
    stub.add_client_error("update_time_to_live", "ValidationException", "TimeToLive is already enabled")
    stub.add_response("get_item", {})
    assert DynamoDBStateStore(table=TABLE, client=client).exists("k") is False


def test_a_table_with_another_key_schema_is_refused(stubbed: tuple[Any, Stubber]) -> None:
    client, stub = stubbed
    stub.add_response("describe_table", {"Table": {"TableName": TABLE, "TableStatus": "ACTIVE",
                                                   "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}]}})
    with pytest.raises(ConfigurationError, match="key schema"):
        DynamoDBStateStore(table=TABLE, client=client).get("k")


def test_without_create_table_no_control_plane_calls_and_a_missing_table_is_named(
        stubbed: tuple[Any, Stubber]) -> None:
    client, stub = stubbed
    stub.add_client_error("get_item", "ResourceNotFoundException", "Requested resource not found")
    store = DynamoDBStateStore(table=TABLE, client=client, create_table=False)
    with pytest.raises(OperationFailedError, match=f"'{TABLE}' does not exist") as caught:
        store.get("k")
    assert isinstance(caught.value.__cause__, ClientError)


def test_engine_errors_are_typed_with_the_driver_error_as_cause(stubbed: tuple[Any, Stubber]) -> None:
    client, stub = stubbed
    stub.add_client_error("put_item", "AccessDeniedException", "not allowed to PutItem")
    store = DynamoDBStateStore(table=TABLE, client=client, create_table=False)
    with pytest.raises(OperationFailedError, match="AccessDeniedException") as caught:
        store.set("k", "v")
    assert isinstance(caught.value.__cause__, ClientError)


def test_expired_items_are_invisible_to_every_read(stubbed: tuple[Any, Stubber]) -> None:
    """DynamoDB may keep an expired item for days; the store must check expires_at itself."""
    client, stub = stubbed
    past = {"N": str(time.time() - 5)}
    expired = {"ns": {"S": "ns:"}, "k": {"S": "k"}, "v": {"B": encode_value("old")}, "expires_at": past}
    stub.add_response("get_item", {"Item": expired})
    stub.add_response("get_item", {"Item": expired})
    stub.add_response("delete_item", {"Attributes": expired})
    store = DynamoDBStateStore(table=TABLE, client=client, create_table=False)
    assert store.get("k", "gone") == "gone"
    assert store.ttl("k") is None
    assert store.delete("k") is False, "deleting an expired leftover does not count as deleting a key"


def test_keys_is_a_query_on_one_partition_with_prefix_and_liveness_filter(stubbed: tuple[Any, Stubber]) -> None:
    client, stub = stubbed
    page = {"Items": [{"k": {"S": "user:2"}}, {"k": {"S": "user:10"}}], "LastEvaluatedKey": {"ns": {"S": "ns:app"},
                                                                                               "k": {"S": "user:10"}}}
    stub.add_response("query", page, {
        "TableName": TABLE, "KeyConditionExpression": "#ns = :ns AND begins_with(#k, :prefix)",
        "ProjectionExpression": "#k", "ConsistentRead": True, "FilterExpression": items.LIVE,
        "ExpressionAttributeNames": {"#ns": "ns", "#k": "k", "#e": "expires_at"},
        "ExpressionAttributeValues": {":ns": {"S": "ns:app"}, ":prefix": {"S": "user:"}, ":now": ANY},
    })
    stub.add_response("query", {"Items": [{"k": {"S": "user:1"}}, {"k": {"S": "users"}}]}, {
        "TableName": TABLE, "KeyConditionExpression": ANY, "ProjectionExpression": "#k", "ConsistentRead": True,
        "FilterExpression": ANY, "ExpressionAttributeNames": ANY, "ExpressionAttributeValues": ANY,
        "ExclusiveStartKey": {"ns": {"S": "ns:app"}, "k": {"S": "user:10"}},
    })
    store = DynamoDBStateStore(table=TABLE, namespace="app", client=client, create_table=False)
    assert store.keys("user:*") == ["user:1", "user:10", "user:2"]


def test_get_many_batches_100_keys_and_retries_unprocessed_keys(stubbed: tuple[Any, Stubber],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    client, stub = stubbed
    monkeypatch.setattr(items, "backoff_delay", lambda attempt, **_: 0.0)
    monkeypatch.setattr("storebridge.adapters.dynamodb.state.backoff_delay", lambda attempt, **_: 0.0)
    keys = [f"k{i:03d}" for i in range(150)]

    def wire_key(key: str) -> dict[str, Any]:
        return {"ns": {"S": "ns:"}, "k": {"S": key}}

    def found(key: str) -> dict[str, Any]:
        return {"k": {"S": key}, "v": {"B": encode_value(key)}}

    request = {"ConsistentRead": True, "ProjectionExpression": "#k, #v, #e",
               "ExpressionAttributeNames": {"#k": "k", "#v": "v", "#e": "expires_at"}}
    unprocessed = {TABLE: {**request, "Keys": [wire_key(k) for k in keys[90:100]]}}
    stub.add_response("batch_get_item",
                      {"Responses": {TABLE: [found(k) for k in keys[:90]]}, "UnprocessedKeys": unprocessed},
                      {"RequestItems": {TABLE: {**request, "Keys": [wire_key(k) for k in keys[:100]]}}})
    stub.add_response("batch_get_item", {"Responses": {TABLE: [found(k) for k in keys[90:100]]}},
                      {"RequestItems": unprocessed})
    stub.add_response("batch_get_item", {"Responses": {TABLE: [found(k) for k in keys[100:] if k != "k149"]}},
                      {"RequestItems": {TABLE: {**request, "Keys": [wire_key(k) for k in keys[100:]]}}})
    store = DynamoDBStateStore(table=TABLE, client=client, create_table=False)
    got = store.get_many(keys + ["k000"])
    assert list(got) == keys[:149], "found keys in the order asked, duplicates once, missing left out"
    assert got["k042"] == "k042"


def test_increment_retries_a_lost_race_with_the_item_the_failure_returns(stubbed: tuple[Any, Stubber],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    client, stub = stubbed
    monkeypatch.setattr("storebridge.adapters.dynamodb.state.backoff_delay", lambda attempt, **_: 0.0)
    key = {"ns": {"S": "ns:"}, "k": {"S": "n"}}
    stub.add_response("get_item", {"Item": {"k": {"S": "n"}, "v": {"B": encode_value(1)}}})
    stub.add_client_error(
        "update_item", "ConditionalCheckFailedException", "The conditional request failed",
        response_meta={}, modeled_fields={"Item": {"k": {"S": "n"}, "v": {"B": encode_value(7)}}},
        expected_params={"TableName": TABLE, "Key": key, "UpdateExpression": "SET #v = :new",
                         "ConditionExpression": f"#v = :old AND {items.LIVE}",
                         "ExpressionAttributeNames": {"#v": "v", "#e": "expires_at"},
                         "ExpressionAttributeValues": {":new": {"B": encode_value(2)}, ":old": {"B": encode_value(1)},
                                                       ":now": ANY},
                         "ReturnValuesOnConditionCheckFailure": "ALL_OLD"},
    )
    stub.add_response("update_item", {}, {
        "TableName": TABLE, "Key": key, "UpdateExpression": "SET #v = :new", "ConditionExpression": ANY,
        "ExpressionAttributeNames": ANY, "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        "ExpressionAttributeValues": {":new": {"B": encode_value(8)}, ":old": {"B": encode_value(7)}, ":now": ANY},
    })
    store = DynamoDBStateStore(table=TABLE, client=client, create_table=False)
    assert store.increment("n") == 8, "the retry adds to the value another writer left, without re-reading"


def test_increment_of_a_missing_key_writes_only_if_still_missing_or_expired(stubbed: tuple[Any, Stubber]) -> None:
    client, stub = stubbed
    stub.add_response("get_item", {})
    stub.add_response("update_item", {}, {
        "TableName": TABLE, "Key": ANY, "UpdateExpression": "SET #v = :new REMOVE #e",
        "ConditionExpression": items.MISSING_OR_EXPIRED,
        "ExpressionAttributeNames": {"#v": "v", "#e": "expires_at", "#k": "k"},
        "ExpressionAttributeValues": {":new": {"B": encode_value(2.5)}, ":now": ANY},
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    })
    store = DynamoDBStateStore(table=TABLE, client=client, create_table=False)
    assert store.increment("n", 2.5) == 2.5


def test_a_failed_increment_writes_nothing(stubbed: tuple[Any, Stubber]) -> None:
    client, stub = stubbed
    stub.add_response("get_item", {"Item": {"k": {"S": "n"}, "v": {"B": encode_value(True)}}})
    store = DynamoDBStateStore(table=TABLE, client=client, create_table=False)
    with pytest.raises(ValidationError, match="bool"):
        store.increment("n")


def test_expire_on_a_missing_key_is_false(stubbed: tuple[Any, Stubber]) -> None:
    client, stub = stubbed
    stub.add_client_error("update_item", "ConditionalCheckFailedException", expected_params={
        "TableName": TABLE, "Key": ANY, "UpdateExpression": "REMOVE #e", "ConditionExpression": items.EXISTS_AND_LIVE,
        "ExpressionAttributeNames": {"#e": "expires_at", "#k": "k"}, "ExpressionAttributeValues": {":now": ANY},
    })
    store = DynamoDBStateStore(table=TABLE, client=client, create_table=False)
    assert store.expire("gone", None) is False


# -- construction, closing, secrets ---------------------------------------------------------------------


def test_passed_client_is_not_closed_and_closed_store_refuses_calls() -> None:
    client = stub_client()
    closed: list[bool] = []
    client.close = lambda: closed.append(True)  # type: ignore[method-assign]
    store = DynamoDBStateStore(table=TABLE, client=client, create_table=False)
    store.close()
    store.close()
    assert closed == []
    for call in (lambda: store.get("k"), lambda: store.set("k", 1), lambda: store.keys(), lambda: store.clear(),
                 lambda: store.get_many(["a"]), lambda: store.increment("n")):
        with pytest.raises(StoreClosedError):
            call()
    assert "closed" in repr(store)


def test_own_client_is_closed() -> None:
    store = DynamoDBStateStore("dynamodb://us-east-1/tbl", endpoint_url="http://127.0.0.1:9",
                               aws_access_key_id="x", aws_secret_access_key=SECRET)
    closed: list[bool] = []
    store._client.close = lambda: closed.append(True)
    store.close()
    assert closed == [True]
    assert SECRET not in repr(store)


def test_client_and_connection_options_do_not_mix() -> None:
    client = stub_client()
    with pytest.raises(ConfigurationError, match="endpoint_url"):
        DynamoDBStateStore(table=TABLE, client=client, endpoint_url="http://x")
    with pytest.raises(ConfigurationError, match="aws_secret_access_key"):
        DynamoDBStateStore(table=TABLE, client=client, aws_secret_access_key=SECRET)
    with pytest.raises(ConfigurationError, match="not both"):
        DynamoDBStateStore(table=TABLE, client=client, resource=object())
    resource = boto3.session.Session().resource("dynamodb", region_name="us-east-1", aws_access_key_id="x",
                                                aws_secret_access_key="x")
    with pytest.raises(ConfigurationError, match="resource="):
        DynamoDBStateStore(table=TABLE, client=resource)


def test_unreachable_endpoint_is_a_connection_error_naming_it() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    store = DynamoDBStateStore(f"dynamodb://us-east-1/tbl?endpoint_url={endpoint}", aws_access_key_id="x",
                               aws_secret_access_key=SECRET)
    with store, pytest.raises(ConnectionFailedError, match="127.0.0.1") as caught:
        store.get("k")
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is not None


def test_a_missing_region_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for variable in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setattr("storebridge.adapters.dynamodb.state._session", None)  # re-read the config
    with pytest.raises(ConfigurationError, match="no AWS region"):
        DynamoDBStateStore(table=TABLE, aws_access_key_id="x", aws_secret_access_key="x")


def test_invalid_namespace_rejected_at_construction() -> None:
    with pytest.raises(InvalidIdentifierError):
        DynamoDBStateStore(table=TABLE, client=stub_client(), namespace="a b")


# -- against the session's moto server ------------------------------------------------------------------

live = pytest.mark.engine("dynamodb")


@pytest.fixture
def raw_client(moto_server: MotoServer) -> Iterator[Any]:  # noqa: F811
    client = boto3.session.Session().client("dynamodb", region_name=moto_server.region,
                                            endpoint_url=moto_server.endpoint_url, **moto_server.credentials)
    yield client
    client.close()


@pytest.fixture
def table_name(raw_client: Any) -> Iterator[str]:
    name = unique_prefix("sb_unit_").rstrip("_")
    yield name
    try:
        raw_client.delete_table(TableName=name)
    except raw_client.exceptions.ResourceNotFoundException:
        pass


@live
def test_table_is_created_with_ttl_on_expires_at(raw_client: Any, table_name: str) -> None:
    with DynamoDBStateStore(table=table_name, client=raw_client) as store:
        store.set("k", "v", ttl=60)
    table = raw_client.describe_table(TableName=table_name)["Table"]
    assert sorted(table["KeySchema"], key=lambda part: part["KeyType"]) == items.KEY_SCHEMA
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = raw_client.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] in ("ENABLED", "ENABLING") and ttl["AttributeName"] == "expires_at"
    item = raw_client.get_item(TableName=table_name, Key={"ns": {"S": "ns:"}, "k": {"S": "k"}})["Item"]
    assert item["v"] == {"B": encode_value("v")}
    assert 50 < float(item["expires_at"]["N"]) - time.time() <= 60


@live
def test_stores_opened_at_once_all_create_or_find_the_table(moto_server: MotoServer, table_name: str) -> None:  # noqa: F811
    errors: list[BaseException] = []

    def open_and_write(i: int) -> None:
        try:
            with DynamoDBStateStore(table=table_name, region=moto_server.region, namespace=f"n{i}",
                                    endpoint_url=moto_server.endpoint_url, **moto_server.credentials) as store:
                store.set("k", i)
        except BaseException as exc:  # noqa: BLE001  (asserted on by the main thread)
            errors.append(exc)

    threads = [threading.Thread(target=open_and_write, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


@live
def test_expired_leftovers_are_hidden_counted_as_missing_and_cleared(raw_client: Any, table_name: str) -> None:
    store = DynamoDBStateStore(table=table_name, namespace="app", client=raw_client)
    store.set("live", 1)
    past = {"N": str(round(time.time() - 60, 3))}
    for key, value in (("old", "stale"), ("counter", 41)):
        raw_client.put_item(TableName=table_name, Item={"ns": {"S": "ns:app"}, "k": {"S": key},
                                                        "v": {"B": encode_value(value)}, "expires_at": past})
    assert store.get("old", "gone") == "gone"
    assert store.keys() == ["live"]
    assert store.get_many(["old", "live"]) == {"live": 1}
    assert store.delete_many(["old", "live"]) == 1
    assert store.increment("counter", 1) == 1, "an expired counter counts as missing"
    assert store.ttl("counter") is None
    assert store.clear() == 1
    assert raw_client.query(TableName=table_name, KeyConditionExpression="ns = :ns",
                            ExpressionAttributeValues={":ns": {"S": "ns:app"}})["Count"] == 0


@live
def test_resource_path_speaks_python_values(moto_server: MotoServer, table_name: str) -> None:  # noqa: F811
    resource = boto3.session.Session().resource("dynamodb", region_name=moto_server.region,
                                                endpoint_url=moto_server.endpoint_url, **moto_server.credentials)
    store = DynamoDBStateStore(table=table_name, namespace="r", resource=resource)
    store.set_many({"a": b"\x00", "b": {"x": [1]}, "c": 1}, ttl=100)
    assert store.get_many(["a", "b", "c"]) == {"a": b"\x00", "b": {"x": [1]}, "c": 1}
    assert store.increment("c", 2) == 3
    assert store.keys("[ab]") == ["a", "b"]
    remaining = store.ttl("a")
    assert remaining is not None and 90 < remaining <= 100
    assert store.delete_many(["a", "b", "zz"]) == 2
    store.close()
    assert resource.Table(table_name).get_item(Key={"ns": "ns:r", "k": "c"})["Item"]["k"] == "c", \
        "closing the store leaves the caller's resource usable"


@live
def test_clear_removes_only_its_namespace_across_pages(moto_server: MotoServer, table_name: str) -> None:  # noqa: F811
    def open_store(namespace: str) -> DynamoDBStateStore:
        return DynamoDBStateStore(table=table_name, region=moto_server.region, namespace=namespace,
                                  endpoint_url=moto_server.endpoint_url, **moto_server.credentials)

    big = "x" * 300_000  # a few of these overflow one 1 MB Query page
    with open_store("a") as a, open_store("a:b") as ab:
        a.set_many({f"k{i}": big for i in range(8)})
        ab.set("k0", "other")
        assert len(a.keys()) == 8
        assert a.clear() == 8
        assert a.keys() == [] and ab.get("k0") == "other"
