"""A throwaway Cosmos DB emulator for the test session: the npm package ``@vercel/cosmosdb-server``
(pinned, :data:`VERSION`) on 127.0.0.1 and a free port, over HTTPS with its bundled self-signed
certificate, in memory, stopped by its own process id when the session ends.

Install. The package is installed once with ``npm install --prefix <cache>`` into
``$STOREBRIDGE_TEST_CACHE`` (default ``$XDG_CACHE_HOME/storebridge-test``, else
``~/.cache/storebridge-test``) under ``cosmosdb-server-<version>``; later sessions reuse it and need no
network. The install runs under a file lock (concurrent sessions install once), into a temporary
directory renamed into place when complete (an interrupted install leaves nothing half-made), and is
retried. Without ``node`` (20+) or ``npm`` the fixture skips with a reason that says so; since
ENGINES.md lists this emulator as running here, CI counts that skip as a failure.

Start. ``node`` runs the package's ``createHttpsServer({keepAlive: true})`` through a three-line
launcher: the package's own CLI answers every request with ``Connection: close``, which makes the
Python client open a TLS connection per request (about 60 ms each instead of 4).

``STOREBRIDGE_TEST_COSMOSDB_EMULATOR_URL`` (a ``cosmosdb://`` URL with ``key=``) points the tests at an
emulator that is already running; nothing is installed or started then. It is not
``STOREBRIDGE_TEST_COSMOSDB_URL``, which names a live Azure account for the full conformance suite
(``tests/conformance/test_knowledge_cosmosdb.py``): the emulator has no ``VectorDistance``.

The emulator speaks Cosmos DB's REST API and SQL (its query engine is ``@zeit/cosmosdb-query``); it is
not Cosmos DB, accepts any account key, and passing against it says nothing about the service's
vector search, consistency or throttling.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers._ports import free_port, stop_process

PACKAGE = "@vercel/cosmosdb-server"
VERSION = "1.0.1"
URL_VARIABLE = "STOREBRIDGE_TEST_COSMOSDB_EMULATOR_URL"
CACHE_VARIABLE = "STOREBRIDGE_TEST_CACHE"
#: The Azure Cosmos DB emulator's well-known account key (published by Microsoft; the npm emulator
#: accepts any key). Not a secret.
EMULATOR_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
MIN_NODE_MAJOR = 20
INSTALL_ATTEMPTS = 3
INSTALL_TIMEOUT = 300.0

_LAUNCHER = """\
const [pkg, host, port] = process.argv.slice(2);
const server = require(pkg).createHttpsServer({ keepAlive: true });
server.listen(Number(port), host, () => console.log(`ready ${server.address().port}`));
"""


class EmulatorUnavailable(RuntimeError):
    """node or npm is missing (or too old): the emulator cannot run on this machine as it is."""


@dataclass(frozen=True)
class CosmosDBEmulator:
    #: ``https://127.0.0.1:<port>/``
    endpoint: str
    key: str
    #: Seconds the npm install took in this session (0.0: it was cached, or the emulator was given by URL).
    install_seconds: float
    #: Seconds from starting node until the emulator answered (0.0 if given by URL).
    startup_seconds: float
    stop: Callable[[], None]

    def url(self, database: str, prefix: str = "sb_", **options: str) -> str:
        """A store URL for ``database`` on this emulator (TLS, the SDK skips verification on 127.0.0.1)."""
        parts = urllib.parse.urlsplit(self.endpoint)
        query = urllib.parse.urlencode({"key": self.key, "database": database, "prefix": prefix, **options})
        return f"cosmosdb://{parts.hostname}:{parts.port}/?{query}"

    def client(self) -> Any:
        from azure.cosmos import CosmosClient

        return CosmosClient(self.endpoint, credential=self.key, connection_verify=False)

    def drop_database(self, database: str) -> None:
        """Delete a test's database (and its containers); a missing one is fine."""
        from azure.cosmos import exceptions

        client = self.client()
        try:
            client.delete_database(database)
        except exceptions.CosmosResourceNotFoundError:
            pass
        finally:
            client.close()


# -- install ------------------------------------------------------------------------------------------------


def cache_root() -> Path:
    configured = os.environ.get(CACHE_VARIABLE)
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "storebridge-test"


def install_dir(root: Path | None = None) -> Path:
    return (root or cache_root()) / f"cosmosdb-server-{VERSION}"


def package_dir(prefix: Path) -> Path:
    return prefix / "node_modules" / "@vercel" / "cosmosdb-server"


def _installed(prefix: Path) -> bool:
    manifest = package_dir(prefix) / "package.json"
    try:
        return bool(json.loads(manifest.read_text()).get("version") == VERSION)
    except (OSError, ValueError):
        return False


def find_node_tools() -> tuple[str, str]:
    """``(node, npm)``; :class:`EmulatorUnavailable` saying what is missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(name for name, path in (("node", node), ("npm", npm)) if path is None)
        raise EmulatorUnavailable(f"{missing} not found on PATH; the Cosmos DB emulator ({PACKAGE}) needs Node.js "
                                  f"{MIN_NODE_MAJOR}+ with npm (Debian: apt-get install nodejs npm)")
    version = subprocess.run([node, "--version"], check=False, capture_output=True, text=True,
                             timeout=30).stdout.strip()
    try:
        major = int(version.lstrip("v").split(".")[0])
    except ValueError:
        major = 0
    if major < MIN_NODE_MAJOR:
        raise EmulatorUnavailable(f"node {version or '(unknown version)'} is too old; {PACKAGE} {VERSION} needs "
                                  f"Node.js {MIN_NODE_MAJOR}+")
    return node, npm


def install_emulator(npm: str, root: Path | None = None) -> tuple[Path, float]:
    """The package installed under the cache (installing it if needed); ``(prefix, seconds spent)``."""
    prefix = install_dir(root)
    if _installed(prefix):
        return prefix, 0.0
    prefix.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(prefix.parent / f".{prefix.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be installing the same thing
        if _installed(prefix):
            return prefix, 0.0
        failures: list[str] = []
        for attempt in range(1, INSTALL_ATTEMPTS + 1):
            staging = Path(tempfile.mkdtemp(prefix=f".{prefix.name}-", dir=prefix.parent))
            command = [npm, "install", "--prefix", str(staging), "--no-audit", "--no-fund", "--no-save",
                       "--no-package-lock", "--prefer-offline", "--loglevel=error", f"{PACKAGE}@{VERSION}"]
            try:
                result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
                ok = result.returncode == 0 and _installed(staging)
                detail = (result.stderr or result.stdout)[-1500:]
            except subprocess.TimeoutExpired:
                ok, detail = False, f"timed out after {INSTALL_TIMEOUT:.0f}s"
            if ok:
                if prefix.exists():  # a leftover without a complete package
                    shutil.rmtree(prefix)
                staging.rename(prefix)
                return prefix, time.monotonic() - started
            shutil.rmtree(staging, ignore_errors=True)
            failures.append(f"attempt {attempt}: {detail.strip()}")
            time.sleep(2 * attempt)
    raise RuntimeError(f"npm could not install {PACKAGE}@{VERSION} into {prefix}:\n" + "\n".join(failures))


# -- start ------------------------------------------------------------------------------------------------


def _answers(endpoint: str) -> bool:
    """Whether the emulator answers its database-account request (any HTTP status counts)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the emulator's bundled certificate is self-signed (and expired)
    try:
        with urllib.request.urlopen(endpoint, timeout=1, context=context) as response:
            return bool(response.status)
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, ConnectionError, TimeoutError, ssl.SSLError):
        return False


def start_cosmosdb_emulator(node: str, prefix: Path, *, install_seconds: float = 0.0,
                            timeout: float = 20.0) -> CosmosDBEmulator:
    """Start the installed emulator on a free local port; returns its endpoint and a stop callable."""
    workdir = Path(tempfile.mkdtemp(prefix="storebridge-cosmosdb-"))
    launcher = workdir / "launch.js"
    launcher.write_text(_LAUNCHER)
    log = workdir / "emulator.log"
    last_error = "not started"
    for _ in range(3):  # the free port can be taken between choosing it and binding it
        port = free_port()
        endpoint = f"https://127.0.0.1:{port}/"
        started = time.monotonic()
        with open(log, "wb") as out:
            process = subprocess.Popen([node, str(launcher), str(package_dir(prefix)), "127.0.0.1", str(port)],
                                       stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
        deadline = started + timeout
        while process.poll() is None and time.monotonic() < deadline and not _answers(endpoint):
            time.sleep(0.05)
        if process.poll() is None and _answers(endpoint):
            startup = time.monotonic() - started

            def stop(process: subprocess.Popen[bytes] = process) -> None:
                stop_process(process)
                shutil.rmtree(workdir, ignore_errors=True)

            return CosmosDBEmulator(endpoint, EMULATOR_KEY, install_seconds, startup, stop)
        last_error = (f"exit code {process.returncode}" if process.poll() is not None
                      else f"no answer within {timeout}s") + f": {log.read_text(errors='replace')[-2000:]}"
        stop_process(process)
    shutil.rmtree(workdir, ignore_errors=True)
    raise RuntimeError(f"could not start the Cosmos DB emulator ({PACKAGE}): {last_error}")


def emulator_from_url(url: str) -> CosmosDBEmulator:
    """An emulator that is already running, named by a ``cosmosdb://host:port/?key=...`` URL."""
    parts = urllib.parse.urlsplit(url)
    scheme = "http" if parts.scheme.endswith("+http") else "https"
    key = dict(urllib.parse.parse_qsl(parts.query)).get("key", EMULATOR_KEY).replace(" ", "+")
    return CosmosDBEmulator(f"{scheme}://{parts.hostname}:{parts.port or 8081}/", key, 0.0, 0.0, lambda: None)


@pytest.fixture(scope="session")
def cosmosdb_server() -> Iterator[CosmosDBEmulator]:
    """The session's Cosmos DB emulator (installed on first use; see the module docstring)."""
    given = os.environ.get(URL_VARIABLE)
    if given:
        yield emulator_from_url(given)
        return
    try:
        node, npm = find_node_tools()
    except EmulatorUnavailable as exc:
        # Not NO_ENGINE_HERE: ENGINES.md lists this emulator as running here, so in CI the skip is red.
        pytest.skip(f"the Cosmos DB emulator cannot run: {exc}")
    prefix, install_seconds = install_emulator(npm)
    server = start_cosmosdb_emulator(node, prefix, install_seconds=install_seconds)
    try:
        yield server
    finally:
        server.stop()


def fresh_database() -> str:
    """A database of one test only: its containers, away from every other test's."""
    return f"sbtest_{uuid.uuid4().hex[:12]}"


def knowledge_store_factory(emulator: CosmosDBEmulator, request: pytest.FixtureRequest,
                            **options: str) -> Callable[[], Any]:
    """A ``store_factory`` of new ``CosmosDBKnowledgeStore`` objects over one fresh database, which is
    deleted after the test."""
    from storebridge.adapters.cosmosdb import CosmosDBKnowledgeStore

    database = fresh_database()
    request.addfinalizer(lambda: emulator.drop_database(database))
    url = emulator.url(database, **options)
    return lambda: CosmosDBKnowledgeStore(url)


__all__ = [
    "EMULATOR_KEY",
    "PACKAGE",
    "URL_VARIABLE",
    "VERSION",
    "CosmosDBEmulator",
    "EmulatorUnavailable",
    "cosmosdb_server",
    "emulator_from_url",
    "find_node_tools",
    "fresh_database",
    "install_emulator",
    "knowledge_store_factory",
    "start_cosmosdb_emulator",
]
