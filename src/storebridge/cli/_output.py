"""What every command shares: rich consoles, the one-line error report, secret masking of everything
printed, ``KEY=VALUE`` store options, and opening a store from a URL (or the embedded default).

Every URL the CLI is given is remembered for the whole invocation, so its password and secret query
parameters are masked in any text printed afterwards, including error messages written by a driver.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

import click

from storebridge.urls import mask_secrets, parse_url

if TYPE_CHECKING:
    from rich.console import Console

    from storebridge.registry import Kind

DEBUG_VARIABLE = "STOREBRIDGE_DEBUG"
ENV_URLS: dict[str, str] = {
    "conversation": "STOREBRIDGE_CONVERSATION_URL",
    "knowledge": "STOREBRIDGE_KNOWLEDGE_URL",
    "state": "STOREBRIDGE_STATE_URL",
}
KIND_CHOICE = click.Choice(["knowledge", "conversation", "state"], case_sensitive=False)

_secrets: set[str] = set()
_USERINFO_RE = re.compile(r"^[^:/]*:/*(?P<userinfo>[^@/]*)@")


class CLIError(Exception):
    """A failure reported as one ``error: ...`` line with a chosen exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def reset_secrets() -> None:
    _secrets.clear()


def remember_url(url: str | None) -> str | None:
    """Record the secrets of a URL given on the command line, so nothing printed later shows them."""
    if not url:
        return url
    try:
        _secrets.update(s for s in parse_url(url).secrets() if s)
    except Exception:  # noqa: BLE001 - an unparseable URL: hide whatever sits where a password would
        match = _USERINFO_RE.match(url)
        if match and match.group("userinfo"):
            _secrets.add(match.group("userinfo"))
            _secrets.update(p for p in match.group("userinfo").split(":")[1:] if p)
    return url


def mask(text: Any) -> str:
    """``text`` with every remembered secret, URL password and ``password=...`` pair hidden."""
    return mask_secrets(text, *sorted(_secrets, key=len, reverse=True))


def show_url(url: str | None) -> str:
    """A URL for display (masked), or where the embedded default lives."""
    return mask(url) if url else f"embedded sqlite ({embedded_path()})"


def embedded_path() -> str:
    """Where the embedded SQLite stores live: the adapter's own rule ($STOREBRIDGE_DB or the default)."""
    from storebridge.adapters.sqlite._connection import default_path

    return default_path()


def fail(message: str, exit_code: int = 1) -> NoReturn:
    raise CLIError(message, exit_code)


def report_error(exc: BaseException) -> int:
    """Print one ``error:`` line for ``exc`` on stderr and return the exit code to use."""
    from storebridge.errors import StorebridgeError

    if isinstance(exc, CLIError):
        message, code = str(exc), exc.exit_code
    elif isinstance(exc, StorebridgeError):
        message, code = str(exc), 1
    else:
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        message += f" (unexpected; set {DEBUG_VARIABLE}=1 to see the traceback)"
        code = 1
    line = " ".join(mask(message).split())  # one line, whatever the driver put in its message
    click.echo(f"error: {line}", err=True)
    return code


# -- consoles ------------------------------------------------------------------------------------------------

def _width(stream: Any) -> int | None:
    """Rich's own width on a terminal; wide enough for tables when output goes to a pipe or a file."""
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return None
    return max(shutil.get_terminal_size((160, 24)).columns, 160)


def console() -> Console:
    """A rich console on the current stdout (looked up per call: test runners swap it)."""
    from rich.console import Console

    return Console(file=sys.stdout, highlight=False, width=_width(sys.stdout), soft_wrap=False)


def err_console() -> Console:
    from rich.console import Console

    return Console(file=sys.stderr, highlight=False, width=_width(sys.stderr))


def echo_json(value: Any) -> None:
    """Machine-readable output: one JSON document on stdout, unicode kept, nothing else printed."""
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, sort_keys=False))


def when(ts: float | None) -> str:
    """An epoch time as local ISO 8601 (seconds), for people."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


# -- options -----------------------------------------------------------------------------------------------

_OPTION_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` store constructor options; a value that parses as JSON (numbers, true, null...)
    is passed as that, anything else as the string."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not _OPTION_KEY_RE.fullmatch(key):
            fail(f"store option {mask(pair)!r} is not KEY=VALUE (e.g. -O table_prefix=app_)")
        if key in options:
            fail(f"store option {key!r} is given twice")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        options[key] = value
    return options


def store_options_option(*names: str, help_text: str = "A store constructor option, KEY=VALUE (repeatable).") -> Any:
    return click.option(*(names or ("-O", "--option")), "options", multiple=True, metavar="KEY=VALUE",
                        help=help_text)


# -- stores ------------------------------------------------------------------------------------------------

def default_url(kind: Kind, given: str | None) -> str | None:
    """The URL given on the command line, else ``STOREBRIDGE_<KIND>_URL``, else None (embedded)."""
    return remember_url(given or os.environ.get(ENV_URLS[kind]) or None)


def open_store(kind: Kind, url: str | None, options: Mapping[str, Any] | None = None) -> Any:
    """A store with the sync interface: the backend the URL's scheme names, or the embedded SQLite
    default (``$STOREBRIDGE_DB``) when ``url`` is None."""
    import storebridge

    registry = storebridge.registries()[kind]
    remember_url(url)
    if url is None:
        return registry.create("sqlite", **dict(options or {})).as_sync()
    return registry.from_url(url, **dict(options or {})).as_sync()


def kinds_for_url(url: str) -> list[Kind]:
    """The kinds that have a backend for this URL's scheme (several for sqlite://)."""
    import storebridge
    from storebridge.registry import KINDS

    parsed = parse_url(remember_url(url) or url)
    regs = storebridge.registries()
    return [k for k in KINDS
            if parsed.full_scheme in regs[k].scheme_map() or parsed.scheme in regs[k].scheme_map()]


def close_quietly(store: Any) -> BaseException | None:
    """Close a store, returning (not raising) a failure so the caller's own error is the one shown."""
    if store is None:
        return None
    try:
        store.close()
    except Exception as exc:  # noqa: BLE001 - returned to the caller, who reports it
        return exc
    return None


__all__ = [
    "KIND_CHOICE",
    "CLIError",
    "close_quietly",
    "console",
    "debug_enabled",
    "default_url",
    "echo_json",
    "embedded_path",
    "err_console",
    "fail",
    "kinds_for_url",
    "mask",
    "open_store",
    "parse_options",
    "remember_url",
    "report_error",
    "reset_secrets",
    "show_url",
    "store_options_option",
    "when",
]
