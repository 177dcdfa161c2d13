"""Store URLs: one parser for every backend, and masking so secrets never reach a repr, log or error.

    sqlite:///relative/path.db     sqlite:////absolute/path.db     sqlite:///:memory:
    postgresql://user:pass@host:5432/db?sslmode=require
    postgresql+asyncpg://...       (``+driver`` picks a flavour or client)
    memory://                      json:///path/to/dir

The password, and query parameters that carry secrets (token, api_key, password, ...), are shown as
``***`` by ``str()``/``repr()``; ``render(reveal=True)`` gives the real URL for a driver.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from .errors import ConfigurationError

MASK = "***"
SECRET_PARAMS = frozenset({
    "password", "passwd", "pwd", "secret", "token", "auth_token", "authtoken", "access_token", "api_key",
    "apikey", "key", "x-api-key", "client_secret", "sas", "sig", "signature", "credentials",
})

_SCHEME_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*)://")


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL. ``scheme`` is the part before ``+``; ``driver`` the part after it, if any."""

    scheme: str
    driver: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    host: str | None = None
    port: int | None = None
    path: str = ""
    query: dict[str, str] = field(default_factory=dict)

    @property
    def full_scheme(self) -> str:
        return f"{self.scheme}+{self.driver}" if self.driver else self.scheme

    @property
    def database(self) -> str | None:
        """The path without its leading slash (a database name for servers)."""
        name = self.path[1:] if self.path.startswith("/") else self.path
        return name or None

    @property
    def file_path(self) -> str:
        """For file URLs: ``sqlite:///rel.db`` -> ``rel.db``, ``sqlite:////abs.db`` -> ``/abs.db``."""
        return self.path[1:] if self.path.startswith("/") else self.path

    def render(self, *, reveal: bool = False, scheme: str | None = None) -> str:
        """The URL as text; secrets are masked unless ``reveal`` (only ever pass that to a driver)."""
        out = f"{scheme or self.full_scheme}://"
        if self.username is not None or self.password is not None:
            out += quote(self.username or "", safe="")
            if self.password is not None:
                out += ":" + (quote(self.password, safe="") if reveal else MASK)
            out += "@"
        if self.host:
            out += f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None:
            out += f":{self.port}"
        out += quote(self.path, safe="/:@.~-_+")
        if self.query:
            items = {k: (v if reveal or k.lower() not in SECRET_PARAMS else MASK) for k, v in self.query.items()}
            out += "?" + urlencode(items, safe="*")
        return out

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"StoreURL({self.render()!r})"

    def secrets(self) -> list[str]:
        found = [self.password] if self.password else []
        found += [v for k, v in self.query.items() if k.lower() in SECRET_PARAMS and v]
        return found


def parse_url(url: str | StoreURL) -> StoreURL:
    """Parse a store URL; a malformed one raises :class:`ConfigurationError` (with secrets masked)."""
    if isinstance(url, StoreURL):
        return url
    if not isinstance(url, str) or not _SCHEME_RE.match(url):
        text = str(url)
        raise ConfigurationError(
            f"not a store URL: {mask_secrets(text, *_unparsed_secrets(text))!r}; "
            "expected scheme://..., e.g. sqlite:///app.db"
        )
    hidden = _unparsed_secrets(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigurationError(
            f"malformed URL {mask_secrets(url, *hidden)!r}: {mask_secrets(exc, *hidden)}"
        ) from None
    try:
        port = parts.port
    except ValueError:
        # Not echoing the bad port: with an unencoded '/' in a password, the "port" is part of the password.
        raise ConfigurationError(
            f"malformed URL {mask_secrets(url, *hidden)!r}: the port must be a number from 0 to 65535 "
            "(percent-encode '@', ':' and '/' in the user name and password)"
        ) from None
    scheme, _, driver = parts.scheme.lower().partition("+")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    return StoreURL(
        scheme=scheme,
        driver=driver or None,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
        host=parts.hostname,
        port=port,
        path=unquote(parts.path),
        query=query,
    )


_USERINFO_RE = re.compile(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*):(?P<pw>[^@\s/]*)@")
_QUERY_SECRET_RE = re.compile(
    r"(?P<pre>[?&;](?:" + "|".join(re.escape(p) for p in sorted(SECRET_PARAMS, key=len, reverse=True))
    + r")=)(?P<val>[^&\s'\"]*)",
    re.IGNORECASE,
)
# A quoted value runs to its closing quote (libpq's ``password='a b'``), or to the end if unterminated.
_KV_SECRET_RE = re.compile(
    r"(?P<pre>\b(?:password|passwd|pwd)\s*=\s*)(?:(?P<q>['\"])[^'\"]*(?P=q)?|[^\s'\"]+)", re.IGNORECASE
)
# For text that failed to parse as a URL: everything between the scheme (if any) and the last '@'.
_LOOSE_USERINFO_RE = re.compile(r"(?:[a-zA-Z][a-zA-Z0-9+.\-]*:/*|/*)(?P<userinfo>\S*)@")


def mask_secrets(text: Any, *extra_secrets: str | None) -> str:
    """Hide URL passwords, secret query parameters, ``password=...`` pairs and any ``extra_secrets``
    in free text (for exception messages that may echo a DSN)."""
    out = str(text)
    for secret in extra_secrets:
        if secret:
            out = out.replace(secret, MASK)
    out = _USERINFO_RE.sub(lambda m: f"{m.group('pre')}:{MASK}@", out)
    out = _QUERY_SECRET_RE.sub(lambda m: f"{m.group('pre')}{MASK}", out)
    out = _KV_SECRET_RE.sub(lambda m: f"{m.group('pre')}{m.group('q') or ''}{MASK}{m.group('q') or ''}", out)
    return out


def merge_url_option(name: str, given: Any, from_url: Any) -> Any:
    """An option that may be given as an argument or in the URL: whichever is not None; both given and
    different is a :class:`ConfigurationError` (the values are shown unless ``name`` is a secret)."""
    if given is not None and from_url is not None and given != from_url:
        shown = (MASK, MASK) if name.lower() in SECRET_PARAMS else (repr(given), repr(from_url))
        raise ConfigurationError(f"{name} is given twice with different values: {shown[0]} as an argument and "
                                 f"{shown[1]} in the URL; give it once")
    return given if given is not None else from_url


def _unparsed_secrets(text: str) -> list[str]:
    """The would-be userinfo of a string that is not a well-formed URL, to mask in error messages."""
    match = _LOOSE_USERINFO_RE.match(text)
    return [match.group("userinfo")] if match and match.group("userinfo") else []


__all__ = ["MASK", "StoreURL", "mask_secrets", "merge_url_option", "parse_url"]
