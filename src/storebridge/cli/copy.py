"""``storebridge copy SRC_URL DST_URL``: every knowledge collection (or the ones named), every
conversation, or all state, from any backend to any other, in batches, resumable, verified by counts.

How each kind is copied (through the store interfaces only, so any pair of backends works):

* knowledge: per collection, ``create_collection`` with the source's dimension and distance
  (``exist_ok``), then ``scroll`` pages of ``--batch-size`` documents with their embeddings, each
  ``upsert``-ed (idempotent). The checkpoint keeps each collection's scroll cursor.
* conversation: every session id (listed page by page, then sorted), one session at a time: the session
  is created with its own times and metadata if the destination lacks it, and the messages the
  destination does not hold yet (by id) are appended in order. The checkpoint keeps the finished sessions.
* state: every live key of the source's namespace, sorted, in batches: values with ``get_many``, each
  key's remaining TTL kept. The checkpoint keeps the last key copied.

The checkpoint (``--checkpoint``, default ``./.storebridge-copy-<key>.json``, the key derived from the
masked URLs, kind, collections and options; never a password) is written after every batch (at most twice
a second, and always when the copy stops), and removed when the copy completes. ``--resume`` continues
from it; re-copying anything is harmless (upserts, and messages skipped by id).

At the end the counts are compared: documents per collection; sessions and messages per session; keys
(every live source key must exist in the destination). Any difference exits with 1.

``--from-format praisonai|langchain_sql|langchain_postgres`` reads the tables of those tools through
:func:`storebridge.importers.import_conversations` (idempotent, so a re-run resumes) and verifies the
messages per session against the source table.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from ._output import (
    KIND_CHOICE,
    CLIError,
    close_quietly,
    console,
    err_console,
    fail,
    kinds_for_url,
    mask,
    open_store,
    parse_options,
    remember_url,
)

if TYPE_CHECKING:
    from rich.progress import Progress

    from storebridge.registry import Kind

CHECKPOINT_VERSION = 1
SAVE_INTERVAL = 0.5
FROM_FORMATS = ("praisonai", "langchain_sql", "langchain_postgres")


@dataclass(frozen=True)
class Count:
    """One verified quantity: what the source holds and what the destination holds of it."""

    what: str
    source: int
    destination: int

    @property
    def ok(self) -> bool:
        return self.source == self.destination


class Checkpoint:
    """What an interrupted copy had finished, in a small JSON file (written atomically)."""

    def __init__(self, path: str, key: str, about: dict[str, Any]) -> None:
        self.path, self.key, self.about = path, key, about
        self.data: dict[str, Any] = {}
        self._saved = 0.0

    def load(self) -> bool:
        """Read an existing checkpoint; False if there is none."""
        try:
            with open(self.path, encoding="utf-8") as stream:
                stored = json.load(stream)
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as exc:
            fail(f"cannot read the checkpoint {self.path}: {exc}; remove it or pass --restart")
        if not isinstance(stored, dict) or stored.get("version") != CHECKPOINT_VERSION:
            fail(f"{self.path} is not a storebridge copy checkpoint (version {CHECKPOINT_VERSION}); "
                 "remove it or pass --restart")
        if stored.get("key") != self.key:
            fail(f"the checkpoint {self.path} belongs to another copy ({stored.get('about')}); "
                 "choose another --checkpoint path or pass --restart")
        self.data = stored.get("progress") or {}
        return True

    def save(self, *, force: bool = False) -> None:
        if not force and time.monotonic() - self._saved < SAVE_INTERVAL:
            return
        tmp = f"{self.path}.tmp"
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as stream:
            json.dump({"version": CHECKPOINT_VERSION, "key": self.key, "about": self.about, "progress": self.data},
                      stream, ensure_ascii=False)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, self.path)
        self._saved = time.monotonic()

    def remove(self) -> None:
        for path in (self.path, f"{self.path}.tmp"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def _progress() -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err_console())


# -- knowledge -----------------------------------------------------------------------------------------------

def copy_knowledge(src: Any, dst: Any, names: Sequence[str], checkpoint: Checkpoint, batch_size: int,
                   progress: Progress) -> list[str]:
    """Copy the named collections (all when empty); returns the collection names copied."""
    chosen = list(dict.fromkeys(names)) or src.list_collections()
    states: dict[str, Any] = checkpoint.data.setdefault("collections", {})
    for name in chosen:
        info = src.get_collection(name)
        dst.create_collection(name, info.dimension, info.distance, exist_ok=True)
        entry = states.setdefault(name, {"cursor": None, "copied": 0, "done": False})
        total = src.count(name)
        task = progress.add_task(f"collection {name}", total=total, completed=min(entry["copied"], total))
        while not entry["done"]:
            page = src.scroll(name, limit=batch_size, cursor=entry["cursor"], include_embeddings=True)
            if page.documents:
                dst.upsert(name, page.documents)
            entry["copied"] += len(page.documents)
            entry["cursor"] = page.next_cursor
            entry["done"] = page.next_cursor is None
            checkpoint.save()
            progress.advance(task, len(page.documents))
        progress.update(task, completed=total)
    return chosen


def verify_knowledge(src: Any, dst: Any, names: Sequence[str]) -> list[Count]:
    return [Count(f"documents in {name}", src.count(name), dst.count(name)) for name in names]


# -- conversations -------------------------------------------------------------------------------------------

def copy_conversations(src: Any, dst: Any, checkpoint: Checkpoint, batch_size: int,
                       progress: Progress) -> list[str]:
    """Copy every session; returns the session ids copied."""
    from .sessions import all_sessions, import_groups

    ids = sorted({s.session_id for s in all_sessions(src)})
    done: list[str] = checkpoint.data.setdefault("sessions_done", [])
    finished = set(done)
    task = progress.add_task("sessions", total=len(ids), completed=len(finished.intersection(ids)))
    for session_id in ids:
        if session_id in finished:
            continue
        session = src.get_session(session_id)
        messages = src.get_messages(session_id)
        if session is not None:
            import_groups(dst, [(session, messages)], batch_size=batch_size)
        done.append(session_id)
        finished.add(session_id)
        checkpoint.save()
        progress.advance(task)
    return ids


def verify_conversations(src: Any, dst: Any, ids: Sequence[str]) -> list[Count]:
    present = sum(1 for sid in ids if dst.get_session(sid) is not None)
    counts = [Count("sessions", len(ids), present)]
    total_src = total_dst = 0
    for sid in ids:
        a, b = src.count_messages(sid), dst.count_messages(sid)
        total_src, total_dst = total_src + a, total_dst + b
        if a != b:
            counts.append(Count(f"messages in session {sid}", a, b))
    counts.insert(1, Count("messages", total_src, total_dst))
    return counts


# -- state ---------------------------------------------------------------------------------------------------

def copy_state(src: Any, dst: Any, checkpoint: Checkpoint, batch_size: int, progress: Progress) -> list[str]:
    """Copy every live key with its TTL; returns the keys listed at the start."""
    keys = sorted(src.keys())
    last = checkpoint.data.get("last_key")
    start = bisect.bisect_right(keys, last) if last is not None else 0
    task = progress.add_task("keys", total=len(keys), completed=start)
    for offset in range(start, len(keys), batch_size):
        chunk = keys[offset:offset + batch_size]
        values = src.get_many(chunk)
        plain: dict[str, Any] = {}
        for key in chunk:
            if key not in values:
                continue  # expired since it was listed: the verification lists live keys again
            ttl = src.ttl(key)
            if ttl is None:
                plain[key] = values[key]
            else:
                dst.set(key, values[key], ttl=ttl)
        if plain:
            dst.set_many(plain)
        checkpoint.data["last_key"] = chunk[-1]
        checkpoint.save()
        progress.advance(task, len(chunk))
    return keys


def verify_state(src: Any, dst: Any) -> list[Count]:
    source = set(src.keys())
    return [Count("keys", len(source), len(source & set(dst.keys())))]


# -- foreign tables (importers) ------------------------------------------------------------------------------

def _source_counts(src_url: str, source_format: str, table: str | None, prefix: str) -> dict[str, int]:
    """Messages per session in the source tables, counted by the source database."""
    from storebridge import importers
    from storebridge.identifiers import quote_identifier, validate_table_prefix

    if source_format == "praisonai":
        name = validate_table_prefix(prefix) + "messages"
    else:
        name = importers._table_name(table or importers._DEFAULT_TABLES[source_format])
    conn, owned = importers._open(src_url)
    try:
        quote = "`" if type(conn).__module__.split(".")[0] in importers._MYSQL_MODULES else '"'
        cursor = conn.cursor()
        try:
            cursor.execute(f"SELECT session_id, COUNT(*) FROM {quote_identifier(name, quote)} GROUP BY session_id")
            return {str(sid): int(n) for sid, n in cursor.fetchall()}
        finally:
            cursor.close()
    finally:
        if owned:
            conn.close()


def import_foreign(src_url: str, dst: Any, source_format: str, table: str | None, prefix: str,
                   batch_size: int) -> list[Count]:
    from storebridge.importers import import_conversations

    with err_console().status(f"importing {source_format} conversations from {mask(src_url)}"):
        report = import_conversations(src_url, dst, source_format=source_format, table=table,
                                      table_prefix=prefix, batch_size=batch_size)
    click.echo(f"imported: {report.sessions_created} session(s) created, {report.messages_imported} message(s) "
               f"added, {report.messages_skipped} already there", err=True)
    expected = _source_counts(src_url, source_format, table, prefix)
    counts = [Count("messages", sum(expected.values()), sum(dst.count_messages(s) for s in expected))]
    counts += [Count(f"messages in session {sid}", n, dst.count_messages(sid))
               for sid, n in expected.items() if dst.count_messages(sid) != n]
    return counts


# -- the command ---------------------------------------------------------------------------------------------

def choose_kind(src_url: str, dst_url: str, kind: str | None) -> Kind:
    """The kind to copy: ``--kind``, else the one kind both URLs' schemes serve."""
    src_kinds, dst_kinds = kinds_for_url(src_url), kinds_for_url(dst_url)
    for url, kinds in ((src_url, src_kinds), (dst_url, dst_kinds)):
        if not kinds:
            fail(f"no backend of any kind handles {mask(url)}; `storebridge backends` lists the URL schemes")
    if kind is not None:
        chosen: Any = kind.lower()
        for url, kinds in ((src_url, src_kinds), (dst_url, dst_kinds)):
            if chosen not in kinds:
                fail(f"{mask(url)} is not a {chosen} store URL (its scheme serves {', '.join(kinds)})")
        return chosen  # type: ignore[no-any-return]
    common = [k for k in src_kinds if k in dst_kinds]
    if len(common) == 1:
        return common[0]
    if not common:
        fail(f"{mask(src_url)} ({', '.join(src_kinds)}) and {mask(dst_url)} ({', '.join(dst_kinds)}) "
             "share no kind of store")
    fail(f"both URLs serve several kinds ({', '.join(common)}); pass --kind")


@contextmanager
def _stores(kind: Kind, src_url: str, dst_url: str, src_options: dict[str, Any],
            dst_options: dict[str, Any]) -> Iterator[tuple[Any, Any]]:
    src = open_store(kind, src_url, src_options)
    try:
        dst = open_store(kind, dst_url, dst_options)
    except BaseException:
        close_quietly(src)
        raise
    try:
        yield src, dst
    finally:
        problems = [p for p in (close_quietly(src), close_quietly(dst)) if p is not None]
    if problems:
        raise problems[0]


def _print_counts(counts: Sequence[Count]) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="verification")
    for column in ("what", "source", "destination", "result"):
        table.add_column(column, overflow="fold", justify="right" if column in ("source", "destination") else "left")
    for c in counts:
        table.add_row(Text(c.what), str(c.source), str(c.destination),
                      Text("ok", style="green") if c.ok else Text("MISMATCH", style="red"))
    console().print(table)


@click.command("copy")
@click.argument("src_url")
@click.argument("dst_url")
@click.option("--kind", type=KIND_CHOICE, help="What to copy (inferred when both URLs serve one kind).")
@click.option("--collection", "collections", multiple=True, help="Knowledge: only this collection (repeatable).")
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True,
              help="Documents, messages or keys per write.")
@click.option("--checkpoint", "checkpoint_path", type=click.Path(dir_okay=False),
              help="Checkpoint file (default: ./.storebridge-copy-<key>.json).")
@click.option("--resume", is_flag=True, help="Continue an interrupted copy from its checkpoint.")
@click.option("--restart", is_flag=True, help="Discard an existing checkpoint and copy everything again.")
@click.option("--from-format", type=click.Choice(FROM_FORMATS),
              help="The source is another tool's conversation tables (see storebridge.importers).")
@click.option("--source-table", help="--from-format langchain_*: the table name (default: the tool's).")
@click.option("--source-prefix", default="praison_", show_default=True,
              help="--from-format praisonai: the tables' prefix.")
@click.option("--src-option", "src_options", multiple=True, metavar="KEY=VALUE",
              help="A source store constructor option (repeatable).")
@click.option("--dst-option", "dst_options", multiple=True, metavar="KEY=VALUE",
              help="A destination store constructor option (repeatable), e.g. table_prefix=app_.")
def copy_command(src_url: str, dst_url: str, kind: str | None, collections: tuple[str, ...], batch_size: int,
                 checkpoint_path: str | None, resume: bool, restart: bool, from_format: str | None,
                 source_table: str | None, source_prefix: str, src_options: tuple[str, ...],
                 dst_options: tuple[str, ...]) -> None:
    """Copy knowledge collections, conversations or state from SRC_URL to DST_URL (any backends).

    Batched, with a progress bar, resumable after an interrupt (--resume), verified by counts at the end.
    """
    remember_url(src_url)
    remember_url(dst_url)
    if resume and restart:
        fail("--resume and --restart contradict each other; pass one")
    src_opts, dst_opts = parse_options(src_options), parse_options(dst_options)
    if from_format is not None:
        _copy_foreign(src_url, dst_url, kind, from_format, source_table, source_prefix, batch_size, dst_opts,
                      ignored=[o for o, on in (("--resume", resume), ("--checkpoint", checkpoint_path),
                                               ("--collection", collections), ("--src-option", src_options)) if on])
        return
    chosen = choose_kind(src_url, dst_url, kind)
    if collections and chosen != "knowledge":
        fail("--collection applies to knowledge copies only")
    if src_url == dst_url and src_opts == dst_opts:
        fail("the source and the destination are the same store")
    about = {"source": mask(src_url), "destination": mask(dst_url), "kind": chosen,
             "collections": sorted(collections), "src_options": sorted(src_opts), "dst_options": sorted(dst_opts)}
    key = hashlib.sha256(json.dumps([about, src_opts, dst_opts], sort_keys=True, default=str).encode()).hexdigest()[:16]
    checkpoint = Checkpoint(checkpoint_path or f".storebridge-copy-{key}.json", key, about)
    if restart:
        checkpoint.remove()
    elif checkpoint.load():
        if not resume:
            fail(f"an interrupted copy left the checkpoint {checkpoint.path}: pass --resume to continue it, "
                 "or --restart to copy everything again")
        click.echo(f"resuming from {checkpoint.path}", err=True)
    elif resume:
        click.echo(f"no checkpoint at {checkpoint.path}: copying from the start", err=True)

    with _stores(chosen, src_url, dst_url, src_opts, dst_opts) as (src, dst):
        copied = _run(chosen, src, dst, collections, checkpoint, batch_size)
        counts = _verify(chosen, src, dst, copied)
    checkpoint.remove()
    _finish(counts)


def _run(kind: Kind, src: Any, dst: Any, collections: Sequence[str], checkpoint: Checkpoint,
         batch_size: int) -> list[str]:
    """The copy itself; on any interruption the checkpoint is saved and the message says how to resume."""
    hint = f"the checkpoint {checkpoint.path} records what was copied: run the same command with --resume"
    copiers: dict[str, Callable[[Progress], list[str]]] = {
        "knowledge": lambda p: copy_knowledge(src, dst, collections, checkpoint, batch_size, p),
        "conversation": lambda p: copy_conversations(src, dst, checkpoint, batch_size, p),
        "state": lambda p: copy_state(src, dst, checkpoint, batch_size, p),
    }
    try:
        with _progress() as progress:
            return copiers[kind](progress)
    except KeyboardInterrupt:
        checkpoint.save(force=True)
        raise CLIError(f"interrupted; {hint}", exit_code=130) from None
    except CLIError:
        checkpoint.save(force=True)
        raise
    except Exception as exc:
        checkpoint.save(force=True)
        raise CLIError(f"the copy stopped: {mask(exc)}; {hint}") from exc


def _verify(kind: Kind, src: Any, dst: Any, copied: list[str]) -> list[Count]:
    if kind == "knowledge":
        return verify_knowledge(src, dst, copied)
    if kind == "conversation":
        return verify_conversations(src, dst, copied)
    return verify_state(src, dst)


def _finish(counts: Sequence[Count]) -> None:
    _print_counts(counts)
    bad = [c for c in counts if not c.ok]
    if bad:
        fail(f"verification failed: {len(bad)} count(s) differ ({bad[0].what}: source {bad[0].source}, "
             f"destination {bad[0].destination}); a destination that held other data before the copy also "
             "counts as a difference")
    click.echo("copy complete: counts match")


def _copy_foreign(src_url: str, dst_url: str, kind: str | None, source_format: str, table: str | None,
                  prefix: str, batch_size: int, dst_opts: dict[str, Any], ignored: list[str]) -> None:
    if kind is not None and kind.lower() != "conversation":
        fail(f"--from-format {source_format} copies conversations, not {kind}")
    if ignored:
        fail(f"{', '.join(ignored)} cannot be used with --from-format: the import itself is idempotent, "
             "so running it again resumes it")
    if "conversation" not in kinds_for_url(dst_url):
        fail(f"{mask(dst_url)} is not a conversation store URL")
    dst = open_store("conversation", dst_url, dst_opts)
    try:
        counts = import_foreign(src_url, dst, source_format, table, prefix, batch_size)
    finally:
        problem = close_quietly(dst)
    if problem is not None:
        raise problem
    _finish(counts)


__all__ = [
    "Checkpoint",
    "Count",
    "choose_kind",
    "copy_command",
    "copy_conversations",
    "copy_knowledge",
    "copy_state",
]
