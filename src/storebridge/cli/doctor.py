"""``storebridge doctor``: a real round trip on each configured store, with the latency of every step.

Each check works in a scratch place of its own (a session ``storebridge-doctor-<random>``, a collection
``storebridge_doctor_<random>``, state keys under ``storebridge-doctor:<random>:``): write, read back and
compare field by field, delete and check it is gone. Cleanup runs even after a failed step, and a
failed cleanup is reported too. Nothing printed contains a password: URLs and error texts are masked.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from ._output import (
    console,
    default_url,
    echo_json,
    mask,
    open_store,
    parse_options,
    show_url,
    store_options_option,
)

if TYPE_CHECKING:
    from storebridge.registry import Kind


@dataclass
class Step:
    kind: str
    target: str
    name: str
    ok: bool
    ms: float
    detail: str = ""
    skipped: bool = False


@dataclass
class Check:
    """The steps of one store's round trip, timed; a failed step stops the rest but not the cleanup."""

    kind: str
    target: str
    steps: list[Step] = field(default_factory=list)
    failed: bool = False

    def run(self, name: str, action: Callable[[], Any], *, cleanup: bool = False) -> Any:
        if self.failed and not cleanup:
            self.steps.append(Step(self.kind, self.target, name, False, 0.0, "an earlier step failed", skipped=True))
            return None
        start = time.perf_counter()
        try:
            result = action()
        except Exception as exc:  # noqa: BLE001 - every failure is reported as this step's result
            self.steps.append(Step(self.kind, self.target, name, False, (time.perf_counter() - start) * 1000,
                                   _describe(exc)))
            self.failed = True
            return None
        self.steps.append(Step(self.kind, self.target, name, True, (time.perf_counter() - start) * 1000))
        return result


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    text = f"{type(exc).__name__}: {text}" if type(exc).__module__ == "builtins" else text
    return " ".join(mask(text).split())


class Mismatch(AssertionError):
    """A value read back differs from the one written."""


def _same(what: str, wrote: Any, read: Any) -> None:
    if wrote != read:
        raise Mismatch(f"{what} read back differs: wrote {wrote!r}, read {read!r}")


def _token() -> str:
    return os.urandom(5).hex()


# -- one round trip per kind ---------------------------------------------------------------------------------

def check_conversation(check: Check, store: Any) -> None:
    from storebridge.models import ConversationMessage

    session_id = f"storebridge-doctor-{_token()}"
    call = {"id": "call_doctor", "type": "function", "function": {"name": "ping", "arguments": '{"n": 1}'}}
    wrote = [
        ConversationMessage(role="user", content="doctor: ping \u00e9\u2603", metadata={"n": 1.5, "tags": ["a"]}),
        ConversationMessage(role="assistant", content="", tool_calls=[call]),
        ConversationMessage(role="tool", content="pong", tool_call_id="call_doctor"),
    ]
    check.run("write", lambda: store.add_messages(session_id, wrote))

    def read() -> None:
        got = store.get_messages(session_id)
        _same("message count", len(wrote), len(got))
        for a, b in zip(wrote, got):
            for name in ("id", "role", "content", "tool_calls", "tool_call_id", "metadata", "created_at"):
                _same(f"message {name}", getattr(a, name), getattr(b, name))
        if [m.sequence for m in got] != sorted(m.sequence for m in got if m.sequence is not None):
            raise Mismatch("messages did not come back in append order")

    check.run("read back", read)

    strict = not check.failed  # after a failed write there may be nothing to delete

    def delete() -> None:
        if not store.delete_session(session_id) and strict:
            raise Mismatch("delete_session found no session to delete")
        if store.get_session(session_id) is not None or store.count_messages(session_id):
            raise Mismatch("the session is still there after delete_session")

    check.run("delete", delete, cleanup=True)


def check_knowledge(check: Check, store: Any) -> None:
    from storebridge.models import KnowledgeDocument

    collection = f"storebridge_doctor_{_token()}"
    docs = [KnowledgeDocument(id="a", content="doctor alpha", embedding=[1.0, 0.0, 0.0, 0.5],
                              metadata={"n": 1, "tag": "x"}),
            KnowledgeDocument(id="b", content="doctor beta", embedding=[0.0, 1.0, 0.0, 0.5],
                              metadata={"n": 2, "tag": "y"})]
    created = check.run("create collection", lambda: store.create_collection(collection, 4, "cosine"))
    check.run("write", lambda: store.upsert(collection, docs))

    def read() -> None:
        got = store.get(collection, ["a", "b"], include_embeddings=False)
        _same("document ids", ["a", "b"], [d.id for d in got])
        for a, b in zip(docs, got):
            _same("document content", a.content, b.content)
            _same("document metadata", a.metadata, b.metadata)
        hits = store.search(collection, [0.9, 0.1, 0.0, 0.5], k=1)
        _same("nearest document", "a", hits[0].id if hits else None)

    check.run("read back + search", read)
    if created is not None or not check.failed:
        def drop() -> None:
            if not store.drop_collection(collection):
                raise Mismatch("drop_collection found no collection to drop")
            if store.has_collection(collection):
                raise Mismatch("the collection is still there after drop_collection")

        check.run("delete", drop, cleanup=True)


def check_state(check: Check, store: Any) -> None:
    prefix = f"storebridge-doctor:{_token()}:"
    values = {f"{prefix}json": {"n": 1, "list": [1, "two", None]}, f"{prefix}bytes": b"\x00\xffdoctor",
              f"{prefix}text": "doctor \u00e9"}

    def write() -> None:
        store.set_many(values, ttl=300)

    check.run("write", write)

    def read() -> None:
        got = store.get_many(list(values))
        _same("values", values, got)
        _same("keys", sorted(values), store.keys(prefix=prefix))

    check.run("read back", read)

    strict = not check.failed  # after a failed write there may be nothing to delete

    def delete() -> None:
        removed = store.delete_many(list(values))
        if strict:
            _same("deleted key count", len(values), removed)
        if store.keys(prefix=prefix):
            raise Mismatch("keys are still there after delete_many")

    check.run("delete", delete, cleanup=True)


CHECKS: dict[str, Callable[[Check, Any], None]] = {
    "conversation": check_conversation, "knowledge": check_knowledge, "state": check_state,
}


def run_checks(urls: dict[Kind, str | None], options: dict[str, Any]) -> list[Check]:
    checks = []
    for kind, url in urls.items():
        check = Check(kind, show_url(url))
        store = check.run("connect", lambda kind=kind, url=url: open_store(kind, url, options))  # type: ignore[misc]
        if store is not None:
            CHECKS[kind](check, store)
            check.run("close", store.close, cleanup=True)
        checks.append(check)
    return checks


@click.command()
@click.option("--conversation-url", help="Default: $STOREBRIDGE_CONVERSATION_URL.")
@click.option("--knowledge-url", help="Default: $STOREBRIDGE_KNOWLEDGE_URL.")
@click.option("--state-url", help="Default: $STOREBRIDGE_STATE_URL.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@store_options_option()
def doctor(conversation_url: str | None, knowledge_url: str | None, state_url: str | None, as_json: bool,
           options: tuple[str, ...]) -> None:
    """Connect to each store and run a real write / read back / delete round trip, timing each step.

    With no URL given (options or environment), the three embedded SQLite defaults are checked.
    Exits with 1 if any step fails.
    """
    given: dict[Kind, str | None] = {
        "conversation": default_url("conversation", conversation_url),
        "knowledge": default_url("knowledge", knowledge_url),
        "state": default_url("state", state_url),
    }
    urls: dict[Kind, str | None] = {k: u for k, u in given.items() if u} or dict(given)
    checks = run_checks(urls, parse_options(options))
    steps = [s for c in checks for s in c.steps]
    failed = [c for c in checks if c.failed]
    if as_json:
        echo_json({"ok": not failed, "checks": [
            {"kind": c.kind, "target": c.target, "ok": not c.failed,
             "steps": [{"step": s.name, "ok": s.ok, "skipped": s.skipped, "ms": round(s.ms, 3), "detail": s.detail}
                       for s in c.steps]}
            for c in checks]})
    else:
        from rich.table import Table
        from rich.text import Text

        table = Table(title="storebridge doctor")
        for column in ("kind", "store", "step", "ms", "result"):
            table.add_column(column, overflow="fold", justify="right" if column == "ms" else "left")
        for s in steps:
            if s.ok:
                result = Text("ok", style="green")
            elif s.skipped:
                result = Text(f"skipped: {s.detail}", style="yellow")
            else:
                result = Text(f"FAILED: {s.detail}", style="red")
            table.add_row(Text(s.kind), Text(s.target), Text(s.name), f"{s.ms:.1f}", result)
        out = console()
        out.print(table)
        if failed:
            out.print(Text(f"{len(failed)} of {len(checks)} store(s) failed: "
                           + ", ".join(c.kind for c in failed), style="bold red"))
        else:
            out.print(Text(f"all {len(checks)} store(s) passed the round trip", style="bold green"))
    if failed:
        raise click.exceptions.Exit(1)


__all__ = ["doctor", "run_checks"]
