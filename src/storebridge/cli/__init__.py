"""The ``storebridge`` command line (click + rich): backends, doctor, sessions, resume, copy, migrate, demo.

``import storebridge`` never imports this package, and this module imports nothing heavy: the command
group (and through it click and rich) loads when :func:`main` runs, and backends load only when a
command opens a store.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: ``storebridge ...`` (exits the process with the command's code)."""
    from .app import cli

    cli.main(args=list(argv) if argv is not None else None, prog_name="storebridge")


__all__ = ["main"]
