"""File primitives of the JSON-files store: safe names, per-file locks, atomic create/replace, reads.

Locking: threads of one process first queue on an in-process lock per file (cheap, fair), then take
``fcntl.flock`` on the file itself so other processes are excluded too (flock is per open file
description, so it also separates threads that each opened the file). Because rewrites swap in a new
inode with ``os.replace``, a locker re-checks after acquiring that the path still names the inode it
locked, and retries if not: otherwise it could append to a file that was just replaced.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from urllib.parse import quote

from storebridge.errors import OperationFailedError, ValidationError

try:
    import fcntl
except ImportError:  # Windows: no flock; the store then declares itself single-process
    fcntl = None  # type: ignore[assignment]

HAS_FLOCK = fcntl is not None
SUFFIX = ".jsonl"
TEMP_SUFFIX = ".tmp"
#: Readable part of a file name, in characters (all ASCII after quoting): with the hash and suffix the
#: name stays far below the usual 255-byte limit however long or exotic the session id is.
MAX_READABLE = 120
HASH_CHARS = 16
#: How long to wait for a file that another process is still creating (only without hard links).
CREATE_WAIT = 10.0
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)

_thread_locks: weakref.WeakValueDictionary[str, threading.RLock] = weakref.WeakValueDictionary()
_thread_locks_guard = threading.Lock()


def session_file_name(session_id: str) -> str:
    """``<percent-encoded id, '.' escaped too, truncated>~<sha256 prefix>.jsonl``.

    Percent-encoding leaves only ``[A-Za-z0-9_~%-]``, so no separator, no ``.``/``..`` and no leading
    dot (temp files start with one); the hash of the full id keeps ids that differ only in case apart on
    case-insensitive file systems and keeps truncated long ids distinct.
    """
    try:
        raw = session_id.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(f"session_id must be valid Unicode (no lone surrogates): {exc}") from None
    readable = quote(raw, safe="").replace(".", "%2E")
    if len(readable) > MAX_READABLE:
        readable = readable[:MAX_READABLE]
        cut = readable.rfind("%", len(readable) - 2)  # do not end inside a %XX escape
        if cut != -1:
            readable = readable[:cut]
    return f"{readable}~{hashlib.sha256(raw).hexdigest()[:HASH_CHARS]}{SUFFIX}"


def session_path(directory: str, session_id: str) -> str:
    """The file of ``session_id`` inside ``directory`` (an absolute, normalised path); asserts it is."""
    name = session_file_name(session_id)
    path = os.path.join(directory, name)
    if (os.path.dirname(os.path.normpath(path)) != directory or os.sep in name
            or (os.altsep and os.altsep in name) or name.startswith(".")):
        raise ValidationError(f"session_id {session_id!r} maps outside the store directory")  # unreachable by design
    return path


def thread_lock(path: str) -> threading.RLock:
    """The in-process lock of one session file, shared by every store object of this process (reentrant:
    without flock, :func:`locked` takes it again inside a writer's hold)."""
    with _thread_locks_guard:
        lock = _thread_locks.get(path)
        if lock is None:
            lock = threading.RLock()
            _thread_locks[path] = lock
        return lock


def _open_locked(path: str, exclusive: bool) -> int | None:
    """An fd on the current file at ``path``, flock-ed; None if there is no such file."""
    flags = (os.O_RDWR | os.O_APPEND if exclusive else os.O_RDONLY) | _O_CLOEXEC | _O_BINARY
    waited_since: float | None = None
    while True:
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            return None
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            st = os.fstat(fd)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            same = current is not None and (current.st_ino, current.st_dev) == (st.st_ino, st.st_dev)
            if same and st.st_size > 0:
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        if same:  # empty: another process is creating it without hard links (see create_file)
            waited_since = waited_since or time.monotonic()
            if time.monotonic() - waited_since > CREATE_WAIT:
                raise OperationFailedError(
                    f"session file {path} is empty (an interrupted creation?); delete it to reuse the session"
                )
            time.sleep(0.001)


@contextmanager
def locked(path: str, *, exclusive: bool) -> Iterator[int | None]:
    """Hold a shared (readers) or exclusive (writers) lock on the file; yields None if it does not
    exist. Closing the fd releases the flock."""
    # Without flock, readers and writers of this process at least exclude each other.
    with thread_lock(path) if fcntl is None else nullcontext():
        fd = _open_locked(path, exclusive)
        try:
            yield fd
        finally:
            if fd is not None:
                os.close(fd)


def read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    chunks: list[bytes] = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def read_first_line(fd: int, block: int = 8192) -> bytes:
    """The first line without its newline; a file with no newline at all gives b""."""
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, block, offset)
        if not chunk:
            return b""
        end = chunk.find(b"\n")
        if end != -1:
            chunks.append(chunk[:end])
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)
        block = min(block * 2, 1 << 20)


def read_last_line(fd: int, size: int, block: int = 8192) -> tuple[bytes, int] | None:
    """The last line (without its newline) and its offset; None if the file does not end with a
    newline (a torn append). Reads backwards, so its cost is the length of that line."""
    if size == 0 or os.pread(fd, 1, size - 1) != b"\n":
        return None
    end = size - 1
    chunks: list[bytes] = []
    position = end
    while position > 0:
        start = max(0, position - block)
        chunk = os.pread(fd, position - start, start)
        newline = chunk.rfind(b"\n")
        if newline != -1:
            chunks.append(chunk[newline + 1:])
            chunks.reverse()
            return b"".join(chunks), start + newline + 1
        chunks.append(chunk)
        position = start
        block = min(block * 2, 1 << 20)
    chunks.reverse()
    return b"".join(chunks), 0


def read_last_lines(fd: int, size: int, count: int, block: int = 65536) -> tuple[list[bytes], bool]:
    """Up to ``count`` last lines (without newlines), oldest first, and whether they reach the start of
    the file. The file must end with a newline. Cost: the length of those lines, not of the file."""
    end = size - 1  # the final newline
    lines: list[bytes] = []
    pending = b""  # the partial line at the front of what was read so far
    position = end
    while position > 0 and len(lines) < count:
        start = max(0, position - block)
        chunk = os.pread(fd, position - start, start) + pending
        parts = chunk.split(b"\n")
        pending = parts[0]
        lines.extend(reversed(parts[1:]))
        position = start
        block = min(block * 2, 1 << 22)
    reached_start = position == 0 and len(lines) < count
    if reached_start:
        lines.append(pending)
    del lines[count:]
    lines.reverse()
    return lines, reached_start


def mapped(fd: int, size: int) -> mmap.mmap:
    """The file as a read-only mapping: searched in place, without copying it into Python. Safe under
    our locks: writers append or swap in a new inode, they never truncate a file others may map."""
    return mmap.mmap(fd, size, access=mmap.ACCESS_READ)


def append(fd: int, data: bytes) -> None:
    """Append ``data`` and fsync; on failure the file is cut back to its old size, so a failed append
    leaves nothing behind (not even a partial line)."""
    size = os.fstat(fd).st_size
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.ftruncate(fd, size)
        raise


def fsync_directory(directory: str) -> None:
    """Make a create/rename/unlink in ``directory`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY | _O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def write_temp(path: str, data: bytes) -> str:
    """``data`` in a fresh, fsync-ed hidden temp file beside ``path``; returns its path."""
    directory, name = os.path.split(path)
    temp = os.path.join(directory, f".{name}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC | _O_BINARY, 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        os.unlink(temp)
        raise
    return temp


def create_file(path: str, data: bytes) -> bool:
    """Create ``path`` holding ``data`` if it does not exist; False if it does. Other processes never see
    a half-written file: the content is written to a temp file and hard-linked into place (link fails
    if the name is taken). File systems without hard links fall back to ``O_EXCL`` + flock, and readers
    wait while such a file is still empty."""
    temp = write_temp(path, data)
    try:
        os.link(temp, path)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        return _create_without_link(path, data)
    finally:
        os.unlink(temp)
    fsync_directory(os.path.dirname(path))
    return True


def _create_without_link(path: str, data: bytes) -> bool:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _O_CLOEXEC | _O_BINARY, 0o666)
    except FileExistsError:
        return False
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        append(fd, data)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    fsync_directory(os.path.dirname(path))
    return True


def replace_file(path: str, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``: readers and a crash see the old or the new file, never
    a mix. The caller holds the exclusive lock on the old file."""
    temp = write_temp(path, data)
    try:
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
    fsync_directory(os.path.dirname(path))


def remove_file(path: str) -> None:
    os.unlink(path)
    fsync_directory(os.path.dirname(path))


__all__ = [
    "HAS_FLOCK", "SUFFIX", "append", "create_file", "locked", "mapped", "read_all", "read_first_line",
    "read_last_line", "read_last_lines", "remove_file", "replace_file", "session_file_name", "session_path",
    "thread_lock",
]
