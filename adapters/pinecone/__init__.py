"""Pinecone knowledge store (serverless indexes, namespaces as collections).

The store class is exported lazily, so the client-free modules here (``_encoding``, ``_filters``,
shared with the Upstash Vector adapter) import without the ``pinecone`` SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .knowledge import PineconeKnowledgeStore


def __getattr__(name: str) -> Any:
    if name == "PineconeKnowledgeStore":
        from .knowledge import PineconeKnowledgeStore

        return PineconeKnowledgeStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["PineconeKnowledgeStore"]
