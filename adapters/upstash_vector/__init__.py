"""Upstash Vector knowledge store (namespaces of one index as collections)."""

from __future__ import annotations

from .knowledge import UpstashVectorKnowledgeStore

__all__ = ["UpstashVectorKnowledgeStore"]
