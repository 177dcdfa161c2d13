"""A small thread-safe connection pool for DB-API drivers that have none (PyMySQL, singlestoredb).

LIFO (the most recently used connection is the warmest), bounded by ``max_size``: a thread that finds
every connection busy waits up to ``timeout`` seconds. Connections are opened outside the lock, so a
slow connect never blocks threads that return connections. A connection the caller found broken (or
that the driver reports closed) is dropped on release instead of being handed out again. ``close()``
closes every idle connection at once and each busy one when it comes back, so nothing outlives the pool.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from storebridge.errors import OperationFailedError, StoreClosedError

C = TypeVar("C")


class ConnectionPool(Generic[C]):
    def __init__(self, connect: Callable[[], C], *, close: Callable[[C], None], usable: Callable[[C], bool],
                 max_size: int = 10, timeout: float = 30.0, name: str = "pool") -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._connect, self._close, self._usable = connect, close, usable
        self.max_size, self.timeout, self.name = max_size, timeout, name
        self._idle: list[C] = []
        self._size = 0  # open connections: idle + lent out + being opened
        self._cond = threading.Condition()
        self._closed = False

    @property
    def size(self) -> int:
        return self._size

    def add(self, conn: C) -> None:
        """Adopt an already open connection (e.g. the one that ran the migrations)."""
        with self._cond:
            if not self._closed and self._size < self.max_size:
                self._size += 1
                self._idle.append(conn)
                self._cond.notify()
                return
        self._close(conn)

    def acquire(self) -> C:
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while True:
                if self._closed:
                    raise StoreClosedError(f"{self.name} is closed")
                if self._idle:
                    return self._idle.pop()
                if self._size < self.max_size:
                    self._size += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise OperationFailedError(
                        f"{self.name}: no connection became free within {self.timeout}s (max_size={self.max_size})")
                self._cond.wait(remaining)
        try:
            return self._connect()
        except BaseException:
            with self._cond:
                self._size -= 1
                self._cond.notify()
            raise

    def release(self, conn: C, *, broken: bool = False) -> None:
        keep = not broken and self._usable(conn)
        with self._cond:
            if keep and not self._closed:
                self._idle.append(conn)
                self._cond.notify()
                return
            self._size -= 1
            self._cond.notify()
        self._close(conn)

    @contextmanager
    def connection(self) -> Iterator[C]:
        conn = self.acquire()
        try:
            yield conn
        except BaseException:
            self.release(conn, broken=not self._usable(conn))
            raise
        self.release(conn)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._size -= len(idle)
            self._cond.notify_all()
        for conn in idle:
            self._close(conn)


__all__ = ["ConnectionPool"]
