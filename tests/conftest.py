"""Test-wide policy: in CI, a skip is a failure unless it is for an engine that cannot run here.

ENGINES.md lists the engines these machines run; a test for one of them must run in CI. The only
skips CI accepts carry the marker ``NO_ENGINE_HERE`` in their reason (remote-only engines whose URL
is not set), so a silently missing engine turns CI red instead of hiding in the skip count.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

NO_ENGINE_HERE = "[no engine on this machine]"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if NO_ENGINE_HERE not in reason:
            report.outcome = "failed"
            report.longrepr = f"skipped in CI, which must not happen for an engine that runs here: {reason}"
