"""JSON-files conversation store: file names, traversal, the file format, crash safety, corruption and
processes. The interface behaviour itself is in tests/conformance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from storebridge.adapters.jsonfiles import JSONConversationStore, _files
from storebridge.adapters.jsonfiles._files import read_last_lines, session_file_name, session_path
from storebridge.errors import (
    AlreadyExistsError,
    ConfigurationError,
    OperationFailedError,
    SchemaVersionError,
    StoreClosedError,
    ValidationError,
)
from storebridge.models import MAX_SESSION_ID_LENGTH, ConversationMessage, ConversationSession

HOSTILE = ["../../etc/passwd", "a/b\\c", "..", ".", "/abs", "C:\\Windows", "ünï 😀 中文", "x" * 500,
           "🚀" * MAX_SESSION_ID_LENGTH, "Case", "case", "CASE", "con", "nul.txt", ".hidden", "a%2Fb", "a/b",
           "name~0123456789abcdef", " spaced ", "tab\there", "new\nline"]


def message(content: str = "hi", **fields: Any) -> ConversationMessage:
    return ConversationMessage(role=fields.pop("role", "user"), content=content, **fields)


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "store" / "sessions"


@pytest.fixture
def store(directory: Path) -> JSONConversationStore:
    with JSONConversationStore(directory=directory) as s:
        yield s


def only_file(directory: Path) -> Path:
    [path] = [p for p in directory.iterdir() if p.suffix == ".jsonl"]
    return path


# -- file names -------------------------------------------------------------------------------------------


def test_file_names_are_safe_and_distinct() -> None:
    names = [session_file_name(sid) for sid in HOSTILE]
    for sid, name in zip(HOSTILE, names):
        assert "/" not in name and "\\" not in name and not name.startswith("."), (sid, name)
        assert name not in (".", "..") and name.endswith(".jsonl")
        assert len(name.encode()) <= 200, f"{sid[:20]!r}: {len(name.encode())} bytes"
        assert all(c.isascii() and (c.isalnum() or c in "%~_-.") for c in name), name
    assert len({n.lower() for n in names}) == len(names), "names must differ even on case-insensitive systems"


def test_long_ids_differing_only_at_the_end_get_different_files() -> None:
    a, b = "x" * 400 + "a", "x" * 400 + "b"
    assert session_file_name(a) != session_file_name(b)


def test_session_path_stays_in_the_directory(tmp_path: Path) -> None:
    base = str(tmp_path)
    for sid in HOSTILE:
        assert os.path.dirname(session_path(base, sid)) == base


def test_lone_surrogate_id_is_a_validation_error(store: JSONConversationStore) -> None:
    with pytest.raises(ValidationError):
        store.add_message("bad\ud800", message())
    with pytest.raises(ValidationError):
        store.get_session("bad\ud800")


def test_hostile_ids_write_only_inside_the_directory(directory: Path, store: JSONConversationStore) -> None:
    for sid in HOSTILE:
        store.add_message(sid, message(f"for {sid}"))
    root = directory.parent.parent
    found = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    assert found == sorted(["store", "store/sessions"] + [f"store/sessions/{session_file_name(s)}" for s in HOSTILE])
    assert {s.session_id for s in store.list_sessions(limit=None)} == set(HOSTILE)
    for sid in HOSTILE:
        assert [m.content for m in store.get_messages(sid)] == [f"for {sid}"]


# -- the format -------------------------------------------------------------------------------------------


def test_file_is_readable_json_lines(directory: Path, store: JSONConversationStore) -> None:
    store.upsert_session(ConversationSession(session_id="s", user_id="u", state={"ü": 1}))
    store.add_messages("s", [message("héllo 🚀", metadata={"k": [1, None]}),
                             message("", role="assistant", tool_calls=[{"id": "c1"}])])
    lines = only_file(directory).read_text("utf-8").splitlines()
    header, *messages = (json.loads(line) for line in lines)
    assert header["format"] == 1 and header["session_id"] == "s" and header["state"] == {"ü": 1}
    assert [m["sequence"] for m in messages] == [1, 2]
    assert "héllo 🚀" in lines[1], "unicode is written as is, not escaped"
    assert all(line.startswith('{"id":') for line in lines[1:])


def test_resume_reads_what_another_store_object_wrote(directory: Path) -> None:
    with JSONConversationStore(f"json:///{directory}") as first:  # json:////abs/path: an absolute path
        first.add_messages("s", [message("a"), message("b")])
    with JSONConversationStore(directory=directory) as second:
        assert [m.content for m in second.get_messages("s")] == ["a", "b"]
        assert second.add_message("s", message("c")).sequence == 3


def test_url_and_default_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with JSONConversationStore() as default:
        assert default.directory == str(tmp_path / ".storebridge" / "sessions")
    with JSONConversationStore("json:///relative/dir") as relative:
        assert relative.directory == str(tmp_path / "relative" / "dir")
    with pytest.raises(ConfigurationError):
        JSONConversationStore("sqlite:///x.db")
    with pytest.raises(ConfigurationError):
        JSONConversationStore("json:///a", directory=tmp_path)


def test_sequence_and_updated_at_survive_deletes(store: JSONConversationStore) -> None:
    written = store.add_messages("s", [message(str(i)) for i in range(3)])
    touched = store.get_session("s")
    assert store.delete_messages("s", [written[-1].id]) == 1
    after = store.get_session("s")
    assert touched is not None and after is not None and after.updated_at == touched.updated_at
    assert store.add_message("s", message("next")).sequence == 4
    assert store.delete_messages("s") == 3
    assert store.add_message("s", message("after clear")).sequence == 5


def test_ids_inside_metadata_and_tool_calls_are_not_message_ids(store: JSONConversationStore) -> None:
    calls = [{"id": "call_1", "type": "function"}]
    store.add_message("s", message("", role="assistant", tool_calls=calls, metadata={"id": "meta"}))
    store.add_messages("s", [message("x", id="call_1"), message("y", id="meta")])  # one-by-one search
    store.add_messages("s", [message(str(i), id=f"id{i}") for i in range(6)])  # regex search
    with pytest.raises(AlreadyExistsError):
        store.add_messages("s", [message(str(i), id=f"new{i}") for i in range(5)] + [message("d", id="id3")])
    assert store.delete_messages("s", ["call_1"]) == 1
    assert store.get_messages("s")[0].tool_calls == calls
    assert store.count_messages("s") == 8


def test_message_ids_are_unique_per_session(store: JSONConversationStore) -> None:
    """Unlike SQLite's per-store primary key: finding an id in every file would be O(sessions)."""
    store.add_message("a", message(id="m1"))
    store.add_message("b", message(id="m1"))
    with pytest.raises(AlreadyExistsError):
        store.add_message("a", message(id="m1"))


def test_newest_n_reads_backwards_across_blocks(tmp_path: Path) -> None:
    path = tmp_path / "f"
    lines = [b"header"] + [(b"line %d " % i) * (i % 7 + 1) for i in range(200)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        for block in (1, 7, 64, 100_000):
            for count in (1, 2, 50, 200, 201, 202, 500):
                got, reached = read_last_lines(fd, size, count, block=block)
                assert got == lines[-count:], (block, count)
                assert reached == (count > 200), "only a read of every message line reaches the header"
    finally:
        os.close(fd)


def test_newest_n_matches_a_full_read(store: JSONConversationStore) -> None:
    big = "z" * 70_000  # lines longer than the first read-back block
    written = store.add_messages("s", [message(big if i % 3 == 0 else str(i)) for i in range(12)])
    for limit in range(15):
        assert [m.id for m in store.get_messages("s", limit=limit)] == [m.id for m in written][12 - min(limit, 12):]


# -- crash safety and corruption --------------------------------------------------------------------------


def test_failed_rewrite_leaves_the_old_file(directory: Path, store: JSONConversationStore,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    store.upsert_session(ConversationSession(session_id="s", name="old"))
    store.add_message("s", message("kept"))
    path = only_file(directory)
    before = path.read_bytes()

    def crash(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_files.os, "replace", crash)
    with pytest.raises(OperationFailedError, match="No space"):
        store.update_session(ConversationSession(session_id="s", name="new"))
    with pytest.raises(OperationFailedError):
        store.delete_messages("s")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in directory.iterdir()) == [path.name], "temp files must be cleaned up"
    session = store.get_session("s")
    assert session is not None and session.name == "old"


def test_leftover_temp_file_from_a_crash_is_ignored(directory: Path, store: JSONConversationStore) -> None:
    store.add_message("s", message("real"))
    path = only_file(directory)
    (directory / f".{path.name}.deadbeef.tmp").write_bytes(b'{"half":')
    assert [s.session_id for s in store.list_sessions()] == ["s"]
    assert [m.content for m in store.get_messages("s")] == ["real"]


def test_failed_append_is_cut_back(directory: Path, store: JSONConversationStore,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    store.add_message("s", message("first"))
    path = only_file(directory)
    before = path.read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(_files.os, "fsync", broken_fsync)
    with pytest.raises(OperationFailedError, match="Input/output"):
        store.add_messages("s", [message("lost 1"), message("lost 2")])
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert store.add_message("s", message("second")).sequence == 2


def test_torn_last_line_is_an_error_not_skipped(directory: Path, store: JSONConversationStore) -> None:
    store.add_message("s", message("complete"))
    path = only_file(directory)
    with path.open("ab") as f:
        f.write(b'{"id":"torn","sequence":2,"role":"us')
    for call in (lambda: store.get_messages("s"), lambda: store.get_messages("s", limit=5),
                 lambda: store.get_session("s"), lambda: store.add_message("s", message("glued?")),
                 lambda: store.count_messages("s"), lambda: store.list_sessions()):
        with pytest.raises(OperationFailedError, match="incomplete last line") as info:
            call()
        assert str(path) in str(info.value)
    assert path.read_bytes().endswith(b'"role":"us'), "nothing may be appended after a torn line"


def test_corrupt_line_names_the_file_and_line(directory: Path, store: JSONConversationStore) -> None:
    store.add_messages("s", [message("a"), message("b"), message("c")])
    path = only_file(directory)
    lines = path.read_bytes().split(b"\n")
    lines[2] = b"{not json"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(OperationFailedError, match=r"line 3") as info:
        store.get_messages("s")
    assert str(path) in str(info.value)
    with pytest.raises(OperationFailedError, match="line 3"):
        store.delete_messages("s", ["x"])


def test_invalid_record_is_corruption(directory: Path, store: JSONConversationStore) -> None:
    store.add_message("s", message("a"))
    path = only_file(directory)
    path.write_bytes(path.read_bytes().replace(b'"role":"user"', b'"role":"wizard"'))
    with pytest.raises(OperationFailedError, match="line 2"):
        store.get_messages("s")


def test_newer_file_format_is_refused(directory: Path, store: JSONConversationStore) -> None:
    store.add_message("s", message())
    path = only_file(directory)
    path.write_bytes(path.read_bytes().replace(b'{"format":1,', b'{"format":2,', 1))
    with pytest.raises(SchemaVersionError, match="format 2"):
        store.get_session("s")


def test_file_renamed_by_hand_is_detected(directory: Path, store: JSONConversationStore) -> None:
    store.add_message("s", message())
    only_file(directory).rename(directory / session_file_name("other"))
    with pytest.raises(OperationFailedError, match="holds session 's'"):
        store.get_messages("other")
    with pytest.raises(OperationFailedError, match="belongs in another file"):
        store.list_sessions()


def test_foreign_json_file_in_the_directory_is_reported(directory: Path, store: JSONConversationStore) -> None:
    (directory / "notes.jsonl").write_text('{"hello": 1}\n')
    with pytest.raises(OperationFailedError, match="notes.jsonl"):
        store.list_sessions()


def test_use_after_close(store: JSONConversationStore) -> None:
    store.close()
    with pytest.raises(StoreClosedError):
        store.add_message("s", message())
    store.close()


# -- processes --------------------------------------------------------------------------------------------

_WRITER = textwrap.dedent("""
    import sys
    from storebridge.adapters.jsonfiles import JSONConversationStore
    from storebridge.models import ConversationMessage, ConversationSession
    store = JSONConversationStore(directory=sys.argv[1])
    for n in range(int(sys.argv[3])):
        store.add_message("shared", ConversationMessage(role="user", content=f"{sys.argv[2]}:{n}"))
        if n % 5 == 0:  # rewrites race with appends too
            store.upsert_session(ConversationSession(session_id="shared", name=f"{sys.argv[2]}:{n}"))
    store.close()
""")


@pytest.mark.skipif(not _files.HAS_FLOCK, reason="needs fcntl.flock")
def test_several_processes_append_and_rewrite(directory: Path) -> None:
    writers, per_writer = 4, 25
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(directory), str(w), str(per_writer)])
             for w in range(writers)]
    assert [p.wait(timeout=120) for p in procs] == [0] * writers
    with JSONConversationStore(directory=directory) as store:
        got = store.get_messages("shared")
        assert store.count_messages("shared") == writers * per_writer
    assert [m.sequence for m in got] == list(range(1, writers * per_writer + 1))
    for w in range(writers):
        assert [m.content for m in got if m.content.startswith(f"{w}:")] == [f"{w}:{n}" for n in range(per_writer)]
    assert [p.name for p in directory.iterdir()] == [session_file_name("shared")], "no temp file may be left"
