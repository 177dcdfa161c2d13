"""A throwaway Chroma server for the test session: ``chroma run`` (the console script installed with
chromadb, next to this interpreter) on 127.0.0.1 and a free port, over a temporary directory, waited on
through its heartbeat and stopped by its own process id when the session ends.

``STOREBRIDGE_TEST_CHROMA_URL`` (``chroma+http://host:port``) points the tests at another server instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

URL_VARIABLE = "STOREBRIDGE_TEST_CHROMA_URL"


@dataclass(frozen=True)
class ChromaServer:
    url: str
    stop: Callable[[], None]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _binary() -> str:
    beside = Path(sys.executable).with_name("chroma")
    if beside.exists():
        return str(beside)
    found = shutil.which("chroma")
    if not found:
        raise FileNotFoundError("the 'chroma' console script of chromadb is not installed")
    return found


def _heartbeat(port: int) -> bool:
    for path in ("/api/v2/heartbeat", "/api/v1/heartbeat"):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=0.5) as response:
                if response.status == 200:
                    return True
        except OSError:
            continue
    return False


def start_chroma_server(timeout: float = 60.0) -> ChromaServer:
    """Start ``chroma run`` on a free local port; returns its URL and a stop callable."""
    given = os.environ.get(URL_VARIABLE)
    if given:
        return ChromaServer(given, lambda: None)
    workdir = tempfile.mkdtemp(prefix="storebridge-chroma-")
    log = open(os.path.join(workdir, "server.log"), "wb")  # noqa: SIM115 - closed by stop()
    last_error = ""
    for _ in range(3):  # the free port can be taken between choosing it and binding it
        port = free_port()
        env = dict(os.environ, ANONYMIZED_TELEMETRY="False")
        process = subprocess.Popen(
            [_binary(), "run", "--path", os.path.join(workdir, "data"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if _heartbeat(port):
                def stop(process: subprocess.Popen[bytes] = process) -> None:
                    if process.poll() is None:
                        process.send_signal(signal.SIGTERM)
                        try:
                            process.wait(10)
                        except subprocess.TimeoutExpired:
                            process.kill()
                            process.wait(5)
                    log.close()
                    shutil.rmtree(workdir, ignore_errors=True)

                return ChromaServer(f"chroma+http://127.0.0.1:{port}", stop)
            time.sleep(0.1)
        if process.poll() is None:
            process.kill()
            process.wait(5)
        last_error = f"chroma run exited with {process.returncode}" if process.returncode else "no heartbeat"
    log.close()
    text = Path(workdir, "server.log").read_text(errors="replace")[-2000:]
    shutil.rmtree(workdir, ignore_errors=True)
    raise RuntimeError(f"could not start a Chroma server ({last_error}): {text}")
