"""Names that reach engines as identifiers (collections, table prefixes): validated here, once, so a
hostile name (quotes, semicolons, path separators) is refused with a clear error before any engine
or file system sees it. Adapters map a valid name onto their engine's own rules when those are
stricter (length, allowed characters)."""

from __future__ import annotations

import re

from .errors import InvalidIdentifierError

_COLLECTION_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,62}$")
_PREFIX_RE = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]{0,30})?$")


def validate_collection_name(name: object) -> str:
    """1-63 characters: letters, digits, ``_`` and ``-``, not starting with ``-``."""
    if not isinstance(name, str) or not _COLLECTION_RE.fullmatch(name):
        raise InvalidIdentifierError(
            f"invalid collection name {name!r}: use 1-63 letters, digits, '_' or '-' (not first)"
        )
    return name


def validate_table_prefix(prefix: object) -> str:
    """Empty, or a letter/underscore followed by up to 30 letters, digits or underscores."""
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise InvalidIdentifierError(
            f"invalid table prefix {prefix!r}: use letters, digits and '_' (up to 31, not starting with a digit)"
        )
    return prefix


def quote_identifier(name: str, quote: str = '"') -> str:
    """Quote an already validated identifier for SQL (``"`` for ANSI, ``` ` ``` for MySQL)."""
    return quote + name.replace(quote, quote * 2) + quote


__all__ = ["quote_identifier", "validate_collection_name", "validate_table_prefix"]
