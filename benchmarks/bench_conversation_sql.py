"""SQL conversation stores against hand-written driver code and the LangChain histories (a script, not a test).

    .venv/bin/python benchmarks/bench_conversation_sql.py [--appends 1000] [--history 10000] [--reads 300]
        [--postgres postgresql://postgres@127.0.0.1:5432/test] [--mysql mysql://root@127.0.0.1:3306/test]

PostgreSQL:

1. Append one message at a time (msg/s): ``PostgresConversationStore.add_message`` (and the asyncpg store)
   against the limit, hand-written psycopg: one autocommit ``INSERT`` per message into a table with the
   same indexes, the sequence counted in Python (no session row to keep, no JSON encoding); and against
   LangChain's ``SQLChatMessageHistory`` (SQLAlchemy + psycopg) and langchain-postgres'
   ``PostgresChatMessageHistory``. Contenders take turns in blocks, so noise from other processes hits
   all alike.
2. "Load the newest 20 of a 10,000-message session" (median ms): ``get_messages(limit=20)`` (model
   objects) against a hand-written ``SELECT ... ORDER BY seq DESC LIMIT 20`` (raw rows), and the two
   LangChain histories (which can only load everything, then slice).

MariaDB: the same two measures, ``MySQLConversationStore`` against hand-written PyMySQL.

Every table is made under a fresh prefix and dropped at the end. Needs ``langchain-community``,
``sqlalchemy`` and ``langchain-postgres`` for the LangChain rows (skipped, and said so, without them).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_conversation import CONTENT, interleaved_medians_ms, interleaved_rates

from storebridge.adapters.mysql import MySQLConversationStore
from storebridge.adapters.postgres import AsyncPostgresConversationStore, PostgresConversationStore
from storebridge.models import ConversationMessage

SESSION = "bench-session"


def message(i: int = 0) -> ConversationMessage:
    return ConversationMessage(role="user" if i % 2 else "assistant", content=CONTENT)


class HandWritten:
    """The limit: what one would write by hand with the bare driver. A messages table with the store's
    indexes, the sequence counted in Python, one autocommit INSERT per message (one round trip)."""

    def __init__(self, connect: Callable[[], Any], table: str, mark: str, *, quote: str, text: str,
                 real: str) -> None:
        self.conn, self.mark, self.table = connect(), mark, f"{quote}{table}{quote}"
        self.seq = 0
        cur = self.conn.cursor()
        cur.execute(f"CREATE TABLE {self.table} (session_id VARCHAR(255) NOT NULL, id VARCHAR(64) NOT NULL, "
                    f"seq BIGINT NOT NULL, role VARCHAR(16) NOT NULL, content {text} NOT NULL, tool_calls {text}, "
                    f"tool_call_id {text}, metadata {text} NOT NULL, created_at {real} NOT NULL, "
                    f"PRIMARY KEY (session_id, id), UNIQUE (session_id, seq))")
        cur.execute(f"CREATE INDEX {quote}{table}_created{quote} ON {self.table} (session_id, created_at)")
        m = mark
        self.insert = (f"INSERT INTO {self.table} (session_id, id, seq, role, content, tool_calls, tool_call_id, "
                       f"metadata, created_at) VALUES ({m}, {m}, {m}, {m}, {m}, {m}, {m}, {m}, {m})")
        self.newest_sql = (f"SELECT id, session_id, role, content, tool_calls, tool_call_id, metadata, created_at, seq "
                           f"FROM {self.table} WHERE session_id = {m} ORDER BY seq DESC LIMIT {m}")

    def append(self) -> None:
        self.seq += 1
        cur = self.conn.cursor()
        cur.execute(self.insert, (SESSION, uuid.uuid4().hex, self.seq, "user", CONTENT, None, None, "{}", time.time()))

    def fill(self, n: int) -> None:
        rows = [(SESSION, uuid.uuid4().hex, self.seq + i + 1, "user", CONTENT, None, None, "{}", time.time())
                for i in range(n)]
        self.seq += n
        cur = self.conn.cursor()
        for start in range(0, n, 1000):
            cur.executemany(self.insert, rows[start:start + 1000])

    def newest(self, n: int) -> list[Any]:
        cur = self.conn.cursor()
        cur.execute(self.newest_sql, (SESSION, n))
        rows = list(cur.fetchall())
        rows.reverse()
        return rows

    def drop(self) -> None:
        self.conn.cursor().execute(f"DROP TABLE IF EXISTS {self.table}")
        self.conn.close()


def fill_store(add_messages: Callable[[str, list[ConversationMessage]], Any], n: int, batch: int = 500) -> None:
    for start in range(0, n, batch):
        add_messages(SESSION, [message(i) for i in range(start, min(n, start + batch))])


def ratio(value: float, limit: float) -> str:
    return f"{value / limit:.2f}x"


def bench_postgres(url: str, appends: int, history: int, reads: int) -> None:
    import psycopg

    tag = uuid.uuid4().hex[:8]
    prefix, hand_table, lc_table, lcpg_table = f"sbb{tag}_", f"sbb{tag}_hand", f"sbb{tag}_lc", f"sbb{tag}_lcpg"
    store = PostgresConversationStore(url, table_prefix=prefix, max_size=2)
    astore = AsyncPostgresConversationStore(url, table_prefix=prefix + "a", max_size=2).as_sync()
    hand = HandWritten(lambda: psycopg.connect(url, autocommit=True), hand_table, "%s", quote='"', text="TEXT",
                       real="DOUBLE PRECISION")
    contenders: dict[str, Callable[[], Any]] = {
        "hand-written psycopg": hand.append,
        "storebridge postgres": lambda: store.add_message(SESSION, message()),
        "storebridge async_postgres (sync face)": lambda: astore.add_message(SESSION, message()),
    }
    readers: dict[str, Callable[[], Any]] = {}
    cleanup: list[Callable[[], Any]] = []
    lc = lcpg = None
    try:
        from langchain_community.chat_message_histories import SQLChatMessageHistory
        from langchain_core.messages import HumanMessage

        lc = SQLChatMessageHistory(session_id=SESSION, table_name=lc_table,
                                   connection=url.replace("postgresql://", "postgresql+psycopg://", 1))
        contenders["LangChain SQLChatMessageHistory"] = lambda: lc.add_message(HumanMessage(content=CONTENT))
    except ImportError as exc:
        print(f"  (LangChain SQLChatMessageHistory skipped: {exc})")
    try:
        from langchain_core.messages import HumanMessage
        from langchain_postgres import PostgresChatMessageHistory

        lc_conn = psycopg.connect(url)
        PostgresChatMessageHistory.create_tables(lc_conn, lcpg_table)
        lcpg = PostgresChatMessageHistory(lcpg_table, str(uuid.uuid4()), sync_connection=lc_conn)
        contenders["langchain-postgres PostgresChatMessageHistory"] = (
            lambda: lcpg.add_messages([HumanMessage(content=CONTENT)]))
        cleanup.append(lc_conn.close)
    except ImportError as exc:
        print(f"  (langchain-postgres skipped: {exc})")
    try:
        for append in contenders.values():  # warm up: connections, prepared statements
            for _ in range(20):
                append()
        rates = interleaved_rates(contenders, appends, block=50)
        limit = rates["hand-written psycopg"]
        print(f"\nPostgreSQL: append one message ({appends} each, msg/s; ratio to the hand-written limit)")
        for name, rate in rates.items():
            print(f"  {name:48s} {rate:8.0f} msg/s  {ratio(rate, limit)}")

        hand.fill(history)
        fill_store(store.add_messages, history)
        readers["hand-written psycopg"] = lambda: hand.newest(20)
        readers["storebridge postgres"] = lambda: store.get_messages(SESSION, limit=20)
        fill_store(astore.add_messages, history)
        readers["storebridge async_postgres (sync face)"] = lambda: astore.get_messages(SESSION, limit=20)
        if lc is not None:
            lc.add_messages([HumanMessage(content=CONTENT) for _ in range(history)])
            readers["LangChain SQLChatMessageHistory"] = lambda: lc.messages[-20:]
        if lcpg is not None:
            for start in range(0, history, 1000):
                lcpg.add_messages([HumanMessage(content=CONTENT) for _ in range(1000)])
            readers["langchain-postgres PostgresChatMessageHistory"] = lambda: lcpg.get_messages()[-20:]
        fast = {k: v for k, v in readers.items() if "LangChain" not in k and "langchain" not in k}
        slow = {k: v for k, v in readers.items() if k not in fast}
        times = interleaved_medians_ms(fast, reads)
        times.update(interleaved_medians_ms(slow, max(5, reads // 30)))
        limit_ms = times["hand-written psycopg"]
        print(f"\nPostgreSQL: newest 20 of a {history:,}-message session (median ms; ratio to the hand-written limit)")
        for name, ms in times.items():
            print(f"  {name:48s} {ms:8.3f} ms  {ratio(ms, limit_ms)}")
        print(f"  async_postgres awaited directly: {async_read_ms(url, prefix + 'a', reads):.3f} ms")
    finally:
        store.close()
        astore.close()
        hand.drop()
        for close in cleanup:
            close()
        with psycopg.connect(url, autocommit=True) as conn:
            for p in (prefix, prefix + "a"):
                conn.execute(f'DROP TABLE IF EXISTS "{p}messages", "{p}sessions", "{p}schema_versions"')
            conn.execute(f'DROP TABLE IF EXISTS "{lc_table}", "{lcpg_table}"')


def async_read_ms(url: str, prefix: str, reads: int) -> float:
    """The async store's read on its own loop (no sync-face hop), median ms."""
    async def run() -> float:
        store = AsyncPostgresConversationStore(url, table_prefix=prefix, max_size=2)
        try:
            for _ in range(50):
                await store.get_messages(SESSION, limit=20)
            samples = []
            for _ in range(reads):
                started = time.perf_counter()
                await store.get_messages(SESSION, limit=20)
                samples.append(time.perf_counter() - started)
            samples.sort()
            return samples[len(samples) // 2] * 1000.0
        finally:
            await store.close()

    return asyncio.run(run())


def bench_mysql(url: str, appends: int, history: int, reads: int) -> None:
    import pymysql

    from storebridge.urls import parse_url

    p = parse_url(url)
    tag = uuid.uuid4().hex[:8]
    prefix, hand_table = f"sbb{tag}_", f"sbb{tag}_hand"

    def connect() -> Any:
        return pymysql.connect(host=p.host or "127.0.0.1", port=p.port or 3306, user=p.username or "root",
                               password=p.password or "", database=p.database, charset="utf8mb4", autocommit=True,
                               ssl_disabled=True)

    store = MySQLConversationStore(url + ("&" if "?" in url else "?") + "ssl_disabled=true", table_prefix=prefix,
                                   max_size=2)
    hand = HandWritten(connect, hand_table, "%s", quote="`", text="LONGTEXT", real="DOUBLE")
    try:
        contenders = {"hand-written PyMySQL": hand.append,
                      "storebridge mysql": lambda: store.add_message(SESSION, message())}
        for append in contenders.values():
            for _ in range(20):
                append()
        rates = interleaved_rates(contenders, appends, block=50)
        limit = rates["hand-written PyMySQL"]
        print(f"\nMariaDB: append one message ({appends} each, msg/s; ratio to the hand-written limit)")
        for name, rate in rates.items():
            print(f"  {name:48s} {rate:8.0f} msg/s  {ratio(rate, limit)}")
        hand.fill(history)
        fill_store(store.add_messages, history)
        times = interleaved_medians_ms({"hand-written PyMySQL": lambda: hand.newest(20),
                                        "storebridge mysql": lambda: store.get_messages(SESSION, limit=20)}, reads)
        limit_ms = times["hand-written PyMySQL"]
        print(f"\nMariaDB: newest 20 of a {history:,}-message session (median ms; ratio to the hand-written limit)")
        for name, ms in times.items():
            print(f"  {name:48s} {ms:8.3f} ms  {ratio(ms, limit_ms)}")
    finally:
        store.close()
        hand.drop()
        conn = connect()
        try:
            conn.cursor().execute(f"DROP TABLE IF EXISTS `{prefix}messages`, `{prefix}sessions`, "
                                  f"`{prefix}schema_versions`")
        finally:
            conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appends", type=int, default=1000)
    parser.add_argument("--history", type=int, default=10_000)
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--postgres", default=os.environ.get("STOREBRIDGE_TEST_POSTGRES_URL",
                                                             "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--mysql", default=os.environ.get("STOREBRIDGE_TEST_MARIADB_URL",
                                                          "mysql://root@127.0.0.1:3306/test"))
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; load average {os.getloadavg()}")
    bench_postgres(args.postgres, args.appends, args.history, args.reads)
    bench_mysql(args.mysql, args.appends, args.history, args.reads)


if __name__ == "__main__":
    main()
