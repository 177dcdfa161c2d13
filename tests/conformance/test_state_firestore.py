"""The state conformance suite on Firestore, against Google's emulator started once for the session by
``tests/servers/firestore.py``, over both native flavours: ``FirestoreStateStore`` (its async face is
its ``AsyncFirestoreStateStore`` twin) and ``AsyncFirestoreStateStore`` (its sync face runs it on
storebridge's event loop). Plus what only Firestore has: the stored document shape, the async twin,
and atomicity across processes (real transactions on the emulator, which serialises them correctly)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from typing import Any

import pytest

from storebridge.testing import StateStoreSuite, StoreFactory
from tests.servers.firestore import FirestoreEmulator, state_store_factory
from tests.servers.firestore import fresh_collection as _collection

pytestmark = pytest.mark.engine("firestore")


class TestFirestoreState(StateStoreSuite):
    @pytest.fixture
    def store_factory(self, firestore_emulator: FirestoreEmulator) -> Iterator[StoreFactory]:
        yield state_store_factory(firestore_emulator)


class TestAsyncFirestoreState(StateStoreSuite):
    @pytest.fixture
    def store_factory(self, firestore_emulator: FirestoreEmulator) -> Iterator[StoreFactory]:
        yield state_store_factory(firestore_emulator, asynchronous=True)


# -- what only Firestore has --------------------------------------------------------------------------------


def test_documents_are_laid_out_as_documented(firestore_emulator: FirestoreEmulator) -> None:
    from google.cloud import firestore

    from storebridge.adapters.firestore import FirestoreStateStore

    collection = _collection()
    store = FirestoreStateStore(f"firestore://{firestore_emulator.project}/{collection}?namespace=app:v1")
    client = firestore.Client(project=firestore_emulator.project)
    try:
        store.set("user/1", "v", ttl=100)
        store.set("..", [1])
        documents = {snapshot.id: snapshot.to_dict() or {} for snapshot in client.collection(collection).stream()}
        assert set(documents) == {"app:v1~user%2F1", "app:v1~%2E%2E"}
        document = documents["app:v1~user%2F1"]
        assert document["ns"] == "app:v1" and document["k"] == "user/1"
        assert document["v"] == b"sv", "the value is exactly encode_value()"
        assert document["expires_at"].timestamp() > 0, "a timestamp, so a TTL policy can use it"
        assert documents["app:v1~%2E%2E"]["expires_at"] is None
        long_key = "k" * 2000
        store.set(long_key, 1)
        long_ids = [s.id for s in client.collection(collection).stream() if (s.to_dict() or {}).get("k") == long_key]
        assert len(long_ids) == 1 and long_ids[0].startswith("=") and len(long_ids[0]) == 65
        assert store.get(long_key) == 1
        assert store.keys(prefix="kk") == [long_key]
    finally:
        store.close()
        client.close()


def test_async_twin_shares_the_store(firestore_emulator: FirestoreEmulator) -> None:
    import asyncio

    from storebridge.adapters.firestore import AsyncFirestoreStateStore, FirestoreStateStore

    store = FirestoreStateStore(project=firestore_emulator.project, collection=_collection())
    twin = store.as_async()
    assert isinstance(twin, AsyncFirestoreStateStore) and twin.as_sync() is store and store.as_async() is twin

    async def use_twin() -> None:
        await twin.set("k", {"a": 1})
        assert await twin.increment("n", 2) == 2
        await twin.close()

    store.set("before", 1)
    asyncio.run(use_twin())
    from storebridge.errors import StoreClosedError

    with pytest.raises(StoreClosedError):
        store.get("k")  # closing the twin closed the sync store too


def _increment_in_another_process(host: str, project: str, collection: str, times: int, start: Any) -> None:
    os.environ["FIRESTORE_EMULATOR_HOST"] = host
    from storebridge.adapters.firestore import FirestoreStateStore

    with FirestoreStateStore(project=project, collection=collection) as store:
        store.exists("warm-up")  # connect before the start line, so the increments really overlap
        start.wait(60)
        for _ in range(times):
            store.increment("n")
            store.increment("f", 0.5)


def test_increment_is_atomic_across_processes(firestore_emulator: FirestoreEmulator) -> None:
    """Processes share no local lock, so their transactions really contend. Kept small: the emulator
    untangles contended transactions only by timing out their locks, which takes a while each time."""
    from storebridge.adapters.firestore import FirestoreStateStore

    collection = _collection()
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    workers = [context.Process(target=_increment_in_another_process,
                               args=(firestore_emulator.host, firestore_emulator.project, collection, 8, start))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(180)
    assert [worker.exitcode for worker in workers] == [0, 0]
    with FirestoreStateStore(project=firestore_emulator.project, collection=collection) as store:
        assert store.get("n") == 16
        assert store.get("f") == 8.0
