"""Text in, vectors out: a tiny protocol the knowledge layer never depends on.

The core stores and searches raw vectors. An :class:`Embedder` turns text into them; LangChain
``Embeddings`` and LlamaIndex ``BaseEmbedding`` objects adapt to it through :func:`as_embedder`
(their libraries are imported only when you pass one of their objects).

:class:`HashEmbedder` is deterministic and dependency-free: good for tests and zero-config demos, where
texts sharing words land near each other. It is not a semantic model; use a real one in production.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from .errors import ConfigurationError, ValidationError


@runtime_checkable
class Embedder(Protocol):
    """Anything with a dimension that embeds documents and queries."""

    @property
    def dimension(self) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


async def aembed_documents(embedder: Embedder, texts: Sequence[str]) -> list[list[float]]:
    """Use the embedder's native async method when it has one, else a worker thread."""
    native = getattr(embedder, "aembed_documents", None)
    if native is not None:
        return list(await native(list(texts)))
    from .bridge import run_in_thread

    return await run_in_thread(embedder.embed_documents, list(texts))


async def aembed_query(embedder: Embedder, text: str) -> list[float]:
    native = getattr(embedder, "aembed_query", None)
    if native is not None:
        return list(await native(text))
    from .bridge import run_in_thread

    return await run_in_thread(embedder.embed_query, text)


_TOKEN_RE = re.compile(r"\w+", re.UNICODE)


class HashEmbedder:
    """Deterministic bag-of-words + character-trigram hashing into ``dimension`` floats, L2-normalised."""

    def __init__(self, dimension: int = 256) -> None:
        if not isinstance(dimension, int) or dimension < 2:
            raise ConfigurationError("HashEmbedder dimension must be an int >= 2")
        self._dimension = dimension

    @property
    def dimension(self) -> int:
        return self._dimension

    def __repr__(self) -> str:
        return f"HashEmbedder(dimension={self._dimension})"

    def _features(self, text: str) -> list[tuple[str, float]]:
        words = _TOKEN_RE.findall(text.lower())
        feats = [(f"w:{w}", 1.0) for w in words]
        for word in words:
            padded = f"#{word}#"
            feats.extend((f"c:{padded[i:i + 3]}", 0.3) for i in range(len(padded) - 2))
        return feats

    def embed_query(self, text: str) -> list[float]:
        if not isinstance(text, str):
            raise ValidationError("text to embed must be a string")
        vector = [0.0] * self._dimension
        for feature, weight in self._features(text):
            digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "little") % self._dimension
            vector[index] += weight if digest[4] & 1 else -weight
        norm = math.sqrt(sum(x * x for x in vector))
        if norm == 0.0:  # empty text: a fixed unit vector, so cosine stays defined
            vector[0] = 1.0
            return vector
        return [x / norm for x in vector]

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.embed_query(t) for t in texts]


class _LangChainEmbedder:
    """A LangChain ``Embeddings`` seen as an :class:`Embedder` (async methods used natively)."""

    def __init__(self, embeddings: Any, dimension: int | None) -> None:
        self.embeddings = embeddings
        self._dimension = dimension

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = len(self.embeddings.embed_query("dimension probe"))
        return self._dimension

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return [list(v) for v in self.embeddings.embed_documents(list(texts))]

    def embed_query(self, text: str) -> list[float]:
        return list(self.embeddings.embed_query(text))

    async def aembed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return [list(v) for v in await self.embeddings.aembed_documents(list(texts))]

    async def aembed_query(self, text: str) -> list[float]:
        return list(await self.embeddings.aembed_query(text))


class _LlamaIndexEmbedder:
    """A LlamaIndex ``BaseEmbedding`` seen as an :class:`Embedder`."""

    def __init__(self, embedding: Any, dimension: int | None) -> None:
        self.embedding = embedding
        self._dimension = dimension

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = len(self.embedding.get_query_embedding("dimension probe"))
        return self._dimension

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return [list(v) for v in self.embedding.get_text_embedding_batch(list(texts))]

    def embed_query(self, text: str) -> list[float]:
        return list(self.embedding.get_query_embedding(text))

    async def aembed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return [list(v) for v in await self.embedding.aget_text_embedding_batch(list(texts))]

    async def aembed_query(self, text: str) -> list[float]:
        return list(await self.embedding.aget_query_embedding(text))


def _is_instance_of(obj: Any, module: str, qualname: str) -> bool:
    """isinstance() against a class of a library, without importing it unless it is loaded already."""
    import sys

    mod = sys.modules.get(module)
    cls = getattr(mod, qualname, None) if mod is not None else None
    return isinstance(cls, type) and isinstance(obj, cls)


def as_embedder(obj: Any, *, dimension: int | None = None) -> Embedder:
    """Accept one of ours, a LangChain ``Embeddings`` or a LlamaIndex ``BaseEmbedding``."""
    if _is_instance_of(obj, "langchain_core.embeddings", "Embeddings") or _is_instance_of(
        obj, "langchain_core.embeddings.embeddings", "Embeddings"
    ):
        return _LangChainEmbedder(obj, dimension)
    if _is_instance_of(obj, "llama_index.core.base.embeddings.base", "BaseEmbedding"):
        return _LlamaIndexEmbedder(obj, dimension)
    if isinstance(obj, Embedder):
        return obj
    raise ConfigurationError(
        f"{type(obj).__name__} is not an embedder: pass a storebridge Embedder, a LangChain Embeddings "
        "or a LlamaIndex BaseEmbedding"
    )


__all__ = ["Embedder", "HashEmbedder", "aembed_documents", "aembed_query", "as_embedder"]
