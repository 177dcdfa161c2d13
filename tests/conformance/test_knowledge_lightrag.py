"""The knowledge conformance suite over LightRAG (a directory per test), with a deterministic fake LLM,
``HashEmbedder`` as LightRAG's embedding function and a code-point tokenizer: fully offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from storebridge.testing import KnowledgeStoreSuite, StoreFactory

pytest.importorskip("lightrag", reason="[no engine on this machine] lightrag-hku is not installed")

from tests.unit.test_lightrag_knowledge import fake_llm


class TestLightRAGKnowledge(KnowledgeStoreSuite):
    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> StoreFactory:
        from storebridge.adapters.lightrag import LightRAGKnowledgeStore
        from storebridge.embedders import HashEmbedder

        return lambda: LightRAGKnowledgeStore(f"lightrag:///{tmp_path / 'rag'}", llm_model_func=fake_llm,
                                              embedding_factory=HashEmbedder,
                                              lightrag_options={"max_parallel_insert": 8})
