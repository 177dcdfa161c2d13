"""The Redis (and Valkey) state store, sync on ``redis.Redis`` and natively async on ``redis.asyncio``.

    RedisStateStore("redis://:password@host:6379/0?namespace=app")
    AsyncRedisStateStore("rediss://host:6380", namespace="app")
    RedisStateStore(client=my_redis_client, namespace="app")     # yours: storebridge never closes it

How the state contract maps onto Redis:

* **Namespaces** are key prefixes, ``sb:<len(namespace)>:<namespace>:<key>``: the length makes the
  layout unambiguous (namespace ``a`` + key ``b:c`` never meets namespace ``a:b`` + key ``c``), so
  many apps share one database. Each value is one Redis string holding storebridge's tagged encoding.
* **TTL** is Redis' own, in milliseconds (``SET ... PX``, ``PEXPIRE``, ``PERSIST``, ``PTTL``); Redis
  never returns a key past its expiry, whether or not it has deleted it yet.
* **increment** is one Lua script (EVALSHA, loaded on demand): it reads the tagged value, refuses
  anything but a JSON number (bools included), adds with Python's int/float rules (ints of any size
  stay exact), and writes back with ``KEEPTTL``. Atomic across threads, processes and machines.
* **keys()** and **clear()** walk only this namespace with ``SCAN MATCH <escaped prefix>*`` (never
  ``KEYS``, which blocks the server); ``clear()`` UNLINKs page by page and never FLUSHDBs.
* **Batches** are one round trip: MGET and DEL in chunks, ``set_many`` in one MULTI/EXEC.

Each flavour owns its own connection pool. ``RedisStateStore.as_async()`` returns a NEW
``AsyncRedisStateStore`` over the same server and namespace (not a thread-pool wrapper), and
``AsyncRedisStateStore.as_sync()`` a new ``RedisStateStore``; close every store you open, the twin
included. A store built on your ``client=`` cannot open a twin, so its other face is the generic
bridge over the same client (see :mod:`storebridge.bridge`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import redis.asyncio  # binds ``redis`` too: redis.Redis, redis.exceptions

from storebridge.errors import ConfigurationError, StoreClosedError
from storebridge.state import StateCapabilities
from storebridge.urls import merge_url_option

from ._common import (
    INCREMENT_SCRIPT,
    AsyncPlannedStateStore,
    BinaryCodec,
    Keyspace,
    Plan,
    PlannedStateStore,
    Request,
    ScriptCall,
    StatePlans,
    T,
    drive,
    drive_async,
)
from ._connection import RedisSettings, describe_client, resolve_settings, translate_error


class _RedisStore:
    """What the sync and async stores share: configuration, the closed flag and error translation."""

    backend_name = "redis"
    capabilities = StateCapabilities(persistent=True, native_ttl=True, atomic_increment=True)
    #: The redis-py client class this flavour opens, and the one a caller's client must not be.
    _client_class: ClassVar[type]
    _wrong_client_class: ClassVar[type]
    _other_flavour: ClassVar[str]

    plans: StatePlans

    def __init__(self, url: str | None = None, *, namespace: str = "", host: str | None = None,
                 port: int | None = None, db: int | None = None, username: str | None = None,
                 password: str | None = None, ssl: bool | None = None, socket_timeout: float | None = None,
                 socket_connect_timeout: float | None = None, client_options: Mapping[str, Any] | None = None,
                 client: Any = None) -> None:
        if client is None:
            settings, url_namespace = resolve_settings(
                url, host=host, port=port, db=db, username=username, password=password, ssl=ssl,
                socket_timeout=socket_timeout, socket_connect_timeout=socket_connect_timeout,
                client_options=client_options,
            )
            self._setup(merge_url_option("namespace", namespace or None, url_namespace) or "", settings, None)
            return
        options = {"url": url, "host": host, "port": port, "db": db, "username": username, "password": password,
                   "ssl": ssl, "socket_timeout": socket_timeout, "socket_connect_timeout": socket_connect_timeout,
                   "client_options": client_options}
        given = sorted(name for name, value in options.items() if value is not None)
        if given:
            raise ConfigurationError(f"pass either client= or connection options, not both (got {given})")
        self._check_client(client)
        self._setup(namespace, None, client)

    @classmethod
    def _from_settings(cls, settings: RedisSettings, namespace: str) -> Any:
        """A store over an already-resolved configuration: how a store opens its twin."""
        store = cls.__new__(cls)
        store._setup(namespace, settings, None)
        return store

    def _setup(self, namespace: str, settings: RedisSettings | None, client: Any) -> None:
        self.plans = StatePlans(Keyspace(namespace), BinaryCodec())  # validates the namespace first
        self._settings = settings
        self._owns_client = client is None
        self._closed = False
        if settings is not None:
            self.where, self._secrets = settings.where, settings.secrets
            client = self._client_class(**settings.options)
        else:
            self.where, self._secrets = describe_client(client), ()
        self._client = client
        # EVALSHA, falling back to loading the script when the server does not have it cached.
        self._increment_script = client.register_script(INCREMENT_SCRIPT.source)

    def _check_client(self, client: Any) -> None:
        if isinstance(client, self._wrong_client_class) or not hasattr(client, "register_script"):
            raise ConfigurationError(
                f"{type(self).__name__} needs a {self._client_class.__module__}.{self._client_class.__name__} "
                f"client, got {type(client).__name__}; use the {self._other_flavour} store for that client"
            )
        kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None) or {}
        if kwargs.get("decode_responses"):
            raise ConfigurationError("the Redis client must have decode_responses=False: stored values are bytes")

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the Redis state store on {self.where} is closed")

    def _failure(self, exc: Exception) -> Exception:
        return translate_error(exc, where=self.where, secrets=self._secrets, closed=self._closed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.where!r}, namespace={self.plans.keyspace.namespace!r})"


class RedisStateStore(_RedisStore, PlannedStateStore):
    """Key-value state with native TTL on Redis or Valkey (``redis.Redis``); thread-safe."""

    _client_class = redis.Redis
    _wrong_client_class = redis.asyncio.Redis
    _other_flavour = "AsyncRedisStateStore"

    def _run(self, plan: Plan[T]) -> T:
        self._check_open()
        return drive(plan, self._execute)

    def _execute(self, request: Request) -> Any:
        try:
            if isinstance(request, ScriptCall):
                return self._increment_script(keys=list(request.keys), args=list(request.args))
            if len(request.commands) == 1 and not request.atomic:
                return [self._client.execute_command(*request.commands[0])]
            with self._client.pipeline(transaction=request.atomic) as pipe:
                for command in request.commands:
                    pipe.execute_command(*command)
                return pipe.execute()
        except redis.exceptions.RedisError as exc:
            raise self._failure(exc) from exc

    def as_async(self) -> Any:
        """A NEW :class:`AsyncRedisStateStore` over the same server and namespace, with its own
        connection pool: close it as well. (Over a caller's ``client=``: the thread-pool face.)"""
        if self._settings is None:
            return super().as_async()
        self._check_open()
        return AsyncRedisStateStore._from_settings(self._settings, self.namespace)

    def close(self) -> None:
        """Close the connection pool this store opened (a caller's ``client=`` is left open)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            self._client.close()


class AsyncRedisStateStore(_RedisStore, AsyncPlannedStateStore):
    """Key-value state with native TTL on Redis or Valkey, natively async (``redis.asyncio.Redis``).
    Use it from one event loop: its connections belong to the loop that opened them."""

    _client_class = redis.asyncio.Redis
    _wrong_client_class = redis.Redis
    _other_flavour = "RedisStateStore"

    async def _run(self, plan: Plan[T]) -> T:
        self._check_open()
        return await drive_async(plan, self._execute)

    async def _execute(self, request: Request) -> Any:
        try:
            if isinstance(request, ScriptCall):
                return await self._increment_script(keys=list(request.keys), args=list(request.args))
            if len(request.commands) == 1 and not request.atomic:
                return [await self._client.execute_command(*request.commands[0])]
            async with self._client.pipeline(transaction=request.atomic) as pipe:
                for command in request.commands:
                    pipe.execute_command(*command)
                return await pipe.execute()
        except redis.exceptions.RedisError as exc:
            raise self._failure(exc) from exc

    def as_sync(self) -> Any:
        """A NEW :class:`RedisStateStore` over the same server and namespace, with its own connection
        pool: close it as well. (Over a caller's ``client=``: the background-loop face.)"""
        if self._settings is None:
            return super().as_sync()
        self._check_open()
        return RedisStateStore._from_settings(self._settings, self.namespace)

    async def close(self) -> None:
        """Close the connection pool this store opened (a caller's ``client=`` is left open)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._client.aclose()


__all__ = ["AsyncRedisStateStore", "RedisStateStore"]
