"""Both filter translators: every LlamaIndex ``FilterOperator`` and condition into storebridge's tree (checked
by evaluating both on data), and storebridge trees into LlamaIndex pre-filters (checked to be supersets)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)
from llama_index.core.vector_stores.utils import build_metadata_filter_fn

from storebridge.errors import FilterError, UnsupportedFilterError
from storebridge.filters import Op, evaluate, parse_filter, to_dict
from storebridge.integrations._llamaindex_filters import (
    Translated,
    from_metadata_filters,
    to_metadata_filters,
)
from storebridge.testing.data import FILTER_CASES, FILTER_METADATA


def F(key: str, value: Any, op: FilterOperator = FilterOperator.EQ) -> MetadataFilter:
    return MetadataFilter(key=key, value=value, operator=op)


def Fs(*filters: Any, condition: str = "and") -> MetadataFilters:
    return MetadataFilters(filters=list(filters), condition=FilterCondition(condition))


def tree_of(filters: MetadataFilters) -> dict[str, Any] | None:
    translated = from_metadata_filters(filters)
    assert translated.refine is None, "expected an exact translation"
    return None if translated.tree is None else to_dict(translated.tree)


def matches(translated: Translated, metadata: dict[str, Any]) -> bool:
    """What a store returns for the translation: the tree, then the client-side refinement."""
    if translated.nothing:
        return False
    return evaluate(translated.tree, metadata) and (translated.refine is None or translated.refine(metadata))


#: One filter per operator and the storebridge tree it becomes.
OPERATOR_CASES: dict[FilterOperator, tuple[MetadataFilter, dict[str, Any]]] = {
    FilterOperator.EQ: (F("a", "x"), {"a": {"$eq": "x"}}),
    FilterOperator.NE: (F("a", 2, FilterOperator.NE), {"a": {"$ne": 2}}),
    FilterOperator.GT: (F("a", 1.5, FilterOperator.GT), {"a": {"$gt": 1.5}}),
    FilterOperator.GTE: (F("a", 2, FilterOperator.GTE), {"a": {"$gte": 2}}),
    FilterOperator.LT: (F("a", -1, FilterOperator.LT), {"a": {"$lt": -1}}),
    FilterOperator.LTE: (F("a", 0.0, FilterOperator.LTE), {"a": {"$lte": 0.0}}),
    FilterOperator.IN: (F("a", ["x", "y"], FilterOperator.IN), {"a": {"$in": ["x", "y"]}}),
    FilterOperator.NIN: (F("a", [1, 2], FilterOperator.NIN), {"a": {"$nin": [1, 2]}}),
    FilterOperator.CONTAINS: (F("tags", "ml", FilterOperator.CONTAINS), {"tags": {"$contains": "ml"}}),
    FilterOperator.ANY: (F("tags", ["ml", "ai"], FilterOperator.ANY),
                         {"$or": [{"tags": {"$contains": "ml"}}, {"tags": {"$contains": "ai"}}]}),
    FilterOperator.ALL: (F("tags", ["ml", "ai"], FilterOperator.ALL),
                         {"$and": [{"tags": {"$contains": "ml"}}, {"tags": {"$contains": "ai"}}]}),
}
RAISING = {FilterOperator.TEXT_MATCH, FilterOperator.TEXT_MATCH_INSENSITIVE}
REFINED = {FilterOperator.IS_EMPTY}


def test_every_operator_is_covered() -> None:
    """A new LlamaIndex operator fails here until it is translated (or refused) on purpose."""
    assert set(FilterOperator) == set(OPERATOR_CASES) | RAISING | REFINED


@pytest.mark.parametrize("op", list(OPERATOR_CASES), ids=[op.name for op in OPERATOR_CASES])
def test_operator_translation(op: FilterOperator) -> None:
    item, expected = OPERATOR_CASES[op]
    assert tree_of(Fs(item)) == expected


@pytest.mark.parametrize("op", sorted(RAISING, key=str), ids=lambda op: op.name)
def test_text_match_has_no_equivalent(op: FilterOperator) -> None:
    with pytest.raises(UnsupportedFilterError, match=op.name):
        from_metadata_filters(Fs(F("title", "vector", op)))
    with pytest.raises(UnsupportedFilterError):  # also when nested deep down
        from_metadata_filters(Fs(F("a", 1), Fs(F("b", 2), F("title", "x", op), condition="or")))


#: Values of one key, and whether LlamaIndex's documented IS_EMPTY ("missing, null or empty array") holds.
EMPTINESS: list[tuple[dict[str, Any], bool]] = [({}, True), ({"k": None}, True), ({"k": []}, True), ({"k": ["x"]}, False), ({"k": ""}, False),
             ({"k": 0}, False), ({"k": False}, False), ({"k": {}}, False), ({"other": []}, True)]


@pytest.mark.parametrize(("metadata", "empty"), EMPTINESS, ids=[repr(m) for m, _ in EMPTINESS])
def test_is_empty_is_the_documented_meaning(metadata: dict[str, Any], empty: bool) -> None:
    """IS_EMPTY: the tree keeps every candidate (it cannot say "empty list"); the refinement decides."""
    translated = from_metadata_filters(Fs(F("k", None, FilterOperator.IS_EMPTY)))
    assert translated.tree is None and translated.refine is not None
    assert matches(translated, metadata) is empty
    negated = from_metadata_filters(Fs(F("k", None, FilterOperator.IS_EMPTY), condition="not"))
    assert negated.tree is not None and to_dict(negated.tree) == {"$not": {"k": {"$exists": False}}}, (
        "NOT IS_EMPTY narrows to existing values")
    assert matches(negated, metadata) is (not empty)


def test_is_empty_inside_conditions_stays_a_superset() -> None:
    """Wherever IS_EMPTY sits, the pushed tree never loses a match and the refinement is exact."""
    cases = [
        Fs(F("k", None, FilterOperator.IS_EMPTY), F("n", 1)),
        Fs(F("k", None, FilterOperator.IS_EMPTY), F("n", 1), condition="or"),
        Fs(Fs(F("k", None, FilterOperator.IS_EMPTY), F("n", 2, FilterOperator.GTE), condition="or"), condition="not"),
        Fs(F("n", 1, FilterOperator.NE), Fs(F("k", None, FilterOperator.IS_EMPTY), condition="not")),
    ]
    data = [{**m, "n": n} for m, _ in EMPTINESS for n in (1, 2, 3)] + [m for m, _ in EMPTINESS]
    for filters in cases:
        translated = from_metadata_filters(filters)
        for metadata in data:
            exact = _reference(filters, metadata)
            assert matches(translated, metadata) is exact, (filters, metadata)
            if exact and translated.tree is not None:
                assert evaluate(translated.tree, metadata), f"the pushed tree lost a match: {filters} {metadata}"


def _reference(filters: MetadataFilters, metadata: dict[str, Any]) -> bool:
    """LlamaIndex's meaning, written out for the data above (ints, lists of strings, no bools)."""
    results = []
    for item in filters.filters:
        if isinstance(item, MetadataFilters):
            results.append(_reference(item, metadata))
            continue
        value = metadata.get(item.key)
        if item.operator is FilterOperator.IS_EMPTY:
            results.append(value is None or value == [])
        else:
            results.append(build_metadata_filter_fn(lambda _: metadata, Fs(item))("x"))
    if filters.condition is FilterCondition.OR:
        return any(results)
    if filters.condition is FilterCondition.NOT:
        return not any(results)
    return all(results)


def test_conditions_and_nesting() -> None:
    nested = Fs(
        F("lang", "en"),
        Fs(F("year", 2020, FilterOperator.GTE), F("tags", "ml", FilterOperator.CONTAINS), condition="or"),
        Fs(F("draft", 1), F("hidden", 1), condition="not"),
    )
    assert tree_of(nested) == {"$and": [
        {"lang": {"$eq": "en"}},
        {"$or": [{"year": {"$gte": 2020}}, {"tags": {"$contains": "ml"}}]},
        {"$not": {"$or": [{"draft": {"$eq": 1}}, {"hidden": {"$eq": 1}}]}},  # NOT: none of them match
    ]}
    assert tree_of(Fs(F("a", 1), condition="not")) == {"$not": {"a": {"$eq": 1}}}
    assert tree_of(Fs(F("a", 1), F("b", 2), condition="or")) == {"$or": [{"a": {"$eq": 1}}, {"b": {"$eq": 2}}]}
    assert tree_of(Fs(Fs(Fs(F("a", 1))))) == {"a": {"$eq": 1}}, "single-child levels fold away"


def test_constants_fold() -> None:
    """Empty lists and empty MetadataFilters behave as LlamaIndex's any()/all() do, without constant nodes."""
    assert from_metadata_filters(Fs(F("t", [], FilterOperator.ANY))).nothing is True
    assert from_metadata_filters(Fs(F("t", [], FilterOperator.ALL))) == Translated(None)
    assert from_metadata_filters(Fs()) == Translated(None)
    assert from_metadata_filters(Fs(condition="or")).nothing is True
    assert from_metadata_filters(Fs(condition="not")) == Translated(None)
    assert from_metadata_filters(Fs(F("t", [], FilterOperator.ANY), condition="not")) == Translated(None)
    assert tree_of(Fs(F("a", 1), F("t", [], FilterOperator.ALL))) == {"a": {"$eq": 1}}
    assert from_metadata_filters(None) == Translated(None)
    assert tree_of(Fs(F("t", "ml", FilterOperator.ANY))) == {"t": {"$contains": "ml"}}, "a scalar is one value"


@pytest.mark.parametrize(("filters", "error"), [
    (Fs(F("a", None)), UnsupportedFilterError),
    (Fs(F("a", None, FilterOperator.NE)), UnsupportedFilterError),
    (Fs(F("a", [1, 2])), UnsupportedFilterError),
    (Fs(F("a", "2024-01-01", FilterOperator.GT)), UnsupportedFilterError),
    (Fs(F("a", "x", FilterOperator.IN)), FilterError),
    (Fs(F("a'); drop table x; --", 1)), FilterError),
    (Fs(F("$where", 1)), FilterError),
    ({"a": 1}, FilterError),
], ids=["eq-none", "ne-none", "eq-list", "range-string", "in-scalar", "hostile-key", "dollar-key", "not-filters"])
def test_untranslatable_filters_raise(filters: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        from_metadata_filters(filters)


#: Flat LlamaIndex filters on clean data (no bools, one type per key), where LlamaIndex's own evaluator
#: and storebridge must agree exactly.
CLEAN: list[dict[str, Any]] = [{"n": n, "s": s, "t": t} for n in (0, 1, 2.5, 7) for s in ("a", "b") for t in ([], ["x"], ["x", "y"])]
CLEAN += [{}, {"n": None, "t": None}, {"s": "a"}]
FLAT = [
    Fs(F("n", 1)), Fs(F("n", 1, FilterOperator.NE)), Fs(F("n", 1, FilterOperator.GT)), Fs(F("n", 2.5, FilterOperator.GTE)),
    Fs(F("n", 2.5, FilterOperator.LT)), Fs(F("n", 1, FilterOperator.LTE)), Fs(F("s", ["a", "c"], FilterOperator.IN)),
    Fs(F("s", ["a"], FilterOperator.NIN)), Fs(F("t", "y", FilterOperator.CONTAINS)), Fs(F("t", ["x", "z"], FilterOperator.ANY)),
    Fs(F("t", ["x", "y"], FilterOperator.ALL)), Fs(F("t", None, FilterOperator.IS_EMPTY)),
    Fs(F("n", 1, FilterOperator.GT), F("s", "a"), condition="or"), Fs(F("n", 1), F("s", "b"), condition="not"),
    Fs(F("n", 0, FilterOperator.GTE), F("t", "x", FilterOperator.CONTAINS)),
]


@pytest.mark.parametrize("filters", FLAT, ids=[str(i) for i in range(len(FLAT))])
def test_agrees_with_llamaindex_evaluator_on_clean_data(filters: MetadataFilters) -> None:
    translated = from_metadata_filters(filters)
    for metadata in CLEAN:
        try:
            theirs = build_metadata_filter_fn(lambda _: metadata, filters)("x")  # noqa: B023
        except TypeError:  # LlamaIndex compares a list with a number: storebridge says "no match"
            theirs = False
        assert matches(translated, metadata) is theirs, (filters, metadata)


# -- storebridge -> LlamaIndex ----------------------------------------------------------------------------


def test_inverse_is_exact_where_everything_is_representable() -> None:
    for item, _ in [OPERATOR_CASES[op] for op in OPERATOR_CASES if op not in (FilterOperator.ANY, FilterOperator.ALL)]:
        filters = Fs(item)
        assert to_metadata_filters(from_metadata_filters(filters).tree) == filters
    nested = Fs(F("a", 1), Fs(F("b", "x"), F("c", [1.0, 2.5], FilterOperator.IN), condition="or"))
    assert to_metadata_filters(from_metadata_filters(nested).tree) == nested
    assert to_metadata_filters(None) is None


def test_inverse_widens_what_it_cannot_say() -> None:
    """Bools, mixed lists, $not, $exists: true, dotted and skipped keys widen to 'no filter' for that part."""
    def pushed(spec: dict[str, Any], **options: Any) -> Any:
        result = to_metadata_filters(parse_filter(spec), **options)
        return None if result is None else tree_of(result)

    assert pushed({"flag": True}) is None
    assert pushed({"n": {"$in": [1, "1"]}}) is None
    assert pushed({"$not": {"n": 1}}) is None
    assert pushed({"n": {"$exists": True}}) is None
    assert pushed({"nested.k": "v"}) is None
    assert pushed({"doc_id": "x"}, skip_keys={"doc_id"}) is None
    assert pushed({"n": 1, "flag": True}) == {"n": {"$eq": 1}}
    assert pushed({"$or": [{"n": 1}, {"flag": True}]}) is None, "one unbounded branch unbounds the $or"
    assert pushed({"n": {"$gt": 1}}, operators={Op.EQ}) is None
    assert pushed({"n": 1, "$or": [{"a": 1}, {"b": 2}]}, nested=False) == {"n": {"$eq": 1}}
    is_empty = to_metadata_filters(parse_filter({"n": {"$exists": False}}))
    assert is_empty is not None and is_empty.filters[0].operator is FilterOperator.IS_EMPTY


@pytest.mark.parametrize("case", sorted(FILTER_CASES))
def test_default_pushdown_is_a_superset_on_simple_vector_store(case: str) -> None:
    """The conformance filters, pre-filtered as the ``llamaindex`` backend does by default ($eq/$in, flat),
    evaluated by LlamaIndex's own evaluator: never a match lost, however differently it compares."""
    for spec in FILTER_CASES[case]:
        pushed = to_metadata_filters(parse_filter(spec), operators={Op.EQ, Op.IN}, nested=False)
        fn = build_metadata_filter_fn(lambda i: FILTER_METADATA[int(i)], pushed)
        for i, metadata in enumerate(FILTER_METADATA):
            if evaluate(spec, metadata):
                assert fn(str(i)), f"pre-filter {pushed} lost document {i} for {spec}"
