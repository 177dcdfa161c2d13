"""The ``langchain`` backend: LangChain stores as storebridge knowledge, conversation and state stores.

    storebridge.KNOWLEDGE_STORES.create("langchain", vectorstore_factory=lambda name, emb: InMemoryVectorStore(emb))
    storebridge.CONVERSATION_STORES.create("langchain", history_factory=histories.__getitem__)
    storebridge.STATE_STORES.create("langchain", store=InMemoryByteStore())

The modules import ``langchain_core``; the registry imports them only when one of these is created.
"""
