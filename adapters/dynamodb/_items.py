"""The pure half of the DynamoDB state store: options from a URL, the item layout, the expressions
and the wire format. Nothing here talks to DynamoDB, so all of it is unit-tested without a server.

Item layout (one table, shared by every namespace)::

    ns          S  partition key: "ns:" + namespace (DynamoDB refuses an empty key string)
    k           S  sort key: the user's key, so keys()/clear() are a Query on one partition
    v           B  encode_value(value)
    expires_at  N  epoch seconds (absent: no TTL); the table's TTL attribute
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer

from storebridge.errors import ConfigurationError, InvalidIdentifierError, ValidationError
from storebridge.state import check_key, check_keys, decode_value, encode_value
from storebridge.state import incremented as add_amount
from storebridge.urls import merge_url_option, parse_url

DEFAULT_TABLE = "storebridge_state"
PARTITION_PREFIX = "ns:"
NS, K, V, EXPIRES_AT = "ns", "k", "v", "expires_at"
KEY_SCHEMA = [{"AttributeName": NS, "KeyType": "HASH"}, {"AttributeName": K, "KeyType": "RANGE"}]
ATTRIBUTE_DEFINITIONS = [{"AttributeName": NS, "AttributeType": "S"}, {"AttributeName": K, "AttributeType": "S"}]

#: DynamoDB's limits: sort key 1024 bytes, item 400 KB (names and values), 100 keys per BatchGetItem.
MAX_SORT_KEY_BYTES = 1024
MAX_ITEM_BYTES = 400 * 1024
BATCH_GET_LIMIT = 100

_TABLE_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{3,255}$")
_URL_OPTIONS = frozenset({"endpoint_url", "namespace", "create_table"})
_TRUE, _FALSE = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off"})

# -- expressions ---------------------------------------------------------------------------------------

_PLACEHOLDERS = {"#ns": NS, "#k": K, "#v": V, "#e": EXPIRES_AT}
#: An item is live if it has no expiry or expires after ``:now`` (DynamoDB deletes expired items lazily).
LIVE = "(attribute_not_exists(#e) OR #e > :now)"
#: For writes that treat the key as missing: no item, or only an expired one.
MISSING_OR_EXPIRED = "(attribute_not_exists(#k) OR #e <= :now)"
EXISTS_AND_LIVE = f"attribute_exists(#k) AND {LIVE}"


def attribute_names(*expressions: str) -> dict[str, str]:
    """The ``ExpressionAttributeNames`` the expressions use (DynamoDB refuses unused ones)."""
    return {p: name for p, name in _PLACEHOLDERS.items() if any(p in e for e in expressions)}


# -- options --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DynamoDBOptions:
    table: str
    region: str | None
    endpoint_url: str | None
    namespace: str
    create_table: bool


def _flag(name: str, text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ConfigurationError(f"URL option {name}={text!r} must be true or false")


def check_table_name(table: str) -> str:
    if not isinstance(table, str) or not _TABLE_NAME_RE.fullmatch(table):
        raise InvalidIdentifierError(
            f"invalid DynamoDB table name {table!r}: use 3 to 255 letters, digits, '_', '-' or '.'"
        )
    return table


def resolve_options(url: str | None, *, table: str | None, region: str | None, endpoint_url: str | None,
                    namespace: str | None, create_table: bool | None) -> DynamoDBOptions:
    """Merge ``dynamodb://<region>/<table>?endpoint_url=...&namespace=...&create_table=...`` with the
    explicit arguments; the same option given both ways with different values is an error."""
    from_url: dict[str, Any] = {}
    if url is not None:
        parsed = parse_url(url)
        if parsed.scheme != "dynamodb" or parsed.driver:
            raise ConfigurationError(f"not a DynamoDB URL: {parsed}; expected dynamodb://<region>/<table>")
        if parsed.username is not None or parsed.password is not None or parsed.port is not None:
            raise ConfigurationError(
                f"DynamoDB URLs take no credentials or port: {parsed}; the host is the AWS region and "
                "credentials come from the boto3 chain (environment, profile, role) or the aws_* arguments"
            )
        unknown = sorted(set(parsed.query) - _URL_OPTIONS)
        if unknown:
            raise ConfigurationError(
                f"unknown DynamoDB URL option(s) {unknown}; accepted: {sorted(_URL_OPTIONS)}"
            )
        from_url = {
            "region": parsed.host,
            "table": parsed.database,
            "endpoint_url": parsed.query.get("endpoint_url") or None,
            "namespace": parsed.query.get("namespace"),
            "create_table": _flag("create_table", parsed.query["create_table"]) if "create_table" in parsed.query else None,
        }
        if from_url["table"] is not None and "/" in from_url["table"]:
            raise InvalidIdentifierError(f"invalid DynamoDB table name {from_url['table']!r} in {parsed}")
    table_name = merge_url_option("table", table, from_url.get("table")) or DEFAULT_TABLE
    create = merge_url_option("create_table", create_table, from_url.get("create_table"))
    return DynamoDBOptions(
        table=check_table_name(table_name),
        region=merge_url_option("region", region, from_url.get("region")),
        endpoint_url=merge_url_option("endpoint_url", endpoint_url, from_url.get("endpoint_url")),
        namespace=merge_url_option("namespace", namespace or None, from_url.get("namespace") or None) or "",
        create_table=True if create is None else bool(create),
    )


# -- keys and items -------------------------------------------------------------------------------------


def check_item_key(key: Any) -> str:
    """A user key DynamoDB can hold as a sort key: valid UTF-8 (see ``check_key``), at most 1024 bytes."""
    size = len(check_key(key).encode("utf-8"))
    if size > MAX_SORT_KEY_BYTES:
        raise ValidationError(f"DynamoDB state keys are at most {MAX_SORT_KEY_BYTES} bytes of UTF-8, got {size}")
    return key


def key_list(keys: Iterable[str]) -> list[str]:
    """Validated, de-duplicated keys in first-seen order (BatchGetItem refuses duplicates). A bare
    string is refused: iterating it would treat each character as a key."""
    return [check_item_key(key) for key in check_keys(keys)]


def check_text(text: Any, what: str) -> str:
    if not isinstance(text, str):
        raise ValidationError(f"{what} must be a string, got {text!r}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{what} {text!r} is not valid Unicode (it contains a lone surrogate)") from None
    return text


def partition(namespace: str) -> str:
    return PARTITION_PREFIX + namespace


def item_key(namespace: str, key: str) -> dict[str, Any]:
    return {NS: partition(namespace), K: key}


def epoch_number(seconds: float) -> Decimal:
    """Epoch seconds as a DynamoDB Number (boto3 refuses floats); millisecond precision."""
    return Decimal(f"{seconds:.3f}")


def new_item(namespace: str, key: str, encoded: bytes, expires_at: Decimal | None) -> dict[str, Any]:
    """A whole item, checked against the 400 KB item limit before anything is sent."""
    size = len(NS) + len(partition(namespace).encode()) + len(K) + len(key.encode()) + len(V) + len(encoded)
    if expires_at is not None:
        size += len(EXPIRES_AT) + 21
    if size > MAX_ITEM_BYTES:
        raise ValidationError(
            f"the value of state key {key!r} is too large for DynamoDB: the item would be {size} bytes, "
            f"over the 400 KB ({MAX_ITEM_BYTES} byte) item limit"
        )
    item: dict[str, Any] = {**item_key(namespace, key), V: encoded}
    if expires_at is not None:
        item[EXPIRES_AT] = expires_at
    return item


def is_live(item: Mapping[str, Any], now: float) -> bool:
    expires_at = item.get(EXPIRES_AT)
    return expires_at is None or float(expires_at) > now


def remaining_ttl(item: Mapping[str, Any], now: float) -> float | None:
    expires_at = item.get(EXPIRES_AT)
    return None if expires_at is None else max(0.0, float(expires_at) - now)


def stored_bytes(item: Mapping[str, Any]) -> bytes:
    """The ``v`` attribute as bytes (boto3 hands Binary attributes back as ``Binary`` objects)."""
    value = item[V]
    return value.value if isinstance(value, Binary) else bytes(value)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# -- keys() ---------------------------------------------------------------------------------------------


def key_condition(namespace: str, prefix: str) -> tuple[str, dict[str, Any]]:
    """``KeyConditionExpression`` and its values for one namespace's keys starting with ``prefix``."""
    if not prefix:
        return "#ns = :ns", {":ns": partition(namespace)}
    return "#ns = :ns AND begins_with(#k, :prefix)", {":ns": partition(namespace), ":prefix": prefix}


# -- increment ------------------------------------------------------------------------------------------


def incremented(key: str, stored: bytes | None, amount: float) -> tuple[int | float, bytes]:
    """The new value (by the core's rules, :func:`storebridge.state.incremented`; a missing key, None,
    counts as 0) and its encoding."""
    result = add_amount(key, 0 if stored is None else decode_value(stored), amount)
    return result, encode_value(result)


def backoff_delay(attempt: int, *, base: float = 0.005, cap: float = 0.25) -> float:
    """Full-jitter exponential backoff: spreads retries of contending writers apart."""
    return random.uniform(0, min(cap, base * (2 ** min(attempt, 16))))


# -- wire format ----------------------------------------------------------------------------------------


class Wire:
    """Python values <-> what the client sends. A plain ``boto3.client("dynamodb")`` speaks the
    low-level format (``{"S": "x"}``); a resource's client (``resource.meta.client``) serialises
    Python values itself, so for it both directions are the identity."""

    _serializer = TypeSerializer()
    _deserializer = TypeDeserializer()

    def __init__(self, *, high_level: bool) -> None:
        self.high_level = high_level

    def out(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """An item, key or ``ExpressionAttributeValues`` mapping, ready for the client."""
        if self.high_level:
            return dict(attributes)
        return {name: self._serializer.serialize(value) for name, value in attributes.items()}

    def back(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """An item from a response, as Python values."""
        if self.high_level:
            return dict(attributes)
        return self.raw(attributes)

    @classmethod
    def raw(cls, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """An item in the low-level format whatever the client (error responses are never transformed)."""
        return {name: cls._deserializer.deserialize(value) for name, value in attributes.items()}


__all__ = [
    "ATTRIBUTE_DEFINITIONS",
    "BATCH_GET_LIMIT",
    "DEFAULT_TABLE",
    "KEY_SCHEMA",
    "DynamoDBOptions",
    "Wire",
    "attribute_names",
    "backoff_delay",
    "check_item_key",
    "check_table_name",
    "incremented",
    "is_live",
    "item_key",
    "key_condition",
    "key_list",
    "new_item",
    "remaining_ttl",
    "resolve_options",
]
