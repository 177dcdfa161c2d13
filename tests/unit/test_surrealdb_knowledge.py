"""Unit tests of the ``surrealdb_vector`` knowledge store on the embedded engines (mem://, surrealkv://)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("surrealdb", reason="[no engine on this machine] surrealdb is not installed")

from storebridge.adapters.surrealdb import knowledge as sk
from storebridge.adapters.surrealdb.knowledge import SurrealDBKnowledgeStore
from storebridge.errors import (
    CollectionNotFoundError,
    StoreClosedError,
    ValidationError,
)
from storebridge.filters import evaluate
from storebridge.models import CollectionInfo, Distance, KnowledgeDocument

HOSTILE = ["'; REMOVE TABLE sb_kdoc; --", '"); DELETE sb_kdoc; //', "$c", "${c}", "⟨x⟩`y`", "} ; RETURN 1; {",
           "type::thing('sb_kcollection', 'x')", "a\\nb\\\\", "\x00nul", "\x01\x00\x01\x01\x02", "\x00\x01"]


def doc(i: int, metadata: dict | None = None, doc_id: str | None = None) -> KnowledgeDocument:
    return KnowledgeDocument(id=doc_id or f"d{i:03d}", content=f"c{i}", metadata=metadata or {"i": i},
                             embedding=[1.0 + i, 0.5 * i, -1.0 * (i % 3), 2.0])


@pytest.fixture
def store():
    s = SurrealDBKnowledgeStore("surrealdb+mem://")
    yield s
    s.close()


def test_memory_url_is_not_persistent(store: SurrealDBKnowledgeStore) -> None:
    assert store.capabilities.persistent is False
    assert store.capabilities.client_side_filters is True


def test_hostile_values_round_trip(store: SurrealDBKnowledgeStore) -> None:
    store.create_collection("c", 4)
    docs = [KnowledgeDocument(id=h, content=h, source_id=h, metadata={h: h, "h": h, "k": [h, None], "n": None},
                              embedding=[1.0, 2.0, 3.0, float(i + 1)]) for i, h in enumerate(HOSTILE)]
    store.insert("c", docs)
    got = store.get("c", [d.id for d in docs])
    assert [(g.id, g.content, g.source_id, g.metadata) for g in got] == \
        [(d.id, d.content, d.source_id, d.metadata) for d in docs]
    for h in HOSTILE:
        assert store.count("c", filter={"h": h}) == 1
        assert store.count("c", filter={"k": {"$contains": h}}) == 1
    assert store.list_collections() == ["c"]
    assert store.delete("c", [HOSTILE[0]]) == 1
    assert store.count("c") == len(HOSTILE) - 1


def test_client_side_filters_page_through(store: SurrealDBKnowledgeStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sk, "PAGE", 3)
    store.create_collection("c", 4, Distance.L2)
    docs = [doc(i, {"i": i, "even": i % 2 == 0, "tag": ["a"] if i % 3 == 0 else [], "x": None if i % 4 else 1.0})
            for i in range(20)]
    store.upsert("c", docs)
    specs = [{"even": True}, {"i": {"$gte": 5}}, {"x": {"$ne": 1}}, {"tag": {"$contains": "a"}},
             {"$or": [{"i": {"$lt": 2}}, {"x": {"$exists": True}}]}, {"x": 1}]
    for spec in specs:
        want = [d.id for d in docs if evaluate(spec, d.metadata)]
        assert store.count("c", filter=spec) == len(want), spec
        pages, cursor = [], None
        while True:
            page = store.scroll("c", limit=2, cursor=cursor, filter=spec, include_embeddings=False)
            pages += [d.id for d in page.documents]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert pages == sorted(want), spec
        hits = store.search("c", docs[7].embedding or [], k=50, filter=spec)
        assert sorted(h.id for h in hits) == sorted(want), spec
    assert store.delete("c", filter={"even": True}) == 10
    assert store.delete("c", ["d001", "d002", "d003"], filter={"i": {"$gt": 1}}) == 1
    assert store.count("c") == 9


def test_search_scores_exact(store: SurrealDBKnowledgeStore) -> None:
    for metric in Distance:
        name = f"s_{metric.value}"
        store.create_collection(name, 4, metric)
        store.insert(name, [doc(i) for i in range(1, 30)])
        hits = store.search(name, [2.0, 0.5, -1.0, 2.0], k=5)
        if metric is not Distance.DOT:
            assert hits[0].id == "d001"
        if metric is Distance.COSINE:
            assert hits[0].score == pytest.approx(1.0, abs=1e-12)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        for h in hits:
            assert h.score == pytest.approx(metric.score(h.distance))


def test_insert_into_dropped_collection(store: SurrealDBKnowledgeStore) -> None:
    store.create_collection("gone", 4)
    store.drop_collection("gone")
    with pytest.raises(CollectionNotFoundError):
        store._commit("gone", CollectionInfo("gone", 4, Distance.COSINE), [doc(1)], replace=False)
    assert store.list_collections() == []


def test_generator_insert_in_batches(store: SurrealDBKnowledgeStore) -> None:
    store.create_collection("g", 4)
    ids = store.insert("g", (doc(i, doc_id=f"g{i:05d}") for i in range(2_500)))
    assert len(ids) == 2_500 and store.count("g") == 2_500


def test_bad_cursor_and_closed(store: SurrealDBKnowledgeStore) -> None:
    store.create_collection("c", 4)
    for cursor in ("nope", "12", "null"):
        with pytest.raises(ValidationError):
            store.scroll("c", cursor=cursor)
    store.close()
    store.close()
    with pytest.raises(StoreClosedError):
        store.count("c")


def test_surrealkv_shares_engine_and_persists(tmp_path: Path) -> None:
    url = f"surrealkv:///{tmp_path}/kv"
    a, b = SurrealDBKnowledgeStore(url), SurrealDBKnowledgeStore(url)
    assert a._engine is b._engine
    a.create_collection("p", 4)
    a.insert("p", [doc(1, {"none": None})])
    assert b.get("p", ["d001"])[0].metadata == {"none": None}
    a.close()
    assert b.count("p") == 1
    b.close()
    c = SurrealDBKnowledgeStore(url)
    try:
        assert c.get_collection("p") == CollectionInfo("p", 4, Distance.COSINE)
        assert c.count("p") == 1
    finally:
        c.close()
