"""Unit tests of the SQLite knowledge store for what the conformance suite cannot see: the in-memory
matrix cache (other writers, own incremental writes, races), batch atomicity, streaming ingest,
closing, URLs, exactness of scores, and concurrency."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from storebridge.adapters.sqlite import knowledge as module
from storebridge.adapters.sqlite.knowledge import BATCH_SIZE, SQLiteKnowledgeStore
from storebridge.errors import (
    AlreadyExistsError,
    CollectionNotFoundError,
    ConfigurationError,
    DimensionMismatchError,
    InvalidIdentifierError,
    StoreClosedError,
    ValidationError,
)
from storebridge.models import Distance, KnowledgeDocument

DIM = 8


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "kb.db"


@pytest.fixture
def store(db: Path) -> Iterator[SQLiteKnowledgeStore]:
    with SQLiteKnowledgeStore(path=db, durable=False) as s:
        yield s


def vectors(count: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)


def docs(count: int, seed: int = 0, prefix: str = "d", start: int = 0,
         dim: int = DIM) -> list[KnowledgeDocument]:
    vs = vectors(count, seed, dim)
    return [KnowledgeDocument(id=f"{prefix}{start + i}", content=f"c{start + i}", embedding=vs[i].tolist(),
                              metadata={"i": start + i, "even": (start + i) % 2 == 0})
            for i in range(count)]


def exact_ids(store: SQLiteKnowledgeStore, collection: str, query: list[float], k: int,
              **kwargs: Any) -> list[str]:
    """The top-k by a fresh store object on the same file: no cache involved."""
    with SQLiteKnowledgeStore(path=store.path) as fresh:
        return [hit.id for hit in fresh.search(collection, query, k=k, **kwargs)]


def ids(hits: list[Any]) -> list[str]:
    return [hit.id for hit in hits]


# -- the matrix cache ------------------------------------------------------------------------------------

def test_search_sees_writes_of_another_store_object(store: SQLiteKnowledgeStore, db: Path) -> None:
    store.create_collection("c", DIM)
    store.insert("c", docs(50))
    query = vectors(1, seed=99)[0].tolist()
    before = ids(store.search("c", query, k=5))
    with SQLiteKnowledgeStore(path=db) as other:
        other.insert("c", [KnowledgeDocument(id="twin", embedding=query)])
        assert store.search("c", query, k=1)[0].id == "twin"
        other.upsert("c", [KnowledgeDocument(id="twin", embedding=[-x for x in query])])
        assert ids(store.search("c", query, k=5)) == before
        other.delete("c", [before[0]])
        assert ids(store.search("c", query, k=4)) == before[1:]
        other.drop_collection("c")
        with pytest.raises(CollectionNotFoundError):
            store.search("c", query)
        other.create_collection("c", 3)
        other.insert("c", [KnowledgeDocument(id="new", embedding=[1.0, 0.0, 0.0])])
    assert ids(store.search("c", [1.0, 0.0, 0.0])) == ["new"]
    with pytest.raises(DimensionMismatchError):
        store.search("c", query)


def test_search_sees_writes_of_another_process(store: SQLiteKnowledgeStore, db: Path) -> None:
    store.create_collection("c", 3)
    store.insert("c", [KnowledgeDocument(id="a", embedding=[1.0, 0.0, 0.0])])
    assert ids(store.search("c", [0.0, 1.0, 0.0])) == ["a"]
    script = (
        "import sys\n"
        "from storebridge.adapters.sqlite.knowledge import SQLiteKnowledgeStore\n"
        "from storebridge.models import KnowledgeDocument\n"
        "with SQLiteKnowledgeStore(path=sys.argv[1]) as s:\n"
        "    s.insert('c', [KnowledgeDocument(id='b', embedding=[0.0, 1.0, 0.0])])\n"
    )
    subprocess.run([sys.executable, "-c", script, str(db)], check=True, timeout=60)
    assert ids(store.search("c", [0.0, 1.0, 0.0])) == ["b", "a"]


def test_filter_results_follow_writes(store: SQLiteKnowledgeStore, db: Path) -> None:
    store.create_collection("c", DIM)
    store.insert("c", docs(20))
    query = vectors(1, seed=5)[0].tolist()
    spec = {"tag": "x"}
    assert store.search("c", query, filter=spec) == []
    with SQLiteKnowledgeStore(path=db) as other:
        other.upsert("c", [docs(1)[0].replace(metadata={"tag": "x"})])
    assert ids(store.search("c", query, filter=spec)) == ["d0"]
    store.upsert("c", [docs(2)[1].replace(metadata={"tag": "x"})])
    assert sorted(ids(store.search("c", query, filter=spec))) == ["d0", "d1"]
    store.delete("c", filter=spec)
    assert store.search("c", query, filter=spec) == []


@pytest.mark.parametrize("distance", list(Distance))
def test_own_writes_update_the_matrix_like_a_fresh_load(store: SQLiteKnowledgeStore, distance: Distance) -> None:
    """Appends (in and past spare capacity), replacements and deletes applied to the cached matrix give
    the same results as a store object that loads everything from the file."""
    store.create_collection("c", DIM, distance)
    store.insert("c", docs(30))
    queries = [q.tolist() for q in vectors(4, seed=7)]
    steps = [
        lambda: store.insert("c", docs(5, seed=1, start=100)),                  # into spare capacity
        lambda: store.insert("c", docs(200, seed=2, start=200)),                # past it: regrow
        lambda: store.upsert("c", docs(10, seed=3, start=0)),                   # replace existing rows
        lambda: store.upsert("c", docs(3, seed=4, start=5) + docs(2, seed=4, start=900)),  # both
        lambda: store.delete("c", [f"d{i}" for i in range(0, 200, 3)]),
        lambda: store.delete("c", filter={"even": True}),
    ]
    for step in steps:
        store.search("c", queries[0], k=3)  # the matrix is cached and current before each write
        step()
        for query in queries:
            assert ids(store.search("c", query, k=15)) == exact_ids(store, "c", query, 15)
            assert ids(store.search("c", query, k=5, filter={"i": {"$lt": 150}})) == exact_ids(
                store, "c", query, 5, filter={"i": {"$lt": 150}})
    assert store.count("c") == len(exact_ids(store, "c", queries[0], 10_000))


def test_snapshot_older_than_the_cache_still_answers_exactly(store: SQLiteKnowledgeStore) -> None:
    """If another thread cached a newer matrix than this search's snapshot, the search retries with a
    new snapshot and, failing that, loads its own copy: never an answer from the wrong revision."""
    store.create_collection("c", DIM)
    store.insert("c", docs(40))
    query = vectors(1, seed=3)[0].tolist()
    expected = ids(store.search("c", query, k=5))
    cached = store._cache.matrix("c")
    assert cached is not None
    future = module._Matrix((cached.key[0], cached.key[1] + 5), cached.distance, cached._buffers, 1)
    store._cache.publish("c", future)
    assert ids(store.search("c", query, k=5)) == expected
    assert store._cache.matrix("c") is future, "a matrix of an older snapshot must not replace a newer one"


def test_ties_go_to_the_older_document(store: SQLiteKnowledgeStore) -> None:
    store.create_collection("c", 3)
    store.insert("c", [KnowledgeDocument(id=name, embedding=[1.0, 2.0, 3.0]) for name in "zyxwv"])
    assert ids(store.search("c", [1.0, 2.0, 3.0], k=3)) == ["z", "y", "x"]


# -- scores ----------------------------------------------------------------------------------------------

def test_scores_are_exact_per_distance(store: SQLiteKnowledgeStore) -> None:
    vector = [3.0, 4.0, 0.0]
    for distance in Distance:
        name = f"c_{distance.value}"
        store.create_collection(name, 3, distance)
        store.insert(name, [KnowledgeDocument(id="a", embedding=vector),
                            KnowledgeDocument(id="b", embedding=[0.0, 0.0, 2.0])])
    [hit] = store.search("c_cosine", vector, k=1)
    assert (hit.score, hit.distance) == (1.0, 0.0)
    [hit] = store.search("c_l2", vector, k=1)
    assert (hit.score, hit.distance) == (1.0, 0.0)
    hits = store.search("c_l2", [0.0, 0.0, 0.0], k=2)
    assert [(h.id, h.distance, h.score) for h in hits] == [("b", 2.0, 1 / 3), ("a", 5.0, 1 / 6)]
    [hit] = store.search("c_dot", [1.0, 1.0, 1.0], k=1)
    assert (hit.id, hit.score, hit.distance) == ("a", 7.0, -7.0)
    hits = store.search("c_cosine", [0.0, 0.0, -1.0], k=2)
    assert [(h.id, h.score, h.distance) for h in hits] == [("a", 0.0, 1.0), ("b", -1.0, 2.0)]


@pytest.mark.parametrize("distance", [Distance.COSINE, Distance.L2])
def test_a_stored_vector_finds_itself_exactly(store: SQLiteKnowledgeStore, distance: Distance) -> None:
    store.create_collection("c", DIM, distance)
    store.insert("c", docs(60, seed=8))
    for doc in docs(60, seed=8)[::7]:
        [hit] = store.search("c", doc.embedding or [], k=1)
        assert hit.id == doc.id and (hit.score, hit.distance) == (1.0, 0.0)


def test_extreme_magnitudes_keep_cosine_finite(store: SQLiteKnowledgeStore) -> None:
    store.create_collection("c", 4)
    store.insert("c", [KnowledgeDocument(id="huge", embedding=[3e38, 3e38, 0.0, 0.0]),
                       KnowledgeDocument(id="tiny", embedding=[0.0, 0.0, 1e-30, 1e-30])])
    hits = store.search("c", [1.0, 1.0, 0.0, 0.0], k=2)
    assert ids(hits) == ["huge", "tiny"]
    assert math.isclose(hits[0].score, 1.0) and math.isclose(hits[1].score, 0.0, abs_tol=1e-12)
    [tiny] = store.search("c", [0.0, 0.0, 1.0, 1.0], k=1)
    assert tiny.id == "tiny" and math.isclose(tiny.score, 1.0)


def test_zero_vectors_and_cosine(store: SQLiteKnowledgeStore) -> None:
    store.create_collection("cos", 3)
    store.create_collection("l2", 3, "l2")
    zero = KnowledgeDocument(id="z", embedding=[0.0, 0.0, 0.0])
    with pytest.raises(ValidationError, match="zero"):
        store.insert("cos", [zero])
    store.insert("cos", [KnowledgeDocument(id="a", embedding=[1.0, 0.0, 0.0])])
    with pytest.raises(ValidationError, match="zeros"):
        store.search("cos", [0.0, 0.0, 0.0])
    store.insert("l2", [zero])
    assert ids(store.search("l2", [0.0, 0.0, 0.0])) == ["z"]


def test_score_threshold_and_k_validation(store: SQLiteKnowledgeStore) -> None:
    store.create_collection("c", DIM)
    store.insert("c", docs(20))
    query = vectors(1, seed=1)[0].tolist()
    hits = store.search("c", query, k=20)
    cut = hits[4].score
    assert ids(store.search("c", query, k=20, score_threshold=cut)) == ids(hits[:5])
    for bad_k in (0, -1, 1.5, True, "3"):
        with pytest.raises(ValidationError):
            store.search("c", query, k=bad_k)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        store.search("c", query, score_threshold=float("nan"))


# -- writes: validation, atomicity, streaming ------------------------------------------------------------

def test_a_bad_document_anywhere_in_a_list_writes_nothing(store: SQLiteKnowledgeStore) -> None:
    store.create_collection("c", DIM)
    many = docs(2 * BATCH_SIZE + 500)
    bad_cases = [
        many[:-1] + [many[-1].replace(embedding=[1e39] + [0.0] * (DIM - 1))],   # beyond float32
        many[:-1] + [many[-1].replace(metadata={"x": float("nan")})],
        many[:-1] + [many[-1].replace(metadata={1: "int key"})],
        many[:-1] + [many[-1].replace(content="\ud800")],
        many[:-1] + [many[-1].replace(source_id=7)],
        many + [many[0]],                                                           # duplicate id
        many[:10] + ["not a document"],
    ]
    for bad in bad_cases:
        for operation in ("insert", "upsert"):
            if operation == "upsert" and bad[-1] is many[0]:
                continue  # upsert of a repeated id is legal: the last one wins
            with pytest.raises((ValidationError, AlreadyExistsError)):
                getattr(store, operation)("c", bad)
            assert store.count("c") == 0


def test_insert_of_an_existing_id_names_it_and_writes_nothing(store: SQLiteKnowledgeStore) -> None:
    store.create_collection("c", DIM)
    store.insert("c", docs(3))
    with pytest.raises(AlreadyExistsError, match="'d1'"):
        store.insert("c", docs(5, prefix="n") + [docs(3)[1]])
    assert store.count("c") == 3


def test_generator_ingest_streams_in_committed_batches(store: SQLiteKnowledgeStore, db: Path) -> None:
    store.create_collection("c", DIM)
    total = 2 * BATCH_SIZE + 123
    seen_committed: list[int] = []
    all_docs = docs(total)

    def generate() -> Iterator[KnowledgeDocument]:
        for i, doc in enumerate(all_docs):
            if i == BATCH_SIZE + 1:  # the first batch is committed before the second is consumed
                with sqlite3.connect(db) as raw:
                    seen_committed.append(raw.execute("SELECT count(*) FROM sb_knowledge_documents").fetchone()[0])
            yield doc

    assert store.insert("c", generate()) == [d.id for d in all_docs]
    assert seen_committed == [BATCH_SIZE]
    assert store.count("c") == total


def test_generator_atomicity_is_per_batch(store: SQLiteKnowledgeStore) -> None:
    store.create_collection("c", DIM)
    good = docs(BATCH_SIZE + 10)
    bad = KnowledgeDocument(id="bad", embedding=[float("nan")] * DIM)
    with pytest.raises(ValidationError):
        store.insert("c", iter(good + [bad]))
    assert store.count("c") == BATCH_SIZE, "the first batch was committed; the failing one was not"


def test_metadata_is_stored_as_given(store: SQLiteKnowledgeStore, db: Path) -> None:
    store.create_collection("c", 2)
    metadata = {"float": 1.0, "int": 1, "bool": True, "none": None, "nested": {"l": [1.0, "é", None]}}
    store.insert("c", [KnowledgeDocument(id="m", embedding=[1.0, 2.0], metadata=metadata)])
    [got] = store.get("c", ["m"])
    assert got.metadata == metadata
    assert type(got.metadata["float"]) is float and type(got.metadata["int"]) is int
    assert type(got.metadata["bool"]) is bool
    with sqlite3.connect(db) as raw:
        [(text,)] = raw.execute("SELECT metadata FROM sb_knowledge_documents").fetchall()
    assert '"float":1.0' in text and '"é"' in text


def test_write_to_missing_or_hostile_collection(store: SQLiteKnowledgeStore) -> None:
    with pytest.raises(CollectionNotFoundError):
        store.insert("missing", [])
    with pytest.raises(InvalidIdentifierError):
        store.insert("x'; DROP TABLE sb_knowledge_documents; --", docs(1))
    with pytest.raises(ValidationError):
        store.create_collection("c", 0)
    store.create_collection("c", DIM)
    with pytest.raises(ValidationError):
        store.insert("c", docs(1)[0])  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        store.get("c", "d0")
    with pytest.raises(ValidationError):
        store.scroll("c", cursor="not-a-cursor")


# -- lifecycle, URLs, schema -----------------------------------------------------------------------------

def test_closed_store_raises_and_close_is_idempotent(db: Path) -> None:
    s = SQLiteKnowledgeStore(path=db)
    s.create_collection("c", DIM)
    s.insert("c", docs(3))
    s.search("c", docs(1)[0].embedding or [])
    s.close()
    s.close()
    calls = [
        lambda: s.list_collections(), lambda: s.get_collection("c"), lambda: s.create_collection("d", 2),
        lambda: s.insert("c", docs(1, prefix="n")), lambda: s.search("c", [0.5] * DIM), lambda: s.count("c"),
        lambda: s.get("c", ["d0"]), lambda: s.delete("c", ["d0"]), lambda: s.scroll("c"),
        lambda: s.drop_collection("c"),
    ]
    for call in calls:
        with pytest.raises(StoreClosedError):
            call()


def test_url_path_and_memory(tmp_path: Path) -> None:
    path = tmp_path / "u.db"
    with SQLiteKnowledgeStore(f"sqlite:///{path}") as s:
        s.create_collection("c", 2)
        assert s.capabilities.persistent is True
    with SQLiteKnowledgeStore(path=path) as s:
        assert s.list_collections() == ["c"]
    with SQLiteKnowledgeStore("sqlite:///:memory:") as s:
        assert s.capabilities.persistent is False
        s.create_collection("c", 2)
        s.insert("c", [KnowledgeDocument(id="a", embedding=[1.0, 0.0])])
        assert ids(s.search("c", [1.0, 0.0])) == ["a"]
    for bad in [lambda: SQLiteKnowledgeStore(f"sqlite:///{path}", path=path),
                lambda: SQLiteKnowledgeStore("postgresql://localhost/db"),
                lambda: SQLiteKnowledgeStore(f"sqlite:///{path}?unknown=1")]:
        with pytest.raises(ConfigurationError):
            bad()
    with pytest.raises(InvalidIdentifierError):
        SQLiteKnowledgeStore(path=path, table_prefix="x; DROP")


def test_table_prefixes_keep_stores_apart(db: Path) -> None:
    with SQLiteKnowledgeStore(path=db) as a, SQLiteKnowledgeStore(path=db, table_prefix="other_") as b:
        a.create_collection("c", 2)
        assert b.list_collections() == []
        b.create_collection("c", 3)
        assert a.get_collection("c").dimension == 2
    with sqlite3.connect(db) as raw:
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        versions = dict(raw.execute("SELECT component, version FROM sb_schema_versions"))
    assert {"sb_knowledge_documents", "other_knowledge_documents"} <= tables
    assert versions["knowledge"] == len(module.MIGRATIONS)


# -- concurrency -----------------------------------------------------------------------------------------

def test_threads_search_and_write_at_once(store: SQLiteKnowledgeStore, db: Path) -> None:
    store.create_collection("c", DIM)
    store.insert("c", docs(200))
    errors: list[BaseException] = []
    other = SQLiteKnowledgeStore(path=db)

    def writer(n: int) -> None:
        target = store if n % 2 else other
        try:
            for j in range(10):
                target.upsert("c", docs(5, seed=n * 100 + j, prefix=f"t{n}_"))
                target.delete("c", [f"d{n * 10 + j}"])
        except Exception as exc:  # noqa: BLE001 - collected and asserted empty in the main thread
            errors.append(exc)

    def reader(n: int) -> None:
        try:
            for j in range(20):
                query = vectors(1, seed=1000 + n * 50 + j)[0].tolist()
                hits = store.search("c", query, k=10, filter={"even": True} if j % 2 else None)
                assert len(hits) == 10 and len({h.id for h in hits}) == 10
        except Exception as exc:  # noqa: BLE001 - collected and asserted empty in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    threads += [threading.Thread(target=reader, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    assert errors == []
    assert store.count("c") == 200 - 40 + 4 * 5
    query = vectors(1, seed=4242)[0].tolist()
    assert ids(store.search("c", query, k=20)) == exact_ids(store, "c", query, 20)
