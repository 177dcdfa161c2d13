"""The Cassandra knowledge backend without a server: identifiers, the exact CQL of every statement, the
filter compiler, URL parsing and secrets, and the store's calls into the driver.

``FakeSession`` below is NOT the engine: it is a small interpreter for exactly the CQL statement shapes
this adapter sends, keeping the Cassandra 5.0 behaviour the adapter relies on (non-key restrictions need
an SAI index, SAI takes ``=``, ranges, ``CONTAINS`` and map-entry ``=`` joined by ``AND`` only, one
restriction per range bound, ``ANN OF`` needs a vector index and ``LIMIT <= 1000``, rows come in
``token(id)`` order, an empty collection reads back as null, ``INSERT ... IF NOT EXISTS`` reports
``[applied]``). The conformance suite runs over it to check the adapter end to end; the real engine runs
the same suite in ``tests/conformance/test_knowledge_cassandra.py`` when a URL is given.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

pytest.importorskip("cassandra", reason="[no engine on this machine] cassandra-driver is not installed")

from cassandra.murmur3 import murmur3
from cassandra.protocol import InvalidRequest, Unauthorized
from cassandra.query import SimpleStatement

from storebridge.adapters.cassandra import CassandraKnowledgeStore
from storebridge.adapters.cassandra import _query as q
from storebridge.adapters.cassandra import knowledge as ck
from storebridge.errors import (
    AlreadyExistsError,
    ConfigurationError,
    ConnectionFailedError,
    OperationFailedError,
    UnsupportedFilterError,
    ValidationError,
)
from storebridge.filter_facts import hex_value
from storebridge.filters import Comparison, Op, evaluate, parse_filter
from storebridge.models import CollectionInfo, Distance, KnowledgeDocument
from storebridge.testing import KnowledgeStoreSuite, StoreFactory
from storebridge.testing.data import FILTER_CASES, FILTER_METADATA

KS = "ks"

# -- the fake session -------------------------------------------------------------------------------------


class _Result(list):  # type: ignore[type-arg]
    was_applied = True

    def one(self) -> Any:
        return self[0] if self else None


class _Prepared:
    def __init__(self, cql: str) -> None:
        self.query_string = cql
        self.consistency_level: Any = None

    def bind(self, values: tuple[Any, ...]) -> _Bound:
        assert self.query_string.count("?") == len(values), (self.query_string, values)
        return _Bound(self, values)


class _Bound:
    def __init__(self, prepared: _Prepared, values: tuple[Any, ...]) -> None:
        self.prepared, self.values = prepared, values
        self.fetch_size: int | None = None


def _token(doc_id: str) -> int:
    return int(murmur3(doc_id.encode("utf-8")))


class FakeSession:
    """An interpreter for the adapter's CQL (see the module docstring). Not the engine."""

    def __init__(self, keyspace: str = KS, *, unqueryable_polls: int = 0) -> None:
        self.keyspace = keyspace
        self.tables: dict[str, dict[str, Any]] = {}
        self.statements: list[tuple[str, tuple[Any, ...], Any]] = []  # (cql, values, consistency)
        self.unqueryable_polls = unqueryable_polls
        self.fail_on: dict[str, Exception] = {}  # a CQL prefix -> the error it raises

    # the driver's surface --------------------------------------------------------------------------------

    def prepare(self, cql: str) -> _Prepared:
        return _Prepared(cql)

    def execute(self, statement: Any, values: tuple[Any, ...] | None = None, timeout: float | None = None) -> Any:
        if isinstance(statement, _Bound):
            cql, values, level = statement.prepared.query_string, statement.values, statement.prepared.consistency_level
        else:  # a SimpleStatement formats %s parameters client-side; the adapter sends it none
            assert isinstance(statement, SimpleStatement) and not values, statement
            cql, values, level = statement.query_string, (), statement.consistency_level
        assert level is not None, f"no consistency level on {cql}"
        self.statements.append((cql, tuple(values), level))
        for prefix, error in self.fail_on.items():
            if cql.startswith(prefix):
                raise error
        return self._run(cql, list(values))

    # the interpreter -------------------------------------------------------------------------------------

    def _table(self, name: str) -> dict[str, Any]:
        ks, table = re.fullmatch(r'"(\w+)"\."(\w+)"', name).groups()  # type: ignore[union-attr]
        assert ks == self.keyspace, name
        if table not in self.tables:
            raise InvalidRequest(f"table {table} does not exist")
        return self.tables[table]

    def _run(self, cql: str, values: list[Any]) -> Any:
        if m := re.fullmatch(r'CREATE TABLE IF NOT EXISTS "(\w+)"\."(\w+)" \((.*)\)', cql):
            assert m.group(1) == self.keyspace and len(m.group(2)) <= 48, cql
            columns = dict(re.findall(r'"(\w+)" (.*?)(?=, "|$)', m.group(3)))
            key = next(c for c, t in columns.items() if t.endswith("PRIMARY KEY"))
            columns[key] = columns[key].removesuffix(" PRIMARY KEY")
            self.tables.setdefault(m.group(2), {"columns": columns, "key": key, "rows": {}, "indexes": {}})
            return _Result()
        if m := re.fullmatch(r'CREATE CUSTOM INDEX IF NOT EXISTS "(\w+)" ON ("\w+"\."\w+") \((.*?)\) USING '
                             r"'StorageAttachedIndex'(?: WITH OPTIONS = \{'similarity_function': '(\w+)'\})?", cql):
            assert len(m.group(1)) <= 48, cql
            table = self._table(m.group(2))
            target = m.group(3)
            column = re.fullmatch(r'(?:ENTRIES\()?"(\w+)"\)?', target).group(1)  # type: ignore[union-attr]
            kind = table["columns"][column]
            if target.startswith("ENTRIES("):
                assert kind.startswith("map<"), cql
            if m.group(4) is not None:
                assert kind.startswith("vector<") and m.group(4) in ("COSINE", "EUCLIDEAN", "DOT_PRODUCT"), cql
            table["indexes"][column] = (m.group(1), target, m.group(4))
            return _Result()
        if m := re.fullmatch(r'DROP TABLE IF EXISTS "\w+"\."(\w+)"', cql):
            self.tables.pop(m.group(1), None)
            return _Result()
        if m := re.fullmatch(r'INSERT INTO ("\w+"\."\w+") \((.*)\) VALUES \((.*)\)( IF NOT EXISTS)?', cql):
            table = self._table(m.group(1))
            names = re.findall(r'"(\w+)"', m.group(2))
            row = {c: self._check(table, c, v) for c, v in zip(names, values, strict=True)}
            key = row[table["key"]]
            result = _Result()
            if m.group(4):
                result.was_applied = key not in table["rows"]
                if not result.was_applied:
                    return result
            table["rows"][key] = row
            return result
        if m := re.fullmatch(r'DELETE FROM ("\w+"\."\w+") WHERE "(\w+)" = \?', cql):
            table = self._table(m.group(1))
            assert m.group(2) == table["key"]
            table["rows"].pop(values[0], None)
            return _Result()
        if cql.startswith('SELECT "index_name", "is_queryable" FROM "system_views"."sai_column_indexes"'):
            ready = self.unqueryable_polls <= 0
            self.unqueryable_polls -= 1
            return _Result((index, ready) for t in self.tables.values() for index, _, _ in t["indexes"].values())
        if m := re.fullmatch(r'SELECT (.*?) FROM ("\w+"\."\w+")(?: WHERE (.*?))?( ORDER BY "v" ANN OF \?)?'
                             r'( LIMIT \?)?', cql):
            return self._select(m.group(1), self._table(m.group(2)), m.group(3), bool(m.group(4)), bool(m.group(5)),
                                values)
        raise AssertionError(f"the fake does not know this statement: {cql}")

    @staticmethod
    def _check(table: dict[str, Any], column: str, value: Any) -> Any:
        kind = table["columns"][column]
        if value is None:
            return None
        if kind == "text":
            assert isinstance(value, str)
        elif kind == "int":
            assert isinstance(value, int) and not isinstance(value, bool)
        elif kind == "blob":
            assert isinstance(value, bytes)
        elif kind == "double":
            assert isinstance(value, float)
        elif kind == "map<text, text>":
            assert isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
            return dict(value) or None
        elif kind in ("set<text>", "list<text>"):
            assert all(isinstance(v, str) for v in value)
            return (set(value) if kind == "set<text>" else list(value)) or None
        elif kind.startswith("vector<float, "):
            assert len(value) == int(kind[14:-1]) and all(isinstance(v, float) for v in value)
            return np.asarray(value, dtype=np.float32)
        else:
            raise AssertionError(f"unknown type {kind}")
        return value

    def _select(self, columns: str, table: dict[str, Any], where: str | None, ann: bool, limited: bool,
                values: list[Any]) -> _Result:
        rows = sorted(table["rows"].values(), key=lambda r: _token(r[table["key"]]))
        bounds: set[tuple[str, str]] = set()
        for condition in (where.split(" AND ") if where else []):
            rows = self._restrict(table, condition, rows, values, bounds)
        if ann:
            name, _, function = table["indexes"].get("v", (None, None, None))
            if name is None:
                raise InvalidRequest("ANN ordering on a column without a vector index")
            query = np.asarray(values.pop(0), dtype=np.float64)
            def similarity(row: dict[str, Any]) -> float:
                v = row["v"].astype(np.float64)
                if function == "COSINE":
                    return float(v @ query / (np.linalg.norm(v) * np.linalg.norm(query)))
                if function == "EUCLIDEAN":
                    return -float(((v - query) ** 2).sum())
                return float(v @ query)
            rows.sort(key=similarity, reverse=True)
        if limited:
            limit = values.pop(0)
            if ann and limit > q.ANN_MAX_LIMIT:
                raise InvalidRequest(f"Use of ANN OF in an ORDER BY clause requires a LIMIT that is not greater than "
                                     f"1000. LIMIT was {limit}")
            rows = rows[:limit]
        elif ann:
            raise InvalidRequest("ANN queries need a LIMIT")
        assert not values, f"unused bound values {values}"
        if columns == "COUNT(*)":
            return _Result([(len(rows),)])
        names = [c.strip() for c in columns.split(", ")]
        out = _Result()
        for row in rows:
            out.append(tuple(_token(row[table["key"]]) if name == 'token("id")' else row.get(name.strip('"'))
                             for name in names))
        return out

    @staticmethod
    def _restrict(table: dict[str, Any], condition: str, rows: list[dict[str, Any]], values: list[Any],
                  bounds: set[tuple[str, str]]) -> list[dict[str, Any]]:
        if m := re.fullmatch(r'"(\w+)" = \?', condition):
            assert m.group(1) == table["key"], f"only the key takes = here: {condition}"
            wanted = values.pop(0)
            return [r for r in rows if r[table["key"]] == wanted]
        if condition == 'token("id") > ?':
            after = values.pop(0)
            return [r for r in rows if _token(r["id"]) > after]
        if m := re.fullmatch(r'"(\w+)"\[\?\] = \?', condition):
            column = m.group(1)
            if not table["indexes"].get(column, (None, ""))[1].startswith("ENTRIES("):
                raise InvalidRequest("Cannot execute this query as it might involve data filtering (no entries index)")
            key, value = values.pop(0), values.pop(0)
            return [r for r in rows if (r.get(column) or {}).get(key) == value]
        if m := re.fullmatch(r'"(\w+)" CONTAINS \?', condition):
            column = m.group(1)
            if column not in table["indexes"]:
                raise InvalidRequest("Cannot execute this query as it might involve data filtering")
            value = values.pop(0)
            return [r for r in rows if value in (r.get(column) or ())]
        if m := re.fullmatch(r'"(\w+)" (>|>=|<|<=) \?', condition):
            column, op = m.groups()
            if column not in table["indexes"]:
                raise InvalidRequest("Cannot execute this query as it might involve data filtering")
            side = "start" if op.startswith(">") else "end"
            if (column, side) in bounds:
                raise InvalidRequest(f"More than one restriction was found for the {side} bound on {column}")
            bounds.add((column, side))
            bound = values.pop(0)
            compare = {">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__}[op]
            return [r for r in rows if r.get(column) is not None and compare(r[column], bound)]
        raise InvalidRequest(f"SAI cannot evaluate {condition!r}")


def _sequential(session: FakeSession, statement: _Prepared, parameters: list[tuple[Any, ...]], *, concurrency: int,
                raise_on_first_error: bool) -> list[tuple[bool, Any]]:
    """``execute_concurrent_with_args`` one statement at a time (the driver's own is not faked)."""
    assert concurrency > 0 and raise_on_first_error is False
    out: list[tuple[bool, Any]] = []
    for params in parameters:
        try:
            out.append((True, session.execute(statement.bind(params))))
        except Exception as exc:  # noqa: BLE001 - returned, as the driver does
            out.append((False, exc))
    return out


@pytest.fixture(autouse=True)
def _no_real_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ck, "execute_concurrent_with_args", _sequential)


RANGE_FIELDS = ("num", "flag", "text", "a-b")


def _store(session: FakeSession | None = None, **options: Any) -> CassandraKnowledgeStore:
    return CassandraKnowledgeStore(session=session or FakeSession(), **options)


# -- the suite over the fake ------------------------------------------------------------------------------

class TestCassandraOverFakeSession(KnowledgeStoreSuite):
    """The whole conformance suite through the adapter into ``FakeSession`` (not the engine)."""

    @pytest.fixture
    def store_factory(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StoreFactory:
        session = FakeSession()
        return lambda: CassandraKnowledgeStore(session=session, range_fields=RANGE_FIELDS)


class TestCassandraOverFakeSessionNoRanges(KnowledgeStoreSuite):
    """Without range fields the range operators are not declared and must raise."""

    @pytest.fixture
    def store_factory(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StoreFactory:
        session = FakeSession()
        return lambda: CassandraKnowledgeStore(session=session)


# -- identifiers -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ['a"b', "a;b", "a b", "", "ключ", "a.b", 'x" ; DROP TABLE t; --', None, 3])
def test_quote_refuses_anything_but_word_characters(bad: Any) -> None:
    with pytest.raises(ConfigurationError):
        q.quote(bad)


def test_quote_and_names() -> None:
    assert q.quote("sbk_collections") == '"sbk_collections"'
    assert q.check_keyspace("My_KS") == "My_KS"
    for bad in ("", "a-b", "x" * 49, None, "ks;"):
        with pytest.raises(ConfigurationError, match="keyspace"):
            q.check_keyspace(bad)
    for bad in ("Sbk_", "1a", "a" * 17, "a-b", ""):
        with pytest.raises(ConfigurationError, match="prefix"):
            q.check_prefix(bad)


@pytest.mark.parametrize("name", ["docs", "Docs", "n" * 63, "9-a", "_Mixed-Case_"])
def test_table_names_fit_cassandra(name: str) -> None:
    first, second = q.new_table_name("abcdefghijklmnop", name), q.new_table_name("abcdefghijklmnop", name)
    assert re.fullmatch(r"abcdefghijklmnop[0-9a-f]{16}_[0-9a-f]{8}", first) and len(first) <= 48
    assert first[:32] == second[:32] and first != second, "the same stem, a fresh suffix per creation"
    assert all(len(n) <= 48 for n in q.index_names(first, ["a"] * 12))


# -- statements --------------------------------------------------------------------------------------------

def test_ddl_statements_exactly() -> None:
    assert q.create_catalog("ks", "sbk_") == (
        'CREATE TABLE IF NOT EXISTS "ks"."sbk_collections" ("name" text PRIMARY KEY, "table_name" text, '
        '"dimension" int, "distance" text, "range_fields" list<text>, "layout" int)')
    assert q.create_table("ks", "t1", 8, ["num", "a-b"]) == (
        'CREATE TABLE IF NOT EXISTS "ks"."t1" ("id" text PRIMARY KEY, "content" text, "source" text, "meta" text, '
        '"raw" blob, "eq" map<text, text>, "tok" set<text>, "v" vector<float, 8>, "r_6e756d" double, '
        '"r_612d62" double)')
    assert q.create_indexes("ks", "t1", Distance.DOT, ["num"]) == [
        ("CREATE CUSTOM INDEX IF NOT EXISTS \"t1_iv\" ON \"ks\".\"t1\" (\"v\") USING 'StorageAttachedIndex' "
         "WITH OPTIONS = {'similarity_function': 'DOT_PRODUCT'}"),
        "CREATE CUSTOM INDEX IF NOT EXISTS \"t1_ie\" ON \"ks\".\"t1\" (ENTRIES(\"eq\")) USING 'StorageAttachedIndex'",
        "CREATE CUSTOM INDEX IF NOT EXISTS \"t1_it\" ON \"ks\".\"t1\" (\"tok\") USING 'StorageAttachedIndex'",
        "CREATE CUSTOM INDEX IF NOT EXISTS \"t1_r0\" ON \"ks\".\"t1\" (\"r_6e756d\") USING 'StorageAttachedIndex'",
    ]
    assert [q.SIMILARITY[d] for d in Distance] == ["COSINE", "EUCLIDEAN", "DOT_PRODUCT"]
    assert q.drop_table("ks", "t1") == 'DROP TABLE IF EXISTS "ks"."t1"'
    with pytest.raises(ValidationError):
        q.create_table("ks", "t1", 0, [])


def test_dml_statements_exactly() -> None:
    assert q.claim_collection("ks", "p_") == (
        'INSERT INTO "ks"."p_collections" ("name", "table_name", "dimension", "distance", "range_fields", "layout") '
        "VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS")
    assert q.insert_row("ks", "t", ["x"]) == (
        'INSERT INTO "ks"."t" ("id", "content", "source", "meta", "raw", "eq", "tok", "v", "r_78") '
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
    where = q.compile_filter(parse_filter({"a": 1, "n": {"$gt": 2}}), ["n"])
    assert q.search("ks", "t", where) == (
        'SELECT "id", "content", "source", "meta", "raw" FROM "ks"."t" WHERE "eq"[?] = ? AND "r_6e" > ? '
        'ORDER BY "v" ANN OF ? LIMIT ?')
    assert q.search("ks", "t", q.Where()) == (
        'SELECT "id", "content", "source", "meta", "raw" FROM "ks"."t" ORDER BY "v" ANN OF ? LIMIT ?')
    assert q.count("ks", "t", where) == 'SELECT COUNT(*) FROM "ks"."t" WHERE "eq"[?] = ? AND "r_6e" > ?'
    assert q.page("ks", "t", where, True) == (
        'SELECT "id", "content", "source", "meta", "raw", token("id") FROM "ks"."t" WHERE token("id") > ? AND '
        '"eq"[?] = ? AND "r_6e" > ? LIMIT ?')
    assert q.page("ks", "t", q.Where(), False) == (
        'SELECT "id", "content", "source", "meta", "raw", token("id") FROM "ks"."t" LIMIT ?')
    assert q.matching_ids("ks", "t", where) == 'SELECT "id" FROM "ks"."t" WHERE "eq"[?] = ? AND "r_6e" > ?'
    assert q.delete_row("ks", "t") == 'DELETE FROM "ks"."t" WHERE "id" = ?'


# -- the compiler --------------------------------------------------------------------------------------------

def _c(spec: Any, fields: tuple[str, ...] = ("n",)) -> q.Where:
    return q.compile_filter(parse_filter(spec), fields)


def test_compile_each_operator_exactly() -> None:
    assert _c(None) == q.Where()
    assert _c({"a": "x"}) == q.Where(('"eq"[?] = ?',), ("61", "s78"))
    assert _c({"a": 1.0}) == _c({"a": 1}) == q.Where(('"eq"[?] = ?',), ("61", "n1"))
    assert _c({"a": True}).values == ("61", "t")
    assert _c({"tags": {"$contains": "ml"}}) == q.Where(('"tok" CONTAINS ?',), ("74616773:s6d6c",))
    assert _c({"n": {"$gt": 1}}) == q.Where(('"r_6e" > ?',), (1.0,))
    assert _c({"n": {"$gte": 1}}) == q.Where(('"r_6e" >= ?',), (1.0,))
    assert _c({"n": {"$lt": 1}}) == q.Where(('"r_6e" < ?',), (1.0,))
    assert _c({"n": {"$lte": 1}}) == q.Where(('"r_6e" <= ?',), (1.0,))
    assert _c({"$and": [{"a": 1}, {"b": "y"}, {"t": {"$contains": 2}}]}) == q.Where(
        ('"eq"[?] = ?', '"eq"[?] = ?', '"tok" CONTAINS ?'), ("61", "n1", "62", "s79", "74:n2"))


def test_compile_merges_bounds_and_decides_contradictions() -> None:
    assert _c({"$and": [{"n": {"$gt": 1}}, {"n": {"$gte": 3}}, {"n": {"$lt": 9}}, {"n": {"$lte": 9}}]}) == q.Where(
        ('"r_6e" >= ?', '"r_6e" < ?'), (3.0, 9.0))
    assert _c({"$and": [{"n": {"$gte": 2}}, {"n": {"$gt": 2}}]}) == q.Where(('"r_6e" > ?',), (2.0,))
    assert _c({"$and": [{"a": 1}, {"a": 1.0}]}) == q.Where(('"eq"[?] = ?',), ("61", "n1"))
    assert _c({"$and": [{"a": 1}, {"a": 2}]}).never
    assert _c({"$and": [{"t": {"$contains": 1}}, {"t": {"$contains": 1}}]}).conditions == ('"tok" CONTAINS ?',)
    assert q.compile_filter(Comparison("n", Op.GT, 10**400), ("n",)).values == (math.inf,)


@pytest.mark.parametrize("spec", [{"a": {"$ne": 1}}, {"a": {"$in": [1]}}, {"a": {"$nin": [1]}},
                                  {"a": {"$exists": True}}, {"$or": [{"a": 1}, {"b": 2}]}, {"$not": {"a": 1}},
                                  {"$and": [{"a": 1}, {"$or": [{"b": 1}, {"c": 1}]}]}])
def test_what_sai_cannot_do_raises(spec: Any) -> None:
    with pytest.raises(UnsupportedFilterError):
        _c(spec)


def test_ranges_need_a_range_field() -> None:
    with pytest.raises(UnsupportedFilterError, match=r"range_fields=\[\.\.\., 'year'\]"):
        _c({"year": {"$gte": 2020}})


@pytest.mark.parametrize("value", ["'; DROP TABLE t; --", 'a"b', "a\\b", "x\x00y", "🚀", "x?y", "a AND b"])
def test_values_are_bound_never_written(value: str) -> None:
    where = _c({"k": value, "l": {"$contains": value}})
    assert value not in " ".join(where.conditions)
    assert all(re.fullmatch(r"[0-9a-fhnNsStf:.\-e]+", v) for v in where.values), where.values
    assert bytes.fromhex(where.values[1][1:]).decode() == value


def test_encoding_keeps_types_apart() -> None:
    assert hex_value(1) == hex_value(1.0) == "n1"
    assert hex_value(True) == "t" != hex_value(1)
    assert hex_value("1") == "s31"
    assert hex_value(2**60 + 1) != hex_value(float(2**60))
    assert hex_value("x" * 101).startswith("S") and len(hex_value("x" * 101)) == 65
    equal, contains = q.indexed({"n": 1, "l": ["a", 1, True, None, {"d": 1}], "none": None, "d": {"k": 1},
                                 "bad.key": 1})
    assert equal == {"6e": "n1"}
    assert contains == {"6c:s61", "6c:n1", "6c:t"}
    assert q.range_values({"n": 2, "b": True, "s": "3"}, ["n", "b", "s", "missing"]) == [2.0, None, None, None]
    with pytest.raises(ValidationError, match="float64"):
        q.range_values({"n": 10**400}, ["n"])


def _sai_matches(spec: Any, metadata: dict[str, Any], fields: tuple[str, ...]) -> bool:
    """Evaluate a compiled filter on one row the way FakeSession does."""
    session = FakeSession()
    session._run(q.create_table(KS, "t", 1, fields), [])
    for statement in q.create_indexes(KS, "t", Distance.L2, fields):
        session._run(statement, [])
    equal, contains = q.indexed(metadata)
    session._run(q.insert_row(KS, "t", fields), ["d", "", None, "{}", b"", equal, contains, [0.0],
                                                 *q.range_values(metadata, fields)])
    where = q.compile_filter(parse_filter(spec), fields)
    if where.never:
        return False
    return bool(session._run(q.matching_ids(KS, "t", where), list(where.values)))


@pytest.mark.parametrize("case", ["eq", "gt", "gte", "lt", "lte", "contains", "and", "mixed_types"])
def test_declared_filters_agree_with_the_reference_evaluator(case: str) -> None:
    checked = 0
    for spec in FILTER_CASES[case]:
        try:
            q.compile_filter(parse_filter(spec), RANGE_FIELDS)
        except UnsupportedFilterError:
            continue
        for metadata in FILTER_METADATA:
            assert _sai_matches(spec, metadata, RANGE_FIELDS) == evaluate(spec, metadata), (spec, metadata)
        checked += 1
    assert checked, f"no {case!r} case is declared"


def test_capabilities_are_honest() -> None:
    plain, ranged = _store(), _store(range_fields=["n"])
    assert plain.capabilities.filter_operators == {Op.EQ, Op.CONTAINS, Op.AND}
    assert ranged.capabilities.filter_operators == {Op.EQ, Op.CONTAINS, Op.AND, Op.GT, Op.GTE, Op.LT, Op.LTE}
    assert CassandraKnowledgeStore.capabilities.filter_operators == {Op.EQ, Op.CONTAINS, Op.AND}
    ranged.create_collection("c", 2)
    ranged.upsert("c", [KnowledgeDocument(id="a", embedding=[1.0, 0.0], metadata={"n": 1, "t": ["x"]})])
    for spec in [{"n": 1}, {"t": {"$contains": "x"}}, {"n": {"$gt": 0}}, {"n": {"$gte": 1}}, {"n": {"$lt": 2}},
                 {"n": {"$lte": 1}}, {"$and": [{"n": 1}, {"n": {"$lt": 5}}]}]:
        assert [h.id for h in ranged.search("c", [1.0, 0.0], filter=spec)] == ["a"], spec
    for spec in [{"n": {"$ne": 2}}, {"n": {"$in": [1]}}, {"n": {"$nin": [2]}}, {"n": {"$exists": True}},
                 {"$or": [{"n": 1}, {"n": 2}]}, {"$not": {"n": 2}}, {"m": {"$gt": 0}}]:
        with pytest.raises(UnsupportedFilterError):
            ranged.search("c", [1.0, 0.0], filter=spec)
        with pytest.raises(UnsupportedFilterError):
            ranged.delete("c", filter=spec)
        with pytest.raises(UnsupportedFilterError):
            ranged.delete("c", ["a"], filter=spec)
    assert ranged.count("c") == 1


# -- the store's calls ----------------------------------------------------------------------------------------

def test_create_claims_the_name_then_makes_table_and_indexes() -> None:
    session = FakeSession()
    store = _store(session, range_fields=["year"])
    store.create_collection("Docs", 4, "l2")
    cql = [s[0] for s in session.statements]
    claim = next(i for i, c in enumerate(cql) if c.endswith("IF NOT EXISTS") and c.startswith("INSERT"))
    table_ddl = next(i for i, c in enumerate(cql) if c.startswith('CREATE TABLE IF NOT EXISTS "ks"."sbk_') and
                     '"v" vector<float, 4>' in c)
    assert claim < table_ddl
    assert sum(c.startswith("CREATE CUSTOM INDEX") for c in cql) == 4
    assert "'similarity_function': 'EUCLIDEAN'" in next(c for c in cql if '("v")' in c)
    assert all(level == ck.ConsistencyLevel.LOCAL_QUORUM for c, _, level in session.statements
               if "system_views" not in c)
    assert store.get_collection("Docs") == CollectionInfo("Docs", 4, Distance.L2)


def test_creation_waits_for_queryable_indexes() -> None:
    session = FakeSession(unqueryable_polls=2)
    _store(session).create_collection("c", 2)
    polls = [s for s in session.statements if "sai_column_indexes" in s[0]]
    assert len(polls) == 3 and all(level == ck.ConsistencyLevel.ONE for _, _, level in polls)


def test_creation_failure_gives_the_name_back() -> None:
    session = FakeSession()
    session.fail_on["CREATE CUSTOM INDEX"] = InvalidRequest("index creation refused")
    store = _store(session)
    with pytest.raises(OperationFailedError, match="index creation refused"):
        store.create_collection("c", 2)
    assert store.list_collections() == [] and not any(t.startswith("sbk_") and t != "sbk_collections"
                                                      for t in session.tables)
    del session.fail_on["CREATE CUSTOM INDEX"]
    assert store.create_collection("c", 2) == CollectionInfo("c", 2, Distance.COSINE)


def test_a_lost_claim_race_reconciles() -> None:
    session = FakeSession()
    first, second = _store(session), _store(session)
    first.create_collection("c", 3)
    info = CollectionInfo("c", 3, Distance.COSINE)
    second._engine_create(info)  # as if its describe ran before the first store's claim
    with pytest.raises(AlreadyExistsError, match="created meanwhile"):
        second._engine_create(CollectionInfo("c", 4, Distance.COSINE))
    assert len([t for t in session.tables if t != "sbk_collections"]) == 1


def test_recreated_collections_get_a_fresh_table() -> None:
    session = FakeSession()
    store = _store(session)
    store.create_collection("c", 2)
    store.upsert("c", [KnowledgeDocument(id="a", embedding=[1.0, 0.0])])
    old = set(session.tables)
    store.drop_collection("c")
    store.create_collection("c", 2)
    assert set(session.tables) - old and store.count("c") == 0


def test_writes_bind_every_column_and_failures_name_the_rows() -> None:
    session = FakeSession()
    store = _store(session, range_fields=["n"])
    store.create_collection("c", 2)
    store.upsert("c", [KnowledgeDocument(id="a", content="", source_id="", embedding=[3.0e38, 4.0],
                                         metadata={"n": 5, "t": "x"})])
    _, values, _ = next(s for s in session.statements if s[0].startswith('INSERT INTO "ks"."sbk_') and
                          "IF NOT EXISTS" not in s[0])
    doc_id, content, source, meta, raw, equal, contains, vector, n = values
    assert (doc_id, content, source, meta, equal, contains, n) == ("a", "", "", '{"n":5,"t":"x"}',
                                                                   {"6e": "n5", "74": "s78"}, set(), 5.0)
    assert np.frombuffer(raw, "<f4").tolist() == [float(np.float32(3.0e38)), 4.0]
    assert math.isclose(math.hypot(*vector), 1.0, rel_tol=1e-6), "cosine: the unit vector, computed in float64"
    [doc] = store.get("c", ["a"])
    assert (doc.content, doc.source_id) == ("", "")
    session.fail_on['INSERT INTO "ks"."sbk_'] = Unauthorized("no write permission")
    with pytest.raises(OperationFailedError, match=r"write failed for 2 of 2 .*'b': .*no write permission"):
        store.upsert("c", [KnowledgeDocument(id=i, embedding=[1.0, 0.0]) for i in "bc"])


def test_k_beyond_the_ann_limit() -> None:
    session = FakeSession()
    store = _store(session)
    store.create_collection("c", 2)
    store.upsert("c", [KnowledgeDocument(id="a", embedding=[1.0, 0.0])])
    assert [h.id for h in store.search("c", [1.0, 0.0], k=1000)] == ["a"]
    assert session.statements[-1][1][-1] == 1000, "k + 16 is clamped to the server's limit"
    with pytest.raises(ValidationError, match="LIMIT 1000"):
        store.search("c", [1.0, 0.0], k=1001)
    assert [h.id for h in _store(session, ann_limit=5).search("c", [1.0, 0.0], k=5)] == ["a"]


def test_delete_by_filter_selects_then_deletes_by_key() -> None:
    session = FakeSession()
    store = _store(session)
    store.create_collection("c", 2)
    store.upsert("c", [KnowledgeDocument(id=f"d{i}", embedding=[1.0, float(i)], metadata={"g": i % 2})
                       for i in range(6)])
    session.statements.clear()
    assert store.delete("c", filter={"g": 0}) == 3
    kinds = [c.split(" ")[0] for c, _, _ in session.statements if '"sbk_collections"' not in c]
    assert kinds == ["SELECT"] + ["DELETE"] * 3
    assert store.delete("c", ["d1", "d2", "missing"], filter={"g": 1}) == 1
    assert store.count("c") == 2


def test_scroll_cursors_are_tokens() -> None:
    store = _store()
    store.create_collection("c", 2)
    for bad in ["x", "1.5", str(2**63), "--1", "١"]:
        with pytest.raises(ValidationError, match="cursor"):
            store.scroll("c", cursor=bad)
    assert store.scroll("c", cursor=str(-(2**63))).documents == []


def test_a_given_session_is_not_shut_down_and_the_keyspace_comes_from_it() -> None:
    session = FakeSession(keyspace="other")
    store = CassandraKnowledgeStore(session=session)
    assert store._keyspace == "other"
    store.close()
    store.close()
    with pytest.raises(ConfigurationError, match="keyspace"):
        CassandraKnowledgeStore(session=FakeSession(keyspace=None))  # type: ignore[arg-type]


# -- URLs, connection and secrets ----------------------------------------------------------------------------

class _FakeCluster:
    made: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, **kwargs: Any) -> None:
        type(self).made.append(kwargs)
        self.shut = False

    def connect(self) -> FakeSession:
        return FakeSession()

    def shutdown(self) -> None:
        self.shut = True


@pytest.fixture
def clusters(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    _FakeCluster.made = []
    monkeypatch.setattr(ck, "Cluster", _FakeCluster)
    yield _FakeCluster.made


def test_url_hosts_port_keyspace_and_options(clusters: list[dict[str, Any]]) -> None:
    store = CassandraKnowledgeStore("cassandra://u1:p%40ss@h1,h2:9142/ks?consistency=quorum&local_dc=dc1"
                                    "&prefix=abc_&range_fields=year,price&timeout=12&concurrency=8")
    [kwargs] = clusters
    assert kwargs["contact_points"] == ["h1", "h2"] and kwargs["port"] == 9142
    assert (kwargs["auth_provider"].username, kwargs["auth_provider"].password) == ("u1", "p@ss")
    profile = kwargs["execution_profiles"][ck.EXEC_PROFILE_DEFAULT]
    assert profile.consistency_level == ck.ConsistencyLevel.QUORUM and profile.request_timeout == 12.0
    assert profile.load_balancing_policy._child_policy.local_dc == "dc1"
    assert store._keyspace == "ks" and store._prefix == "abc_" and store._range_fields == ("year", "price")
    assert store._concurrency == 8 and "p@ss" not in repr(store)
    store.close()
    CassandraKnowledgeStore("cassandra://db/ks?username=u2&password=pw2&ssl=true")
    assert clusters[1]["port"] == 9042 and clusters[1]["auth_provider"].username == "u2"
    assert clusters[1]["ssl_context"].check_hostname is True


def test_url_astra(clusters: list[dict[str, Any]]) -> None:
    CassandraKnowledgeStore("cassandra+astra:///ks?secure_bundle=/tmp/b.zip&token=AstraCS:sekrit")
    [kwargs] = clusters
    assert kwargs["cloud"] == {"secure_connect_bundle": "/tmp/b.zip"}
    assert (kwargs["auth_provider"].username, kwargs["auth_provider"].password) == ("token", "AstraCS:sekrit")
    assert "contact_points" not in kwargs
    with pytest.raises(ConfigurationError, match="secure_bundle"):
        CassandraKnowledgeStore("cassandra+astra:///ks?token=x")


@pytest.mark.parametrize(("url", "match"), [
    ("redis://h/ks", "not a cassandra URL"), ("cassandra+http://h/ks", "not a cassandra URL"),
    ("cassandra:///ks", "no host"), ("cassandra://h", "keyspace"), ("cassandra://h/a-b", "keyspace"),
    ("cassandra://h/ks?colour=red", "unknown cassandra URL options"), ("cassandra://h/ks?consistency=most", "consistency"),
    ("cassandra://h/ks?timeout=soon", "timeout"), ("cassandra://h/ks?concurrency=0", "concurrency"),
    ("cassandra://h/ks?ssl=maybe", "ssl"), ("cassandra://h/ks?prefix=Big", "prefix"),
    ("cassandra://h/ks?range_fields=a.b", "range field"), ("cassandra://h/ks?range_fields=a,a", "twice"),
])
def test_url_errors(clusters: list[dict[str, Any]], url: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        CassandraKnowledgeStore(url)
    assert clusters == []


def test_url_or_session_exactly_once() -> None:
    with pytest.raises(ConfigurationError, match="either"):
        CassandraKnowledgeStore()
    with pytest.raises(ConfigurationError, match="either"):
        CassandraKnowledgeStore("cassandra://h/ks", session=FakeSession())
    with pytest.raises(ConfigurationError, match="twice"):
        CassandraKnowledgeStore("cassandra://h/ks?range_fields=a", range_fields=["a"])


def test_secrets_never_show(clusters: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    store = CassandraKnowledgeStore("cassandra://admin:hunter2@h/ks")
    assert "hunter2" not in repr(store)

    class Refusing(_FakeCluster):
        def connect(self) -> FakeSession:
            raise ck.NoHostAvailable("Unable to connect", {"h": ck.AuthenticationFailed("bad creds hunter2")})

    monkeypatch.setattr(ck, "Cluster", Refusing)
    with pytest.raises(ConfigurationError, match="refused the credentials") as refused:
        CassandraKnowledgeStore("cassandra://admin:hunter2@h/ks")
    assert "hunter2" not in str(refused.value)

    class Down(_FakeCluster):
        def connect(self) -> FakeSession:
            raise ck.NoHostAvailable("Unable to connect to any servers", {"h": OSError("refused")})

    monkeypatch.setattr(ck, "Cluster", Down)
    with pytest.raises(ConnectionFailedError, match="cannot reach"):
        CassandraKnowledgeStore("cassandra+astra:///ks?secure_bundle=/b.zip&token=AstraCS:tok-secret")


def test_missing_keyspace_is_a_configuration_error() -> None:
    session = FakeSession()
    session.fail_on["CREATE TABLE"] = InvalidRequest("Keyspace 'ks' does not exist")
    with pytest.raises(ConfigurationError, match="CREATE KEYSPACE"):
        _store(session)


def test_urls_survive_the_registry_rendering(clusters: list[dict[str, Any]]) -> None:
    """``Registry.from_url`` passes ``parse_url(url).render(reveal=True)``: the options must come through."""
    from storebridge.urls import parse_url

    url = "cassandra://u:p%2Fw@h1,h2:9142/ks?range_fields=year,price&consistency=ONE"
    store = CassandraKnowledgeStore(parse_url(url).render(reveal=True))
    assert clusters[0]["contact_points"] == ["h1", "h2"] and clusters[0]["auth_provider"].password == "p/w"
    assert store._range_fields == ("year", "price")
    CassandraKnowledgeStore(parse_url("cassandra+astra:///ks?secure_bundle=/b.zip&token=t").render(reveal=True))
    assert clusters[1]["cloud"] == {"secure_connect_bundle": "/b.zip"}
