"""The ``firestore`` state backend: one Firestore document per key, sync and native async.

    FirestoreStateStore("firestore://my-project/app_state?namespace=prod")
    FirestoreStateStore(project="my-project", collection="app_state", client=my_firestore_client)
    AsyncFirestoreStateStore("firestore://my-project/app_state")   # on firestore.AsyncClient

The emulator is used through ``FIRESTORE_EMULATOR_HOST``. How TTL (and a production TTL policy),
atomic increments, namespaces and ``clear()`` work on Firestore: see :mod:`.state`.
"""

from .state import AsyncFirestoreStateStore, FirestoreStateStore

__all__ = ["AsyncFirestoreStateStore", "FirestoreStateStore"]
