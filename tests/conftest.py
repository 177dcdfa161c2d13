"""Test-wide policy: in CI, a skip is a failure unless it is for an engine that cannot run here, or for
a case the backend declares it does not support.

ENGINES.md lists the engines these machines run; a test for one of them must run in CI. The only
skips CI accepts carry one of two markers in their reason: ``NO_ENGINE_HERE`` (a remote-only engine
whose URL is not set) or ``NOT_DECLARED`` (the conformance suite's case for a capability the backend
honestly declares it lacks). A silently missing engine turns CI red instead of hiding in the skip count.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

from storebridge.testing import NO_ENGINE_HERE, NOT_DECLARED

#: The session servers' fixtures (``redis_server``, ``moto_server``, ``dynamodb_table``, ``gcs_emulator``,
#: ``firestore_emulator``, ...), visible to every test: request them by name, never import the fixture objects
#: (an imported fixture is a second, module-local fixture, so a second server).
pytest_plugins = [
    "tests.servers.redis",
    "tests.servers.moto",
    "tests.servers.gcs",
    "tests.servers.firestore",
    "tests.servers.pgvector",
    "tests.servers.redis_search",
    "tests.servers.cosmosdb",
]

ACCEPTED_SKIPS = (NO_ENGINE_HERE, NOT_DECLARED)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not any(marker in reason for marker in ACCEPTED_SKIPS):
            report.outcome = "failed"
            report.longrepr = f"skipped in CI, which must not happen for an engine that runs here: {reason}"
