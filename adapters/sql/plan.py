"""Operations written once for sync and async drivers: a *plan* is a generator that yields the
statements it needs (:class:`Op`) and receives each result, then returns the operation's result.

    def count(session_id):
        row = yield Op(ROW, "SELECT COUNT(*) FROM m WHERE session_id = %s", (session_id,))
        return row[0]

A sync runner drives it with a DB-API connection, an async runner with asyncpg or aiomysql; the
logic between the statements (branches on results, building the models) exists once. A :class:`Call`
wraps a plan factory with what the runner must know: whether it writes (one transaction, retried only
if it was rolled back), and what a duplicate key means for it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Kind(enum.Enum):
    #: Run a statement; the result is the number of rows it affected.
    EXECUTE = "execute"
    #: All rows of a query (a list of sequences).
    ROWS = "rows"
    #: The first row of a query, or None.
    ROW = "row"
    #: One statement over many parameter rows (a batched insert); the result is None.
    MANY = "many"
    #: MySQL family: ``(rowcount, lastrowid)`` of a statement (LAST_INSERT_ID(expr) comes back there).
    INSERT_ID = "insert_id"


EXECUTE, ROWS, ROW, MANY, INSERT_ID = Kind.EXECUTE, Kind.ROWS, Kind.ROW, Kind.MANY, Kind.INSERT_ID


@dataclass(frozen=True, slots=True)
class Op:
    kind: Kind
    sql: str
    params: Sequence[Any] = ()
    #: An idempotent DDL step: "already exists" (a concurrent migrator was first) counts as done.
    tolerate_exists: bool = False


Plan = Generator[Op, Any, T]


def no_io(value: T) -> Plan[T]:
    """A plan that runs no statement and returns ``value``."""
    return value
    yield  # pragma: no cover - makes this function a generator


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One store operation, ready to run: ``plan()`` makes a fresh plan for each attempt."""

    action: str
    plan: Callable[[], Plan[T]]
    #: Writes run in one transaction; they are retried only when the failure rolled them back.
    write: bool = False
    #: A write made of ONE statement runs without BEGIN/COMMIT (the statement is its own transaction:
    #: one round trip). Losing the connection then leaves its outcome unknown, hence ``verify``.
    transaction: bool = True
    #: For writes whose outcome a lost connection leaves unknown: a read plan that returns the write's
    #: result if it was applied, or None if it was not (then it is retried).
    verify: Callable[[], Plan[Any]] | None = None
    #: Builds the error for a unique-key violation (a plan, so it may look up which id was taken).
    on_duplicate: Callable[[], Plan[Exception]] | None = None
    #: False when the plan runs no statement (e.g. appending an empty list): no connection is taken.
    io: bool = True


__all__ = ["EXECUTE", "INSERT_ID", "MANY", "ROW", "ROWS", "Call", "Kind", "Op", "Plan", "no_io"]
