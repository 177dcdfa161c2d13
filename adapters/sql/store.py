"""The two faces every SQL conversation store shares: a sync base (psycopg, PyMySQL, singlestoredb) and
an async base (asyncpg, aiomysql). Each method is one line: the operation's :class:`~.plan.Call` from
:class:`~.operations.ConversationSQL`, run by the store's runner. Engine stores only open a driver.

Migrations run when the store opens (sync: in the constructor; async: on first use, inside the running
loop), on a dedicated connection that is closed afterwards, then the pool serves every call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from storebridge.conversation import AsyncConversationStore, ConversationCapabilities, ConversationStore
from storebridge.errors import ConfigurationError, SchemaVersionError, StoreClosedError
from storebridge.models import ConversationMessage, ConversationSession

from .operations import ConversationSQL
from .plan import Call
from .runner import AsyncDriver, AsyncRunner, RetryPolicy, SyncDriver, SyncRunner, T, Target


def check_sizes(min_size: int, max_size: int) -> None:
    """Pool bounds every store takes: ``0 <= min_size <= max_size``, ``max_size >= 1``."""
    if not (isinstance(min_size, int) and isinstance(max_size, int) and 0 <= min_size <= max_size and max_size >= 1):
        raise ConfigurationError(f"need 0 <= min_size <= max_size and max_size >= 1, got {min_size}, {max_size}")


def _migration_failed(target: Target, exc: Exception) -> SchemaVersionError:
    how = ("was rolled back" if target.dialect.transactional_ddl
           else "stopped; its steps are idempotent and the next start completes it")
    return SchemaVersionError(f"migrating the conversation tables on {target.where} failed and {how}: "
                              f"{target.mask(exc)}")


class SQLConversationStore(ConversationStore):
    """Base of the sync SQL conversation stores. Subclasses build a driver and call :meth:`_start`."""

    backend_name = "sql"
    capabilities = ConversationCapabilities(persistent=True, multi_process=True, max_content_bytes=None)
    _ops: ConversationSQL
    _runner: SyncRunner
    _target: Target

    def _start(self, ops: ConversationSQL, driver: SyncDriver, target: Target,
               policy: RetryPolicy | None = None) -> None:
        """Migrate on a dedicated connection, then serve from the driver's pool. On failure the driver is
        closed, so a store that could not open leaves no connection behind."""
        self._ops, self._target, self.table_prefix = ops, target, ops.prefix
        self._runner = SyncRunner(driver, target, policy)
        try:
            with driver.dedicated() as conn:
                try:
                    self._runner.run_on(conn, ops.migrate())
                except Exception as exc:
                    if driver.classify(exc) is None:
                        raise
                    raise _migration_failed(target, exc) from exc
        except BaseException:
            driver.close()
            raise

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._target.where!r}, table_prefix={self.table_prefix!r})"

    def _run(self, call: Call[T]) -> T:
        if self._target.closed:
            raise StoreClosedError(f"the {self._target.dialect.display} store on {self._target.where} is closed")
        return self._runner.run(call)

    def create_session(self, session: ConversationSession) -> ConversationSession:
        return self._run(self._ops.create_session(session))

    def get_session(self, session_id: str) -> ConversationSession | None:
        return self._run(self._ops.get_session(session_id))

    def update_session(self, session: ConversationSession) -> ConversationSession:
        return self._run(self._ops.update_session(session))

    def upsert_session(self, session: ConversationSession) -> ConversationSession:
        return self._run(self._ops.upsert_session(session))

    def delete_session(self, session_id: str) -> bool:
        return self._run(self._ops.delete_session(session_id))

    def list_sessions(self, *, user_id: str | None = None, agent_id: str | None = None, limit: int | None = 100,
                      offset: int = 0) -> list[ConversationSession]:
        return self._run(self._ops.list_sessions(user_id=user_id, agent_id=agent_id, limit=limit, offset=offset))

    def add_messages(self, session_id: str, messages: Sequence[ConversationMessage]) -> list[ConversationMessage]:
        return self._run(self._ops.add_messages(session_id, messages))

    def get_messages(self, session_id: str, *, limit: int | None = None, before: float | None = None,
                     after: float | None = None) -> list[ConversationMessage]:
        return self._run(self._ops.get_messages(session_id, limit=limit, before=before, after=after))

    def delete_messages(self, session_id: str, message_ids: Sequence[str] | None = None) -> int:
        return self._run(self._ops.delete_messages(session_id, message_ids))

    def count_messages(self, session_id: str) -> int:
        return self._run(self._ops.count_messages(session_id))

    def close(self) -> None:
        """Close the pool (every idle connection now, the busy ones as they come back). Safe twice."""
        runner = getattr(self, "_runner", None)
        if runner is None or self._target.closed:
            return
        self._target.closed = True
        runner.driver.close()


class AsyncSQLConversationStore(AsyncConversationStore):
    """Base of the async SQL conversation stores. Nothing connects in the constructor: the pool is made
    on first use, inside the running loop it belongs to. Subclasses implement :meth:`_open_driver`."""

    backend_name = "sql"
    capabilities = ConversationCapabilities(persistent=True, multi_process=True, max_content_bytes=None)
    _ops: ConversationSQL
    _target: Target

    def _prepare(self, ops: ConversationSQL, target: Target, policy: RetryPolicy | None = None) -> None:
        self._ops, self._target, self.table_prefix = ops, target, ops.prefix
        self._policy = policy
        self._runner: AsyncRunner | None = None
        self._opening = asyncio.Lock()

    async def _open_driver(self) -> AsyncDriver:
        """Create the pool; return the driver. Called once, under a lock."""
        raise NotImplementedError

    async def _migrate(self, driver: AsyncDriver, conn: Any) -> None:
        """Run the migrations on ``conn`` (a dedicated connection); subclasses call it from _open_driver."""
        runner = AsyncRunner(driver, self._target, self._policy)
        try:
            await runner.run_on(conn, self._ops.migrate())
        except Exception as exc:
            if driver.classify(exc) is None:
                raise
            raise _migration_failed(self._target, exc) from exc

    async def _ready(self) -> AsyncRunner:
        runner = self._runner
        if runner is not None and not self._target.closed:
            return runner
        if self._target.closed:
            raise StoreClosedError(f"the {self._target.dialect.display} store on {self._target.where} is closed")
        async with self._opening:
            if self._runner is None:
                driver = await self._open_driver()
                if self._target.closed:  # closed while it was opening
                    await driver.close()
                    raise StoreClosedError(f"the store on {self._target.where} was closed while it opened")
                self._runner = AsyncRunner(driver, self._target, self._policy)
        return self._runner

    async def _run(self, call: Call[T]) -> T:
        return await (await self._ready()).run(call)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._target.where!r}, table_prefix={self.table_prefix!r})"

    async def create_session(self, session: ConversationSession) -> ConversationSession:
        return await self._run(self._ops.create_session(session))

    async def get_session(self, session_id: str) -> ConversationSession | None:
        return await self._run(self._ops.get_session(session_id))

    async def update_session(self, session: ConversationSession) -> ConversationSession:
        return await self._run(self._ops.update_session(session))

    async def upsert_session(self, session: ConversationSession) -> ConversationSession:
        return await self._run(self._ops.upsert_session(session))

    async def delete_session(self, session_id: str) -> bool:
        return await self._run(self._ops.delete_session(session_id))

    async def list_sessions(self, *, user_id: str | None = None, agent_id: str | None = None,
                            limit: int | None = 100, offset: int = 0) -> list[ConversationSession]:
        return await self._run(self._ops.list_sessions(user_id=user_id, agent_id=agent_id, limit=limit,
                                                       offset=offset))

    async def add_messages(self, session_id: str,
                           messages: Sequence[ConversationMessage]) -> list[ConversationMessage]:
        return await self._run(self._ops.add_messages(session_id, messages))

    async def get_messages(self, session_id: str, *, limit: int | None = None, before: float | None = None,
                           after: float | None = None) -> list[ConversationMessage]:
        return await self._run(self._ops.get_messages(session_id, limit=limit, before=before, after=after))

    async def delete_messages(self, session_id: str, message_ids: Sequence[str] | None = None) -> int:
        return await self._run(self._ops.delete_messages(session_id, message_ids))

    async def count_messages(self, session_id: str) -> int:
        return await self._run(self._ops.count_messages(session_id))

    async def close(self) -> None:
        """Close the pool if one was made. Safe twice; later calls raise ``StoreClosedError``."""
        if self._target.closed:
            return
        self._target.closed = True
        async with self._opening:
            runner, self._runner = self._runner, None
        if runner is not None:
            await runner.driver.close()


__all__ = ["AsyncSQLConversationStore", "SQLConversationStore", "check_sizes"]
