"""Running plans: transactions, bounded retries and typed errors, the same for every driver.

A driver (psycopg, asyncpg, PyMySQL, aiomysql, singlestoredb) only says how to get a connection, run one
:class:`~.plan.Op`, and what an exception of its own means (:class:`~.dialects.Failure`). Everything
else is decided here, once, by :func:`judge`:

* reads are retried after a lost connection or a transaction the server rolled back (deadlock,
  serialization failure), with jittered exponential backoff, a bounded number of times;
* writes run in one transaction and are retried only when the failure happened before ``COMMIT`` was
  sent (the server discarded everything) or the engine reports the commit itself was rolled back. A
  connection lost *during* ``COMMIT`` is never retried: the write may have been applied, so the caller
  gets an ``OperationFailedError`` saying exactly that (retrying an append could duplicate it);
* failing to get a connection is not retried here (the pools already wait and reconnect): it is a
  ``ConnectionFailedError`` naming the server, never its password;
* a duplicate key becomes ``AlreadyExistsError`` (the operation may look up which id was taken), data
  the engine cannot hold a ``ValidationError``, anything else an ``OperationFailedError``; the driver's
  exception is always the ``__cause__``, and exceptions that are not the driver's (a
  ``SessionNotFoundError`` raised by a plan) pass through untouched.

The sync and async runners differ only in ``await`` and in how they sleep.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from storebridge.errors import (
    AlreadyExistsError,
    ConnectionFailedError,
    OperationFailedError,
    StorebridgeError,
    StoreClosedError,
    ValidationError,
)
from storebridge.urls import mask_secrets

from .dialects import Dialect, Failure
from .plan import Call, Op, Plan

T = TypeVar("T")


class Stage(enum.Enum):
    CONNECT = "connect"
    STATEMENT = "statement"
    COMMIT = "commit"


@dataclass(frozen=True)
class RetryPolicy:
    """How often a transient failure is tried again (``attempts`` counts the first try)."""

    attempts: int = 4
    base_delay: float = 0.02
    max_delay: float = 1.0

    def delay(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * (2 ** attempt)) * (0.5 + random.random())


class Retry:
    """Marker: try the call again."""


class Verify:
    """Marker: the write's outcome is unknown; run ``call.verify`` to find out."""


RETRY = Retry()
VERIFY = Verify()


class SyncDriver(Protocol):
    def connection(self) -> AbstractContextManager[Any]: ...
    def dedicated(self) -> AbstractContextManager[Any]:
        """The connection that runs the migrations (not shared with other calls meanwhile)."""
        ...
    def perform(self, conn: Any, op: Op) -> Any: ...
    def begin(self, conn: Any) -> None: ...
    def commit(self, conn: Any) -> None: ...
    def rollback(self, conn: Any) -> None: ...
    def discard(self, conn: Any) -> None: ...
    def classify(self, exc: BaseException) -> Failure | None: ...
    def close(self) -> None: ...


class AsyncDriver(Protocol):
    def connection(self) -> AbstractAsyncContextManager[Any]: ...
    async def perform(self, conn: Any, op: Op) -> Any: ...
    async def begin(self, conn: Any) -> None: ...
    async def commit(self, conn: Any) -> None: ...
    async def rollback(self, conn: Any) -> None: ...
    async def discard(self, conn: Any) -> None: ...
    def classify(self, exc: BaseException) -> Failure | None: ...
    async def close(self) -> None: ...


@dataclass
class Target:
    """What errors say about the server: ``"PostgreSQL at host:5432/db"``, and the secrets to mask."""

    dialect: Dialect
    where: str
    secrets: tuple[str, ...] = ()
    closed: bool = False

    def mask(self, text: object) -> str:
        return mask_secrets(text, *self.secrets)


def judge(target: Target, exc: Exception, failure: Failure | None, stage: Stage, call: Call[Any], attempt: int,
          policy: RetryPolicy) -> Exception | Retry | Verify | None:
    """What to do about ``exc``: ``RETRY``, ``VERIFY`` (run ``call.verify``), ``None`` (run
    ``call.on_duplicate``), or the exception to raise (``exc`` itself when it is not the driver's)."""
    if failure is None:
        return exc
    if target.closed:
        return StoreClosedError(f"the {target.dialect.display} store on {target.where} is closed")
    action = call.action
    if failure is Failure.DUPLICATE:
        return None if call.on_duplicate is not None else AlreadyExistsError(
            f"{action}: a key already exists ({target.mask(exc)})")
    if failure is Failure.INVALID:
        return ValidationError(f"{target.dialect.display} cannot store this value ({action}): {target.mask(exc)}")
    if failure in (Failure.TRANSIENT, Failure.DISCONNECTED):
        if stage is Stage.CONNECT:
            return ConnectionFailedError(f"cannot reach {target.where} for {action}: {target.mask(exc)}")
        # The server reported a rollback (TRANSIENT), or the connection died inside an explicit transaction
        # before COMMIT was sent: nothing was applied. Otherwise (lost during COMMIT, or during a write that
        # is its own transaction) the write may have been applied.
        rolled_back = failure is Failure.TRANSIENT or (stage is Stage.STATEMENT and call.transaction)
        if call.write and not rolled_back:
            if call.verify is not None:
                return VERIFY
            return OperationFailedError(
                f"the connection to {target.where} was lost while committing {action}; the write may or may "
                f"not have been applied ({target.mask(exc)})")
        if attempt + 1 < policy.attempts:
            return RETRY
        if failure is Failure.DISCONNECTED:
            return ConnectionFailedError(
                f"lost the connection to {target.where} during {action}, {policy.attempts} times: {target.mask(exc)}")
        return OperationFailedError(
            f"{action} on {target.where} was rolled back by the server {policy.attempts} times "
            f"(deadlock or serialization failure): {target.mask(exc)}")
    return OperationFailedError(f"{target.dialect.display} {action} on {target.where} failed: {target.mask(exc)}")


def _gave_up(target: Target, call: Call[Any], exc: BaseException, policy: RetryPolicy) -> Exception:
    return ConnectionFailedError(f"lost the connection to {target.where} during {call.action}, "
                                 f"{policy.attempts} times (it was not applied): {target.mask(exc)}")


def _duplicate_fallback(target: Target, call: Call[Any], exc: BaseException) -> Exception:
    return AlreadyExistsError(f"{call.action}: a key already exists ({target.mask(exc)})")


def _run_without_io(call: Call[T]) -> T:
    plan = call.plan()
    try:
        op = next(plan)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    plan.close()
    raise AssertionError(f"{call.action}: a plan declared without I/O yielded {op!r}")


# -- sync ---------------------------------------------------------------------------------------------------


def _tolerated(op: Op, exc: Exception, classify: Callable[[BaseException], Failure | None]) -> bool:
    """An idempotent DDL step that failed because a concurrent migrator applied it first."""
    return op.tolerate_exists and classify(exc) is Failure.EXISTS


def drive(plan: Plan[T], perform: Callable[[Op], Any],
          classify: Callable[[BaseException], Failure | None] = lambda exc: None) -> T:
    """Run a plan to its end with ``perform`` executing each statement."""
    try:
        op = next(plan)
        while True:
            try:
                result = perform(op)
            except Exception as exc:
                if not _tolerated(op, exc, classify):
                    raise
                result = None
            op = plan.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


class SyncRunner:
    def __init__(self, driver: SyncDriver, target: Target, policy: RetryPolicy | None = None) -> None:
        self.driver = driver
        self.target = target
        self.policy = policy or RetryPolicy()

    def run(self, call: Call[T]) -> T:
        if call.io is False:
            return _run_without_io(call)
        attempt = 0
        while True:
            stage = [Stage.CONNECT]
            try:
                with self.driver.connection() as conn:
                    return self.run_on(conn, call, stage)
            except Exception as exc:
                decision = judge(self.target, exc, self.driver.classify(exc), stage[0], call, attempt, self.policy)
                if decision is VERIFY:
                    applied = self._verify(call)
                    if applied is not None:
                        return applied  # type: ignore[no-any-return]
                    if attempt + 1 >= self.policy.attempts:
                        raise _gave_up(self.target, call, exc, self.policy) from exc
                    decision = RETRY  # it was not applied: safe to try again
                if decision is RETRY:
                    time.sleep(self.policy.delay(attempt))
                    attempt += 1
                    continue
                if decision is None:
                    raise self._duplicate(call, exc) from exc
                if decision is exc:
                    raise
                raise decision from exc  # type: ignore[misc]

    def run_on(self, conn: Any, call: Call[T], stage: list[Stage] | None = None) -> T:
        """One attempt on a connection the caller holds (migrations use a dedicated one)."""
        stage = stage if stage is not None else [Stage.CONNECT]
        driver = self.driver
        explicit = call.write and call.transaction
        stage[0] = Stage.STATEMENT
        if explicit:
            driver.begin(conn)
        try:
            result = drive(call.plan(), lambda op: driver.perform(conn, op), driver.classify)
            if explicit:
                stage[0] = Stage.COMMIT
                driver.commit(conn)
            return result
        except BaseException:
            if explicit and stage[0] is Stage.STATEMENT:
                self._rollback(conn)
            raise

    def _verify(self, call: Call[T]) -> T | None:
        """Whether a write whose outcome is unknown was applied (its result), or not (None)."""
        assert call.verify is not None
        return self.run(Call(f"{call.action} (checking whether it was applied)", call.verify))  # type: ignore[arg-type]

    def _rollback(self, conn: Any) -> None:
        try:
            self.driver.rollback(conn)
        except Exception:  # noqa: BLE001 - the statement's error is being raised; this connection is unusable
            self.driver.discard(conn)

    def _duplicate(self, call: Call[Any], exc: BaseException) -> Exception:
        assert call.on_duplicate is not None
        lookup = call.on_duplicate
        try:
            return self.run(Call(f"{call.action} (finding the duplicate)", lookup))
        except StorebridgeError:  # the lookup failed: the duplicate is still the error to report
            return _duplicate_fallback(self.target, call, exc)


# -- async --------------------------------------------------------------------------------------------------


async def adrive(plan: Plan[T], perform: Callable[[Op], Any],
                 classify: Callable[[BaseException], Failure | None] = lambda exc: None) -> T:
    try:
        op = next(plan)
        while True:
            try:
                result = await perform(op)
            except Exception as exc:
                if not _tolerated(op, exc, classify):
                    raise
                result = None
            op = plan.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


class AsyncRunner:
    def __init__(self, driver: AsyncDriver, target: Target, policy: RetryPolicy | None = None) -> None:
        self.driver = driver
        self.target = target
        self.policy = policy or RetryPolicy()

    async def run(self, call: Call[T]) -> T:
        if call.io is False:
            return _run_without_io(call)
        attempt = 0
        while True:
            stage = [Stage.CONNECT]
            try:
                async with self.driver.connection() as conn:
                    return await self.run_on(conn, call, stage)
            except Exception as exc:
                decision = judge(self.target, exc, self.driver.classify(exc), stage[0], call, attempt, self.policy)
                if decision is VERIFY:
                    applied = await self._verify(call)
                    if applied is not None:
                        return applied  # type: ignore[no-any-return]
                    if attempt + 1 >= self.policy.attempts:
                        raise _gave_up(self.target, call, exc, self.policy) from exc
                    decision = RETRY
                if decision is RETRY:
                    await asyncio.sleep(self.policy.delay(attempt))
                    attempt += 1
                    continue
                if decision is None:
                    raise await self._duplicate(call, exc) from exc
                if decision is exc:
                    raise
                raise decision from exc  # type: ignore[misc]

    async def run_on(self, conn: Any, call: Call[T], stage: list[Stage] | None = None) -> T:
        stage = stage if stage is not None else [Stage.CONNECT]
        driver = self.driver
        explicit = call.write and call.transaction
        stage[0] = Stage.STATEMENT
        if explicit:
            await driver.begin(conn)
        try:
            result = await adrive(call.plan(), lambda op: driver.perform(conn, op), driver.classify)
            if explicit:
                stage[0] = Stage.COMMIT
                await driver.commit(conn)
            return result
        except BaseException:
            if explicit and stage[0] is Stage.STATEMENT:
                await self._rollback(conn)
            raise

    async def _verify(self, call: Call[T]) -> T | None:
        assert call.verify is not None
        return await self.run(Call(f"{call.action} (checking whether it was applied)", call.verify))  # type: ignore[arg-type]

    async def _rollback(self, conn: Any) -> None:
        try:
            await self.driver.rollback(conn)
        except Exception:  # noqa: BLE001 - the statement's error is being raised; this connection is unusable
            await self.driver.discard(conn)

    async def _duplicate(self, call: Call[Any], exc: BaseException) -> Exception:
        assert call.on_duplicate is not None
        try:
            return await self.run(Call(f"{call.action} (finding the duplicate)", call.on_duplicate))
        except StorebridgeError:
            return _duplicate_fallback(self.target, call, exc)


__all__ = [
    "RETRY",
    "VERIFY",
    "AsyncDriver",
    "AsyncRunner",
    "RetryPolicy",
    "Stage",
    "SyncDriver",
    "SyncRunner",
    "Target",
    "adrive",
    "drive",
    "judge",
]
