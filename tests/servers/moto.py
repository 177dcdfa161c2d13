"""A throwaway AWS (moto) server for the test session: the venv's moto server on 127.0.0.1 and a free
port, stopped by its own process id when the session ends.

``STOREBRIDGE_TEST_DYNAMODB_URL`` (an endpoint such as DynamoDB Local, or ``aws`` for the real
service with credentials from the usual chain) points the DynamoDB tests elsewhere; nothing is
started then. Against moto, tests use the dummy credentials in :data:`MOTO_CREDENTIALS`, passed to
boto3 explicitly so they never leak into the environment of other tests.

moto is a test double: it follows the DynamoDB API closely, but passing against it says nothing about
the real service's throttling or eventual consistency.

One correction is made to it. ``moto_server`` serves requests on threads and its DynamoDB backend
takes no lock, so a conditional write can check its condition, lose the GIL, and apply after another
request changed the item: concurrent compare-and-set increments then lose updates (seen here: 792 of
800). DynamoDB evaluates a condition and applies the write atomically per item. So the server is run by
the venv's Python as ``moto_server``'s own entry point (``moto.server.main``, same arguments) with
its WSGI app wrapped in one lock: every request is atomic, as the real service's per-item operations
are, at no cost that matters to tests (moto handles one request at a time under the GIL anyway).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.servers._ports import free_port, stop_process, wait_for_http

URL_VARIABLE = "STOREBRIDGE_TEST_DYNAMODB_URL"
MOTO_REGION = "us-east-1"
#: moto accepts any credentials; these only have to look like some.
MOTO_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass(frozen=True)
class MotoServer:
    #: The endpoint to give boto3 as ``endpoint_url`` (None: AWS itself).
    endpoint_url: str | None
    region: str
    #: Keyword arguments for boto3 / the store (dummy credentials for moto; empty for a real endpoint).
    credentials: dict[str, str] = field(default_factory=dict)
    #: Stops the server this session started (a no-op for an endpoint given by URL).
    stop: Callable[[], None] = lambda: None


#: ``moto_server``'s entry point (``moto.server.main``, same arguments) with its WSGI app wrapped in one
#: lock. Run with ``python -c`` from a neutral directory, so no local ``moto.py`` can shadow the package.
_SERIALIZED_MOTO_SERVER = """
import sys, threading
import moto.server

lock = threading.Lock()
run_simple = moto.server.run_simple

def run_serialized(host, port, app, **options):
    def serialized(environ, start_response):
        with lock:
            return list(app(environ, start_response))  # the whole body, produced inside the lock
    run_simple(host, port, serialized, **options)

moto.server.run_simple = run_serialized
moto.server.main(sys.argv[1:])
"""


def moto_command(port: int) -> list[str]:
    """The venv's moto server (serialized, see the module docstring) on 127.0.0.1:``port``."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        raise FileNotFoundError("moto's server is not installed in this venv; pip install 'moto[server]'") from None
    return [sys.executable, "-c", _SERIALIZED_MOTO_SERVER, "-H", "127.0.0.1", "-p", str(port)]


def start_moto_server(timeout: float = 30.0) -> MotoServer:
    """Start moto's server (serialized) on 127.0.0.1 and a free port; returns its endpoint and a stop callable.
    Its request log goes to a temporary file (a pipe nobody reads would fill up and stall it)."""
    last_error: Exception | None = None
    for _ in range(3):  # the free port can be taken between choosing it and binding it
        port = free_port()
        fd, log_path = tempfile.mkstemp(prefix="storebridge-moto-", suffix=".log")
        with os.fdopen(fd, "wb") as log:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(moto_command(port), stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, cwd=tempfile.gettempdir())
        endpoint = f"http://127.0.0.1:{port}"
        try:
            # Its dashboard API: a bare open port can precede a working app.
            wait_for_http(f"{endpoint}/moto-api/data.json", process, timeout, "moto_server")
        except RuntimeError as exc:
            stop_process(process)
            tail = Path(log_path).read_text(errors="replace")[-2000:]
            os.unlink(log_path)
            last_error = RuntimeError(f"{exc}; its output:\n{tail}")
            continue

        def stop(process: subprocess.Popen[bytes] = process, log_path: str = log_path) -> None:
            stop_process(process)
            try:
                os.unlink(log_path)
            except OSError:
                pass

        return MotoServer(endpoint, MOTO_REGION, dict(MOTO_CREDENTIALS), stop)
    raise RuntimeError(f"could not start moto_server: {last_error}")


#: One server per session. ``tests/conftest.py`` registers this module with ``pytest_plugins``, so every test
#: sees one ``moto_server``; a module that still imports the fixture object gets its own session fixture
#: from pytest, and this count keeps that to one server too: the first starts it, the last to finish stops it.
_shared: MotoServer | None = None
_users = 0


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """The session's DynamoDB endpoint: ``STOREBRIDGE_TEST_DYNAMODB_URL`` if set (``aws`` for the real
    service), else moto's server started here. moto is installed with the test dependencies, so a
    missing moto is a plain skip (a failure in CI), not a no-engine skip."""
    global _shared, _users
    given = os.environ.get(URL_VARIABLE)
    if given:
        endpoint = None if given.strip().lower() == "aws" else given
        yield MotoServer(endpoint, os.environ.get("AWS_DEFAULT_REGION", MOTO_REGION))
        return
    if _shared is None:
        try:
            _shared = start_moto_server()
        except FileNotFoundError as exc:
            pytest.skip(f"{exc} or set {URL_VARIABLE}")
    _users += 1
    try:
        yield _shared
    finally:
        _users -= 1
        if _users == 0:
            _shared.stop()
            _shared = None


@pytest.fixture(scope="module")
def dynamodb_table(moto_server: MotoServer) -> Iterator[str]:
    """A fresh DynamoDB table name for the test module, as apps use one table: every test has its own
    namespace, which is exactly the isolation the store promises. The first store creates the table;
    it is deleted at the end (real endpoints cost)."""
    import boto3

    table = f"sb_state_{uuid.uuid4().hex[:10]}"
    yield table
    client = boto3.session.Session().client("dynamodb", region_name=moto_server.region,
                                            endpoint_url=moto_server.endpoint_url, **moto_server.credentials)
    try:
        client.delete_table(TableName=table)
    except client.exceptions.ResourceNotFoundException:
        pass
    finally:
        client.close()


def dynamodb_state_factory(server: MotoServer, table: str, request: pytest.FixtureRequest) -> Callable[..., Any]:
    """A ``store_factory`` (``namespace=`` aware) of new ``DynamoDBStateStore`` objects over ``table`` on
    ``server``. The table outlives the test (one per module), so every namespace the test used is cleared
    afterwards: the next test starts empty. Used by ``tests/engines.py`` and
    ``tests/conformance/test_state_dynamodb.py``."""
    from storebridge.adapters.dynamodb import DynamoDBStateStore

    url = f"dynamodb://{server.region}/{table}"
    used: set[str] = set()

    def open_store(namespace: str = "") -> Any:
        store = DynamoDBStateStore(url, namespace=namespace, endpoint_url=server.endpoint_url, **server.credentials)
        used.add(namespace)  # after the constructor validated it
        return store

    def cleanup() -> None:
        for namespace in used:
            with open_store(namespace) as store:
                store.clear()

    request.addfinalizer(cleanup)
    return open_store


__all__ = ["MOTO_CREDENTIALS", "MOTO_REGION", "MotoServer", "dynamodb_state_factory", "dynamodb_table", "moto_server",
           "start_moto_server"]
