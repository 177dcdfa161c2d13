"""Which backends the conformance suite runs on here, and how to open a test database for each.

Each :class:`Engine` row names a backend by its registry name (the test id: ``test_filter_in[sqlite-sync]``)
and gives a builder ``(tmp_path, request) -> store_factory``. A store_factory returns a NEW native store
object over the SAME test database on every call (state: also takes ``namespace=``). Adapters are
imported inside the builders, so one missing adapter never breaks collection of the others.

Adding a server-backed engine (ENGINES.md says which run on these machines)::

    def _postgres_conversation(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
        from storebridge.adapters.postgres import PostgresConversationStore
        url = engine_url("postgres", default="postgresql://127.0.0.1:5432/test")  # a server that runs here
        prefix = unique_prefix()            # one set of tables per test on the shared server
        request.addfinalizer(lambda: drop_tables(url, prefix))
        return lambda: PostgresConversationStore(url, table_prefix=prefix)

    Engine("conversation", "postgres", _postgres_conversation, marks=(pytest.mark.engine("postgres"),))

An engine that cannot run here (no server in reach) leaves out ``default``: without
``STOREBRIDGE_TEST_<NAME>_URL`` its cases skip with the ``NO_ENGINE_HERE`` marker CI accepts.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from storebridge.testing import StoreFactory
from tests.conftest import NO_ENGINE_HERE

#: The one chDB directory of this process (chDB cannot open a second one); every chDB test shares it.
CHDB_DIR = os.path.join(tempfile.gettempdir(), f"storebridge-chdb-{os.getpid()}")
atexit.register(shutil.rmtree, CHDB_DIR, True)

Kind = Literal["knowledge", "conversation", "state"]
Builder = Callable[[Path, pytest.FixtureRequest], StoreFactory]


@dataclass(frozen=True)
class Engine:
    kind: Kind
    #: The backend's registry name; it leads the test id.
    name: str
    build: Builder
    #: Distinguishes two setups of one backend (id ``memory-snapshot``).
    variant: str = ""
    marks: Sequence[Any] = field(default_factory=tuple)

    @property
    def id(self) -> str:
        return f"{self.name}-{self.variant}" if self.variant else self.name

    def param(self) -> Any:
        return pytest.param(self, id=self.id, marks=tuple(self.marks))


def engine_url(name: str, default: str | None = None) -> str:
    """``STOREBRIDGE_TEST_<NAME>_URL``, else ``default`` (a server ENGINES.md says runs here); with
    neither, skip with the marker that tells CI no such engine can run on this machine."""
    variable = f"STOREBRIDGE_TEST_{name.upper()}_URL"
    url = os.environ.get(variable) or default
    if not url:
        pytest.skip(f"{NO_ENGINE_HERE} set {variable} to run the {name!r} conformance cases against a live engine")
    return url


def unique_prefix(stem: str = "t") -> str:
    """A fresh table prefix, so concurrent test runs on one shared server never meet."""
    return f"{stem}{uuid.uuid4().hex[:10]}_"


# -- builders of the embedded defaults ---------------------------------------------------------------------


def _sqlite_knowledge(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    from storebridge.adapters.sqlite.knowledge import SQLiteKnowledgeStore

    return lambda: SQLiteKnowledgeStore(path=str(tmp_path / "k.db"))


def _sqlite_conversation(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    from storebridge.adapters.sqlite.conversation import SQLiteConversationStore

    return lambda: SQLiteConversationStore(path=str(tmp_path / "c.db"))


def _async_sqlite_conversation(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    from storebridge.adapters.sqlite.conversation import async_sqlite_store

    return lambda: async_sqlite_store(path=str(tmp_path / "c.db"))


def _json_conversation(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    from storebridge.adapters.jsonfiles import JSONConversationStore

    return lambda: JSONConversationStore(directory=str(tmp_path / "sessions"))


def _memory_state(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    from storebridge.adapters.memory import MemoryStateStore

    shared = MemoryStateStore.new_backing()  # one in-process "database" for every object of the test
    return lambda namespace="": MemoryStateStore(namespace=namespace, data=shared)


def _memory_snapshot_state(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    from storebridge.adapters.memory import MemoryStateStore

    shared = MemoryStateStore.new_backing(tmp_path / "state.json")  # persistent: reloaded from the file
    return lambda namespace="": MemoryStateStore(namespace=namespace, data=shared)


def _sqlite_state(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    from storebridge.adapters.sqlite.state import SQLiteStateStore

    return lambda namespace="": SQLiteStateStore(path=str(tmp_path / "s.db"), namespace=namespace)


ENGINES: list[Engine] = [
    Engine("knowledge", "sqlite", _sqlite_knowledge),
    Engine("conversation", "sqlite", _sqlite_conversation),
    Engine("conversation", "async_sqlite", _async_sqlite_conversation),
    Engine("conversation", "json", _json_conversation),
    Engine("state", "memory", _memory_state),
    Engine("state", "memory", _memory_snapshot_state, variant="snapshot"),
    Engine("state", "sqlite", _sqlite_state),
]


# -- builders of the server-backed engines that run here (their servers: ``tests/servers/``) --------------------
#
# Each gets its session's server through ``request.getfixturevalue`` (the fixtures are plugins of
# ``tests/conftest.py``, so any test can) and uses the same store factory as its own conformance module.


def _redis_state(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    from tests.servers.redis import state_store_factory

    return state_store_factory(request.getfixturevalue("redis_server"), request)


def _dynamodb_state(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    from tests.servers.moto import dynamodb_state_factory

    # One table per test module (``dynamodb_table`` is module-scoped), emptied of the test's namespaces after it.
    return dynamodb_state_factory(request.getfixturevalue("moto_server"), request.getfixturevalue("dynamodb_table"),
                                  request)


def _gcs_state(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    from tests.servers.gcs import state_store_factory

    return state_store_factory(request.getfixturevalue("gcs_emulator"))  # emptied after each test


def _firestore_state(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    from tests.servers.firestore import state_store_factory

    return state_store_factory(request.getfixturevalue("firestore_emulator"))


# -- knowledge backends with their own conformance modules (``tests/conformance/test_knowledge_<name>.py``) ----


def _qdrant_knowledge(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    pytest.importorskip("qdrant_client", reason=f"{NO_ENGINE_HERE} qdrant-client is not installed")
    from storebridge.adapters.qdrant import QdrantKnowledgeStore

    return lambda: QdrantKnowledgeStore(f"qdrant+local:///{tmp_path / 'qdrant'}")  # local path mode


def _lancedb_knowledge(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    pytest.importorskip("lancedb", reason=f"{NO_ENGINE_HERE} lancedb is not installed")
    from storebridge.adapters.lancedb import LanceDBKnowledgeStore

    return lambda: LanceDBKnowledgeStore(f"lancedb:///{tmp_path / 'lance'}")


def _chroma_knowledge(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    pytest.importorskip("chromadb", reason="chromadb is needed for these tests (pip install 'storebridge[chroma]')")
    from storebridge.adapters.chroma import ChromaKnowledgeStore

    path = str(tmp_path / "chroma")  # embedded PersistentClient
    return lambda: ChromaKnowledgeStore(path=path)


def _milvus_knowledge(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    pytest.importorskip("pymilvus", reason="pymilvus is needed for these tests (pip install 'storebridge[milvus]')")
    from storebridge.adapters.milvus import MilvusKnowledgeStore

    path = str(tmp_path / "milvus.db")  # milvus-lite
    return lambda: MilvusKnowledgeStore(uri=path)


def _pgvector_knowledge(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    from tests.servers.pgvector import knowledge_store_factory

    return knowledge_store_factory(request.getfixturevalue("pgvector_server"), request)


def _redis_knowledge(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    from tests.servers.redis_search import knowledge_store_factory

    # FLAT index (exact); one key prefix per test, its collections dropped afterwards.
    return knowledge_store_factory(request.getfixturevalue("redis_search_server"), request)


def _clickhouse_knowledge(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    """chDB by default (``STOREBRIDGE_TEST_CLICKHOUSE_URL`` names a server instead); chDB opens one directory
    per process, so every test shares :data:`CHDB_DIR` with a database of its own, dropped afterwards."""
    pytest.importorskip("chdb", reason=f"{NO_ENGINE_HERE} chdb is not installed")
    from storebridge.adapters.clickhouse import ClickHouseKnowledgeStore
    from storebridge.adapters.clickhouse._query import Params

    url = engine_url("clickhouse", default=f"chdb:///{CHDB_DIR}")
    database = "t_" + uuid.uuid4().hex[:12]

    def drop() -> None:
        with ClickHouseKnowledgeStore(url, database=database) as store:
            store._engine.execute(f"DROP DATABASE IF EXISTS `{database}`", Params())

    request.addfinalizer(drop)
    return lambda: ClickHouseKnowledgeStore(url, database=database)


def _surrealdb_knowledge(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    from storebridge.adapters.surrealdb.knowledge import SurrealDBKnowledgeStore

    return lambda: SurrealDBKnowledgeStore(f"surrealkv:///{tmp_path}/kv", namespace="test", database="know")


def _lightrag_knowledge(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    pytest.importorskip("lightrag", reason=f"{NO_ENGINE_HERE} lightrag-hku is not installed")
    from storebridge.adapters.lightrag import LightRAGKnowledgeStore
    from storebridge.embedders import HashEmbedder
    from tests.unit.test_lightrag_knowledge import fake_llm

    return lambda: LightRAGKnowledgeStore(f"lightrag:///{tmp_path / 'rag'}", llm_model_func=fake_llm,
                                          embedding_factory=HashEmbedder, lightrag_options={"max_parallel_insert": 8})


#: Server-backed engines that run on these machines, for tests that run over "every backend" of a kind (the
#: framework integrations: ``tests/integrations/``). Not in :data:`ENGINES`: each has its own conformance module
#: (``tests/conformance/test_state_<name>.py``, both native flavours plus what only it has), so listing it
#: there would run the suite on it twice.
SERVER_ENGINES: list[Engine] = [
    Engine("state", "redis", _redis_state, marks=(pytest.mark.engine("redis"),)),
    Engine("state", "dynamodb", _dynamodb_state, marks=(pytest.mark.engine("dynamodb"),)),
    Engine("state", "gcs", _gcs_state, marks=(pytest.mark.engine("gcs"),)),
    Engine("state", "firestore", _firestore_state, marks=(pytest.mark.engine("firestore"),)),
    Engine("knowledge", "qdrant", _qdrant_knowledge),
    Engine("knowledge", "lancedb", _lancedb_knowledge),
    Engine("knowledge", "chroma", _chroma_knowledge),
    Engine("knowledge", "milvus", _milvus_knowledge),
    Engine("knowledge", "pgvector", _pgvector_knowledge, marks=(pytest.mark.engine("pgvector"),)),
    Engine("knowledge", "redis", _redis_knowledge, marks=(pytest.mark.engine("redis_vector"),)),
    Engine("knowledge", "clickhouse", _clickhouse_knowledge),
    Engine("knowledge", "surrealdb_vector", _surrealdb_knowledge),
    Engine("knowledge", "lightrag", _lightrag_knowledge),
]


def engine_params(kind: Kind) -> list[Any]:
    """``pytest.param`` per engine of ``kind``, id = registry name, for a parametrized ``store_factory``."""
    return [engine.param() for engine in ENGINES if engine.kind == kind]


def build_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """The body of every conformance module's ``store_factory`` fixture."""
    engine: Engine = request.param
    return engine.build(tmp_path, request)


__all__ = ["ENGINES", "SERVER_ENGINES", "Engine", "build_factory", "engine_params", "engine_url", "unique_prefix"]
