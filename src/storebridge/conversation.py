"""The conversation interface: sessions and their ordered messages (chat history with tool calls).

Order is the store's per-session ``sequence`` (insertion order), never wall-clock time. Resuming a
conversation is opening the same ``session_id`` again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from ._base import AsyncStore, SyncStore
from .bridge import derive_async, derive_sync
from .errors import AlreadyExistsError, SessionNotFoundError, ValidationError
from .models import ConversationMessage, ConversationSession, now, validate_session_id


@dataclass(frozen=True)
class ConversationCapabilities:
    persistent: bool = True
    #: Several processes may write the same store at once (a server, or a file with locks).
    multi_process: bool = True
    #: Largest message content the engine stores, in bytes (None: no practical limit).
    max_content_bytes: int | None = None
    #: ``delete_messages(session_id, ids)`` can remove single messages. Append-only engines set False and
    #: raise ``NotSupportedError`` for it; deleting all of a session's messages must always work.
    delete_messages_by_id: bool = True


OPERATIONS = (
    "create_session", "get_session", "update_session", "upsert_session", "delete_session", "list_sessions",
    "add_message", "add_messages", "get_messages", "delete_messages", "count_messages", "close",
)


def bind_messages(session_id: str, messages: Sequence[ConversationMessage]) -> list[ConversationMessage]:
    """Check messages before a write: each must belong to ``session_id`` (an empty ``session_id`` is
    filled in), and ids must be unique within the batch. Adapters call this once per write."""
    validate_session_id(session_id)
    bound: list[ConversationMessage] = []
    seen: set[str] = set()
    for message in messages:
        if not isinstance(message, ConversationMessage):
            raise ValidationError(f"expected ConversationMessage, got {type(message).__name__}")
        if message.session_id and message.session_id != session_id:
            raise ValidationError(
                f"message {message.id!r} belongs to session {message.session_id!r}, not {session_id!r}"
            )
        if message.id in seen:
            raise AlreadyExistsError(f"message id {message.id!r} appears twice in one batch")
        seen.add(message.id)
        bound.append(message if message.session_id else message.replace(session_id=session_id))
    return bound


def check_limits(limit: int | None, offset: int = 0) -> None:
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise ValidationError(f"limit must be a non-negative int or None, got {limit!r}")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise ValidationError(f"offset must be a non-negative int, got {offset!r}")


class ConversationStore(SyncStore, ABC):
    """Sync conversation store. Implement the abstract methods; the async face is derived.

    Every method of a closed store raises ``StoreClosedError``. Content larger than
    ``capabilities.max_content_bytes`` raises ``ValidationError`` (or ``OperationFailedError`` where only
    the engine can tell) and nothing is written.
    """

    capabilities: ConversationCapabilities = ConversationCapabilities()

    @abstractmethod
    def create_session(self, session: ConversationSession) -> ConversationSession:
        """Store a new session, keeping the caller's ``created_at``/``updated_at``; ``AlreadyExistsError``
        if the id is taken."""

    @abstractmethod
    def get_session(self, session_id: str) -> ConversationSession | None:
        """The session, or None."""

    @abstractmethod
    def update_session(self, session: ConversationSession) -> ConversationSession:
        """Replace user_id, agent_id, name, state and metadata; keeps ``created_at``, sets ``updated_at``
        to now. ``SessionNotFoundError`` if missing."""

    def upsert_session(self, session: ConversationSession) -> ConversationSession:
        """Create the session or update it if it exists."""
        try:
            return self.update_session(session)
        except SessionNotFoundError:
            try:
                return self.create_session(session)
            except AlreadyExistsError:  # created concurrently between the two calls
                return self.update_session(session)

    @abstractmethod
    def delete_session(self, session_id: str) -> bool:
        """Delete the session and all its messages; False if it did not exist."""

    @abstractmethod
    def list_sessions(self, *, user_id: str | None = None, agent_id: str | None = None, limit: int | None = 100,
                      offset: int = 0) -> list[ConversationSession]:
        """Sessions (of a user and/or agent), most recently updated first (ties: newest created first,
        then by session id)."""

    def add_message(self, session_id: str, message: ConversationMessage) -> ConversationMessage:
        """Append one message (creating the session if needed); returns it with its ``sequence``."""
        return self.add_messages(session_id, [message])[0]

    @abstractmethod
    def add_messages(self, session_id: str, messages: Sequence[ConversationMessage]) -> list[ConversationMessage]:
        """Append messages in order, atomically, creating the session if it does not exist and touching
        its ``updated_at`` (an empty list does nothing). Message ids are unique within a session: one that
        exists there raises ``AlreadyExistsError`` and nothing is written."""

    @abstractmethod
    def get_messages(self, session_id: str, *, limit: int | None = None, before: float | None = None,
                     after: float | None = None) -> list[ConversationMessage]:
        """Messages oldest first. ``limit`` keeps the NEWEST n (still returned oldest first);
        ``before``/``after`` are exclusive bounds on ``created_at``. Unknown session: []."""

    @abstractmethod
    def delete_messages(self, session_id: str, message_ids: Sequence[str] | None = None) -> int:
        """Delete the given messages, or all of the session's messages when ``message_ids`` is None.
        Returns how many were deleted. The session itself stays, and its ``updated_at`` is unchanged."""

    @abstractmethod
    def count_messages(self, session_id: str) -> int:
        """How many messages the session holds (0 for an unknown session)."""


class AsyncConversationStore(AsyncStore, ABC):
    """Async conversation store: the same methods as :class:`ConversationStore`, awaited."""

    capabilities: ConversationCapabilities = ConversationCapabilities()

    @abstractmethod
    async def create_session(self, session: ConversationSession) -> ConversationSession: ...

    @abstractmethod
    async def get_session(self, session_id: str) -> ConversationSession | None: ...

    @abstractmethod
    async def update_session(self, session: ConversationSession) -> ConversationSession: ...

    async def upsert_session(self, session: ConversationSession) -> ConversationSession:
        try:
            return await self.update_session(session)
        except SessionNotFoundError:
            try:
                return await self.create_session(session)
            except AlreadyExistsError:
                return await self.update_session(session)

    @abstractmethod
    async def delete_session(self, session_id: str) -> bool: ...

    @abstractmethod
    async def list_sessions(self, *, user_id: str | None = None, agent_id: str | None = None,
                            limit: int | None = 100, offset: int = 0) -> list[ConversationSession]: ...

    async def add_message(self, session_id: str, message: ConversationMessage) -> ConversationMessage:
        return (await self.add_messages(session_id, [message]))[0]

    @abstractmethod
    async def add_messages(self, session_id: str,
                           messages: Sequence[ConversationMessage]) -> list[ConversationMessage]: ...

    @abstractmethod
    async def get_messages(self, session_id: str, *, limit: int | None = None, before: float | None = None,
                           after: float | None = None) -> list[ConversationMessage]: ...

    @abstractmethod
    async def delete_messages(self, session_id: str, message_ids: Sequence[str] | None = None) -> int: ...

    @abstractmethod
    async def count_messages(self, session_id: str) -> int: ...


ConversationStore._async_face = derive_async(AsyncConversationStore, OPERATIONS)
AsyncConversationStore._sync_face = derive_sync(ConversationStore, OPERATIONS)

__all__ = [
    "AsyncConversationStore",
    "ConversationCapabilities",
    "ConversationStore",
    "bind_messages",
    "check_limits",
    "now",
]
