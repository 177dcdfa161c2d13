"""The LightRAG knowledge store: graph indexing with a deterministic fake LLM, every query mode, and
what the conformance suite does not see (re-indexing on upsert, delete from the graph, configuration)."""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lightrag", reason="[no engine on this machine] lightrag-hku is not installed")

from lightrag.base import DocStatus

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


async def on_store_loop(coro: Any) -> Any:
    """Peek at the store's LightRAG instance where it lives (storebridge's background loop)."""
    from storebridge.adapters.lightrag.knowledge import on_store_loop as run

    return await run(coro)


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
    status = await on_store_loop(coll.rag.aget_docs_by_ids(["a", "b", "c"]))
    assert set(status) == {"a", "b"}, "blank content is not sent to LightRAG"
    assert await on_store_loop(coll.rag.chunk_entity_relation_graph.has_node("Alpha"))
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
    assert (await on_store_loop(coll.rag.aget_docs_by_ids(["b"])))["b"]["content_summary"].startswith("Epsilon")
    assert await store.delete("c", filter={"k": "a"}) == 1
    assert "a" not in await on_store_loop(coll.rag.aget_docs_by_ids(["a"]))
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
    assert set(await on_store_loop(rag.aget_docs_by_ids(["x", "y", "z"]))) == {"x"}
    await store.upsert("c", docs)  # idempotent, no error for the deduplicated one
    assert await store.delete("c", ["x"]) == 1
    held = await on_store_loop(rag.aget_docs_by_ids(["y", "z"]))
    assert len(held) == 1, "one remaining document now carries the text in the graph"
    context = await store.query("c", "Alpha", mode="naive", only_need_context=True)
    assert same in context
    await store.close()


@pytest.mark.asyncio
async def test_sync_face_inside_a_loop_that_awaited_the_store(tmp_path: Path) -> None:
    """Regression: the LangGraph/LangChain bridges await a store on the caller's loop and call its sync face
    from inside that loop (blocking it). LightRAG had bound its worker queues to the caller's loop, so the
    sync upsert (re-indexing changed content) waited forever for the blocked loop."""
    emb = HashEmbedder(32)
    store = _store(tmp_path)
    await store.create_collection("c", 32)
    docs = _docs(emb)
    await store.insert("c", docs)  # awaited on this test's loop
    changed = docs[0].replace(content="Epsilon meets Zeta.")
    outcome: dict[str, Any] = {}

    def sync_upsert() -> None:
        try:
            outcome["ids"] = store.as_sync().upsert("c", [changed])
        except Exception as exc:  # noqa: BLE001 - asserted on below
            outcome["error"] = exc

    worker = threading.Thread(target=sync_upsert, daemon=True)
    worker.start()
    worker.join(60)  # blocks this loop for the duration, as a sync call made inside it does
    assert not worker.is_alive(), "deadlock: the sync face never returned while the caller's loop was blocked"
    assert outcome == {"ids": ["a"]}
    status = await on_store_loop(store._collections["c"].rag.aget_docs_by_ids(["a"]))
    assert status["a"]["content_summary"].startswith("Epsilon")
    assert [hit.id for hit in await store.search("c", changed.embedding, k=1)] == ["a"]
    await store.close()


@pytest.mark.asyncio
async def test_lightrag_runs_on_one_loop_whoever_calls(tmp_path: Path) -> None:
    """Awaited from this loop, from a second live loop in another thread, and through the sync face: the
    LLM is always awaited on one loop, not the caller's (LightRAG refuses a second live loop)."""
    loops: set[asyncio.AbstractEventLoop] = set()

    async def llm(prompt: str, **kwargs: Any) -> str:
        loops.add(asyncio.get_running_loop())
        return await fake_llm(prompt, **kwargs)

    emb = HashEmbedder(32)
    store = _store(tmp_path, llm_model_func=llm)
    await store.create_collection("c", 32)
    texts = ["Alpha and Beta are old friends.", "Gamma lives far away from Delta.", "Epsilon meets Zeta."]
    docs = [KnowledgeDocument(id=f"d{i}", content=t, embedding=emb.embed_query(t)) for i, t in enumerate(texts)]
    await store.insert("c", docs[:1])
    await asyncio.wait_for(asyncio.to_thread(lambda: asyncio.run(store.insert("c", docs[1:2]))), 60)
    await asyncio.wait_for(asyncio.to_thread(store.as_sync().insert, "c", docs[2:]), 60)
    assert len(loops) == 1 and asyncio.get_running_loop() not in loops
    status = await on_store_loop(store._collections["c"].rag.aget_docs_by_ids([d.id for d in docs]))
    assert {i: s["status"] for i, s in status.items()} == {d.id: DocStatus.PROCESSED for d in docs}
    await store.close()


@pytest.mark.asyncio
async def test_store_loop_keeps_the_callers_context_variables() -> None:
    from storebridge.adapters.lightrag.knowledge import on_store_loop as run

    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    request_id.set("r-42")

    async def where() -> tuple[str | None, bool]:
        return request_id.get(None), asyncio.get_running_loop() is not caller

    caller = asyncio.get_running_loop()
    assert await run(where()) == ("r-42", True)


def test_graph_file_path_is_unique_per_document() -> None:
    """LightRAG dedupes documents by the basename of ``file_path`` (parser hints stripped): the path we give
    it must be whole under its own normaliser and differ for every document id, whatever the source."""
    from lightrag.utils_pipeline import normalize_document_file_path

    from storebridge.adapters.lightrag.knowledge import graph_file_path

    assert graph_file_path("n1", None) == "n1"
    assert graph_file_path("a/b", "dir/x.[native].pdf") == "dir%2Fx.%5Bnative%5D.pdf#a%2Fb"
    assert graph_file_path("1", "a#b") == "a%23b#1" != graph_file_path("b#1", "a") == "a#b%231"
    hostile = ["a/b", "c/b", "b", "x.[native].pdf", "x.pdf", "..", "%2F", "\\b", "é/ü", "a b", "'\"", "#"]
    for source in (None, "docs/manual.pdf", "s.[mineru].pdf", "#", ""):
        paths = [graph_file_path(doc_id, source) for doc_id in hostile]
        assert len(set(paths)) == len(hostile)
        assert [normalize_document_file_path(p) for p in paths] == paths


@pytest.mark.asyncio
async def test_documents_sharing_a_source_are_all_indexed(tmp_path: Path) -> None:
    """Chunks of one file share a source_id; every one of them reaches the graph (in one insert or later)
    and the source stays readable in LightRAG's references."""
    emb = HashEmbedder(32)
    store = _store(tmp_path)
    await store.create_collection("c", 32)
    docs = [KnowledgeDocument(id=f"p{i}", content=f"Part {i} of the Alpha manual.", embedding=emb.embed_query(str(i)),
                              source_id="docs/manual.pdf") for i in range(3)]
    await store.insert("c", docs[:2])
    await store.insert("c", docs[2:])
    status = await on_store_loop(store._collections["c"].rag.aget_docs_by_ids([d.id for d in docs]))
    assert {i: s["status"] for i, s in status.items()} == {d.id: DocStatus.PROCESSED for d in docs}
    context = await store.query("c", "Alpha manual", mode="naive", only_need_context=True)
    assert "docs%2Fmanual.pdf#p0" in context
    await store.close()
