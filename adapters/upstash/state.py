"""The Upstash Redis state store, over Upstash's REST API with the official ``upstash-redis`` client.

    UpstashStateStore("upstash://my-db.upstash.io?token=...&namespace=app")
    UpstashStateStore("upstash://:TOKEN@my-db.upstash.io")      # the token as the password
    UpstashStateStore(url="https://my-db.upstash.io", token="...")
    UpstashStateStore()     # UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN from the environment

``upstash://`` and ``upstash-redis://`` mean HTTPS; ``upstash+http://`` plain HTTP (a local REST proxy).

**Unverified against a live Upstash here**: no Upstash service is reachable from this machine. The
store is checked by unit tests of what it sends and by the state suite through the official client
against a stand-in for the REST protocol in front of a local Redis; the live suite runs only when
``STOREBRIDGE_TEST_UPSTASH_URL`` and ``STOREBRIDGE_TEST_UPSTASH_TOKEN`` are set.

It shares everything but transport with the Redis store (:mod:`storebridge.adapters.redis._common`):
the same key layout (``sb:<len(namespace)>:<namespace>:<key>``), TTLs in milliseconds, SCAN MATCH
with escaped prefixes for ``keys()``/``clear()``, and the same Lua script for an atomic ``increment``
(sent with EVAL). One difference: REST carries text only, so bytes values are stored base64-encoded
(tag ``B``); the Redis store reads those too, while bytes that the Redis store wrote raw can only be
read back over a Redis connection when they are not valid UTF-8.

Each flavour owns its HTTP client: ``as_async()`` returns a NEW :class:`AsyncUpstashStateStore` (and
``as_sync()`` a new :class:`UpstashStateStore`) over the same database and namespace; close both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
import upstash_redis
import upstash_redis.asyncio
from upstash_redis.errors import UpstashError

from storebridge.adapters.redis._common import (
    INCREMENT_SCRIPT,
    AsyncPlannedStateStore,
    Commands,
    Keyspace,
    Plan,
    PlannedStateStore,
    Request,
    ScriptCall,
    StatePlans,
    T,
    TextCodec,
    drive,
    drive_async,
)
from storebridge.errors import (
    ConfigurationError,
    ConnectionFailedError,
    OperationFailedError,
    StorebridgeError,
    StoreClosedError,
)
from storebridge.state import StateCapabilities
from storebridge.urls import StoreURL, mask_secrets, merge_url_option, parse_url

URL_VARIABLE = "UPSTASH_REDIS_REST_URL"
TOKEN_VARIABLE = "UPSTASH_REDIS_REST_TOKEN"
#: Scheme (with its ``+driver``) -> the REST URL's scheme.
_SCHEMES = {"upstash": "https", "upstash+https": "https", "upstash+http": "http", "upstash-redis": "https",
            "upstash-redis+https": "https", "upstash-redis+http": "http", "https": "https", "http": "http"}
_QUERY_OPTIONS = frozenset({"namespace", "token"})
#: Words in an Upstash error that mean the token was refused.
_AUTH_ERRORS = ("unauthorized", "wrongpass", "noauth", "invalid token")


@dataclass(frozen=True)
class UpstashSettings:
    rest_url: str
    token: str = field(repr=False)
    #: Keyword arguments for the upstash-redis client besides url and token.
    client_options: dict[str, Any] = field(default_factory=dict)


def _one_of(name: str, explicit: Any, from_url: Any) -> Any:
    if explicit is not None and from_url is not None and explicit != from_url:
        raise ConfigurationError(f"{name} given twice with different values (as an argument and in the URL)")
    return explicit if explicit is not None else from_url


def resolve_settings(url: str | StoreURL | None, token: str | None,
                     client_options: dict[str, Any]) -> tuple[UpstashSettings, str | None]:
    """The REST URL and token from a URL, options and the environment, plus the URL's namespace."""
    if url is None:
        url = os.environ.get(URL_VARIABLE)
        if not url:
            raise ConfigurationError(
                f"no Upstash database given: pass url= (upstash://host?token=...) or set {URL_VARIABLE} "
                f"and {TOKEN_VARIABLE}"
            )
    parsed = parse_url(url)
    rest_scheme = _SCHEMES.get(parsed.full_scheme)
    if rest_scheme is None:
        raise ConfigurationError(
            f"an Upstash URL starts with one of {sorted(_SCHEMES)}://, got {parsed.full_scheme}:// "
            f"({mask_secrets(parsed)})"
        )
    unknown = sorted(set(parsed.query) - _QUERY_OPTIONS)
    if unknown:
        raise ConfigurationError(f"unknown Upstash URL option(s) {unknown}; accepted: {sorted(_QUERY_OPTIONS)}")
    if not parsed.host:
        raise ConfigurationError(f"an Upstash URL needs the database's host ({mask_secrets(parsed)})")
    url_token = _one_of("token", parsed.password or None, parsed.query.get("token") or None)
    token = _one_of("token", token, url_token) or os.environ.get(TOKEN_VARIABLE)
    if not token:
        raise ConfigurationError(
            f"no Upstash token: pass token=, put it in the URL (?token=... or upstash://:TOKEN@host) "
            f"or set {TOKEN_VARIABLE}"
        )
    rest_url = StoreURL(rest_scheme, host=parsed.host, port=parsed.port, path=parsed.path.rstrip("/")).render()
    return UpstashSettings(rest_url, token, client_options), parsed.query.get("namespace")


def translate_error(exc: Exception, *, where: str, secrets: tuple[str, ...], closed: bool) -> StorebridgeError:
    """An upstash-redis or httpx exception as storebridge's typed error (raised ``from exc``)."""
    text = mask_secrets(exc, *secrets)
    if closed:
        return StoreClosedError(f"the Upstash state store on {where} is closed")
    if isinstance(exc, httpx.TransportError):
        return ConnectionFailedError(f"could not reach Upstash at {where}: {type(exc).__name__}: {text}")
    if isinstance(exc, UpstashError) and any(word in text.lower() for word in _AUTH_ERRORS):
        return ConnectionFailedError(f"Upstash at {where} refused the token: {text}")
    if isinstance(exc, (UpstashError, httpx.HTTPError)):
        return OperationFailedError(f"Upstash state operation on {where} failed: {text}")
    return OperationFailedError(f"unexpected response from Upstash at {where}: {type(exc).__name__}: {text}")


def _as_commands(request: Request) -> tuple[Commands, bool]:
    """The request as plain commands, and whether its reply is the first command's alone. The script
    goes with EVAL: a REST request is stateless, and Upstash caches the script by its hash anyway."""
    if isinstance(request, ScriptCall):
        command = ("EVAL", INCREMENT_SCRIPT.source, len(request.keys), *request.keys, *request.args)
        return Commands((command,)), True
    return request, False


class _UpstashStore:
    """What the sync and async stores share: configuration, the closed flag and error translation."""

    backend_name = "upstash"
    capabilities = StateCapabilities(persistent=True, native_ttl=True, atomic_increment=True)
    _client_class: ClassVar[type]
    _wrong_client_class: ClassVar[type]

    plans: StatePlans

    def __init__(self, url: str | None = None, *, namespace: str = "", token: str | None = None,
                 rest_retries: int | None = None, rest_retry_interval: float | None = None,
                 allow_telemetry: bool | None = None, read_your_writes: bool | None = None,
                 client: Any = None) -> None:
        client_options = {name: value for name, value in (
            ("rest_retries", rest_retries), ("rest_retry_interval", rest_retry_interval),
            ("allow_telemetry", allow_telemetry), ("read_your_writes", read_your_writes),
        ) if value is not None}
        if client is not None:
            given = sorted([*client_options, *(["url"] if url is not None else []),
                            *(["token"] if token is not None else [])])
            if given:
                raise ConfigurationError(f"pass either client= or connection options, not both (got {given})")
            if isinstance(client, self._wrong_client_class) or not hasattr(client, "execute"):
                raise ConfigurationError(
                    f"{type(self).__name__} needs a {self._client_class.__module__}.{self._client_class.__name__} "
                    f"client, got {type(client).__name__}"
                )
            self._setup(namespace, None, client)
            return
        settings, url_namespace = resolve_settings(url, token, client_options)
        self._setup(merge_url_option("namespace", namespace or None, url_namespace) or "", settings, None)

    @classmethod
    def _from_settings(cls, settings: UpstashSettings, namespace: str) -> Any:
        store = cls.__new__(cls)
        store._setup(namespace, settings, None)
        return store

    def _setup(self, namespace: str, settings: UpstashSettings | None, client: Any) -> None:
        self.plans = StatePlans(Keyspace(namespace), TextCodec())  # validates the namespace first
        self._settings = settings
        self._owns_client = client is None
        self._closed = False
        self._secrets: tuple[str, ...]
        if settings is not None:
            self.where, self._secrets = settings.rest_url, (settings.token,)
            client = self._client_class(settings.rest_url, settings.token, **settings.client_options)
        else:
            self.where, self._secrets = str(getattr(client, "_url", "the given Upstash client")), ()
        self._client = client

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the Upstash state store on {self.where} is closed")

    def _failure(self, exc: Exception) -> Exception:
        return translate_error(exc, where=self.where, secrets=self._secrets, closed=self._closed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.where!r}, namespace={self.plans.keyspace.namespace!r})"


class UpstashStateStore(_UpstashStore, PlannedStateStore):
    """Key-value state with native TTL on Upstash Redis over REST (``upstash_redis.Redis``).
    Unverified against a live Upstash here (see the module docstring)."""

    _client_class = upstash_redis.Redis
    _wrong_client_class = upstash_redis.asyncio.Redis

    def _run(self, plan: Plan[T]) -> T:
        self._check_open()
        return drive(plan, self._execute)

    def _execute(self, request: Request) -> Any:
        batch, first_only = _as_commands(request)
        try:
            if len(batch.commands) == 1 and not batch.atomic:
                replies = [self._client.execute(list(batch.commands[0]))]
            else:
                pipe = self._client.multi() if batch.atomic else self._client.pipeline()
                for command in batch.commands:
                    pipe.execute(list(command))
                replies = pipe.exec()
        except Exception as exc:  # only the client's own failures: the plan runs outside this block
            raise self._failure(exc) from exc
        return replies[0] if first_only else replies

    def as_async(self) -> Any:
        """A NEW :class:`AsyncUpstashStateStore` over the same database and namespace, with its own
        HTTP client: close it as well. (Over a caller's ``client=``: the thread-pool face.)"""
        if self._settings is None:
            return super().as_async()
        self._check_open()
        return AsyncUpstashStateStore._from_settings(self._settings, self.namespace)

    def close(self) -> None:
        """Close the HTTP client this store opened (a caller's ``client=`` is left open)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            self._client.close()


class AsyncUpstashStateStore(_UpstashStore, AsyncPlannedStateStore):
    """The natively async Upstash state store (``upstash_redis.asyncio.Redis``).
    Unverified against a live Upstash here (see the module docstring)."""

    _client_class = upstash_redis.asyncio.Redis
    _wrong_client_class = upstash_redis.Redis

    async def _run(self, plan: Plan[T]) -> T:
        self._check_open()
        return await drive_async(plan, self._execute)

    async def _execute(self, request: Request) -> Any:
        batch, first_only = _as_commands(request)
        try:
            if len(batch.commands) == 1 and not batch.atomic:
                replies = [await self._client.execute(list(batch.commands[0]))]
            else:
                pipe = self._client.multi() if batch.atomic else self._client.pipeline()
                for command in batch.commands:
                    pipe.execute(list(command))
                replies = await pipe.exec()
        except Exception as exc:  # only the client's own failures: the plan runs outside this block
            raise self._failure(exc) from exc
        return replies[0] if first_only else replies

    def as_sync(self) -> Any:
        """A NEW :class:`UpstashStateStore` over the same database and namespace, with its own HTTP
        client: close it as well. (Over a caller's ``client=``: the background-loop face.)"""
        if self._settings is None:
            return super().as_sync()
        self._check_open()
        return UpstashStateStore._from_settings(self._settings, self.namespace)

    async def close(self) -> None:
        """Close the HTTP client this store opened (a caller's ``client=`` is left open)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._client.close()


__all__ = ["AsyncUpstashStateStore", "UpstashSettings", "UpstashStateStore", "resolve_settings", "translate_error"]
