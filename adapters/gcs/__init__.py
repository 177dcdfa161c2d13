"""The ``gcs`` state backend: one Google Cloud Storage object per key, TTL in object metadata.

    GCSStateStore("gs://my-bucket/app-state?namespace=prod")
    GCSStateStore(bucket="my-bucket", prefix="app-state", namespace="prod", client=my_storage_client)
    GCSStateStore("gs://test-bucket", endpoint="http://127.0.0.1:9023")   # an emulator, anonymously

How TTL, atomic increments, namespaces and ``clear()`` work on GCS: see :mod:`.state`.
"""

from .state import GCSStateStore

__all__ = ["GCSStateStore"]
