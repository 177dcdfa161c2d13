"""``examples/langchain_rag.py`` runs offline, resumes its conversation, and switches engine by URL."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("langchain_core")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langchain_rag.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("langchain_rag_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_runs_on_the_default_and_on_a_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STOREBRIDGE_DB", str(tmp_path / "default.db"))
    for variable in ("STOREBRIDGE_CONVERSATION_URL", "STOREBRIDGE_KNOWLEDGE_URL", "STOREBRIDGE_STATE_URL"):
        monkeypatch.delenv(variable, raising=False)
    example = load_example()
    assert example.main() == ["SQLite: it is an embedded engine in a single file.",
                              "Redis, the in-memory key-value store."]
    first = capsys.readouterr().out
    assert "[sqlite] SQLite is an embedded" in first and "[redis] Redis" in first
    assert "holds 4 messages" in first
    example.main()
    assert "holds 8 messages" in capsys.readouterr().out  # resumed: same session id, same file
    assert (tmp_path / "default.db").exists()

    other = tmp_path / "other.db"
    example.main(f"sqlite:///{other}")
    assert "holds 4 messages" in capsys.readouterr().out  # a different engine/database: a fresh history
    assert other.exists()
