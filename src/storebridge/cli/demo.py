"""The README demo, as a function: every store on the embedded defaults, no server, no configuration.

Run it twice: the second run resumes the same conversation (same session_id) and finds the documents
and the counter already there. ``STOREBRIDGE_DB`` chooses the file (default
``./.storebridge/storebridge.db``); ``STOREBRIDGE_*_URL`` variables point a kind elsewhere, as for
``storebridge.db()``. ``examples/quickstart.py`` and ``storebridge demo`` both run :func:`run`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

DOCS = [
    ("pg", "PostgreSQL is a relational database with strong SQL support.", {"kind": "sql", "year": 1996}),
    ("sqlite", "SQLite is an embedded SQL database engine in a single file.", {"kind": "sql", "year": 2000}),
    ("redis", "Redis is an in-memory key-value store, often used as a cache.", {"kind": "kv", "year": 2009}),
    ("qdrant", "Qdrant is a vector database for similarity search.", {"kind": "vector", "year": 2021}),
    ("chroma", "Chroma is an open-source embedding database for RAG.", {"kind": "vector", "year": 2022}),
]
COLLECTION = "databases"
SESSION_ID = "demo-session"
QUERY = "which database is good for vector similarity search?"


@dataclass(frozen=True)
class DemoResult:
    """What one run saw, so callers (and tests) can check it without parsing the text."""

    hits: list[str]
    messages_before: int
    messages_after: int
    runs: int | float


def run(echo: Callable[[str], None] = print) -> DemoResult:
    """Ingest and search, append to a resumable conversation, count runs in state; print with ``echo``."""
    import storebridge
    from storebridge import ConversationMessage, KnowledgeDocument

    embedder = storebridge.HashEmbedder(dimension=256)  # deterministic, offline; swap in a real model
    with storebridge.db() as db:
        # Knowledge: ingest (upsert is idempotent, so re-runs do not duplicate) and search with a filter.
        kb = db.knowledge
        kb.create_collection(COLLECTION, dimension=embedder.dimension, distance="cosine")
        vectors = embedder.embed_documents([text for _, text, _ in DOCS])
        kb.upsert(COLLECTION, [KnowledgeDocument(id=i, content=t, embedding=v, metadata=m)
                               for (i, t, m), v in zip(DOCS, vectors)])
        hits = kb.search(COLLECTION, embedder.embed_query(QUERY), k=2, filter={"year": {"$gte": 2010}})
        echo(f"search: {QUERY!r} (year >= 2010)")
        for hit in hits:
            echo(f"  {hit.score:.3f}  {hit.id:7} {hit.document.content}")

        # Conversation: append, then resume by opening the same session_id again.
        chat = db.conversation
        before = chat.count_messages(SESSION_ID)
        chat.add_message(SESSION_ID, ConversationMessage(role="user", content="Which store should I use for RAG?"))
        answer = f"Try {hits[0].id}." if hits else "No document matched the filter."
        chat.add_message(SESSION_ID, ConversationMessage(role="assistant", content=answer))
        history = chat.get_messages(SESSION_ID, limit=4)
        echo(f"conversation {SESSION_ID!r}: {before} messages before this run, newest {len(history)}:")
        for message in history:
            echo(f"  #{message.sequence} {message.role:9} {message.content}")
        after = chat.count_messages(SESSION_ID)

        # State: a counter that survives runs, and a key with a TTL.
        runs = db.state.increment("demo:runs")
        db.state.set("demo:last_query", QUERY, ttl=3600)
        ttl = db.state.ttl("demo:last_query")
        echo(f"state: demo has run {runs} time(s); last query expires in {ttl or 0:.0f} s")
    return DemoResult(hits=[hit.id for hit in hits], messages_before=before, messages_after=after, runs=runs)


__all__ = ["DOCS", "DemoResult", "run"]
