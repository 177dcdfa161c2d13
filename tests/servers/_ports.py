"""What the throwaway test servers share: a free local port, waiting until a server answers HTTP on it,
and stopping the process that was started (only that process, by its own handle)."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A port nothing listens on right now (it can still be taken before the caller binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers_http(url: str) -> bool:
    """Whether ``url`` answers with HTTP 200 within a second."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout: float, what: str, *,
                  log: Path | None = None, interval: float = 0.05) -> None:
    """Until ``url`` answers HTTP 200; a RuntimeError (with the tail of ``log``) if ``process`` exits
    first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before it was ready{_tail(log)}")
        if answers_http(url):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer on {url} within {timeout}s{_tail(log)}")
        time.sleep(interval)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate a process this session started, killing it if it has not exited within 10 seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(log: Path | None) -> str:
    return "" if log is None else f": {log.read_text(errors='replace')[-2000:]}"


__all__ = ["answers_http", "free_port", "stop_process", "wait_for_http"]
