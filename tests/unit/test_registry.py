"""The registry: the built-in map, aliases, errors, run-time registration, entry points, threads."""

from __future__ import annotations

import threading
from importlib import metadata
from typing import Any

import pytest

import storebridge
from storebridge import registries
from storebridge.errors import (
    BackendNotAvailableError,
    BackendNotImplementedError,
    ConfigurationError,
    UnknownBackendError,
)
from storebridge.registry import BackendSpec, PluginConflictWarning, StoreRegistry

# Every backend and alias the mission names (../shared/seeds and the issues), by kind.
EXPECTED = {
    "knowledge": {
        "chroma", "qdrant", "pinecone", "weaviate", "lancedb", "milvus", "pgvector", "redis", "cassandra",
        "clickhouse", "mongodb_vector", "couchbase", "singlestore_vector", "surrealdb_vector", "upstash_vector",
        "lightrag", "langchain", "llamaindex", "cosmosdb", "sqlite",
    },
    "conversation": {
        "sqlite", "async_sqlite", "postgres", "async_postgres", "mysql", "async_mysql", "json", "singlestore",
        "supabase", "surrealdb", "turso", "langchain", "llamaindex",
    },
    "state": {"memory", "sqlite", "redis", "dynamodb", "firestore", "mongodb", "async_mongodb", "upstash", "gcs",
              "langchain"},
}
EXPECTED_ALIASES = {
    "knowledge": {
        "chromadb": "chroma", "mongodb_atlas": "mongodb_vector", "mongo_vector": "mongodb_vector",
        "singlestore_v": "singlestore_vector", "surrealdb_v": "surrealdb_vector", "upstash_v": "upstash_vector",
        "langchain_adapter": "langchain", "llama_index": "llamaindex", "llamaindex_adapter": "llamaindex",
        "cosmos": "cosmosdb", "azure_cosmos": "cosmosdb", "cosmosdb_vector": "cosmosdb",
    },
    "conversation": {
        "neon": "postgres", "cockroachdb": "postgres", "crdb": "postgres", "cockroach": "postgres",
        "xata": "postgres", "asyncpg": "async_postgres", "postgres_async": "async_postgres",
        "aiomysql": "async_mysql", "mysql_async": "async_mysql", "aiosqlite": "async_sqlite",
        "sqlite_async": "async_sqlite", "libsql": "turso",
    },
    "state": {"motor": "async_mongodb", "mongodb_async": "async_mongodb"},
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_whole_map_is_declared(kind: str) -> None:
    registry = registries()[kind]  # type: ignore[index]
    assert set(registry.list_registered()) >= EXPECTED[kind]
    aliases = registry.list_aliases()
    for alias, canonical in EXPECTED_ALIASES[kind].items():
        assert aliases[alias] == canonical
        assert registry.resolve(alias) == canonical
        assert registry.resolve(alias.upper().replace("_", "-")) == canonical


def test_registries_are_exposed_by_name() -> None:
    assert storebridge.KNOWLEDGE_STORES is registries()["knowledge"]
    assert storebridge.CONVERSATION_STORES.kind == "conversation"
    assert storebridge.STATE_STORES.entry_point_group == "storebridge.state_stores"


def test_unknown_name_lists_what_exists() -> None:
    with pytest.raises(ValueError) as info:
        storebridge.KNOWLEDGE_STORES.create("no-such-db")
    assert isinstance(info.value, UnknownBackendError)
    assert "chroma" in str(info.value) and "chromadb->chroma" in str(info.value)


def test_planned_backend_says_so() -> None:
    registry = StoreRegistry("knowledge", "storebridge.test_none", [
        BackendSpec(name="someday", kind="knowledge", target=None, extra="someday"),
    ])
    with pytest.raises(BackendNotImplementedError, match="not shipped"):
        registry.create("someday")


def test_every_builtin_backend_is_shipped() -> None:
    planned = [f"{s.kind}:{s.name}" for registry in (storebridge.KNOWLEDGE_STORES, storebridge.CONVERSATION_STORES,
                                                      storebridge.STATE_STORES) for s in registry.specs()
               if not s.implemented]
    assert planned == []


def test_missing_client_names_the_pip_extra() -> None:
    registry = StoreRegistry("state", "storebridge.test_none", [
        BackendSpec(name="fancy", kind="state", target="fancy_module:Store", extra="fancy",
                    requires=("storebridge_no_such_client_lib",)),
    ])
    with pytest.raises(BackendNotAvailableError) as info:
        registry.create("fancy")
    assert 'pip install "storebridge[fancy]"' in str(info.value)
    assert isinstance(info.value, ImportError)
    assert registry.list_available() == []


class _Dummy:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    def as_sync(self) -> _Dummy:
        return self

    def as_async(self) -> str:
        return "async-face"


def test_register_create_aliases_and_replace() -> None:
    registry = StoreRegistry("state", "storebridge.test_none")
    registry.register("Mine", _Dummy, aliases=["my-alias"], schemes=["mine"])
    assert registry.list_registered() == ["mine"]
    assert registry.list_aliases() == {"my_alias": "mine"}
    made = registry.create("MY-ALIAS", answer=42)
    assert isinstance(made, _Dummy) and made.kwargs == {"answer": 42}
    assert registry.create_async("mine") == "async-face"
    assert registry.from_url("mine://x").kwargs == {"url": "mine://x"}
    with pytest.raises(ConfigurationError, match="already registered"):
        registry.register("mine", _Dummy)
    with pytest.raises(ConfigurationError, match="already registered"):
        registry.register("other", _Dummy, aliases=["my_alias"])
    registry.register("mine", dict, replace=True)
    assert registry.create("mine", a=1) == {"a": 1}
    assert "my_alias" not in registry.list_aliases()
    registry.unregister("mine")
    assert "mine" not in registry


def test_register_import_string_is_lazy() -> None:
    registry = StoreRegistry("state", "storebridge.test_none")
    registry.register("od", "collections:OrderedDict")
    assert registry.create("od", a=1) == {"a": 1}
    registry.register("broken", "storebridge_no_such_module:X")
    with pytest.raises(BackendNotAvailableError):
        registry.create("broken")


def test_register_is_thread_safe() -> None:
    registry = StoreRegistry("state", "storebridge.test_none")
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            registry.register(f"b{i}", _Dummy, aliases=[f"a{i}"])
            assert registry.create(f"a{i}").kwargs == {}
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(registry.list_registered()) == 64 and len(registry.list_aliases()) == 64


class _FakeDist:
    name = "acme-plugin"


def _entry_point(name: str, value: str, group: str) -> metadata.EntryPoint:
    ep = metadata.EntryPoint(name=name, value=value, group=group)
    try:
        return ep._for(_FakeDist())  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover - older importlib.metadata
        return ep


def test_entry_point_plugins_load_and_never_replace_builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    group = "storebridge.test_plugins"
    eps = [_entry_point("acme", "collections:OrderedDict", group), _entry_point("sqlite", "collections:deque", group)]

    def fake_entry_points(**kw: Any) -> list[metadata.EntryPoint]:
        return eps if kw.get("group") == group else []

    monkeypatch.setattr(metadata, "entry_points", fake_entry_points)
    registry = StoreRegistry("state", group, [BackendSpec(name="sqlite", kind="state", target="collections:Counter")])
    with pytest.warns(PluginConflictWarning, match="existing backend wins"):
        names = registry.list_registered()
    assert names == ["acme", "sqlite"]
    assert registry.spec("acme").origin == "plugin:acme-plugin"
    assert registry.create("acme", x=1) == {"x": 1}
    assert registry.load("sqlite").__name__ == "Counter"


def test_url_schemes_pick_backends() -> None:
    conv = storebridge.CONVERSATION_STORES
    assert conv.backend_for_url("sqlite:///x.db") == "sqlite"
    assert conv.backend_for_url("postgresql://u:p@h/db") == "postgres"
    assert conv.backend_for_url("postgresql+asyncpg://h/db") == "async_postgres"
    assert conv.backend_for_url("mysql+aiomysql://h/db") == "async_mysql"
    assert storebridge.STATE_STORES.backend_for_url("redis://localhost:6379/0") == "redis"
    assert storebridge.KNOWLEDGE_STORES.backend_for_url("chroma+http://h:8000") == "chroma"
    with pytest.raises(UnknownBackendError) as info:
        conv.backend_for_url("nosuch://user:hunter2@host/db")
    assert "hunter2" not in str(info.value)


def test_every_builtin_target_imports() -> None:
    for registry in registries().values():
        for spec in registry.specs():
            if spec.target and spec.origin == "builtin" and not spec.missing_requirements():
                assert callable(registry.load(spec.name)), spec.name
