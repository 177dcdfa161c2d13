"""The in-process ``memory`` backend: a thread-safe dict, optionally snapshotted to a JSON file.

    MemoryStateStore()                                    # private, gone when the process ends
    MemoryStateStore("memory:///state.json?namespace=app")  # loaded now, saved on close()/snapshot()
    shared = MemoryStateStore.new_backing()               # one database, several namespaces
    MemoryStateStore(namespace="a", data=shared); MemoryStateStore(namespace="b", data=shared)
"""

from .store import SNAPSHOT_FORMAT, SNAPSHOT_VERSION, MemoryBacking, MemoryStateStore

__all__ = ["SNAPSHOT_FORMAT", "SNAPSHOT_VERSION", "MemoryBacking", "MemoryStateStore"]
