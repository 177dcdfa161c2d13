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
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def _wait_until_ready(endpoint: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Until moto answers HTTP (its dashboard API); a bare open port can precede a working app."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with code {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"moto_server did not answer on {endpoint} within {timeout}s")
        time.sleep(0.05)


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
            _wait_until_ready(endpoint, process, timeout)
        except RuntimeError as exc:
            _stop_process(process)
            tail = Path(log_path).read_text(errors="replace")[-2000:]
            os.unlink(log_path)
            last_error = RuntimeError(f"{exc}; its output:\n{tail}")
            continue

        def stop(process: subprocess.Popen[bytes] = process, log_path: str = log_path) -> None:
            _stop_process(process)
            try:
                os.unlink(log_path)
            except OSError:
                pass

        return MotoServer(endpoint, MOTO_REGION, dict(MOTO_CREDENTIALS), stop)
    raise RuntimeError(f"could not start moto_server: {last_error}")


#: One server per session even when several test modules import the fixture (pytest then holds one
#: session fixture per module): the first starts it, the last to finish stops it.
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


__all__ = ["MOTO_CREDENTIALS", "MOTO_REGION", "MotoServer", "free_port", "moto_server", "start_moto_server"]
