"""``storebridge doctor``: real round trips on the embedded stores, a failing server URL whose password
never shows, and a store that loses data on the way (the comparison must catch it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import storebridge
from storebridge.adapters.sqlite.conversation import SQLiteConversationStore
from tests.servers.postgres import PostgresServer, postgres_server  # noqa: F401

from .conftest import Invoke

SECRET = "doctor-Pa55-w0rd"


def _report(result: Any) -> dict[str, Any]:
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_embedded_defaults_pass_and_leave_nothing_behind(invoke: Invoke, workdir: Path) -> None:
    result = invoke("doctor", "--json")
    assert result.exit_code == 0, result.output
    report = _report(result)
    assert report["ok"] is True
    assert [c["kind"] for c in report["checks"]] == ["conversation", "knowledge", "state"]
    for check in report["checks"]:
        assert str(workdir / "embedded.db") in check["target"]
        steps = [s["step"] for s in check["steps"]]
        assert steps[0] == "connect" and "write" in steps and "delete" in steps and steps[-1] == "close"
        assert all(s["ok"] and s["ms"] >= 0 for s in check["steps"])
    with storebridge.db() as db:  # the scratch session, collection and keys were removed
        assert db.conversation.list_sessions() == []
        assert db.knowledge.list_collections() == []
        assert db.state.keys() == []


def test_table_output_and_environment_urls(invoke: Invoke, monkeypatch: pytest.MonkeyPatch,
                                           workdir: Path) -> None:
    monkeypatch.setenv("STOREBRIDGE_STATE_URL", "memory://")
    monkeypatch.setenv("STOREBRIDGE_CONVERSATION_URL", f"json:///{workdir}/chats")
    result = invoke("doctor")
    assert result.exit_code == 0, result.output
    assert "memory://" in result.stdout and "json:///" in result.stdout
    assert " knowledge " not in result.stdout  # only the kinds configured are checked
    assert "all 2 store(s) passed" in result.stdout


def test_failing_server_exits_non_zero_without_the_password(invoke: Invoke,
                                                              postgres_server: PostgresServer) -> None:  # noqa: F811
    bad = postgres_server.url.replace("postgres@", f"no_such_role_cli:{SECRET}@")
    result = invoke("doctor", "--conversation-url", bad, "--state-url", "memory://", "--json")
    assert result.exit_code == 1
    assert SECRET not in result.output
    report = _report(result)
    assert report["ok"] is False
    conversation, state = report["checks"]
    assert conversation["ok"] is False and state["ok"] is True
    connect = conversation["steps"][0]
    assert connect["step"] == "connect" and not connect["ok"]
    assert "no_such_role_cli" in connect["detail"] and "***" in conversation["target"]
    table = invoke("doctor", "--conversation-url", bad)
    assert table.exit_code == 1 and SECRET not in table.output
    assert "FAILED" in table.stdout and "1 of 1 store(s) failed" in table.stdout


def test_unreachable_port_with_password_in_url(invoke: Invoke) -> None:
    result = invoke("doctor", "--conversation-url", f"postgresql://u:{SECRET}@127.0.0.1:1/db")
    assert result.exit_code == 1
    assert SECRET not in result.output
    assert "127.0.0.1" in result.stdout


class _LossyStore(SQLiteConversationStore):
    """A broken store for the test: it drops tool calls on the way back."""

    def get_messages(self, session_id: str, **kwargs: Any) -> Any:
        return [m.replace(tool_calls=None) for m in super().get_messages(session_id, **kwargs)]


@pytest.fixture
def lossy_backend(workdir: Path) -> Iterator[str]:
    storebridge.CONVERSATION_STORES.register(
        "cli_test_lossy", lambda url: _LossyStore(path=workdir / "lossy.db"), schemes=["clitestlossy"])
    try:
        yield "clitestlossy:///x"
    finally:
        storebridge.CONVERSATION_STORES.unregister("cli_test_lossy")


def test_a_store_that_loses_data_fails_the_read_back(invoke: Invoke, lossy_backend: str) -> None:
    result = invoke("doctor", "--conversation-url", lossy_backend, "--json")
    assert result.exit_code == 1
    steps = {s["step"]: s for s in _report(result)["checks"][0]["steps"]}
    assert steps["write"]["ok"]
    assert not steps["read back"]["ok"] and "tool_calls" in steps["read back"]["detail"]
    assert steps["delete"]["ok"]  # the cleanup still ran
