"""``storebridge backends``, ``--version`` and the error contract shared by every command."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest

import storebridge
from storebridge import KNOWLEDGE_STORES
from storebridge.errors import ConfigurationError
from storebridge.registry import BackendSpec

from .conftest import Invoke, assert_error_line

MISSING_MODULE = "storebridge_cli_test_no_such_client"


@pytest.fixture
def uninstalled_backend() -> Iterator[str]:
    """A knowledge backend whose client library does not exist, and whose adapter module does not
    either (listing it must not try to import the adapter), plus a planned one (no target)."""
    spec = BackendSpec(name="cli_test_missing", kind="knowledge", target="storebridge_cli_test_adapter:Store",
                       extra="cli_test", requires=(MISSING_MODULE,), schemes=("clitestmissing",))
    planned = BackendSpec(name="cli_test_planned", kind="knowledge", target=None, extra="cli_test_planned")
    for row in (spec, planned):
        KNOWLEDGE_STORES._add(row, replace_existing=False)
    try:
        yield spec.name
    finally:
        for row in (spec, planned):
            KNOWLEDGE_STORES.unregister(row.name)


def test_version(invoke: Invoke) -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"storebridge {storebridge.__version__}"


def test_backends_json_lists_every_registered_backend(invoke: Invoke) -> None:
    result = invoke("backends", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    listed = {(r["kind"], r["name"]) for r in rows}
    expected = {(kind, name) for kind, reg in storebridge.registries().items() for name in reg.list_registered()}
    assert listed == expected
    by_key = {(r["kind"], r["name"]): r for r in rows}
    for kind, registry in storebridge.registries().items():
        for spec in registry.specs():
            row = by_key[(kind, spec.name)]
            assert row["aliases"] == list(spec.aliases)
            assert row["schemes"] == list(spec.schemes)
            assert row["install"] == spec.install_hint
            if not spec.implemented:
                assert row["status"] == "planned" and row["capabilities"] is None
                assert "planned" in row["capabilities_note"]


def test_backends_capabilities_are_the_adapters_declared_ones(invoke: Invoke) -> None:
    from storebridge.adapters.redis.state import RedisStateStore
    from storebridge.adapters.sqlite.knowledge import SQLiteKnowledgeStore

    rows = {(r["kind"], r["name"]): r for r in json.loads(invoke("backends", "--json").stdout)}
    sqlite = rows[("knowledge", "sqlite")]
    assert sqlite["status"] == "installed"
    caps = SQLiteKnowledgeStore.capabilities
    assert sqlite["capabilities"]["filter_operators"] == sorted(op.value for op in caps.filter_operators)
    assert sqlite["capabilities"]["distances"] == sorted(d.value for d in caps.distances)
    assert sqlite["capabilities"]["recall_floor"] == caps.recall_floor
    redis = rows[("state", "redis")]
    assert redis["capabilities"]["native_ttl"] is RedisStateStore.capabilities.native_ttl is True
    assert redis["aliases"] == ["valkey"]


def test_backends_uninstalled_client_is_not_imported(invoke: Invoke, uninstalled_backend: str) -> None:
    result = invoke("backends", "--kind", "knowledge", "--json")
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    row = rows[uninstalled_backend]
    assert row["status"] == "not installed"
    assert row["missing"] == [MISSING_MODULE]
    assert row["capabilities"] is None
    assert 'pip install "storebridge[cli_test]"' in row["capabilities_note"]
    assert "storebridge_cli_test_adapter" not in sys.modules
    assert {r["kind"] for r in json.loads(result.stdout)} == {"knowledge"}
    planned = rows["cli_test_planned"]
    assert planned["status"] == "planned" and planned["capabilities"] is None


def test_backends_table(invoke: Invoke, uninstalled_backend: str) -> None:
    result = invoke("backends", "--kind", "state")
    assert result.exit_code == 0
    for name in storebridge.STATE_STORES.list_registered():
        assert f" {name} " in result.stdout
    assert "storebridge[redis]" in result.stdout and "valkey" in result.stdout
    assert "native_ttl=True" in result.stdout  # redis declares it, unlike the interface default
    assert not [line for line in result.stdout.splitlines() if line.startswith("│ knowledge")]
    assert [line for line in result.stdout.splitlines() if line.startswith("│ state")]
    knowledge = invoke("backends", "--kind", "knowledge").stdout
    [missing] = [line for line in knowledge.splitlines() if " cli_test_missing " in line]
    [planned] = [line for line in knowledge.splitlines() if " cli_test_planned " in line]
    assert "not installed" in missing and "storebridge[cli_test]" in missing
    assert " planned " in planned


def test_unknown_kind_is_a_usage_error(invoke: Invoke) -> None:
    result = invoke("backends", "--kind", "vectors")
    assert result.exit_code == 2
    assert "vectors" in result.stderr


def test_unknown_url_scheme_is_one_error_line(invoke: Invoke) -> None:
    result = invoke("sessions", "list", "--url", "nosuchengine://user:sekrit-pw@host/db")
    assert_error_line(result, "nosuchengine")
    assert "sekrit-pw" not in result.output


def test_malformed_url_is_one_error_line_without_the_password(invoke: Invoke) -> None:
    result = invoke("sessions", "list", "--url", "postgresql://user:pa/ss@host:notaport/db")
    assert_error_line(result, "port")
    assert "pa/ss" not in result.output and "ss@host" not in result.output
    result = invoke("sessions", "list", "--url", "just-text")
    assert_error_line(result, "not a store URL")


def test_debug_variable_lets_the_exception_through(invoke: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREBRIDGE_DEBUG", "1")
    result = invoke("sessions", "list", "--url", "just-text", catch=True)
    assert result.exit_code == 1
    assert isinstance(result.exception, ConfigurationError)
    assert "error: " not in result.stderr


def test_bad_store_option(invoke: Invoke) -> None:
    assert_error_line(invoke("sessions", "list", "-O", "no-equals-sign"), "KEY=VALUE")
    assert_error_line(invoke("sessions", "list", "-O", "no_such_option=1"), "no_such_option")

