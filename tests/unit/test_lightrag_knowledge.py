"""The LightRAG knowledge store: graph indexing with a deterministic fake LLM, every query mode, and
what the conformance suite does not see (re-indexing on upsert, delete from the graph, configuration)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lightrag", reason="[no engine on this machine] lightrag-hku is not installed")

from storebridge.embedders import HashEmbedder
from storebridge.errors import ConfigurationError, NotSupportedError, ValidationError
from storebridge.models import KnowledgeDocument

D = "<|#|>"  # LightRAG's tuple delimiter
ANSWER = "FAKE ANSWER"
PROMPTS: list[str] = []


async def fake_llm(prompt: str, system_prompt: str | None = None, history_messages: Any = None,
                   **kwargs: Any) -> str:
    """Answers LightRAG's prompts deterministically: keywords as JSON, extraction in the delimiter
    format (two entities named after the first two capitalised words, one relation), else ``ANSWER``."""
    text = (system_prompt or "") + "\n" + prompt
    PROMPTS.append(text)
    if "high_level_keywords" in text:
        return json.dumps({"high_level_keywords": ["friendship"], "low_level_keywords": ["Alpha", "Beta"]})
    if "Extract entities" in text or "entity_name" in text:
        return (f"entity{D}Alpha{D}Concept{D}Alpha is a thing in the text.\n"
                f"entity{D}Beta{D}Concept{D}Beta is another thing in the text.\n"
                f"relation{D}Alpha{D}Beta{D}friendship{D}Alpha is a friend of Beta.\n<|COMPLETE|>")
    return ANSWER


def _store(path: Path, **kwargs: Any) -> Any:
    from storebridge.adapters.lightrag import LightRAGKnowledgeStore

    kwargs.setdefault("llm_model_func", fake_llm)
    kwargs.setdefault("embedding_func", HashEmbedder(32))
    return LightRAGKnowledgeStore(working_dir=path, **kwargs)


def _docs(emb: HashEmbedder) -> list[KnowledgeDocument]:
    texts = {"a": "Alpha and Beta are old friends.", "b": "Gamma lives far away from Delta.", "c": ""}
    return [KnowledgeDocument(id=i, content=t, embedding=emb.embed_query(t or "empty"), metadata={"k": i})
            for i, t in texts.items()]


@pytest.mark.asyncio
async def test_insert_and_every_query_mode(tmp_path: Path) -> None:
    emb = HashEmbedder(32)
    store = _store(tmp_path)
    await store.create_collection("c", 32)
    docs = _docs(emb)
    PROMPTS.clear()
    assert await store.insert("c", docs) == ["a", "b", "c"]
    assert any("Extract entities" in p for p in PROMPTS), "LightRAG never asked the LLM to extract entities"
    coll = store._collections["c"]
    status = await coll.rag.aget_docs_by_ids(["a", "b", "c"])
    assert set(status) == {"a", "b"}, "blank content is not sent to LightRAG"
    assert await coll.rag.chunk_entity_relation_graph.has_node("Alpha")
    for mode in ("naive", "local", "global", "hybrid", "mix", "bypass"):
        answer = await store.query("c", "Who is Alpha's friend?", mode=mode)
        assert isinstance(answer, str) and answer, mode
    assert await store.query("c", "Who is Alpha's friend?", mode="mix") == ANSWER
    context = await store.query("c", "Alpha", mode="naive", only_need_context=True)
    assert "Alpha and Beta are old friends." in context
    hits = await store.search("c", emb.embed_query("Alpha and Beta are old friends."), k=2)
    assert hits[0].id == "a" and hits[0].score == pytest.approx(1.0)
    with pytest.raises(ValidationError):
        await store.query("c", "x", mode="sideways")
    await store.close()


@pytest.mark.asyncio
async def test_upsert_reindexes_and_delete_removes_from_graph(tmp_path: Path) -> None:
    emb = HashEmbedder(32)
    store = _store(tmp_path)
    await store.create_collection("c", 32)
    docs = _docs(emb)
    await store.insert("c", docs)
    coll = store._collections["c"]
    PROMPTS.clear()
    await store.upsert("c", docs)  # same content: nothing to re-extract
    assert not any("Extract entities" in p for p in PROMPTS)
    changed = docs[1].replace(content="Epsilon meets Zeta.")
    await store.upsert("c", [changed])
    assert any("Epsilon meets Zeta." in p for p in PROMPTS), "changed content is re-indexed"
    assert (await coll.rag.aget_docs_by_ids(["b"]))["b"]["content_summary"].startswith("Epsilon")
    assert await store.delete("c", filter={"k": "a"}) == 1
    assert "a" not in await coll.rag.aget_docs_by_ids(["a"])
    assert await store.count("c") == 2
    await store.close()


@pytest.mark.asyncio
async def test_reopen_keeps_graph_and_documents(tmp_path: Path) -> None:
    emb = HashEmbedder(32)
    store = _store(tmp_path)
    await store.create_collection("c", 32)
    await store.insert("c", _docs(emb))
    await store.close()
    again = _store(tmp_path)
    assert await again.count("c") == 3
    context = await again.query("c", "Alpha", mode="naive", only_need_context=True)
    assert "Alpha and Beta are old friends." in context
    await again.close()


@pytest.mark.asyncio
async def test_without_llm_search_works_query_refuses(tmp_path: Path) -> None:
    emb = HashEmbedder(32)
    store = _store(tmp_path, llm_model_func=None)
    await store.create_collection("c", 32)
    await store.insert("c", _docs(emb))
    assert len(await store.search("c", emb.embed_query("Gamma"), k=3)) == 3
    with pytest.raises(NotSupportedError):
        await store.query("c", "Gamma")
    await store.close()


def test_configuration_errors(tmp_path: Path) -> None:
    from storebridge.adapters.lightrag import LightRAGKnowledgeStore

    with pytest.raises(ConfigurationError):
        LightRAGKnowledgeStore(working_dir=tmp_path)  # no embedding function
    with pytest.raises(ConfigurationError):
        LightRAGKnowledgeStore("chroma:///x", embedding_func=HashEmbedder(4))
    with pytest.raises(ConfigurationError):
        LightRAGKnowledgeStore(working_dir=tmp_path, embedding_func=HashEmbedder(4),
                               lightrag_options={"workspace": "x"})


@pytest.mark.asyncio
async def test_embedding_dimension_must_match(tmp_path: Path) -> None:
    from storebridge.errors import OperationFailedError

    store = _store(tmp_path, embedding_func=HashEmbedder(8))
    await store.create_collection("c", 4)
    with pytest.raises((ConfigurationError, OperationFailedError)):
        await store.insert("c", [KnowledgeDocument(id="x", content="Alpha", embedding=[1.0, 0, 0, 0])])
    await store.close()


def test_sync_face(tmp_path: Path) -> None:
    store = _store(tmp_path).as_sync()
    store.create_collection("c", 32)
    emb = HashEmbedder(32)
    store.insert("c", _docs(emb))
    assert len(store.search("c", emb.embed_query("Alpha"), k=2)) == 2  # query() is on the async store only
    assert store.count("c", filter={"k": {"$in": ["a", "b"]}}) == 2
    store.close()


@pytest.mark.asyncio
async def test_same_content_under_two_ids(tmp_path: Path) -> None:
    """LightRAG keeps a text once; the second id is accepted, and takes over when the first is deleted."""
    emb = HashEmbedder(32)
    store = _store(tmp_path)
    await store.create_collection("c", 32)
    same = "Alpha and Beta are old friends."
    docs = [KnowledgeDocument(id=i, content=same, embedding=emb.embed_query(i)) for i in ("x", "y")]
    await store.insert("c", docs)
    await store.insert("c", [KnowledgeDocument(id="z", content=same, embedding=emb.embed_query("z"))])
    rag = store._collections["c"].rag
    assert set(await rag.aget_docs_by_ids(["x", "y", "z"])) == {"x"}
    await store.upsert("c", docs)  # idempotent, no error for the deduplicated one
    assert await store.delete("c", ["x"]) == 1
    held = await rag.aget_docs_by_ids(["y", "z"])
    assert len(held) == 1, "one remaining document now carries the text in the graph"
    context = await store.query("c", "Alpha", mode="naive", only_need_context=True)
    assert same in context
    await store.close()
