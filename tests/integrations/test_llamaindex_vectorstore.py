"""``StorebridgeVectorStore`` (a LlamaIndex vector store) over every knowledge backend, on both faces; and a
``VectorStoreIndex`` built through it, reopened with ``from_vector_store`` in a new process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.schema import ImageNode, NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.simple import SimpleVectorStore
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

import storebridge
from storebridge.errors import (
    ConfigurationError,
    NotSupportedError,
    UnsupportedFilterError,
    ValidationError,
)
from storebridge.integrations import llamaindex as llamaindex_integration
from storebridge.integrations._llamaindex_filters import from_metadata_filters
from storebridge.integrations.llamaindex import (
    RESERVED_KEYS,
    StorebridgeEmbedding,
    StorebridgeVectorStore,
)
from storebridge.testing import assert_same_json
from storebridge.testing.data import ROUND_TRIP_METADATA
from tests.engines import engine_url
from tests.integrations.test_llamaindex_backends import backend_params, close_backend, open_backend


class Subject:
    """A StorebridgeVectorStore over one face, called through the matching flavour of its methods."""

    def __init__(self, vector_store: StorebridgeVectorStore, is_async: bool, native: Any) -> None:
        self.vs, self.is_async, self.native = vector_store, is_async, native

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self.is_async:
            async_name = {"add": "async_add"}.get(name, "a" + name)
            return await getattr(self.vs, async_name)(*args, **kwargs)
        return getattr(self.vs, name)(*args, **kwargs)

    async def query(self, vector: list[float], k: int = 10, **fields: Any) -> Any:
        options = fields.pop("options", {})
        return await self.call("query", VectorStoreQuery(query_embedding=vector, similarity_top_k=k, **fields), **options)


@pytest.fixture(params=backend_params("knowledge"))
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    native, face = open_backend(request, tmp_path)
    try:
        yield Subject(StorebridgeVectorStore(face, "docs"), request.param[1] == "async", native)
    finally:
        close_backend(native)


def node(i: int, vector: list[float], ref: str | None = None, **metadata: Any) -> TextNode:
    relationships = {NodeRelationship.SOURCE: RelatedNodeInfo(node_id=ref)} if ref else {}
    return TextNode(id_=f"n{i}", text=f"text {i}", embedding=vector, metadata=metadata, relationships=relationships)


#: Metadata of the filter dataset: numbers, strings, lists, a missing key, None and empty lists.
DATA: list[dict[str, Any]] = [
    {"year": 2019, "lang": "en", "tags": ["ml", "ai"]},
    {"year": 2020, "lang": "de", "tags": ["ml"]},
    {"year": 2021, "lang": "en", "tags": []},
    {"year": 2022.5, "lang": "fr", "tags": ["db"]},
    {"year": 2023, "tags": None},
    {"lang": "en", "tags": ["ai", "db", "ml"]},
    {"year": 2024, "lang": "es"},
]
FILTERS = [
    MetadataFilters(filters=[MetadataFilter(key="lang", value="en")]),
    MetadataFilters(filters=[MetadataFilter(key="lang", value="en", operator=FilterOperator.NE)]),
    MetadataFilters(filters=[MetadataFilter(key="year", value=2021, operator=FilterOperator.GT)]),
    MetadataFilters(filters=[MetadataFilter(key="year", value=2021, operator=FilterOperator.GTE)]),
    MetadataFilters(filters=[MetadataFilter(key="year", value=2021, operator=FilterOperator.LT)]),
    MetadataFilters(filters=[MetadataFilter(key="year", value=2021, operator=FilterOperator.LTE)]),
    MetadataFilters(filters=[MetadataFilter(key="lang", value=["de", "fr"], operator=FilterOperator.IN)]),
    MetadataFilters(filters=[MetadataFilter(key="lang", value=["de", "fr"], operator=FilterOperator.NIN)]),
    MetadataFilters(filters=[MetadataFilter(key="tags", value="ml", operator=FilterOperator.CONTAINS)]),
    MetadataFilters(filters=[MetadataFilter(key="tags", value=["db", "ai"], operator=FilterOperator.ANY)]),
    MetadataFilters(filters=[MetadataFilter(key="tags", value=["ml", "ai"], operator=FilterOperator.ALL)]),
    MetadataFilters(filters=[MetadataFilter(key="tags", value=None, operator=FilterOperator.IS_EMPTY)]),
    MetadataFilters(filters=[MetadataFilter(key="year", value=None, operator=FilterOperator.IS_EMPTY)]),
    MetadataFilters(filters=[MetadataFilter(key="lang", value="en"), MetadataFilter(key="year", value=2020,
                                                                                   operator=FilterOperator.GT)],
                    condition=FilterCondition.OR),
    MetadataFilters(filters=[MetadataFilter(key="lang", value="en"), MetadataFilter(key="lang", value="de")],
                    condition=FilterCondition.NOT),
    MetadataFilters(filters=[
        MetadataFilter(key="tags", value="ml", operator=FilterOperator.CONTAINS),
        MetadataFilters(filters=[MetadataFilter(key="year", value=2020, operator=FilterOperator.LTE),
                                 MetadataFilter(key="tags", value=None, operator=FilterOperator.IS_EMPTY)],
                        condition=FilterCondition.OR),
    ]),
    MetadataFilters(filters=[MetadataFilters(filters=[MetadataFilter(key="tags", value=None,
                                                                     operator=FilterOperator.IS_EMPTY)],
                                             condition=FilterCondition.NOT),
                             MetadataFilter(key="lang", value="en")]),
]


def vectors(count: int) -> list[list[float]]:
    return [[1.0, float(i) / 3, (i % 3) - 1.0] for i in range(count)]


@pytest.mark.asyncio
async def test_nodes_round_trip(subject: Subject) -> None:
    """Text, metadata (exactly), relationships, templates and class come back; reserved keys do not."""
    nodes = [node(i, v, ref=f"doc{i % 2}", **meta) for i, (v, meta) in enumerate(zip(vectors(8), ROUND_TRIP_METADATA))]
    nodes[1].excluded_llm_metadata_keys = ["list"]
    nodes[2].metadata_template = "{key}={value}"
    assert await subject.call("add", nodes) == [n.node_id for n in nodes]
    result = await subject.query([1.0, 0.5, 0.0], k=len(nodes))
    assert sorted(result.ids) == sorted(n.node_id for n in nodes)
    assert result.similarities == sorted(result.similarities, reverse=True)
    by_id = {n.node_id: n for n in nodes}
    for got, node_id in zip(result.nodes, result.ids):
        want = by_id[node_id]
        assert type(got) is TextNode and got.node_id == node_id and got.text == want.text
        assert_same_json(got.metadata, want.metadata, f"metadata of {node_id}")
        assert got.ref_doc_id == want.ref_doc_id
        assert got.excluded_llm_metadata_keys == want.excluded_llm_metadata_keys
        assert got.metadata_template == want.metadata_template
    fetched = await subject.call("get_nodes", [n.node_id for n in nodes])
    assert [n.node_id for n in fetched] == [n.node_id for n in nodes]
    assert fetched[3].embedding == pytest.approx(nodes[3].embedding)
    assert not RESERVED_KEYS & set(fetched[0].metadata)


@pytest.mark.asyncio
async def test_node_classes_are_kept(subject: Subject) -> None:
    document = Document(id_="doc", text="a whole document", metadata={"k": 1}, embedding=[1.0, 0.0, 0.0])
    image = ImageNode(id_="img", text="caption", image_url="http://example.com/x.png", embedding=[0.0, 1.0, 0.0])
    await subject.call("add", [document, image])
    got = {n.node_id: n for n in await subject.call("get_nodes", ["doc", "img"])}
    assert type(got["doc"]) is Document and got["doc"].text == "a whole document" and got["doc"].metadata == {"k": 1}
    assert type(got["img"]) is ImageNode and got["img"].image_url == "http://example.com/x.png"


@pytest.mark.asyncio
async def test_refuses_what_it_cannot_store(subject: Subject) -> None:
    with pytest.raises(ValidationError, match="reserves"):
        await subject.call("add", [node(0, [1.0, 0.0, 0.0], _ref_doc_id="mine")])
    with pytest.raises(ValidationError, match="no embedding"):
        await subject.call("add", [TextNode(id_="x", text="no vector")])
    with pytest.raises(TypeError, match="bogus"):
        await subject.call("add", [node(0, [1.0, 0.0, 0.0])], bogus=True)
    assert await subject.call("add", []) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("index", range(len(FILTERS)))
async def test_filters(subject: Subject, index: int) -> None:
    """Each operator and condition, nested, against the translation evaluated here."""
    nodes = [node(i, v, **meta) for i, (v, meta) in enumerate(zip(vectors(len(DATA)), DATA))]
    await subject.call("add", nodes)
    filters = FILTERS[index]
    translated = from_metadata_filters(filters)
    expected = {f"n{i}" for i, meta in enumerate(DATA)
                if not translated.nothing and storebridge.filters.evaluate(translated.tree, meta)
                and (translated.refine is None or translated.refine(meta))}
    assert 0 < len(expected) < len(DATA), "the dataset must discriminate this filter"
    result = await subject.query([1.0, 0.0, 0.0], k=len(DATA), filters=filters)
    assert set(result.ids) == expected
    top = await subject.query([1.0, 0.0, 0.0], k=1, filters=filters)
    assert top.ids == [result.ids[0]], "the filter applies before the top-k cut"
    got = await subject.call("get_nodes", filters=filters)
    assert {n.node_id for n in got} == expected


@pytest.mark.asyncio
async def test_text_match_raises(subject: Subject) -> None:
    await subject.call("add", [node(0, [1.0, 0.0, 0.0], title="x")])
    filters = MetadataFilters(filters=[MetadataFilter(key="title", value="x", operator=FilterOperator.TEXT_MATCH)])
    with pytest.raises(UnsupportedFilterError):
        await subject.query([1.0, 0.0, 0.0], filters=filters)


@pytest.mark.asyncio
async def test_doc_ids_and_node_ids(subject: Subject) -> None:
    nodes = [node(i, v, ref=f"doc{i % 3}", n=i) for i, v in enumerate(vectors(9))]
    await subject.call("add", nodes)
    by_doc = await subject.query([1.0, 1.0, 0.0], k=9, doc_ids=["doc1", "doc2"])
    assert {n.ref_doc_id for n in by_doc.nodes} == {"doc1", "doc2"} and len(by_doc.ids) == 6
    among = await subject.query([1.0, 1.0, 0.0], k=2, node_ids=["n0", "n4", "n8", "missing"])
    everywhere = await subject.query([1.0, 1.0, 0.0], k=9)
    ranked = [i for i in everywhere.ids if i in {"n0", "n4", "n8"}]
    assert among.ids == ranked[:2], "node_ids ranks like a search restricted to them"
    assert among.similarities == pytest.approx([s for i, s in zip(everywhere.ids, everywhere.similarities)
                                                if i in ranked[:2]])
    both = await subject.query([1.0, 1.0, 0.0], k=9, node_ids=["n0", "n1", "n4"], doc_ids=["doc1"],
                               filters=MetadataFilters(filters=[MetadataFilter(key="n", value=4, operator=FilterOperator.NE)]))
    assert both.ids == ["n1"]
    empty = await subject.query([1.0, 1.0, 0.0], k=9, node_ids=[])
    assert len(empty.ids) == 9, "an empty node_ids list (what VectorStoreIndex passes) does not restrict"


@pytest.mark.asyncio
async def test_many_node_ids_are_searched_not_fetched(subject: Subject, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past NODE_IDS_BY_GET ids, the search runs in the store and only its hits among the ids are kept."""
    monkeypatch.setattr(llamaindex_integration, "NODE_IDS_BY_GET", 2)
    nodes = [node(i, v, ref=f"doc{i % 3}", n=i) for i, v in enumerate(vectors(40))]
    await subject.call("add", nodes)
    wanted = [f"n{i}" for i in range(0, 40, 7)]
    everywhere = await subject.query([1.0, 1.0, 0.0], k=40)
    among = await subject.query([1.0, 1.0, 0.0], k=3, node_ids=wanted)
    assert among.ids == [i for i in everywhere.ids if i in wanted][:3]
    filtered = await subject.query([1.0, 1.0, 0.0], k=10, node_ids=wanted, doc_ids=["doc0"],
                                   filters=MetadataFilters(filters=[MetadataFilter(key="n", value=None,
                                                                                   operator=FilterOperator.IS_EMPTY)],
                                                           condition=FilterCondition.NOT))
    assert sorted(filtered.ids) == sorted(i for i in wanted if int(i[1:]) % 3 == 0)


@pytest.mark.asyncio
async def test_deletes(subject: Subject) -> None:
    nodes = [node(i, v, ref=f"doc{i % 3}", group=i % 2) for i, v in enumerate(vectors(9))]
    await subject.call("add", nodes)
    await subject.call("delete", "doc0")
    remaining = {n.node_id for n in await subject.call("get_nodes")}
    assert remaining == {n.node_id for n in nodes if n.ref_doc_id != "doc0"}
    await subject.call("delete", "no-such-doc")
    await subject.call("delete_nodes", ["n1", "missing"])
    await subject.call("delete_nodes", filters=MetadataFilters(filters=[MetadataFilter(key="group", value=0)]))
    assert {n.node_id for n in await subject.call("get_nodes")} == {"n5", "n7"}
    await subject.call("delete_nodes", ["n5", "n7"],
                       filters=MetadataFilters(filters=[MetadataFilter(key="tags", value=None, operator=FilterOperator.IS_EMPTY),
                                                        MetadataFilter(key="group", value=1)]))
    assert await subject.call("get_nodes") == []
    with pytest.raises(ValidationError, match="clear"):
        await subject.call("delete_nodes")
    await subject.call("add", nodes[:2])
    await subject.call("clear")
    assert (await subject.query([1.0, 0.0, 0.0])).ids == []
    await subject.call("add", [node(0, [1.0, 2.0, 3.0, 4.0])])  # re-created with the new dimension
    assert (await subject.query([1.0, 0.0, 0.0, 0.0])).ids == ["n0"]


@pytest.mark.asyncio
async def test_missing_collection_reads_empty(subject: Subject) -> None:
    assert (await subject.query([1.0, 0.0])).ids == []
    assert await subject.call("get_nodes") == []
    await subject.call("delete", "doc")
    await subject.call("delete_nodes", ["x"])
    await subject.call("clear")


@pytest.mark.asyncio
async def test_mmr_matches_llamaindex(subject: Subject) -> None:
    """MMR picks what LlamaIndex's own SimpleVectorStore picks from the same candidates."""
    raw = [[1.0, 0.0, 0.0], [0.99, 0.05, 0.0], [0.98, 0.0, 0.06], [0.7, 0.7, 0.0], [0.6, 0.0, 0.8], [0.0, 1.0, 0.0]]
    nodes = [node(i, v) for i, v in enumerate(raw)]
    await subject.call("add", nodes)
    reference = SimpleVectorStore()
    reference.add(nodes)
    for threshold in (0.2, 0.5, 0.9):
        query = VectorStoreQuery(query_embedding=[1.0, 0.1, 0.0], similarity_top_k=3, mode=VectorStoreQueryMode.MMR)
        theirs = reference.query(query, mmr_threshold=threshold)
        ours = await subject.query([1.0, 0.1, 0.0], k=3, mode=VectorStoreQueryMode.MMR,
                                   options={"mmr_threshold": threshold, "mmr_prefetch_k": 6})
        assert ours.ids == theirs.ids, f"threshold {threshold}"
    plain = await subject.query([1.0, 0.1, 0.0], k=3)
    diverse = await subject.query([1.0, 0.1, 0.0], k=3, mode=VectorStoreQueryMode.MMR, mmr_threshold=0.2,
                                  options={"mmr_prefetch_factor": 2})
    assert set(plain.ids) == {"n0", "n1", "n2"} and diverse.ids != plain.ids
    assert diverse.similarities[0] == pytest.approx(plain.similarities[0]), "similarities are the documents' scores"


@pytest.mark.asyncio
async def test_unsupported_queries(subject: Subject) -> None:
    await subject.call("add", [node(0, [1.0, 0.0, 0.0])])
    with pytest.raises(NotSupportedError, match="sparse"):
        await subject.query([1.0, 0.0, 0.0], mode=VectorStoreQueryMode.SPARSE)
    with pytest.raises(ValidationError, match="query_embedding"):
        await subject.call("query", VectorStoreQuery(query_str="text only"))
    with pytest.raises(TypeError, match="unknown_option"):
        await subject.query([1.0, 0.0, 0.0], options={"unknown_option": 1})
    with pytest.raises(ValidationError, match="similarity_top_k"):
        await subject.query([1.0, 0.0, 0.0], k=0)


@pytest.mark.asyncio
async def test_distance_is_checked(subject: Subject) -> None:
    await subject.call("add", [node(0, [1.0, 0.0, 0.0])])
    face = subject.vs.client
    other = StorebridgeVectorStore(face, "docs", distance="l2")
    with pytest.raises(ConfigurationError, match="distance"):
        await (other.async_add([node(1, [0.0, 1.0, 0.0])]) if subject.is_async else
               asyncio.to_thread(other.add, [node(1, [0.0, 1.0, 0.0])]))
    same = StorebridgeVectorStore(face, "docs", distance="cos")
    assert same.distance == "cosine"


def test_async_methods_run_off_the_loop(tmp_path: Path) -> None:
    """Over a sync store, the async methods run the I/O in storebridge's thread pool, not on the loop."""
    from storebridge.adapters.sqlite.knowledge import SQLiteKnowledgeStore

    threads: list[str] = []

    class Recording(SQLiteKnowledgeStore):
        def search(self, *args: Any, **kwargs: Any) -> Any:
            threads.append(threading.current_thread().name)
            return super().search(*args, **kwargs)

    store = Recording(path=str(tmp_path / "k.db"))
    vs = StorebridgeVectorStore(store, "c")

    async def main() -> str:
        await vs.async_add([node(0, [1.0, 0.0])])
        await vs.aquery(VectorStoreQuery(query_embedding=[1.0, 0.0], similarity_top_k=1))
        return threading.current_thread().name

    loop_thread = asyncio.run(main())
    assert threads and all(t != loop_thread and t.startswith("storebridge-io") for t in threads)
    vs.query(VectorStoreQuery(query_embedding=[1.0, 0.0], similarity_top_k=1))
    assert threads[-1] == threading.current_thread().name, "the sync method calls the store inline"
    store.close()


# -- an index built here, reopened in a new process ------------------------------------------------------------

#: Knowledge backends a second process can open by URL. Add a name here to run the test on it: a name in
#: ``LOCAL_URLS`` uses a file or directory in the test's directory, ``pgvector`` the session's server, any
#: other name the URL in ``STOREBRIDGE_TEST_<NAME>_URL``. Not here: qdrant's local mode and milvus-lite, which
#: lock their directory/file to one process while the parent still holds it open.
PROCESS_BACKENDS = ["sqlite", "lancedb", "chroma", "pgvector"]
DIMENSION = 64

CHILD = """
import json, sys
import storebridge
from llama_index.core import VectorStoreIndex
from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters
from storebridge.integrations.llamaindex import StorebridgeEmbedding, StorebridgeVectorStore

url, collection, dimension = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = storebridge.connect(url, kind="knowledge")
index = VectorStoreIndex.from_vector_store(StorebridgeVectorStore(store, collection),
                                           embed_model=StorebridgeEmbedding(storebridge.HashEmbedder(dimension)))
out = {}
top = index.as_retriever(similarity_top_k=1).retrieve("which vector database is written in Rust")
out["top"] = [[hit.node.ref_doc_id, hit.node.get_content(), hit.node.metadata] for hit in top]
recent = MetadataFilters(filters=[MetadataFilter(key="year", value=2010, operator=FilterOperator.GTE),
                                  MetadataFilter(key="tags", value="db", operator=FilterOperator.CONTAINS)])
out["filtered"] = sorted(hit.node.ref_doc_id for hit in
                         index.as_retriever(similarity_top_k=10, filters=recent).retrieve("database"))
index.delete_ref_doc("doc-sqlite")
out["after_delete"] = sorted({hit.node.ref_doc_id for hit in index.as_retriever(similarity_top_k=10).retrieve("database")})
store.close()
print(json.dumps(out))
"""

DOCUMENTS = [
    Document(id_="doc-qdrant", text="Qdrant is a vector database written in Rust.",
             metadata={"year": 2021, "tags": ["db", "vector"]}),
    Document(id_="doc-sqlite", text="SQLite is an embedded relational database in a single file.",
             metadata={"year": 2000, "tags": ["db", "sql"]}),
    Document(id_="doc-redis", text="Redis keeps keys and values in memory.", metadata={"year": 2009, "tags": ["kv"]}),
    Document(id_="doc-lance", text="LanceDB stores vectors in columnar files.", metadata={"year": 2023, "tags": ["db"]}),
]


#: Embedded backends: a URL over a file or directory in the test's directory.
LOCAL_URLS = {
    "sqlite": "sqlite:///{}/knowledge.db",
    "lancedb": "lancedb:///{}/lance",
    "chroma": "chroma:///{}/chroma",
}


def process_url(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if name in LOCAL_URLS:
        return LOCAL_URLS[name].format(tmp_path)
    if name == "pgvector":  # the session's server (``tests/servers/pgvector.py``)
        url = str(request.getfixturevalue("pgvector_server").url)
        return "postgresql+pgvector://" + url.split("://", 1)[1]
    return engine_url(name)


@pytest.mark.parametrize("backend", PROCESS_BACKENDS)
def test_index_reopened_in_a_new_process(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = process_url(backend, tmp_path, request)
    collection = storebridge.testing.unique("li_")
    store = storebridge.connect(url, kind="knowledge")
    embed = StorebridgeEmbedding(storebridge.HashEmbedder(DIMENSION))
    try:
        context = StorageContext.from_defaults(vector_store=StorebridgeVectorStore(store, collection))
        index = VectorStoreIndex.from_documents(DOCUMENTS, storage_context=context, embed_model=embed)
        assert {n.node.ref_doc_id for n in index.as_retriever(similarity_top_k=4).retrieve("database")} == {
            d.doc_id for d in DOCUMENTS}
        done = subprocess.run([sys.executable, "-c", CHILD, url, collection, str(DIMENSION)], check=False, capture_output=True,
                              text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout.strip().splitlines()[-1])
        assert out["top"] == [["doc-qdrant", DOCUMENTS[0].text, DOCUMENTS[0].metadata]]
        assert out["filtered"] == ["doc-lance", "doc-qdrant"]
        assert out["after_delete"] == ["doc-lance", "doc-qdrant", "doc-redis"]
        assert store.count(collection) == 3, "the delete made in the other process is seen here"
    finally:
        store.drop_collection(collection)
        store.close()


def test_example_runs(tmp_path: Path) -> None:
    """``examples/llamaindex_index.py`` end to end, twice on one database (it starts fresh each time)."""
    root = Path(__file__).resolve().parents[2]
    url = f"sqlite:///{tmp_path / 'example.db'}"
    for _ in range(2):
        done = subprocess.run([sys.executable, str(root / "examples" / "llamaindex_index.py"), url],
                              check=False, capture_output=True, text=True, timeout=300, cwd=root)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert "[qdrant]" in lines[1] and lines[-1] == "after deleting 'redis': 3 nodes"
