"""``StorebridgeByteStore`` over every state backend: LangChain's standard ``BaseStore`` suites (sync and
async) unmodified, ``CacheBackedEmbeddings`` on top, key prefixes and TTL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_tests.integration_tests import BaseStoreAsyncTests, BaseStoreSyncTests

from storebridge.errors import ValidationError
from storebridge.integrations.langchain import StorebridgeByteStore
from storebridge.testing import unique
from tests.integrations.test_langchain_backends import backend_params, close_backend, open_backend

pytestmark = [pytest.mark.asyncio,
              pytest.mark.filterwarnings("ignore:The test <Function:pytest.PytestWarning")]

THREE_VALUES = (b"foo", b"\x00\xffbar", "bäz 🚀".encode())


def _byte_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorebridgeByteStore]:
    """An empty byte store: a fresh namespace of a new store object over the backend's test database."""
    native, face = open_backend(request, tmp_path, namespace=unique("lc", 8))
    try:
        yield StorebridgeByteStore(face)
    finally:
        close_backend(native)


class TestStandardByteStoreSync(BaseStoreSyncTests[bytes]):
    @pytest.fixture(params=backend_params("state"))
    def kv_store(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorebridgeByteStore]:  # type: ignore[override]
        yield from _byte_store(request, tmp_path)

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:  # type: ignore[override]
        return THREE_VALUES


class TestStandardByteStoreAsync(BaseStoreAsyncTests[bytes]):
    @pytest.fixture(params=backend_params("state"))
    def kv_store(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorebridgeByteStore]:  # type: ignore[override]
        yield from _byte_store(request, tmp_path)

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:  # type: ignore[override]
        return THREE_VALUES


@pytest.fixture(params=backend_params("state"))
def face(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    native, store_face = open_backend(request, tmp_path, namespace=unique("lc", 8))
    try:
        yield store_face
    finally:
        close_backend(native)


class CountingEmbeddings(DeterministicFakeEmbedding):
    calls: int = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += len(texts)
        return super().embed_documents(texts)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += len(texts)
        return super().embed_documents(texts)


async def test_cache_backed_embeddings(face: Any) -> None:
    """Embeddings are computed once and served from the storebridge state store afterwards."""
    cache_module = pytest.importorskip("langchain_classic.embeddings")
    underlying = CountingEmbeddings(size=8)
    store = StorebridgeByteStore(face, key_prefix="emb:")
    cached = cache_module.CacheBackedEmbeddings.from_bytes_store(underlying, store, namespace="fake-8",
                                                                 key_encoder="sha256")
    first = cached.embed_documents(["alpha", "beta"])
    assert underlying.calls == 2
    assert cached.embed_documents(["beta", "alpha", "gamma"]) == [first[1], first[0], underlying.embed_query("gamma")]
    assert underlying.calls == 3  # only "gamma" was new
    assert await cached.aembed_documents(["alpha", "gamma"]) == [first[0], underlying.embed_query("gamma")]
    assert underlying.calls == 3
    keys = list(store.yield_keys())
    assert len(keys) == 3 and all(key.startswith("fake-8") for key in keys)
    assert sorted(face.as_sync().keys()) == sorted("emb:" + key for key in keys)


async def test_prefix_ttl_and_types(face: Any) -> None:
    plain = StorebridgeByteStore(face)
    prefixed = StorebridgeByteStore(face, key_prefix="p:")
    ttl = 1.0  # long enough for the checks below on a server-backed store (moto: ~5-20 ms per request)
    expiring = StorebridgeByteStore(face, key_prefix="t:", ttl=ttl)
    plain.mset([("k", b"plain")])
    prefixed.mset([("k", b"prefixed"), ("k2", b"2")])
    await expiring.amset([("k", b"soon gone")])
    expires = time.monotonic() + ttl
    assert plain.mget(["k"]) == [b"plain"] and prefixed.mget(["k", "k2"]) == [b"prefixed", b"2"]
    assert sorted(plain.yield_keys()) == ["k", "p:k", "p:k2", "t:k"]
    assert sorted(prefixed.yield_keys(prefix="k")) == ["k", "k2"]
    assert [k async for k in prefixed.ayield_keys(prefix="k2")] == ["k2"]
    assert 0 < face.as_sync().ttl("t:k") <= ttl
    await asyncio.sleep(max(0.0, expires - time.monotonic()) + 0.2)
    assert await expiring.amget(["k"]) == [None]
    with pytest.raises(ValidationError):
        plain.mset([("text", "not bytes")])  # type: ignore[list-item]
    face.as_sync().set("a-string", "text")
    with pytest.raises(ValidationError, match="not bytes"):
        plain.mget(["a-string"])
    with pytest.raises(ValidationError):
        plain.mget([""])
