"""Fixtures of the CLI tests: every test runs in its own directory with its own embedded database, and
no ``STOREBRIDGE_*`` variable of the caller's environment leaks in."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from storebridge.cli.app import cli

Invoke = Callable[..., Result]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("STOREBRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STOREBRIDGE_DB", str(tmp_path / "embedded.db"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def invoke(workdir: Path) -> Invoke:
    """Run ``storebridge <args>`` in-process; unexpected exceptions fail the test instead of hiding."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None, catch: bool = False) -> Result:
        return runner.invoke(cli, list(args), input=input, catch_exceptions=catch)

    return run


def assert_error_line(result: Result, *fragments: str, code: int = 1) -> str:
    """The command failed with ``code`` and one ``error:`` line on stderr (no traceback)."""
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]
