"""LlamaIndex chat history on storebridge: the message conversion, ``StorebridgeChatStore`` (with
``ChatMemoryBuffer``) and ``StorebridgeDBChatStore`` (with ``Memory``), over every conversation backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.base.llms.types import (
    ChatMessage,
    DocumentBlock,
    ImageBlock,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.bridge.pydantic import BaseModel
from llama_index.core.memory import ChatMemoryBuffer, Memory
from llama_index.core.storage.chat_store.base_db import MessageStatus

from storebridge import ConversationMessage
from storebridge.errors import NotSupportedError, ValidationError
from storebridge.integrations._llamaindex_messages import (
    LLAMAINDEX_KEY,
    from_llamaindex,
    to_llamaindex,
)
from storebridge.integrations.llamaindex import (
    ARCHIVE_SUFFIX,
    StorebridgeChatStore,
    StorebridgeDBChatStore,
)
from tests.integrations.test_llamaindex_backends import backend_params, close_backend, open_backend

CALLS = [{"id": "call_1", "type": "function", "function": {"name": "search", "arguments": '{"q": "naïve"}'}}]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


MESSAGES: list[ChatMessage] = [
    ChatMessage(role="system", content="be brief"),
    ChatMessage(role="developer", content="dev note"),
    ChatMessage(role="user", content="héllo 🚀"),
    ChatMessage(role="assistant", content="", additional_kwargs={"tool_calls": CALLS}),
    ChatMessage(role="tool", content='{"hits": 3}', additional_kwargs={"tool_call_id": "call_1", "name": "search"}),
    ChatMessage(role="assistant", content="done", additional_kwargs={"usage": {"in": 1, "out": 2.5}, "x": [None, True]}),
    ChatMessage(role="chatbot", content="cohere says hi"),
    ChatMessage(role="model", content="gemini says hi"),
    ChatMessage(role="user", blocks=[TextBlock(text="look:"), ImageBlock(url="https://example.com/a.png"),
                                     TextBlock(text="and this"), DocumentBlock(url="https://example.com/a.pdf")]),
    ChatMessage(role="assistant", blocks=[ThinkingBlock(content="hmm", num_tokens=3),
                                          ToolCallBlock(tool_call_id="t1", tool_name="calc", tool_kwargs={"x": 1})]),
    ChatMessage(role="assistant", blocks=[]),
    ChatMessage(role="user", content="multi\nline\n", additional_kwargs={"llamaindex": "a caller's key"}),
]


def dump(message: ChatMessage) -> dict[str, Any]:
    return message.model_dump(mode="json")


@pytest.mark.parametrize("message", MESSAGES, ids=[f"{i}-{m.role.value}" for i, m in enumerate(MESSAGES)])
def test_conversion_round_trips(message: ChatMessage) -> None:
    stored = from_llamaindex(message, session_id="s")
    assert dump(to_llamaindex(stored)) == dump(message)
    assert stored.session_id == "s" and stored.content == (message.content or "")


def test_conversion_fields() -> None:
    """What storebridge sees: native fields filled, extras only where something would be lost."""
    plain = from_llamaindex(MESSAGES[2])
    assert (plain.role, plain.content, plain.tool_calls, plain.metadata) == ("user", "héllo 🚀", None, {})
    call = from_llamaindex(MESSAGES[3])
    assert call.tool_calls == CALLS and call.metadata == {}
    tool = from_llamaindex(MESSAGES[4])
    assert tool.tool_call_id == "call_1" and tool.metadata == {LLAMAINDEX_KEY: {"additional_kwargs": {
        "tool_call_id": "call_1", "name": "search"}}}
    assert from_llamaindex(MESSAGES[6]).role == "assistant"
    assert from_llamaindex(MESSAGES[6]).metadata[LLAMAINDEX_KEY] == {"role": "chatbot"}
    blocks = from_llamaindex(MESSAGES[8])
    assert blocks.content == "look:\nand this" and set(blocks.metadata[LLAMAINDEX_KEY]) == {"blocks"}
    from_blocks = from_llamaindex(MESSAGES[9])
    assert from_blocks.tool_calls == [{"id": "t1", "type": "function", "function": {"name": "calc", "arguments": '{"x": 1}'}}]


def test_objects_in_additional_kwargs_come_back_as_json() -> None:
    """As SimpleChatStore persists them: a pydantic object in additional_kwargs comes back as a dict."""
    message = ChatMessage(role="assistant", content="x", additional_kwargs={"usage": Usage(prompt_tokens=1, completion_tokens=2)})
    back = to_llamaindex(from_llamaindex(message))
    assert back.additional_kwargs == {"usage": {"prompt_tokens": 1, "completion_tokens": 2}}


def test_storebridge_metadata_is_not_sent_to_llamaindex() -> None:
    """A message written by storebridge keeps its metadata in storebridge: additional_kwargs go to model APIs."""
    message = ConversationMessage(role="tool", content="r", tool_call_id="c9", metadata={"trace": "abc", "llamaindex": 1})
    chat = to_llamaindex(message)
    assert chat.additional_kwargs == {"tool_call_id": "c9"} and chat.role.value == "tool" and chat.content == "r"


# -- StorebridgeChatStore over every conversation backend ------------------------------------------------------


class Chat:
    """A chat store called through the flavour matching the face it was given."""

    def __init__(self, store: Any, is_async: bool) -> None:
        self.store, self.is_async = store, is_async

    async def call(self, name: str, *args: Any) -> Any:
        if self.is_async:
            return await getattr(self.store, {"add_message": "async_add_message"}.get(name, "a" + name))(*args)
        return getattr(self.store, name)(*args)


@pytest.fixture(params=backend_params("conversation"))
def opened(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Any, bool]]:
    native, face = open_backend(request, tmp_path)
    try:
        yield native, face, request.param[1] == "async"
    finally:
        close_backend(native)


@pytest.fixture
def chat(opened: tuple[Any, Any, bool]) -> Chat:
    _, face, is_async = opened
    return Chat(StorebridgeChatStore(face), is_async)


@pytest.mark.asyncio
async def test_chat_store_operations(chat: Chat) -> None:
    await chat.call("set_messages", "user-1", MESSAGES)
    assert [dump(m) for m in await chat.call("get_messages", "user-1")] == [dump(m) for m in MESSAGES]
    extra = ChatMessage(role="user", content="one more")
    await chat.call("add_message", "user-1", extra)
    assert dump((await chat.call("get_messages", "user-1"))[-1]) == dump(extra)
    assert dump(await chat.call("delete_message", "user-1", 2)) == dump(MESSAGES[2])
    assert dump(await chat.call("delete_message", "user-1", -2)) == dump(MESSAGES[-1])
    assert await chat.call("delete_message", "user-1", 99) is None
    assert dump(await chat.call("delete_last_message", "user-1")) == dump(extra)
    left = [MESSAGES[i] for i in range(len(MESSAGES) - 1) if i != 2]
    assert [dump(m) for m in await chat.call("get_messages", "user-1")] == [dump(m) for m in left]
    await chat.call("set_messages", "user-1", MESSAGES[:2])
    assert len(await chat.call("get_messages", "user-1")) == 2, "set_messages replaces the history"
    await chat.call("set_messages", "empty", [])
    assert set(await chat.call("get_keys")) == {"user-1", "empty"}
    deleted = await chat.call("delete_messages", "user-1")
    assert [dump(m) for m in deleted] == [dump(m) for m in MESSAGES[:2]]
    assert await chat.call("get_keys") == ["empty"]
    assert await chat.call("delete_messages", "user-1") is None
    assert await chat.call("get_messages", "never") == []
    assert await chat.call("delete_last_message", "never") is None


@pytest.mark.asyncio
async def test_chat_store_refusals(chat: Chat) -> None:
    with pytest.raises(NotSupportedError, match="append order"):
        await chat.call("add_message", "k", ChatMessage(content="x"), 0)
    with pytest.raises(ValidationError):
        await chat.call("get_messages", "")
    with pytest.raises(ValidationError):
        await chat.call("set_messages", "k", [ChatMessage(content="ok"), {"role": "user"}])
    with pytest.raises(ValidationError):
        await chat.call("delete_message", "k", "0")
    assert await chat.call("get_keys") == [], "nothing of a refused call was written"


def test_chat_memory_buffer(opened: tuple[Any, Any, bool]) -> None:
    _, face, _ = opened
    memory = ChatMemoryBuffer.from_defaults(chat_store=StorebridgeChatStore(face), chat_store_key="user-42",
                                            token_limit=40)
    for i in range(12):
        memory.put(ChatMessage(role="user" if i % 2 == 0 else "assistant", content=f"message number {i} " * 2))
    everything = memory.get_all()
    assert [m.content for m in everything] == [f"message number {i} " * 2 for i in range(12)]
    window = memory.get()
    assert 0 < len(window) < 12 and window[-1].content == everything[-1].content, "the newest that fit the limit"
    again = ChatMemoryBuffer.from_defaults(chat_store=StorebridgeChatStore(face.as_async()), chat_store_key="user-42",
                                           token_limit=40)
    assert [m.content for m in again.get_all()] == [m.content for m in everything], "resumed through the other face"
    memory.reset()
    assert memory.get_all() == [] and again.get_all() == []


@pytest.mark.asyncio
async def test_chat_memory_buffer_async(opened: tuple[Any, Any, bool]) -> None:
    _, face, _ = opened
    memory = ChatMemoryBuffer.from_defaults(chat_store=StorebridgeChatStore(face), chat_store_key="a", token_limit=1000)
    await memory.aput(ChatMessage(role="user", content="hi"))
    await memory.aput(ChatMessage(role="assistant", content="hello", additional_kwargs={"tool_calls": CALLS}))
    got = await memory.aget()
    assert [m.content for m in got] == ["hi", "hello"] and got[1].additional_kwargs == {"tool_calls": CALLS}
    await memory.aset([ChatMessage(role="user", content="fresh")])
    assert [m.content for m in await memory.aget_all()] == ["fresh"]


# -- StorebridgeDBChatStore and Memory ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_db_chat_store_operations(opened: tuple[Any, Any, bool]) -> None:
    _, face, _ = opened
    store = StorebridgeDBChatStore(face)
    texts = [f"m{i}" for i in range(6)]
    await store.add_messages("k", [ChatMessage(role="user", content=t) for t in texts])
    await store.add_message("k", ChatMessage(role="assistant", content="m6"))
    assert await store.count_messages("k") == 7
    archived = await store.archive_oldest_messages("k", 3)
    assert [m.content for m in archived] == ["m0", "m1", "m2"]
    assert [m.content for m in await store.get_messages("k")] == ["m3", "m4", "m5", "m6"]
    assert [m.content for m in await store.get_messages("k", status=MessageStatus.ARCHIVED)] == ["m0", "m1", "m2"]
    assert [m.content for m in await store.get_messages("k", status=None, limit=3, offset=2)] == ["m2", "m3", "m4"]
    assert await store.count_messages("k", status=None) == 7
    assert [m.content for m in await store.delete_oldest_messages("k", 1)] == ["m3"]
    first = await store.delete_message("k", 0)  # a position in the whole history
    assert first is not None and first.content == "m0"
    assert await store.delete_message("k", 50) is None
    assert await store.get_keys() == ["k"], "the archive is part of its key"
    await store.delete_messages("k", status=MessageStatus.ARCHIVED)
    assert await store.count_messages("k", status=None) == 3
    await store.set_messages("k", [ChatMessage(content="only")], status=MessageStatus.ARCHIVED)
    assert [m.content for m in await store.get_messages("k", status=None)] == ["only"]
    assert await store.count_messages("k") == 0
    await store.delete_messages("k")
    assert await store.get_keys() == []
    with pytest.raises(ValidationError):
        await store.add_message("bad" + ARCHIVE_SUFFIX, ChatMessage(content="x"))


@pytest.mark.asyncio
async def test_memory_archives_into_the_store(opened: tuple[Any, Any, bool]) -> None:
    """LlamaIndex's Memory on a storebridge conversation store: the FIFO queue stays under its token limit,
    flushed messages are archived (not lost), and a new Memory over the same key resumes."""
    _, face, _ = opened
    store = StorebridgeDBChatStore(face)
    memory = Memory.from_defaults(session_id="agent-7", chat_store=store, token_limit=60, token_flush_size=20,
                                  chat_history_token_ratio=0.7)
    for i in range(10):
        await memory.aput(ChatMessage(role="user", content=f"question {i} about the stores"))
        await memory.aput(ChatMessage(role="assistant", content=f"answer {i} about the stores"))
    active = await memory.aget()
    everything = await memory.aget_all()
    assert len(everything) == 20 and everything[0].content == "question 0 about the stores"
    assert 0 < len(active) < 20 and active[-1].content == "answer 9 about the stores"
    archived = await store.get_messages("agent-7", status=MessageStatus.ARCHIVED)
    assert [m.content for m in archived + active] == [m.content for m in everything]
    resumed = Memory.from_defaults(session_id="agent-7", chat_store=StorebridgeDBChatStore(face), token_limit=60)
    assert [m.content for m in await resumed.aget_all()] == [m.content for m in everything]
    await memory.areset()
    assert await resumed.aget_all() == []


def test_memory_sync_api(opened: tuple[Any, Any, bool]) -> None:
    _, face, _ = opened
    memory = Memory.from_defaults(session_id="s", chat_store=StorebridgeDBChatStore(face), token_limit=1000,
                                  chat_history=[ChatMessage(role="system", content="start")])
    memory.put(ChatMessage(role="user", content="hi"))
    assert [m.content for m in memory.get()] == ["start", "hi"]
    memory.reset()
    assert memory.get_all() == []
