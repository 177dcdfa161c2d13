"""The one conversion between LlamaIndex ``ChatMessage`` and storebridge's :class:`ConversationMessage`.

``to_llamaindex(from_llamaindex(m))`` is ``m`` again (role, content blocks, ``additional_kwargs``), up to
what LlamaIndex's own JSON form keeps (``SimpleChatStore`` persists the same form: pydantic objects in
``additional_kwargs`` come back as dicts, bytes as base64 text).

What goes where:

* ``role``: LlamaIndex's roles are storebridge's, plus ``chatbot`` and ``model`` (other vendors' names for
  the assistant), stored as ``assistant``.
* ``content``: the text of the message's text blocks (``ChatMessage.content``), so stores and their
  searches see the text; content blocks beyond one text block (images, documents, tool-call blocks...)
  are kept whole in the extras below.
* ``tool_calls``: ``additional_kwargs["tool_calls"]`` (OpenAI-style dicts, the form storebridge stores),
  or else the message's ``ToolCallBlock``\\ s written in that form; ``tool_call_id`` is
  ``additional_kwargs["tool_call_id"]``.
* ``metadata["llamaindex"]`` (:data:`LLAMAINDEX_KEY`): only what the native fields do not rebuild (the
  other ``additional_kwargs``, content blocks, an unusual role), stripped back out by
  :func:`to_llamaindex`. A storebridge message's other metadata is not handed to LlamaIndex: its
  ``additional_kwargs`` are sent to model APIs, which refuse unknown fields.

:func:`pack` / :func:`unpack` add the storebridge identity (id, timestamps, sequence, metadata) under
``additional_kwargs["storebridge"]`` for the ``llamaindex`` conversation backend, which keeps storebridge
messages inside a LlamaIndex chat store.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, ToolCallBlock

from ..errors import OperationFailedError, ValidationError
from ..models import ROLES, ConversationMessage, new_id

#: The metadata key holding what a LlamaIndex message has beyond storebridge's native fields.
LLAMAINDEX_KEY = "llamaindex"
#: The ``additional_kwargs`` key holding a storebridge message's identity inside a LlamaIndex chat store.
IDENTITY_KEY = "storebridge"

_FIELDS = ("role", "blocks", "additional_kwargs")
_NATIVE = ("role", "content", "tool_calls", "tool_call_id")


def same_json(a: Any, b: Any) -> bool:
    """Equality of JSON values that tells ``1``, ``1.0`` and ``True`` apart and ignores key order."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _dump(message: ChatMessage) -> dict[str, Any]:
    """The JSON form of a message, as LlamaIndex's chat stores persist it."""
    return message.model_dump(mode="json")


def _extras(metadata: Mapping[str, Any]) -> dict[str, Any]:
    extras = metadata.get(LLAMAINDEX_KEY)
    if isinstance(extras, Mapping) and set(extras) <= set(_FIELDS):
        return dict(extras)
    return {}  # not ours: a caller's own key of that name


def _block_tool_calls(message: ChatMessage) -> list[dict[str, Any]]:
    return [
        {"id": block.tool_call_id, "type": "function",
         "function": {"name": block.tool_name,
                      "arguments": block.tool_kwargs if isinstance(block.tool_kwargs, str)
                      else json.dumps(block.tool_kwargs, ensure_ascii=False)}}
        for block in message.blocks if isinstance(block, ToolCallBlock)
    ]


def to_llamaindex(message: ConversationMessage) -> ChatMessage:
    """The LlamaIndex message for a stored one (the exact original, if it came from LlamaIndex)."""
    kwargs: dict[str, Any] = {}
    if message.tool_calls is not None:
        kwargs["tool_calls"] = json.loads(json.dumps(message.tool_calls))  # a private copy
    if message.tool_call_id is not None:
        kwargs["tool_call_id"] = message.tool_call_id
    data: dict[str, Any] = {"role": message.role, "blocks": [{"block_type": "text", "text": message.content}],
                            "additional_kwargs": kwargs}
    data.update(_extras(message.metadata))
    try:
        return ChatMessage.model_validate(data)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ValidationError(f"message {message.id!r} cannot be rebuilt as a LlamaIndex ChatMessage: {exc}") from exc


def from_llamaindex(message: ChatMessage, *, session_id: str = "", message_id: str | None = None) -> ConversationMessage:
    """The stored form of a LlamaIndex message (a fresh id unless ``message_id``: ChatMessage has none)."""
    if not isinstance(message, ChatMessage):
        raise ValidationError(f"expected a LlamaIndex ChatMessage, got {type(message).__name__}")
    try:
        dump = _dump(message)
    except ValueError as exc:
        raise ValidationError(f"the ChatMessage cannot be serialised as JSON: {exc}") from exc
    kwargs = dump["additional_kwargs"]
    calls = kwargs.get("tool_calls")
    if not (isinstance(calls, list) and all(isinstance(c, dict) for c in calls)):
        calls = _block_tool_calls(message) or None
    call_id = kwargs.get("tool_call_id")
    native = ConversationMessage(
        id=message_id or new_id(),
        session_id=session_id,
        role=dump["role"] if dump["role"] in ROLES else "assistant",
        content=message.content or "",
        tool_calls=calls,
        tool_call_id=call_id if isinstance(call_id, str) else None,
    )
    rebuilt = _dump(to_llamaindex(native))
    extras = {key: dump[key] for key in _FIELDS if not same_json(dump[key], rebuilt[key])}
    return native.replace(metadata={LLAMAINDEX_KEY: extras}) if extras else native


def pack(message: ConversationMessage) -> ChatMessage:
    """A storebridge message as a LlamaIndex one that carries everything needed to give it back exactly."""
    chat = to_llamaindex(message)
    back = from_llamaindex(chat)
    identity: dict[str, Any] = {"id": message.id, "created_at": message.created_at, "sequence": message.sequence,
                                "metadata": dict(message.metadata)}
    identity.update((name, getattr(message, name)) for name in _NATIVE
                    if not same_json(getattr(back, name), getattr(message, name)))
    try:
        chat.additional_kwargs[IDENTITY_KEY] = json.loads(json.dumps(identity, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"message {message.id!r} has metadata that is not JSON: {exc}") from None
    return chat


def identity_of(chat: ChatMessage) -> Mapping[str, Any] | None:
    identity = chat.additional_kwargs.get(IDENTITY_KEY)
    return identity if isinstance(identity, Mapping) and isinstance(identity.get("id"), str) else None


def unpack(chat: ChatMessage, session_id: str, *, where: str = "") -> ConversationMessage:
    """The storebridge message :func:`pack` made (``OperationFailedError`` for one written otherwise)."""
    identity = identity_of(chat)
    if identity is None:
        raise OperationFailedError(
            f"a message{where} was not written through storebridge (it has no additional_kwargs"
            f"[{IDENTITY_KEY!r}]); keep the chat store's keys for the storebridge store alone"
        )
    plain = {key: value for key, value in chat.additional_kwargs.items() if key != IDENTITY_KEY}
    back = from_llamaindex(chat.model_copy(update={"additional_kwargs": plain}), session_id=session_id,
                           message_id=identity["id"])
    fields = {name: identity[name] for name in _NATIVE if name in identity}
    return back.replace(created_at=identity["created_at"], sequence=identity["sequence"],
                        metadata=identity.get("metadata", {}), **fields)


__all__ = ["IDENTITY_KEY", "LLAMAINDEX_KEY", "from_llamaindex", "identity_of", "pack", "same_json",
           "to_llamaindex", "unpack"]
