"""Calls into a wrapped LlamaIndex store, with its failures turned into storebridge's typed errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from storebridge.errors import NotSupportedError, OperationFailedError, StorebridgeError


def call_wrapped(owner: str, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``: storebridge errors pass through, ``NotImplementedError`` becomes
    ``NotSupportedError`` naming the missing operation, anything else ``OperationFailedError`` (the
    original kept as ``__cause__``)."""
    try:
        return call(*args, **kwargs)
    except StorebridgeError:
        raise
    except NotImplementedError as exc:
        raise NotSupportedError(f"the wrapped {owner} does not implement {what}: {exc}") from exc
    except Exception as exc:
        raise OperationFailedError(f"the wrapped {owner} failed in {what}: {exc}") from exc


__all__ = ["call_wrapped"]
