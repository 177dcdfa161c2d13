"""Chroma adapter: name mapping, the pre-filter compiler, the reserved keys, and FILTERS.md semantics
(client-side) where Chroma's own ``where`` differs, on the embedded client."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from storebridge.errors import AlreadyExistsError, ConfigurationError, StoreClosedError
from storebridge.filters import evaluate, parse_filter
from storebridge.models import KnowledgeDocument

pytest.importorskip("chromadb")

from storebridge.adapters.chroma import ChromaKnowledgeStore, chroma_collection_name
from storebridge.adapters.chroma.knowledge import _string_prefilter


def test_collection_names_are_valid_distinct_and_deterministic() -> None:
    names = ["a", "ab", "a-b", "a_b", "9-x", "_Mixed-Case_", "n" * 63, "x_"]
    mapped = [chroma_collection_name(n) for n in names]
    assert len(set(mapped)) == len(mapped)
    assert mapped == [chroma_collection_name(n) for n in names]
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]", m) for m in mapped)


def test_prefilter_only_pushes_string_equality() -> None:
    assert _string_prefilter(parse_filter({"a": "x"})) == {"a": {"$eq": "x"}}
    assert _string_prefilter(parse_filter({"a": 1})) is None
    assert _string_prefilter(parse_filter({"a": {"$ne": "x"}})) is None
    assert _string_prefilter(parse_filter({"$not": {"a": "x"}})) is None
    assert _string_prefilter(parse_filter({"sbx": "x"})) is None  # reserved prefix: never indexed
    assert _string_prefilter(parse_filter({"$or": [{"a": "x"}, {"b": {"$in": ["y"]}}]})) == {
        "$or": [{"a": {"$eq": "x"}}, {"b": {"$in": ["y"]}}]}


@pytest.fixture
def store(tmp_path: Path):
    s = ChromaKnowledgeStore(f"chroma:///{tmp_path}/db")
    yield s
    s.close()


def test_semantics_where_chroma_differs(store: ChromaKnowledgeStore) -> None:
    store.create_collection("sem", 2, "dot")
    metas = [{"t": True}, {"t": 1}, {"t": 1.0}, {}, {"t": None}, {"t": [1, True]}, {"t": "1"},
             {"t": {"nested": 1}}, {"u": 'q"\\'}]
    store.insert("sem", [KnowledgeDocument(id=f"d{i}", embedding=[1.0, float(i)], metadata=m)
                         for i, m in enumerate(metas)])
    for spec in ({"t": True}, {"t": 1}, {"t": {"$ne": 1}}, {"$not": {"t": 1}}, {"t": {"$exists": True}},
                 {"t": {"$contains": True}}, {"t": {"$nin": ["1"]}}, {"t": {"$gte": 1}}, {"u": 'q"\\'},
                 {"t.nested": 1}):
        expected = {f"d{i}" for i, m in enumerate(metas) if evaluate(spec, m)}
        assert {h.id for h in store.search("sem", [1.0, 0.0], k=20, filter=spec)} == expected, spec
        assert store.count("sem", filter=spec) == len(expected), spec
    got = {d.id: d.metadata for d in store.get("sem", [f"d{i}" for i in range(len(metas))])}
    assert got == {f"d{i}": m for i, m in enumerate(metas)}, "reserved keys must not leak into metadata"


def test_insert_refuses_existing_ids(store: ChromaKnowledgeStore) -> None:
    store.create_collection("dups", 2)
    store.insert("dups", [KnowledgeDocument(id="a", embedding=[1.0, 0.0])])
    with pytest.raises(AlreadyExistsError):
        store.insert("dups", [KnowledgeDocument(id="b", embedding=[1.0, 0.0]),
                              KnowledgeDocument(id="a", embedding=[0.0, 1.0])])
    assert store.count("dups") == 1


def test_list_collections_returns_our_names(store: ChromaKnowledgeStore) -> None:
    store.create_collection("x", 2)
    store.create_collection("a-b", 2)
    store._client.create_collection("not-ours", embedding_function=None)
    assert store.list_collections() == ["a-b", "x"]


def test_closed_store_raises(tmp_path: Path) -> None:
    s = ChromaKnowledgeStore(path=str(tmp_path / "c"))
    s.close()
    with pytest.raises(StoreClosedError):
        s.list_collections()


def test_bad_urls() -> None:
    with pytest.raises(ConfigurationError):
        ChromaKnowledgeStore("sqlite:///x")
    with pytest.raises(ConfigurationError):
        ChromaKnowledgeStore("chroma://host/x")
