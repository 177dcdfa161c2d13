"""Rows <-> models, once for every SQL engine.

The row layout and the converters are the SQLite store's (same columns, same order, same JSON text),
imported from there rather than copied, so a message reads back identically from every engine. What
is added here is what only a server engine needs: the session key columns of the MySQL family, and
JSON text JSONB cannot round-trip as written (see :func:`dump_json_for`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from storebridge.adapters.sqlite.conversation import (
    _message_from_row,
    _sequenced,
    _session_from_row,
    check_message_ids,
    check_time_bound,
    dump_json,
)
from storebridge.models import ConversationMessage, ConversationSession

from .dialects import Dialect

#: Column lists, in the order the converters take them.
SESSION_COLUMNS = "session_id, user_id, agent_id, name, state, metadata, created_at, updated_at"
MESSAGE_COLUMNS = "id, session_id, role, content, tool_calls, tool_call_id, metadata, created_at, sequence"
#: Message columns as inserted (``sequence`` last, added per row once the batch's numbers are reserved).
MESSAGE_INSERT_COLUMNS = "session_id, id, role, content, tool_calls, tool_call_id, metadata, created_at, sequence"

message_from_row = _message_from_row
session_from_row = _session_from_row
sequenced = _sequenced

_EXPONENT = re.compile(r"\d[eE][-+]?\d")


def _positional(value: float) -> str:
    """``1e+20`` -> ``100000000000000000000.0``: the same float, in a form JSONB keeps a float."""
    text = format(Decimal(repr(value)), "f")
    return text if "." in text else text + ".0"


def dump_jsonb(value: Any, what: str) -> str:
    """JSON text for a JSONB column. JSONB stores numbers as ``numeric`` and prints them without an
    exponent, so ``1e20`` (a float) would come back as ``100000000000000000000`` (an int) and the
    caller's types would change. Floats written with an exponent are written positionally with a
    ``.0`` instead; everything else is :func:`dump_json`'s text. The slow path runs only when the fast
    text has an exponent-like sequence."""
    text = dump_json(value, what)
    if _EXPONENT.search(text) is None:
        return text
    marker = uuid.uuid4().hex
    numbers: list[str] = []

    def swap(item: Any) -> Any:
        if isinstance(item, float) and "e" in repr(item):
            numbers.append(_positional(item))
            return f"{marker}{len(numbers) - 1}"
        if isinstance(item, Mapping):
            return {key: swap(v) for key, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [swap(v) for v in item]
        return item

    text = dump_json(swap(value), what)
    for i, number in enumerate(numbers):
        text = text.replace(f'"{marker}{i}"', number, 1)
    return text


def dump_json_for(dialect: Dialect, value: Any, what: str) -> str:
    return dump_jsonb(value, what) if dialect.jsonb else dump_json(value, what)


def session_params(dialect: Dialect, session: ConversationSession) -> tuple[Any, ...]:
    """Parameters of an INSERT of ``(key columns, SESSION_COLUMNS)``."""
    return (*dialect.key_params(session.session_id), session.session_id, session.user_id, session.agent_id,
            session.name, dump_json_for(dialect, session.state, "session state"),
            dump_json_for(dialect, session.metadata, "session metadata"), session.created_at, session.updated_at)


def message_params(dialect: Dialect, session_id: str,
                   messages: Sequence[ConversationMessage]) -> list[tuple[Any, ...]]:
    """Parameters of the INSERT of ``(key columns, MESSAGE_INSERT_COLUMNS)`` without the trailing
    ``sequence``: JSON is encoded (and refused) before any transaction starts; the numbers are added
    once they are reserved."""
    key = dialect.key_params(session_id)
    return [(*key, session_id, m.id, m.role, m.content,
             None if m.tool_calls is None else dump_json_for(dialect, m.tool_calls, "tool_calls"),
             m.tool_call_id, dump_json_for(dialect, m.metadata, "message metadata"), m.created_at)
            for m in messages]


__all__ = [
    "MESSAGE_COLUMNS",
    "MESSAGE_INSERT_COLUMNS",
    "SESSION_COLUMNS",
    "check_message_ids",
    "check_time_bound",
    "dump_json_for",
    "dump_jsonb",
    "message_from_row",
    "message_params",
    "sequenced",
    "session_from_row",
    "session_params",
]
