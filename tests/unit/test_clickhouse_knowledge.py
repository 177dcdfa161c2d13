"""Unit tests of the ``clickhouse`` knowledge store on chDB (one directory per process, a database per test)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator

import pytest

pytest.importorskip("chdb", reason="[no engine on this machine] chdb is not installed")

from storebridge.adapters.clickhouse import knowledge as ck
from storebridge.adapters.clickhouse.knowledge import ClickHouseKnowledgeStore, quote
from storebridge.errors import ConfigurationError, StoreClosedError, ValidationError
from storebridge.filters import evaluate
from storebridge.models import Distance, KnowledgeDocument

CHDB_DIR = os.path.join(tempfile.gettempdir(), f"storebridge-chdb-{os.getpid()}")
atexit.register(shutil.rmtree, CHDB_DIR, True)  # the per-process chDB directory goes with the process
HOSTILE = ["it's", "'); DROP TABLE x; --", "\\", "\\'", "a\nb\tc\r", "\x00nul\x7f", "{id:String}", "é⟨⟩`\"",
           "\\x00", "' || '"]


def doc(i: int, metadata: dict | None = None, doc_id: str | None = None) -> KnowledgeDocument:
    return KnowledgeDocument(id=doc_id or f"d{i:03d}", content=f"c{i}", metadata=metadata or {"i": i},
                             embedding=[1.0 + i, 0.5 * i, -1.0 * (i % 3), 2.0])


@pytest.fixture
def store() -> Iterator[ClickHouseKnowledgeStore]:
    s = ClickHouseKnowledgeStore(f"chdb:///{CHDB_DIR}", database="u_" + uuid.uuid4().hex[:12])
    yield s
    s.close()


def test_quote() -> None:
    assert quote("it's") == "'it\\'s'"
    assert quote("a\\b") == "'a\\\\b'"
    assert quote("\x00\n") == "'\\x00\\x0a'"


def test_hostile_values_round_trip(store: ClickHouseKnowledgeStore) -> None:
    store.create_collection("c", 4)
    docs = [KnowledgeDocument(id=h, content=h, source_id=h, metadata={"h": h, "k": [h, None], "n": None},
                              embedding=[1.0, 2.0, 3.0, float(i + 1)]) for i, h in enumerate(HOSTILE)]
    store.insert("c", docs)
    got = store.get("c", [d.id for d in docs])
    assert [(g.id, g.content, g.source_id, g.metadata) for g in got] == \
        [(d.id, d.content, d.source_id, d.metadata) for d in docs]
    for h in HOSTILE:
        assert store.count("c", filter={"h": h}) == 1
    page = store.scroll("c", limit=3)
    assert page.next_cursor is not None
    store.scroll("c", cursor=page.next_cursor)
    assert store.delete("c", [HOSTILE[1], HOSTILE[0]]) == 2
    assert store.count("c") == len(HOSTILE) - 2
    assert store.list_collections() == ["c"]


def test_client_side_filters_page_through(store: ClickHouseKnowledgeStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ck, "PAGE", 3)
    store.create_collection("c", 4, Distance.L2)
    docs = [doc(i, {"i": i, "even": i % 2 == 0, "tag": ["a"] if i % 3 == 0 else [], "x": None if i % 4 else 1.0})
            for i in range(20)]
    store.upsert("c", docs)
    for spec in [{"even": True}, {"i": {"$gte": 5}}, {"x": {"$ne": 1}}, {"tag": {"$contains": "a"}},
                 {"$or": [{"i": {"$lt": 2}}, {"x": {"$exists": True}}]}, {"x": 1}]:
        want = [d.id for d in docs if evaluate(spec, d.metadata)]
        assert store.count("c", filter=spec) == len(want), spec
        got, cursor = [], None
        while True:
            page = store.scroll("c", limit=2, cursor=cursor, filter=spec, include_embeddings=False)
            got += [d.id for d in page.documents]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert got == sorted(want), spec
        assert sorted(h.id for h in store.search("c", docs[7].embedding or [], k=50, filter=spec)) == sorted(want)
    assert store.delete("c", filter={"even": True}) == 10
    assert store.delete("c", ["d001", "d002", "d003"], filter={"i": {"$gt": 1}}) == 1
    assert store.count("c") == 9


def test_upsert_replaces_and_last_wins(store: ClickHouseKnowledgeStore) -> None:
    store.create_collection("c", 4)
    store.upsert("c", [doc(1), doc(2)])
    store.upsert("c", [doc(1, {"v": 1}), doc(1, {"v": 2})])
    assert store.count("c") == 2
    assert store.get("c", ["d001"])[0].metadata == {"v": 2}


def test_search_scores(store: ClickHouseKnowledgeStore) -> None:
    for metric in Distance:
        name = f"s_{metric.value}"
        store.create_collection(name, 4, metric)
        store.insert(name, [doc(i) for i in range(1, 30)])
        hits = store.search(name, [2.0, 0.5, -1.0, 2.0], k=5)
        if metric is not Distance.DOT:
            assert hits[0].id == "d001"
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        for h in hits:
            assert h.score == pytest.approx(metric.score(h.distance))


def test_generator_insert(store: ClickHouseKnowledgeStore) -> None:
    store.create_collection("g", 4)
    assert len(store.insert("g", (doc(i, doc_id=f"g{i:05d}") for i in range(2_500)))) == 2_500
    assert store.count("g") == 2_500


def test_other_directory_refused_and_closed(store: ClickHouseKnowledgeStore, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigurationError):
        ClickHouseKnowledgeStore(f"chdb:///{tmp_path}/other")
    with pytest.raises(ValidationError):
        ClickHouseKnowledgeStore._parse_cursor("junk")
    store.close()
    store.close()
    with pytest.raises(StoreClosedError):
        store.count("c")
