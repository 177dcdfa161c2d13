"""Every conversation operation, written once as plans over statements rendered once per store.

:class:`ConversationSQL` is built from a :class:`~.dialects.Dialect` and a table prefix. Its methods
validate their input (so bad input fails before a connection is taken) and return a
:class:`~.plan.Call`; the sync and async stores run the same calls through their runners. SQL text is
fixed at construction: identifiers are the validated prefix, quoted; every value is a bound parameter.

The append, for every engine: one transaction that reserves ``n`` sequences on the session row and
inserts the batch.

1. ``UPDATE sessions SET last_sequence = last_sequence + n, updated_at = now WHERE key = ?`` returning
   the new counter (``RETURNING``, or ``LAST_INSERT_ID(expr)`` read from the OK packet). The row lock
   it takes serialises appenders of one session until commit; other sessions are not blocked.
2. Only for a new session: the same as an upsert (``INSERT ... ON CONFLICT/ON DUPLICATE KEY UPDATE``),
   so two first appends racing on one new session both succeed, in some order.
3. The batch, numbered ``last - n + 1 .. last``, in one ``INSERT`` (``executemany``: a multi-row
   INSERT on PyMySQL/aiomysql, a pipeline on psycopg and asyncpg).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from storebridge.conversation import bind_messages, check_limits
from storebridge.errors import AlreadyExistsError, OperationFailedError, SessionNotFoundError, ValidationError
from storebridge.identifiers import validate_table_prefix
from storebridge.models import ConversationMessage, ConversationSession, now, validate_session_id

from .dialects import Dialect
from .plan import EXECUTE, INSERT_ID, MANY, ROW, ROWS, Call, Op, Plan, no_io
from .rows import (
    MESSAGE_COLUMNS,
    MESSAGE_INSERT_COLUMNS,
    SESSION_COLUMNS,
    check_message_ids,
    check_time_bound,
    dump_json_for,
    message_from_row,
    message_params,
    sequenced,
    session_from_row,
    session_params,
)
from .schema import COMPONENT, SQLMigration, conversation_migrations, migrate_plan

#: ``LIMIT`` for "no limit": every engine takes a BIGINT there (MySQL has no LIMIT ALL / LIMIT NULL).
NO_LIMIT = 2 ** 63 - 1
#: Ids per ``DELETE ... IN (...)`` statement.
DELETE_CHUNK = 100


class ConversationSQL:
    """The statements and operations of the conversation store on one dialect and table prefix."""

    def __init__(self, dialect: Dialect, table_prefix: str = "sb_") -> None:
        self.dialect = d = dialect
        self.prefix = p = validate_table_prefix(table_prefix)
        self.migrations: tuple[SQLMigration, ...] = conversation_migrations(d, p)
        s, m, k = d.table(p, "sessions"), d.table(p, "messages"), d.key_column
        kc, kp, r = d.key_columns(), d.key_placeholders(), d.sql
        self.s_insert = r(f"INSERT INTO {s} ({kc}{SESSION_COLUMNS}, last_sequence) "
                          f"VALUES ({kp}?, ?, ?, ?, ?, ?, ?, ?, 0)")
        self.s_get = r(f"SELECT {SESSION_COLUMNS} FROM {s} WHERE {k} = ?")
        self.s_update = r(f"UPDATE {s} SET user_id = ?, agent_id = ?, name = ?, state = ?, metadata = ?, "
                          f"updated_at = ? WHERE {k} = ?{d.returning_clause('created_at')}")
        self.s_times = r(f"SELECT created_at, updated_at FROM {s} WHERE {k} = ?")
        ex = d.excluded
        self.s_upsert = r(
            f"INSERT INTO {s} ({kc}{SESSION_COLUMNS}, last_sequence) VALUES ({kp}?, ?, ?, ?, ?, ?, ?, ?, 0) "
            f"{d.upsert_clause(k)} user_id = {ex('user_id')}, agent_id = {ex('agent_id')}, name = {ex('name')}, "
            f"state = {ex('state')}, metadata = {ex('metadata')}, updated_at = ?"
            f"{d.returning_clause('created_at, updated_at')}"
        )
        self.s_delete = r(f"DELETE FROM {s} WHERE {k} = ?")
        self.s_reserve = r(f"UPDATE {s} SET last_sequence = {d.counter('last_sequence + ?')}, updated_at = ? "
                           f"WHERE {k} = ?{d.returning_clause('last_sequence')}")
        self.s_reserve_new = r(
            f"INSERT INTO {s} ({kc}session_id, state, metadata, created_at, updated_at, last_sequence) "
            f"VALUES ({kp}?, ?, ?, ?, ?, ?) {d.upsert_clause(k)} "
            f"last_sequence = {d.counter(f'{s}.last_sequence + ' + ex('last_sequence'))}, "
            f"updated_at = {ex('updated_at')}{d.returning_clause('last_sequence')}"
        )
        self.s_last_insert_id = "SELECT LAST_INSERT_ID()"
        self.m_insert = r(f"INSERT INTO {m} ({kc}{MESSAGE_INSERT_COLUMNS}) VALUES ({kp}?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self.m_count = r(f"SELECT COUNT(*) FROM {m} WHERE {k} = ?")
        self.m_delete_all = r(f"DELETE FROM {m} WHERE {k} = ?")
        self.m_exists = r(f"SELECT 1 FROM {m} WHERE {k} = ? AND id = ?")
        self.m_sequence = r(f"SELECT sequence FROM {m} WHERE {k} = ? AND id = ?")
        if d.single_statement_append:
            if d.hashed_keys:
                raise ValueError(f"{d.name}: a single-statement append is written for unhashed session keys")
            j = d.json_type
            reserve = (
                f"WITH r AS (INSERT INTO {s} (session_id, state, metadata, created_at, updated_at, last_sequence) "
                f"VALUES (?, ?, ?, ?, ?, ?) {d.upsert_clause(k)} "
                f"last_sequence = {s}.last_sequence + {ex('last_sequence')}, updated_at = {ex('updated_at')} "
                f"RETURNING last_sequence) INSERT INTO {m} ({MESSAGE_INSERT_COLUMNS}) ")
            # One message (the common case) as plain parameters; a batch as arrays, numbered by ordinality.
            self.m_append_one = r(reserve + f"SELECT ?, ?, ?, ?, ?::{j}, ?, ?::{j}, ?, r.last_sequence FROM r "
                                            f"RETURNING sequence")
            self.m_append = r(
                reserve + f"SELECT ?, b.id, b.role, b.content, b.tool_calls::{j}, b.tool_call_id, b.metadata::{j}, "
                f"b.created_at, r.last_sequence - ? + b.ord FROM r, "
                f"unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::float8[]) "
                f"WITH ORDINALITY AS b(id, role, content, tool_calls, tool_call_id, metadata, created_at, ord) "
                f"RETURNING sequence")
        self._m_delete_some: dict[int, str] = {}
        self._m_table, self._k = m, k
        # get_messages: one statement per combination of bounds, so each is prepared once and uses its index.
        self.m_select: dict[tuple[bool, bool, bool], str] = {}
        for before in (False, True):
            for after in (False, True):
                where = f"{k} = ?" + (" AND created_at < ?" if before else "") + (" AND created_at > ?" if after else "")
                for limited in (False, True):
                    order = "sequence DESC LIMIT ?" if limited else "sequence"
                    self.m_select[(before, after, limited)] = r(
                        f"SELECT {MESSAGE_COLUMNS} FROM {m} WHERE {where} ORDER BY {order}")
        self.s_list: dict[tuple[bool, bool], str] = {}
        for by_user in (False, True):
            for by_agent in (False, True):
                conditions = [c for c, on in (("user_id = ?", by_user), ("agent_id = ?", by_agent)) if on]
                where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
                self.s_list[(by_user, by_agent)] = r(
                    f"SELECT {SESSION_COLUMNS} FROM {s}{where} "
                    f"ORDER BY updated_at DESC, created_at DESC, session_id LIMIT ? OFFSET ?")

    def _delete_some(self, n: int) -> str:
        """``DELETE ... id IN (?, ..., ?)`` for ``n`` ids: only the number of placeholders varies."""
        sql = self._m_delete_some.get(n)
        if sql is None:
            marks = ", ".join("?" * n)
            sql = self._m_delete_some[n] = self.dialect.sql(
                f"DELETE FROM {self._m_table} WHERE {self._k} = ? AND id IN ({marks})")
        return sql

    # -- schema -----------------------------------------------------------------------------------------

    def migrate(self) -> Call[int]:
        d = self.dialect
        return Call("migrate", lambda: migrate_plan(d, self.prefix, self.migrations, COMPONENT),
                    write=d.transactional_ddl)

    # -- sessions ---------------------------------------------------------------------------------------

    def create_session(self, session: ConversationSession) -> Call[ConversationSession]:
        params = session_params(self.dialect, _session(session))

        def plan() -> Plan[ConversationSession]:
            yield Op(EXECUTE, self.s_insert, params)
            return session

        return Call("create_session", plan, write=True, on_duplicate=lambda: no_io(
            AlreadyExistsError(f"session {session.session_id!r} already exists")))

    def get_session(self, session_id: str) -> Call[ConversationSession | None]:
        key = self.dialect.key(validate_session_id(session_id))

        def plan() -> Plan[ConversationSession | None]:
            row = yield Op(ROW, self.s_get, (key,))
            return None if row is None else session_from_row(row)

        return Call("get_session", plan)

    def update_session(self, session: ConversationSession) -> Call[ConversationSession]:
        d = self.dialect
        state = dump_json_for(d, _session(session).state, "session state")
        metadata = dump_json_for(d, session.metadata, "session metadata")
        key = d.key(session.session_id)

        def plan() -> Plan[ConversationSession]:
            stamp = now()
            params = (session.user_id, session.agent_id, session.name, state, metadata, stamp, key)
            if d.returning:
                row = yield Op(ROW, self.s_update, params)
            else:
                yield Op(EXECUTE, self.s_update, params)
                row = yield Op(ROW, self.s_times, (key,))
            if row is None:
                raise SessionNotFoundError(f"session {session.session_id!r} does not exist")
            return session.replace(created_at=row[0], updated_at=stamp)

        return Call("update_session", plan, write=True)

    def upsert_session(self, session: ConversationSession) -> Call[ConversationSession]:
        """One upsert: a new session keeps its own timestamps, an existing one keeps ``created_at`` and
        gets ``updated_at`` = now, with no window between the two cases."""
        d = self.dialect
        params = session_params(d, _session(session))
        key = d.key(session.session_id)

        def plan() -> Plan[ConversationSession]:
            if d.returning:
                row = yield Op(ROW, self.s_upsert, (*params, now()))
            else:
                yield Op(EXECUTE, self.s_upsert, (*params, now()))
                row = yield Op(ROW, self.s_times, (key,))
            return session.replace(created_at=row[0], updated_at=row[1])

        return Call("upsert_session", plan, write=True)

    def delete_session(self, session_id: str) -> Call[bool]:
        """The session row first: its lock makes a concurrent append wait, then find no session and start
        a new one, so no message can be left behind without a session (where the cascade is explicit)."""
        key = self.dialect.key(validate_session_id(session_id))
        explicit_cascade = not self.dialect.foreign_keys

        def plan() -> Plan[bool]:
            deleted = yield Op(EXECUTE, self.s_delete, (key,))
            if explicit_cascade:
                yield Op(EXECUTE, self.m_delete_all, (key,))
            return bool(deleted)

        return Call("delete_session", plan, write=True)

    def list_sessions(self, *, user_id: str | None = None, agent_id: str | None = None, limit: int | None = 100,
                      offset: int = 0) -> Call[list[ConversationSession]]:
        check_limits(limit, offset)
        sql = self.s_list[(user_id is not None, agent_id is not None)]
        params = (*(v for v in (user_id, agent_id) if v is not None), NO_LIMIT if limit is None else limit, offset)

        def plan() -> Plan[list[ConversationSession]]:
            rows = yield Op(ROWS, sql, params)
            return [session_from_row(row) for row in rows]

        return Call("list_sessions", plan)

    # -- messages ---------------------------------------------------------------------------------------

    def add_messages(self, session_id: str, messages: Sequence[ConversationMessage]) -> Call[list[ConversationMessage]]:
        d = self.dialect
        bound = bind_messages(session_id, messages)
        if not bound:
            return Call("add_messages", lambda: no_io([]), io=False)
        prepared = message_params(d, session_id, bound)
        n = len(prepared)
        on_duplicate, verify = (lambda: self._taken_id(session_id, bound)), (lambda: self._applied(session_id, bound))

        if d.single_statement_append:
            columns = [list(column) for column in zip(*prepared)][1:] if n > 1 else []  # id ... created_at

            def one_statement() -> Plan[list[ConversationMessage]]:
                stamp = now()
                if n == 1:
                    rows = yield Op(ROWS, self.m_append_one, (session_id, "{}", "{}", stamp, stamp, 1, *prepared[0]))
                else:
                    rows = yield Op(ROWS, self.m_append, (session_id, "{}", "{}", stamp, stamp, n, session_id, n,
                                                          *columns))
                first = min(row[0] for row in rows)
                return [sequenced(m, session_id, first + i) for i, m in enumerate(bound)]

            return Call("add_messages", one_statement, write=True, transaction=False, on_duplicate=on_duplicate,
                        verify=verify)

        def plan() -> Plan[list[ConversationMessage]]:
            last = yield from self._reserve(session_id, n, now())
            first = last - n + 1
            if n == 1:
                yield Op(EXECUTE, self.m_insert, (*prepared[0], first))
            else:
                yield Op(MANY, self.m_insert, [(*row, first + i) for i, row in enumerate(prepared)])
            return [sequenced(m, session_id, first + i) for i, m in enumerate(bound)]

        return Call("add_messages", plan, write=True, on_duplicate=on_duplicate, verify=verify)

    def _applied(self, session_id: str, messages: Sequence[ConversationMessage]) -> Plan[list[ConversationMessage] | None]:
        """After a lost connection left an append's outcome unknown: the appended messages if it was applied
        (an append is atomic: all of its ids are there, or none), else None. Ids are unique per session,
        so their presence is the proof."""
        key = self.dialect.key(session_id)
        found: list[ConversationMessage] = []
        for message in messages:
            row = yield Op(ROW, self.m_sequence, (key, message.id))
            if row is None:
                if found:
                    raise OperationFailedError(
                        f"session {session_id!r} holds only part of a batch whose append lost its connection")
                return None
            found.append(sequenced(message, session_id, int(row[0])))
        return found

    def _reserve(self, session_id: str, n: int, stamp: float) -> Plan[int]:
        """Touch the session and reserve ``n`` sequences; returns the last one (see the module docstring)."""
        d = self.dialect
        key = d.key(session_id)
        new = (*d.key_params(session_id), session_id, "{}", "{}", stamp, stamp, n)
        if d.returning:
            row = yield Op(ROW, self.s_reserve, (n, stamp, key))
            if row is None:
                row = yield Op(ROW, self.s_reserve_new, new)
            return int(row[0])
        changed, last = yield Op(INSERT_ID, self.s_reserve, (n, stamp, key))
        if not changed:
            changed, last = yield Op(INSERT_ID, self.s_reserve_new, new)
            if changed == 1:  # inserted: the new session's counter is n (LAST_INSERT_ID was not assigned)
                return n
        if d.insert_id_readback:
            row = yield Op(ROW, self.s_last_insert_id)
            last = row[0]
        return int(last)

    def _taken_id(self, session_id: str, messages: Sequence[ConversationMessage]) -> Plan[Exception]:
        """Which id of a refused batch is taken (the engines' errors do not say it readably); error path only."""
        key = self.dialect.key(session_id)
        for message in messages:
            row = yield Op(ROW, self.m_exists, (key, message.id))
            if row is not None:
                return AlreadyExistsError(
                    f"message id {message.id!r} already exists in session {session_id!r}; nothing was written")
        return AlreadyExistsError(f"a message of this batch already exists in session {session_id!r}; "
                                  "nothing was written")

    def get_messages(self, session_id: str, *, limit: int | None = None, before: float | None = None,
                     after: float | None = None) -> Call[list[ConversationMessage]]:
        key = self.dialect.key(validate_session_id(session_id))
        check_limits(limit)
        check_time_bound(before, "before")
        check_time_bound(after, "after")
        sql = self.m_select[(before is not None, after is not None, limit is not None)]
        params: list[Any] = [key]
        params += [float(v) for v in (before, after) if v is not None]
        if limit is not None:
            params.append(limit)

        def plan() -> Plan[list[ConversationMessage]]:
            rows = yield Op(ROWS, sql, params)
            if limit is not None:  # the newest n were read newest first; callers get them oldest first
                rows = rows[::-1]
            return [message_from_row(row) for row in rows]

        return Call("get_messages", plan)

    def delete_messages(self, session_id: str, message_ids: Sequence[str] | None = None) -> Call[int]:
        key = self.dialect.key(validate_session_id(session_id))
        ids = check_message_ids(message_ids)
        if ids is not None and not ids:
            return Call("delete_messages", lambda: no_io(0), io=False)

        def plan() -> Plan[int]:
            if ids is None:
                return (yield Op(EXECUTE, self.m_delete_all, (key,)))
            deleted = 0
            for start in range(0, len(ids), DELETE_CHUNK):
                chunk = ids[start:start + DELETE_CHUNK]
                deleted += yield Op(EXECUTE, self._delete_some(len(chunk)), (key, *chunk))
            return deleted

        return Call("delete_messages", plan, write=True)

    def count_messages(self, session_id: str) -> Call[int]:
        key = self.dialect.key(validate_session_id(session_id))

        def plan() -> Plan[int]:
            row = yield Op(ROW, self.m_count, (key,))
            return int(row[0])

        return Call("count_messages", plan)


def _session(session: ConversationSession) -> ConversationSession:
    if not isinstance(session, ConversationSession):
        raise ValidationError(f"expected ConversationSession, got {type(session).__name__}")
    return session


__all__ = ["NO_LIMIT", "ConversationSQL"]
