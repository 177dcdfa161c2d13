"""The filter language: parser, reference evaluator (FILTERS.md is the spec), require_operators."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storebridge.errors import FilterError, UnsupportedFilterError
from storebridge.filters import (
    ALL_OPS,
    And,
    Comparison,
    Not,
    Op,
    Or,
    evaluate,
    is_number,
    matcher,
    operators_used,
    parse_filter,
    require_operators,
    scalar_equal,
    to_dict,
    validate_key,
    walk,
)

C = Comparison


# ---------------------------------------------------------------------------------------------------------
# Parser: well-formed filters


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"a": {"$eq": 1}}, C("a", Op.EQ, 1)),
        ({"a": {"$ne": "x"}}, C("a", Op.NE, "x")),
        ({"a": {"$gt": 1}}, C("a", Op.GT, 1)),
        ({"a": {"$gte": 1.5}}, C("a", Op.GTE, 1.5)),
        ({"a": {"$lt": -3}}, C("a", Op.LT, -3)),
        ({"a": {"$lte": 0}}, C("a", Op.LTE, 0)),
        ({"a": {"$in": [1, "x", True]}}, C("a", Op.IN, (1, "x", True))),
        ({"a": {"$nin": ["x"]}}, C("a", Op.NIN, ("x",))),
        ({"a": {"$in": []}}, C("a", Op.IN, ())),
        ({"a": {"$exists": True}}, C("a", Op.EXISTS, True)),
        ({"a": {"$exists": False}}, C("a", Op.EXISTS, False)),
        ({"tags": {"$contains": "ml"}}, C("tags", Op.CONTAINS, "ml")),
    ],
)
def test_every_operator_parses(spec, expected):
    tree = parse_filter(spec)
    assert tree == expected
    assert isinstance(tree.op, Op)
    assert type(tree.value) is type(expected.value)


def test_in_accepts_a_tuple_and_stores_a_tuple():
    assert parse_filter({"a": {"$in": (1, 2)}}) == C("a", Op.IN, (1, 2))


def test_range_operators_accept_infinity():
    assert parse_filter({"a": {"$lt": math.inf}}) == C("a", Op.LT, math.inf)


@pytest.mark.parametrize("value", ["ann", 3, 2.5, True, False, ""])
def test_eq_shorthand(value):
    tree = parse_filter({"author": value})
    assert tree == C("author", Op.EQ, value)
    assert type(tree.value) is type(value)
    assert parse_filter({"author": {"$eq": value}}) == tree


def test_several_operators_on_one_field_are_anded():
    assert parse_filter({"year": {"$gte": 2020, "$lt": 2024}}) == And(
        (C("year", Op.GTE, 2020), C("year", Op.LT, 2024))
    )


def test_several_fields_are_anded():
    assert parse_filter({"a": 1, "b": "x"}) == And((C("a", Op.EQ, 1), C("b", Op.EQ, "x")))


def test_nested_logic():
    spec = {
        "$or": [
            {"a": 1},
            {"$and": [{"b": {"$in": [2, 3]}}, {"$not": {"c": {"$exists": True}}}]},
        ]
    }
    assert parse_filter(spec) == Or(
        (
            C("a", Op.EQ, 1),
            And((C("b", Op.IN, (2, 3)), Not(C("c", Op.EXISTS, True)))),
        )
    )


def test_single_child_and_or_are_kept():
    assert parse_filter({"$and": [{"a": 1}]}) == And((C("a", Op.EQ, 1),))
    assert parse_filter({"$or": [{"a": 1}]}) == Or((C("a", Op.EQ, 1),))


def test_logic_next_to_fields():
    assert parse_filter({"$or": [{"a": 1}, {"b": 2}], "c": 3}) == And(
        (Or((C("a", Op.EQ, 1), C("b", Op.EQ, 2))), C("c", Op.EQ, 3))
    )


def test_dotted_keys_and_inner_spaces_parse():
    assert parse_filter({"x.y": 1}) == C("x.y", Op.EQ, 1)
    assert parse_filter({"first name": "ann"}) == C("first name", Op.EQ, "ann")
    assert parse_filter({"über-key_2": 1}) == C("über-key_2", Op.EQ, 1)


def test_none_and_empty_dict_mean_no_filter():
    assert parse_filter(None) is None
    assert parse_filter({}) is None


def test_hand_built_tree_passes_through():
    tree = Or((C("a", Op.EQ, 1), Not(C("b", Op.IN, (1, 2)))))
    assert parse_filter(tree) is tree


# ---------------------------------------------------------------------------------------------------------
# Parser: malformed filters. Every one is a FilterError whose message names the spot.


def _fails(spec, *fragments):
    with pytest.raises(FilterError) as info:
        parse_filter(spec)
    assert not isinstance(info.value, UnsupportedFilterError)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def test_unknown_operator():
    _fails({"a": {"$regex": "x"}}, "$regex", "'a'")


def test_logical_operator_used_on_a_field():
    _fails({"a": {"$and": [{"b": 1}]}}, "$and", "'a'")


def test_unknown_top_level_operator():
    _fails({"$nor": [{"a": 1}]}, "$nor")


def test_operator_name_is_case_sensitive():
    _fails({"a": {"$EQ": 1}}, "$EQ")


def test_list_as_shorthand_value():
    _fails({"a": [1, 2]}, "a", "list")


@pytest.mark.parametrize("op", ["$eq", "$ne", "$contains"])
def test_list_as_operator_value(op):
    _fails({"a": {op: [1]}}, f"a.{op}", "list")


@pytest.mark.parametrize("op", ["$in", "$nin"])
@pytest.mark.parametrize("value", [1, "abc", {"x": 1}, None, {1, 2}])
def test_in_without_a_list(op, value):
    _fails({"a": {op: value}}, f"a.{op}", "list")


def test_in_with_a_bad_element_names_its_index():
    _fails({"a": {"$in": [1, [2]]}}, "a.$in[1]")
    _fails({"a": {"$nin": ["x", None]}}, "a.$nin[1]")
    _fails({"a": {"$in": [math.nan]}}, "a.$in[0]")


@pytest.mark.parametrize("op", ["$gt", "$gte", "$lt", "$lte"])
@pytest.mark.parametrize("value", ["2020", None, [1], {"x": 1}])
def test_range_with_a_non_number(op, value):
    _fails({"a": {op: value}}, f"a.{op}")


@pytest.mark.parametrize("op", ["$gt", "$gte", "$lt", "$lte"])
@pytest.mark.parametrize("value", [True, False])
def test_range_with_a_bool(op, value):
    _fails({"a": {op: value}}, f"a.{op}")


@pytest.mark.parametrize("op", ["$gt", "$lte", "$eq", "$ne"])
def test_nan_is_refused(op):
    _fails({"a": {op: math.nan}}, f"a.{op}")


def test_nan_shorthand_is_refused():
    _fails({"a": float("nan")}, "a")


@pytest.mark.parametrize("value", [1, "yes", None, 0])
def test_exists_needs_a_bool(value):
    _fails({"a": {"$exists": value}}, "a.$exists")


@pytest.mark.parametrize("op", ["$and", "$or"])
@pytest.mark.parametrize("value", [[], (), {}, "x", {"a": 1}, None])
def test_and_or_need_a_non_empty_list(op, value):
    _fails({op: value}, op)


def test_empty_filter_inside_a_list_names_its_index():
    _fails({"$or": [{"a": 1}, {}]}, "$or[1]")


def test_non_dict_inside_a_list():
    _fails({"$and": [{"a": 1}, "b"]}, "$and[1]")


def test_not_needs_a_non_empty_dict():
    _fails({"$not": {}}, "$not")
    _fails({"$not": [{"a": 1}]}, "$not")
    _fails({"$not": None}, "$not")


def test_empty_dict_under_a_key():
    _fails({"a": {}}, "a")


def test_plain_dict_as_value():
    _fails({"a": {"b": 1}}, "a")


def test_mixing_operators_and_plain_keys():
    _fails({"a": {"$gt": 1, "b": 2}}, "a", "mix")
    _fails({"a": {"b": 2, "$gt": 1}}, "a", "mix")


def test_non_string_operator_key_next_to_an_operator():
    _fails({"a": {"$gt": 1, 2: 3}}, "a")


@pytest.mark.parametrize("key", [1, None, ("a",), 2.5, b"a"])
def test_non_string_keys(key):
    _fails({key: 1}, repr(key))


def test_non_string_key_deep_inside():
    _fails({"$or": [{"a": 1}, {3: 1}]}, "$or[1]", "3")


def test_none_as_value():
    _fails({"a": None}, "a", "None")
    _fails({"a": {"$eq": None}}, "a.$eq")
    _fails({"a": {"$ne": None}}, "a.$ne")


def test_error_deep_inside_names_the_path():
    message = _fails({"$or": [{"a": 1}, {"$and": [{"b": {"$in": 3}}]}]})
    assert "$or[1].$and[0].b.$in" in message


@pytest.mark.parametrize("spec", ["a == 1", ["a"], 3, ("a", 1)])
def test_not_a_dict(spec):
    _fails(spec)


@pytest.mark.parametrize(
    "key",
    [
        "a'; drop",
        'a"b',
        "$where",
        "a;b",
        "a`b",
        "a\x00b",
        "a\nb",
        "a\n",
        "\ta",
        "a\x1b",
        "a" * 300,
        "",
        " a",
        "a ",
        "a/b",
        "a\\b",
        "a(b)",
        "a..b",
        ".a",
        "a.",
    ],
)
def test_hostile_keys(key):
    with pytest.raises(FilterError):
        parse_filter({key: 1})
    with pytest.raises(FilterError):
        parse_filter({key: {"$gt": 1}})
    with pytest.raises(FilterError):
        parse_filter({"$or": [{key: 1}]})
    with pytest.raises(FilterError):
        parse_filter(C(key, Op.EQ, 1))


def test_long_dotted_key_is_refused():
    # keys are 1-255 characters, dotted or not
    with pytest.raises(FilterError):
        parse_filter({".".join(["a" * 100] * 3): 1})


def test_key_of_255_characters_is_fine():
    assert parse_filter({"k" * 255: 1}) == C("k" * 255, Op.EQ, 1)


def test_hostile_key_message_has_the_key():
    message = _fails({"a'; drop": 1})
    assert repr("a'; drop") in message


def test_validate_key_dots_only_when_allowed():
    assert validate_key("a.b", allow_dots=True) == "a.b"
    with pytest.raises(FilterError):
        validate_key("a.b")
    assert validate_key("a_b-c d") == "a_b-c d"


# Hand-built trees get the same checks


@pytest.mark.parametrize(
    "tree",
    [
        And(()),
        Or(()),
        Not(And(())),
        C("a", Op.IN, 3),
        C("a", Op.IN, (1, None)),
        C("a", Op.GT, "x"),
        C("a", Op.GT, True),
        C("a", Op.GTE, math.nan),
        C("a", Op.EQ, None),
        C("a", Op.EQ, [1]),
        C("a", Op.EQ, math.nan),
        C("a", Op.EXISTS, 1),
        C("a", Op.AND, 1),
        C("$where", Op.EQ, 1),
        C("a'b", Op.EQ, 1),
        C(3, Op.EQ, 1),
        Or((C("a", Op.EQ, 1), C("b", Op.IN, "xy"))),
        And((C("a", Op.EQ, 1), Not(C("b", Op.LT, None)))),
        "not a node",
    ],
)
def test_hand_built_trees_are_validated(tree):
    with pytest.raises(FilterError):
        parse_filter(tree) if isinstance(tree, (C, And, Or, Not)) else parse_filter(And((tree,)))


@pytest.mark.parametrize("op", ["eq", "bogus", 1])
def test_hand_built_comparison_with_a_non_op_operator_is_a_filter_error(op):
    with pytest.raises(FilterError):
        parse_filter(C("a", op, 1))


def test_matcher_validates_hand_built_trees():
    with pytest.raises(FilterError):
        matcher(C("a", Op.GT, "x"))


def test_filter_error_is_a_value_error():
    with pytest.raises(ValueError):
        parse_filter({"a": {"$bad": 1}})


# ---------------------------------------------------------------------------------------------------------
# The reference evaluator: every row of FILTERS.md's "Meaning" table.


def ev(spec, metadata):
    return evaluate(spec, metadata)


# field missing, or stored as None


@pytest.mark.parametrize("metadata", [{}, {"a": None}, {"other": 1}])
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"a": 1}, False),
        ({"a": {"$eq": "x"}}, False),
        ({"a": {"$gt": 0}}, False),
        ({"a": {"$gte": -math.inf}}, False),
        ({"a": {"$lt": math.inf}}, False),
        ({"a": {"$lte": 0}}, False),
        ({"a": {"$in": [1, "x", True]}}, False),
        ({"a": {"$contains": 1}}, False),
        ({"a": {"$ne": 1}}, True),
        ({"a": {"$nin": [1]}}, True),
        ({"a": {"$nin": []}}, True),
        ({"a": {"$exists": True}}, False),
        ({"a": {"$exists": False}}, True),
    ],
)
def test_missing_or_none_field(metadata, spec, expected):
    assert ev(spec, metadata) is expected


def test_exists_true_for_falsy_values():
    for value in (0, False, "", [], {}):
        assert ev({"a": {"$exists": True}}, {"a": value}) is True
        assert ev({"a": {"$exists": False}}, {"a": value}) is False


# ne / nin are exactly not eq / not in; $not is the exact complement


@pytest.mark.parametrize("metadata", [{}, {"a": None}, {"a": 1}, {"a": 2}, {"a": "1"}, {"a": [1]}, {"a": True}])
def test_ne_is_not_eq(metadata):
    assert ev({"a": {"$ne": 1}}, metadata) is (not ev({"a": 1}, metadata))


@pytest.mark.parametrize("metadata", [{}, {"a": None}, {"a": 1}, {"a": 3}, {"a": "1"}, {"a": [1]}, {"a": True}])
def test_nin_is_not_in(metadata):
    assert ev({"a": {"$nin": [1, 2]}}, metadata) is (not ev({"a": {"$in": [1, 2]}}, metadata))


def test_ne_on_a_missing_field_matches():
    assert ev({"a": {"$ne": "x"}}, {"b": 1}) is True


def test_nin_on_a_missing_field_matches():
    assert ev({"a": {"$nin": ["x"]}}, {}) is True


@pytest.mark.parametrize("metadata", [{}, {"a": None}, {"a": "x"}, {"a": 5}])
def test_not_is_the_exact_complement(metadata):
    for spec in ({"a": {"$gt": 1}}, {"a": "x"}, {"a": {"$exists": True}}, {"a": {"$contains": "x"}}):
        assert ev({"$not": spec}, metadata) is (not ev(spec, metadata))


def test_not_of_a_range_matches_a_missing_field():
    assert ev({"$not": {"a": {"$gt": 1}}}, {}) is True


# numbers


def test_int_equals_float_by_value():
    assert ev({"a": 1}, {"a": 1.0}) is True
    assert ev({"a": 1.0}, {"a": 1}) is True
    assert ev({"a": {"$in": [2.0]}}, {"a": 2}) is True
    assert ev({"a": {"$ne": 1.0}}, {"a": 1}) is False
    assert ev({"a": 1}, {"a": 1.5}) is False


def test_true_never_equals_one():
    assert ev({"a": True}, {"a": 1}) is False
    assert ev({"a": 1}, {"a": True}) is False
    assert ev({"a": 1.0}, {"a": True}) is False
    assert ev({"a": {"$ne": 1}}, {"a": True}) is True
    assert ev({"a": {"$in": [1]}}, {"a": True}) is False
    assert ev({"a": {"$in": [True]}}, {"a": 1}) is False
    assert ev({"a": {"$nin": [1]}}, {"a": True}) is True


def test_false_never_equals_zero():
    assert ev({"a": False}, {"a": 0}) is False
    assert ev({"a": 0}, {"a": False}) is False
    assert ev({"a": 0.0}, {"a": False}) is False
    assert ev({"a": {"$in": [0]}}, {"a": False}) is False
    assert ev({"a": {"$ne": False}}, {"a": 0}) is True


def test_bools_equal_bools():
    assert ev({"a": True}, {"a": True}) is True
    assert ev({"a": False}, {"a": False}) is True
    assert ev({"a": True}, {"a": False}) is False


def test_contains_does_not_mix_bools_and_numbers():
    assert ev({"a": {"$contains": 1}}, {"a": [True]}) is False
    assert ev({"a": {"$contains": True}}, {"a": [1]}) is False
    assert ev({"a": {"$contains": 1}}, {"a": [1.0]}) is True


def test_scalar_equal_directly():
    assert scalar_equal(1, 1.0)
    assert not scalar_equal(True, 1)
    assert not scalar_equal(1, True)
    assert not scalar_equal([1], 1)
    assert not scalar_equal({"a": 1}, "a")
    assert not scalar_equal("1", 1)


def test_is_number():
    assert is_number(1) and is_number(1.5) and is_number(math.inf)
    assert not is_number(True) and not is_number("1") and not is_number(None)


# range operators: numbers only


@pytest.mark.parametrize(
    ("op", "wanted", "stored", "expected"),
    [
        ("$gt", 1, 2, True),
        ("$gt", 2, 2, False),
        ("$gt", 1, 1.5, True),
        ("$gte", 2, 2, True),
        ("$gte", 2, 2.0, True),
        ("$gte", 2.5, 2, False),
        ("$lt", 2, 1, True),
        ("$lt", 2, 2, False),
        ("$lte", 2, 2, True),
        ("$lte", 2, 3, False),
        ("$lt", math.inf, 1e308, True),
        ("$gt", -math.inf, -1e308, True),
    ],
)
def test_range_on_numbers(op, wanted, stored, expected):
    assert ev({"a": {op: wanted}}, {"a": stored}) is expected


@pytest.mark.parametrize("op", ["$gt", "$gte", "$lt", "$lte"])
@pytest.mark.parametrize("stored", ["5", "", True, False, [5], {"x": 5}, math.nan])
def test_range_on_a_non_number_does_not_match(op, stored):
    assert ev({"a": {op: 0}}, {"a": stored}) is False
    assert ev({"a": {op: 10}}, {"a": stored}) is False


def test_year_between():
    spec = {"year": {"$gte": 2020, "$lt": 2024}}
    assert [y for y in range(2018, 2026) if ev(spec, {"year": y})] == [2020, 2021, 2022, 2023]


# strings


def test_strings_are_exact_and_case_sensitive():
    assert ev({"a": "Ann"}, {"a": "Ann"}) is True
    assert ev({"a": "ann"}, {"a": "Ann"}) is False
    assert ev({"a": "ann"}, {"a": "ann "}) is False
    assert ev({"a": {"$in": ["ANN"]}}, {"a": "ann"}) is False
    assert ev({"a": "1"}, {"a": 1}) is False
    assert ev({"a": 1}, {"a": "1"}) is False
    assert ev({"a": "é"}, {"a": "é"}) is True


# in with [] / nin with []


@pytest.mark.parametrize("metadata", [{}, {"a": None}, {"a": 1}, {"a": "x"}, {"a": [1]}, {"a": True}])
def test_in_empty_matches_nothing_nin_empty_matches_everything(metadata):
    assert ev({"a": {"$in": []}}, metadata) is False
    assert ev({"a": {"$nin": []}}, metadata) is True


# contains


def test_contains_on_a_list():
    assert ev({"tags": {"$contains": "ml"}}, {"tags": ["ai", "ml"]}) is True
    assert ev({"tags": {"$contains": "ml"}}, {"tags": ["ai"]}) is False
    assert ev({"tags": {"$contains": "ml"}}, {"tags": []}) is False
    assert ev({"tags": {"$contains": "ML"}}, {"tags": ["ml"]}) is False


@pytest.mark.parametrize("stored", ["ml", "html", "ml,ai", 1, True, {"ml": 1}])
def test_contains_on_a_non_list_is_false(stored):
    assert ev({"tags": {"$contains": "ml"}}, {"tags": stored}) is False


def test_contains_does_not_look_inside_nested_lists():
    assert ev({"tags": {"$contains": "ml"}}, {"tags": [["ml"]]}) is False


# list fields with eq


@pytest.mark.parametrize("value", ["ml", 1, True])
def test_list_field_never_equals_a_scalar(value):
    assert ev({"tags": value}, {"tags": [value]}) is False
    assert ev({"tags": {"$ne": value}}, {"tags": [value]}) is True
    assert ev({"tags": {"$in": [value]}}, {"tags": [value]}) is False


def test_dict_field_never_equals_a_scalar():
    assert ev({"a": "x"}, {"a": {"x": "x"}}) is False


# logic


def test_and_or_logic():
    m = {"a": 1, "b": "x"}
    assert ev({"$and": [{"a": 1}, {"b": "x"}]}, m) is True
    assert ev({"$and": [{"a": 1}, {"b": "y"}]}, m) is False
    assert ev({"$or": [{"a": 2}, {"b": "x"}]}, m) is True
    assert ev({"$or": [{"a": 2}, {"b": "y"}]}, m) is False
    assert ev({"a": 1, "b": "y"}, m) is False


def test_none_filter_matches_everything():
    assert evaluate(None, {}) is True
    assert evaluate({}, {"a": 1}) is True
    assert matcher(None)({"a": 1}) is True


def test_dotted_path_reads_nested_objects():
    assert ev({"x.y": 1}, {"x": {"y": 1}}) is True
    assert ev({"x.y": 1}, {"x": {"y": 2}}) is False
    assert ev({"x.y": {"$exists": True}}, {"x": 5}) is False
    assert ev({"x.y": 1}, {"x.y": 1}) is True


def test_evaluate_parses_dicts():
    assert evaluate({"a": {"$gt": 1}}, {"a": 2}) is True
    with pytest.raises(FilterError):
        evaluate({"a": {"$gt": "x"}}, {"a": 2})


def test_matcher_parses_once_and_filters():
    match = matcher({"tags": {"$contains": "ml"}, "year": {"$gte": 2020}})
    rows = [
        {"tags": ["ml"], "year": 2021},
        {"tags": ["ml"], "year": 2019},
        {"tags": "ml", "year": 2021},
        {"year": 2022},
    ]
    assert [match(r) for r in rows] == [True, False, False, False]


# ---------------------------------------------------------------------------------------------------------
# require_operators, walk, operators_used


def test_operators_used():
    tree = parse_filter({"$or": [{"a": 1}, {"$not": {"b": {"$in": [1]}}}], "c": {"$gt": 1}})
    assert operators_used(tree) == {Op.AND, Op.OR, Op.NOT, Op.EQ, Op.IN, Op.GT}
    assert len(list(walk(tree))) == 6


def test_require_operators_names_missing_ops_and_backend():
    tree = parse_filter({"$or": [{"a": {"$nin": [1]}}, {"tags": {"$contains": "x"}}]})
    with pytest.raises(UnsupportedFilterError) as info:
        require_operators(tree, {Op.EQ, Op.OR}, backend="tinydb")
    message = str(info.value)
    assert "'tinydb'" in message
    assert "$nin" in message and "$contains" in message
    assert isinstance(info.value, FilterError)


def test_require_operators_passes_when_supported():
    tree = parse_filter({"$or": [{"a": {"$nin": [1]}}, {"tags": {"$contains": "x"}}]})
    require_operators(tree, {Op.OR, Op.NIN, Op.CONTAINS}, backend="x")
    require_operators(tree, ALL_OPS, backend="x")
    require_operators(None, set(), backend="x")


def test_require_operators_counts_logic_operators():
    with pytest.raises(UnsupportedFilterError, match=r"\$not"):
        require_operators(parse_filter({"$not": {"a": 1}}), {Op.EQ}, backend="x")


def test_require_operators_rejects_dotted_keys_unless_declared():
    tree = parse_filter({"$and": [{"a": 1}, {"x.y": 2}]})
    with pytest.raises(UnsupportedFilterError) as info:
        require_operators(tree, ALL_OPS, backend="flatdb")
    assert "'x.y'" in str(info.value) and "'flatdb'" in str(info.value)
    require_operators(tree, ALL_OPS, backend="flatdb", nested_keys=True)


# ---------------------------------------------------------------------------------------------------------
# Property tests

KEYS = ["a", "b", "tags", "x.y"]
_texts = st.text(alphabet="abAB é1", max_size=3)
_numbers = st.one_of(
    st.integers(-5, 5),
    st.floats(-5, 5, allow_nan=False).map(lambda f: round(f, 1)),
    st.sampled_from([math.inf, -math.inf, -0.0, 2**53 + 1]),
)
_scalars = st.one_of(_texts, _numbers, st.booleans())
_keys = st.sampled_from(KEYS)


def _comparison(op: Op) -> st.SearchStrategy[Comparison]:
    if op in (Op.IN, Op.NIN):
        values = st.lists(_scalars, max_size=4).map(tuple)
    elif op is Op.EXISTS:
        values = st.booleans()
    elif op in (Op.GT, Op.GTE, Op.LT, Op.LTE):
        values = _numbers
    else:
        values = _scalars
    return st.builds(Comparison, _keys, st.just(op), values)


comparisons = st.one_of([_comparison(op) for op in Op if op not in (Op.AND, Op.OR, Op.NOT)])

trees = st.recursive(
    comparisons,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda cs: And(tuple(cs))),
        st.lists(children, min_size=1, max_size=3).map(lambda cs: Or(tuple(cs))),
        children.map(Not),
    ),
    max_leaves=6,
)

_stored = st.one_of(
    st.none(),
    _scalars,
    st.just(math.nan),
    st.lists(_scalars, max_size=3),
    st.dictionaries(st.sampled_from(["y", "z"]), _scalars, max_size=2),
)
metadatas = st.dictionaries(st.sampled_from(["a", "b", "tags", "x", "x.y", "other"]), _stored, max_size=5)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(trees)
def test_property_round_trip_through_dict(tree):
    assert parse_filter(to_dict(tree)) == tree
    # and the dict form is stable
    assert to_dict(parse_filter(to_dict(tree))) == to_dict(tree)


@FAST
@given(trees, metadatas)
def test_property_not_is_the_complement(tree, metadata):
    assert evaluate(Not(tree), metadata) is (not evaluate(tree, metadata))


@FAST
@given(_keys, _scalars, st.lists(_scalars, max_size=4), metadatas)
def test_property_ne_nin_complement_eq_in(key, value, values, metadata):
    assert evaluate(C(key, Op.NE, value), metadata) is (not evaluate(C(key, Op.EQ, value), metadata))
    assert evaluate(C(key, Op.NIN, tuple(values)), metadata) is (
        not evaluate(C(key, Op.IN, tuple(values)), metadata)
    )
    # in is an or of eqs
    assert evaluate(C(key, Op.IN, tuple(values)), metadata) is any(
        evaluate(C(key, Op.EQ, v), metadata) for v in values
    )


@FAST
@given(trees, trees, metadatas)
def test_property_de_morgan(a, b, metadata):
    assert evaluate(Not(And((a, b))), metadata) is evaluate(Or((Not(a), Not(b))), metadata)
    assert evaluate(Not(Or((a, b))), metadata) is evaluate(And((Not(a), Not(b))), metadata)


@FAST
@given(trees, metadatas)
def test_property_matcher_agrees_with_evaluate(tree, metadata):
    assert matcher(tree)(metadata) is evaluate(tree, metadata)
    assert matcher(to_dict(tree))(metadata) is evaluate(tree, metadata)


@FAST
@given(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), _numbers, _stored)
def test_property_range_matches_only_numbers(op, wanted, stored):
    if evaluate({"a": {op: wanted}}, {"a": stored}):
        assert is_number(stored) and not math.isnan(stored)


def test_a_huge_integer_bound_is_a_number_not_a_crash() -> None:
    """Integers beyond float range are numbers too: parsing must not call float functions on them."""
    tree = parse_filter({"n": {"$gt": 10**400}})
    assert evaluate(tree, {"n": 10**401}) and not evaluate(tree, {"n": 5})
