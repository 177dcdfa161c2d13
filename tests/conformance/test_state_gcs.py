"""The state conformance suite on Google Cloud Storage, against ``gcp-storage-emulator`` started for the
session by ``tests/servers/gcs.py``, plus the GCS-specific cases the suite cannot express.

What the emulator can and cannot show, plainly:

* The stock emulator **ignores** ``ifGenerationMatch`` (checked below by
  ``test_stock_emulator_ignores_preconditions``). The suite's atomicity case still passes on it, but
  only because threads of one process queue on the store's per-object lock; nothing in that emulator
  would stop a lost update between two processes.
* Cross-process atomicity, which rests on conditional writes, is therefore tested against the same
  emulator run with GCS's documented precondition checks added (``honour_preconditions=True``), with
  several processes and with the local lock taken away so threads really race through 412s.
"""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from storebridge.errors import OperationFailedError
from storebridge.testing import StateStoreSuite, StoreFactory
from tests.servers.gcs import EMULATOR_WORKERS, GCSEmulator, state_store_factory
from tests.servers.gcs import open_state_store as _open

pytestmark = pytest.mark.engine("gcs")


class TestGCSState(StateStoreSuite):
    @pytest.fixture
    def store_factory(self, gcs_emulator: GCSEmulator) -> Iterator[StoreFactory]:
        yield state_store_factory(gcs_emulator)


# -- what only GCS has --------------------------------------------------------------------------------------


def test_stock_emulator_ignores_preconditions(gcs_emulator: GCSEmulator,
                                              gcs_emulator_with_preconditions: GCSEmulator) -> None:
    """The fact the module docstring rests on. If this starts failing, the emulator learnt preconditions
    and the cross-process cases can run on it directly."""
    from google.api_core.exceptions import PreconditionFailed

    for emulator, honours in ((gcs_emulator, False), (gcs_emulator_with_preconditions, True)):
        store = _open(emulator, f"facts/{uuid.uuid4().hex[:8]}")
        try:
            store.set("k", "first")
            blob = store._bucket.blob(store._name("k"))
            if honours:
                with pytest.raises(PreconditionFailed):
                    blob.upload_from_string(b"sneaky", if_generation_match=0)
            else:
                try:
                    blob.upload_from_string(b"sneaky", if_generation_match=0)  # accepted: "must not exist" ignored
                except PreconditionFailed:
                    pytest.fail("gcp-storage-emulator now honours ifGenerationMatch: run the cross-process cases "
                                "on it directly and retire the precondition-enforcing mode of tests/servers/gcs.py")
        finally:
            store.close()


def test_objects_are_laid_out_as_documented(gcs_emulator: GCSEmulator) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage  # type: ignore[attr-defined]

    prefix = f"layout/{uuid.uuid4().hex[:8]}"
    store = _open(gcs_emulator, prefix, namespace="app:v1")
    client = storage.Client(project="p", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": gcs_emulator.endpoint})
    try:
        store.set("user/1", "v", ttl=100)
        store.set("../x", b"raw")
        blobs = {blob.name: blob for blob in client.list_blobs(gcs_emulator.bucket, prefix=prefix + "/")}
        assert set(blobs) == {f"{prefix}/app:v1/user%2F1", f"{prefix}/app:v1/%2E%2E%2Fx"}
        ttl_blob = blobs[f"{prefix}/app:v1/user%2F1"]
        assert float(ttl_blob.metadata["expires_at"]) > 0
        assert ttl_blob.custom_time is not None, "customTime lets a lifecycle rule reclaim expired objects"
        raw = client.bucket(gcs_emulator.bucket).blob(f"{prefix}/app:v1/%2E%2E%2Fx").download_as_bytes()
        assert raw == b"b" + b"raw", "the body is exactly encode_value()"
    finally:
        store.close()
        client.close()


def test_missing_bucket_is_a_typed_error(gcs_emulator: GCSEmulator) -> None:
    from google.api_core.exceptions import NotFound

    from storebridge.adapters.gcs import GCSStateStore

    store = GCSStateStore(bucket="no-such-bucket-here", endpoint=gcs_emulator.endpoint)
    try:
        with pytest.raises(OperationFailedError) as caught:
            store.set("k", "v")
        assert isinstance(caught.value.__cause__, NotFound)
        assert "no-such-bucket-here" in str(caught.value)
    finally:
        store.close()


def test_increment_races_through_preconditions_without_the_local_lock(
        gcs_emulator_with_preconditions: GCSEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a fresh lock per call, threads do race: only the 412-and-retry loop keeps the total exact."""
    from storebridge.adapters.gcs import GCSStateStore

    monkeypatch.setattr(GCSStateStore, "_object_lock", lambda self, name: threading.Lock())
    conflicts = 0
    real_put = GCSStateStore._put

    def counting_put(self: GCSStateStore, *args: object, **kwargs: object) -> None:
        nonlocal conflicts
        try:
            real_put(self, *args, **kwargs)
        except Exception as exc:
            conflicts += type(exc).__name__ == "_Conflict"
            raise

    monkeypatch.setattr(GCSStateStore, "_put", counting_put)
    store = _open(gcs_emulator_with_preconditions, f"race/{uuid.uuid4().hex[:8]}")
    try:
        threads = [threading.Thread(target=lambda: [store.increment("n") for _ in range(15)]) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.get("n") == 90
        assert conflicts > 0, "the threads never conflicted, so this case tested nothing"
    finally:
        store.close()


def _increment_in_another_process(endpoint: str, bucket: str, prefix: str, times: int, start: Any) -> None:
    from storebridge.adapters.gcs import GCSStateStore

    with GCSStateStore(bucket=bucket, prefix=prefix, endpoint=endpoint, max_workers=EMULATOR_WORKERS) as store:
        start.wait(60)  # all processes start together, so their increments really overlap
        for _ in range(times):
            store.increment("n")
            store.increment("f", 0.5)


def test_increment_is_atomic_across_processes(gcs_emulator_with_preconditions: GCSEmulator) -> None:
    emulator = gcs_emulator_with_preconditions
    prefix = f"processes/{uuid.uuid4().hex[:8]}"
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(3)
    workers = [context.Process(target=_increment_in_another_process,
                               args=(emulator.endpoint, emulator.bucket, prefix, 20, start)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    store = _open(emulator, prefix)
    try:
        assert store.get("n") == 60
        assert store.get("f") == 30.0
    finally:
        store.close()
