"""``storebridge sessions list|show|export|import|delete`` and ``storebridge resume``.

Export format (JSON lines, UTF-8), read back by ``sessions import``::

    {"format": "storebridge.conversations", "version": 1}
    {"type": "session", "session_id": ..., "user_id": ..., "agent_id": ..., "name": ..., "state": {...},
     "metadata": {...}, "created_at": 1700000000.123, "updated_at": ...}
    {"type": "message", "session_id": ..., "id": ..., "sequence": 1, "role": ..., "content": ...,
     "tool_calls": [...], "tool_call_id": ..., "metadata": {...}, "created_at": ...}
    ...                                  (each session's messages follow it, oldest first)

Every field of the records is kept, floats exactly (JSON numbers written with Python's shortest
round-trip repr). Import is idempotent: an existing session is left as it is and messages whose id it
already holds are skipped. Two things the conversation interface decides on import, not the file: the
destination assigns ``sequence`` (same order; numbering restarts at 1 where the source had gaps), and
appending sets the session's ``updated_at`` to the time of the import.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any

import click

from ._output import (
    close_quietly,
    console,
    default_url,
    echo_json,
    fail,
    mask,
    open_store,
    parse_options,
    show_url,
    store_options_option,
    when,
)

if TYPE_CHECKING:
    from storebridge.conversation import ConversationStore
    from storebridge.models import ConversationMessage, ConversationSession

FORMAT = "storebridge.conversations"
VERSION = 1
PAGE = 500

_url_option = click.option("--url", help="Conversation store URL (default: $STOREBRIDGE_CONVERSATION_URL, "
                                         "else the embedded SQLite file).")


# -- records <-> JSON ----------------------------------------------------------------------------------------

def session_record(session: ConversationSession) -> dict[str, Any]:
    return {"type": "session", "session_id": session.session_id, "user_id": session.user_id,
            "agent_id": session.agent_id, "name": session.name, "state": dict(session.state),
            "metadata": dict(session.metadata), "created_at": session.created_at, "updated_at": session.updated_at}


def message_record(message: ConversationMessage) -> dict[str, Any]:
    return {"type": "message", "session_id": message.session_id, "id": message.id, "sequence": message.sequence,
            "role": message.role, "content": message.content, "tool_calls": message.tool_calls,
            "tool_call_id": message.tool_call_id, "metadata": dict(message.metadata),
            "created_at": message.created_at}


def _session_from(record: dict[str, Any]) -> ConversationSession:
    from storebridge.models import ConversationSession

    return ConversationSession(
        session_id=record["session_id"], user_id=record.get("user_id"), agent_id=record.get("agent_id"),
        name=record.get("name"), state=record.get("state") or {}, metadata=record.get("metadata") or {},
        created_at=float(record["created_at"]), updated_at=float(record.get("updated_at", record["created_at"])))


def _message_from(record: dict[str, Any]) -> ConversationMessage:
    from storebridge.models import ConversationMessage

    return ConversationMessage(
        id=record["id"], session_id=record["session_id"], role=record["role"], content=record.get("content", ""),
        tool_calls=record.get("tool_calls"), tool_call_id=record.get("tool_call_id"),
        metadata=record.get("metadata") or {}, created_at=float(record["created_at"]))


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def all_sessions(store: ConversationStore, *, user_id: str | None = None,
                 agent_id: str | None = None) -> Iterator[ConversationSession]:
    """Every session (of a user/agent), page by page."""
    offset = 0
    while True:
        page = store.list_sessions(user_id=user_id, agent_id=agent_id, limit=PAGE, offset=offset)
        yield from page
        if len(page) < PAGE:
            return
        offset += len(page)


def read_export(stream: IO[str], name: str) -> list[tuple[ConversationSession | None, list[ConversationMessage]]]:
    """Parse and validate a whole export before anything is written; errors name the line."""
    from storebridge.errors import StorebridgeError

    groups: list[tuple[ConversationSession | None, list[ConversationMessage]]] = []
    index: dict[str, int] = {}
    header_seen = False
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            fail(f"{name} line {number} is not JSON: {exc}")
        if not isinstance(record, dict):
            fail(f"{name} line {number}: expected a JSON object")
        if not header_seen:
            if record.get("format") != FORMAT:
                fail(f"{name} is not a storebridge conversation export (line {number} should be "
                     f'{{"format": "{FORMAT}", "version": {VERSION}}}); create one with `storebridge sessions export`')
            if record.get("version") != VERSION:
                fail(f"{name} is export version {record.get('version')!r}; this storebridge reads version {VERSION}")
            header_seen = True
            continue
        try:
            kind = record.get("type")
            if kind == "session":
                session = _session_from(record)
                if session.session_id in index and groups[index[session.session_id]][0] is not None:
                    fail(f"{name} line {number}: session {session.session_id!r} appears twice")
                if session.session_id in index:
                    groups[index[session.session_id]] = (session, groups[index[session.session_id]][1])
                else:
                    index[session.session_id] = len(groups)
                    groups.append((session, []))
            elif kind == "message":
                message = _message_from(record)
                if message.session_id not in index:
                    index[message.session_id] = len(groups)
                    groups.append((None, []))
                groups[index[message.session_id]][1].append(message)
            else:
                fail(f"{name} line {number}: unknown record type {kind!r} (expected 'session' or 'message')")
        except (KeyError, TypeError, ValueError, StorebridgeError) as exc:
            if isinstance(exc, KeyError):
                fail(f"{name} line {number}: missing field {exc}")
            fail(f"{name} line {number}: {exc}")
    if not header_seen:
        fail(f"{name} is empty: no storebridge conversation export header")
    return groups


def import_groups(store: ConversationStore,
                  groups: Sequence[tuple[ConversationSession | None, list[ConversationMessage]]],
                  *, batch_size: int = PAGE) -> tuple[int, int, int]:
    """Write parsed export groups; returns (sessions created, messages added, messages skipped)."""
    created = added = skipped = 0
    for session, messages in groups:
        session_id = session.session_id if session is not None else messages[0].session_id
        if store.get_session(session_id) is None:
            if session is not None:
                store.create_session(session)
                created += 1
            existing: set[str] = set()
        else:
            existing = {m.id for m in store.get_messages(session_id)}
        fresh = [m.replace(sequence=None) for m in messages if m.id not in existing]
        skipped += len(messages) - len(fresh)
        for start in range(0, len(fresh), batch_size):
            written = store.add_messages(session_id, fresh[start:start + batch_size])
            added += len(written)
        if session is None and fresh:
            created += 1
    return created, added, skipped


# -- transcript ----------------------------------------------------------------------------------------------

def _tool_call_text(call: Any) -> str:
    """One tool call, whatever shape the app stored (OpenAI ``function`` or LangChain ``name/args``)."""
    if not isinstance(call, dict):
        return json.dumps(call, ensure_ascii=False)
    function: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else {}
    name = call.get("name") or function.get("name") or "?"
    args = call.get("args", function.get("arguments", call.get("arguments")))
    if not isinstance(args, str):
        args = json.dumps(args, ensure_ascii=False, sort_keys=True)
    ident = f"  [id {call['id']}]" if call.get("id") else ""
    return f"{name}({args}){ident}"


def print_transcript(messages: Sequence[ConversationMessage]) -> None:
    from rich.text import Text

    out = console()
    styles = {"user": "bold cyan", "assistant": "bold green", "system": "bold magenta", "tool": "bold yellow"}
    for message in messages:
        line = Text()
        line.append(f"#{message.sequence} ", style="dim")
        line.append(when(message.created_at), style="dim")
        line.append(" ")
        line.append(message.role, style=styles.get(message.role, "bold"))
        if message.tool_call_id:
            line.append(f" (result of {message.tool_call_id})", style="yellow")
        line.append(": ")
        line.append(message.content)
        out.print(line, soft_wrap=True)
        for call in message.tool_calls or []:
            out.print(Text(f"    -> tool call {_tool_call_text(call)}", style="yellow"), soft_wrap=True)
        if message.metadata:
            out.print(Text(f"    metadata {json.dumps(message.metadata, ensure_ascii=False, sort_keys=True)}",
                           style="dim"), soft_wrap=True)


# -- commands ------------------------------------------------------------------------------------------------

@click.group()
def sessions() -> None:
    """List, show, export, import and delete conversation sessions."""


@sessions.command("list")
@_url_option
@click.option("--user", "user_id", help="Only this user's sessions.")
@click.option("--agent", "agent_id", help="Only this agent's sessions.")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True,
              help="Most recently updated first; 0 lists all.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@store_options_option()
def list_command(url: str | None, user_id: str | None, agent_id: str | None, limit: int, as_json: bool,
                 options: tuple[str, ...]) -> None:
    """Sessions, most recently updated first, with their message counts."""
    url = default_url("conversation", url)
    store = open_store("conversation", url, parse_options(options))
    try:
        found = list(all_sessions(store, user_id=user_id, agent_id=agent_id)) if limit == 0 else \
            store.list_sessions(user_id=user_id, agent_id=agent_id, limit=limit)
        counts = {s.session_id: store.count_messages(s.session_id) for s in found}
    finally:
        store.close()
    if as_json:
        echo_json([{**session_record(s), "messages": counts[s.session_id]} for s in found])
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"sessions in {show_url(url)}")
    for column in ("session", "user", "agent", "name", "messages", "created", "updated"):
        table.add_column(column, overflow="fold", justify="right" if column == "messages" else "left")
    for s in found:
        table.add_row(*(Text(v) for v in (s.session_id, s.user_id or "-", s.agent_id or "-", s.name or "-",
                                          str(counts[s.session_id]), when(s.created_at), when(s.updated_at))))
    console().print(table)
    if not found:
        console().print("no sessions", style="dim")


@sessions.command("show")
@click.argument("session_id")
@_url_option
@click.option("--limit", type=click.IntRange(min=1), help="Only the newest N messages.")
@click.option("--json", "as_json", is_flag=True, help="Print the session and its messages as JSON.")
@store_options_option()
def show_command(session_id: str, url: str | None, limit: int | None, as_json: bool, options: tuple[str, ...]) -> None:
    """One session as a readable transcript (role, time, content, tool calls) or JSON."""
    url = default_url("conversation", url)
    store = open_store("conversation", url, parse_options(options))
    try:
        session = _require_session(store, session_id, url)
        messages = store.get_messages(session_id, limit=limit)
    finally:
        store.close()
    if as_json:
        echo_json({"session": session_record(session), "messages": [message_record(m) for m in messages]})
        return
    _print_header(session, len(messages))
    print_transcript(messages)


def _require_session(store: ConversationStore, session_id: str, url: str | None) -> ConversationSession:
    session = store.get_session(session_id)
    if session is None:
        fail(f"no session {session_id!r} in {show_url(url)}; `storebridge sessions list` shows the sessions there")
    return session


def _print_header(session: ConversationSession, shown: int) -> None:
    from rich.text import Text

    owner = ", ".join(f"{k} {v}" for k, v in (("user", session.user_id), ("agent", session.agent_id),
                                              ("name", session.name)) if v)
    console().print(Text(f"session {session.session_id}" + (f" ({owner})" if owner else "")
                         + f", created {when(session.created_at)}, updated {when(session.updated_at)}, "
                         f"{shown} message(s)", style="bold"))
    if session.state:
        console().print(Text(f"state {json.dumps(session.state, ensure_ascii=False, sort_keys=True)}", style="dim"))


@sessions.command("export")
@click.argument("session_ids", nargs=-1)
@_url_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write here (default: stdout).")
@store_options_option()
def export_command(session_ids: tuple[str, ...], url: str | None, output: str | None, options: tuple[str, ...]) -> None:
    """Export sessions (all if none is named) as JSON lines, losslessly (tool calls, metadata, times, ids)."""
    url = default_url("conversation", url)
    store = open_store("conversation", url, parse_options(options))
    try:
        if session_ids:
            chosen = [_require_session(store, sid, url) for sid in dict.fromkeys(session_ids)]
        else:
            chosen = sorted(all_sessions(store), key=lambda s: (s.created_at, s.session_id))
        if output is None:
            count = _write_export(store, chosen, sys.stdout)
        else:
            count = _export_to_file(store, chosen, output)
    finally:
        store.close()
    if output is not None:
        click.echo(f"exported {len(chosen)} session(s), {count} message(s) to {output}", err=True)


def _write_export(store: ConversationStore, chosen: Sequence[ConversationSession], stream: IO[str]) -> int:
    stream.write(_dumps({"format": FORMAT, "version": VERSION}) + "\n")
    count = 0
    for session in chosen:
        stream.write(_dumps(session_record(session)) + "\n")
        for message in store.get_messages(session.session_id):
            stream.write(_dumps(message_record(message)) + "\n")
            count += 1
    return count


def _export_to_file(store: ConversationStore, chosen: Sequence[ConversationSession], output: str) -> int:
    """Write to a temporary file next to ``output`` and rename it, so a failed export leaves no half file."""
    directory = os.path.dirname(os.path.abspath(output))
    fd, tmp = tempfile.mkstemp(prefix=".storebridge-export-", suffix=".jsonl", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as stream:
            count = _write_export(store, chosen, stream)
        os.replace(tmp, output)
    except BaseException:
        os.unlink(tmp)
        raise
    return count


@sessions.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@_url_option
@store_options_option()
def import_command(file: str, url: str | None, options: tuple[str, ...]) -> None:
    """Import a JSONL export (``-`` reads stdin). Idempotent: messages already there are skipped."""
    if file == "-":
        groups = read_export(sys.stdin, "stdin")
    else:
        try:
            with open(file, encoding="utf-8") as stream:
                groups = read_export(stream, file)
        except OSError as exc:
            fail(f"cannot read {file}: {exc.strerror or exc}")
        except UnicodeDecodeError as exc:
            fail(f"{file} is not UTF-8 text: {exc}")
    url = default_url("conversation", url)
    store = open_store("conversation", url, parse_options(options))
    try:
        created, added, skipped = import_groups(store, groups)
    finally:
        store.close()
    click.echo(f"imported {len(groups)} session(s) into {show_url(url)}: {created} created, "
               f"{added} message(s) added, {skipped} already there")


@sessions.command("delete")
@click.argument("session_id")
@_url_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@store_options_option()
def delete_command(session_id: str, url: str | None, yes: bool, options: tuple[str, ...]) -> None:
    """Delete a session and all its messages."""
    url = default_url("conversation", url)
    store = open_store("conversation", url, parse_options(options))
    try:
        _require_session(store, session_id, url)
        count = store.count_messages(session_id)
        if not yes:
            click.confirm(f"delete session {session_id!r} and its {count} message(s) from {show_url(url)}?",
                          abort=True, err=True)
        if not store.delete_session(session_id):
            fail(f"session {session_id!r} was deleted by someone else meanwhile")
    finally:
        store.close()
    click.echo(f"deleted session {session_id!r} ({count} message(s))")


# -- resume --------------------------------------------------------------------------------------------------

Responder = Callable[[list["ConversationMessage"]], Any]


def load_responder(spec: str) -> Responder:
    """``module:function`` (or ``module:object.method``), imported from the current directory too."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        fail(f"--responder must be module:function, got {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        fail(f"cannot import the responder module {module_name!r}: {exc}")
    for part in attribute.split("."):
        if not hasattr(found, part):
            fail(f"the responder module {module_name!r} has no {attribute!r}")
        found = getattr(found, part)
    if not callable(found):
        fail(f"the responder {spec!r} is not callable")
    responder: Responder = found
    return responder


def _call_responder(respond: Responder, messages: list[ConversationMessage]) -> Any:
    """The responder's reply (awaited if it is a coroutine); its failure becomes one error line."""
    try:
        reply = respond(messages)
        if inspect.isawaitable(reply):
            async def wait() -> Any:
                return await reply

            reply = asyncio.run(wait())
    except Exception as exc:  # noqa: BLE001 - any failure of the app's hook becomes one error line
        fail(f"the responder failed: {type(exc).__name__}: {mask(exc)}")
    return reply


def _reply_message(reply: Any) -> ConversationMessage | None:
    """What a responder returned, as the assistant message to append (None: no reply)."""
    from storebridge.models import ConversationMessage

    if reply is None:
        return None
    if isinstance(reply, ConversationMessage):
        return reply.replace(session_id="", sequence=None)
    if isinstance(reply, str):
        return ConversationMessage(role="assistant", content=reply)
    fail(f"the responder returned a value of type {type(reply).__name__}; "
         "return a str, a ConversationMessage or None")


@click.command()
@click.argument("session_id")
@_url_option
@click.option("--responder", metavar="MODULE:FUNCTION",
              help="Called with the session's messages after each user line; returns the reply (str or "
                   "ConversationMessage, or None), which is appended.")
@click.option("--new", "allow_new", is_flag=True, help="Start the session if it does not exist yet.")
@click.option("--user", "user_id", help="The user id of a session started with --new.")
@store_options_option()
def resume(session_id: str, url: str | None, responder: str | None, allow_new: bool, user_id: str | None,
           options: tuple[str, ...]) -> None:
    """Print the conversation so far, then append each line typed as a user message (until EOF or /exit)."""
    from storebridge.models import ConversationMessage, ConversationSession

    respond = load_responder(responder) if responder else None
    url = default_url("conversation", url)
    store = open_store("conversation", url, parse_options(options))
    try:
        session = store.get_session(session_id)
        if session is None:
            if not allow_new:
                fail(f"no session {session_id!r} in {show_url(url)}; pass --new to start it")
            session = store.create_session(ConversationSession(session_id=session_id, user_id=user_id))
        history = store.get_messages(session_id)
        _print_header(session, len(history))
        print_transcript(history)
        _chat_loop(store, session_id, respond, ConversationMessage)
    finally:
        problem = close_quietly(store)
    if problem is not None:
        raise problem


def _chat_loop(store: ConversationStore, session_id: str, respond: Responder | None,
               message_type: type[ConversationMessage]) -> None:
    stdin = sys.stdin
    interactive = stdin.isatty()
    appended = 0
    while True:
        if interactive:
            click.echo("you> ", nl=False)
        line = stdin.readline()
        if not line or line.strip() == "/exit":
            break
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        added = store.add_message(session_id, message_type(role="user", content=text))
        appended += 1
        if not interactive:
            print_transcript([added])
        if respond is not None:
            reply = _reply_message(_call_responder(respond, store.get_messages(session_id)))
            if reply is not None:
                print_transcript([store.add_message(session_id, reply)])
                appended += 1
    click.echo(f"{appended} message(s) appended to {session_id!r}", err=True)


__all__ = ["FORMAT", "all_sessions", "import_groups", "message_record", "read_export", "resume",
           "session_record", "sessions"]
