"""A throwaway Firestore emulator for the test session: Google's official emulator (the Cloud SDK
component, a Java program) on 127.0.0.1 and a free port, started once per session in its own process
group and stopped, group and all, when the session ends.

The emulator starts in a few seconds and keeps everything in memory. Each session uses its own
project id, so two runs never see each other's documents; tests within a session use fresh
namespaces. The Firestore client finds the emulator through ``FIRESTORE_EMULATOR_HOST``, which the
fixture sets for the session.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers._ports import free_port, wait_for_http

#: Where the Cloud SDK component lives on Debian images; ``STOREBRIDGE_FIRESTORE_EMULATOR`` overrides.
DEFAULT_EMULATOR = "/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud_firestore_emulator"
EMULATOR_VARIABLE = "STOREBRIDGE_FIRESTORE_EMULATOR"


@dataclass(frozen=True)
class FirestoreEmulator:
    #: ``127.0.0.1:<port>``, the value for ``FIRESTORE_EMULATOR_HOST``.
    host: str
    #: A project id of this session only.
    project: str
    stop: Callable[[], None]


def find_emulator() -> str | None:
    """The emulator's launcher script, if this machine has the emulator and a Java runtime for it."""
    candidates = [os.environ.get(EMULATOR_VARIABLE), DEFAULT_EMULATOR]
    gcloud = shutil.which("gcloud")
    if gcloud:
        sdk_root = Path(os.path.realpath(gcloud)).parent.parent
        candidates.append(str(sdk_root / "platform/cloud-firestore-emulator/cloud_firestore_emulator"))
    if not shutil.which("java"):
        return None
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _stop_group(process: subprocess.Popen[bytes], port: int) -> None:
    """SIGTERM the emulator's process group (the launcher script and its Java child), then SIGKILL
    what is left; afterwards nothing may listen on the port."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    try:  # the Java child can outlive the script; the group id is the script's pid
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
    deadline = time.monotonic() + 10
    while _listening(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Firestore emulator still listens on port {port} after being stopped")
        time.sleep(0.1)


def start_firestore_emulator(emulator: str, timeout: float = 90.0) -> FirestoreEmulator:
    """Start the emulator on a free local port; returns its host, a fresh project id and a stop callable."""
    workdir = Path(tempfile.mkdtemp(prefix="storebridge-firestore-"))
    log = workdir / "emulator.log"
    last_error: Exception | None = None
    for _ in range(3):  # the free port can be taken between choosing it and binding it
        port = free_port()
        host = f"127.0.0.1:{port}"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [emulator, "start", "--host=127.0.0.1", f"--port={port}"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,  # its own process group
            )
        try:
            wait_for_http(f"http://{host}/", process, timeout, "the Firestore emulator", log=log, interval=0.2)
        except RuntimeError as exc:
            last_error = exc
            _stop_group(process, port)
            continue

        def stop(process: subprocess.Popen[bytes] = process, port: int = port) -> None:
            _stop_group(process, port)
            shutil.rmtree(workdir, ignore_errors=True)

        return FirestoreEmulator(host, f"storebridge-test-{uuid.uuid4().hex[:8]}", stop)
    shutil.rmtree(workdir, ignore_errors=True)
    raise RuntimeError(f"could not start the Firestore emulator: {last_error}")


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[FirestoreEmulator]:
    """The session's emulator, with ``FIRESTORE_EMULATOR_HOST`` pointing at it for the session."""
    emulator = find_emulator()
    if emulator is None:
        # Not NO_ENGINE_HERE: the machine image ships the emulator (ENGINES.md), so in CI its absence
        # must turn the run red rather than pass as an accepted skip.
        pytest.skip(f"the Firestore emulator (Cloud SDK component cloud-firestore-emulator, plus Java) is not "
                    f"installed; set {EMULATOR_VARIABLE} to its launcher")
    server = start_firestore_emulator(emulator)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("FIRESTORE_EMULATOR_HOST", server.host)
            yield server
    finally:
        server.stop()


def fresh_collection() -> str:
    """A collection name of one test only: its documents, away from every other test's."""
    return f"t{uuid.uuid4().hex[:12]}"


def state_store_factory(emulator: FirestoreEmulator, *, asynchronous: bool = False) -> Callable[..., Any]:
    """A ``store_factory`` (``namespace=`` aware) of new ``FirestoreStateStore`` (or
    ``AsyncFirestoreStateStore``) objects over one fresh collection. Used by ``tests/engines.py`` and
    ``tests/conformance/test_state_firestore.py``."""
    from storebridge.adapters.firestore import AsyncFirestoreStateStore, FirestoreStateStore

    store_class: type = AsyncFirestoreStateStore if asynchronous else FirestoreStateStore
    collection = fresh_collection()
    return lambda namespace="": store_class(project=emulator.project, collection=collection, namespace=namespace)


__all__ = ["FirestoreEmulator", "find_emulator", "firestore_emulator", "fresh_collection", "start_firestore_emulator",
           "state_store_factory"]
