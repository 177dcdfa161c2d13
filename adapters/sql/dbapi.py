"""Running :class:`~.plan.Op` statements on a DB-API 2 connection in autocommit mode (psycopg 3, PyMySQL,
singlestoredb): the part of a sync driver that is the same for all of them. Transactions are explicit
``BEGIN``/``COMMIT``/``ROLLBACK`` statements, so every driver behaves alike whatever its own transaction
model, and a single-statement read costs one round trip."""

from __future__ import annotations

from typing import Any

from .plan import EXECUTE, MANY, ROW, ROWS, Op


class DBAPIDriver:
    """Mixin: ``perform``, ``begin``, ``commit``, ``rollback`` and ``discard`` over DB-API cursors."""

    def perform(self, conn: Any, op: Op) -> Any:
        cursor = conn.cursor()
        try:
            kind = op.kind
            if kind is MANY:
                cursor.executemany(op.sql, op.params)
                return None
            cursor.execute(op.sql, op.params)
            if kind is ROWS:
                return cursor.fetchall()
            if kind is ROW:
                return cursor.fetchone()
            if kind is EXECUTE:
                return cursor.rowcount
            return cursor.rowcount, cursor.lastrowid
        finally:
            cursor.close()

    def _command(self, conn: Any, sql: str) -> None:
        cursor = conn.cursor()
        try:
            cursor.execute(sql)
        finally:
            cursor.close()

    def begin(self, conn: Any) -> None:
        self._command(conn, "BEGIN")

    def commit(self, conn: Any) -> None:
        self._command(conn, "COMMIT")

    def rollback(self, conn: Any) -> None:
        self._command(conn, "ROLLBACK")

    def discard(self, conn: Any) -> None:
        """Close a connection that cannot be trusted any more; its pool drops closed connections."""
        try:
            conn.close()
        except Exception:  # noqa: BLE001, S110 - closing a broken connection may fail; it is gone either way
            pass


__all__ = ["DBAPIDriver"]
