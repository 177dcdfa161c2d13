"""The DynamoDB state store (sync, boto3; the async face is derived through storebridge's thread pool).

One table holds every namespace: partition key ``ns`` (the namespace), sort key ``k`` (the user key),
so ``keys()`` and ``clear()`` are a Query on one partition, never a Scan of the table. Values are a
Binary attribute (``encode_value``), so str, bytes and JSON come back as their own type.

TTL is an ``expires_at`` Number (epoch seconds) and the table's TTL feature is enabled on it, but
DynamoDB deletes expired items lazily (often within days, not seconds), so every read also checks
``expires_at`` against the clock: an expired key is never returned, counted or incremented.

``increment`` is an optimistic compare-and-set: read the item, compute the new value in Python (the
same type rules as every other store: int + int stays int, a float makes a float, bools and
non-numbers are refused), then write it with an ``UpdateItem`` conditioned on the old value still
being there and live; on a conflict, back off with jitter and retry. DynamoDB evaluates a condition
and the write atomically per item, so this is atomic across threads, processes and machines. (A
native ``ADD`` cannot be used: it needs a Number attribute, and values are stored encoded.) Threads
of one store object incrementing one key take turns on a local lock first, so only writers in other
processes ever make an attempt fail.

All reads are strongly consistent, so a write is visible to the next read from any store object.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import boto3
import boto3.session
from boto3.dynamodb.table import BatchWriter
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from storebridge.errors import (
    ConfigurationError,
    ConnectionFailedError,
    OperationFailedError,
    StorebridgeError,
    StoreClosedError,
    ValidationError,
)
from storebridge.state import (
    StateCapabilities,
    StateStore,
    check_amount,
    check_namespace,
    check_ttl,
    decode_value,
    encode_value,
    key_matches,
    scan_prefix,
)
from storebridge.urls import mask_secrets

from ._items import (
    ATTRIBUTE_DEFINITIONS,
    BATCH_GET_LIMIT,
    EXISTS_AND_LIVE,
    EXPIRES_AT,
    KEY_SCHEMA,
    LIVE,
    MISSING_OR_EXPIRED,
    Wire,
    attribute_names,
    backoff_delay,
    check_item_key,
    check_text,
    chunks,
    epoch_number,
    incremented,
    is_live,
    item_key,
    key_condition,
    key_list,
    new_item,
    remaining_ttl,
    resolve_options,
    stored_bytes,
)

logger = logging.getLogger(__name__)

#: Give up on an increment after this many lost compare-and-set races (about half a minute of backoff).
MAX_INCREMENT_ATTEMPTS = 200
#: Rounds of re-sending ``UnprocessedKeys`` (throttling) before a batch read gives up.
MAX_BATCH_GET_ROUNDS = 12
#: Increments of one key from one store object queue on one of these locks instead of racing each
#: other through DynamoDB (where all but one attempt per round would fail and cost a write anyway).
INCREMENT_LOCK_STRIPES = 64

_session_lock = threading.Lock()
_session: boto3.session.Session | None = None


def _new_client(region: str | None, endpoint_url: str | None, credentials: dict[str, str],
                config: Config | None) -> Any:
    """A low-level client from storebridge's own boto3 session. boto3 sessions are not thread-safe,
    so clients are made under a lock (stores are often opened from several threads at once)."""
    global _session
    defaults = Config(max_pool_connections=50, retries={"mode": "standard"})
    with _session_lock:
        if _session is None:
            _session = boto3.session.Session()
        return _session.client("dynamodb", region_name=region, endpoint_url=endpoint_url,
                               config=defaults.merge(config) if config is not None else defaults, **credentials)


class _ConditionFailed(Exception):
    """A conditional write found the item changed; ``item`` is its current state (low-level format,
    error responses are never transformed) when DynamoDB returned it."""

    def __init__(self, item: dict[str, Any] | None) -> None:
        super().__init__("condition failed")
        self.item = item


def _client_for(region: str | None, endpoint_url: str | None, credentials: dict[str, str], config: Config | None,
                client: Any, resource: Any) -> tuple[Any, Wire, bool]:
    """``(client, wire format, whether the store owns the client)`` from the caller's choices."""
    if client is not None and resource is not None:
        raise ConfigurationError("pass client= or resource=, not both")
    if client is not None or resource is not None:
        given = [name for name, value in (("region", region), ("endpoint_url", endpoint_url), ("config", config))
                 if value is not None] + sorted(credentials)
        if given:
            raise ConfigurationError(
                f"{', '.join(given)} cannot be combined with a ready-made client/resource: configure them on it"
            )
    if resource is not None:
        return resource.meta.client, Wire(high_level=True), False
    if client is not None:
        if hasattr(client, "Table"):
            raise ConfigurationError("that is a boto3 DynamoDB resource; pass it as resource=, not client=")
        return client, Wire(high_level=False), False
    try:
        return _new_client(region, endpoint_url, credentials, config), Wire(high_level=False), True
    except NoRegionError as exc:
        raise ConfigurationError(
            "no AWS region for DynamoDB: put it in the URL (dynamodb://us-east-1/table), pass region=, "
            "or set AWS_DEFAULT_REGION"
        ) from exc
    except (BotoCoreError, ValueError) as exc:
        raise ConfigurationError(f"cannot configure the DynamoDB client: {mask_secrets(exc)}") from exc


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class DynamoDBStateStore(StateStore):
    """Key-value state with TTL in one DynamoDB table (``ns`` + ``k`` keys), one namespace per object.

    ``DynamoDBStateStore("dynamodb://us-east-1/my_table?namespace=app")``, keyword arguments, or
    ``client=`` (a ``boto3.client("dynamodb")``) / ``resource=`` (a ``boto3.resource("dynamodb")``)
    you built yourself; ``endpoint_url=`` points it at DynamoDB Local or moto. Credentials come from
    the boto3 chain unless given as ``aws_*`` arguments. The table (on-demand billing) is created on
    first use with ``create_table=True`` (the default); with ``False`` storebridge makes no
    control-plane calls at all and the table must exist with that key schema.
    """

    backend_name = "dynamodb"
    capabilities = StateCapabilities(persistent=True, native_ttl=True, atomic_increment=True)

    def __init__(self, url: str | None = None, *, namespace: str = "", table: str | None = None,
                 region: str | None = None, endpoint_url: str | None = None, create_table: bool | None = None,
                 aws_access_key_id: str | None = None, aws_secret_access_key: str | None = None,
                 aws_session_token: str | None = None, config: Config | None = None,
                 client: Any = None, resource: Any = None) -> None:
        options = resolve_options(url, table=table, region=region, endpoint_url=endpoint_url,
                                  namespace=namespace, create_table=create_table)
        self.namespace = check_namespace(options.namespace)
        self.table = options.table
        self._create_table = options.create_table
        credentials = {name: value for name, value in (
            ("aws_access_key_id", aws_access_key_id), ("aws_secret_access_key", aws_secret_access_key),
            ("aws_session_token", aws_session_token)) if value is not None}
        self._client, self._wire, self._owns_client = _client_for(options.region, options.endpoint_url, credentials,
                                                                  config, client, resource)
        self.region: str | None = getattr(self._client.meta, "region_name", options.region)
        self.endpoint_url: str | None = getattr(self._client.meta, "endpoint_url", options.endpoint_url)
        self._ready = not self._create_table
        self._ready_lock = threading.Lock()
        self._closed = False
        self._increment_locks = [threading.Lock() for _ in range(INCREMENT_LOCK_STRIPES)]

    def __repr__(self) -> str:
        closed = ", closed" if self._closed else ""
        return (f"DynamoDBStateStore(table={self.table!r}, region={self.region!r}, "
                f"endpoint_url={mask_secrets(self.endpoint_url)!r}, namespace={self.namespace!r}{closed})")

    # -- plumbing -------------------------------------------------------------------------------------

    @property
    def _endpoint(self) -> str:
        return mask_secrets(self.endpoint_url) if self.endpoint_url else f"region {self.region}"

    @property
    def _where(self) -> str:
        return f"table {self.table!r} at {self._endpoint}"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the DynamoDB state store on {self._where} is closed; open a new one")

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Refuse a closed store, create the table on first use, and turn boto3's exceptions into
        storebridge's typed errors (the driver's stays as ``__cause__``)."""
        self._check_open()
        try:
            self._ensure_table()
            yield
        except StorebridgeError:
            raise
        except ClientError as exc:
            if self._closed:
                raise StoreClosedError(f"the DynamoDB state store on {self._where} is closed") from exc
            code = _error_code(exc)
            if code == "ResourceNotFoundException":
                raise OperationFailedError(
                    f"DynamoDB {action} failed: table {self.table!r} does not exist at {self._endpoint}; "
                    "create it (partition key 'ns', "
                    "sort key 'k', both strings) or open the store with create_table=True"
                ) from exc
            raise OperationFailedError(f"DynamoDB {action} on {self._where} failed: {mask_secrets(exc)}") from exc
        except (BotoConnectionError, HTTPClientError) as exc:
            if self._closed:
                raise StoreClosedError(f"the DynamoDB state store on {self._where} is closed") from exc
            raise ConnectionFailedError(
                f"cannot reach DynamoDB ({self.region or 'no region'}) at {self._endpoint}: "
                f"{mask_secrets(exc)}"
            ) from exc
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise ConfigurationError(
                f"no usable AWS credentials for DynamoDB ({mask_secrets(exc)}): set them in the environment or a "
                "profile, or pass aws_access_key_id=/aws_secret_access_key="
            ) from exc
        except BotoCoreError as exc:
            raise OperationFailedError(f"DynamoDB {action} on {self._where} failed: {mask_secrets(exc)}") from exc

    def _ensure_table(self) -> None:
        """Create the table (on-demand) if missing, wait until ACTIVE, check its key schema and enable
        TTL on ``expires_at``; once per store object. Only with ``create_table=True``."""
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            try:
                description = self._client.describe_table(TableName=self.table)["Table"]
            except ClientError as exc:
                if _error_code(exc) != "ResourceNotFoundException":
                    raise
                description = self._create()
            if description.get("TableStatus") != "ACTIVE":
                self._client.get_waiter("table_exists").wait(
                    TableName=self.table, WaiterConfig={"Delay": 2, "MaxAttempts": 150}
                )
            schema = sorted(description.get("KeySchema", []), key=lambda part: part["KeyType"])
            if schema != KEY_SCHEMA:
                raise ConfigurationError(
                    f"DynamoDB {self._where} has key schema {schema}, not partition key 'ns' + sort key 'k'; "
                    "use another table name for the state store"
                )
            self._enable_ttl()
            self._ready = True

    def _create(self) -> dict[str, Any]:
        try:
            return dict(self._client.create_table(
                TableName=self.table, KeySchema=KEY_SCHEMA, AttributeDefinitions=ATTRIBUTE_DEFINITIONS,
                BillingMode="PAY_PER_REQUEST",
            )["TableDescription"])
        except ClientError as exc:
            if _error_code(exc) != "ResourceInUseException":  # another process is creating it right now
                raise
            return dict(self._client.describe_table(TableName=self.table)["Table"])

    def _enable_ttl(self) -> None:
        """Turn on the table's TTL feature for ``expires_at`` (storage is reclaimed; reads filter anyway)."""
        status = self._client.describe_time_to_live(TableName=self.table).get("TimeToLiveDescription", {})
        if status.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
            if status.get("AttributeName") != EXPIRES_AT:
                logger.warning("DynamoDB %s has TTL on attribute %r, not %r: expired state keys are hidden "
                               "from reads but never deleted by DynamoDB", self._where,
                               status.get("AttributeName"), EXPIRES_AT)
            return
        try:
            self._client.update_time_to_live(
                TableName=self.table, TimeToLiveSpecification={"Enabled": True, "AttributeName": EXPIRES_AT}
            )
        except ClientError as exc:
            if _error_code(exc) != "ValidationException":  # "already enabled" (by a concurrent store) or disabling
                raise
            logger.info("TTL on DynamoDB %s not changed: %s", self._where, exc)

    def _get_item(self, key: str, projection: str) -> dict[str, Any] | None:
        response = self._client.get_item(
            TableName=self.table, Key=self._wire.out(item_key(self.namespace, key)), ConsistentRead=True,
            ProjectionExpression=projection, ExpressionAttributeNames=attribute_names(projection),
        )
        item = response.get("Item")
        return None if item is None else self._wire.back(item)

    def _live_item(self, key: str, projection: str) -> dict[str, Any] | None:
        item = self._get_item(key, projection)
        return item if item is not None and is_live(item, time.time()) else None

    def _batch_get(self, keys: Sequence[str], projection: str) -> list[dict[str, Any]]:
        """Items of ``keys`` (expired ones included), 100 keys per call, re-sending ``UnprocessedKeys``
        with exponential backoff as DynamoDB asks."""
        found: list[dict[str, Any]] = []
        for chunk in chunks(keys, BATCH_GET_LIMIT):
            request: dict[str, Any] = {self.table: {
                "Keys": [self._wire.out(item_key(self.namespace, key)) for key in chunk],
                "ConsistentRead": True,
                "ProjectionExpression": projection,
                "ExpressionAttributeNames": attribute_names(projection),
            }}
            for attempt in range(MAX_BATCH_GET_ROUNDS + 1):
                response = self._client.batch_get_item(RequestItems=request)
                found += [self._wire.back(item) for item in response.get("Responses", {}).get(self.table, [])]
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(backoff_delay(attempt, base=0.05, cap=2.0))
            else:
                raise OperationFailedError(
                    f"DynamoDB kept keys of a batch read on {self._where} unprocessed after "
                    f"{MAX_BATCH_GET_ROUNDS} retries (throttled); try again later"
                )
        return found

    def _query(self, prefix: str, projection: str, *, live_only: bool) -> Iterator[dict[str, Any]]:
        """This namespace's items whose key starts with ``prefix``, page by page (a Query, never a Scan)."""
        condition, values = key_condition(self.namespace, prefix)
        request: dict[str, Any] = {"TableName": self.table, "KeyConditionExpression": condition,
                                   "ProjectionExpression": projection, "ConsistentRead": True}
        expressions = [condition, projection]
        if live_only:
            request["FilterExpression"] = LIVE
            values[":now"] = epoch_number(time.time())
            expressions.append(LIVE)
        request["ExpressionAttributeNames"] = attribute_names(*expressions)
        request["ExpressionAttributeValues"] = self._wire.out(values)
        while True:
            response = self._client.query(**request)
            for item in response.get("Items", []):
                yield self._wire.back(item)
            last = response.get("LastEvaluatedKey")
            if not last:
                return
            request["ExclusiveStartKey"] = last

    def _batch_writer(self) -> BatchWriter:
        """boto3's batch writer: 25 requests per ``BatchWriteItem``, unprocessed items re-sent."""
        return BatchWriter(self.table, self._client)

    def _update(self, key: str, update: str, condition: str, values: Mapping[str, Any], **extra: Any) -> None:
        """A conditional ``UpdateItem``; raises :class:`_ConditionFailed` if the condition did not hold."""
        try:
            self._client.update_item(
                TableName=self.table, Key=self._wire.out(item_key(self.namespace, key)),
                UpdateExpression=update, ConditionExpression=condition,
                ExpressionAttributeNames=attribute_names(update, condition),
                ExpressionAttributeValues=self._wire.out(values), **extra,
            )
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                raise _ConditionFailed(exc.response.get("Item")) from None
            raise

    def _put(self, encoded: Mapping[str, bytes], ttl: float | None, action: str) -> None:
        """Write whole items (replacing old ones and their TTL): one PutItem, or the batch writer."""
        self._check_open()
        if not encoded:
            return
        with self._errors(action):
            # The deadline counts from the write, after any first-use table check, not before it.
            expires_at = None if ttl is None else epoch_number(time.time() + ttl)
            rows = [new_item(self.namespace, key, value, expires_at) for key, value in encoded.items()]
            if len(rows) == 1:
                self._client.put_item(TableName=self.table, Item=self._wire.out(rows[0]))
                return
            with self._batch_writer() as writer:
                for row in rows:
                    writer.put_item(Item=self._wire.out(row))

    # -- the interface --------------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        key = check_item_key(key)
        with self._errors("get"):
            item = self._live_item(key, "#k, #v, #e")
        return default if item is None else decode_value(stored_bytes(item))

    def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        self._put({check_item_key(key): encode_value(value)}, check_ttl(ttl), "set")

    def delete(self, key: str) -> bool:
        key = check_item_key(key)
        with self._errors("delete"):
            old = self._client.delete_item(TableName=self.table, Key=self._wire.out(item_key(self.namespace, key)),
                                           ReturnValues="ALL_OLD").get("Attributes")
        return old is not None and is_live(self._wire.back(old), time.time())

    def exists(self, key: str) -> bool:
        key = check_item_key(key)
        with self._errors("exists"):
            return self._live_item(key, "#k, #e") is not None

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        wanted = key_list(keys)
        self._check_open()
        if not wanted:
            return {}
        with self._errors("get_many"):
            items = self._batch_get(wanted, "#k, #v, #e")
        now = time.time()
        found = {item["k"]: stored_bytes(item) for item in items if is_live(item, now)}
        return {key: decode_value(found[key]) for key in wanted if key in found}

    def set_many(self, items: Mapping[str, Any], *, ttl: float | None = None) -> None:
        if not isinstance(items, Mapping):
            raise ValidationError(f"set_many takes a mapping of keys to values, got {type(items).__name__}")
        ttl = check_ttl(ttl)
        # Validate and encode everything first, so a bad item means nothing was written.
        self._put({check_item_key(key): encode_value(value) for key, value in items.items()}, ttl, "set_many")

    def delete_many(self, keys: Iterable[str]) -> int:
        """Deletes in batches; the count is of the keys that were live just before (a batch delete does
        not report what it removed, so two concurrent deletes of one key may both count it)."""
        doomed = key_list(keys)
        self._check_open()
        if not doomed:
            return 0
        if len(doomed) == 1:
            return int(self.delete(doomed[0]))
        with self._errors("delete_many"):
            present = self._batch_get(doomed, "#k, #e")
            now = time.time()
            with self._batch_writer() as writer:
                for item in present:
                    writer.delete_item(Key=self._wire.out(item_key(self.namespace, item["k"])))
        return sum(is_live(item, now) for item in present)

    def keys(self, pattern: str | None = None, *, prefix: str | None = None) -> list[str]:
        if pattern is not None:
            check_text(pattern, "key pattern")
        if prefix is not None:
            check_text(prefix, "key prefix")
        with self._errors("keys"):
            found = [item["k"] for item in self._query(scan_prefix(pattern, prefix), "#k", live_only=True)]
        return sorted(key for key in found if key_matches(key, pattern, prefix))

    def ttl(self, key: str) -> float | None:
        key = check_item_key(key)
        with self._errors("ttl"):
            item = self._live_item(key, "#k, #e")
        return None if item is None else remaining_ttl(item, time.time())

    def expire(self, key: str, ttl: float | None) -> bool:
        key = check_item_key(key)
        ttl = check_ttl(ttl)
        with self._errors("expire"):
            now = time.time()
            values: dict[str, Any] = {":now": epoch_number(now)}
            if ttl is None:
                update = "REMOVE #e"
            else:
                update = "SET #e = :expires_at"
                values[":expires_at"] = epoch_number(now + ttl)
            try:
                self._update(key, update, EXISTS_AND_LIVE, values)
            except _ConditionFailed:
                return False
        return True

    def increment(self, key: str, amount: float = 1) -> int | float:
        key = check_item_key(key)
        amount = check_amount(amount)
        with self._errors("increment"), self._increment_locks[hash(key) % INCREMENT_LOCK_STRIPES]:
            item = self._get_item(key, "#k, #v, #e")
            for attempt in range(MAX_INCREMENT_ATTEMPTS):
                now = time.time()
                live = item is not None and is_live(item, now)
                old = stored_bytes(item) if live and item is not None else None
                result, encoded = incremented(key, old, amount)
                values: dict[str, Any] = {":new": encoded, ":now": epoch_number(now)}
                if old is not None:  # keep expires_at; only if nobody changed the value meanwhile
                    update, condition = "SET #v = :new", f"#v = :old AND {LIVE}"
                    values[":old"] = old
                else:  # a missing or expired key counts as 0 and gets no TTL
                    update, condition = "SET #v = :new REMOVE #e", MISSING_OR_EXPIRED
                try:
                    self._update(key, update, condition, values, ReturnValuesOnConditionCheckFailure="ALL_OLD")
                    return result
                except _ConditionFailed as conflict:  # lost a race: the failure carries the current item
                    item = Wire.raw(conflict.item) if conflict.item is not None else self._get_item(key, "#k, #v, #e")
                time.sleep(backoff_delay(attempt))
        raise OperationFailedError(
            f"increment of state key {key!r} on {self._where} lost {MAX_INCREMENT_ATTEMPTS} compare-and-set races "
            "in a row; too many concurrent writers on one key"
        )

    def clear(self) -> int:
        with self._errors("clear"):
            items = list(self._query("", "#k, #e", live_only=False))
            now = time.time()
            with self._batch_writer() as writer:
                for item in items:
                    writer.delete_item(Key=self._wire.out(item_key(self.namespace, item["k"])))
        return sum(is_live(item, now) for item in items)

    def close(self) -> None:
        """Refuse further calls and close the client if this store created it (not one passed in)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            self._client.close()


__all__ = ["DynamoDBStateStore"]
