"""The ``storebridge`` command group, its error handling, and the small commands (``backends``, ``demo``).

Errors: any exception a command raises becomes one ``error: ...`` line on stderr (masked) and exit
code 1 (130 for Ctrl-C); ``STOREBRIDGE_DEBUG=1`` lets the traceback through instead. Click's own usage
errors keep click's format (exit code 2).
"""

from __future__ import annotations

import dataclasses
import enum
import os
import sys
import warnings
from typing import Any

import click

from storebridge import __version__

from ._output import (
    KIND_CHOICE,
    console,
    debug_enabled,
    echo_json,
    mask,
    report_error,
    reset_secrets,
)


class StorebridgeGroup(click.Group):
    """A click group that turns exceptions into one masked ``error:`` line and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        if ctx.parent is None:
            reset_secrets()
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            if debug_enabled():
                raise
            click.echo("error: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            # The reader went away (`storebridge sessions export | head`): stop quietly, as Unix tools do.
            _silence_stdout()
            ctx.exit(1)
        except Exception as exc:
            if debug_enabled():
                raise
            ctx.exit(report_error(exc))


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail a second time."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (a test runner's buffer): nothing will be flushed to a closed pipe
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


@click.group(cls=StorebridgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="storebridge", message="%(prog)s %(version)s")
def cli() -> None:
    """storebridge: knowledge, conversation and state stores behind one registry.

    With no URL, every command uses the embedded SQLite defaults ($STOREBRIDGE_DB, else
    ./.storebridge/storebridge.db) or the STOREBRIDGE_{CONVERSATION,KNOWLEDGE,STATE}_URL variables.
    Set STOREBRIDGE_DEBUG=1 to see tracebacks.
    """


# -- backends ------------------------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    """Capabilities as JSON: sets become sorted lists, enums their values."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (frozenset, set)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _capabilities(registry: Any, spec: Any) -> tuple[dict[str, Any] | None, str | None]:
    """The backend's declared capabilities (importing the adapter only when its client is installed),
    or why they cannot be shown."""
    if not spec.implemented:
        return None, "planned: not shipped in this version"
    missing = spec.missing_requirements()
    if missing:
        return None, f"not installed (needs {', '.join(missing)}: {spec.install_hint})"
    try:
        with warnings.catch_warnings():  # client libraries' import-time deprecation chatter is not ours to show
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            factory = registry.load(spec.name)
    except Exception as exc:  # noqa: BLE001 - shown in the listing, the other rows still matter
        return None, f"cannot be loaded: {mask(exc)}"
    caps = getattr(factory, "capabilities", None)
    if caps is None or not dataclasses.is_dataclass(caps) or isinstance(caps, type):
        return None, "declared by each store instance (the factory is not a store class)"
    return {f.name: _plain(getattr(caps, f.name)) for f in dataclasses.fields(caps)}, None


def backend_rows(kind: str | None = None) -> list[dict[str, Any]]:
    """Every registered backend of every kind (or one kind), as plain data."""
    import storebridge

    rows = []
    for reg_kind, registry in storebridge.registries().items():
        if kind is not None and reg_kind != kind:
            continue
        for spec in registry.specs():
            capabilities, note = _capabilities(registry, spec)
            if not spec.implemented:
                status = "planned"
            elif spec.missing_requirements():
                status = "not installed"
            else:
                status = "installed"
            rows.append({
                "kind": reg_kind,
                "name": spec.name,
                "aliases": list(spec.aliases),
                "status": status,
                "extra": spec.extra,
                "install": spec.install_hint,
                "requires": list(spec.requires),
                "missing": spec.missing_requirements() if spec.implemented else [],
                "schemes": list(spec.schemes),
                "flavour": spec.flavour,
                "origin": spec.origin,
                "description": spec.description,
                "capabilities": capabilities,
                "capabilities_note": note,
            })
    return rows


def _short(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


def _caps_summary(kind: str, caps: dict[str, Any]) -> str:
    """The capabilities that differ from the interface's defaults (the JSON output has all of them);
    knowledge rows always show their filter operators and distances."""
    from storebridge.conversation import ConversationCapabilities
    from storebridge.knowledge import KnowledgeCapabilities
    from storebridge.state import StateCapabilities

    default_type = {"knowledge": KnowledgeCapabilities, "conversation": ConversationCapabilities,
                    "state": StateCapabilities}[kind]
    defaults = {f.name: _plain(getattr(default_type(), f.name)) for f in dataclasses.fields(default_type)}
    always = ("filter_operators", "distances") if kind == "knowledge" else ()
    parts = []
    for name, value in caps.items():
        if name in always or value != defaults.get(name):
            label = {"filter_operators": "filters"}.get(name, name)
            if name == "filter_operators" and value == defaults[name]:
                parts.append("filters=all")
            elif name != "notes":
                parts.append(f"{label}={_short(value)}")
    return "; ".join(parts) or "interface defaults"


@cli.command()
@click.option("--kind", type=KIND_CHOICE, help="Only this kind of store.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every capability field).")
def backends(kind: str | None, as_json: bool) -> None:
    """Every registered backend: kind, aliases, extra, client installed, URL schemes, capabilities."""
    rows = backend_rows(kind.lower() if kind else None)
    if as_json:
        echo_json(rows)
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title="storebridge backends", expand=True)
    for column in ("kind", "name", "aliases", "status", "extra", "URL schemes", "capabilities"):
        short = column in ("kind", "name", "status", "extra")
        table.add_column(column, no_wrap=short, overflow="fold",
                         ratio=None if short else (3 if column == "capabilities" else 1))
    styles = {"installed": "green", "not installed": "yellow", "planned": "dim"}
    for row in rows:
        caps = (_caps_summary(row["kind"], row["capabilities"]) if row["capabilities"] is not None
                else row["capabilities_note"])
        table.add_row(Text(row["kind"]), Text(row["name"]), Text(", ".join(row["aliases"])),
                      Text(row["status"], style=styles[row["status"]]), Text(f"storebridge[{row['extra']}]" if row["extra"] else "core"),
                      Text(", ".join(f"{s}://" for s in row["schemes"])), Text(caps))
    out = console()
    out.print(table)
    out.print('Install a backend with pip install "storebridge[extra]". Capabilities shown are those that differ '
              "from the interface defaults (knowledge: filters and distances always); --json lists every field.",
              style="dim")


# -- demo ----------------------------------------------------------------------------------------------------

@cli.command()
def demo() -> None:
    """Run the README's demo on the embedded defaults (knowledge search, a resumed conversation, state)."""
    from .demo import run

    run(click.echo)


def _register() -> None:
    """Attach the commands that live in their own modules."""
    from .copy import copy_command
    from .doctor import doctor
    from .migrate import migrate
    from .sessions import resume, sessions

    for command in (copy_command, doctor, migrate, sessions, resume):
        cli.add_command(command)


_register()

__all__ = ["StorebridgeGroup", "backend_rows", "cli"]
