"""The one conversion between LangChain messages and storebridge's :class:`ConversationMessage`.

Both directions are exact: ``to_langchain(from_langchain(m)) == m`` for every LangChain message (Human,
AI, System, Tool, Function, Chat, and their chunks), with ``tool_calls``, ``tool_call_id``, ``name``,
``id``, ``additional_kwargs``, ``response_metadata``, ``usage_metadata`` and multimodal content.

What goes where:

* ``role``: human -> ``user``, ai -> ``assistant``, system -> ``system`` (``developer`` when LangChain's
  ``additional_kwargs["__openai_role__"] == "developer"``), tool -> ``tool``, function -> ``function``,
  ``ChatMessage(role=r)`` -> ``r`` when it is a storebridge role, else ``user``.
* ``content``: a string stays a string; a list of content blocks becomes its text parts joined (so the
  store and its search see the text) and the blocks themselves are kept under the key below.
* ``tool_calls``: **OpenAI-style dicts**, the one form storebridge stores:
  ``{"id": ..., "type": "function", "function": {"name": ..., "arguments": "<JSON text>"}}``; LangChain's
  ``ToolCall`` (``name``/``args``/``id``) is rebuilt from them. ``tool_call_id`` is ``ToolMessage.tool_call_id``.
* ``metadata``: LangChain's ``response_metadata`` (model name, token usage, finish reason...), so it is
  stored and queryable as plain metadata. Everything else the native fields cannot carry (``name``,
  ``additional_kwargs``, ``usage_metadata``, ``invalid_tool_calls``, content blocks, a missing ``id``, the
  exact message class) goes under ``metadata["langchain"]`` (:data:`LANGCHAIN_KEY`), holding only what
  differs from what the native fields rebuild, and is stripped back out by :func:`to_langchain`.

A LangChain message without an ``id`` gets a fresh storebridge id (stores need one); the absence is
remembered, so it converts back without one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.utils import messages_from_dict

from ..errors import ValidationError
from ..models import ROLES, ConversationMessage, new_id

#: The metadata key holding what a LangChain message has beyond storebridge's native fields.
LANGCHAIN_KEY = "langchain"

_ROLE_TYPES = {"user": "human", "assistant": "ai", "system": "system", "developer": "system", "tool": "tool",
               "function": "function"}
_DEVELOPER = {"__openai_role__": "developer"}
# Fields that follow from the native ones; response_metadata is mapped to metadata on its own.
_NOT_EXTRAS = frozenset({"type", "response_metadata"})


def same_json(a: Any, b: Any) -> bool:
    """Equality that also compares types (``1`` is not ``1.0`` or ``True``), for JSON-like values."""
    if type(a) is not type(b):
        return False
    if isinstance(a, Mapping):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    return bool(a == b)


def content_text(content: str | Sequence[Any]) -> str:
    """The text of LangChain content: a string as is; of a block list, its text parts joined."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, Mapping) and block.get("type") == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
    return "".join(parts)


def _role_of(message: BaseMessage) -> str:
    if isinstance(message, HumanMessage):
        return "user"
    if isinstance(message, AIMessage):
        return "assistant"
    if isinstance(message, SystemMessage):
        return "developer" if message.additional_kwargs.get("__openai_role__") == "developer" else "system"
    if isinstance(message, ToolMessage):
        return "tool"
    if isinstance(message, FunctionMessage):
        return "function"
    if isinstance(message, ChatMessage):
        return message.role if message.role in ROLES else "user"
    raise ValidationError(
        f"cannot store a LangChain {type(message).__name__} (type {message.type!r}) as a chat message"
    )


def _openai_tool_call(call: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": call.get("id"), "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call.get("args", {}), ensure_ascii=False)}}


def _langchain_tool_calls(calls: Sequence[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Stored tool calls as LangChain ``(tool_calls, invalid_tool_calls)``; OpenAI style is the stored
    form, LangChain's own ``{"name", "args"}`` form is accepted too."""
    valid: list[dict[str, Any]] = []
    invalid: list[dict[str, Any]] = []
    for call in calls:
        if not isinstance(call, Mapping):
            raise ValidationError(f"a tool call must be a dict, got {type(call).__name__}")
        function = call.get("function")
        if isinstance(function, Mapping):
            name, arguments = function.get("name"), function.get("arguments", "{}")
            try:
                args = json.loads(arguments) if isinstance(arguments, str) else arguments
            except json.JSONDecodeError as exc:
                invalid.append({"type": "invalid_tool_call", "id": call.get("id"), "name": name,
                                "args": arguments, "error": f"arguments are not JSON: {exc}"})
                continue
        else:
            name, args = call.get("name"), call.get("args", {})
        if not isinstance(args, dict) or not isinstance(name, str):
            invalid.append({"type": "invalid_tool_call", "id": call.get("id"), "name": name,
                            "args": json.dumps(args) if not isinstance(args, str) else args,
                            "error": "not a function call with a name and an object of arguments"})
            continue
        valid.append({"type": "tool_call", "id": call.get("id"), "name": name, "args": args})
    return valid, invalid


def to_langchain(message: ConversationMessage) -> BaseMessage:
    """The LangChain message for a stored one (the exact original, if it came from LangChain)."""
    metadata = dict(message.metadata)
    extras = metadata.pop(LANGCHAIN_KEY, None)
    if not isinstance(extras, Mapping):  # not ours: a caller's own key of that name stays plain metadata
        if extras is not None:
            metadata[LANGCHAIN_KEY] = extras
        extras = {}
    kind = extras.get("type") or _ROLE_TYPES[message.role]
    base = kind.removesuffix("MessageChunk").lower()  # "AIMessageChunk" -> "ai", "ToolMessageChunk" -> "tool"
    data: dict[str, Any] = {"content": message.content, "id": message.id}
    if base == "system" and message.role == "developer":
        data["additional_kwargs"] = dict(_DEVELOPER)
    elif base == "ai" and message.tool_calls:
        data["tool_calls"], data["invalid_tool_calls"] = _langchain_tool_calls(message.tool_calls)
    elif base == "tool":
        data["tool_call_id"] = message.tool_call_id or ""
    elif base == "function":
        data["name"] = ""
    elif base == "chat":
        data["role"] = message.role
    data["response_metadata"] = extras.get("response_metadata", metadata)
    data.update((key, value) for key, value in extras.items() if key not in _NOT_EXTRAS)
    try:
        return messages_from_dict([{"type": kind, "data": data}])[0]
    except ValueError as exc:  # pydantic's ValidationError is a ValueError too
        raise ValidationError(f"message {message.id!r} cannot be rebuilt as a LangChain {kind!r} message: {exc}") from exc


def from_langchain(message: BaseMessage, *, session_id: str = "", default_id: str | None = None) -> ConversationMessage:
    """The stored form of a LangChain message; :func:`to_langchain` gives the same message back."""
    if not isinstance(message, BaseMessage):
        raise ValidationError(f"expected a LangChain BaseMessage, got {type(message).__name__}")
    calls = message.tool_calls if isinstance(message, AIMessage) else []
    native = ConversationMessage(
        id=message.id or default_id or new_id(),
        session_id=session_id,
        role=_role_of(message),
        content=content_text(message.content),
        tool_calls=[_openai_tool_call(call) for call in calls] or None,
        tool_call_id=message.tool_call_id if isinstance(message, ToolMessage) else None,
    )
    rebuilt = to_langchain(native).model_dump()
    extras = {key: value for key, value in message.model_dump().items()
              if key not in _NOT_EXTRAS and (key not in rebuilt or not same_json(value, rebuilt[key]))}
    if message.type != rebuilt["type"]:
        extras["type"] = message.type
    metadata = dict(message.response_metadata)
    if LANGCHAIN_KEY in metadata:  # would be taken for ours on the way back: keep it whole among the extras
        extras["response_metadata"], metadata = metadata, {}
    if extras:
        metadata[LANGCHAIN_KEY] = extras
    return native.replace(metadata=metadata)


__all__ = ["LANGCHAIN_KEY", "content_text", "from_langchain", "same_json", "to_langchain"]
