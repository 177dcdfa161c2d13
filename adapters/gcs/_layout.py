"""Where each state key lives in a bucket, as pure functions (no client needed, so unit-testable).

    <prefix>/<namespace segment>/<key token>

* A **key token** is the key's UTF-8 bytes with everything but ASCII letters, digits, ``-``, ``_`` and
  ``:`` written as ``%XX``: no ``/`` (so one namespace's listing never reaches into another's), never
  ``.`` or ``..``, no wildcard or control characters, and reversible. Escaping is per character and
  prefix-free, so ``token(key)`` starts with ``token(p)`` exactly when ``key`` starts with ``p``: a
  ``keys(prefix=)`` call lists only that part of the namespace.
* A name longer than GCS's 1024-byte limit becomes ``=<sha256 of the key>`` (``=`` is never produced
  by escaping); the key itself then travels in the object's metadata field ``key``.
* The **namespace segment** is the escaped namespace, or ``~`` for the empty one (also never produced
  by escaping), so ``ns`` and ``ns/x`` or ``ns:x`` can never share a listing prefix.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from storebridge.errors import ConfigurationError, InvalidIdentifierError, ValidationError
from storebridge.urls import StoreURL, parse_url

#: GCS's limit on an object name, in UTF-8 bytes.
MAX_NAME_BYTES = 1024
#: GCS allows 8 KiB of custom metadata per object; a hashed key must fit beside ``expires_at``.
MAX_HASHED_KEY_BYTES = 6 * 1024
HASHED_MARK = "="
EMPTY_NAMESPACE_SEGMENT = "~"
#: Custom metadata fields this store writes.
META_EXPIRES_AT = "expires_at"
META_KEY = "key"
META_WRITE_ID = "write_id"

_SAFE_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_:")
_TOKEN_RE = re.compile(r"(?:[A-Za-z0-9\-_:]|%[0-9A-F]{2})+")
_HASHED_RE = re.compile(r"=[0-9a-f]{64}")
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9._\-]{1,220}[a-z0-9]")
_URL_SCHEMES = frozenset({"gs", "gcs"})  # as registered in storebridge._builtins
_URL_OPTIONS = frozenset({"namespace", "project", "endpoint"})


def utf8(text: str, what: str) -> bytes:
    """The UTF-8 bytes of ``text``; a lone surrogate (which no engine can store) is a ValidationError."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{what} {text!r} is not valid Unicode (it contains a lone surrogate)") from None


def escape(text: str, what: str = "state key") -> str:
    return "".join(chr(byte) if byte in _SAFE_BYTES else f"%{byte:02X}" for byte in utf8(text, what))


def unescape(token: str) -> str | None:
    """The text behind a token, or None if ``token`` is not one this module could have produced."""
    if not _TOKEN_RE.fullmatch(token):
        return None
    raw = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "%":
            raw.append(int(token[i + 1:i + 3], 16))
            i += 3
        else:
            raw.append(ord(token[i]))
            i += 1
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if escape(text) == token else None  # canonical form only: one name per key


def normalise_prefix(prefix: str | None) -> str:
    """``"a/b"``, ``"/a/b/"`` -> ``"a/b/"``; None or empty -> ``""``. Refuses ``.``/``..``/empty segments."""
    if prefix is None:
        return ""
    if not isinstance(prefix, str):
        raise InvalidIdentifierError(f"the object prefix must be a string, got {prefix!r}")
    stripped = prefix.strip("/")
    if not stripped:
        return ""
    utf8(stripped, "object prefix")
    segments = stripped.split("/")
    bad = [s for s in segments if s in ("", ".", "..") or any(c in s for c in "\r\n#[]*?")]
    if bad:
        raise InvalidIdentifierError(
            f"invalid object prefix {prefix!r}: segments must be non-empty, not '.' or '..', and free of "
            "newlines and the wildcard characters # [ ] * ?"
        )
    return stripped + "/"


def validate_bucket(bucket: Any) -> str:
    if not isinstance(bucket, str) or not _BUCKET_RE.fullmatch(bucket):
        raise InvalidIdentifierError(
            f"invalid GCS bucket name {bucket!r}: 3-222 lowercase letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit"
        )
    return bucket


@dataclass(frozen=True)
class ObjectLayout:
    """Object names for one namespace under one prefix of a bucket."""

    prefix: str
    namespace: str

    @property
    def namespace_prefix(self) -> str:
        """Every object of this namespace, and nothing else, has a name starting with this."""
        return f"{self.prefix}{escape(self.namespace, 'namespace') or EMPTY_NAMESPACE_SEGMENT}/"

    def check_fits(self) -> None:
        """Even a hashed name must fit GCS's limit, or no key could be stored at all."""
        if len(utf8(self.namespace_prefix, "object prefix")) + 1 + 64 > MAX_NAME_BYTES:
            raise ConfigurationError(
                f"prefix {self.prefix!r} plus namespace {self.namespace!r} leave no room for a key in GCS's "
                f"{MAX_NAME_BYTES}-byte object names; shorten them"
            )

    def name_for(self, key: str) -> str:
        direct = self.namespace_prefix + escape(key)
        if len(direct.encode("utf-8")) <= MAX_NAME_BYTES:
            return direct
        if len(utf8(key, "state key")) > MAX_HASHED_KEY_BYTES:
            raise ValidationError(
                f"state key of {len(key.encode('utf-8'))} bytes is too long for the GCS store: GCS keeps such "
                f"keys in object metadata, limited to 8 KiB (keys up to {MAX_HASHED_KEY_BYTES} bytes work)"
            )
        return self.namespace_prefix + HASHED_MARK + hashlib.sha256(key.encode("utf-8")).hexdigest()

    def is_hashed(self, name: str) -> bool:
        return name.startswith(self.namespace_prefix + HASHED_MARK)

    def key_from(self, name: str, metadata: dict[str, Any] | None) -> str | None:
        """The key an object of this namespace holds; None for a name this store did not write."""
        if not name.startswith(self.namespace_prefix):
            return None
        token = name[len(self.namespace_prefix):]
        if _HASHED_RE.fullmatch(token):
            key = (metadata or {}).get(META_KEY)
            if isinstance(key, str) and self.name_for(key) == name:
                return key
            return None
        return unescape(token)

    def listing_prefixes(self, key_prefix: str) -> list[str]:
        """Name prefixes to list for keys starting with ``key_prefix`` (hashed names can be anything)."""
        if not key_prefix:
            return [self.namespace_prefix]
        return [self.namespace_prefix + escape(key_prefix, "key prefix"), self.namespace_prefix + HASHED_MARK]


def options_from_url(url: str | StoreURL) -> dict[str, Any]:
    """``gs://bucket/optional/prefix?namespace=app&project=p&endpoint=http://127.0.0.1:9023``."""
    parsed = parse_url(url)
    if parsed.scheme not in _URL_SCHEMES or parsed.driver:
        raise ConfigurationError(f"not a GCS URL: {parsed}; expected gs://bucket/optional/prefix")
    if parsed.username is not None or parsed.password is not None or parsed.port is not None:
        raise ConfigurationError(
            f"GCS URLs take a bucket name, not a user or port: {parsed}; credentials come from the "
            "environment (Application Default Credentials) or a client you pass in"
        )
    if not parsed.host:
        raise ConfigurationError(f"GCS URL {parsed} names no bucket; write gs://<bucket>/<optional prefix>")
    unknown = sorted(set(parsed.query) - _URL_OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"unknown GCS URL option(s) {', '.join(unknown)}; supported: {', '.join(sorted(_URL_OPTIONS))}"
        )
    return {"bucket": parsed.host, "prefix": parsed.path or None, **parsed.query}


__all__ = [
    "META_EXPIRES_AT",
    "META_KEY",
    "META_WRITE_ID",
    "ObjectLayout",
    "escape",
    "normalise_prefix",
    "options_from_url",
    "unescape",
    "utf8",
    "validate_bucket",
]
