"""``storebridge demo`` and the function behind it: the README demo on the embedded defaults, resumable."""

from __future__ import annotations

from pathlib import Path

from storebridge.cli.demo import run

from .conftest import Invoke


def test_demo_function_resumes_on_a_second_run(workdir: Path) -> None:
    lines: list[str] = []
    first = run(lines.append)
    second = run(lines.append)
    assert first.hits == second.hits == ["qdrant", "chroma"]  # the vector databases, year >= 2010
    assert (first.messages_before, first.messages_after) == (0, 2)
    assert (second.messages_before, second.messages_after) == (2, 4)
    assert (first.runs, second.runs) == (1, 2)
    assert (workdir / "embedded.db").exists()
    assert any("demo has run 2 time(s)" in line for line in lines)


def test_demo_command(invoke: Invoke) -> None:
    result = invoke("demo")
    assert result.exit_code == 0, result.output
    assert "search: 'which database is good for vector similarity search?'" in result.stdout
    assert "#2 assistant Try qdrant." in result.stdout
