"""The README demo: every store on the embedded defaults, no server, no configuration.

Run it twice: the second run resumes the same conversation (same session_id) and finds the documents
and the counter already there. Set STOREBRIDGE_DB to choose the file (default ./.storebridge/storebridge.db).
"""

from __future__ import annotations

import storebridge
from storebridge import ConversationMessage, KnowledgeDocument

DOCS = [
    ("pg", "PostgreSQL is a relational database with strong SQL support.", {"kind": "sql", "year": 1996}),
    ("sqlite", "SQLite is an embedded SQL database engine in a single file.", {"kind": "sql", "year": 2000}),
    ("redis", "Redis is an in-memory key-value store, often used as a cache.", {"kind": "kv", "year": 2009}),
    ("qdrant", "Qdrant is a vector database for similarity search.", {"kind": "vector", "year": 2021}),
    ("chroma", "Chroma is an open-source embedding database for RAG.", {"kind": "vector", "year": 2022}),
]


def main() -> None:
    embedder = storebridge.HashEmbedder(dimension=256)  # deterministic, offline; swap in a real model
    with storebridge.db() as db:
        # Knowledge: ingest (upsert is idempotent, so re-runs do not duplicate) and search with a filter.
        kb = db.knowledge
        kb.create_collection("databases", dimension=embedder.dimension, distance="cosine")
        vectors = embedder.embed_documents([text for _, text, _ in DOCS])
        kb.upsert("databases", [KnowledgeDocument(id=i, content=t, embedding=v, metadata=m)
                                for (i, t, m), v in zip(DOCS, vectors)])
        query = "which database is good for vector similarity search?"
        hits = kb.search("databases", embedder.embed_query(query), k=2, filter={"year": {"$gte": 2010}})
        print(f"search: {query!r} (year >= 2010)")
        for hit in hits:
            print(f"  {hit.score:.3f}  {hit.id:7} {hit.document.content}")

        # Conversation: append, then resume by opening the same session_id again.
        chat = db.conversation
        session_id = "demo-session"
        before = chat.count_messages(session_id)
        chat.add_message(session_id, ConversationMessage(role="user", content="Which store should I use for RAG?"))
        chat.add_message(session_id, ConversationMessage(role="assistant", content=f"Try {hits[0].id}."))
        history = chat.get_messages(session_id, limit=4)
        print(f"conversation {session_id!r}: {before} messages before this run, newest {len(history)}:")
        for message in history:
            print(f"  #{message.sequence} {message.role:9} {message.content}")

        # State: a counter that survives runs, and a key with a TTL.
        runs = db.state.increment("demo:runs")
        db.state.set("demo:last_query", query, ttl=3600)
        print(f"state: demo has run {runs} time(s); last query expires in {db.state.ttl('demo:last_query'):.0f} s")


if __name__ == "__main__":
    main()
