"""``storebridge sessions list|show|export|import|delete`` on the embedded SQLite store and the
JSON-files store: a lossless round trip (tool calls, metadata, times, ids), idempotent import, and the
error paths (missing session, bad files)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

import storebridge
from storebridge import ConversationMessage, ConversationSession

from .conftest import Invoke, assert_error_line

CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


def _messages() -> list[ConversationMessage]:
    return [
        ConversationMessage(id="m1", role="system", content="be brief", created_at=1_700_000_000.125),
        ConversationMessage(id="m2", role="user", content="weather in Paris? [bold]not markup[/bold] \u00e9\U0001f600",
                            metadata={"client": {"ip": None, "tags": ["a", 1, 2.5, True]}},
                            created_at=1_700_000_001.1234567),
        ConversationMessage(id="m3", role="assistant", content="", tool_calls=[CALL], created_at=1_700_000_002.0),
        ConversationMessage(id="m4", role="tool", content='{"temp": 21}', tool_call_id="call_1",
                            created_at=1_700_000_003.5),
        ConversationMessage(id="m5", role="assistant", content="21 degrees", created_at=1_700_000_004.75),
    ]


@pytest.fixture
def seeded(workdir: Path) -> None:
    """Three sessions in the embedded store: two of user ann (agent a / b), one of bob."""
    with storebridge.db() as db:
        chat = db.conversation
        chat.create_session(ConversationSession(session_id="s-ann-1", user_id="ann", agent_id="a", name="weather",
                                                state={"step": 2}, metadata={"x": [1, {"y": None}]},
                                                created_at=1_699_999_999.5, updated_at=1_700_000_000.0))
        chat.add_messages("s-ann-1", _messages())
        chat.add_message("s-ann-2", ConversationMessage(role="user", content="second"))
        chat.update_session(ConversationSession(session_id="s-ann-2", user_id="ann", agent_id="b"))
        chat.add_message("s-bob", ConversationMessage(role="user", content="bob here"))
        chat.update_session(ConversationSession(session_id="s-bob", user_id="bob"))


def test_list_filters_and_counts(invoke: Invoke, seeded: None) -> None:
    rows = json.loads(invoke("sessions", "list", "--json").stdout)
    assert {r["session_id"]: r["messages"] for r in rows} == {"s-ann-1": 5, "s-ann-2": 1, "s-bob": 1}
    ann = json.loads(invoke("sessions", "list", "--user", "ann", "--json").stdout)
    assert sorted(r["session_id"] for r in ann) == ["s-ann-1", "s-ann-2"]
    agent_b = json.loads(invoke("sessions", "list", "--user", "ann", "--agent", "b", "--json").stdout)
    assert [r["session_id"] for r in agent_b] == ["s-ann-2"]
    assert len(json.loads(invoke("sessions", "list", "--limit", "1", "--json").stdout)) == 1
    table = invoke("sessions", "list", "--agent", "a")
    assert table.exit_code == 0 and "s-ann-1" in table.stdout and "s-bob" not in table.stdout
    assert "weather" in table.stdout


def test_show_transcript(invoke: Invoke, seeded: None) -> None:
    result = invoke("sessions", "show", "s-ann-1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "session s-ann-1 (user ann, agent a, name weather)" in out
    lines = out.splitlines()
    assert any(line.startswith("#2 ") and "user: weather in Paris? [bold]not markup[/bold]" in line for line in lines)
    assert 'tool call get_weather({"city": "Paris"})  [id call_1]' in out
    assert "tool (result of call_1): {\"temp\": 21}" in out
    local = datetime.fromtimestamp(1_700_000_001.1234567).astimezone().isoformat(timespec="seconds")
    assert f"#2 {local} user:" in out  # each message's time, in the local time zone
    assert out.index("be brief") < out.index("weather in Paris") < out.index("21 degrees")
    newest = invoke("sessions", "show", "s-ann-1", "--limit", "1").stdout
    assert "21 degrees" in newest and "be brief" not in newest


def test_show_json_is_every_field(invoke: Invoke, seeded: None) -> None:
    data = json.loads(invoke("sessions", "show", "s-ann-1", "--json").stdout)
    assert data["session"]["state"] == {"step": 2} and data["session"]["created_at"] == 1_699_999_999.5
    got = data["messages"]
    assert [m["id"] for m in got] == ["m1", "m2", "m3", "m4", "m5"]
    assert [m["sequence"] for m in got] == [1, 2, 3, 4, 5]
    assert got[2]["tool_calls"] == [CALL] and got[3]["tool_call_id"] == "call_1"
    assert got[1]["metadata"] == {"client": {"ip": None, "tags": ["a", 1, 2.5, True]}}
    assert got[1]["created_at"] == 1_700_000_001.1234567


def test_missing_session_errors(invoke: Invoke, seeded: None) -> None:
    assert_error_line(invoke("sessions", "show", "nope"), "no session 'nope'")
    assert_error_line(invoke("sessions", "delete", "nope", "--yes"), "no session 'nope'")
    result = invoke("sessions", "export", "s-bob", "nope", "-o", "out.jsonl")
    assert_error_line(result, "no session 'nope'")
    assert not Path("out.jsonl").exists()


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_export_import_round_trip_is_lossless(invoke: Invoke, seeded: None, workdir: Path) -> None:
    result = invoke("sessions", "export", "-o", "all.jsonl")
    assert result.exit_code == 0, result.output
    records = _records(workdir / "all.jsonl")
    assert records[0] == {"format": "storebridge.conversations", "version": 1}
    assert sum(1 for r in records if r.get("type") == "session") == 3
    assert sum(1 for r in records if r.get("type") == "message") == 7

    dest = f"json:///{workdir}/chats"
    imported = invoke("sessions", "import", "all.jsonl", "--url", dest)
    assert imported.exit_code == 0, imported.output
    assert "3 created, 7 message(s) added, 0 already there" in imported.stdout

    with storebridge.db() as db:
        source = db.conversation
        target = storebridge.connect(dest, kind="conversation")
        try:
            for session in source.list_sessions():
                copied = target.get_session(session.session_id)
                assert copied is not None
                # updated_at becomes the import time: appending touches it (documented)
                assert copied.replace(updated_at=0) == session.replace(updated_at=0)
                assert target.get_messages(session.session_id) == source.get_messages(session.session_id)
        finally:
            target.close()

    again = invoke("sessions", "import", "all.jsonl", "--url", dest)
    assert "0 created, 0 message(s) added, 7 already there" in again.stdout
    # A second export from the copy is the same file, updated_at aside.
    invoke("sessions", "export", "--url", dest, "-o", "copy.jsonl")
    strip = [{k: v for k, v in r.items() if k != "updated_at"} for r in _records(workdir / "copy.jsonl")]
    assert strip == [{k: v for k, v in r.items() if k != "updated_at"} for r in records]


def test_export_named_sessions_to_stdout_and_import_from_stdin(invoke: Invoke, seeded: None, workdir: Path) -> None:
    result = invoke("sessions", "export", "s-ann-1", "s-bob")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["session_id"] for r in lines if r.get("type") == "session"] == ["s-ann-1", "s-bob"]
    dest = f"sqlite:///{workdir}/other.db"
    imported = invoke("sessions", "import", "-", "--url", dest, input=result.stdout)
    assert imported.exit_code == 0 and "2 created, 6 message(s) added" in imported.stdout


def test_import_refuses_bad_files_before_writing(invoke: Invoke, workdir: Path) -> None:
    dest = f"json:///{workdir}/chats"
    (workdir / "plain.jsonl").write_text('{"hello": 1}\n', encoding="utf-8")
    assert_error_line(invoke("sessions", "import", "plain.jsonl", "--url", dest),
                      "not a storebridge conversation export")
    header = json.dumps({"format": "storebridge.conversations", "version": 1})
    good = json.dumps({"type": "message", "session_id": "s", "id": "a", "role": "user", "content": "ok",
                       "created_at": 1.0})
    bad_role = json.dumps({"type": "message", "session_id": "s", "id": "b", "role": "wizard", "content": "x",
                           "created_at": 2.0})
    (workdir / "bad.jsonl").write_text(f"{header}\n{good}\n{bad_role}\n", encoding="utf-8")
    assert_error_line(invoke("sessions", "import", "bad.jsonl", "--url", dest), "bad.jsonl line 3", "role")
    (workdir / "broken.jsonl").write_text(header + "\n{not json\n", encoding="utf-8")
    assert_error_line(invoke("sessions", "import", "broken.jsonl", "--url", dest), "line 2 is not JSON")
    (workdir / "nofield.jsonl").write_text(header + '\n{"type": "message", "session_id": "s"}\n', encoding="utf-8")
    assert_error_line(invoke("sessions", "import", "nofield.jsonl", "--url", dest), "line 2: missing field")
    assert_error_line(invoke("sessions", "import", "missing.jsonl", "--url", dest), "cannot read missing.jsonl")
    store = storebridge.connect(dest, kind="conversation")
    try:
        assert store.list_sessions() == []  # nothing was written by any of them
    finally:
        store.close()


def test_delete(invoke: Invoke, seeded: None) -> None:
    declined = invoke("sessions", "delete", "s-bob", input="n\n")
    assert declined.exit_code == 1 and "Aborted" in declined.output
    with storebridge.db() as db:
        assert db.conversation.get_session("s-bob") is not None
    confirmed = invoke("sessions", "delete", "s-bob", input="y\n")
    assert confirmed.exit_code == 0 and "deleted session 's-bob' (1 message(s))" in confirmed.stdout
    assert invoke("sessions", "delete", "s-ann-2", "--yes").exit_code == 0
    with storebridge.db() as db:
        assert [s.session_id for s in db.conversation.list_sessions()] == ["s-ann-1"]
