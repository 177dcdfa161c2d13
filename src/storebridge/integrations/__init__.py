"""Bridges between storebridge stores and AI frameworks, both ways.

``storebridge.integrations.langchain`` exposes storebridge stores as LangChain classes,
``storebridge.integrations.langgraph`` as a LangGraph store, ``storebridge.integrations.llamaindex`` as
LlamaIndex classes. ``import storebridge`` imports none of them; each imports its framework when imported.
"""
