"""A storebridge conversation store over any LlamaIndex ``BaseChatStore``: registry name ``llamaindex``.

Messages. A session's messages are the chat store's messages under the key ``session_id``, in order.
Each is the natural LlamaIndex form of the message (see
:mod:`storebridge.integrations._llamaindex_messages`: role, text block, ``tool_calls`` and
``tool_call_id`` in ``additional_kwargs``), plus ``additional_kwargs["storebridge"]`` with what a
``ChatMessage`` has no field for (id, ``created_at``, ``sequence``, metadata), so every message comes
back exactly, whatever else edits the list. Keep the keys this store uses for it alone: a message
without that identity (appended by LlamaIndex directly) raises ``OperationFailedError`` when read, and
raw messages with the extra key should not be sent to a model API (read them through storebridge, e.g.
``StorebridgeChatStore``, which gives them back clean).

Sessions. ``BaseChatStore`` has no sessions, owners or per-session state, so a companion storebridge
state store (``sessions=``; default: a private in-process one) keeps one record per session: user,
agent, name, state, metadata, timestamps, and the counter that hands out message sequences. Keys:
``<prefix><session_id>``.

Writes. An append of one message is ``add_message``; a batch is one ``set_messages`` of the whole new
list, so it lands all or nothing on any chat store whose ``set_messages`` is atomic (``SimpleChatStore``).
Deleting some messages rewrites the list the same way. ``BaseChatStore`` has no compare-and-set, so
writes are serialised per store object (``multi_process=False``: two processes appending to one
session through different objects can lose messages).

Nothing in the conversation interface is left out: the companion record covers what ``BaseChatStore``
lacks, so no operation raises ``NotSupportedError``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from llama_index.core.llms import ChatMessage
from llama_index.core.storage.chat_store import BaseChatStore, SimpleChatStore

from storebridge.conversation import ConversationCapabilities, ConversationStore, bind_messages, check_limits
from storebridge.errors import (
    AlreadyExistsError,
    ConfigurationError,
    OperationFailedError,
    SessionNotFoundError,
    StoreClosedError,
    ValidationError,
)
from storebridge.integrations._llamaindex_messages import identity_of, pack, unpack
from storebridge.models import ConversationMessage, ConversationSession, now, validate_session_id

from ._wrapped import call_wrapped

_SESSION_FIELDS = ("user_id", "agent_id", "name", "state", "metadata", "created_at", "updated_at")


def _bound(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValidationError(f"{what} must be a number of seconds or None, got {value!r}")
    return float(value)


class LlamaIndexConversationStore(ConversationStore):
    """Conversations kept in a LlamaIndex chat store (default: a private ``SimpleChatStore``); see the
    module doc. ``persistent`` says whether the chat store and the ``sessions`` store outlive this object."""

    backend_name = "llamaindex"

    def __init__(self, chat_store: BaseChatStore | None = None, *, sessions: Any = None,
                 sessions_prefix: str = "llamaindex:session:", persistent: bool = False) -> None:
        if chat_store is not None and not isinstance(chat_store, BaseChatStore):
            raise ConfigurationError(f"chat_store must be a LlamaIndex BaseChatStore, got {type(chat_store).__name__}")
        if not isinstance(sessions_prefix, str) or not sessions_prefix:
            raise ConfigurationError("sessions_prefix must be a non-empty string")
        self.chat_store = chat_store if chat_store is not None else SimpleChatStore()
        if sessions is None:
            from storebridge.adapters.memory import MemoryStateStore

            sessions, self._owns_sessions = MemoryStateStore(), True
        else:
            self._owns_sessions = False
        if not callable(getattr(sessions, "as_sync", None)):
            raise ConfigurationError(f"sessions must be a storebridge state store, got {type(sessions).__name__}")
        self.sessions = sessions.as_sync()
        self.prefix = sessions_prefix
        self.capabilities = ConversationCapabilities(persistent=persistent, multi_process=False)
        self._lock = threading.RLock()
        self._closed = False

    def __repr__(self) -> str:
        return f"LlamaIndexConversationStore({type(self.chat_store).__name__}, sessions={self.sessions!r})"

    # -- plumbing --------------------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_sessions:
            self.sessions.close()

    def _open(self, session_id: Any) -> str:
        if self._closed:
            raise StoreClosedError("this LlamaIndexConversationStore was closed; open a new one")
        return validate_session_id(session_id)

    def _chat(self, what: str, *args: Any) -> Any:
        return call_wrapped("LlamaIndex chat store", what, getattr(self.chat_store, what), *args)

    def _chats(self, session_id: str) -> list[ChatMessage]:
        return list(self._chat("get_messages", session_id))

    def _record(self, session_id: str) -> dict[str, Any] | None:
        record = self.sessions.get(self.prefix + session_id)
        return None if record is None else dict(record)

    @staticmethod
    def _session(session_id: str, record: dict[str, Any]) -> ConversationSession:
        return ConversationSession(session_id=session_id, **{f: record[f] for f in _SESSION_FIELDS})

    def _write_record(self, session: ConversationSession, last_sequence: int) -> None:
        record = {f: getattr(session, f) for f in _SESSION_FIELDS}
        record["last_sequence"] = last_sequence
        self.sessions.set(self.prefix + session.session_id, record)

    def _messages(self, session_id: str, chats: Sequence[ChatMessage]) -> list[ConversationMessage]:
        return [unpack(chat, session_id, where=f" at position {i} of chat key {session_id!r}")
                for i, chat in enumerate(chats)]

    # -- sessions --------------------------------------------------------------------------------------

    def create_session(self, session: ConversationSession) -> ConversationSession:
        if not isinstance(session, ConversationSession):
            raise ValidationError(f"expected a ConversationSession, got {type(session).__name__}")
        self._open(session.session_id)
        with self._lock:
            if self._record(session.session_id) is not None:
                raise AlreadyExistsError(f"session {session.session_id!r} exists already")
            self._write_record(session, 0)
        return session

    def get_session(self, session_id: str) -> ConversationSession | None:
        session_id = self._open(session_id)
        record = self._record(session_id)
        return None if record is None else self._session(session_id, record)

    def update_session(self, session: ConversationSession) -> ConversationSession:
        if not isinstance(session, ConversationSession):
            raise ValidationError(f"expected a ConversationSession, got {type(session).__name__}")
        self._open(session.session_id)
        with self._lock:
            record = self._record(session.session_id)
            if record is None:
                raise SessionNotFoundError(f"session {session.session_id!r} does not exist")
            updated = session.replace(created_at=record["created_at"], updated_at=now())
            self._write_record(updated, record["last_sequence"])
        return updated

    def delete_session(self, session_id: str) -> bool:
        session_id = self._open(session_id)
        with self._lock:
            had_messages = bool(self._chats(session_id))
            if had_messages:
                self._chat("delete_messages", session_id)
            existed = self.sessions.delete(self.prefix + session_id)
        return existed or had_messages

    def list_sessions(self, *, user_id: str | None = None, agent_id: str | None = None, limit: int | None = 100,
                      offset: int = 0) -> list[ConversationSession]:
        if self._closed:
            raise StoreClosedError("this LlamaIndexConversationStore was closed; open a new one")
        check_limits(limit, offset)
        keys = self.sessions.keys(prefix=self.prefix)
        records = self.sessions.get_many(keys) if keys else {}
        sessions = [self._session(key[len(self.prefix):], record) for key, record in records.items()]
        sessions = [s for s in sessions if (user_id is None or s.user_id == user_id)
                    and (agent_id is None or s.agent_id == agent_id)]
        sessions.sort(key=lambda s: s.updated_at, reverse=True)
        return sessions[offset:None if limit is None else offset + limit]

    # -- messages --------------------------------------------------------------------------------------

    def add_messages(self, session_id: str, messages: Sequence[ConversationMessage]) -> list[ConversationMessage]:
        session_id = self._open(session_id)
        bound = bind_messages(session_id, list(messages))
        if not bound:
            return []
        with self._lock:
            chats = self._chats(session_id)
            taken = set()
            for i, chat in enumerate(chats):
                identity = identity_of(chat)
                if identity is None:
                    raise OperationFailedError(f"the message at position {i} of chat key {session_id!r} was not "
                                               "written through storebridge; keep the key for this store alone")
                taken.add(identity["id"])
            clash = [m.id for m in bound if m.id in taken]
            if clash:
                raise AlreadyExistsError(f"message id(s) {clash[:5]} exist already in session {session_id!r}; "
                                         "nothing of this batch was written")
            record = self._record(session_id)
            session = (ConversationSession(session_id=session_id) if record is None
                       else self._session(session_id, record))
            first = 0 if record is None else int(record["last_sequence"])
            stamped = [m.replace(sequence=first + i + 1) for i, m in enumerate(bound)]
            packed = [pack(m) for m in stamped]  # everything is refused before anything is written
            self._write_record(session.replace(updated_at=now()), first + len(stamped))
            if len(packed) == 1:
                self._chat("add_message", session_id, packed[0])
            else:
                self._chat("set_messages", session_id, chats + packed)
        return stamped

    def get_messages(self, session_id: str, *, limit: int | None = None, before: float | None = None,
                     after: float | None = None) -> list[ConversationMessage]:
        session_id = self._open(session_id)
        check_limits(limit)
        before, after = _bound(before, "before"), _bound(after, "after")
        messages = [m for m in self._messages(session_id, self._chats(session_id))
                    if (before is None or m.created_at < before) and (after is None or m.created_at > after)]
        if limit is not None:
            messages = messages[len(messages) - limit:] if limit else []
        return messages

    def delete_messages(self, session_id: str, message_ids: Sequence[str] | None = None) -> int:
        session_id = self._open(session_id)
        wanted = None if message_ids is None else self._id_set(message_ids)
        with self._lock:
            chats = self._chats(session_id)
            if wanted is None:
                if chats:
                    self._chat("delete_messages", session_id)
                return len(chats)
            kept = [chat for chat in chats if (identity_of(chat) or {}).get("id") not in wanted]
            if len(kept) != len(chats):
                self._chat("set_messages", session_id, kept)
            return len(chats) - len(kept)

    @staticmethod
    def _id_set(ids: Any) -> set[str]:
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise ValidationError(f"message_ids must be a list of strings, got {type(ids).__name__}")
        out = set(ids)
        if not all(isinstance(i, str) for i in out):
            raise ValidationError("message ids are strings")
        return out

    def count_messages(self, session_id: str) -> int:
        return len(self._chats(self._open(session_id)))


__all__ = ["LlamaIndexConversationStore"]
