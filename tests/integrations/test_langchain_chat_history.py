"""``StorebridgeChatMessageHistory`` over every conversation backend: exact message round trips (tool
calls, multimodal content, every message class), the newest-n window, one store call per batch, native
async, and ``RunnableWithMessageHistory`` with a fake chat model that calls a tool."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory

from storebridge import ConversationMessage
from storebridge.errors import ValidationError
from storebridge.integrations.langchain import LANGCHAIN_KEY, StorebridgeChatMessageHistory
from tests.integrations.test_langchain_backends import backend_params, close_backend, open_backend

pytestmark = [pytest.mark.asyncio,
              pytest.mark.filterwarnings("ignore::langchain_core._api.deprecation.LangChainDeprecationWarning"),
              pytest.mark.filterwarnings("ignore:The test <Function:pytest.PytestWarning")]

WEATHER_CALL = {"name": "get_weather", "args": {"city": "Zürich", "units": ["c"], "days": 2}, "id": "call_1",
                "type": "tool_call"}

EVERY_KIND: list[BaseMessage] = [
    SystemMessage("be brief"),
    SystemMessage("developer rules", additional_kwargs={"__openai_role__": "developer"}),
    HumanMessage("hi", name="ann", id="h1"),
    HumanMessage(content=[{"type": "text", "text": "what is "},
                          {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                          {"type": "text", "text": "this?"}]),
    AIMessage("", id="a1", tool_calls=[WEATHER_CALL],
              response_metadata={"model_name": "fake", "finish_reason": "tool_calls"},
              usage_metadata={"input_tokens": 3, "output_tokens": 4, "total_tokens": 7},
              additional_kwargs={"refusal": None}),
    AIMessage("bad call", invalid_tool_calls=[{"type": "invalid_tool_call", "id": "x", "name": "f",
                                               "args": "{not json", "error": "bad"}]),
    ToolMessage('{"temp": 21}', tool_call_id="call_1", name="get_weather", status="success", artifact={"raw": [1]}),
    FunctionMessage(name="legacy_fn", content="42"),
    ChatMessage(role="critic", content="too long"),
    AIMessageChunk(content="partial", id="c1"),
    AIMessage("It is 21 °C in Zürich 🚀", id="a2"),
]


@pytest.fixture(params=backend_params("conversation"))
def face(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    native, store_face = open_backend(request, tmp_path)
    try:
        yield store_face
    finally:
        close_backend(native)


class CallCounter:
    """A store face that counts the calls it forwards (and the arguments of get_messages)."""

    def __init__(self, face: Any) -> None:
        self.face = face
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def as_sync(self) -> Any:
        return _Counted(self.face.as_sync(), self.calls)

    def as_async(self) -> Any:
        return _Counted(self.face.as_async(), self.calls)


class _Counted:
    def __init__(self, face: Any, calls: list[tuple[str, dict[str, Any]]]) -> None:
        self._face, self._calls = face, calls

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._face, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append((name, kwargs))
            return method(*args, **kwargs)

        return call


async def test_every_message_kind_round_trips_exactly(face: Any) -> None:
    history = StorebridgeChatMessageHistory(face, "every-kind")
    history.add_messages(EVERY_KIND)
    assert history.messages == EVERY_KIND
    assert [type(m) for m in history.messages] == [type(m) for m in EVERY_KIND]
    assert await history.aget_messages() == EVERY_KIND
    second = StorebridgeChatMessageHistory(face, "every-kind-async")
    await second.aadd_messages(EVERY_KIND)
    assert await second.aget_messages() == EVERY_KIND


async def test_stored_form_is_documented(face: Any) -> None:
    """Tool calls are OpenAI-style dicts; response_metadata is plain metadata; the rest is under "langchain"."""
    history = StorebridgeChatMessageHistory(face, "stored-form")
    history.add_messages(EVERY_KIND[2:5])
    named, multimodal, call = face.as_sync().get_messages("stored-form")
    assert (named.role, named.content, named.id, named.metadata) == ("user", "hi", "h1", {LANGCHAIN_KEY: {"name": "ann"}})
    assert multimodal.content == "what is this?"  # the text parts, so the store holds searchable text
    assert multimodal.metadata[LANGCHAIN_KEY]["content"] == EVERY_KIND[3].content
    assert call.role == "assistant" and call.id == "a1"
    assert call.tool_calls == [{"id": "call_1", "type": "function",
                                "function": {"name": "get_weather",
                                             "arguments": '{"city": "Zürich", "units": ["c"], "days": 2}'}}]
    assert call.metadata["model_name"] == "fake" and call.metadata["finish_reason"] == "tool_calls"
    assert call.metadata[LANGCHAIN_KEY] == {"usage_metadata": EVERY_KIND[4].usage_metadata,  # type: ignore[attr-defined]
                                            "additional_kwargs": {"refusal": None}}


async def test_messages_written_natively_read_as_langchain(face: Any) -> None:
    sync = face.as_sync()
    sync.add_messages("native", [
        ConversationMessage(role="user", content="q", id="u1", metadata={"channel": "web"}),
        ConversationMessage(role="assistant", content="", id="a1", tool_calls=[
            {"id": "c9", "type": "function", "function": {"name": "lookup", "arguments": '{"k": 1}'}}]),
        ConversationMessage(role="tool", content="v", id="t1", tool_call_id="c9"),
        ConversationMessage(role="developer", content="rules", id="d1"),
    ])
    user, call, tool, developer = StorebridgeChatMessageHistory(face, "native").messages
    assert user == HumanMessage("q", id="u1", response_metadata={"channel": "web"})
    assert call.tool_calls == [{"name": "lookup", "args": {"k": 1}, "id": "c9", "type": "tool_call"}]
    assert tool == ToolMessage("v", tool_call_id="c9", id="t1")
    assert developer == SystemMessage("rules", id="d1", additional_kwargs={"__openai_role__": "developer"})


async def test_limit_reads_only_the_newest_window(face: Any) -> None:
    counter = CallCounter(face)
    face.as_sync().add_messages("window", [ConversationMessage(role="user", content=f"m{i}") for i in range(10)])
    window = StorebridgeChatMessageHistory(counter, "window", limit=3)
    assert [m.content for m in window.messages] == ["m7", "m8", "m9"]
    assert [m.content for m in await window.aget_messages()] == ["m7", "m8", "m9"]
    assert counter.calls == [("get_messages", {"limit": 3}), ("get_messages", {"limit": 3})]
    with pytest.raises(ValidationError):
        StorebridgeChatMessageHistory(face, "window", limit=-1)


async def test_one_store_call_per_batch_and_clear_keeps_session(face: Any) -> None:
    counter = CallCounter(face)
    history = StorebridgeChatMessageHistory(counter, "batch")
    history.add_messages([HumanMessage("a"), AIMessage("b"), HumanMessage("c")])
    await history.aadd_messages([AIMessage("d"), HumanMessage("e")])
    history.add_messages([])
    assert [name for name, _ in counter.calls] == ["add_messages", "add_messages"]
    assert [m.content for m in history.messages] == ["a", "b", "c", "d", "e"]
    history.clear()
    assert history.messages == [] and face.as_sync().get_session("batch") is not None
    history.add_message(HumanMessage("again"))
    await history.aclear()
    assert await history.aget_messages() == []


async def test_sessions_are_separate_and_ids_validated(face: Any) -> None:
    StorebridgeChatMessageHistory(face, "one").add_messages([HumanMessage("for one")])
    assert StorebridgeChatMessageHistory(face, "two").messages == []
    with pytest.raises(ValidationError):
        StorebridgeChatMessageHistory(face, "")


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_runnable_with_message_history_and_tool_calls(face: Any, flavour: str) -> None:
    """A fake model asks for a tool, gets the result, answers; the history holds the whole exchange exactly
    and the model sees it on the next turn."""
    seen: list[list[BaseMessage]] = []
    model = GenericFakeChatModel(messages=iter([
        AIMessage("", tool_calls=[WEATHER_CALL], id="run-1"),
        AIMessage("It is 21 °C.", id="run-2"),
    ]))
    prompt = ChatPromptTemplate.from_messages([("system", "You answer about weather."),
                                               MessagesPlaceholder("history"), MessagesPlaceholder("input")])

    def record(value: Any) -> Any:
        seen.append(value.to_messages())
        return value

    chain = RunnableWithMessageHistory(prompt | RunnableLambda(record) | model,
                                       lambda session_id: StorebridgeChatMessageHistory(face, session_id),
                                       input_messages_key="input", history_messages_key="history")
    config: RunnableConfig = {"configurable": {"session_id": f"weather-{flavour}"}}
    question = HumanMessage("Weather in Zürich?", id="q1")
    tool_result = ToolMessage('{"temp": 21}', tool_call_id="call_1", id="t1")
    if flavour == "sync":
        first = chain.invoke({"input": [question]}, config)
        second = chain.invoke({"input": [tool_result]}, config)
    else:
        first = await chain.ainvoke({"input": [question]}, config)
        second = await chain.ainvoke({"input": [tool_result]}, config)
    assert first.tool_calls == [WEATHER_CALL]
    assert second.content == "It is 21 °C."
    assert seen[1][1:] == [question, first, tool_result]  # the model saw the stored turn, exactly
    stored = StorebridgeChatMessageHistory(face, f"weather-{flavour}").messages
    assert stored == [question, first, tool_result, second]
    assert face.as_sync().get_messages(f"weather-{flavour}")[2].tool_call_id == "call_1"
