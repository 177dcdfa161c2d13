"""Conversation store overhead against hand-written sqlite3 (a script, not a test).

    .venv/bin/python benchmarks/bench_conversation.py [--appends 2000] [--history 10000] [--reads 2000]

1. Append N messages one at a time: ``store.add_message`` (one transaction each) against a hand-written
   ``INSERT`` + ``COMMIT`` per message, same pragmas (WAL, synchronous=FULL) and the same indexes.
2. Fill one 10,000-message session, then "load the newest 20" many times: ``get_messages(limit=20)``
   against a hand-written ``SELECT ... ORDER BY seq DESC LIMIT 20`` (median of the runs).

The JSON-files store is timed too, for information, and LangChain's ``SQLChatMessageHistory`` when
``langchain_community`` is importable. Everything runs on temp files that are removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

from storebridge.adapters.jsonfiles import JSONConversationStore
from storebridge.adapters.sqlite.conversation import SQLiteConversationStore
from storebridge.conversation import ConversationStore
from storebridge.models import ConversationMessage

CONTENT = "The quick brown fox jumps over the lazy dog. " * 4  # ~180 bytes, a short chat turn
SESSION = "bench-session"


# -- hand-written sqlite3 ---------------------------------------------------------------------------------


class HandWritten:
    """What one would write by hand: a messages table with the same indexes, a Python-side sequence."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS messages (id TEXT PRIMARY KEY, session_id TEXT NOT NULL, seq INTEGER NOT NULL,"
            " role TEXT NOT NULL, content TEXT NOT NULL, tool_calls TEXT, tool_call_id TEXT, metadata TEXT,"
            " created_at REAL NOT NULL)"
        )
        self.conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS messages_seq ON messages (session_id, seq)")
        self.conn.execute("CREATE INDEX IF NOT EXISTS messages_created ON messages (session_id, created_at)")
        self.seq = 0

    def append(self, content: str) -> None:
        self.seq += 1
        self.conn.execute("BEGIN")
        self.conn.execute(
            "INSERT INTO messages (id, session_id, seq, role, content, tool_calls, tool_call_id, metadata, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (uuid.uuid4().hex, SESSION, self.seq, "user", content, None, None, "{}", time.time()),
        )
        self.conn.execute("COMMIT")

    def fill(self, n: int) -> None:
        rows = [(uuid.uuid4().hex, SESSION, self.seq + i + 1, "user" if i % 2 else "assistant", CONTENT, None, None,
                 "{}", time.time()) for i in range(n)]
        self.seq += n
        self.conn.execute("BEGIN")
        self.conn.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self.conn.execute("COMMIT")

    def newest(self, n: int) -> list[tuple[Any, ...]]:
        rows = self.conn.execute(
            "SELECT id, session_id, role, content, tool_calls, tool_call_id, metadata, created_at, seq FROM messages"
            " WHERE session_id = ? ORDER BY seq DESC LIMIT ?", (SESSION, n),
        ).fetchall()
        rows.reverse()
        return rows

    def close(self) -> None:
        self.conn.close()


# -- timing helpers ---------------------------------------------------------------------------------------


def appends_per_second(append: Callable[[], None], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        append()
    return n / (time.perf_counter() - started)


def interleaved_rates(appends: dict[str, Callable[[], None]], n: int, block: int = 50) -> dict[str, float]:
    """Appends per second of each contender, run in alternating blocks so that disk noise from other
    processes (fsync latency varies a lot on shared machines) hits all of them alike."""
    spent = dict.fromkeys(appends, 0.0)
    done = 0
    while done < n:
        size = min(block, n - done)
        for name, append in appends.items():
            started = time.perf_counter()
            for _ in range(size):
                append()
            spent[name] += time.perf_counter() - started
        done += size
    return {name: n / seconds for name, seconds in spent.items()}


def interleaved_medians_ms(reads: dict[str, Callable[[], Any]], runs: int) -> dict[str, float]:
    """Median time of each contender's read, in ms, taking turns read by read (same noise for all)."""
    for read in reads.values():  # warm the page cache and the statement cache
        for _ in range(min(50, runs)):
            read()
    samples: dict[str, list[float]] = {name: [] for name in reads}
    for _ in range(runs):
        for name, read in reads.items():
            started = time.perf_counter()
            read()
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(times) * 1000.0 for name, times in samples.items()}


def median_ms(read: Callable[[], Any], runs: int) -> float:
    for _ in range(min(50, runs)):  # warm the page cache and the statement cache
        read()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        read()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000.0


def store_append(store: ConversationStore) -> Callable[[], None]:
    def append() -> None:
        store.add_message(SESSION, ConversationMessage(role="user", content=CONTENT))
    return append


def fill_store(store: ConversationStore, n: int, batch: int = 500) -> None:
    for start in range(0, n, batch):
        store.add_messages(SESSION, [ConversationMessage(role="user" if i % 2 else "assistant", content=CONTENT)
                                     for i in range(start, min(n, start + batch))])


# -- the benchmark ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appends", type=int, default=2000, help="messages appended one at a time (default 2000)")
    parser.add_argument("--history", type=int, default=10_000, help="messages in the read session (default 10000)")
    parser.add_argument("--reads", type=int, default=2000, help="timed 'newest 20' reads (default 2000)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="multiplies --appends and --reads (default 3)")
    args = parser.parse_args(argv)

    print(f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}")
    with tempfile.TemporaryDirectory(prefix="storebridge-bench-") as tmp:
        # 1. appends -------------------------------------------------------------------------------------
        print(f"\n1. append {args.appends * args.rounds} messages one at a time (WAL, synchronous=FULL, one commit "
              f"each; the contenders alternate in blocks of 50)")
        hand = HandWritten(os.path.join(tmp, "hand-append.db"))
        store = SQLiteConversationStore(path=os.path.join(tmp, "store-append.db"))
        json_store = JSONConversationStore(directory=os.path.join(tmp, "json-append"))
        contenders = {"hand": lambda: hand.append(CONTENT), "store": store_append(store),
                      "json": store_append(json_store)}
        for append in contenders.values():  # warm-up: files, pages, statement caches
            appends_per_second(append, 20)
        best = interleaved_rates(contenders, args.appends * args.rounds)
        hand.close()
        store.close()
        json_store.close()
        print(f"   hand-written sqlite3      {best['hand']:9.0f} msg/s")
        print(f"   SQLiteConversationStore   {best['store']:9.0f} msg/s   ratio {best['store'] / best['hand']:.2f}x"
              f"  (target >= 0.80x)")
        print(f"   JSONConversationStore     {best['json']:9.0f} msg/s   ratio {best['json'] / best['hand']:.2f}x"
              f"  (fsync per append; for information)")

        # 2. newest 20 of a long session -----------------------------------------------------------------
        print(f"\n2. load the newest 20 of a {args.history}-message session (median of {args.reads * args.rounds} "
              f"reads each, taking turns)")
        hand = HandWritten(os.path.join(tmp, "hand-read.db"))
        hand.fill(args.history)
        store = SQLiteConversationStore(path=os.path.join(tmp, "store-read.db"))
        fill_store(store, args.history)
        json_store = JSONConversationStore(directory=os.path.join(tmp, "json-read"))
        fill_store(json_store, args.history)
        assert [m.sequence for m in store.get_messages(SESSION, limit=20)] == list(
            range(args.history - 19, args.history + 1))
        reads = interleaved_medians_ms({"hand": lambda: hand.newest(20),
                                        "store": lambda: store.get_messages(SESSION, limit=20)},
                                       args.reads * args.rounds)
        json_ms = median_ms(lambda: json_store.get_messages(SESSION, limit=20), max(20, args.reads // 20))
        print(f"   hand-written sqlite3      {reads['hand']:9.3f} ms")
        print(f"   SQLiteConversationStore   {reads['store']:9.3f} ms   ratio {reads['store'] / reads['hand']:.2f}x"
              f"  (target <= 2.00x)")
        print(f"   JSONConversationStore     {json_ms:9.3f} ms   (reads back from the end of the file; for information)")
        hand.close()
        store.close()
        json_store.close()

        # 3. LangChain, when installed -------------------------------------------------------------------
        print("\n3. LangChain SQLChatMessageHistory")
        bench_langchain(tmp, args)
    return 0


def bench_langchain(tmp: str, args: argparse.Namespace) -> None:
    try:
        from langchain_community.chat_message_histories import SQLChatMessageHistory
        from langchain_core.messages import HumanMessage
    except ImportError as exc:
        print(f"   skipped: langchain_community is not importable ({exc}); pip install langchain-community")
        return
    url = f"sqlite:///{os.path.join(tmp, 'langchain.db')}"
    history = SQLChatMessageHistory(session_id=SESSION, connection=url)
    rate = appends_per_second(lambda: history.add_message(HumanMessage(content=CONTENT)), args.appends)
    print(f"   append: {rate:9.0f} msg/s (its own engine settings)")
    history.add_messages([HumanMessage(content=CONTENT) for _ in range(args.history - args.appends)])
    # SQLChatMessageHistory has no "newest n": reading the history loads every message.
    ms = median_ms(lambda: history.messages[-20:], max(10, args.reads // 100))
    print(f"   newest 20 (loads all {args.history}, then slices): {ms:9.3f} ms")


if __name__ == "__main__":
    raise SystemExit(main())
