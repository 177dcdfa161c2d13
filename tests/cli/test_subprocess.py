"""Real processes: `python -m storebridge.cli` as a user runs it (exit codes, stdout), and the import cost
of `import storebridge` (it must not load the CLI, click or rich)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import storebridge


def test_module_entry_point_backends_and_demo(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREBRIDGE_")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "storebridge.cli", *args], cwd=tmp_path, env=env, check=False,
                              capture_output=True, text=True, timeout=120)

    listed = cli("backends", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert {(r["kind"], r["name"]) for r in rows} == {
        (kind, name) for kind, reg in storebridge.registries().items() for name in reg.list_registered()}

    demo = cli("demo")
    assert demo.returncode == 0, demo.stderr
    assert "Try qdrant." in demo.stdout
    assert (tmp_path / ".storebridge" / "storebridge.db").exists()

    failed = cli("sessions", "show", "no-such-session")
    assert failed.returncode == 1
    assert failed.stderr.startswith("error: no session 'no-such-session'") and "Traceback" not in failed.stderr


def test_storebridge_import_does_not_import_the_cli() -> None:
    code = ("import sys, storebridge; storebridge.db; "
            "bad = [m for m in ('storebridge.cli', 'click', 'rich') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
