"""A throwaway Redis server for the test session: ``redis-server`` on 127.0.0.1 and a free port, no
persistence, in a temporary directory, stopped by its own process id when the session ends.

``STOREBRIDGE_TEST_REDIS_URL`` points the tests at another server instead (nothing is started then).
Tests share the server through unique namespaces and never flush a database.

Also here: :class:`UpstashRestShim`, a minimal stand-in for the Upstash REST API in front of that
server, so the Upstash adapter's requests are exercised end to end through the official client.
It follows the documented protocol (JSON command arrays, ``/pipeline``, ``/multi-exec``, base64
results); it is not Upstash, and passing against it says nothing about the real service's quirks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.servers._ports import free_port, stop_process

URL_VARIABLE = "STOREBRIDGE_TEST_REDIS_URL"
#: Where Debian/Ubuntu put it when it is not on PATH.
DEFAULT_BINARY = "/usr/bin/redis-server"


@dataclass(frozen=True)
class RedisServer:
    url: str
    #: Stops the server this session started (a no-op for a server given by URL).
    stop: Callable[[], None]


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    import redis

    deadline = time.monotonic() + timeout
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {process.returncode} before it was ready")
            try:
                if client.ping():
                    return
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer PING within {timeout}s") from None
                time.sleep(0.05)
    finally:
        client.close()


def start_redis_server(binary: str | None = None, timeout: float = 10.0) -> RedisServer:
    """Start ``redis-server`` on a free local port; returns its URL and a stop callable."""
    binary = binary or shutil.which("redis-server") or DEFAULT_BINARY
    if not os.path.exists(binary):
        raise FileNotFoundError(f"redis-server not found (looked on PATH and at {DEFAULT_BINARY})")
    workdir = tempfile.mkdtemp(prefix="storebridge-redis-")
    last_error: Exception | None = None
    for _ in range(3):  # the free port can be taken between choosing it and binding it
        port = free_port()
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", workdir, "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        try:
            _wait_until_ready(url, process, timeout)
        except RuntimeError as exc:
            last_error = exc
            stop_process(process)
            continue

        def stop(process: subprocess.Popen[bytes] = process) -> None:
            stop_process(process)
            shutil.rmtree(workdir, ignore_errors=True)

        return RedisServer(url, stop)
    shutil.rmtree(workdir, ignore_errors=True)
    raise RuntimeError(f"could not start redis-server: {last_error}")


#: One server for the whole session. ``tests/conftest.py`` registers this module with ``pytest_plugins``, so
#: every test sees one ``redis_server``; a module that still imports the fixture object gets its own session
#: fixture from pytest, and this count keeps that to one server too: started by the first user, stopped when
#: the last one ends.
_shared: RedisServer | None = None
_users = 0


def _acquire_shared() -> RedisServer:
    global _shared, _users
    if _shared is None:
        _shared = start_redis_server()
    _users += 1
    return _shared


def _release_shared() -> None:
    global _shared, _users
    _users -= 1
    if _users == 0 and _shared is not None:
        _shared.stop()
        _shared = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's Redis: ``STOREBRIDGE_TEST_REDIS_URL`` if set, else a ``redis-server`` started here.
    Redis runs on these machines, so a missing binary is a plain skip (a failure in CI), not a
    no-engine skip."""
    given = os.environ.get(URL_VARIABLE)
    if given:
        yield RedisServer(given, lambda: None)
        return
    try:
        server = _acquire_shared()
    except FileNotFoundError as exc:
        pytest.skip(f"{exc}; install Redis or set {URL_VARIABLE}")
    try:
        yield server
    finally:
        _release_shared()


def state_store_factory(server: RedisServer, request: pytest.FixtureRequest, *,
                        asynchronous: bool = False) -> Callable[..., Any]:
    """A ``store_factory`` (``namespace=`` aware) of new ``RedisStateStore`` (or ``AsyncRedisStateStore``)
    objects over ``server``; every namespace a test used is cleared afterwards, so a server given by URL
    keeps nothing of the run. Used by ``tests/engines.py`` and ``tests/conformance/test_state_redis.py``."""
    from storebridge.adapters.redis import AsyncRedisStateStore, RedisStateStore

    store_class: type = AsyncRedisStateStore if asynchronous else RedisStateStore
    used: set[str] = set()

    def cleanup() -> None:
        for namespace in used:
            with RedisStateStore(server.url, namespace=namespace) as store:
                store.clear()

    request.addfinalizer(cleanup)

    def open_store(namespace: str = "") -> Any:
        store = store_class(server.url, namespace=namespace)  # validates the namespace before it is recorded
        used.add(namespace)
        return store

    return open_store


# -- an Upstash REST stand-in ----------------------------------------------------------------------------


def _rest_result(reply: Any) -> Any:
    """A RESP reply as the REST API sends it with ``Upstash-Encoding: base64``."""
    if isinstance(reply, (list, tuple)):
        return [_rest_result(item) for item in reply]
    if isinstance(reply, bytes):
        return "OK" if reply == b"OK" else base64.b64encode(reply).decode("ascii")
    return reply  # int or None


class UpstashRestShim:
    """An HTTP/1.1 server speaking the Upstash REST protocol, executing every command on a Redis server.

    It runs on its own event loop in a background thread (one loop, no thread per connection, so the
    concurrency cases stay fast) and records every request body as ``(path, body)``."""

    def __init__(self, redis_url: str, token: str) -> None:
        self.token = token
        self.requests: list[tuple[str, Any]] = []
        self._redis_url = redis_url
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="upstash-shim", daemon=True)
        self._thread.start()
        self._port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    async def _start(self) -> int:
        import redis.asyncio

        self._redis = redis.asyncio.Redis.from_url(self._redis_url)
        self._redis.response_callbacks.clear()  # raw RESP replies, as the REST API relays them
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=256)
        return int(self._server.sockets[0].getsockname()[1])

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            await self._server.wait_closed()
            await self._redis.aclose()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: requests until the client hangs up
                request_line = await reader.readline()
                if not request_line:
                    return
                path = request_line.decode("latin-1").split(" ")[1]
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = json.loads(await reader.readexactly(int(headers.get("content-length", "0"))))
                status, payload = await self._respond(path, headers.get("authorization"), body)
                data = json.dumps(payload).encode("utf-8")
                writer.write(f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
                             f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                             + data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _respond(self, path: str, authorization: str | None, body: Any) -> tuple[int, Any]:
        self.requests.append((path, body))
        if authorization != f"Bearer {self.token}":
            return 401, {"error": "WRONGPASS invalid or missing auth token"}
        if path == "/":
            return 200, await self._run(body)
        if path == "/pipeline":
            return 200, [await self._run(command) for command in body]
        if path == "/multi-exec":
            return 200, await self._transaction(body)
        return 404, {"error": f"unknown endpoint {path}"}

    async def _run(self, command: list[Any]) -> dict[str, Any]:
        import redis.exceptions

        try:
            return {"result": _rest_result(await self._redis.execute_command(*command))}
        except redis.exceptions.ResponseError as exc:
            return {"error": str(exc)}

    async def _transaction(self, commands: list[list[Any]]) -> Any:
        import redis.exceptions

        async with self._redis.pipeline(transaction=True) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            try:
                replies = await pipe.execute(raise_on_error=False)
            except redis.exceptions.ResponseError as exc:
                return {"error": str(exc)}
        return [
            {"error": str(reply)} if isinstance(reply, Exception) else {"result": _rest_result(reply)}
            for reply in replies
        ]


@pytest.fixture(scope="session")
def upstash_shim(redis_server: RedisServer) -> Iterator[UpstashRestShim]:
    shim = UpstashRestShim(redis_server.url, token="test-token-not-a-secret")
    try:
        yield shim
    finally:
        shim.close()


__all__ = ["RedisServer", "UpstashRestShim", "redis_server", "start_redis_server", "state_store_factory",
           "upstash_shim"]
