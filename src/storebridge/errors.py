"""Typed errors. Every failure storebridge raises is a ``StorebridgeError``; each subclass also derives
from the closest built-in exception so ``except ValueError`` style code keeps working.

Messages say what to do next, and never contain a password: anything that may hold a URL goes
through :func:`storebridge.urls.mask_secrets` first.
"""

from __future__ import annotations


class StorebridgeError(Exception):
    """Base class of every error storebridge raises."""


class ConfigurationError(StorebridgeError, ValueError):
    """A store was configured wrongly: bad URL, bad option, conflicting settings."""


class UnknownBackendError(ConfigurationError):
    """No backend is registered under that name or alias; the message lists the names that exist."""


class BackendNotAvailableError(StorebridgeError, ImportError):
    """The backend exists but its client library is not installed; the message names the pip extra."""


class BackendNotImplementedError(StorebridgeError, NotImplementedError):
    """The backend is declared in the registry but this version of storebridge does not ship it yet."""


class InvalidIdentifierError(ConfigurationError):
    """A collection, table, prefix or key name that is not safe to use as an identifier."""


class ValidationError(StorebridgeError, ValueError):
    """Bad input data: a NaN in a vector, a wrong role, a value that cannot be stored. Nothing was written."""


class DimensionMismatchError(ValidationError):
    """A vector does not have the collection's dimension."""


class FilterError(StorebridgeError, ValueError):
    """A malformed metadata filter; the message names the spot."""


class UnsupportedFilterError(FilterError):
    """A well-formed filter that this backend cannot evaluate. Never silently dropped."""


class NotSupportedError(StorebridgeError, NotImplementedError):
    """An operation this backend declares it cannot do (see its ``capabilities``)."""


class NotFoundError(StorebridgeError, LookupError):
    """Something that must exist does not."""

    def __str__(self) -> str:  # LookupError subclasses would otherwise repr() a single argument
        return str(self.args[0]) if self.args else ""


class CollectionNotFoundError(NotFoundError):
    """The knowledge collection does not exist; create it with ``create_collection``."""


class SessionNotFoundError(NotFoundError):
    """The conversation session does not exist."""


class AlreadyExistsError(StorebridgeError, ValueError):
    """Something being created exists already (a session, a document id on ``insert``, a collection)."""


class StoreClosedError(StorebridgeError, RuntimeError):
    """The store was closed; open a new one."""


class ConnectionFailedError(StorebridgeError, ConnectionError):
    """The engine could not be reached; the message names the host (never the password)."""


class OperationFailedError(StorebridgeError, RuntimeError):
    """The engine refused or failed an operation. The driver's exception is the ``__cause__``."""


class SchemaVersionError(StorebridgeError, RuntimeError):
    """The database's schema is newer than this version of storebridge understands, or a migration failed."""


__all__ = [
    "AlreadyExistsError",
    "BackendNotAvailableError",
    "BackendNotImplementedError",
    "CollectionNotFoundError",
    "ConfigurationError",
    "ConnectionFailedError",
    "DimensionMismatchError",
    "FilterError",
    "InvalidIdentifierError",
    "NotFoundError",
    "NotSupportedError",
    "OperationFailedError",
    "SchemaVersionError",
    "SessionNotFoundError",
    "StoreClosedError",
    "StorebridgeError",
    "UnknownBackendError",
    "UnsupportedFilterError",
    "ValidationError",
]
