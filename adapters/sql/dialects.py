"""What differs between the SQL engines, declared as data: everything else (statements, plans, row
conversion, retries) is written once in this package and used by every driver, sync and async.

A :class:`Dialect` declares:

* **placeholders**: ``format`` (``%s``: psycopg, PyMySQL, aiomysql, singlestoredb) or ``numeric``
  (``$1``: asyncpg). Statements are written with ``?`` and rendered once per store by :meth:`Dialect.sql`.
* **identifier quoting**: ``"`` (ANSI) or ````` (MySQL family).
* **column types**: the JSON type (``JSONB`` on Postgres; ``JSON`` on MariaDB, where it is ``LONGTEXT`` with
  a ``CHECK (JSON_VALID(...))``, and a real type on SingleStore), text, floats, and the session key.
* **session keys**: Postgres indexes the session id itself (``TEXT``, no length limit that matters).
  The MySQL family cannot: a 512-character utf8mb4 id is 2,048 bytes, InnoDB's index keys stop at
  3,072 bytes, and the messages' primary key also holds the message id. There the key is
  ``session_key = SHA-256(session_id)`` (32 bytes, computed client side) and ``session_id`` is kept
  beside it, so every index stays small and fixed-size whatever the id.
* **upsert syntax**: ``ON CONFLICT (...) DO UPDATE SET c = EXCLUDED.c`` or
  ``ON DUPLICATE KEY UPDATE c = VALUES(c)`` (``VALUES()`` rather than MySQL 8's row alias: MariaDB and
  SingleStore do not have the alias).
* **RETURNING, and how a counter is read back**: Postgres reserves a message sequence with
  ``UPDATE ... RETURNING last_sequence``; the MySQL family with ``SET last_sequence =
  LAST_INSERT_ID(last_sequence + n)``, whose value comes back in the OK packet (``cursor.lastrowid``),
  so neither costs an extra round trip.
* **cascades**: foreign keys with ``ON DELETE CASCADE`` where the engine has them; SingleStore has none,
  so its messages are deleted explicitly in the same transaction.
* **DDL**: transactional on Postgres (all migrations in one transaction, serialised by an advisory
  transaction lock); not on the MySQL family, where migrations take the named lock ``GET_LOCK`` and
  every step is idempotent (``IF NOT EXISTS``, guarded ``ALTER``) with the version recorded after each.
* **error codes**: which engine codes mean duplicate key, a transaction the server rolled back
  (deadlock, serialization failure), a lost connection, or data the engine cannot store.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from storebridge.identifiers import quote_identifier, validate_table_prefix


class Failure(enum.Enum):
    """What a driver error means for the caller, whatever the engine."""

    #: A unique key was violated (``AlreadyExistsError``).
    DUPLICATE = "duplicate"
    #: The server rolled the transaction back (deadlock, serialization failure, lock timeout): retry.
    TRANSIENT = "transient"
    #: The connection is gone; whatever was not committed was rolled back by the server.
    DISCONNECTED = "disconnected"
    #: The engine cannot store this value (NUL characters, too long for the column, invalid text).
    INVALID = "invalid"
    #: A table, column or index that DDL creates exists already.
    EXISTS = "exists"
    #: Anything else (permissions, a missing table...).
    OTHER = "other"


@dataclass(frozen=True)
class Dialect:
    name: str
    #: For messages: "PostgreSQL", "MySQL", "SingleStore".
    display: str
    paramstyle: Literal["format", "numeric"]
    quote: str
    json_type: str
    text_type: str
    float_type: str
    #: Session ids hashed into ``session_key`` (see the module docstring).
    hashed_keys: bool
    #: The type of user_id / agent_id (indexed for list_sessions) and of message ids (in the primary key).
    owner_type: str
    message_id_type: str
    #: ``UPDATE/INSERT ... RETURNING`` exists (else the counter is read through LAST_INSERT_ID).
    returning: bool
    upsert: Literal["on_conflict", "on_duplicate_key"]
    foreign_keys: bool
    partial_indexes: bool
    #: Indexes are declared inside CREATE TABLE (atomic with it: MySQL has no CREATE INDEX IF NOT EXISTS).
    inline_indexes: bool
    transactional_ddl: bool
    migration_lock: Literal["advisory_xact", "get_lock", "none"]
    #: The SQL expression naming the current schema / database, for information_schema guards.
    current_schema: str
    #: A query for "does table ? exist here" (Postgres' information_schema views cost ~2 ms a query;
    #: its catalog answers in ~0.1 ms, and this runs on every store start).
    table_exists_sql: str
    table_options: str = ""
    #: An append is ONE statement: a data-modifying CTE upserts the session and reserves the numbers,
    #: the INSERT takes the batch as arrays (``unnest ... WITH ORDINALITY``). One round trip, any batch size.
    single_statement_append: bool = False
    #: Read the reserved counter with ``SELECT LAST_INSERT_ID()`` instead of the OK packet's insert id.
    insert_id_readback: bool = False
    #: JSONB turns ``1e20`` into the integer 100000000000000000000: floats are written positionally.
    jsonb: bool = False
    #: Engine error codes (SQLSTATE strings or MySQL error numbers) and what they mean.
    codes: Mapping[str | int, Failure] = field(default_factory=dict)
    #: The key column of both tables.
    key_column: str = "session_id"
    #: Real SingleStore: tables are ``ROWSTORE`` and sharded on the session key, so every unique key
    #: (which must contain the shard key there) holds it and a session's messages live on one partition.
    sharded: bool = False

    # -- rendering ---------------------------------------------------------------------------------------

    def q(self, name: str) -> str:
        """Quote an identifier made of a validated prefix and a fixed name."""
        return quote_identifier(name, self.quote)

    def table(self, prefix: str, name: str) -> str:
        return self.q(validate_table_prefix(prefix) + name)

    def sql(self, statement: str) -> str:
        """Render a statement written with ``?`` placeholders for this driver family. Statements are
        this package's own constants (never caller text), so ``?`` only ever marks a parameter."""
        if self.paramstyle == "format":
            return statement.replace("?", "%s")
        parts = statement.split("?")
        out = [parts[0]]
        for i, part in enumerate(parts[1:], start=1):
            out.append(f"${i}{part}")
        return "".join(out)

    def upsert_clause(self, conflict: str) -> str:
        """The start of an upsert's update part, for a conflict on the column list ``conflict``."""
        if self.upsert == "on_conflict":
            return f"ON CONFLICT ({conflict}) DO UPDATE SET"
        return "ON DUPLICATE KEY UPDATE"

    def excluded(self, column: str) -> str:
        """The value an upsert tried to insert into ``column``."""
        return f"EXCLUDED.{column}" if self.upsert == "on_conflict" else f"VALUES({column})"

    def counter(self, expression: str) -> str:
        """Assign a counter so that its new value comes back to the client."""
        return expression if self.returning else f"LAST_INSERT_ID({expression})"

    def returning_clause(self, columns: str) -> str:
        return f" RETURNING {columns}" if self.returning else ""

    # -- keys --------------------------------------------------------------------------------------------

    def key(self, session_id: str) -> str | bytes:
        """The value of the key column for a session id."""
        return hashlib.sha256(session_id.encode("utf-8")).digest() if self.hashed_keys else session_id

    def key_columns(self) -> str:
        """Columns that precede ``session_id`` in INSERTs (the hashed key, where there is one)."""
        return "session_key, " if self.hashed_keys else ""

    def key_params(self, session_id: str) -> tuple[str | bytes, ...]:
        return (self.key(session_id),) if self.hashed_keys else ()

    def key_placeholders(self) -> str:
        return "?, " if self.hashed_keys else ""

    def classify_code(self, code: str | int | None) -> Failure | None:
        return None if code is None else self.codes.get(code)


_PG_CODES: dict[str | int, Failure] = {
    "23505": Failure.DUPLICATE,                 # unique_violation
    "40001": Failure.TRANSIENT,                 # serialization_failure
    "40P01": Failure.TRANSIENT,                 # deadlock_detected
    "55P03": Failure.TRANSIENT,                 # lock_not_available
    "57P01": Failure.DISCONNECTED,              # admin_shutdown (server restart, pg_terminate_backend)
    "57P02": Failure.DISCONNECTED,              # crash_shutdown
    "57P03": Failure.DISCONNECTED,              # cannot_connect_now (starting up)
    "08000": Failure.DISCONNECTED, "08003": Failure.DISCONNECTED, "08006": Failure.DISCONNECTED,
    "08001": Failure.DISCONNECTED, "08004": Failure.DISCONNECTED,
    "22021": Failure.INVALID,                   # character_not_in_repertoire (NUL in text)
    "22P05": Failure.INVALID,                   # untranslatable_character (\u0000 in JSONB)
    "22001": Failure.INVALID,                   # string_data_right_truncation
    "54000": Failure.INVALID,                   # program_limit_exceeded (index row too large)
    "42P07": Failure.EXISTS,                    # duplicate_table (also an index)
    "42701": Failure.EXISTS,                    # duplicate_column
}

_MYSQL_CODES: dict[str | int, Failure] = {
    1062: Failure.DUPLICATE,                    # ER_DUP_ENTRY
    1586: Failure.DUPLICATE,                    # ER_DUP_ENTRY_WITH_KEY_NAME
    1213: Failure.TRANSIENT,                    # ER_LOCK_DEADLOCK (transaction rolled back)
    1205: Failure.TRANSIENT,                    # ER_LOCK_WAIT_TIMEOUT (we roll back before retrying)
    1020: Failure.TRANSIENT,                    # ER_CHECKREAD (record changed since last read)
    2006: Failure.DISCONNECTED,                 # CR_SERVER_GONE_ERROR
    2013: Failure.DISCONNECTED,                 # CR_SERVER_LOST
    2003: Failure.DISCONNECTED,                 # CR_CONN_HOST_ERROR
    2055: Failure.DISCONNECTED,                 # CR_SERVER_LOST_EXTENDED
    1927: Failure.DISCONNECTED,                 # ER_CONNECTION_KILLED (MariaDB)
    1053: Failure.DISCONNECTED,                 # ER_SERVER_SHUTDOWN
    4031: Failure.DISCONNECTED,                 # ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8)
    1406: Failure.INVALID,                      # ER_DATA_TOO_LONG
    1366: Failure.INVALID,                      # ER_TRUNCATED_WRONG_VALUE_FOR_FIELD (bad text)
    3140: Failure.INVALID,                      # ER_INVALID_JSON_TEXT (MySQL)
    4025: Failure.INVALID,                      # ER_CONSTRAINT_FAILED (MariaDB's JSON_VALID check)
    1153: Failure.INVALID,                      # ER_NET_PACKET_TOO_LARGE
    1301: Failure.INVALID,                      # ER_WARN_ALLOWED_PACKET_OVERFLOWED
    1050: Failure.EXISTS,                       # ER_TABLE_EXISTS_ERROR
    1060: Failure.EXISTS,                       # ER_DUP_FIELDNAME
    1061: Failure.EXISTS,                       # ER_DUP_KEYNAME
}

POSTGRES = Dialect(
    name="postgres", display="PostgreSQL", paramstyle="format", quote='"',
    json_type="JSONB", text_type="TEXT", float_type="DOUBLE PRECISION",
    hashed_keys=False, owner_type="TEXT", message_id_type="TEXT",
    returning=True, upsert="on_conflict", foreign_keys=True, partial_indexes=True, inline_indexes=False,
    transactional_ddl=True, migration_lock="advisory_xact", current_schema="current_schema()",
    table_exists_sql="SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = ?",
    jsonb=True, codes=_PG_CODES, single_statement_append=True,
)

#: asyncpg: the same engine, numbered placeholders.
ASYNCPG = Dialect(**{**POSTGRES.__dict__, "paramstyle": "numeric"})

#: MariaDB 10.3+ and MySQL 5.7+. ``utf8mb4_bin``: 4-byte characters (emoji), and ids compared byte
#: for byte (the default collations are case- and accent-insensitive: "Abc" would find "abc").
MYSQL = Dialect(
    name="mysql", display="MySQL", paramstyle="format", quote="`",
    json_type="JSON", text_type="LONGTEXT", float_type="DOUBLE",
    hashed_keys=True, owner_type="VARCHAR(255)", message_id_type="VARCHAR(255)",
    returning=False, upsert="on_duplicate_key", foreign_keys=True, partial_indexes=False, inline_indexes=True,
    transactional_ddl=False, migration_lock="get_lock", current_schema="DATABASE()",
    table_exists_sql="SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
    table_options=" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    codes=_MYSQL_CODES, key_column="session_key",
)

#: SingleStore: the MySQL protocol and SQL, minus foreign keys (explicit cascade), minus GET_LOCK
#: (idempotent migration steps carry concurrent starts), and the counter read back with SELECT.
SINGLESTORE = Dialect(**{
    **MYSQL.__dict__, "name": "singlestore", "display": "SingleStore", "foreign_keys": False,
    "migration_lock": "none", "insert_id_readback": True,
    "table_options": " DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
})

#: What the singlestore store uses when the server says it is SingleStore (``@@memsql_version``); the
#: unsharded variant above is what runs when the same client talks to MariaDB/MySQL (and in the tests).
SINGLESTORE_SHARDED = Dialect(**{**SINGLESTORE.__dict__, "sharded": True})


__all__ = ["ASYNCPG", "MYSQL", "POSTGRES", "SINGLESTORE", "SINGLESTORE_SHARDED", "Dialect", "Failure"]
