"""A storebridge conversation store over LangChain chat histories: registry name ``langchain``.

``history_factory(session_id)`` returns the ``BaseChatMessageHistory`` of a session (an
``InMemoryChatMessageHistory`` from a dict, a Redis or SQL history...). It must return a history over the
same data for the same id every time. Session records (user, agent, name, state, metadata, times) and
each session's sequence counter live in a companion storebridge state store (``sessions=``; default: a
private in-process one).

Messages. Each stored message becomes a LangChain message through the shared conversion
(``storebridge.integrations._langchain_messages``), so LangChain code reading the wrapped history sees
natural messages. What LangChain messages cannot carry (``created_at``, ``sequence``, and any field that
would not round-trip, e.g. a ``tool_call_id`` on a non-tool message) is kept in
``response_metadata["storebridge"]`` of that message (never sent to model providers) and restored on read.
Messages written into the wrapped history by other code are read too: their sequence is their position.

Honest limits, declared or refused: ``BaseChatMessageHistory`` can only append, read everything and clear,
so ``delete_messages(session_id, ids)`` raises ``NotSupportedError`` unless ``rewrite_on_delete=True``
(then it clears and re-appends the kept messages: not atomic). Reads load the whole history (the wrapped
API has no windowed read), and one lock per store object orders appends (``multi_process=False``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage

from storebridge.conversation import (
    ConversationCapabilities,
    ConversationStore,
    bind_messages,
    check_limits,
)
from storebridge.errors import (
    AlreadyExistsError,
    ConfigurationError,
    NotSupportedError,
    SessionNotFoundError,
    StoreClosedError,
    ValidationError,
)
from storebridge.integrations._langchain_messages import from_langchain, same_json, to_langchain
from storebridge.models import ConversationMessage, ConversationSession, now, validate_session_id
from storebridge.state import StateStore

#: The ``response_metadata`` key of a wrapped message holding what LangChain's fields cannot carry.
RECORD_KEY = "storebridge"
_RECORDED = ("id", "role", "content", "tool_calls", "tool_call_id", "metadata")

HistoryFactory = Callable[[str], BaseChatMessageHistory]


def _check_time(value: Any, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value)):
        raise ValidationError(f"{name} must be a number of seconds since the epoch or None, got {value!r}")


class LangChainConversationStore(ConversationStore):
    """Sessions and messages kept in LangChain chat histories (one per session) plus a companion state
    store for session records. ``persistent`` says whether both outlive this object."""

    backend_name = "langchain"
    capabilities = ConversationCapabilities(persistent=False, multi_process=False, max_content_bytes=None)

    def __init__(self, history_factory: HistoryFactory, *, sessions: StateStore | Any | None = None,
                 persistent: bool = False, rewrite_on_delete: bool = False) -> None:
        if not callable(history_factory):
            raise ConfigurationError("history_factory must be a callable session_id -> BaseChatMessageHistory")
        self.history_factory = history_factory
        if sessions is None:
            from storebridge.adapters.memory import MemoryStateStore

            sessions, self._owns_sessions = MemoryStateStore(), True
        else:
            self._owns_sessions = False
        self.sessions = sessions.as_sync()
        self.rewrite_on_delete = rewrite_on_delete
        self.capabilities = ConversationCapabilities(persistent=persistent, multi_process=False,
                                                     max_content_bytes=None,
                                                     delete_messages_by_id=rewrite_on_delete)
        self._lock = threading.RLock()
        self._closed = False

    def __repr__(self) -> str:
        return f"LangChainConversationStore({self.history_factory!r})"

    # -- plumbing -------------------------------------------------------------------------------------

    def _history(self, session_id: str) -> BaseChatMessageHistory:
        if self._closed:
            raise StoreClosedError("this LangChain conversation store was closed; open a new one")
        history = self.history_factory(validate_session_id(session_id))
        if not isinstance(history, BaseChatMessageHistory):
            raise ConfigurationError(f"history_factory returned {type(history).__name__}, not a BaseChatMessageHistory")
        return history

    @staticmethod
    def _key(kind: str, session_id: str) -> str:
        return f"{kind}:{quote(session_id, safe='')}"  # quoted: no session id can look like another's key

    def _record(self, session_id: str) -> dict[str, Any] | None:
        if self._closed:
            raise StoreClosedError("this LangChain conversation store was closed; open a new one")
        return self.sessions.get(self._key("session", validate_session_id(session_id)))  # type: ignore[no-any-return]

    def _save(self, session: ConversationSession) -> None:
        self.sessions.set(self._key("session", session.session_id), {
            "session_id": session.session_id, "user_id": session.user_id, "agent_id": session.agent_id,
            "name": session.name, "state": dict(session.state), "metadata": dict(session.metadata),
            "created_at": session.created_at, "updated_at": session.updated_at,
        })

    def _to_history(self, message: ConversationMessage) -> BaseMessage:
        """The LangChain message to append, carrying what its own fields would lose."""
        converted = to_langchain(message)
        metadata = {k: v for k, v in converted.response_metadata.items() if k != RECORD_KEY}
        plain = converted.model_copy(update={"response_metadata": metadata})
        back = from_langchain(plain, session_id=message.session_id)  # what a read restores without a record
        record: dict[str, Any] = {"created_at": message.created_at, "sequence": message.sequence}
        record.update((field, getattr(message, field)) for field in _RECORDED
                      if not same_json(getattr(back, field), getattr(message, field)))
        return plain.model_copy(update={"response_metadata": {**metadata, RECORD_KEY: record}})

    @staticmethod
    def _from_history(message: BaseMessage, session_id: str, position: int) -> ConversationMessage:
        metadata = dict(message.response_metadata)
        record = metadata.pop(RECORD_KEY, None)
        if not isinstance(record, Mapping) or "sequence" not in record:  # written by other code
            return from_langchain(message, session_id=session_id, default_id=f"lc-{position}").replace(
                sequence=position + 1)
        plain = message.model_copy(update={"response_metadata": metadata})
        restored = from_langchain(plain, session_id=session_id, default_id=f"lc-{position}")
        return restored.replace(**{field: record[field] for field in (*_RECORDED, "created_at", "sequence")
                                   if field in record})

    def _messages(self, session_id: str) -> list[ConversationMessage]:
        return [self._from_history(m, session_id, i) for i, m in enumerate(self._history(session_id).messages)]

    # -- sessions -------------------------------------------------------------------------------------

    def create_session(self, session: ConversationSession) -> ConversationSession:
        if not isinstance(session, ConversationSession):
            raise ValidationError(f"expected a ConversationSession, got {type(session).__name__}")
        with self._lock:
            if self._record(session.session_id) is not None:
                raise AlreadyExistsError(f"session {session.session_id!r} exists already")
            self._save(session)
        return session

    def get_session(self, session_id: str) -> ConversationSession | None:
        record = self._record(session_id)
        return None if record is None else ConversationSession(**record)

    def update_session(self, session: ConversationSession) -> ConversationSession:
        if not isinstance(session, ConversationSession):
            raise ValidationError(f"expected a ConversationSession, got {type(session).__name__}")
        with self._lock:
            record = self._record(session.session_id)
            if record is None:
                raise SessionNotFoundError(f"session {session.session_id!r} does not exist")
            updated = session.replace(created_at=record["created_at"], updated_at=now())
            self._save(updated)
        return updated

    def delete_session(self, session_id: str) -> bool:
        with self._lock:
            history = self._history(session_id)
            existed = self._record(session_id) is not None
            history.clear()
            self.sessions.delete_many([self._key("session", session_id), self._key("seq", session_id)])
        return existed

    def list_sessions(self, *, user_id: str | None = None, agent_id: str | None = None, limit: int | None = 100,
                      offset: int = 0) -> list[ConversationSession]:
        check_limits(limit, offset)
        if self._closed:
            raise StoreClosedError("this LangChain conversation store was closed; open a new one")
        records = self.sessions.get_many(self.sessions.keys(prefix="session:")).values()
        chosen = [ConversationSession(**r) for r in records
                  if (user_id is None or r["user_id"] == user_id) and (agent_id is None or r["agent_id"] == agent_id)]
        chosen.sort(key=lambda s: (s.updated_at, s.created_at), reverse=True)
        return chosen[offset:] if limit is None else chosen[offset:offset + limit]

    # -- messages -------------------------------------------------------------------------------------

    def add_messages(self, session_id: str, messages: Sequence[ConversationMessage]) -> list[ConversationMessage]:
        """Append in one ``add_messages`` call of the wrapped history; ids are checked against it first."""
        bound = bind_messages(session_id, messages)
        with self._lock:
            history = self._history(session_id)
            if not bound:
                return []
            existing = {m.id for m in history.messages}
            taken = [m.id for m in bound if m.id in existing]
            if taken:
                raise AlreadyExistsError(f"message id(s) {taken[:5]} exist already in session {session_id!r}; "
                                         "nothing of this batch was written")
            last = int(self.sessions.increment(self._key("seq", session_id), len(bound)))
            sequenced = [m.replace(sequence=last - len(bound) + 1 + i) for i, m in enumerate(bound)]
            converted = [self._to_history(m) for m in sequenced]
            history.add_messages(converted)
            record = self._record(session_id)
            stamp = now()
            session = (ConversationSession(session_id=session_id, created_at=stamp, updated_at=stamp) if record is None
                       else ConversationSession(**record).replace(updated_at=stamp))
            self._save(session)
        return sequenced

    def get_messages(self, session_id: str, *, limit: int | None = None, before: float | None = None,
                     after: float | None = None) -> list[ConversationMessage]:
        """Loads the whole history (the wrapped API has no windowed read), then windows it."""
        check_limits(limit)
        _check_time(before, "before")
        _check_time(after, "after")
        messages = [m for m in self._messages(session_id)
                    if (before is None or m.created_at < before) and (after is None or m.created_at > after)]
        if limit is not None:
            messages = messages[len(messages) - limit:] if limit else []
        return messages

    def delete_messages(self, session_id: str, message_ids: Sequence[str] | None = None) -> int:
        if message_ids is not None and (isinstance(message_ids, (str, bytes))
                                        or not all(isinstance(i, str) for i in message_ids)):
            raise ValidationError("message_ids must be a list of strings or None")
        with self._lock:
            history = self._history(session_id)
            if message_ids is None:
                count = len(history.messages)
                history.clear()
                return count
            if not message_ids:
                return 0
            if not self.rewrite_on_delete:
                raise NotSupportedError(
                    "a LangChain chat history can only be cleared as a whole, not lose single messages; pass "
                    "rewrite_on_delete=True to allow clearing and re-appending the kept messages (not atomic)"
                )
            doomed = set(message_ids)
            current = history.messages
            kept = [m for i, m in enumerate(current) if self._from_history(m, session_id, i).id not in doomed]
            removed = len(current) - len(kept)
            if removed:
                history.clear()
                history.add_messages(kept)
        return removed

    def count_messages(self, session_id: str) -> int:
        return len(self._history(session_id).messages)

    def close(self) -> None:
        """Mark this object closed (closing the companion store only if this object made it)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_sessions:
            self.sessions.close()


__all__ = ["RECORD_KEY", "LangChainConversationStore"]
