"""``storebridge resume``: the transcript so far, then stdin lines appended as user messages, with an
optional responder hook (module:function) whose replies are appended too."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import storebridge
from storebridge import ConversationMessage

from .conftest import Invoke, assert_error_line

RESPONDERS = '''
from storebridge import ConversationMessage

seen = []

def echo(messages):
    seen.append([m.content for m in messages])
    return f"echo: {messages[-1].content} ({len(messages)} so far)"

def with_tool_call(messages):
    return ConversationMessage(role="assistant", content="calling",
                               tool_calls=[{"id": "c1", "name": "lookup", "args": {"q": messages[-1].content}}])

async def async_reply(messages):
    return "async " + messages[-1].content

def silent(messages):
    return None

def broken(messages):
    raise RuntimeError("model unavailable")

def wrong_type(messages):
    return 42
'''


@pytest.fixture
def responders(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"cli_test_responders_{abs(hash(str(workdir)))}"
    (workdir / f"{name}.py").write_text(RESPONDERS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(workdir))
    yield name
    sys.modules.pop(name, None)


@pytest.fixture
def history(workdir: Path) -> None:
    with storebridge.db() as db:
        db.conversation.add_messages("chat", [ConversationMessage(role="user", content="earlier question"),
                                              ConversationMessage(role="assistant", content="earlier answer")])


def _contents(session_id: str = "chat") -> list[tuple[str, str]]:
    with storebridge.db() as db:
        return [(m.role, m.content) for m in db.conversation.get_messages(session_id)]


def test_resume_prints_history_and_appends_lines(invoke: Invoke, history: None) -> None:
    result = invoke("resume", "chat", input="first new\n\nsecond new\n/exit\nnot appended\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.index("earlier question") < result.stdout.index("earlier answer")
    assert "user: second new" in result.stdout
    assert "2 message(s) appended" in result.stderr
    assert _contents() == [("user", "earlier question"), ("assistant", "earlier answer"),
                           ("user", "first new"), ("user", "second new")]


def test_resume_until_eof(invoke: Invoke, history: None) -> None:
    assert invoke("resume", "chat", input="only line").exit_code == 0
    assert _contents()[-1] == ("user", "only line")


def test_responder_replies_are_appended(invoke: Invoke, history: None, responders: str) -> None:
    result = invoke("resume", "chat", "--responder", f"{responders}:echo", input="hello\nagain\n")
    assert result.exit_code == 0, result.output
    assert _contents()[2:] == [("user", "hello"), ("assistant", "echo: hello (3 so far)"),
                               ("user", "again"), ("assistant", "echo: again (5 so far)")]
    seen = sys.modules[responders].seen  # type: ignore[attr-defined]
    assert seen[0] == ["earlier question", "earlier answer", "hello"]
    assert "assistant: echo: again (5 so far)" in result.stdout


def test_responder_variants(invoke: Invoke, history: None, responders: str) -> None:
    assert invoke("resume", "chat", "--responder", f"{responders}:with_tool_call", input="x\n").exit_code == 0
    with storebridge.db() as db:
        last = db.conversation.get_messages("chat")[-1]
    assert last.tool_calls == [{"id": "c1", "name": "lookup", "args": {"q": "x"}}]
    assert invoke("resume", "chat", "--responder", f"{responders}:async_reply", input="y\n").exit_code == 0
    assert _contents()[-1] == ("assistant", "async y")
    assert invoke("resume", "chat", "--responder", f"{responders}:silent", input="z\n").exit_code == 0
    assert _contents()[-1] == ("user", "z")


def test_responder_errors(invoke: Invoke, history: None, responders: str) -> None:
    result = invoke("resume", "chat", "--responder", f"{responders}:broken", input="hi\n")
    assert_error_line(result, "the responder failed", "model unavailable")
    assert _contents()[-1] == ("user", "hi")  # the user's line is kept
    assert_error_line(invoke("resume", "chat", "--responder", f"{responders}:wrong_type", input="hi\n"),
                      "returned a value of type int")
    assert_error_line(invoke("resume", "chat", "--responder", "no_colon"), "module:function")
    assert_error_line(invoke("resume", "chat", "--responder", "cli_test_no_such_module:f"), "cannot import")
    assert_error_line(invoke("resume", "chat", "--responder", f"{responders}:nothing"), "has no 'nothing'")


def test_missing_session_needs_new(invoke: Invoke) -> None:
    assert_error_line(invoke("resume", "fresh", input="hi\n"), "no session 'fresh'", "--new")
    result = invoke("resume", "fresh", "--new", "--user", "ann", input="hi\n")
    assert result.exit_code == 0
    with storebridge.db() as db:
        session = db.conversation.get_session("fresh")
        assert session is not None and session.user_id == "ann"
    assert _contents("fresh") == [("user", "hi")]
