"""storebridge.filter_facts: the facts a filter can ask about a document and the negation-normal form.

The property tests build random and/or/not trees out of the comparisons of the conformance filter cases
and check, on every document of the conformance filter dataset, that a filter means the same through the
facts as through the reference evaluator: evaluated as an engine would evaluate the negation-normal form
(token membership and range comparisons on the numbers, nothing else), and compiled with ``fold`` the way
an engine with an exact NOT would.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storebridge.errors import FilterError
from storebridge.filter_facts import (
    OPPOSITE,
    AllOf,
    AnyOf,
    Expr,
    Fact,
    Facts,
    FieldFacts,
    Node,
    Range,
    Token,
    Value,
    all_of,
    any_of,
    as_double,
    canonical_number,
    comparison_facts,
    document_tokens,
    field_facts,
    filterable,
    fold,
    hex_key,
    hex_value,
    map_leaves,
    negation_normal_form,
    range_bound,
)
from storebridge.filters import And, Comparison, Filter, Not, Op, Or, evaluate, parse_filter, walk
from storebridge.testing.data import FILTER_CASES, FILTER_METADATA, HOSTILE_FILTER_KEYS

# -- an engine that only knows the facts ------------------------------------------------------------------


def _compare(number: float, op: Op, bound: float) -> bool:
    return {Op.GT: number > bound, Op.GTE: number >= bound, Op.LT: number < bound, Op.LTE: number <= bound}[op]


class FactsEngine:
    """A document as an engine indexes it: its tokens and the numbers of its numeric keys, nothing else."""

    def __init__(self, metadata: Mapping[str, Any]) -> None:
        self.tokens = set(document_tokens(metadata))
        self.numbers = {f.key: f.number for f in field_facts(metadata) if f.number is not None}

    def holds(self, expr: Expr) -> bool:
        if isinstance(expr, bool):
            return expr
        if isinstance(expr, Facts):
            return any(token in self.tokens for token in expr.tokens) != expr.negated
        if isinstance(expr, Range):
            number = self.numbers.get(expr.key)
            return number is not None and _compare(number, expr.op, expr.value)
        if isinstance(expr, AllOf):
            return all(self.holds(part) for part in expr.parts)
        assert isinstance(expr, AnyOf)
        return any(self.holds(part) for part in expr.parts)

    def leaf(self, node: Comparison) -> frozenset[str] | bool:
        """A comparison compiled for an engine with an exact NOT: the set {"doc"} or the empty set."""
        facts = comparison_facts(node)
        if facts is None:
            bound = range_bound(node.op, node.value)
            if isinstance(bound, bool):
                matched = node.field in self.numbers if bound else False
            else:
                matched = node.field in self.numbers and _compare(self.numbers[node.field], node.op, bound)
        else:
            matched = any(token in self.tokens for token in facts.tokens) != facts.negated
        return frozenset({"doc"}) if matched else frozenset()


def _fold_matches(engine: FactsEngine, tree: Filter) -> bool:
    result = fold(tree, engine.leaf, all_of=lambda parts: frozenset.intersection(*parts),
                  any_of=lambda parts: frozenset.union(*parts), negate=lambda part: frozenset({"doc"}) - part)
    return result if isinstance(result, bool) else "doc" in result


def _no_not(expr: Expr) -> bool:
    if isinstance(expr, (AllOf, AnyOf)):
        return all(_no_not(part) for part in expr.parts) and all(
            not isinstance(part, type(expr)) for part in expr.parts)
    return isinstance(expr, (bool, Facts, Range))


def _top_level(tree: Filter) -> bool:
    return all("." not in node.field for node in walk(tree) if isinstance(node, Comparison))


CASE_TREES = [tree for specs in FILTER_CASES.values() for spec in specs
              if (tree := parse_filter(spec)) is not None and _top_level(tree)]
COMPARISONS = list(dict.fromkeys(node for tree in CASE_TREES for node in walk(tree) if isinstance(node, Comparison)))
ENGINES = [(metadata, FactsEngine(metadata)) for metadata in FILTER_METADATA]


def _assert_agrees(tree: Filter) -> None:
    forms = [negation_normal_form(tree), negation_normal_form(tree, merge=True)]
    for form in forms:
        assert _no_not(form), form
    for metadata, engine in ENGINES:
        expected = evaluate(tree, metadata)
        for form in forms:
            assert engine.holds(form) == expected, (tree, form, metadata)
        assert _fold_matches(engine, tree) == expected, (tree, metadata)


@pytest.mark.parametrize("case", sorted(k for k in FILTER_CASES if k != "nested_keys"))
def test_every_conformance_filter_and_its_negation_agree_with_the_evaluator(case: str) -> None:
    for spec in FILTER_CASES[case]:
        tree = parse_filter(spec)
        assert tree is not None
        _assert_agrees(tree)
        _assert_agrees(Not(tree))


_LEAVES = st.sampled_from(COMPARISONS + CASE_TREES)
_TREES = st.recursive(_LEAVES, lambda inner: st.one_of(
    st.builds(lambda c: And(tuple(c)), st.lists(inner, min_size=1, max_size=4)),
    st.builds(lambda c: Or(tuple(c)), st.lists(inner, min_size=1, max_size=4)),
    st.builds(Not, inner)), max_leaves=10)


@settings(max_examples=400, deadline=None)
@given(tree=_TREES)
def test_random_trees_from_the_conformance_data_agree_with_the_evaluator(tree: Filter) -> None:
    _assert_agrees(tree)


_EXTRA_LEAVES = st.builds(
    lambda key, op, value: Comparison(key, op, value), st.sampled_from(["num", "flag", "new"]),
    st.sampled_from(sorted(OPPOSITE, key=lambda op: op.value)),
    st.sampled_from([math.inf, -math.inf, 10**400, -(10**400), 2**53 + 1, 1e-9]))


@settings(max_examples=150, deadline=None)
@given(tree=st.recursive(st.one_of(_LEAVES, _EXTRA_LEAVES), lambda inner: st.one_of(
    st.builds(lambda c: And(tuple(c)), st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda c: Or(tuple(c)), st.lists(inner, min_size=1, max_size=3)),
    st.builds(Not, inner)), max_leaves=6))
def test_bounds_no_double_holds_are_decided_as_the_evaluator_does(tree: Filter) -> None:
    _assert_agrees(tree)


# -- keys and values ------------------------------------------------------------------------------------------


def test_canonical_numbers_follow_python_equality() -> None:
    assert canonical_number(1) == canonical_number(1.0) == "1"
    assert canonical_number(-0.0) == canonical_number(0) == "0"
    assert canonical_number(2**53 + 1) == "9007199254740993" != canonical_number(float(2**53 + 1))
    assert canonical_number(0.1) == "0.1" and canonical_number(1e300) == str(int(1e300))
    assert canonical_number(math.inf) == "inf" and canonical_number(-math.inf) == "-inf"


def test_values_keep_bools_apart_from_numbers() -> None:
    assert Value.of(1) == Value.of(1.0) == Value("n", "1")
    assert Value.of(True) == Value("b", "1") != Value.of(1)
    assert Value.of("1") == Value("s", "1") != Value.of(1)
    assert len({Value.of(v) for v in (0, 0.0, False, "0", "", -0.0)}) == 4
    with pytest.raises(TypeError):
        Value.of([1])  # type: ignore[arg-type]


def test_as_double_and_range_bounds() -> None:
    assert as_double(2) == 2.0 and as_double(2**53 + 1) == float(2**53)
    assert as_double(10**400) is None and as_double(math.inf) is None and as_double(math.nan) is None
    assert range_bound(Op.GT, 3) == 3.0
    assert range_bound(Op.GT, math.inf) is False and range_bound(Op.GTE, 10**400) is False
    assert range_bound(Op.LT, math.inf) is True and range_bound(Op.LTE, 10**400) is True
    assert range_bound(Op.GT, -math.inf) is True and range_bound(Op.LT, -(10**400)) is False


def test_hex_keys_and_values_are_ascii_without_spaces() -> None:
    assert hex_key("n") == "6e" and hex_key("with space") == "77697468207370616365"
    long_key = "ключ" * 40  # 320 bytes
    assert re.fullmatch(r"h[0-9a-f]{64}", hex_key(long_key))
    assert re.fullmatch(r"h[0-9a-f]{40}", hex_key("k" * 25, max_bytes=24, digest_chars=40))
    assert hex_key("k" * 24, max_bytes=24) == "6b" * 24
    assert hex_value(True) == "t" and hex_value(False) == "f"
    assert hex_value(1) == hex_value(1.0) == hex_value(Value.of(1)) == "n1"
    assert hex_value("a b") == "s612062" and hex_value("") == "s"
    assert hex_value("x" * 100) == "s" + "78" * 100
    assert re.fullmatch(r"S[0-9a-f]{64}", hex_value("x" * 101)) and hex_value("x" * 101) != hex_value("x" * 102)
    assert re.fullmatch(r"N[0-9a-f]{64}", hex_value(10**200))
    for hostile in ("a'b", 'a"b', "a\\b", "x\x00y", " ann ", "🚀", "a OR b", "\n"):
        assert re.fullmatch(r"s[0-9a-f]*", hex_value(hostile))


def test_filterable_keys_are_those_a_filter_can_name() -> None:
    assert filterable("a") and filterable("with space") and filterable("a-b")
    for key in [*HOSTILE_FILTER_KEYS, "a.b", "$x", 1, None]:
        assert not filterable(key), key


# -- facts of a document -------------------------------------------------------------------------------------


def test_field_facts_of_each_kind_of_value() -> None:
    facts = {f.key: f for f in field_facts({
        "s": "x", "n": 2.0, "b": False, "l": ["a", 1, True, None, {"k": 1}, ["x"], "a"], "t": (1, 2),
        "none": None, "d": {"k": 1}, "bad.key": 1, "$x": 2, "e": []})}
    assert set(facts) == {"s", "n", "b", "l", "t", "d", "e"}
    assert facts["s"] == FieldFacts("s", scalar="x") and facts["s"].number is None
    assert facts["n"].number == 2.0 and facts["b"].number is None
    assert facts["l"] == FieldFacts("l", elements=("a", 1, True, "a"))
    assert facts["t"].elements == (1, 2) and facts["e"].elements == ()
    assert facts["d"] == FieldFacts("d")
    assert facts["n"].tokens() == [Token(Fact.PRESENT, "n"), Token(Fact.EQUALS, "n", Value("n", "2")),
                                   Token(Fact.NUMBER, "n")]
    assert facts["l"].tokens() == [Token(Fact.PRESENT, "l")] + [
        Token(Fact.ELEMENT, "l", Value.of(v)) for v in ("a", 1, True)]
    assert facts["d"].tokens() == [Token(Fact.PRESENT, "d")]


def test_comparison_facts() -> None:
    eq = Token(Fact.EQUALS, "a", Value.of(1))
    assert comparison_facts(Comparison("a", Op.EQ, 1.0)) == Facts((eq,))
    assert comparison_facts(Comparison("a", Op.NE, 1)) == Facts((eq,), negated=True)
    assert comparison_facts(Comparison("a", Op.IN, (1, 1.0, True))) == Facts(
        (eq, Token(Fact.EQUALS, "a", Value.of(True))))
    assert comparison_facts(Comparison("a", Op.NIN, ())) == Facts((), negated=True)
    assert comparison_facts(Comparison("a", Op.EXISTS, False)) == Facts((Token(Fact.PRESENT, "a"),), negated=True)
    assert comparison_facts(Comparison("a", Op.CONTAINS, "x")) == Facts(
        (Token(Fact.ELEMENT, "a", Value.of("x")),))
    assert comparison_facts(Comparison("a", Op.GT, 1)) is None


# -- the negation-normal form -----------------------------------------------------------------------------------


def _f(key: str, value: Any, negated: bool = False) -> Facts:
    return Facts((Token(Fact.EQUALS, key, Value.of(value)),), negated)


def test_negations_are_pushed_to_the_leaves() -> None:
    def nnf(spec: Any, merge: bool = False) -> Expr:
        return negation_normal_form(parse_filter(spec), merge=merge)

    number = Token(Fact.NUMBER, "n")
    assert nnf(None) is True
    assert nnf({"$not": {"a": 1}}) == _f("a", 1, True)
    assert nnf({"$not": {"n": {"$gt": 1}}}) == AnyOf((Facts((number,), True), Range("n", Op.LTE, 1)))
    assert nnf({"$not": {"$and": [{"a": 1}, {"b": 2}]}}) == AnyOf((_f("a", 1, True), _f("b", 2, True)))
    assert nnf({"$not": {"$and": [{"a": 1}, {"b": 2}]}}, merge=True) == AnyOf((_f("a", 1, True), _f("b", 2, True)))
    assert nnf({"$not": {"$or": [{"a": 1}, {"b": 2}]}}, merge=True) == Facts(
        (_f("a", 1).tokens[0], _f("b", 2).tokens[0]), negated=True)
    assert nnf({"$or": [{"a": 1}, {"b": 2}]}, merge=True) == Facts((_f("a", 1).tokens[0], _f("b", 2).tokens[0]))
    assert nnf({"$not": {"$not": {"a": 1}}}) == _f("a", 1)
    assert nnf({"a": {"$in": []}}) is False and nnf({"$not": {"a": {"$in": []}}}) is True
    assert nnf({"$and": [{"a": {"$in": []}}, {"b": 1}]}) is False
    assert nnf({"$or": [{"a": {"$nin": []}}, {"b": 1}]}) is True
    assert nnf({"n": {"$gt": math.inf}}) is False and nnf({"n": {"$lt": math.inf}}) == Facts((number,))
    assert nnf({"$not": {"n": {"$gte": -math.inf}}}) == Facts((number,), True)
    assert negation_normal_form(Comparison("n", Op.GT, 10**400)) is False
    assert nnf({"n": {"$gt": 2}}) == Range("n", Op.GT, 2) and isinstance(Range("n", Op.GT, 2).value, int)


def test_all_of_and_any_of_fold_flatten_and_merge() -> None:
    a, b, c = _f("a", 1), _f("b", 2), _f("c", 3)
    assert all_of([]) is True and any_of([]) is False
    assert all_of([a, True]) == a and all_of([a, False, b]) is False
    assert any_of([a, False]) == a and any_of([a, True]) is True
    assert all_of([a, AllOf((b, c))]) == AllOf((a, b, c))
    assert any_of([AnyOf((a, b)), c]) == AnyOf((a, b, c))
    assert all_of([a, AnyOf((b, c))]) == AllOf((a, AnyOf((b, c))))
    assert all_of([a, a]) == AllOf((a, a)) and all_of([a, a], merge=True) == a
    na, nb = _f("a", 1, True), _f("b", 2, True)
    assert all_of([na, b, nb], merge=True) == AllOf((Facts(na.tokens + nb.tokens, True), b))
    assert any_of([na, b, a], merge=True) == AnyOf((Facts(b.tokens + a.tokens), na))


def test_map_leaves_folds_the_constants_leaves_become() -> None:
    inner: Node[Facts | Range] = AnyOf((_f("b", 2), Range("n", Op.GT, 1)))
    expr: Expr = AllOf((_f("a", 1), inner))
    assert map_leaves(expr, lambda leaf: isinstance(leaf, Facts)) is True
    assert map_leaves(expr, lambda leaf: leaf if isinstance(leaf, Facts) else False) == AllOf(
        (_f("a", 1), _f("b", 2)))
    assert map_leaves(expr, lambda leaf: False if leaf == _f("a", 1) else leaf) is False


def test_fold_folds_constants_and_keeps_single_parts_bare() -> None:
    def text(spec: Any) -> str | bool:
        def leaf(node: Comparison) -> str | bool:
            if node.op is Op.IN and not node.value:
                return False
            return f"{node.field}{node.op.value}"

        tree = parse_filter(spec)
        assert tree is not None
        return fold(tree, leaf, all_of=lambda p: "(" + " & ".join(p) + ")", any_of=lambda p: "(" + " | ".join(p) + ")",
                    negate=lambda p: f"-{p}")

    assert text({"a": 1}) == "aeq" and text({"$and": [{"a": 1}]}) == "aeq"
    assert text({"a": 1, "b": 2}) == "(aeq & beq)" and text({"$or": [{"a": 1}, {"b": 2}]}) == "(aeq | beq)"
    assert text({"$not": {"a": 1}}) == "-aeq" and text({"$not": {"a": {"$in": []}}}) is True
    assert text({"$and": [{"a": {"$in": []}}, {"b": 1}]}) is False
    assert text({"$or": [{"a": {"$in": []}}, {"b": 1}]}) == "beq"
    assert text({"$or": [{"$not": {"a": {"$in": []}}}, {"b": 1}]}) is True
    with pytest.raises(FilterError):
        fold("junk", lambda node: True, all_of=list, any_of=list, negate=list)  # type: ignore[arg-type]
    with pytest.raises(FilterError):
        negation_normal_form(Or(("junk",)))  # type: ignore[arg-type]
