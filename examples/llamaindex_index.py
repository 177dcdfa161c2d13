"""A LlamaIndex ``VectorStoreIndex`` on a storebridge knowledge backend, built and queried offline.

    python examples/llamaindex_index.py                          # embedded SQLite file in a temp directory
    python examples/llamaindex_index.py sqlite:///my_index.db    # your own file
    STOREBRIDGE_KNOWLEDGE_URL=<url> python examples/llamaindex_index.py   # any other engine: only the URL changes

Needs ``pip install "storebridge[llamaindex]"``. Vectors come from storebridge's ``HashEmbedder``
(deterministic, no network, not semantic): replace ``embed_model`` with a real LlamaIndex embedding model
for real use. No LLM is called: the example retrieves, it does not synthesise answers.
"""

from __future__ import annotations

import os
import sys
import tempfile

from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters

import storebridge
from storebridge.integrations.llamaindex import StorebridgeEmbedding, StorebridgeVectorStore

DOCUMENTS = [
    Document(id_="qdrant", text="Qdrant is a vector database written in Rust, with payload filtering.",
             metadata={"kind": "vector", "year": 2021}),
    Document(id_="pgvector", text="pgvector adds vector similarity search to Postgres.",
             metadata={"kind": "vector", "year": 2021}),
    Document(id_="sqlite", text="SQLite is an embedded relational database stored in a single file.",
             metadata={"kind": "relational", "year": 2000}),
    Document(id_="redis", text="Redis is an in-memory key-value store, often used as a cache.",
             metadata={"kind": "key-value", "year": 2009}),
]


def main() -> None:
    url = (sys.argv[1] if len(sys.argv) > 1 else os.environ.get("STOREBRIDGE_KNOWLEDGE_URL")
           or f"sqlite:///{os.path.join(tempfile.mkdtemp(), 'knowledge.db')}")
    embed_model = StorebridgeEmbedding(storebridge.HashEmbedder(256))
    store = storebridge.connect(url, kind="knowledge")  # the one line that picks the engine
    try:
        vector_store = StorebridgeVectorStore(store, "llamaindex_example")
        vector_store.clear()  # start fresh, so the example can run again on the same database
        VectorStoreIndex.from_documents(DOCUMENTS, embed_model=embed_model,
                                        storage_context=StorageContext.from_defaults(vector_store=vector_store))

        # Later, or in another process: the index is the vector store; nothing else was persisted.
        index = VectorStoreIndex.from_vector_store(StorebridgeVectorStore(store, "llamaindex_example"),
                                                   embed_model=embed_model)
        print(f"knowledge backend: {store!r}")
        for hit in index.as_retriever(similarity_top_k=2).retrieve("vector database in Rust"):
            print(f"  {hit.score:.3f}  [{hit.node.ref_doc_id}] {hit.node.get_content()}")

        newer = MetadataFilters(filters=[MetadataFilter(key="year", value=2005, operator=FilterOperator.GT),
                                         MetadataFilter(key="kind", value="vector", operator=FilterOperator.NE)])
        print("filtered (year > 2005, kind != vector):")
        for hit in index.as_retriever(similarity_top_k=3, filters=newer).retrieve("database"):
            print(f"  {hit.score:.3f}  [{hit.node.ref_doc_id}] {hit.node.metadata}")

        index.delete_ref_doc("redis")
        print(f"after deleting 'redis': {store.count('llamaindex_example')} nodes")
    finally:
        store.close()


if __name__ == "__main__":
    main()
