"""The JSON-files conversation store: one human-readable JSON-lines file per session, no dependencies."""

from .conversation import JSONConversationStore

__all__ = ["JSONConversationStore"]
