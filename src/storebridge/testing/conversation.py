"""Conformance cases for conversation (chat-history) stores: sessions, ordered messages with tool calls,
session ids that are data and never code or paths, big messages, resume, and concurrent writers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import pytest

from ..conversation import ConversationCapabilities
from ..errors import (
    AlreadyExistsError,
    NotSupportedError,
    OperationFailedError,
    SessionNotFoundError,
    ValidationError,
)
from ..models import MAX_SESSION_ID_LENGTH, ConversationMessage, ConversationSession
from ._facade import StoreFacade
from ._suite import (
    OpenStore,
    StoreSuite,
    assert_same_json,
    expect_error,
    run_workers,
    skip_not_declared,
    unique,
)
from .data import HOSTILE_SESSION_IDS, ROUND_TRIP_METADATA

#: Timestamps may lose precision in engines that keep microseconds (or milliseconds).
TIME_TOLERANCE = 2e-3
#: Sleep that separates ``updated_at`` values even on millisecond clocks.
TICK = 0.02
ONE_MB_CONTENT = "kb-🚀-é-" * (1 << 17)  # 1 Mi characters, about 1.6 MB as UTF-8


def message(content: str = "hi", role: str = "user", **fields: Any) -> ConversationMessage:
    return ConversationMessage(role=role, content=content, **fields)


def assert_message(got: ConversationMessage, want: ConversationMessage, session_id: str) -> None:
    """Every field the caller gave comes back; the store adds only ``sequence`` and ``session_id``."""
    where = f"message {want.id!r}"
    assert got.id == want.id, where
    assert got.session_id == session_id, f"{where}: session_id {got.session_id!r}"
    assert got.role == want.role and got.content == want.content, where
    assert_same_json(got.tool_calls, want.tool_calls, f"{where} tool_calls")
    assert got.tool_call_id == want.tool_call_id, f"{where} tool_call_id"
    assert_same_json(got.metadata, want.metadata, f"{where} metadata")
    assert abs(got.created_at - want.created_at) <= TIME_TOLERANCE, f"{where}: created_at {got.created_at}"
    assert isinstance(got.sequence, int) and not isinstance(got.sequence, bool), f"{where}: sequence {got.sequence!r}"


def assert_increasing(messages: Sequence[ConversationMessage]) -> None:
    sequences = [m.sequence for m in messages]
    assert all(isinstance(s, int) for s in sequences), f"sequences not assigned: {sequences}"
    assert all(a < b for a, b in pairwise(sequences)), f"sequences not increasing: {sequences}"  # type: ignore[operator]


def assert_session(got: ConversationSession | None, want: ConversationSession) -> None:
    assert got is not None, f"session {want.session_id!r} is missing"
    assert got.session_id == want.session_id
    assert (got.user_id, got.agent_id, got.name) == (want.user_id, want.agent_id, want.name)
    assert_same_json(got.state, want.state, f"session {want.session_id!r} state")
    assert_same_json(got.metadata, want.metadata, f"session {want.session_id!r} metadata")


class ConversationStoreSuite(StoreSuite):
    """Subclass this and define ``store_factory`` to run every conversation case on your backend."""

    capabilities_type = ConversationCapabilities

    async def probe(self, s: StoreFacade) -> Any:
        return await s.count_messages("probe")

    # -- sessions --------------------------------------------------------------------------------------

    async def test_create_and_get_session(self, store: StoreFacade) -> None:
        created_at = time.time() - 1000.0
        session = ConversationSession(session_id=unique("s_"), user_id="u1", agent_id="a1", name="Ünïcode name",
                                      state={"step": 2}, metadata={"k": [1, {"x": None}]}, created_at=created_at,
                                      updated_at=created_at)
        assert_session(await store.create_session(session), session)
        got = await store.get_session(session.session_id)
        assert_session(got, session)
        assert got is not None and abs(got.created_at - created_at) <= TIME_TOLERANCE, "created_at must be kept"
        assert await store.count_messages(session.session_id) == 0

    async def test_create_duplicate_session_raises(self, store: StoreFacade) -> None:
        session = ConversationSession(session_id=unique("s_"), name="first")
        await store.create_session(session)
        with pytest.raises(AlreadyExistsError):
            await store.create_session(session.replace(name="second"))
        assert_session(await store.get_session(session.session_id), session)

    async def test_get_missing_session_returns_none(self, store: StoreFacade) -> None:
        assert await store.get_session(unique("missing_")) is None

    async def test_update_session(self, store: StoreFacade) -> None:
        old = time.time() - 1000.0
        session = ConversationSession(session_id=unique("s_"), user_id="u", name="before", state={"a": 1},
                                      created_at=old, updated_at=old)
        await store.create_session(session)
        changed = session.replace(user_id="u2", agent_id="agent", name="after", state={"b": [2]}, metadata={"m": True},
                                  created_at=time.time() + 5000.0)
        started = time.time()
        updated = await store.update_session(changed)
        assert_session(updated, changed)
        assert abs(updated.created_at - old) <= TIME_TOLERANCE, "update_session must keep created_at"
        assert updated.updated_at >= started - TIME_TOLERANCE, "update_session must set updated_at to now"
        stored = await store.get_session(session.session_id)
        assert_session(stored, changed)
        assert stored is not None and abs(stored.updated_at - updated.updated_at) <= TIME_TOLERANCE
        assert abs(stored.created_at - old) <= TIME_TOLERANCE
        with pytest.raises(SessionNotFoundError):
            await store.update_session(ConversationSession(session_id=unique("missing_")))

    async def test_upsert_session(self, store: StoreFacade) -> None:
        session = ConversationSession(session_id=unique("s_"), name="one", state={"v": 1})
        assert_session(await store.upsert_session(session), session)
        assert_session(await store.get_session(session.session_id), session)
        second = session.replace(name="two", state={"v": 2})
        assert_session(await store.upsert_session(second), second)
        assert_session(await store.get_session(session.session_id), second)

    async def test_delete_session_cascades(self, store: StoreFacade) -> None:
        sid, other = unique("s_"), unique("s_")
        await store.add_messages(sid, [message("one"), message("two")])
        kept = await store.add_message(other, message("other"))
        assert await store.delete_session(sid) is True
        assert await store.get_session(sid) is None
        assert await store.get_messages(sid) == []
        assert await store.count_messages(sid) == 0
        assert await store.delete_session(sid) is False
        await store.add_message(sid, message("fresh"))
        assert [m.content for m in await store.get_messages(sid)] == ["fresh"], "deleted messages came back"
        assert [m.id for m in await store.get_messages(other)] == [kept.id]

    async def test_list_sessions_newest_updated_first(self, store: StoreFacade) -> None:
        user = unique("u_")
        ids = [unique("s_") for _ in range(3)]
        for sid in ids:
            await store.create_session(ConversationSession(session_id=sid, user_id=user))
            await asyncio.sleep(TICK)
        listed = [s.session_id for s in await store.list_sessions(user_id=user)]
        assert listed == ids[::-1]
        await store.add_message(ids[0], message("touch"))  # adding a message touches updated_at
        await asyncio.sleep(TICK)
        await store.update_session(ConversationSession(session_id=ids[1], user_id=user, name="renamed"))
        listed = [s.session_id for s in await store.list_sessions(user_id=user)]
        assert listed == [ids[1], ids[0], ids[2]]

    async def test_list_sessions_filters_limit_offset(self, store: StoreFacade) -> None:
        u1, u2, a1, a2 = unique("u_"), unique("u_"), unique("a_"), unique("a_")
        owners = {"a": (u1, a1), "b": (u1, a2), "c": (u2, a1), "d": (u1, None)}
        sids = {key: unique(f"s{key}_") for key in owners}
        for key, (user, agent) in owners.items():
            await store.create_session(ConversationSession(session_id=sids[key], user_id=user, agent_id=agent))
            await asyncio.sleep(TICK)

        async def listed(**kwargs: Any) -> list[str]:
            return [s.session_id for s in await store.list_sessions(**kwargs)]

        newest_first = [sids[k] for k in "dba"]
        assert await listed(user_id=u1) == newest_first
        assert await listed(user_id=u1, limit=None) == newest_first
        assert await listed(agent_id=a1) == [sids["c"], sids["a"]]
        assert await listed(user_id=u1, agent_id=a1) == [sids["a"]]
        assert await listed(user_id=u1, limit=2) == newest_first[:2]
        assert await listed(user_id=u1, limit=2, offset=1) == newest_first[1:3]
        assert await listed(user_id=u1, offset=3) == []
        assert await listed(user_id=u1, limit=0) == []
        assert await listed(user_id=unique("nobody_")) == []
        for bad in ({"limit": -1}, {"offset": -1}, {"limit": 1.5}):
            await expect_error(ValidationError, store.list_sessions(user_id=u1, **bad), f"list_sessions(**{bad!r})")

    async def test_session_state_and_metadata_round_trip(self, store: StoreFacade) -> None:
        for i, payload in enumerate(ROUND_TRIP_METADATA):
            session = ConversationSession(session_id=unique("s_"), state=payload,
                                          metadata=ROUND_TRIP_METADATA[-1 - i])
            await store.create_session(session)
            assert_session(await store.get_session(session.session_id), session)

    # -- messages --------------------------------------------------------------------------------------

    async def test_add_messages_assigns_sequence(self, store: StoreFacade) -> None:
        sid = unique("s_")
        first = await store.add_message(sid, message("one", role="system"))
        batch = [message("two"), message("three", role="assistant"), message("four", role="developer")]
        added = await store.add_messages(sid, batch)
        more = await store.add_messages(sid, [message("five", session_id=sid)])
        written = [first, *added, *more]
        assert [m.id for m in added] == [m.id for m in batch], "add_messages returns the messages in order"
        assert_increasing(written)
        assert await store.get_session(sid) is not None, "adding a message creates the session"
        got = await store.get_messages(sid)
        assert [m.sequence for m in got] == [m.sequence for m in written]
        for g, w in zip(got, written, strict=True):
            assert_message(g, w, sid)
        assert await store.count_messages(sid) == 5
        assert await store.add_messages(sid, []) == []

    async def test_add_messages_touches_session(self, store: StoreFacade) -> None:
        sid = unique("s_")
        created = await store.create_session(ConversationSession(session_id=sid, name="keep me", state={"s": 1}))
        await asyncio.sleep(TICK)
        await store.add_message(sid, message())
        touched = await store.get_session(sid)
        assert touched is not None and touched.updated_at > created.updated_at
        assert_session(touched, created)

    async def test_messages_ordered_by_sequence_not_time(self, store: StoreFacade) -> None:
        """Order is insertion order; clocks (and caller-given created_at) do not reorder history."""
        sid = unique("s_")
        base = time.time()
        written = [message(str(i), created_at=base - i) for i in range(5)]
        for m in written:
            await store.add_message(sid, m)
        assert [m.id for m in await store.get_messages(sid)] == [m.id for m in written]
        assert [m.id for m in await store.get_messages(sid, limit=2)] == [m.id for m in written[-2:]]

    async def test_get_messages_limit_keeps_newest(self, store: StoreFacade) -> None:
        sid = unique("s_")
        written = await store.add_messages(sid, [message(f"m{i}") for i in range(10)])
        for limit in (0, 1, 3, 10, 50):
            got = await store.get_messages(sid, limit=limit)
            assert [m.id for m in got] == [m.id for m in written[len(written) - min(limit, 10):]], f"limit={limit}"
        with pytest.raises(ValidationError):
            await store.get_messages(sid, limit=-1)

    async def test_get_messages_before_after(self, store: StoreFacade) -> None:
        sid = unique("s_")
        base = time.time() - 100.0
        written = await store.add_messages(sid, [message(f"m{i}", created_at=base + i) for i in range(10)])

        async def window(**kwargs: Any) -> list[str]:
            return [m.content for m in await store.get_messages(sid, **kwargs)]

        assert await window(after=base + 2, before=base + 6) == ["m3", "m4", "m5"], "bounds are exclusive"
        assert await window(after=base + 7) == ["m8", "m9"]
        assert await window(before=base + 1) == ["m0"]
        assert await window(after=base - 1, limit=2) == ["m8", "m9"]
        assert await window(before=base + 5, limit=2) == ["m3", "m4"]
        assert await window(after=base + 9) == []
        assert len(written) == 10

    async def test_unknown_session_reads_empty(self, store: StoreFacade) -> None:
        sid = unique("missing_")
        assert await store.get_messages(sid) == []
        assert await store.count_messages(sid) == 0
        assert await store.delete_messages(sid) == 0
        assert await store.get_session(sid) is None, "reading must not create a session"

    async def test_delete_messages(self, store: StoreFacade) -> None:
        sid, other = unique("s_"), unique("s_")
        written = await store.add_messages(sid, [message(f"m{i}") for i in range(6)])
        foreign = await store.add_message(other, message("foreign"))
        if not store.capabilities.delete_messages_by_id:
            await expect_error(NotSupportedError, store.delete_messages(sid, [written[1].id]),
                               "delete_messages by id on a backend declaring delete_messages_by_id=False")
            assert await store.count_messages(sid) == 6, "a refused delete removes nothing"
            assert await store.delete_messages(sid) == 6
            assert await store.count_messages(sid) == 0 and await store.count_messages(other) == 1
            return
        assert await store.delete_messages(sid, [written[1].id, written[4].id, "missing"]) == 2
        assert await store.delete_messages(sid, [foreign.id]) == 0, "a message of another session is not deleted"
        assert await store.delete_messages(sid, []) == 0
        assert [m.id for m in await store.get_messages(sid)] == [written[i].id for i in (0, 2, 3, 5)]
        assert await store.delete_messages(sid) == 4
        assert await store.count_messages(sid) == 0
        assert await store.get_session(sid) is not None, "deleting messages keeps the session"
        assert await store.count_messages(other) == 1
        later = await store.add_message(sid, message("after"))
        assert_increasing([written[-1], later])

    async def test_tool_calls_round_trip(self, store: StoreFacade) -> None:
        sid = unique("s_")
        calls = [
            {"id": "call_1", "type": "function",
             "function": {"name": "search", "arguments": json.dumps({"q": "naïve \"quoted\"", "k": 3})}},
            {"id": "call_2", "type": "function", "function": {"name": "noop", "arguments": "{}"}, "extra": [1, None]},
        ]
        written = [
            message("", role="assistant", tool_calls=calls, metadata={"model": "m"}),
            message('{"result": [1, 2]}', role="tool", tool_call_id="call_1"),
            message("done", role="assistant", tool_calls=[]),
        ]
        await store.add_messages(sid, written)
        for got, want in zip(await store.get_messages(sid), written, strict=True):
            assert_message(got, want, sid)

    async def test_message_metadata_round_trip(self, store: StoreFacade) -> None:
        sid = unique("s_")
        written = [message(f"m{i}", metadata=meta) for i, meta in enumerate(ROUND_TRIP_METADATA)]
        await store.add_messages(sid, written)
        for got, want in zip(await store.get_messages(sid), written, strict=True):
            assert_message(got, want, sid)

    async def test_duplicate_message_id_is_atomic(self, store: StoreFacade) -> None:
        sid = unique("s_")
        existing = await store.add_message(sid, message("original"))
        with pytest.raises(AlreadyExistsError):
            await store.add_messages(sid, [message("new"), message("dup", id=existing.id), message("newer")])
        same = message("twice")
        with pytest.raises(AlreadyExistsError):
            await store.add_messages(sid, [same, same])
        got = await store.get_messages(sid)
        assert [m.content for m in got] == ["original"], "nothing of a rejected batch may be written"

    async def test_invalid_messages_rejected(self, store: StoreFacade) -> None:
        sid = unique("s_")
        with pytest.raises(ValidationError):
            ConversationMessage(role="wizard", content="x")
        with pytest.raises(ValidationError):
            await store.add_messages(sid, [message("ok"), message("elsewhere", session_id=unique("s_"))])
        with pytest.raises(ValidationError):
            await store.add_messages(sid, [message("ok"), {"role": "user", "content": "dict"}])
        assert await store.count_messages(sid) == 0, "nothing of a rejected batch may be written"

    # -- session ids are data --------------------------------------------------------------------------

    async def test_hostile_session_ids(self, store: StoreFacade) -> None:
        """SQL, paths, separators, unicode, long ids: each works end to end and stays isolated."""
        user = unique("u_")
        for sid in HOSTILE_SESSION_IDS:  # fixed ids: clear leftovers on a shared database
            await store.delete_session(sid)
        for sid in HOSTILE_SESSION_IDS:
            await store.upsert_session(ConversationSession(session_id=sid, user_id=user, metadata={"sid": sid}))
            await store.add_messages(sid, [message(f"for {sid}"), message("reply", role="assistant")])
        listed = {s.session_id for s in await store.list_sessions(user_id=user, limit=None)}
        assert listed == set(HOSTILE_SESSION_IDS)
        for sid in HOSTILE_SESSION_IDS:
            got = await store.get_messages(sid)
            assert [m.content for m in got] == [f"for {sid}", "reply"], f"session {sid!r} is not isolated"
            assert all(m.session_id == sid for m in got)
            session = await store.get_session(sid)
            assert session is not None and session.metadata == {"sid": sid}
        for i, sid in enumerate(HOSTILE_SESSION_IDS):
            assert await store.delete_session(sid) is True
            for rest in HOSTILE_SESSION_IDS[i + 1:]:
                assert await store.count_messages(rest) == 2, f"deleting {sid!r} touched {rest!r}"
        assert await store.list_sessions(user_id=user) == []

    async def test_invalid_session_ids_rejected(self, store: StoreFacade) -> None:
        for sid in ("", "nul\x00byte", "x" * (MAX_SESSION_ID_LENGTH + 1), None):
            with pytest.raises(ValidationError):
                ConversationSession(session_id=sid)  # type: ignore[arg-type]
            for operation, args in [("add_messages", (sid, [message()])), ("get_messages", (sid,)),
                                    ("get_session", (sid,)), ("delete_session", (sid,)),
                                    ("count_messages", (sid,)), ("delete_messages", (sid,))]:
                await expect_error(ValidationError, getattr(store, operation)(*args), f"{operation}({sid!r})")

    async def test_max_length_session_id(self, store: StoreFacade) -> None:
        sid = ("ü" + unique("") + "x" * MAX_SESSION_ID_LENGTH)[:MAX_SESSION_ID_LENGTH]
        await store.add_message(sid, message("longest id"))
        assert [m.content for m in await store.get_messages(sid)] == ["longest id"]
        assert await store.delete_session(sid) is True

    # -- size, resume, concurrency ---------------------------------------------------------------------

    async def test_large_message_content(self, store: StoreFacade) -> None:
        sid = unique("s_")
        big = message(ONE_MB_CONTENT, role="assistant")
        limit = store.capabilities.max_content_bytes
        if limit is not None and limit < len(ONE_MB_CONTENT.encode("utf-8")):
            with pytest.raises((ValidationError, OperationFailedError)):
                await store.add_messages(sid, [message("small"), big])
            assert await store.count_messages(sid) == 0
            return
        await store.add_message(sid, big)
        [got] = await store.get_messages(sid)
        assert got.content == ONE_MB_CONTENT

    async def test_resume_from_new_store_object(self, store: StoreFacade, open_store: OpenStore) -> None:
        if not store.capabilities.persistent:
            skip_not_declared("persistent=False", "data need not survive closing the store object")
        sid = unique("s_")
        session = ConversationSession(session_id=sid, user_id="u", state={"turn": 3}, metadata={"m": [1]})
        await store.create_session(session)
        written = await store.add_messages(sid, [message("q"), message("a", role="assistant", metadata={"n": 1})])
        await store.close()
        resumed = await open_store()
        assert_session(await resumed.get_session(sid), session)
        got = await resumed.get_messages(sid)
        assert [m.sequence for m in got] == [m.sequence for m in written]
        for g, w in zip(got, written, strict=True):
            assert_message(g, w, sid)
        later = await resumed.add_message(sid, message("after resume"))
        assert_increasing([*written, later])

    async def test_concurrent_appends(self, store: StoreFacade) -> None:
        """Sync face: 8 threads x 50 appends; async face: 20 tasks x 20. Nothing lost, each writer's
        messages in its own order, sequences unique and increasing."""
        sid = unique("s_")

        def append(face: Any, w: int, n: int) -> Any:
            return face.add_message(sid, message(f"{w}:{n}", metadata={"w": w, "n": n}))

        writers, per_writer = await run_workers(store, append, threads=(8, 50), tasks=(20, 20))
        got = await store.get_messages(sid)
        assert len(got) == writers * per_writer == await store.count_messages(sid)
        assert len({m.id for m in got}) == len(got)
        assert_increasing(got)
        for w in range(writers):
            order = [m.metadata["n"] for m in got if m.metadata["w"] == w]
            assert order == list(range(per_writer)), f"writer {w}'s messages are out of order: {order}"


__all__ = ["ConversationStoreSuite", "assert_message", "message"]
