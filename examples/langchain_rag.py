"""A tiny LangChain RAG chain on storebridge, offline: a retriever over a storebridge knowledge store, a fake
chat model, and chat history in a storebridge conversation store.

    python examples/langchain_rag.py                          # the embedded SQLite default (./.storebridge/)
    python examples/langchain_rag.py sqlite:///rag-demo.db    # another engine: change only the URL

The URL (or STOREBRIDGE_KNOWLEDGE_URL / STOREBRIDGE_CONVERSATION_URL) picks the engines; the chain does not
change. Run it twice: documents are upserted by id (no duplicates) and the conversation resumes.
"""

from __future__ import annotations

import sys
import warnings
from operator import itemgetter
from typing import Any

from langchain_core._api.deprecation import LangChainDeprecationWarning
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import RunnablePassthrough
from langchain_core.runnables.history import RunnableWithMessageHistory

import storebridge
from storebridge.integrations.langchain import StorebridgeChatMessageHistory, StorebridgeVectorStore

# LangChain deprecates RunnableWithMessageHistory / BaseChatMessageHistory in favour of LangGraph persistence
# (storebridge.integrations.langgraph.StorebridgeLangGraphStore); the demo keeps the classic API quiet.
warnings.filterwarnings("ignore", category=LangChainDeprecationWarning)

DOCS = [
    Document(id="pg", page_content="PostgreSQL is a relational database with strong SQL support.",
             metadata={"kind": "sql"}),
    Document(id="sqlite", page_content="SQLite is an embedded SQL database engine in a single file.",
             metadata={"kind": "sql"}),
    Document(id="redis", page_content="Redis is an in-memory key-value store, often used as a cache.",
             metadata={"kind": "kv"}),
    Document(id="qdrant", page_content="Qdrant is a vector database for similarity search.",
             metadata={"kind": "vector"}),
]
QUESTIONS = ["Which database is embedded in a single file?", "And which one is good for a cache?"]


class HashEmbeddings(Embeddings):
    """storebridge's deterministic offline embedder as LangChain ``Embeddings``; use a real model in production."""

    def __init__(self, dimension: int = 256) -> None:
        self.embedder = storebridge.HashEmbedder(dimension)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.embed_query(text)


def format_docs(docs: list[Document]) -> str:
    return "\n".join(f"- [{doc.id}] {doc.page_content}" for doc in docs)


def main(url: str | None = None) -> list[str]:
    """Answer QUESTIONS with the chain; ``url`` (one URL for both stores) switches the engine."""
    answers: list[str] = []
    with storebridge.db(url, knowledge_url=url) as db:
        vectorstore = StorebridgeVectorStore(db.knowledge, HashEmbeddings(), collection_name="rag_docs")
        vectorstore.add_documents(DOCS)  # upsert by Document.id: re-runs do not duplicate
        retriever = vectorstore.as_retriever(search_kwargs={"k": 2})

        model = GenericFakeChatModel(messages=iter([  # offline: canned answers stand in for an LLM
            AIMessage("SQLite: it is an embedded engine in a single file."),
            AIMessage("Redis, the in-memory key-value store."),
        ]))
        prompt = ChatPromptTemplate.from_messages([
            ("system", "Answer from this context only:\n{context}"),
            MessagesPlaceholder("history"),
            ("human", "{question}"),
        ])
        retrieved: list[str] = []

        def remember_context(context: str) -> str:
            retrieved.append(context)
            return context

        chain = RunnablePassthrough.assign(
            context=itemgetter("question") | retriever | format_docs | remember_context) | prompt | model
        chat = RunnableWithMessageHistory(
            chain,
            lambda session_id: StorebridgeChatMessageHistory(db.conversation, session_id, limit=20),
            input_messages_key="question", history_messages_key="history",
        )
        config: Any = {"configurable": {"session_id": "langchain-rag-demo"}}
        for question in QUESTIONS:
            answer = chat.invoke({"question": question}, config)
            answers.append(str(answer.content))
            print(f"Q: {question}\n   context:\n     {retrieved[-1].replace(chr(10), chr(10) + '     ')}\n"
                  f"A: {answer.content}")
        history = StorebridgeChatMessageHistory(db.conversation, "langchain-rag-demo").messages
        print(f"conversation 'langchain-rag-demo' now holds {len(history)} messages ({db!r})")
    return answers


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
