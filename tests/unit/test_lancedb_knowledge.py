"""LanceDB knowledge store specifics: SQL literal escaping, hostile ids, client-side filters, URLs."""

from __future__ import annotations

import pytest

pytest.importorskip("lancedb", reason="[no engine on this machine] lancedb is not installed")

from storebridge.adapters.lancedb import LanceDBKnowledgeStore
from storebridge.adapters.lancedb.knowledge import id_predicate, sql_string
from storebridge.errors import AlreadyExistsError, ConfigurationError, ValidationError
from storebridge.filters import evaluate
from storebridge.models import KnowledgeDocument

HOSTILE = ["'; DROP TABLE x; --", "a'b", "''", "\\", "\\'", "x\\' OR 1=1 --", '"q"', "ü 𝄞", "id IN ('a')", ")", "%_*"]


@pytest.fixture
def store(tmp_path):
    s = LanceDBKnowledgeStore(path=tmp_path / "lance")
    yield s
    s.close()


def test_sql_string_escaping() -> None:
    assert sql_string("a'b") == "'a''b'"
    assert sql_string("\\") == "'\\'"
    assert id_predicate(["x", "'"]) == "id IN ('x', '''')"
    with pytest.raises(ValidationError):
        sql_string("a\x00b")


def test_hostile_ids_round_trip_and_delete(store: LanceDBKnowledgeStore) -> None:
    store.create_collection("c", 2, "l2")
    docs = [KnowledgeDocument(id=i, embedding=[float(n), 1.0], metadata={"v": i}) for n, i in enumerate(HOSTILE)]
    docs.append(KnowledgeDocument(id="plain", embedding=[0.0, 0.0]))
    store.insert("c", docs)
    assert [d.id for d in store.get("c", HOSTILE + ["missing"])] == HOSTILE
    with pytest.raises(AlreadyExistsError):
        store.insert("c", [KnowledgeDocument(id="'; DROP TABLE x; --", embedding=[1.0, 1.0])])
    for value in HOSTILE:
        assert store.count("c", filter={"v": value}) == 1
    assert store.delete("c", ["'; DROP TABLE x; --", "\\'", "nope"]) == 2
    assert store.count("c") == len(docs) - 2
    assert store.list_collections() == ["c"]
    with pytest.raises(ValidationError):
        store.upsert("c", [KnowledgeDocument(id="nul\x00", embedding=[1.0, 1.0])])


DOCS = [
    {"v": "a"}, {"v": ["a"]}, {"v": ["a", "b"]}, {"v": 1}, {"v": 1.0}, {"v": True}, {"v": [1, True]},
    {"v": None}, {}, {"v": 2.5}, {"v": [False]}, {"v": {"w": 1}},
]
FILTERS = [
    {"v": "a"}, {"v": {"$ne": "a"}}, {"v": 1}, {"v": True}, {"v": {"$in": ["a", 1]}}, {"v": {"$nin": ["a", 1]}},
    {"v": {"$in": []}}, {"v": {"$nin": []}}, {"v": {"$contains": "a"}}, {"v": {"$contains": 1}},
    {"v": {"$gte": 1}}, {"v": {"$exists": False}}, {"v.w": 1}, {"$not": {"v": {"$lt": 2}}},
]


@pytest.mark.parametrize("spec", FILTERS, ids=[repr(f) for f in FILTERS])
def test_client_side_filters_match_reference(store: LanceDBKnowledgeStore, spec: dict) -> None:
    store.create_collection("f", 2, "dot")
    store.upsert("f", [KnowledgeDocument(id=f"{i:02d}", embedding=[1.0, float(i)], metadata=m)
                       for i, m in enumerate(DOCS)])
    expected = {f"{i:02d}" for i, m in enumerate(DOCS) if evaluate(spec, m)}
    assert {h.id for h in store.search("f", [1.0, 0.0], k=100, filter=spec)} == expected
    assert store.count("f", filter=spec) == len(expected)
    assert {d.id for d in store.scroll("f", limit=100, filter=spec).documents} == expected


def test_filtered_search_over_fetches_until_k_matches(store: LanceDBKnowledgeStore) -> None:
    """The few matching documents are the farthest ones: the store must keep widening its fetch."""
    store.create_collection("c", 2, "l2")
    store.upsert("c", (KnowledgeDocument(id=f"{i:05d}", embedding=[float(i), 0.0], metadata={"rare": i >= 2995})
                       for i in range(3000)))
    hits = store.search("c", [0.0, 0.0], k=3, filter={"rare": True})
    assert [h.id for h in hits] == ["02995", "02996", "02997"]
    assert hits[0].distance == 2995.0 and hits[0].score == 1.0 / 2996.0


def test_upsert_last_duplicate_wins_and_generators_stream(store: LanceDBKnowledgeStore) -> None:
    store.create_collection("c", 2)
    store.upsert("c", [KnowledgeDocument(id="a", embedding=[1.0, 0.0], content="1"),
                       KnowledgeDocument(id="a", embedding=[0.0, 1.0], content="2")])
    assert store.get("c", ["a"])[0].content == "2"
    seen_mid_stream = []

    def docs():
        for i in range(2500):
            if i == 1500:  # the first batch of 1000 is written before the generator is read further
                seen_mid_stream.append(store.count("c"))
            yield KnowledgeDocument(id=str(i), embedding=[1.0, float(i)])

    assert len(store.upsert("c", docs())) == 2500
    assert seen_mid_stream == [1001]
    assert store.count("c") == 2501


def test_urls(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    LanceDBKnowledgeStore("lancedb:///rel").create_collection("c", 2)
    LanceDBKnowledgeStore(f"lance:///{tmp_path / 'abs'}").create_collection("c", 2)
    assert (tmp_path / "rel").is_dir() and (tmp_path / "abs").is_dir()
    with pytest.raises(ConfigurationError):
        LanceDBKnowledgeStore("lancedb:///x?foo=1")
    with pytest.raises(ConfigurationError):
        LanceDBKnowledgeStore("qdrant:///x")


def test_concurrent_writers_lose_nothing(store: LanceDBKnowledgeStore) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store.create_collection("c", 2, "l2")

    def write(t: int) -> None:
        for n in range(5):
            store.upsert("c", [KnowledgeDocument(id=f"{t}-{n}-{j}", embedding=[float(t), float(j)]) for j in range(20)])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(4)))
    assert store.count("c") == 4 * 5 * 20
