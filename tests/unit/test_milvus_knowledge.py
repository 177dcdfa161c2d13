"""Milvus adapter: name mapping, string escaping, the pre-filter compiler, and hostile values end to end
on milvus-lite (client-side filters give FILTERS.md's answers where Milvus's own JSON semantics differ)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from storebridge.errors import AlreadyExistsError, StoreClosedError
from storebridge.filters import evaluate, parse_filter
from storebridge.models import KnowledgeDocument

pytest.importorskip("pymilvus")

from storebridge.adapters.milvus import MilvusKnowledgeStore, milvus_collection_name, milvus_string, prefilter

HOSTILE = ['q"z', "bs\\", '\\"', "nl\nx", "tab\tx", "cr\r", "ctl\x01", "'; drop", '") or (id != "', "文書 🚀", "e\u0301"]


def test_collection_names_are_valid_distinct_and_deterministic() -> None:
    names = ["a", "a-b", "a_b", "9-x", "_Mixed-Case_", "n" * 63]
    mapped = [milvus_collection_name(n) for n in names]
    assert len(set(mapped)) == len(mapped)
    assert mapped == [milvus_collection_name(n) for n in names]
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,254}", m) for m in mapped)


def test_milvus_string_escapes_quotes_and_backslashes() -> None:
    assert milvus_string('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    with pytest.raises(TypeError):
        milvus_string(1)  # type: ignore[arg-type]


def test_prefilter_only_pushes_string_equality() -> None:
    assert prefilter(parse_filter({"a": "x"})) == 'metadata["a"] == "x"'
    assert prefilter(parse_filter({"a": 1})) is None          # bool/int/float: Milvus differs, client-side
    assert prefilter(parse_filter({"a": {"$ne": "x"}})) is None
    assert prefilter(parse_filter({"$not": {"a": "x"}})) is None
    assert prefilter(parse_filter({"$or": [{"a": "x"}, {"b": 1}]})) is None
    assert prefilter(parse_filter({"$and": [{"a": "x"}, {"b": 1}]})) == '(metadata["a"] == "x")'
    assert prefilter(parse_filter({"a": {"$in": ["x", "y"]}})) == 'metadata["a"] == "x" or metadata["a"] == "y"'


@pytest.fixture
def store(tmp_path: Path):
    s = MilvusKnowledgeStore(f"milvus:///{tmp_path}/m.db")
    yield s
    s.close()


def test_hostile_values_and_ids_end_to_end(store: MilvusKnowledgeStore) -> None:
    store.create_collection("hostile-values", 2, "l2")
    docs = [KnowledgeDocument(id=v, embedding=[float(i), 1.0], metadata={"s": v, "n": i})
            for i, v in enumerate(HOSTILE)]
    store.insert("hostile-values", docs)
    assert [d.id for d in store.get("hostile-values", HOSTILE)] == HOSTILE
    for v in HOSTILE:
        assert store.count("hostile-values", filter={"s": v}) == 1
        assert [h.id for h in store.search("hostile-values", [0.0, 1.0], k=20, filter={"s": {"$in": [v]}})] == [v]
    with pytest.raises(AlreadyExistsError):
        store.insert("hostile-values", docs[:1])
    assert store.delete("hostile-values", [HOSTILE[0], HOSTILE[1]]) == 2
    assert store.count("hostile-values") == len(HOSTILE) - 2


def test_client_side_semantics_differ_from_milvus(store: MilvusKnowledgeStore) -> None:
    """Milvus matches ``true == 1`` and drops missing keys under ``!=``/``not``; we must not."""
    store.create_collection("semantics", 2)
    metas = [{"t": True}, {"t": 1}, {"t": 1.0}, {}, {"t": None}, {"t": [1, True]}]
    store.insert("semantics", [KnowledgeDocument(id=f"d{i}", embedding=[1.0, float(i)], metadata=m)
                               for i, m in enumerate(metas)])
    for spec in ({"t": True}, {"t": 1}, {"t": {"$ne": 1}}, {"$not": {"t": 1}}, {"t": {"$exists": True}},
                 {"t": {"$contains": True}}, {"t": {"$nin": [True]}}, {"t": {"$gte": 1}}):
        expected = {f"d{i}" for i, m in enumerate(metas) if evaluate(spec, m)}
        assert {h.id for h in store.search("semantics", [1.0, 0.0], k=10, filter=spec)} == expected, spec
        assert store.count("semantics", filter=spec) == len(expected), spec


def test_closed_store_raises(tmp_path: Path) -> None:
    s = MilvusKnowledgeStore(uri=str(tmp_path / "c.db"))
    s.close()
    s.close()
    with pytest.raises(StoreClosedError):
        s.list_collections()


def test_token_is_masked_in_repr() -> None:
    s = MilvusKnowledgeStore.__new__(MilvusKnowledgeStore)
    s._secrets, s._where = ["s3cret"], "http://u:s3cret@h:19530"
    assert "s3cret" not in repr(s)
