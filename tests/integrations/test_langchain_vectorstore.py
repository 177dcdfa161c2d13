"""``StorebridgeVectorStore`` over every knowledge backend: LangChain's standard suite unmodified, then
relevance scores, retrievers, MMR, filters (dicts and structured queries) and native async."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables import RunnableLambda
from langchain_core.structured_query import Comparator, Comparison, Operation, Operator, StructuredQuery
from langchain_tests.integration_tests import VectorStoreIntegrationTests

from storebridge import Distance
from storebridge.errors import FilterError, NotSupportedError, UnsupportedFilterError
from storebridge.filters import And, Not, Op, Or
from storebridge.filters import Comparison as SbComparison
from storebridge.integrations.langchain import StorebridgeTranslator, StorebridgeVectorStore
from tests.integrations.test_langchain_backends import backend_params, close_backend, open_backend

#: pytest-asyncio runs the async cases (LangChain's suite mixes them with sync ones, which carry the mark
#: harmlessly; its "not an async function" warning is silenced).
pytestmark = [pytest.mark.asyncio,
              pytest.mark.filterwarnings("ignore:The test <Function:pytest.PytestWarning")]


class TestStandardVectorStore(VectorStoreIntegrationTests):
    """LangChain's own suite, sync and async cases, over each knowledge backend's sync and async face."""

    @pytest.fixture(params=backend_params("knowledge"))
    def vectorstore(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorebridgeVectorStore]:  # type: ignore[override]
        native, face = open_backend(request, tmp_path)
        try:
            yield StorebridgeVectorStore(face, self.get_embeddings(), collection_name="standard")
        finally:
            close_backend(native)


# -- the rest of the LangChain surface -----------------------------------------------------------------------


class AxisEmbeddings(Embeddings):
    """Each known word is one unit axis: texts sharing no word are orthogonal, so scores are exact."""

    WORDS = ("cats", "dogs", "fish", "birds")

    def embed_query(self, text: str) -> list[float]:
        vector = [1.0 if word in text.split() else 0.0 for word in self.WORDS]
        norm = math.sqrt(sum(vector)) or 1.0
        return [x / norm for x in vector] if any(vector) else [0.0, 0.0, 0.0, 1e-3]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(t) for t in texts]


CORPUS = [
    ("1", "cats", {"year": 2020, "tags": ["pets", "small"], "lang": "en"}),
    ("2", "cats dogs", {"year": 2021, "tags": ["pets"], "lang": "de"}),
    ("3", "dogs", {"year": 2022, "tags": ["pets", "loud"], "lang": "en"}),
    ("4", "fish", {"year": 2023, "tags": ["water"], "lang": "fr"}),
    ("5", "birds", {"year": 2024, "tags": [], "lang": "en"}),
]


@pytest.fixture(params=backend_params("knowledge"))
def face(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    native, store_face = open_backend(request, tmp_path)
    try:
        yield store_face
    finally:
        close_backend(native)


def make_store(face: Any, distance: str = "cosine") -> StorebridgeVectorStore | None:
    """The corpus in a collection of ``distance``; None (after checking the typed refusal) where the backend
    does not declare that metric."""
    if Distance.parse(distance) not in face.capabilities.distances:
        with pytest.raises(NotSupportedError):
            StorebridgeVectorStore(face, AxisEmbeddings(), f"c_{distance}", distance=distance).add_texts(["cats"])
        return None
    vs = StorebridgeVectorStore(face, AxisEmbeddings(), f"c_{distance}", distance=distance)
    vs.add_texts([t for _, t, _ in CORPUS], [m for _, _, m in CORPUS], ids=[i for i, _, _ in CORPUS])
    return vs


def test_documents_round_trip_exactly(face: Any) -> None:
    vs = StorebridgeVectorStore(face, AxisEmbeddings(), "exact")
    metadata = {"nested": {"a": [1, 2.5, None, True]}, "id": "not-the-id", "page_content": "x", "": 1}
    [doc_id] = vs.add_documents([Document(page_content="cats", metadata=metadata, id="d1")])
    assert doc_id == "d1"
    assert vs.get_by_ids(["d1"]) == [Document(id="d1", page_content="cats", metadata=metadata)]
    stored = face.as_sync().get("exact", ["d1"])[0]
    assert stored.content == "cats" and stored.metadata == metadata  # LangChain metadata is ours, exactly
    generated = vs.add_texts(["dogs"])
    assert len(generated) == 1 and generated[0]


@pytest.mark.parametrize("distance", ["cosine", "l2", "dot"])
def test_relevance_scores_per_distance(face: Any, distance: str) -> None:
    vs = make_store(face, distance)
    if vs is None:
        return
    scored = vs.similarity_search_with_score("cats", k=5)
    relevance = vs.similarity_search_with_relevance_scores("cats", k=5)
    assert [d.id for d, _ in scored] == [d.id for d, _ in relevance]
    assert all(0.0 <= r <= 1.0 for _, r in relevance)
    by_id = {d.id: r for d, r in relevance}
    assert by_id["1"] == pytest.approx(1.0)  # identical unit vectors
    expected_same_half = {"cosine": math.sqrt(0.5), "dot": math.sqrt(0.5),
                          "l2": 1 - math.sqrt(2 - 2 * math.sqrt(0.5)) / math.sqrt(2)}[distance]
    assert by_id["2"] == pytest.approx(expected_same_half)  # 45 degrees apart
    assert by_id["3"] == pytest.approx(0.0, abs=1e-9)  # orthogonal
    raw = {d.id: s for d, s in scored}  # our score: cosine similarity / 1/(1+d) / dot product
    assert raw["3"] == pytest.approx({"cosine": 0.0, "dot": 0.0, "l2": 1 / (1 + math.sqrt(2))}[distance])


async def test_async_relevance_and_search_match_sync(face: Any) -> None:
    vs = make_store(face)
    assert vs is not None
    assert await vs.asimilarity_search_with_relevance_scores("dogs", k=3) == \
        vs.similarity_search_with_relevance_scores("dogs", k=3)
    assert await vs.asimilarity_search("dogs", k=2) == vs.similarity_search("dogs", k=2)
    vector = AxisEmbeddings().embed_query("fish")
    assert await vs.asimilarity_search_by_vector(vector, k=1) == vs.similarity_search_by_vector(vector, k=1)
    assert (await vs.asimilarity_search_by_vector(vector, k=1))[0].id == "4"


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_retriever_score_threshold_and_mmr(face: Any, flavour: str) -> None:
    vs = make_store(face)
    assert vs is not None
    threshold = vs.as_retriever(search_type="similarity_score_threshold",
                                search_kwargs={"score_threshold": 0.5, "k": 5})
    mmr = vs.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 5, "lambda_mult": 0.3})
    similar = vs.as_retriever(search_kwargs={"k": 2, "filter": {"lang": "en"}})
    if flavour == "sync":
        above, diverse, english = threshold.invoke("cats"), mmr.invoke("cats dogs"), similar.invoke("cats")
    else:
        above, diverse, english = (await threshold.ainvoke("cats"), await mmr.ainvoke("cats dogs"),
                                   await similar.ainvoke("cats"))
    assert [d.id for d in above] == ["1", "2"]  # 1.0 and 0.707 pass 0.5; the orthogonal ones do not
    assert diverse[0].id == "2" and len(diverse) == 2
    assert diverse[1].id in {"4", "5"}  # lambda 0.3 favours diversity: an orthogonal text, not "cats"/"dogs"
    assert english[0].id == "1" and all(d.metadata["lang"] == "en" for d in english)


async def test_mmr_prefers_diversity(face: Any) -> None:
    vs = StorebridgeVectorStore(face, AxisEmbeddings(), "mmr")
    vs.add_texts(["cats", "cats", "cats dogs", "dogs"], ids=["a", "b", "c", "d"])
    plain = [d.id for d in vs.similarity_search("cats", k=2)]
    diverse = [d.id for d in vs.max_marginal_relevance_search("cats", k=2, fetch_k=4, lambda_mult=0.2)]
    assert set(plain) == {"a", "b"}  # the two copies are the two most similar
    assert diverse[0] in {"a", "b"} and diverse[1] not in {"a", "b"}
    vector = AxisEmbeddings().embed_query("cats")
    assert [d.id for d in await vs.amax_marginal_relevance_search_by_vector(vector, k=2, fetch_k=4,
                                                                           lambda_mult=0.2)] == diverse
    assert [d.id for d in await vs.amax_marginal_relevance_search("cats", k=2, fetch_k=4, lambda_mult=0.2)] == diverse


async def test_filters_dict_tree_and_structured_query(face: Any) -> None:
    vs = make_store(face)
    assert vs is not None
    every = {"k": 5}
    assert {d.id for d in vs.similarity_search("cats", filter={"year": {"$gte": 2022}}, **every)} == {"3", "4", "5"}
    structured = Operation(operator=Operator.AND, arguments=[
        Comparison(comparator=Comparator.CONTAIN, attribute="tags", value="pets"),
        Operation(operator=Operator.NOT, arguments=[Comparison(comparator=Comparator.EQ, attribute="lang", value="de")]),
    ])
    assert {d.id for d in vs.similarity_search("cats", filter=structured, **every)} == {"1", "3"}
    query = StructuredQuery(query="cats", filter=Comparison(comparator=Comparator.IN, attribute="lang", value=["fr"]))
    assert [d.id for d in await vs.asimilarity_search("cats", filter=query, **every)] == ["4"]
    tree = Or((SbComparison("year", Op.LT, 2021), SbComparison("year", Op.GT, 2023)))
    assert {d.id for d in vs.similarity_search("cats", filter=tree, **every)} == {"1", "5"}
    with pytest.raises(UnsupportedFilterError):
        vs.similarity_search("cats", filter=Comparison(comparator=Comparator.LIKE, attribute="lang", value="e%"))
    with pytest.raises(UnsupportedFilterError):
        vs.similarity_search("cats", filter=lambda doc: True)
    with pytest.raises(FilterError):
        vs.similarity_search("cats", filter={"year": {"$regex": "x"}})


async def test_delete_by_ids_filter_and_everything(face: Any) -> None:
    vs = make_store(face)
    assert vs is not None
    assert vs.delete(["1", "missing"]) is True
    assert await vs.adelete(filter={"lang": "fr"}) is True
    assert sorted(d.id for d in vs.get_by_ids(["1", "2", "3", "4", "5"])) == ["2", "3", "5"]
    assert await vs.aget_by_ids(["5", "missing", "2"]) == [Document(id="5", page_content="birds", metadata=CORPUS[4][2]),
                                                          Document(id="2", page_content="cats dogs",
                                                                   metadata=CORPUS[1][2])]
    vs.delete()  # LangChain: no ids means everything
    assert vs.similarity_search("cats") == [] and vs.get_by_ids(["2"]) == []
    vs.add_texts(["fish"], ids=["again"])  # the collection comes back on the next write
    assert [d.id for d in vs.similarity_search("fish", k=1)] == ["again"]


async def test_from_texts_by_url_and_store(tmp_path: Path) -> None:
    """Switching the engine is changing the URL; ``afrom_texts`` is the async twin."""
    url = f"sqlite:///{tmp_path / 'kb.db'}"
    vs = StorebridgeVectorStore.from_texts(["cats", "dogs"], AxisEmbeddings(), [{"n": 1}, {"n": 2}], url=url,
                                           collection_name="pets")
    assert [d.metadata for d in vs.similarity_search("dogs", k=1)] == [{"n": 2}]
    again = await StorebridgeVectorStore.afrom_texts(["fish"], AxisEmbeddings(), store=vs.store,
                                                     collection_name="pets", ids=["f"])
    assert {d.id for d in again.similarity_search("cats", k=5)} >= {"f"}
    docs = [Document(page_content="birds", metadata={"x": 1}, id="b")]
    from_docs = await StorebridgeVectorStore.afrom_documents(docs, AxisEmbeddings(), store=vs.store,
                                                             collection_name="pets")
    assert from_docs.get_by_ids(["b"]) == docs
    vs.store.close()
    with pytest.raises(Exception, match="either store= or url="):
        StorebridgeVectorStore.from_texts(["x"], AxisEmbeddings(), url=url, store=vs.store)


def test_existing_collection_keeps_its_metric(face: Any) -> None:
    """A store object over a collection someone else created uses that collection's metric."""
    if make_store(face, "l2") is None:
        return
    reader = StorebridgeVectorStore(face, AxisEmbeddings(), "c_l2")  # distance defaults to cosine
    [(doc, relevance)] = reader.similarity_search_with_relevance_scores("dogs", k=1)
    assert doc.id == "3" and relevance == pytest.approx(1.0)
    assert reader._select_relevance_score_fn()(1 / (1 + math.sqrt(2))) == pytest.approx(0.0)


class _OneFace:
    """A store whose other face must never be touched: proves sync methods use ``as_sync()`` only and async
    methods ``as_async()`` only (so an async store's coroutines are awaited natively, not run in a thread)."""

    def __init__(self, face: Any, allowed: str) -> None:
        self.face, self.allowed = face, allowed

    def as_sync(self) -> Any:
        assert self.allowed == "sync", "an async method used the sync face"
        return self.face.as_sync()

    def as_async(self) -> Any:
        assert self.allowed == "async", "a sync method used the async face"
        return self.face.as_async()


async def test_each_flavour_uses_its_own_face(face: Any) -> None:
    sync_only = StorebridgeVectorStore(_OneFace(face, "sync"), AxisEmbeddings(), "faces")
    sync_only.add_texts(["cats", "dogs"], ids=["1", "2"])
    assert [d.id for d in sync_only.similarity_search("cats", k=1)] == ["1"]
    sync_only.max_marginal_relevance_search("cats", k=1)
    sync_only.get_by_ids(["1"])
    sync_only.delete(["2"])
    async_only = StorebridgeVectorStore(_OneFace(face, "async"), AxisEmbeddings(), "faces")
    await async_only.aadd_texts(["fish"], ids=["3"])
    assert [d.id for d in await async_only.asimilarity_search("fish", k=1)] == ["3"]
    await async_only.asimilarity_search_with_relevance_scores("fish", k=1)
    await async_only.amax_marginal_relevance_search("fish", k=1)
    assert [d.id for d in await async_only.aget_by_ids(["1", "3"])] == ["1", "3"]
    await async_only.adelete(["3"])


def test_bad_input_is_refused() -> None:
    from storebridge.adapters.memory import MemoryStateStore

    with pytest.raises(Exception, match="storebridge store"):
        StorebridgeVectorStore(object(), AxisEmbeddings())
    with pytest.raises(Exception, match="invalid collection name"):
        StorebridgeVectorStore(MemoryStateStore(), AxisEmbeddings(), "bad name")


# -- the structured-query translator ---------------------------------------------------------------------------


@pytest.mark.parametrize("comparator, value, expected", [
    (Comparator.EQ, "x", SbComparison("f", Op.EQ, "x")),
    (Comparator.NE, 1, SbComparison("f", Op.NE, 1)),
    (Comparator.GT, 1.5, SbComparison("f", Op.GT, 1.5)),
    (Comparator.GTE, 2, SbComparison("f", Op.GTE, 2)),
    (Comparator.LT, 3, SbComparison("f", Op.LT, 3)),
    (Comparator.LTE, 4, SbComparison("f", Op.LTE, 4)),
    (Comparator.IN, ["a", "b"], SbComparison("f", Op.IN, ("a", "b"))),
    (Comparator.NIN, [1], SbComparison("f", Op.NIN, (1,))),
    (Comparator.CONTAIN, "ml", SbComparison("f", Op.CONTAINS, "ml")),
])
def test_translator_maps_every_comparator(comparator: Comparator, value: Any, expected: Any) -> None:
    assert Comparison(comparator=comparator, attribute="f", value=value).accept(StorebridgeTranslator()) == expected


def test_translator_operators_and_errors() -> None:
    translator = StorebridgeTranslator()
    a = Comparison(comparator=Comparator.EQ, attribute="a", value=1)
    b = Comparison(comparator=Comparator.EQ, attribute="b", value=2)
    one, two = SbComparison("a", Op.EQ, 1), SbComparison("b", Op.EQ, 2)
    assert Operation(operator=Operator.AND, arguments=[a, b]).accept(translator) == And((one, two))
    assert Operation(operator=Operator.OR, arguments=[a, b]).accept(translator) == Or((one, two))
    assert Operation(operator=Operator.NOT, arguments=[a]).accept(translator) == Not(one)
    assert Operation(operator=Operator.NOT, arguments=[a, b]).accept(translator) == Not(Or((one, two)))
    assert translator.visit_structured_query(StructuredQuery(query="q", filter=None)) == ("q", {})
    assert translator.visit_structured_query(StructuredQuery(query="q", filter=a)) == ("q", {"filter": one})
    with pytest.raises(UnsupportedFilterError, match="like"):
        Comparison(comparator=Comparator.LIKE, attribute="a", value="x%").accept(translator)
    with pytest.raises(UnsupportedFilterError, match="contain"):
        Comparison(comparator=Comparator.CONTAIN, attribute="a", value="x").accept(StorebridgeTranslator(contain=False))
    assert Comparator.CONTAIN not in StorebridgeTranslator(contain=False).allowed_comparators
    assert Comparator.LIKE not in translator.allowed_comparators
    with pytest.raises(FilterError):  # a date object (what LangChain's query parser makes) is not a scalar
        Comparison(comparator=Comparator.GT, attribute="d", value={"type": "date", "date": "2024-01-01"}).accept(translator)
    with pytest.raises(FilterError):
        Comparison(comparator=Comparator.IN, attribute="a", value="not a list").accept(translator)
    with pytest.raises(FilterError):
        Comparison(comparator=Comparator.EQ, attribute="bad;key", value=1).accept(translator)


def test_self_query_retriever_uses_the_translator(face: Any) -> None:
    """``SelfQueryRetriever`` with our translator (its LLM query constructor replaced by a fixed query)."""
    self_query = pytest.importorskip("langchain_classic.retrievers.self_query.base")
    vs = make_store(face)
    assert vs is not None
    constructed = StructuredQuery(query="cats", filter=Operation(operator=Operator.AND, arguments=[
        Comparison(comparator=Comparator.GTE, attribute="year", value=2021),
        Comparison(comparator=Comparator.CONTAIN, attribute="tags", value="pets"),
    ]), limit=None)
    retriever = self_query.SelfQueryRetriever(query_constructor=RunnableLambda(lambda _: constructed),
                                              vectorstore=vs, structured_query_translator=StorebridgeTranslator(),
                                              search_kwargs={"k": 5})
    assert [d.id for d in retriever.invoke("pets from 2021 on")] == ["2", "3"]


def test_numpy_free_embeddings_are_accepted(face: Any) -> None:
    """Embeddings returning numpy arrays or tuples are stored as plain floats."""

    class TupleEmbeddings(AxisEmbeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [tuple(np.asarray(v, dtype=np.float32)) for v in super().embed_documents(texts)]  # type: ignore[misc]

    vs = StorebridgeVectorStore(face, TupleEmbeddings(), "tuples")
    vs.add_texts(["cats"], ids=["t"])
    assert vs.similarity_search("cats", k=1)[0].id == "t"
