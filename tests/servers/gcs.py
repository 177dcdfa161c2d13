"""A throwaway GCS emulator for the test session: ``gcp-storage-emulator`` on 127.0.0.1 and a free port,
in memory, stopped by its own process id when the session ends.

The emulator IGNORES every precondition (``ifGenerationMatch`` and friends: checked by hand, see
``tests/conformance/test_state_gcs.py``), so on its own it cannot show that conditional writes make
``increment`` atomic across processes. For that there is a second mode, ``honour_preconditions=True``:
the same emulator, started through this module (``python -m tests.servers.gcs``), with its object
handlers wrapped to check ``ifGenerationMatch``/``ifMetagenerationMatch`` as GCS documents them (412
on mismatch, 0 meaning "must not exist"). The emulator serves one request at a time, so the check and
the write it guards cannot interleave with another request. This wrapper is test scaffolding modelled
on the documented API, not GCS; passing against it says nothing about the real service's quirks.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers._ports import free_port, stop_process, wait_for_http

REPO_ROOT = Path(__file__).resolve().parents[2]
BUCKET = "storebridge-test"


@dataclass(frozen=True)
class GCSEmulator:
    #: ``http://127.0.0.1:<port>``: pass as ``endpoint=`` (or set ``STORAGE_EMULATOR_HOST``).
    endpoint: str
    bucket: str
    honours_preconditions: bool
    stop: Callable[[], None]

    def wipe(self) -> None:
        """Drop every object, keeping the buckets (the emulator's own ``/wipe`` endpoint). It rewrites its
        whole metadata file on every write, so a session that keeps all its objects slows down steadily."""
        with urllib.request.urlopen(self.endpoint + "/wipe?keep-buckets=true", timeout=10) as response:
            response.read()


def _console_script() -> str:
    script = Path(sys.executable).with_name("gcp-storage-emulator")
    if not script.exists():
        raise FileNotFoundError(f"gcp-storage-emulator not found next to {sys.executable}; "
                                "pip install gcp-storage-emulator")
    return str(script)


def start_gcs_emulator(*, honour_preconditions: bool = False, bucket: str = BUCKET,
                       timeout: float = 20.0) -> GCSEmulator:
    """Start the emulator on a free local port, create ``bucket``; returns its endpoint and a stop callable."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage  # type: ignore[attr-defined]

    workdir = Path(tempfile.mkdtemp(prefix="storebridge-gcs-"))
    log = workdir / "emulator.log"
    last_error: Exception | None = None
    for _ in range(3):  # the free port can be taken between choosing it and binding it
        port = free_port()
        if honour_preconditions:
            command = [sys.executable, "-m", "tests.servers.gcs", "--port", str(port)]
        else:
            command = [_console_script(), "start", "--host=127.0.0.1", f"--port={port}", "--in-memory", "--quiet"]
        with open(log, "wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        endpoint = f"http://127.0.0.1:{port}"
        try:
            wait_for_http(endpoint + "/", process, timeout, "the GCS emulator", log=log)
            client = storage.Client(project="storebridge-test", credentials=AnonymousCredentials(),
                                    client_options={"api_endpoint": endpoint})
            client.create_bucket(bucket)
            client.close()
        except Exception as exc:  # noqa: BLE001  (tried again on another port; reported if every try fails)
            last_error = exc
            stop_process(process)
            continue

        def stop(process: subprocess.Popen[bytes] = process) -> None:
            stop_process(process)

        return GCSEmulator(endpoint, bucket, honour_preconditions, stop)
    raise RuntimeError(f"could not start the GCS emulator: {last_error}")


@pytest.fixture(scope="session")
def _gcs_emulator_session() -> Iterator[GCSEmulator]:
    server = start_gcs_emulator()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _gcs_emulator_with_preconditions_session() -> Iterator[GCSEmulator]:
    server = start_gcs_emulator(honour_preconditions=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def gcs_emulator(_gcs_emulator_session: GCSEmulator) -> Iterator[GCSEmulator]:
    """The stock emulator, as installed (it ignores preconditions); started once per session, emptied
    after each test."""
    yield _gcs_emulator_session
    _gcs_emulator_session.wipe()


@pytest.fixture
def gcs_emulator_with_preconditions(_gcs_emulator_with_preconditions_session: GCSEmulator) -> Iterator[GCSEmulator]:
    """The same emulator with GCS's generation preconditions enforced (see the module docstring)."""
    yield _gcs_emulator_with_preconditions_session
    _gcs_emulator_with_preconditions_session.wipe()


#: Few worker threads per store: the emulator serves one request at a time from a listen backlog of 5, and a
#: burst of more connections than that is reset (real GCS has no such limit).
EMULATOR_WORKERS = 3


def open_state_store(emulator: GCSEmulator, prefix: str, namespace: str = "") -> Any:
    """A ``GCSStateStore`` on the emulator's bucket under ``prefix``, with few worker threads."""
    from storebridge.adapters.gcs import GCSStateStore

    return GCSStateStore(bucket=emulator.bucket, prefix=prefix, namespace=namespace, endpoint=emulator.endpoint,
                         max_workers=EMULATOR_WORKERS)


def state_store_factory(emulator: GCSEmulator) -> Callable[..., Any]:
    """A ``store_factory`` (``namespace=`` aware) of new stores under one fresh prefix: one test's objects,
    away from every other test's. Used by ``tests/engines.py`` and ``tests/conformance/test_state_gcs.py``."""
    prefix = f"conformance/{uuid.uuid4().hex[:10]}"
    return lambda namespace="": open_state_store(emulator, prefix, namespace)


# -- the precondition-enforcing mode ---------------------------------------------------------------------


def _object_name(request: Any) -> str | None:
    """The object a request targets: in the path, the ``name`` query parameter, or a multipart body."""
    params = request.params or {}
    if params.get("object_id"):
        return str(params["object_id"])
    if request.query.get("name"):
        return str(request.query["name"][0])
    if request.query.get("uploadType", [""])[0] == "multipart":
        data = request.data
        if isinstance(data, dict) and isinstance(data.get("meta"), dict):
            return data["meta"].get("name")
    return None


def _failed_precondition(request: Any, storage: Any) -> str | None:
    """Why the request's preconditions do not hold, or None if they do (or it has none)."""
    from gcp_storage_emulator.exceptions import NotFound

    wanted = {field: request.query[field][0] for field in ("ifGenerationMatch", "ifMetagenerationMatch")
              if request.query.get(field)}
    if not wanted:
        return None
    name = _object_name(request)
    try:
        current = storage.get_file_obj(request.params["bucket_name"], name)
    except NotFound:
        current = None
    for field, value in wanted.items():
        attribute = "generation" if field == "ifGenerationMatch" else "metageneration"
        actual = None if current is None else str(current.get(attribute))
        if (value == "0" and current is not None) or (value != "0" and actual != value):
            return f"{field}={value} but the object's {attribute} is {actual or 'absent'}"
    return None


def _enforcing_preconditions(handler: Callable[..., Any]) -> Callable[..., Any]:
    from http import HTTPStatus

    def guarded(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
        reason = _failed_precondition(request, storage)
        if reason is not None:
            response.status = HTTPStatus.PRECONDITION_FAILED
            response.json({"error": {"code": 412, "message": reason,
                                     "errors": [{"reason": "conditionNotMet", "message": reason}]}})
            return None
        return handler(request, response, storage, *args, **kwargs)

    return guarded


def serve_with_preconditions(port: int) -> None:
    """Run the emulator in this process with its object handlers precondition-checked."""
    from gcp_storage_emulator import server
    from gcp_storage_emulator.handlers import objects

    guarded_handlers = {fn: _enforcing_preconditions(fn)
                        for fn in (objects.insert, objects.get, objects.download, objects.delete, objects.patch)}
    for _, table in server.HANDLERS:
        for method, fn in list(table.items()):
            table[method] = guarded_handlers.get(fn, fn)
    objects.insert = guarded_handlers[objects.insert]  # the router's fallback for uploads looks it up here
    emulator = server.create_server("127.0.0.1", port, in_memory=True)
    emulator.run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=serve_with_preconditions.__doc__)
    parser.add_argument("--port", type=int, required=True)
    serve_with_preconditions(parser.parse_args().port)


__all__ = [
    "BUCKET",
    "EMULATOR_WORKERS",
    "GCSEmulator",
    "_gcs_emulator_session",
    "_gcs_emulator_with_preconditions_session",
    "gcs_emulator",
    "gcs_emulator_with_preconditions",
    "open_state_store",
    "start_gcs_emulator",
    "state_store_factory",
]
