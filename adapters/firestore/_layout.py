"""Documents, ids and options of the Firestore state store, as pure functions (unit-testable without
a client or an emulator).

One document per key in one collection (shared by every namespace)::

    <collection>/<document id>  {"ns": namespace, "k": key, "v": encode_value bytes,
                                 "expires_at": timestamp or null}

**Document ids.** Firestore ids must not contain ``/``, must not be ``.``, ``..`` or match ``__.*__``,
and are limited to 1500 bytes. The id is ``<escaped namespace>~<escaped key>``, where escaping keeps
ASCII letters, digits, ``-`` and ``:`` and writes every other UTF-8 byte as ``%XX``; so it has no ``/``
or ``.``, never starts with ``_``, and ``~`` (never produced by escaping) separates the two parts
unambiguously. An id that would pass 1500 bytes is ``=<sha256 of namespace NUL key>`` instead (``=`` is
never produced by escaping either). Queries never parse ids: ``ns`` and ``k`` are stored as fields.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from typing import Any

from storebridge.errors import (
    ConfigurationError,
    InvalidIdentifierError,
    OperationFailedError,
    ValidationError,
)
from storebridge.identifiers import validate_collection_name
from storebridge.urls import StoreURL, parse_url

MAX_ID_BYTES = 1500
#: Firestore documents hold at most 1 MiB (1,048,576 bytes) including field names and the document
#: name; this leaves room for those beside the value and the key.
MAX_DOCUMENT_PAYLOAD = 1_048_576 - 4096
DEFAULT_COLLECTION = "storebridge_state"
FIELD_NAMESPACE, FIELD_KEY, FIELD_VALUE, FIELD_EXPIRES_AT = "ns", "k", "v", "expires_at"

_SAFE_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-:")
_RESERVED_ID_RE = re.compile(r"__.*__")
_URL_SCHEMES = frozenset({"firestore"})  # as registered in storebridge._builtins
_URL_OPTIONS = frozenset({"namespace", "database"})


def utf8(text: str, what: str) -> bytes:
    """The UTF-8 bytes of ``text``; a lone surrogate (which Firestore cannot store) is a ValidationError."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{what} {text!r} is not valid Unicode (it contains a lone surrogate)") from None


def escape(text: str, what: str = "state key") -> str:
    return "".join(chr(byte) if byte in _SAFE_BYTES else f"%{byte:02X}" for byte in utf8(text, what))


def document_id(namespace: str, key: str) -> str:
    """A valid, unique Firestore document id for any namespace and key (see the module docstring)."""
    readable = f"{escape(namespace, 'namespace')}~{escape(key)}"
    if len(readable) <= MAX_ID_BYTES:  # escaped text is ASCII: one byte per character
        return readable
    return "=" + hashlib.sha256(utf8(namespace, "namespace") + b"\x00" + utf8(key, "state key")).hexdigest()


def validate_collection(name: Any) -> str:
    """A single collection id (no sub-collection paths), valid for both storebridge and Firestore."""
    name = validate_collection_name(name)
    if _RESERVED_ID_RE.fullmatch(name):
        raise InvalidIdentifierError(f"invalid Firestore collection {name!r}: ids matching __.*__ are reserved")
    return name


def to_timestamp(expires_at: float | None) -> datetime.datetime | None:
    return None if expires_at is None else datetime.datetime.fromtimestamp(expires_at, tz=datetime.timezone.utc)


def from_timestamp(value: Any, document: str) -> float | None:
    """``expires_at`` as epoch seconds; anything but a timestamp or null is corruption, never "no TTL"."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.timestamp()
    raise OperationFailedError(f"Firestore document {document!r} has an unreadable {FIELD_EXPIRES_AT} {value!r}")


def document_fields(namespace: str, key: str, body: bytes, expires_at: float | None) -> dict[str, Any]:
    """Every field of a state document (a write always replaces all of them)."""
    if len(body) + len(key.encode("utf-8")) > MAX_DOCUMENT_PAYLOAD:
        raise ValidationError(
            f"state value of {len(body)} bytes for key {key[:80]!r} is too large for Firestore, whose documents "
            "are limited to 1 MiB"
        )
    return {FIELD_NAMESPACE: namespace, FIELD_KEY: key, FIELD_VALUE: body,
            FIELD_EXPIRES_AT: to_timestamp(expires_at)}


def stored_body(value: Any, document: str) -> bytes:
    if isinstance(value, bytes):
        return value
    raise OperationFailedError(f"Firestore document {document!r} has no readable value (field {FIELD_VALUE!r})")


def successor(prefix: str) -> str | None:
    """The smallest string above every string starting with ``prefix`` (None: no upper bound).

    Firestore orders strings by their UTF-8 bytes, which is Python's code-point order, so
    ``prefix <= k < successor(prefix)`` is exactly ``k.startswith(prefix)``.
    """
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code == 0xD800:  # skip the surrogates, which cannot be stored
            code = 0xE000
        if code <= 0x10FFFF:
            return "".join(chars) + chr(code)
    return None


def options_from_url(url: str | StoreURL) -> dict[str, Any]:
    """``firestore://<project>/<collection>?namespace=app&database=(default)``."""
    parsed = parse_url(url)
    if parsed.scheme not in _URL_SCHEMES or parsed.driver:
        raise ConfigurationError(f"not a Firestore URL: {parsed}; expected firestore://<project>/<collection>")
    if parsed.username is not None or parsed.password is not None or parsed.port is not None:
        raise ConfigurationError(
            f"Firestore URLs take a project id, not a user or port: {parsed}; credentials come from the "
            "environment (Application Default Credentials), and an emulator from FIRESTORE_EMULATOR_HOST"
        )
    unknown = sorted(set(parsed.query) - _URL_OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"unknown Firestore URL option(s) {', '.join(unknown)}; supported: {', '.join(sorted(_URL_OPTIONS))}"
        )
    collection = parsed.path.strip("/") or None
    if collection is not None and "/" in collection:
        raise ConfigurationError(f"Firestore URL {parsed}: give one collection id, not a path")
    return {"project": parsed.host or None, "collection": collection, **parsed.query}


__all__ = [
    "DEFAULT_COLLECTION",
    "FIELD_EXPIRES_AT",
    "FIELD_KEY",
    "FIELD_NAMESPACE",
    "FIELD_VALUE",
    "document_fields",
    "document_id",
    "escape",
    "from_timestamp",
    "options_from_url",
    "stored_body",
    "successor",
    "to_timestamp",
    "utf8",
    "validate_collection",
]
