"""What both framework bridges share: an operation is written once as a coroutine over one face of a
store, then run on the async face (awaited) or on the sync face (stepped inline, never suspending)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, Generic, TypeVar

from ..errors import ConfigurationError

T = TypeVar("T")


def run_inline(operation: Coroutine[Any, Any, T]) -> T:
    """Run an operation written as a coroutine over a *sync* face to its result, inline.

    Its I/O calls are plain blocking calls, so it finishes on the first step without suspending: no event
    loop, no thread, safe inside a running loop. (A suspension would mean an async call slipped into a
    sync path, a bug; it is refused rather than blocked on.)"""
    try:
        operation.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    operation.close()
    raise RuntimeError("internal error: a sync storebridge operation tried to suspend")


class Face:
    """One face of a store behind awaitable calls: the async face's coroutines are awaited, the sync
    face's results are returned as they are."""

    def __init__(self, face: Any, is_async: bool) -> None:
        self.face = face
        self.is_async = is_async

    @property
    def capabilities(self) -> Any:
        return self.face.capabilities

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self.face, method)(*args, **kwargs)
        return await result if self.is_async else result


F = TypeVar("F", bound=Face)


class Faces(Generic[F]):
    """Both faces of one store, each made on first use (so code that only awaits never binds an async
    store to the bridge's background loop)."""

    def __init__(self, store: Any, make: Callable[[Any, bool], F] = Face) -> None:  # type: ignore[assignment]
        if not (callable(getattr(store, "as_sync", None)) and callable(getattr(store, "as_async", None))):
            raise ConfigurationError(
                f"expected a storebridge store (with as_sync()/as_async()), got {type(store).__name__}"
            )
        self.store = store
        self._make = make
        self._faces: dict[bool, F] = {}

    def get(self, is_async: bool) -> F:
        face = self._faces.get(is_async)
        if face is None:
            face = self._faces[is_async] = self._make(
                self.store.as_async() if is_async else self.store.as_sync(), is_async
            )
        return face

    def run(self, operation: Callable[[F], Coroutine[Any, Any, T]]) -> T:
        return run_inline(operation(self.get(False)))

    def arun(self, operation: Callable[[F], Coroutine[Any, Any, T]]) -> Awaitable[T]:
        return operation(self.get(True))


def reject_unknown_kwargs(kwargs: Mapping[str, Any], where: str, allowed: Iterable[str] = ()) -> None:
    """The frameworks pass ``**kwargs`` everywhere; an option we do not know is a mistake, not something
    to drop silently."""
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"{where}() got unexpected keyword argument(s): {', '.join(unknown)}")
