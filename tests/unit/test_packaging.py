"""The wheel must contain every adapter package: pyproject lists packages by hand (adapters/ maps to
storebridge.adapters), so a new adapter folder that is not listed would be missing from installs."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _declared() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(data["tool"]["setuptools"]["packages"])


def _on_disk() -> set[str]:
    found = set()
    for base, dotted in ((ROOT / "src" / "storebridge", "storebridge"), (ROOT / "adapters", "storebridge.adapters")):
        for init in base.rglob("__init__.py"):
            parts = init.parent.relative_to(base).parts
            found.add(".".join((dotted, *parts)))
    return found


def test_every_package_is_declared_in_pyproject() -> None:
    assert _on_disk() - _declared() == set(), "add these to [tool.setuptools] packages"
    assert _declared() - _on_disk() == set(), "these are declared but have no __init__.py"
