"""Conversation store in plain JSON-lines files: one file per session, readable with any text tool.

File format (UTF-8, one JSON object per line)::

    {"format":1,"session_id":...,"user_id":...,"agent_id":...,"name":...,"state":{...},"metadata":{...},
     "created_at":...,"updated_at":...,"last_sequence":N}          <- line 1: the session record
    {"id":...,"sequence":N+1,"role":...,"content":...,"tool_calls":...,"tool_call_id":...,
     "metadata":{...},"created_at":...,"appended_at":...}           <- one line per message, in order

Appends only add lines (then flush + fsync), so the header is not touched on every message: the
session's ``updated_at`` is the later of the header's and the last line's ``appended_at``, and the next
sequence follows the last line's (or the header's ``last_sequence`` when no message is left). Updates
and deletions rewrite the whole file into a temp file and ``os.replace`` it, so a crash leaves either
the old or the new file. Every line is written by :func:`dump_json`, so a message line always starts
with ``{"id":<id>,`` — which is what lets an append check for duplicate ids without parsing the file.

Message ids are unique per session, as the interface specifies.
``list_sessions`` opens every file (first and last line): O(number of sessions), fine for the
hundreds-to-thousands of sessions this store is meant for; use SQLite beyond that.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from storebridge.adapters.sqlite.conversation import check_message_ids, check_time_bound, dump_json
from storebridge.conversation import ConversationCapabilities, ConversationStore, bind_messages, check_limits
from storebridge.errors import (
    AlreadyExistsError,
    ConfigurationError,
    ConnectionFailedError,
    OperationFailedError,
    SchemaVersionError,
    SessionNotFoundError,
    StorebridgeError,
    StoreClosedError,
    ValidationError,
)
from storebridge.models import ConversationMessage, ConversationSession, now, validate_session_id
from storebridge.urls import parse_url

from . import _files
from ._files import (
    HAS_FLOCK,
    locked,
    read_all,
    read_first_line,
    read_last_line,
    read_last_lines,
    session_path,
    thread_lock,
)

FORMAT = 1
DEFAULT_DIRECTORY = os.path.join(".storebridge", "sessions")
#: The id of a message line. Anchored at a line start: ``{"id":`` also occurs inside metadata and
#: tool calls (``[{"id":"call_1",...}]``), never at a line start.
_ID_PREFIX = re.compile(rb'(?m)^\{"id":("(?:[^"\\]|\\.)*"),')
#: Batches up to this size look for duplicate ids with one substring search each; larger ones collect
#: every id of the file in one regex pass.
_SEARCH_IDS_ONE_BY_ONE = 4

F = TypeVar("F", bound=Callable[..., Any])


def _io(action: str) -> Callable[[F], F]:
    """Check the store is open, and turn an ``OSError`` into ``OperationFailedError`` (cause kept)."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def wrapper(self: JSONConversationStore, *args: Any, **kwargs: Any) -> Any:
            if self._closed:
                raise StoreClosedError(f"the JSON store on {self.directory!r} is closed")
            try:
                return method(self, *args, **kwargs)
            except StorebridgeError:
                raise
            except OSError as exc:
                raise OperationFailedError(f"JSON store {action} in {self.directory!r} failed: {exc}") from exc

        return wrapper  # type: ignore[return-value]

    return decorate


def _encode(record: dict[str, Any], what: str) -> bytes:
    try:
        return dump_json(record, what).encode("utf-8") + b"\n"
    except UnicodeEncodeError as exc:
        raise ValidationError(f"{what} must be valid Unicode (no lone surrogates): {exc}") from None


def _header_line(session: ConversationSession, *, created_at: float, updated_at: float,
                 last_sequence: int) -> bytes:
    return _encode({
        "format": FORMAT, "session_id": session.session_id, "user_id": session.user_id,
        "agent_id": session.agent_id, "name": session.name, "state": session.state,
        "metadata": session.metadata, "created_at": created_at, "updated_at": updated_at,
        "last_sequence": last_sequence,
    }, "session")


def _message_body(message: ConversationMessage, appended_at: float) -> bytes:
    """Everything of a message line after ``{"id":...,"sequence":N,`` (the sequence is only known under
    the file lock; the JSON is encoded before, so bad data fails before any lock is taken)."""
    line = _encode({
        "role": message.role, "content": message.content, "tool_calls": message.tool_calls,
        "tool_call_id": message.tool_call_id, "metadata": message.metadata, "created_at": message.created_at,
        "appended_at": appended_at,
    }, f"message {message.id!r}")
    return line[1:]


def _id_json(message_id: str) -> bytes:
    try:
        return dump_json(message_id, "message id").encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(f"message ids must be valid Unicode (no lone surrogates): {exc}") from None


def _message_line(id_json: bytes, sequence: int, body: bytes) -> bytes:
    return b'{"id":' + id_json + b',"sequence":' + str(sequence).encode() + b"," + body


@dataclass(frozen=True)
class _Header:
    record: dict[str, Any]
    session_id: str
    created_at: float
    updated_at: float
    last_sequence: int


class _Corrupt(Exception):
    """Internal: a line that is not what this store writes (re-raised with the file and line number)."""


def _corrupt(path: str, line_number: int | str, detail: Any) -> OperationFailedError:
    return OperationFailedError(f"corrupt session file {path}, line {line_number}: {detail}")


def _parse_header(line: bytes, path: str, session_id: str | None) -> _Header:
    try:
        record = json.loads(line)
        if not isinstance(record, dict) or "session_id" not in record or "format" not in record:
            raise _Corrupt("the first line is not a session record")
        if not isinstance(record["format"], int) or record["format"] > FORMAT:
            raise SchemaVersionError(
                f"session file {path} has format {record['format']!r}, newer than this storebridge knows "
                f"({FORMAT}); upgrade storebridge"
            )
        header = _Header(record, validate_session_id(record["session_id"]), float(record["created_at"]),
                         float(record["updated_at"]), int(record["last_sequence"]))
    except StorebridgeError:
        raise
    except (ValueError, TypeError, KeyError, _Corrupt) as exc:
        raise _corrupt(path, 1, exc) from exc
    if session_id is not None and header.session_id != session_id:
        raise OperationFailedError(
            f"session file {path} holds session {header.session_id!r}, not {session_id!r} (a file renamed "
            f"by hand?)"
        )
    return header


def _parse_message(line: bytes, path: str, line_number: int | str, session_id: str) -> tuple[ConversationMessage, float]:
    """A message and its ``appended_at``."""
    try:
        record = json.loads(line)
        if not isinstance(record, dict):
            raise _Corrupt("not a JSON object")
        message = ConversationMessage(
            id=record["id"], session_id=session_id, role=record["role"], content=record["content"],
            tool_calls=record["tool_calls"], tool_call_id=record["tool_call_id"], metadata=record["metadata"],
            created_at=record["created_at"], sequence=int(record["sequence"]),
        )
        return message, float(record["appended_at"])
    except (ValueError, TypeError, KeyError, _Corrupt) as exc:  # ValidationError is a ValueError
        raise _corrupt(path, line_number, exc) from exc


_TORN = "incomplete last line (interrupted write?); remove it by hand to use the session again"


def _check_complete(data: bytes, path: str) -> None:
    """A file not ending in a newline was torn by a crash mid-append: an error, since guessing what the
    last line meant would be silently dropping or inventing data."""
    if not data.endswith(b"\n"):
        raise _corrupt(path, data.count(b"\n") + 1, _TORN)


def _split_lines(data: bytes, path: str) -> list[bytes]:
    _check_complete(data, path)
    return data[:-1].split(b"\n")


@dataclass(frozen=True)
class _Tail:
    """What the last line says about the session: the last sequence and when it was last appended to."""

    last_sequence: int
    updated_at: float


def _tail(header: _Header, last_line: bytes | None, path: str, line_number: int | str) -> _Tail:
    """The header holds the counter and the touch time as of the last rewrite; appended lines since then
    carry newer ones (a rewrite after deleting the newest messages keeps the header's larger counter)."""
    if last_line is None:  # no message line
        return _Tail(header.last_sequence, header.updated_at)
    try:
        record = json.loads(last_line)
        return _Tail(max(header.last_sequence, int(record["sequence"])),
                     max(header.updated_at, float(record["appended_at"])))
    except (ValueError, TypeError, KeyError) as exc:
        raise _corrupt(path, line_number, exc) from exc


def _session(header: _Header, tail: _Tail, path: str) -> ConversationSession:
    r = header.record
    try:
        return ConversationSession(session_id=header.session_id, user_id=r["user_id"], agent_id=r["agent_id"],
                                   name=r["name"], state=r["state"], metadata=r["metadata"],
                                   created_at=header.created_at, updated_at=tail.updated_at)
    except (KeyError, ValueError, TypeError) as exc:
        raise _corrupt(path, 1, exc) from exc


class JSONConversationStore(ConversationStore):
    """Conversation store in a directory of JSON-lines files (``json:///path/to/dir``); thread-safe, and
    safe for several processes on one machine (``fcntl.flock``; local file systems)."""

    backend_name = "json"

    def __init__(self, url: str | None = None, *, directory: str | os.PathLike[str] | None = None) -> None:
        if url is not None and directory is not None:
            raise ConfigurationError("give either url or directory, not both")
        if url is not None:
            parsed = parse_url(url)
            if parsed.scheme != "json":
                raise ConfigurationError(f"not a JSON store URL: {parsed}; use json:///path/to/dir")
            target = parsed.file_path or DEFAULT_DIRECTORY
        else:
            target = os.fspath(directory) if directory is not None else DEFAULT_DIRECTORY
        self.directory = os.path.normpath(os.path.abspath(target))
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as exc:
            raise ConnectionFailedError(f"cannot create the JSON store directory {self.directory!r}: {exc}") from exc
        self.capabilities = ConversationCapabilities(persistent=True, multi_process=HAS_FLOCK)
        self._closed = False

    def __repr__(self) -> str:
        return f"JSONConversationStore(directory={self.directory!r})"

    def _path(self, session_id: str) -> str:
        validate_session_id(session_id)
        return session_path(self.directory, session_id)

    # Reading helpers (the caller holds a lock on fd) -----------------------------------------------------

    @staticmethod
    def _read_ends(fd: int, path: str, session_id: str, header: _Header | None = None) -> tuple[_Header, _Tail, int]:
        """Header, what the last line says, and the file size: first and last line only, so the cost does
        not grow with the conversation."""
        if header is None:
            header = _parse_header(read_first_line(fd), path, session_id)
        size = os.fstat(fd).st_size
        last = read_last_line(fd, size)
        if last is None:
            raise _corrupt(path, "last", _TORN)
        line, offset = last
        return header, _tail(header, line if offset > 0 else None, path, "last"), size

    def _read_session(self, fd: int, path: str, session_id: str, header: _Header | None = None) -> ConversationSession:
        header, tail, _ = self._read_ends(fd, path, session_id, header)
        return _session(header, tail, path)

    def _read_file(self, fd: int, path: str, session_id: str) -> tuple[_Header, list[bytes], _Tail]:
        """The parsed header, the raw message lines and what the last one says."""
        lines = _split_lines(read_all(fd), path)
        header = _parse_header(lines[0], path, session_id)
        messages = lines[1:]
        tail = _tail(header, messages[-1] if messages else None, path, len(lines))
        return header, messages, tail

    # Sessions --------------------------------------------------------------------------------------------

    @_io("create_session")
    def create_session(self, session: ConversationSession) -> ConversationSession:
        path = self._path(session.session_id)
        data = _header_line(session, created_at=session.created_at, updated_at=session.updated_at, last_sequence=0)
        if not _files.create_file(path, data):
            raise AlreadyExistsError(f"session {session.session_id!r} already exists")
        return session

    @_io("get_session")
    def get_session(self, session_id: str) -> ConversationSession | None:
        path = self._path(session_id)
        with locked(path, exclusive=False) as fd:
            return None if fd is None else self._read_session(fd, path, session_id)

    def _rewrite_header(self, fd: int, path: str, session: ConversationSession, stamp: float) -> ConversationSession:
        header, messages, tail = self._read_file(fd, path, session.session_id)
        data = _header_line(session, created_at=header.created_at, updated_at=stamp,
                            last_sequence=tail.last_sequence)
        _files.replace_file(path, b"".join([data, *(line + b"\n" for line in messages)]))
        return session.replace(created_at=header.created_at, updated_at=stamp)

    @_io("update_session")
    def update_session(self, session: ConversationSession) -> ConversationSession:
        path = self._path(session.session_id)
        _header_line(session, created_at=0.0, updated_at=0.0, last_sequence=0)  # bad data fails before locking
        with thread_lock(path), locked(path, exclusive=True) as fd:
            if fd is None:
                raise SessionNotFoundError(f"session {session.session_id!r} does not exist")
            return self._rewrite_header(fd, path, session, now())

    @_io("upsert_session")
    def upsert_session(self, session: ConversationSession) -> ConversationSession:
        """Update under the file lock, or create with an exclusive create; retried if another process
        creates the file in between, so no caller ever sees AlreadyExists or NotFound."""
        path = self._path(session.session_id)
        created = _header_line(session, created_at=session.created_at, updated_at=session.updated_at,
                               last_sequence=0)
        with thread_lock(path):
            while True:
                with locked(path, exclusive=True) as fd:
                    if fd is not None:
                        return self._rewrite_header(fd, path, session, now())
                if _files.create_file(path, created):
                    return session

    @_io("delete_session")
    def delete_session(self, session_id: str) -> bool:
        path = self._path(session_id)
        with thread_lock(path), locked(path, exclusive=True) as fd:
            if fd is None:
                return False
            _parse_header(read_first_line(fd), path, session_id)  # never delete a file that is not this session's
            _files.remove_file(path)
            return True

    @_io("list_sessions")
    def list_sessions(self, *, user_id: str | None = None, agent_id: str | None = None, limit: int | None = 100,
                      offset: int = 0) -> list[ConversationSession]:
        """Reads the first and last line of every session file: O(number of sessions)."""
        check_limits(limit, offset)
        found: list[ConversationSession] = []
        with os.scandir(self.directory) as entries:
            names = [e.name for e in entries if e.name.endswith(_files.SUFFIX) and not e.name.startswith(".")]
        for name in names:
            path = os.path.join(self.directory, name)
            with locked(path, exclusive=False) as fd:
                if fd is None:  # deleted while we listed
                    continue
                header = _parse_header(read_first_line(fd), path, None)
                if _files.session_file_name(header.session_id) != name:
                    raise OperationFailedError(
                        f"session file {path} holds session {header.session_id!r}, which belongs in another "
                        f"file (a file renamed or copied by hand?)"
                    )
                if (user_id is not None and header.record.get("user_id") != user_id) or (
                        agent_id is not None and header.record.get("agent_id") != agent_id):
                    continue
                found.append(self._read_session(fd, path, header.session_id, header))
        found.sort(key=lambda s: (-s.updated_at, -s.created_at, s.session_id))
        return found[offset:] if limit is None else found[offset:offset + limit]

    # Messages --------------------------------------------------------------------------------------------

    @_io("add_messages")
    def add_messages(self, session_id: str, messages: Sequence[ConversationMessage]) -> list[ConversationMessage]:
        bound = bind_messages(session_id, messages)
        if not bound:
            return []
        path = self._path(session_id)
        stamp = now()
        ids = [_id_json(m.id) for m in bound]
        bodies = [_message_body(m, stamp) for m in bound]
        with thread_lock(path):
            while True:
                with locked(path, exclusive=True) as fd:
                    if fd is not None:
                        _, tail, size = self._read_ends(fd, path, session_id)
                        with _files.mapped(fd, size) as mapping:
                            self._check_new_ids(mapping, ids, bound)
                        first = tail.last_sequence + 1
                        _files.append(fd, b"".join(
                            _message_line(i, first + n, body) for n, (i, body) in enumerate(zip(ids, bodies))))
                        break
                # A new session: header and messages are created in one piece.
                session = ConversationSession(session_id=session_id, created_at=stamp, updated_at=stamp)
                first = 1
                data = b"".join([_header_line(session, created_at=stamp, updated_at=stamp, last_sequence=0), *(
                    _message_line(i, first + n, body) for n, (i, body) in enumerate(zip(ids, bodies)))])
                if _files.create_file(path, data):
                    break
        return [m.replace(sequence=first + n) for n, m in enumerate(bound)]

    @staticmethod
    def _check_new_ids(data: Any, ids: list[bytes], bound: Sequence[ConversationMessage]) -> None:
        """``data``: the file's bytes (or a mapping of them)."""
        if len(ids) <= _SEARCH_IDS_ONE_BY_ONE:
            taken = [n for n, i in enumerate(ids) if data.find(b'\n{"id":' + i + b",") != -1]
        else:
            existing = set(_ID_PREFIX.findall(data))
            taken = [n for n, i in enumerate(ids) if i in existing]
        if taken:
            raise AlreadyExistsError(f"message id {bound[taken[0]].id!r} already exists; nothing was written")

    @_io("get_messages")
    def get_messages(self, session_id: str, *, limit: int | None = None, before: float | None = None,
                     after: float | None = None) -> list[ConversationMessage]:
        check_limits(limit)
        check_time_bound(before, "before")
        check_time_bound(after, "after")
        path = self._path(session_id)
        with locked(path, exclusive=False) as fd:
            if fd is None:
                return []
            if before is None and after is None and limit is not None:
                return self._newest(fd, path, session_id, limit)
            lines = _split_lines(read_all(fd), path)
        _parse_header(lines[0], path, session_id)
        result = [_parse_message(line, path, n, session_id)[0] for n, line in enumerate(lines[1:], start=2)]
        if before is not None:
            result = [m for m in result if m.created_at < before]
        if after is not None:
            result = [m for m in result if m.created_at > after]
        if limit is not None:
            result = result[max(0, len(result) - limit):] if limit else []
        return result

    @staticmethod
    def _newest(fd: int, path: str, session_id: str, limit: int) -> list[ConversationMessage]:
        """The newest ``limit`` messages, read backwards from the end: the cost is what is returned."""
        header_line = read_first_line(fd)
        _parse_header(header_line, path, session_id)
        size = os.fstat(fd).st_size
        if read_last_line(fd, size) is None:
            raise _corrupt(path, "last", _TORN)
        if not limit:
            return []
        lines, reached_start = read_last_lines(fd, size, limit + 1)
        if reached_start:
            lines = lines[1:]  # the header
        lines = lines[max(0, len(lines) - limit):]
        return [_parse_message(line, path, f"{len(lines) - n} from the end", session_id)[0]
                for n, line in enumerate(lines)]

    @_io("delete_messages")
    def delete_messages(self, session_id: str, message_ids: Sequence[str] | None = None) -> int:
        ids = check_message_ids(message_ids)
        path = self._path(session_id)
        with thread_lock(path), locked(path, exclusive=True) as fd:
            if fd is None:
                return 0
            header, lines, tail = self._read_file(fd, path, session_id)
            if ids is None:
                keep: list[bytes] = []
            else:
                for i in ids:
                    _id_json(i)  # same refusal of unencodable ids as the SQLite store
                wanted = set(ids)
                keep = []
                for n, line in enumerate(lines, start=2):
                    match = _ID_PREFIX.match(line)
                    if match is None:
                        raise _corrupt(path, n, "not a message line")
                    if json.loads(match.group(1)) not in wanted:
                        keep.append(line)
            deleted = len(lines) - len(keep)
            if deleted:
                # The header takes over what the deleted lines knew: the sequence counter and the last touch.
                record = dict(header.record, last_sequence=tail.last_sequence, updated_at=tail.updated_at)
                _files.replace_file(path, b"".join([_encode(record, "session"), *(line + b"\n" for line in keep)]))
            return deleted

    @_io("count_messages")
    def count_messages(self, session_id: str) -> int:
        path = self._path(session_id)
        with locked(path, exclusive=False) as fd:
            if fd is None:
                return 0
            data = read_all(fd)
        lines = _split_lines(data, path)
        _parse_header(lines[0], path, session_id)
        return len(lines) - 1

    def close(self) -> None:
        """Nothing is held open between calls; later calls raise ``StoreClosedError``."""
        self._closed = True


__all__ = ["DEFAULT_DIRECTORY", "FORMAT", "JSONConversationStore"]
