"""The records every store reads and writes: small frozen dataclasses, no framework types.

Times are float seconds since the Unix epoch (UTC), as in the seed schema; ``*_datetime`` properties
give aware ``datetime`` objects. Metadata is the caller's dict, returned exactly as given (nested
dicts, lists, unicode, ``None``): stores never add internal keys to it.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .errors import DimensionMismatchError, ValidationError

JSONDict = dict[str, Any]


def new_id() -> str:
    """A fresh random id (32 hex digits, 128 random bits like a uuid4): the default for documents and
    messages. ``os.urandom`` rather than ``uuid``, whose import costs more than the rest of this module."""
    return os.urandom(16).hex()


def now() -> float:
    return time.time()


def _to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


class Distance(str, enum.Enum):
    """How a knowledge collection compares vectors.

    ``SearchHit.distance`` is the raw distance for the metric and ``SearchHit.score`` is always
    higher-is-better:

    ==========  =========================  ==========================
    metric      distance                   score
    ==========  =========================  ==========================
    cosine      1 - cosine similarity      cosine similarity (-1..1)
    l2          euclidean distance         1 / (1 + distance) (0..1]
    dot         - dot product              dot product
    ==========  =========================  ==========================
    """

    COSINE = "cosine"
    L2 = "l2"
    DOT = "dot"

    @classmethod
    def parse(cls, value: str | Distance) -> Distance:
        if isinstance(value, Distance):
            return value
        aliases = {"cos": "cosine", "euclidean": "l2", "euclid": "l2", "ip": "dot", "inner_product": "dot",
                   "dot_product": "dot"}
        name = aliases.get(str(value).lower(), str(value).lower())
        try:
            return cls(name)
        except ValueError:
            raise ValidationError(
                f"unknown distance {value!r}: use one of 'cosine', 'l2', 'dot'"
            ) from None

    def score(self, distance: float) -> float:
        """The higher-is-better score for a raw distance of this metric."""
        if self is Distance.COSINE:
            return 1.0 - distance
        if self is Distance.L2:
            return 1.0 / (1.0 + distance)
        return -distance


def _as_floats(vector: Any, what: str) -> list[float]:
    try:
        if isinstance(vector, (str, bytes, bytearray)):  # iterable, but "123" is not the vector [1, 2, 3]
            raise TypeError(f"got {type(vector).__name__}")
        return [float(x) for x in vector]
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{what} must be a sequence of numbers ({exc})") from None


def validate_vector(vector: Sequence[float] | Any, dimension: int | None = None, *, what: str = "vector") -> list[float]:
    """Return ``vector`` as a list of floats, or raise if it has NaN/inf or the wrong dimension."""
    values = _as_floats(vector, what)
    if not values:
        raise ValidationError(f"{what} is empty")
    if dimension is not None and len(values) != dimension:
        raise DimensionMismatchError(
            f"{what} has dimension {len(values)} but the collection has dimension {dimension}"
        )
    if not all(math.isfinite(x) for x in values):
        raise ValidationError(f"{what} contains NaN or infinity; nothing was written")
    return values


@dataclass(frozen=True, slots=True, kw_only=True)
class KnowledgeDocument:
    """A piece of knowledge: text, its vector, the caller's metadata and the source it came from."""

    id: str = field(default_factory=new_id)
    content: str = ""
    embedding: list[float] | None = None
    metadata: JSONDict = field(default_factory=dict)
    source_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValidationError(f"document id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.content, str):
            raise ValidationError("document content must be a string")
        if not isinstance(self.metadata, Mapping):
            raise ValidationError("document metadata must be a dict")
        if self.embedding is not None and not isinstance(self.embedding, list):
            object.__setattr__(self, "embedding", _as_floats(self.embedding, "document embedding"))

    def replace(self, **changes: Any) -> KnowledgeDocument:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One search result: the document, a higher-is-better ``score`` and the metric's raw ``distance``."""

    document: KnowledgeDocument
    score: float
    distance: float

    @property
    def id(self) -> str:
        return self.document.id


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    name: str
    dimension: int
    distance: Distance = Distance.COSINE


@dataclass(frozen=True, slots=True)
class DocumentPage:
    """One page of :meth:`KnowledgeStore.scroll`; pass ``next_cursor`` back to get the next one."""

    documents: list[KnowledgeDocument]
    next_cursor: str | None


ROLES = frozenset({"system", "user", "assistant", "tool", "function", "developer"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationSession:
    """A conversation: who it belongs to, its name, free-form ``state`` and ``metadata``."""

    session_id: str
    user_id: str | None = None
    agent_id: str | None = None
    name: str | None = None
    state: JSONDict = field(default_factory=dict)
    metadata: JSONDict = field(default_factory=dict)
    created_at: float = field(default_factory=now)
    updated_at: float = field(default_factory=now)

    def __post_init__(self) -> None:
        validate_session_id(self.session_id)
        if not isinstance(self.state, Mapping) or not isinstance(self.metadata, Mapping):
            raise ValidationError("session state and metadata must be dicts")

    @property
    def created_datetime(self) -> datetime:
        return _to_datetime(self.created_at)

    @property
    def updated_datetime(self) -> datetime:
        return _to_datetime(self.updated_at)

    def replace(self, **changes: Any) -> ConversationSession:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationMessage:
    """One message of a conversation, in the shape chat models use (tool calls included).

    ``session_id`` may be left empty: ``add_message(session_id, message)`` fills it in.
    ``sequence`` is assigned by the store (per-session, increasing) and is ``None`` before that.
    """

    id: str = field(default_factory=new_id)
    session_id: str = ""
    role: str
    content: str = ""
    tool_calls: list[JSONDict] | None = None
    tool_call_id: str | None = None
    metadata: JSONDict = field(default_factory=dict)
    created_at: float = field(default_factory=now)
    sequence: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValidationError(f"message id must be a non-empty string, got {self.id!r}")
        if self.role not in ROLES:
            raise ValidationError(f"message role must be one of {sorted(ROLES)}, got {self.role!r}")
        if not isinstance(self.content, str):
            raise ValidationError("message content must be a string (put structured parts in metadata)")
        if self.tool_calls is not None and not isinstance(self.tool_calls, list):
            raise ValidationError("tool_calls must be a list of dicts or None")
        if not isinstance(self.metadata, Mapping):
            raise ValidationError("message metadata must be a dict")

    @property
    def created_datetime(self) -> datetime:
        return _to_datetime(self.created_at)

    def replace(self, **changes: Any) -> ConversationMessage:
        return dataclasses.replace(self, **changes)


MAX_SESSION_ID_LENGTH = 512


def validate_session_id(session_id: Any) -> str:
    """Session ids are any non-empty string up to 512 characters without NUL; stores must treat them as
    data (bound parameters, encoded file names), never as code or paths."""
    if not isinstance(session_id, str) or not session_id:
        raise ValidationError(f"session_id must be a non-empty string, got {session_id!r}")
    if len(session_id) > MAX_SESSION_ID_LENGTH:
        raise ValidationError(f"session_id is longer than {MAX_SESSION_ID_LENGTH} characters")
    if "\x00" in session_id:
        raise ValidationError("session_id must not contain NUL characters")
    try:
        session_id.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("session_id must be valid Unicode text (it has a lone surrogate)") from None
    return session_id


__all__ = [
    "ROLES",
    "CollectionInfo",
    "ConversationMessage",
    "ConversationSession",
    "Distance",
    "DocumentPage",
    "KnowledgeDocument",
    "SearchHit",
    "new_id",
    "validate_session_id",
    "validate_vector",
]
