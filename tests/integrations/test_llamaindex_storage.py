"""``StorebridgeKVStore`` over every state backend: LlamaIndex's KV API, its docstore and index store on it,
and a whole ``StorageContext`` (vector store, docstore, index store) reloaded in a new process with
``load_index_from_storage`` from the same SQLite file, nothing persisted to disk by LlamaIndex."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.data_structs.data_structs import IndexDict
from llama_index.core.schema import TextNode
from llama_index.core.storage.docstore.keyval_docstore import KVDocumentStore
from llama_index.core.storage.index_store.keyval_index_store import KVIndexStore

import storebridge
from storebridge.errors import ValidationError
from storebridge.integrations.llamaindex import (
    StorebridgeEmbedding,
    StorebridgeKVStore,
    storebridge_storage_context,
)
from tests.integrations.test_llamaindex_backends import backend_params, close_backend, open_backend


class KV:
    """A StorebridgeKVStore called through the flavour matching the face it was given."""

    def __init__(self, kv: StorebridgeKVStore, is_async: bool) -> None:
        self.kv, self.is_async = kv, is_async

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self.is_async:
            return await getattr(self.kv, "a" + name)(*args, **kwargs)
        return getattr(self.kv, name)(*args, **kwargs)


@pytest.fixture(params=backend_params("state"))
def opened(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Any, bool]]:
    native, face = open_backend(request, tmp_path)
    try:
        yield native, face, request.param[1] == "async"
    finally:
        close_backend(native)


@pytest.fixture
def kv(opened: tuple[Any, Any, bool]) -> KV:
    _, face, is_async = opened
    return KV(StorebridgeKVStore(face), is_async)


@pytest.mark.asyncio
async def test_kv_operations(kv: KV) -> None:
    value = {"text": "ü 🚀", "n": 1, "f": 1.0, "nested": {"l": [1, None, True]}}
    await kv.call("put", "a", value)
    assert await kv.call("get", "a") == value
    assert await kv.call("get", "missing") is None
    await kv.call("put", "a", {"replaced": True}, collection="other")
    assert await kv.call("get", "a") == value, "collections are separate"
    await kv.call("put_all", [(f"k{i}", {"i": i}) for i in range(7)], collection="docstore/data", batch_size=3)
    assert await kv.call("get_all", "docstore/data") == {f"k{i}": {"i": i} for i in range(7)}
    assert await kv.call("get_all", "docstore") == {}, "a collection is not a prefix of another"
    assert await kv.call("get_all", "nothing") == {}
    assert await kv.call("delete", "k3", collection="docstore/data") is True
    assert await kv.call("delete", "k3", collection="docstore/data") is False
    assert len(await kv.call("get_all", "docstore/data")) == 6
    got = await kv.call("get", "a")
    got["text"] = "changed"
    assert (await kv.call("get", "a"))["text"] == "ü 🚀", "values are copies"


@pytest.mark.asyncio
async def test_kv_keys_never_collide(kv: KV) -> None:
    """Collections and keys with the separator, '%' and '/' map to distinct state keys."""
    pairs = [("a:b", "c"), ("a", "b:c"), ("a%3Ab", "c"), ("a/b", "c"), ("a", "b/c"), ("", "x"), ("x", ":")]
    for i, (collection, key) in enumerate(pairs):
        await kv.call("put", key, {"i": i}, collection=collection)
    for i, (collection, key) in enumerate(pairs):
        assert await kv.call("get", key, collection=collection) == {"i": i}
    assert await kv.call("get_all", "a") == {"b:c": {"i": 1}, "b/c": {"i": 4}}


@pytest.mark.asyncio
async def test_kv_refusals(kv: KV) -> None:
    with pytest.raises(ValidationError):
        await kv.call("put", "k", ["not", "a", "dict"])
    with pytest.raises(ValidationError):
        await kv.call("put", "", {"x": 1})
    with pytest.raises(ValidationError):
        await kv.call("put_all", [("a", {"x": 1})], batch_size=0)
    assert await kv.call("get_all") == {}


def test_docstore_and_index_store(opened: tuple[Any, Any, bool]) -> None:
    """LlamaIndex's own KV docstore and index store, unchanged, on a storebridge state backend."""
    _, face, _ = opened
    kv = StorebridgeKVStore(face, prefix="app/")
    docstore = KVDocumentStore(kv, namespace="ns", batch_size=10)
    nodes = [TextNode(id_=f"n{i}", text=f"node {i}", metadata={"i": i}) for i in range(5)]
    doc = Document(id_="doc", text="the whole document")
    for node in nodes:
        node.relationships = {"1": doc.as_related_node_info()}  # type: ignore[dict-item]
    docstore.add_documents(nodes)
    assert docstore.get_node("n3").get_content() == "node 3"
    assert set(docstore.docs) == {f"n{i}" for i in range(5)}
    info = docstore.get_ref_doc_info("doc")
    assert info is not None and sorted(info.node_ids) == [f"n{i}" for i in range(5)]
    docstore.delete_ref_doc("doc")
    assert docstore.docs == {}
    index_store = KVIndexStore(kv, namespace="ns")
    struct = IndexDict()
    struct.add_node(nodes[0], text_id="n0")
    index_store.add_index_struct(struct)
    reloaded = KVIndexStore(StorebridgeKVStore(face.as_sync(), prefix="app/"), namespace="ns").get_index_struct(
        struct.index_id)
    assert isinstance(reloaded, IndexDict) and reloaded.nodes_dict == {"n0": "n0"}
    assert all(key.startswith("app/") for key in face.as_sync().keys(pattern="*"))


# -- a StorageContext reloaded in a new process --------------------------------------------------------------

DIMENSION = 64
CHILD = """
import json, sys
import storebridge
from llama_index.core import load_index_from_storage
from storebridge.integrations.llamaindex import StorebridgeEmbedding, storebridge_storage_context

path, collection, dimension = sys.argv[1], sys.argv[2], int(sys.argv[3])
knowledge = storebridge.connect(f"sqlite:///{path}", kind="knowledge")
state = storebridge.connect(f"sqlite:///{path}", kind="state")
context = storebridge_storage_context(knowledge, state, collection_name=collection)
index = load_index_from_storage(context, embed_model=StorebridgeEmbedding(storebridge.HashEmbedder(dimension)))
hits = index.as_retriever(similarity_top_k=2).retrieve("vector database written in Rust")
print(json.dumps({"index_id": index.index_id, "top": [h.node.ref_doc_id for h in hits],
                  "docs": sorted(context.docstore.get_all_document_hashes().values()),
                  "stored": sorted(context.docstore.docs)}))
"""


@pytest.mark.parametrize("store_nodes_override", [False, True], ids=["vector-store-text", "docstore-nodes"])
def test_storage_context_reloaded_in_a_new_process(tmp_path: Path, store_nodes_override: bool) -> None:
    path = tmp_path / "app.db"
    knowledge = storebridge.connect(f"sqlite:///{path}", kind="knowledge")
    state = storebridge.connect(f"sqlite:///{path}", kind="state")
    try:
        context = storebridge_storage_context(knowledge, state, collection_name="kb")
        documents = [Document(id_="rust", text="Qdrant is a vector database written in Rust."),
                     Document(id_="c", text="SQLite is a relational database written in C."),
                     Document(id_="kv", text="Redis keeps keys in memory.")]
        index = VectorStoreIndex.from_documents(documents, storage_context=context,
                                                embed_model=StorebridgeEmbedding(storebridge.HashEmbedder(DIMENSION)),
                                                store_nodes_override=store_nodes_override)
        assert not list(tmp_path.glob("*.json")), "LlamaIndex persisted nothing to disk"
        done = subprocess.run([sys.executable, "-c", CHILD, str(path), "kb", str(DIMENSION)], check=False, capture_output=True, text=True,
                              timeout=300, cwd=Path(__file__).resolve().parents[2])
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout.strip().splitlines()[-1])
        assert out["index_id"] == index.index_id
        assert out["top"][0] == "rust"
        assert {"c", "kv", "rust"} <= set(out["docs"]), "the documents hashed by the ingesting process"
        assert len(out["stored"]) == (3 if store_nodes_override else 0)
        assert knowledge.count("kb") == 3
    finally:
        knowledge.close()
        state.close()
