"""Fixed data the conformance cases share. Expected results are never written here: the cases compute
them with :func:`storebridge.filters.evaluate`, numpy or :func:`storebridge.state.key_matches`.

The filter dataset is built to hit every corner of FILTERS.md: missing keys next to explicit ``None``,
``1`` next to ``1.0``, ``True`` next to ``1``, ``"1"`` next to ``1``, case differences, lists of strings
and numbers, empty lists, nested dicts and unicode.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..models import KnowledgeDocument

JSON = dict[str, Any]

#: Metadata of the filter dataset, one dict per document (ids are ``f"doc{i:02d}"``).
FILTER_METADATA: list[JSON] = [
    {"num": 1, "text": "ann", "flag": True, "tags": ["ml", "ai"], "lang": "en", "nested": {"k": "v", "n": 2}},
    {"num": 1.0, "text": "Ann", "flag": False, "tags": ["ML"], "lang": "de", "nested": {"k": "w", "n": 3.5}},
    {"num": 2, "text": "ANN", "flag": None, "tags": [], "lang": None, "nested": {}},
    {"num": 2.5, "text": "bob", "tags": ["ml"], "nested": {"k": "v", "deep": {"x": 1}}},
    {"num": -3, "text": "", "flag": True, "tags": [1, 2], "lang": "日本語"},
    {"num": 0, "text": "éclair", "flag": False, "tags": [2.0, 3], "lang": "fr"},
    {"num": 10, "text": "🚀 launch", "tags": ["🚀", "ml"], "lang": "en"},
    {"num": None, "text": "carol", "flag": True, "tags": None},
    {"text": "dave", "flag": 1, "tags": "ml", "lang": "en"},
    {"num": "1", "text": "1", "flag": 0, "tags": ["1"]},
    {"num": True, "text": "true", "flag": "true", "tags": [True]},
    {"num": [1, 2], "text": ["ann"], "flag": [True], "nested": {"k": ["v"]}},
    {"num": {"n": 1}, "text": {"k": "ann"}, "lang": "en"},
    {"num": 1.5, "text": "Bob", "flag": True, "tags": ["ai"], "lang": "EN", "nested": {"k": "V", "n": 2.0}},
    {"num": 100000, "text": "ann ", "tags": ["ml", "ml"], "lang": "en", "with space": "yes"},
    {"num": -0.5, "text": "ånn", "flag": False, "tags": ["a", "b", "c"], "lang": "sv", "with space": "no"},
    {"num": 3, "text": "eve", "flag": True, "tags": ["ml", 1], "lang": "en", "nested": None},
    {"num": 1e-9, "text": "frank", "flag": False, "lang": "en-GB", "a-b": 1},
    {"num": -1, "text": "grace", "flag": True, "tags": ["AI"], "lang": "zh", "a-b": 2},
    {"num": 7, "text": "héidi", "tags": ["ml", "ai", "nlp"], "lang": "en", "nested": {"n": 7}},
    {},
    {"num": 2.0, "text": "ivan", "flag": False, "tags": ["ai", "ml"], "lang": "ru"},
    {"num": 5, "text": "judy", "flag": None, "tags": [], "nested": {"k": None}},
    {"num": 9.75, "text": "ann", "flag": True, "tags": ["x"], "lang": "es"},
    {"num": -100, "text": "mallory", "tags": [0], "lang": "en", "nested": {"k": "v", "n": "2"}},
    {"num": 4, "text": "Ñandú", "flag": False, "tags": [False], "lang": "es"},
    {"num": 6, "text": "oscar", "flag": True, "tags": ["ml"], "lang": "en", "nested": {"k": "v", "n": 1}},
    {"num": 8, "text": "peggy", "flag": True, "lang": "en", "extra": "only here"},
    {"num": 1, "text": "trent", "flag": False, "tags": ["ml", "AI"], "lang": "it"},
    {"num": 12.5, "text": "victor", "flag": True, "tags": ["nlp"], "lang": "en", "nested": {"k": "x"}},
]

FILTER_DIMENSION = 8

#: Filter cases per operator. The key names the test (``test_filter_<key>``).
FILTER_CASES: dict[str, list[JSON]] = {
    "eq": [
        {"num": 1}, {"num": 1.0}, {"num": {"$eq": 2.5}}, {"num": 0}, {"num": -3},
        {"text": "ann"}, {"text": "Ann"}, {"text": ""}, {"text": "🚀 launch"}, {"text": "héidi"},
        {"flag": True}, {"flag": False}, {"lang": "日本語"}, {"tags": "ml"}, {"with space": "yes"}, {"a-b": 1},
    ],
    "ne": [
        {"num": {"$ne": 1}}, {"num": {"$ne": 2.5}}, {"text": {"$ne": "ann"}}, {"flag": {"$ne": True}},
        {"flag": {"$ne": False}}, {"lang": {"$ne": "en"}}, {"tags": {"$ne": "ml"}}, {"extra": {"$ne": "x"}},
    ],
    "gt": [
        {"num": {"$gt": 1}}, {"num": {"$gt": 1.5}}, {"num": {"$gt": -1}}, {"num": {"$gt": 0}},
        {"num": {"$gt": 100000}}, {"flag": {"$gt": 0}}, {"text": {"$gt": 0}}, {"a-b": {"$gt": 1}},
    ],
    "gte": [
        {"num": {"$gte": 1}}, {"num": {"$gte": 1.5}}, {"num": {"$gte": 2}}, {"num": {"$gte": -100}},
        {"num": {"$gte": 0.0}}, {"flag": {"$gte": 0}},
    ],
    "lt": [
        {"num": {"$lt": 1}}, {"num": {"$lt": 0}}, {"num": {"$lt": 2.5}}, {"num": {"$lt": -100}},
        {"num": {"$lt": 1e-8}}, {"flag": {"$lt": 2}},
    ],
    "lte": [
        {"num": {"$lte": 1}}, {"num": {"$lte": 1.0}}, {"num": {"$lte": -3}}, {"num": {"$lte": 0}},
        {"flag": {"$lte": 1}},
    ],
    "in": [
        {"num": {"$in": [1, 2]}}, {"num": {"$in": [2.5, 10, 99]}}, {"text": {"$in": ["ann", "bob"]}},
        {"text": {"$in": ["ANN", "Bob", "🚀 launch"]}}, {"flag": {"$in": [True]}}, {"flag": {"$in": [False, 0]}},
        {"num": {"$in": []}}, {"lang": {"$in": ["en", "日本語"]}}, {"tags": {"$in": ["ml"]}},
    ],
    "nin": [
        {"num": {"$nin": [1, 2]}}, {"text": {"$nin": ["ann", "bob"]}}, {"flag": {"$nin": [True]}},
        {"num": {"$nin": []}}, {"lang": {"$nin": ["en", "de", "fr"]}}, {"tags": {"$nin": ["ml"]}},
    ],
    "exists": [
        {"num": {"$exists": True}}, {"num": {"$exists": False}}, {"flag": {"$exists": True}},
        {"flag": {"$exists": False}}, {"lang": {"$exists": False}}, {"tags": {"$exists": True}},
        {"nested": {"$exists": True}}, {"extra": {"$exists": True}}, {"nothing": {"$exists": False}},
    ],
    "contains": [
        {"tags": {"$contains": "ml"}}, {"tags": {"$contains": "ML"}}, {"tags": {"$contains": "AI"}},
        {"tags": {"$contains": 1}}, {"tags": {"$contains": 2}}, {"tags": {"$contains": True}},
        {"tags": {"$contains": False}}, {"tags": {"$contains": 0}}, {"tags": {"$contains": "🚀"}},
        {"tags": {"$contains": "1"}}, {"text": {"$contains": "ann"}}, {"num": {"$contains": 1}},
    ],
    "and": [
        {"$and": [{"lang": "en"}, {"flag": True}]},
        {"$and": [{"num": {"$gte": 1}}, {"num": {"$lt": 10}}]},
        {"lang": "en", "tags": {"$contains": "ml"}},
        {"num": {"$gt": 0, "$lte": 5}},
        {"$and": [{"text": {"$ne": "ann"}}, {"flag": {"$exists": True}}]},
    ],
    "or": [
        {"$or": [{"lang": "de"}, {"lang": "fr"}]},
        {"$or": [{"num": {"$lt": 0}}, {"flag": False}]},
        {"$or": [{"text": "ann"}, {"tags": {"$contains": "nlp"}}]},
        {"$or": [{"nothing": 1}, {"num": 2}]},
    ],
    "not": [
        {"$not": {"lang": "en"}},
        {"$not": {"num": {"$gt": 1}}},
        {"$not": {"flag": {"$exists": True}}},
        {"$not": {"tags": {"$contains": "ml"}}},
        {"$not": {"num": {"$in": [1, 2]}}},
    ],
    "mixed_types": [
        {"num": 1}, {"num": True}, {"num": "1"}, {"flag": 1}, {"flag": 0}, {"flag": True}, {"flag": "true"},
        {"text": "1"}, {"tags": {"$contains": 2}}, {"num": {"$in": [True, "1"]}}, {"num": {"$ne": 1}},
        {"num": {"$gte": 1, "$lte": 1}},
    ],
    "none_and_missing": [
        {"lang": {"$exists": False}}, {"lang": {"$ne": "en"}}, {"lang": {"$nin": ["en"]}},
        {"flag": {"$exists": False}}, {"flag": {"$ne": False}}, {"num": {"$exists": False}},
        {"num": {"$lte": 0}}, {"num": {"$ne": 0}}, {"tags": {"$exists": False}},
        {"nested": {"$exists": False}}, {"$not": {"lang": {"$exists": True}}},
    ],
    "nested_logic": [
        {"$or": [{"$and": [{"lang": "en"}, {"num": {"$gt": 5}}]}, {"$not": {"flag": {"$exists": True}}}]},
        {"$and": [{"$or": [{"text": "ann"}, {"text": "Ann"}]}, {"$not": {"flag": False}}]},
        {"$not": {"$or": [{"lang": "en"}, {"$and": [{"num": {"$lt": 0}}, {"flag": True}]}]}},
        {"$and": [{"$not": {"$not": {"tags": {"$contains": "ml"}}}}, {"num": {"$nin": [1, 2]}}]},
        {"$or": [{"$or": [{"num": 1}, {"num": 2}]}, {"$and": [{"lang": {"$in": ["de", "fr"]}}]}]},
    ],
    "nested_keys": [
        {"nested.k": "v"}, {"nested.n": 2}, {"nested.n": {"$gt": 2}}, {"nested.k": {"$exists": False}},
        {"nested.deep.x": 1}, {"nested.k": {"$ne": "v"}}, {"nested.n": {"$in": [1, 7]}},
    ],
}

#: Filters that are not well formed: ``FilterError`` everywhere, before any engine sees them.
MALFORMED_FILTERS: list[Any] = [
    {"a": {"$foo": 1}},
    {"$and": []},
    {"$or": []},
    {"a": {"$in": 3}},
    {"a": {"$gt": "x"}},
    {"a": [1, 2]},
    {"a": {"$exists": 1}},
    {"a": {"$eq": None}},
    {"a": {"$eq": {"b": 1}}},
    {"$nor": [{"a": 1}]},
    {"a": {"$gt": 1, "b": 2}},
    {"a": {"$gt": float("nan")}},
    [{"a": 1}],
]

#: Keys that would be code in a query language if a backend pasted them in.
HOSTILE_FILTER_KEYS: list[str] = [
    "a'); drop table x; --",
    'a"b',
    "$where",
    "a`b",
    "a;b",
    "a\nb",
    "a\x00b",
    "",
    " a",
    "x" * 256,
]

#: Collection names ``create_collection`` and friends must refuse with ``InvalidIdentifierError``.
HOSTILE_COLLECTION_NAMES: list[str] = [
    "a;drop table x",
    "../etc",
    "x'y",
    'a"b',
    "",
    "c" * 64,
    "c" * 65,
    "-leading-dash",
    "with space",
    "a/b",
    "a.b",
    "é",
    "a\x00b",
    "trailing_newline\n",
]

#: Metadata that must come back exactly (types included), whatever the engine can hold natively.
ROUND_TRIP_METADATA: list[JSON] = [
    {},
    {"nested": {"a": {"b": {"c": [1, 2, {"d": None}]}}}, "list": [1, "two", 3.5, None, True, [], {}]},
    {"emoji": "🚀✨", "cjk": "知识库", "rtl": "مرحبا", "combining": "e\u0301", "escapes": "quote\" back\\ nl\n tab\t"},
    {"none": None, "empty_dict": {}, "empty_list": [], "empty_str": ""},
    {"t": True, "f": False, "one": 1, "zero": 0, "one_float": 1.0, "x": 1.5, "neg": -7, "tiny": 1e-300},
    {"big": 2**53 + 1, "neg_big": -(2**62), "float_big": 1.7976931348623157e308, "frac": 0.1},
    {"key with space": 1, "key.with.dots": "d", "$dollar": "x", "'quote": "q", "日本": "語", "": "empty key"},
    {"looks_internal": {"_id": 1, "id": 2, "embedding": [0.5], "content": "c", "metadata": {}}},
]

#: Session ids that are data: SQL, paths, separators, unicode, length. Each must work and stay apart.
HOSTILE_SESSION_IDS: list[str] = [
    "'; DROP TABLE messages; --",
    "../../etc/passwd",
    "a/b\\c",
    "..",
    ".",
    "~",
    "CON",
    "x" * 500,
    "é" * 300,
    "会話 🚀 セッション",
    "  spaces  ",
    "%2e%2e%2f",
    "line\nbreak",
    "*?[]{}",
]

#: Namespaces a state store must refuse with ``InvalidIdentifierError`` (they prefix every key).
HOSTILE_NAMESPACES: list[str] = ["a*", "a?b", "[ab]", "a b", "a'b", "a;b", "n" * 129, "trailing_newline\n", "%"]

#: Values a state store must hand back equal and of the same type (tuples come back as lists).
STATE_VALUES: list[Any] = [
    "text",
    "",
    "日本語 🚀 ✓",
    b"\x00\xffbinary\n",
    b"",
    0,
    -7,
    2**53 + 1,
    1.5,
    1.0,
    -0.25,
    True,
    False,
    None,
    [1, "a", None, 2.5, True],
    (1, 2, "three"),
    [],
    {},
    {"nested": {"list": [1, 2.5, {"x": True}], "none": None}, "emoji": "🚀", "int": 1, "float": 1.0},
]

#: State keys ``keys(pattern, prefix=)`` is checked on, glob and LIKE metacharacters included.
STATE_KEYS: list[str] = [
    "user:1", "user:2", "user:10", "users", "user:", "admin:1", "a", "b", "ab", "ba", "c", "aa",
    "x%y", "x_y", "xay", "x*y", "[lit]", "l", "User:3", "ünï:1", "a b", "a\\b",
]
STATE_PATTERNS: list[tuple[str | None, str | None]] = [
    ("user:*", None), ("?", None), ("[ab]*", None), ("*", None), ("user:?", None), ("*:1", None),
    ("[!a]*", None), ("x_y", None), ("x?y", None), ("*%*", None), ("[[]lit]", None), (None, "user:"),
    (None, "x_"), (None, "x%"), (None, "["), (None, "a"), (None, ""), ("*1", "user"), (None, "U"), (None, None),
]


def unit_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def random_vectors(count: int, dimension: int, seed: int) -> np.ndarray:
    """Seeded float32 vectors (what engines store), so references use exactly the stored values."""
    return unit_rng(seed).standard_normal((count, dimension)).astype(np.float32)


def filter_documents() -> list[KnowledgeDocument]:
    """The filter dataset as documents with seeded vectors."""
    vectors = random_vectors(len(FILTER_METADATA), FILTER_DIMENSION, seed=7)
    return [
        KnowledgeDocument(id=f"doc{i:02d}", content=f"document {i}", embedding=vectors[i].tolist(), metadata=meta)
        for i, meta in enumerate(FILTER_METADATA)
    ]


__all__ = [
    "FILTER_CASES",
    "FILTER_DIMENSION",
    "FILTER_METADATA",
    "HOSTILE_COLLECTION_NAMES",
    "HOSTILE_FILTER_KEYS",
    "HOSTILE_NAMESPACES",
    "HOSTILE_SESSION_IDS",
    "MALFORMED_FILTERS",
    "ROUND_TRIP_METADATA",
    "STATE_KEYS",
    "STATE_PATTERNS",
    "STATE_VALUES",
    "filter_documents",
    "random_vectors",
]
