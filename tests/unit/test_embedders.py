"""Embedders: the deterministic default and the LangChain / LlamaIndex adapters."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from storebridge.embedders import Embedder, HashEmbedder, aembed_documents, aembed_query, as_embedder
from storebridge.errors import ConfigurationError


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def test_hash_embedder_is_deterministic_normalised_and_meaningful() -> None:
    emb = HashEmbedder(dimension=128)
    a = emb.embed_query("vector database for similarity search")
    assert a == HashEmbedder(dimension=128).embed_query("vector database for similarity search")
    assert len(a) == 128 and math.isclose(math.sqrt(sum(x * x for x in a)), 1.0, rel_tol=1e-9)
    near = emb.embed_query("a vector database does similarity search")
    far = emb.embed_query("bake bread with flour and yeast")
    assert _cos(a, near) > _cos(a, far) + 0.2
    assert emb.embed_documents(["x", "y"]) == [emb.embed_query("x"), emb.embed_query("y")]
    assert math.isclose(sum(x * x for x in emb.embed_query("")), 1.0)
    assert isinstance(emb, Embedder)
    with pytest.raises(ConfigurationError):
        HashEmbedder(dimension=1)


def test_langchain_embeddings_adapt() -> None:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    lc = DeterministicFakeEmbedding(size=12)
    emb = as_embedder(lc)
    assert emb.dimension == 12
    assert emb.embed_query("hi") == lc.embed_query("hi")
    assert emb.embed_documents(["a", "b"]) == lc.embed_documents(["a", "b"])
    assert asyncio.run(aembed_query(emb, "hi")) == lc.embed_query("hi")
    assert asyncio.run(aembed_documents(emb, ["a"])) == lc.embed_documents(["a"])


def test_llamaindex_embedding_adapts() -> None:
    from llama_index.core.embeddings import MockEmbedding

    li = MockEmbedding(embed_dim=8)
    emb = as_embedder(li)
    assert emb.dimension == 8
    assert emb.embed_query("q") == li.get_query_embedding("q")
    assert emb.embed_documents(["a", "b"]) == li.get_text_embedding_batch(["a", "b"])
    assert asyncio.run(aembed_documents(emb, ["a"])) == li.get_text_embedding_batch(["a"])


def test_our_embedder_passes_through_and_junk_is_refused() -> None:
    emb = HashEmbedder(16)
    assert as_embedder(emb) is emb
    assert asyncio.run(aembed_query(emb, "x")) == emb.embed_query("x")  # sync embedder run in a thread
    junk: Any = object()
    with pytest.raises(ConfigurationError, match="not an embedder"):
        as_embedder(junk)
