"""Qdrant knowledge store specifics (local mode): id mapping, payload layout, filter semantics, URLs."""

from __future__ import annotations

import pytest

pytest.importorskip("qdrant_client", reason="[no engine on this machine] qdrant-client is not installed")

from qdrant_client import QdrantClient

from storebridge.adapters.qdrant import QdrantKnowledgeStore
from storebridge.errors import ConfigurationError, StoreClosedError
from storebridge.filters import evaluate
from storebridge.models import KnowledgeDocument


@pytest.fixture
def store():
    s = QdrantKnowledgeStore("qdrant+local://")
    yield s
    s.close()


def test_many_distinct_ids_none_lost(store: QdrantKnowledgeStore) -> None:
    store.create_collection("c", 2, "l2")
    ids = [f"id-{i}" for i in range(3000)] + ["1", "01", "001", "a/b", "a b", "ü", ""[:0] or "x" * 300]
    store.upsert("c", (KnowledgeDocument(id=i, embedding=[float(n), 1.0]) for n, i in enumerate(ids)))
    assert store.count("c") == len(ids)
    got = store.get("c", ids, include_embeddings=False)
    assert [d.id for d in got] == ids
    store.upsert("c", [KnowledgeDocument(id="id-5", embedding=[0.0, 2.0], content="new")])
    assert store.count("c") == len(ids)
    assert store.get("c", ["id-5"])[0].content == "new"


def test_internal_keys_never_leak(store: QdrantKnowledgeStore) -> None:
    store.create_collection("c", 2)
    meta = {"_sb_id": "mine", "_sb_keys": [1], "tags": ["a", 1, True, None], "n": None, "x": 1.0, "nested": {"a": 1}}
    store.upsert("c", [KnowledgeDocument(id="d", embedding=[1.0, 0.0], metadata=meta)])
    doc = store.get("c", ["d"])[0]
    assert doc.metadata == meta and isinstance(doc.metadata["x"], float)
    assert store.search("c", [1.0, 0.0])[0].document.metadata == meta


DOCS = [
    {"v": "a"}, {"v": ["a"]}, {"v": ["a", "b"]}, {"v": 1}, {"v": 1.0}, {"v": True}, {"v": [1, True]},
    {"v": None}, {}, {"v": "'; DROP TABLE x; --"}, {"v": 'q"\\'}, {"v": 2.5}, {"v": [False]},
]
FILTERS = [
    {"v": "a"}, {"v": {"$ne": "a"}}, {"v": 1}, {"v": True}, {"v": {"$ne": True}}, {"v": {"$in": ["a", 1]}},
    {"v": {"$nin": ["a", 1]}}, {"v": {"$in": []}}, {"v": {"$nin": []}}, {"v": {"$contains": "a"}},
    {"v": {"$contains": 1}}, {"v": {"$contains": True}}, {"v": {"$contains": False}}, {"v": {"$gte": 1}},
    {"v": {"$lt": 2}}, {"v": {"$exists": True}}, {"v": {"$exists": False}}, {"v": "'; DROP TABLE x; --"},
    {"v": 'q"\\'}, {"$not": {"v": {"$in": []}}}, {"$or": [{"v": {"$in": []}}, {"v": 2.5}]},
    {"$and": [{"v": {"$nin": []}}, {"v": {"$gt": 1}}]},
]


@pytest.mark.parametrize("spec", FILTERS, ids=[repr(f) for f in FILTERS])
def test_filter_semantics_match_reference(store: QdrantKnowledgeStore, spec: dict) -> None:
    store.create_collection("f", 2, "dot")
    store.upsert("f", [KnowledgeDocument(id=str(i), embedding=[1.0, float(i)], metadata=m) for i, m in enumerate(DOCS)])
    expected = {str(i) for i, m in enumerate(DOCS) if evaluate(spec, m)}
    assert {h.id for h in store.search("f", [1.0, 0.0], k=100, filter=spec)} == expected
    assert store.count("f", filter=spec) == len(expected)


def test_delete_by_filter_matching_everything(store: QdrantKnowledgeStore) -> None:
    store.create_collection("c", 2)
    store.upsert("c", [KnowledgeDocument(id=str(i), embedding=[1.0, float(i)]) for i in range(5)])
    assert store.delete("c", filter={"v": {"$in": []}}) == 0
    assert store.delete("c", ["0", "1", "nope"], filter={"v": {"$nin": []}}) == 2
    assert store.delete("c", filter={"v": {"$nin": []}}) == 3


def test_given_client_is_not_closed() -> None:
    client = QdrantClient(":memory:")
    a = QdrantKnowledgeStore(client=client)
    a.create_collection("c", 2)
    a.close()
    with pytest.raises(StoreClosedError):
        a.list_collections()
    assert QdrantKnowledgeStore(client=client).list_collections() == ["c"]
    client.close()


def test_path_stores_share_one_client(tmp_path) -> None:
    a = QdrantKnowledgeStore(path=tmp_path / "q")
    b = QdrantKnowledgeStore(f"qdrant+local:///{tmp_path / 'q'}")
    a.create_collection("c", 2)
    assert b.list_collections() == ["c"]
    a.close()
    assert b.list_collections() == ["c"]
    b.close()
    c = QdrantKnowledgeStore(path=tmp_path / "q")
    assert c.get_collection("c").dimension == 2
    c.close()


def test_urls() -> None:
    with pytest.raises(ConfigurationError):
        QdrantKnowledgeStore("chroma://x")
    with pytest.raises(ConfigurationError):
        QdrantKnowledgeStore("qdrant://")
    s = QdrantKnowledgeStore("qdrant+https://127.0.0.1:1?api_key=s3cret", check_compatibility=False)  # no request
    assert "s3cret" not in repr(s)
    s.close()


def test_local_url_follows_the_file_url_convention(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    rel = QdrantKnowledgeStore("qdrant+local:///rel")  # sqlite:///rel.db convention: relative
    absolute = QdrantKnowledgeStore(f"qdrant+local:///{tmp_path / 'abs'}")
    rel.create_collection("c", 2)
    absolute.create_collection("c", 2)
    assert (tmp_path / "rel").is_dir() and (tmp_path / "abs").is_dir()
    rel.close()
    absolute.close()


def test_upsert_last_duplicate_wins_and_generators_stream(store: QdrantKnowledgeStore) -> None:
    store.create_collection("c", 2)
    store.upsert("c", [KnowledgeDocument(id="a", embedding=[1.0, 0.0], content="1"),
                       KnowledgeDocument(id="a", embedding=[0.0, 1.0], content="2")])
    assert store.get("c", ["a"])[0].content == "2" and store.count("c") == 1
    seen_mid_stream = []

    def docs():
        for i in range(600):
            if i == 300:  # the first batch of 256 is written before the generator is read further
                seen_mid_stream.append(store.count("c"))
            yield KnowledgeDocument(id=str(i), embedding=[1.0, float(i)])

    assert len(store.upsert("c", docs())) == 600
    assert seen_mid_stream == [257]
    assert store.count("c") == 601


@pytest.mark.parametrize("where", ["memory", "path"])
def test_concurrent_writers_lose_nothing(where: str, tmp_path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    url = "qdrant+local://" if where == "memory" else f"qdrant+local:///{tmp_path / 'q'}"
    store = QdrantKnowledgeStore(url)
    store.create_collection("c", 2, "l2")

    def write(t: int) -> None:
        for n in range(4):
            store.upsert("c", [KnowledgeDocument(id=f"{t}-{n}-{j}", embedding=[float(t), float(j)]) for j in range(20)])
            store.search("c", [0.0, 1.0], k=5, filter={"x": {"$exists": False}})

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(4)))
    assert store.count("c") == 4 * 4 * 20
    store.close()
