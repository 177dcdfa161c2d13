"""The ``singlestore`` conversation store, through the official ``singlestoredb`` client.

SingleStore speaks the MySQL protocol and SQL, so this is the MySQL store's SQL (the shared layer's
MySQL dialect) with SingleStore's differences declared in
:data:`storebridge.adapters.sql.dialects.SINGLESTORE`:

* **No foreign keys, no cascade**: deleting a session deletes its messages explicitly, in the same
  transaction, session row first (its lock makes a concurrent append wait, so nothing is left behind).
* **Unique keys must contain the shard key**: on a real SingleStore server (detected by its
  ``memsql_version`` variable) both tables are ``ROWSTORE`` and ``SHARD KEY (session_key)``; the
  messages' unique keys ``(session_key, id)`` and ``(session_key, sequence)`` contain it, and a session's
  messages live on one partition, so reading a conversation touches one partition.
* **No GET_LOCK**: migrations rely on their idempotent steps (``CREATE TABLE IF NOT EXISTS`` behind an
  ``information_schema`` check, guarded ``ALTER``), so two processes starting at once both converge.
* **The counter**: ``LAST_INSERT_ID(expr)`` is supported, but its value is read back with
  ``SELECT LAST_INSERT_ID()`` rather than trusted from the OK packet (one more round trip per append).
* **JSON** is a real type there (a ``CHECK``-ed ``LONGTEXT`` on MariaDB); the client is told not to parse
  it (``parse_json=False``) so rows convert as on every other engine.
* No server-side prepared statements are needed: the client interpolates parameters, as PyMySQL does.

Everything here is tested against MariaDB (the same client, the same SQL, the unsharded variant); the
``ROWSTORE``/``SHARD KEY`` clauses are the only text that only a real SingleStore server sees.

URL: ``singlestore://user:password@host:3306/database`` (``singlestoredb://`` too); TLS as
``?ssl_ca=...&ssl_cert=...&ssl_key=...``, or ``?ssl_disabled=true`` for a server without TLS (the client
otherwise loads the system's certificates on every connect).
"""

from __future__ import annotations

from typing import Any

from storebridge.adapters.mysql.conversation import (
    PyMySQLDriver,
    check_sizes,
    connect_kwargs,
    mysql_target,
    parse_mysql_url,
)
from storebridge.adapters.sql import SINGLESTORE, SINGLESTORE_SHARDED, ConversationSQL, SQLConversationStore
from storebridge.adapters.sql.dbapi import DBAPIDriver
from storebridge.adapters.sql.plan import ROW, Op
from storebridge.adapters.sql.runner import RetryPolicy
from storebridge.urls import StoreURL

SCHEMES = frozenset({"singlestore", "singlestoredb"})
DRIVERS = frozenset({None, "singlestoredb", "pymysql"})


def _kwargs(parsed: StoreURL, connect_timeout: float) -> dict[str, Any]:
    """singlestoredb's ``connect`` keywords: the MySQL ones, and JSON left as text."""
    return {**connect_kwargs(parsed, connect_timeout), "parse_json": False, "results_type": "tuples"}


def _is_singlestore(driver: DBAPIDriver, conn: Any) -> bool:
    """SingleStore has the variable ``memsql_version``; MariaDB and MySQL do not."""
    row = driver.perform(conn, Op(ROW, "SHOW VARIABLES LIKE 'memsql_version'"))
    return row is not None


class SingleStoreConversationStore(SQLConversationStore):
    """Conversation store on SingleStore (see the module docstring for what differs from MySQL)."""

    backend_name = "singlestore"

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10, table_prefix: str = "sb_",
                 connect_timeout: float = 10.0, pool_timeout: float = 30.0, retry: RetryPolicy | None = None) -> None:
        import singlestoredb
        import singlestoredb.exceptions

        parsed = parse_mysql_url(url, schemes=SCHEMES | {"mysql", "mariadb"}, drivers=DRIVERS, what="SingleStore")
        check_sizes(min_size, max_size)
        target = mysql_target(SINGLESTORE, parsed)
        driver = PyMySQLDriver(singlestoredb.connect, singlestoredb.exceptions, SINGLESTORE, target,
                               _kwargs(parsed, connect_timeout), max_size=max_size, pool_timeout=pool_timeout)
        try:
            with driver.dedicated() as conn:
                sharded = _is_singlestore(driver, conn)
        except BaseException:
            driver.close()
            raise
        dialect = SINGLESTORE_SHARDED if sharded else SINGLESTORE
        driver.dialect = target.dialect = dialect
        self._start(ConversationSQL(dialect, table_prefix), driver, target, retry)
        driver.fill(min_size)


__all__ = ["SingleStoreConversationStore"]
