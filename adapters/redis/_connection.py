"""Turning a URL and keyword options into redis-py client arguments, and redis-py errors into
storebridge's typed errors. Shared by the sync and async Redis stores (redis-py's two clients take
the same arguments and raise the same exceptions).

    redis://[[user]:password@]host[:port][/db][?namespace=app&socket_timeout=2]
    rediss://...          TLS        valkey:// and valkeys:// are the same as redis:// and rediss://
    unix:///path/to/redis.sock[?db=1&namespace=app]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from storebridge.errors import (
    ConfigurationError,
    ConnectionFailedError,
    OperationFailedError,
    StorebridgeError,
    StoreClosedError,
)
from storebridge.urls import SECRET_PARAMS, StoreURL, mask_secrets, parse_url

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 6379
#: Scheme -> TLS (None: a unix socket). ``valkey`` is registered for the store; ``valkeys`` by analogy.
_SCHEMES: dict[str, bool | None] = {"redis": False, "valkey": False, "rediss": True, "valkeys": True, "unix": None}


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


#: URL query options and how to read them (everything else in a query is refused, not ignored).
_QUERY_OPTIONS: dict[str, Callable[[str], Any]] = {
    "namespace": str,
    "db": int,
    "socket_timeout": float,
    "socket_connect_timeout": float,
    "max_connections": int,
    "client_name": str,
    "ssl_cert_reqs": str,
    "ssl_ca_certs": str,
    "ssl_check_hostname": _bool,
}


@dataclass(frozen=True)
class RedisSettings:
    """Everything needed to open a client: the same for the sync and the async store, so one store
    can open its twin of the other flavour."""

    #: Keyword arguments for ``redis.Redis`` / ``redis.asyncio.Redis`` (hold the password: never printed).
    options: Mapping[str, Any] = field(repr=False)
    #: Where the server is, for messages; the password masked.
    where: str

    @property
    def secrets(self) -> tuple[str, ...]:
        password = self.options.get("password")
        return (password,) if password else ()


def _one_of(name: str, explicit: Any, from_url: Any) -> Any:
    if explicit is not None and from_url is not None and explicit != from_url:
        shown = "" if "password" in name or name.lower() in SECRET_PARAMS else f": {explicit!r} and {from_url!r}"
        raise ConfigurationError(f"{name} given twice with different values{shown} (in the URL or options)")
    return explicit if explicit is not None else from_url


def _url_parts(url: str | StoreURL) -> tuple[StoreURL, dict[str, Any]]:
    """The parsed URL and its query options, converted; anything unknown or malformed is refused."""
    parsed = parse_url(url)
    if parsed.full_scheme not in _SCHEMES:
        raise ConfigurationError(
            f"a Redis state store URL starts with one of {sorted(_SCHEMES)}://, got {parsed.full_scheme}:// "
            f"({mask_secrets(parsed)})"
        )
    unknown = sorted(set(parsed.query) - set(_QUERY_OPTIONS))
    if unknown:
        raise ConfigurationError(f"unknown Redis URL option(s) {unknown}; accepted: {sorted(_QUERY_OPTIONS)}")
    query: dict[str, Any] = {}
    for name, text in parsed.query.items():
        try:
            query[name] = _QUERY_OPTIONS[name](text)
        except ValueError:
            raise ConfigurationError(f"Redis URL option {name}={text!r} is not valid") from None
    return parsed, query


def _db_from_path(parsed: StoreURL) -> int | None:
    if parsed.scheme == "unix" or not parsed.database:
        return None
    try:
        return int(parsed.database)
    except ValueError:
        raise ConfigurationError(
            f"the path of a Redis URL is the database number, got {parsed.path!r} ({mask_secrets(parsed)})"
        ) from None


def describe(options: Mapping[str, Any]) -> str:
    """``redis://user:***@host:port/db`` or ``unix:///path?db=N``: the server, never the password."""
    password = "x" if options.get("password") else None  # only its presence shows, as ***
    db = options.get("db") or 0
    if options.get("unix_socket_path"):
        return StoreURL("unix", username=options.get("username"), password=password,
                        path=options["unix_socket_path"], query={"db": str(db)} if db else {}).render()
    return StoreURL("rediss" if options.get("ssl") else "redis", username=options.get("username"), password=password,
                    host=options.get("host"), port=options.get("port"), path=f"/{db}").render()


def describe_client(client: Any) -> str:
    """Where a caller's client points, from its connection pool (best effort; no password)."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None) or {}
    if kwargs.get("path"):
        return describe({"unix_socket_path": kwargs["path"], "db": kwargs.get("db")})
    if kwargs.get("host"):
        return describe({"host": kwargs["host"], "port": kwargs.get("port"), "db": kwargs.get("db"),
                         "username": kwargs.get("username"), "password": kwargs.get("password")})
    return f"the given {type(client).__name__} client"


def resolve_settings(url: str | StoreURL | None, *, host: str | None, port: int | None, db: int | None,
                     username: str | None, password: str | None, ssl: bool | None,
                     socket_timeout: float | None, socket_connect_timeout: float | None,
                     client_options: Mapping[str, Any] | None) -> tuple[RedisSettings, str | None]:
    """Client settings from a URL and/or keyword options, plus the URL's ``namespace`` (if any).

    An option given both ways must agree. ``client_options`` go to the redis-py client unchanged
    (for what the URL and keywords do not cover, e.g. ``ssl_certfile``).
    """
    options: dict[str, Any] = {}
    url_namespace = None
    if url is None:
        options.update(host=host or DEFAULT_HOST, port=port or DEFAULT_PORT, db=db or 0,
                       username=username, password=password, ssl=bool(ssl))
    else:
        parsed, query = _url_parts(url)
        url_namespace = query.pop("namespace", None)
        tls = _SCHEMES[parsed.full_scheme]
        options.update(
            db=_one_of("db", db, _one_of("db", _db_from_path(parsed), query.pop("db", None))) or 0,
            username=_one_of("username", username, parsed.username or None),
            password=_one_of("password", password, parsed.password or None),
        )
        if tls is None:
            if host is not None or port is not None or ssl:
                raise ConfigurationError("a unix:// Redis URL takes no host, port or ssl option")
            if not parsed.path:
                raise ConfigurationError("a unix:// Redis URL needs the socket path: unix:///path/to/redis.sock")
            options["unix_socket_path"] = parsed.path
        else:
            options.update(host=_one_of("host", host, parsed.host) or DEFAULT_HOST,
                           port=_one_of("port", port, parsed.port) or DEFAULT_PORT,
                           ssl=bool(_one_of("ssl", ssl, tls or None)))
        socket_timeout = _one_of("socket_timeout", socket_timeout, query.pop("socket_timeout", None))
        socket_connect_timeout = _one_of("socket_connect_timeout", socket_connect_timeout,
                                         query.pop("socket_connect_timeout", None))
        options.update(query)
    if socket_timeout is not None:
        options["socket_timeout"] = socket_timeout
    if socket_connect_timeout is not None:
        options["socket_connect_timeout"] = socket_connect_timeout
    for name, value in dict(client_options or {}).items():
        options[name] = _one_of(name, value, options.get(name))
    if options.get("decode_responses"):
        raise ConfigurationError("decode_responses must stay False: stored values are bytes")
    options["decode_responses"] = False
    return RedisSettings(options, describe(options)), url_namespace


def translate_error(exc: Exception, *, where: str, secrets: tuple[str, ...], closed: bool) -> StorebridgeError:
    """A redis-py exception as storebridge's typed error (the caller raises it ``from exc``)."""
    import redis.exceptions

    text = mask_secrets(exc, *secrets)
    if closed:  # another thread or task closed the store under this call
        return StoreClosedError(f"the Redis state store on {where} is closed")
    if isinstance(exc, redis.exceptions.AuthenticationError):
        return ConnectionFailedError(f"Redis at {where} refused the credentials: {text}")
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return ConnectionFailedError(f"could not reach Redis at {where}: {text}")
    return OperationFailedError(f"Redis state operation on {where} failed: {text}")


__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "RedisSettings", "describe", "describe_client", "resolve_settings",
           "translate_error"]
