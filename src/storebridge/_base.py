"""What every store has, whatever its kind: a backend name, capabilities, close(), context managers,
and a way to get the other flavour (``as_async()`` on a sync store, ``as_sync()`` on an async one)."""

from __future__ import annotations

from types import TracebackType
from typing import Any, ClassVar


class SyncStore:
    #: The registry name of the backend, used in error messages.
    backend_name: ClassVar[str] = "custom"
    #: The interface's derived async face, set by each interface module.
    _async_face: ClassVar[type]

    def close(self) -> None:
        """Release connections, pools and files. Safe to call twice."""

    def as_sync(self) -> Any:
        return self

    def as_async(self) -> Any:
        """This store's async face: the same methods, awaited, run in storebridge's thread pool."""
        return type(self)._async_face(self)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncStore:
    backend_name: ClassVar[str] = "custom"
    _sync_face: ClassVar[type]

    async def close(self) -> None:
        """Release connections, pools and files. Safe to call twice."""

    def as_async(self) -> Any:
        return self

    def as_sync(self) -> Any:
        """This store's sync face: the same methods, run on storebridge's background event loop.
        Use one face or the other for a given store object, not both."""
        return type(self)._sync_face(self)

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()
