"""LlamaIndex stores as storebridge backends (registry name ``llamaindex`` in the knowledge and conversation
kinds): :class:`LlamaIndexKnowledgeStore` wraps LlamaIndex vector stores, :class:`LlamaIndexConversationStore`
a ``BaseChatStore``. Importing this package imports ``llama_index.core``."""

from .conversation import LlamaIndexConversationStore
from .knowledge import LLAMAINDEX_METADATA_KEYS, LlamaIndexKnowledgeStore

__all__ = ["LLAMAINDEX_METADATA_KEYS", "LlamaIndexConversationStore", "LlamaIndexKnowledgeStore"]
