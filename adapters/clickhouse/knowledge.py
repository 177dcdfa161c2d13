"""The ``clickhouse`` knowledge store: chDB (embedded ClickHouse) or a ClickHouse server.

Tested with chDB 4.4.0 (the ``chdb`` package; embedded ClickHouse 26.9). A server URL
(``clickhouse://user:pass@host:8123/database``, ``clickhouse+https://``) or ``client=`` goes through
clickhouse-connect: that path is written to clickhouse-connect's documented API (``raw_query``/``command``
with server-side ``parameters``, ``insert``) and checked against a fake client in the unit tests, NOT
against a server (none runs here). Built on :class:`storebridge.engine.EngineKnowledgeStore`, which does
validation, batching, duplicate-id refusal, exact float64 re-ranking and error typing.

Where the data is: ``chdb:///relative/dir`` / ``chdb:////absolute/dir`` / ``path=``. chDB runs one
embedded server per process and it can only ever be on ONE directory: stores on the same directory
share one reference-counted ``chdb.session.Session``; a second directory while one is open raises
``ConfigurationError``. Use ``database=`` (a ClickHouse database, default ``storebridge``) to keep
independent data sets apart in one directory.

Layout (format 1, recorded per collection in the ``format`` column; tables made before the column
existed get it with the value 1 when a store opens them). ``<database>.<prefix>knowledge_collections``
(name, dimension, distance, format) and ``<prefix>knowledge_documents`` (collection, id, content,
source_id, metadata, embedding), MergeTree ordered by ``(collection, id)``; metadata is the JSON text
(exact round-trip), embeddings ``Array(Float32)``. A collection with a newer format raises
``SchemaVersionError``.

Values are bound as query parameters, never spliced into SQL (see :mod:`._query`): clickhouse-connect
sends them as server-side parameters; chDB gets their text made by :func:`._query.param_text`. Rows go in
as an Arrow table: chDB reads it with its ``Python()`` table function, a server through
``client.insert_arrow``; the data never passes through SQL text.

Search: exact brute force ``ORDER BY cosineDistance / L2Distance / -dotProduct`` in Float64 over the
collection (recall 1.0), k + 16 candidates re-scored by the template. Filters: every operator and
dotted keys, compiled natively to ClickHouse's JSON functions on the metadata text with FILTERS.md's
exact meaning (:func:`._query.compile_filter`); nothing is evaluated client-side. ClickHouse's JSON
parser reads integers beyond 64 bits as strings, so metadata holding one is refused on write
(``ValidationError``: store it as a string or a float).

Writes: the ids of a batch that exist are removed (lightweight ``DELETE``), then the batch is inserted
(not atomic: ClickHouse has no transactions; a crash in between loses the replaced documents).
"""

from __future__ import annotations

import json
import os
import re
import threading
from contextlib import suppress
from typing import Any

import numpy as np

from storebridge.engine import Candidate, EngineKnowledgeStore
from storebridge.errors import (
    BackendNotAvailableError,
    ConfigurationError,
    ConnectionFailedError,
    SchemaVersionError,
    StorebridgeError,
    ValidationError,
)
from storebridge.filters import ALL_OPS, Filter
from storebridge.identifiers import validate_table_prefix
from storebridge.knowledge import KnowledgeCapabilities
from storebridge.models import CollectionInfo, Distance, DocumentPage, KnowledgeDocument
from storebridge.urls import mask_secrets, parse_url
from storebridge.vectors import BATCH_SIZE, metadata_json

from ._query import FORMAT, Params, Statements, find_wide_int

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
#: ClickHouse error codes of a refused login (AUTHENTICATION_FAILED, UNKNOWN_USER, WRONG_PASSWORD,
#: REQUIRED_PASSWORD, ACCESS_DENIED).
_AUTH_CODES = {"516", "192", "193", "194", "497"}


class _Chdb:
    """One chDB session per process (chDB's embedded server holds one directory), reference-counted."""

    def __init__(self, path: str) -> None:
        try:
            import chdb.session
        except ImportError as exc:  # pragma: no cover
            raise BackendNotAvailableError('the clickhouse store needs chdb: pip install "storebridge[clickhouse]"') \
                from exc
        self.lock = threading.RLock()
        self.refs = 0
        self.owned = True
        try:
            self.session = chdb.session.Session(path)
        except Exception as exc:
            raise ConfigurationError(f"cannot open chDB on {path!r}: {exc}; chDB holds one directory per process, "
                                     "close the stores on the other directory first") from exc

    def rows(self, sql: str, params: Params) -> list[dict[str, Any]]:
        with self.lock:
            text = self.session.query(sql, "JSONEachRow", params=params.texts()).bytes().decode("utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def execute(self, sql: str, params: Params) -> None:
        with self.lock:
            self.session.query(sql, params=params.texts())

    def insert(self, statements: Statements, table: Any) -> None:
        sb_documents = table  # noqa: F841 - read by name by chDB's Python() table function below
        with self.lock:
            self.session.query(statements.insert_from_python("sb_documents"))

    def close(self) -> None:
        with self.lock, suppress(Exception):
            self.session.close()


class _Server:
    """A ClickHouse server through a clickhouse-connect client (values as server-side parameters)."""

    def __init__(self, client: Any, *, owned: bool) -> None:
        self.lock = threading.RLock()  # one clickhouse-connect session runs one query at a time
        self.refs = 1
        self.client = client
        self.owned = owned

    def rows(self, sql: str, params: Params) -> list[dict[str, Any]]:
        with self.lock:
            raw = self.client.raw_query(sql, parameters=params.values, fmt="JSONEachRow")
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else str(raw)
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def execute(self, sql: str, params: Params) -> None:
        with self.lock:
            self.client.command(sql, parameters=params.values)

    def insert(self, statements: Statements, table: Any) -> None:
        with self.lock:
            self.client.insert_arrow(statements.documents_table, table, database=statements.database)

    def close(self) -> None:
        if self.owned:
            with suppress(Exception):
                self.client.close()


_engines: dict[str, _Chdb] = {}
_guard = threading.Lock()


def _connect(**options: Any) -> Any:
    try:
        import clickhouse_connect
    except ImportError as exc:
        raise BackendNotAvailableError(
            'a ClickHouse server needs clickhouse-connect: pip install "storebridge[clickhouse]"') from exc
    return clickhouse_connect.get_client(**options)


class ClickHouseKnowledgeStore(EngineKnowledgeStore):
    """Knowledge store on ClickHouse (chDB embedded, or a server). Thread-safe (calls serialised)."""

    backend_name = "clickhouse"
    capabilities = KnowledgeCapabilities(
        filter_operators=ALL_OPS,
        nested_keys=True,
        client_side_filters=False,
        distances=frozenset(Distance),
        recall_floor=1.0,
        persistent=True,
        max_batch=BATCH_SIZE,
        notes=("exact brute-force search in ClickHouse, re-scored in float64",
               "every filter operator and dotted key is compiled to ClickHouse JSON functions on the metadata",
               "metadata integers beyond 64 bits are refused (ClickHouse's JSON parser reads them as strings)",
               "upsert is delete + insert (not atomic)"),
    )

    def __init__(self, url: str | None = None, *, path: str | os.PathLike[str] | None = None,
                 database: str | None = None, table_prefix: str = "sb_", username: str | None = None,
                 password: str | None = None, client: Any = None) -> None:
        self.table_prefix = validate_table_prefix(table_prefix)
        self._secrets = (password,)
        if sum(x is not None for x in (url, path, client)) != 1:
            raise ConfigurationError("pass exactly one of url (chdb:///dir or clickhouse://host), path= or client= "
                                     "to the clickhouse store")
        server: dict[str, Any] | None = None
        query: dict[str, str] = {}
        directory = ""
        if path is not None:
            directory = os.path.abspath(os.fspath(path))
        elif url is not None:
            parsed = parse_url(url)
            query = dict(parsed.query)
            unknown = sorted(set(query) - {"database"})
            if unknown:
                raise ConfigurationError(f"unknown ClickHouse URL options {unknown}; the only one is database")
            if parsed.scheme == "chdb" or parsed.driver == "chdb":
                raw = (parsed.host or "") + parsed.path if parsed.host else parsed.file_path
                if not raw:
                    raise ConfigurationError(f"{parsed}: chdb needs a directory, e.g. chdb:///data/knowledge")
                directory = os.path.abspath(raw)
            elif parsed.scheme == "clickhouse" and parsed.host and parsed.driver in (None, "http", "https"):
                segments = [s for s in parsed.path.split("/") if s]
                if segments:
                    query.setdefault("database", segments[0])
                password = password or parsed.password
                self._secrets = (password,)
                secure = parsed.driver == "https"
                server = {"host": parsed.host, "port": parsed.port or (8443 if secure else 8123),
                          "username": username or parsed.username or "default", "password": password or "",
                          "secure": secure}
            else:
                raise ConfigurationError(f"not a ClickHouse URL: {parsed}; use chdb:///dir or clickhouse://host:8123")
        self.database = database or query.get("database") or "storebridge"
        if not _IDENT.fullmatch(self.database):
            raise ConfigurationError(f"database must be an identifier ([A-Za-z_][A-Za-z0-9_]*), got {self.database!r}")
        self._key: str | None = None
        self._released = False
        if client is not None:
            self._where = "the given ClickHouse client"
            self._engine: _Chdb | _Server = _Server(client, owned=False)
        elif server is not None:
            self._where = f"clickhouse://{server['host']}:{server['port']}"
            try:
                self._engine = _Server(_connect(**server), owned=True)
            except StorebridgeError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever the client raised, without the password
                raise ConnectionFailedError(
                    f"cannot connect to ClickHouse at {self._where}: {mask_secrets(exc, password)}") from None
        else:
            self._where = repr(directory)
            with _guard:
                engine = _engines.get(directory)
                if engine is None:
                    if _engines:
                        raise ConfigurationError(
                            f"chDB is already open on {next(iter(_engines))!r} in this process; it holds one directory "
                            "per process (close those stores, or use database= to separate data sets)")
                    engine = _engines[directory] = _Chdb(directory)
                engine.refs += 1
            self._engine = engine
            self._key = directory
        self._sql = Statements(self.database, self.table_prefix)
        try:
            with self._call("create tables"):
                for statement in self._sql.migrations():
                    self._engine.execute(statement, Params())
        except BaseException:
            self._release()
            raise

    def __repr__(self) -> str:
        return f"ClickHouseKnowledgeStore({self._where}, database={self.database!r})"

    def _release(self) -> None:
        with _guard:
            self._engine.refs -= 1
            last = self._engine.refs <= 0
            if last and self._key is not None:
                _engines.pop(self._key, None)
        if last:
            self._engine.close()

    def close(self) -> None:
        self._closed = True
        if not self._released:  # the shared chDB session is released once, however often close() is called
            self._released = True
            self._release()

    def _translate_error(self, exc: Exception, what: str) -> StorebridgeError:
        """clickhouse-connect's network errors and refused logins become ConnectionFailedError."""
        text = mask_secrets(exc, *self._secrets)
        if type(exc).__module__.startswith("clickhouse_connect"):
            code = re.search(r"Code: (\d+)", text)
            if code is not None and code.group(1) in _AUTH_CODES:
                return ConnectionFailedError(f"ClickHouse at {self._where} refused the login ({what}): {text}; check "
                                             "the username and password")
            if type(exc).__name__ == "OperationalError":
                return ConnectionFailedError(f"cannot reach ClickHouse at {self._where} ({what}): {text}")
        return super()._translate_error(exc, what)

    # -- engine primitives ----------------------------------------------------------------------------

    def _rows(self, statement: tuple[str, Params]) -> list[dict[str, Any]]:
        return self._engine.rows(*statement)

    def _engine_describe(self, name: str) -> CollectionInfo | None:
        rows = self._rows(self._sql.describe(name))
        if not rows:
            return None
        version = int(rows[0]["format"])
        if version > FORMAT:
            raise SchemaVersionError(
                f"collection {name!r} uses ClickHouse layout format {version}, newer than this storebridge "
                f"understands ({FORMAT}); upgrade storebridge")
        return CollectionInfo(name, int(rows[0]["dimension"]), Distance.parse(rows[0]["distance"]))

    def _engine_create(self, info: CollectionInfo) -> None:
        self._engine.execute(*self._sql.create(info.name, info.dimension, info.distance.value))

    def _engine_drop(self, name: str) -> None:
        with self._engine.lock:
            for statement in self._sql.drop(name):
                self._engine.execute(*statement)

    def _engine_names(self) -> list[str]:
        return [row["name"] for row in self._rows(self._sql.names())]

    def _engine_validate(self, info: CollectionInfo, documents: list[KnowledgeDocument]) -> None:
        for doc in documents:
            wide = find_wide_int(doc.metadata)
            if wide is not None:
                raise ValidationError(
                    f"metadata of document {doc.id!r} holds the integer {wide} beyond 64 bits, which ClickHouse's "
                    "JSON functions read as a string (so filters could not compare it); store it as a string or "
                    "a float")

    def _engine_existing(self, info: CollectionInfo, ids: list[str]) -> list[str]:
        return [row["id"] for row in self._rows(self._sql.existing(info.name, ids))]

    def _engine_write(self, info: CollectionInfo, documents: list[KnowledgeDocument], vectors: np.ndarray) -> None:
        import pyarrow as pa  # a dependency of chdb, and what clickhouse-connect's insert_arrow takes

        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), pa.float32())
        table = pa.table({
            "collection": pa.array([info.name] * len(documents), pa.string()),
            "id": pa.array([doc.id for doc in documents], pa.string()),
            "content": pa.array([doc.content for doc in documents], pa.string()),
            "source_id": pa.array([doc.source_id for doc in documents], pa.string()),
            "metadata": pa.array([metadata_json(doc) for doc in documents], pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, info.dimension).cast(pa.list_(pa.float32())),
        })
        with self._engine.lock:
            present = self._engine_existing(info, [doc.id for doc in documents])
            if present:
                self._engine.execute(*self._sql.delete(info.name, present, None))
            self._engine.insert(self._sql, table)

    def _engine_delete(self, info: CollectionInfo, ids: list[str] | None, where: Filter | None) -> int:
        with self._engine.lock:
            found = int(self._rows(self._sql.count(info.name, ids, where))[0]["n"])
            if found:
                self._engine.execute(*self._sql.delete(info.name, ids, where))
        return found

    @staticmethod
    def _document(row: dict[str, Any], with_vectors: bool) -> KnowledgeDocument:
        return KnowledgeDocument(id=row["id"], content=row["content"], metadata=json.loads(row["metadata"]),
                                 source_id=row.get("source_id"),
                                 embedding=[float(x) for x in row["embedding"]] if with_vectors else None)

    def _engine_nearest(self, info: CollectionInfo, query: np.ndarray, limit: int,
                        where: Filter | None) -> list[Candidate]:
        rows = self._rows(self._sql.nearest(info.name, info.distance.value, query.tolist(), limit, where))
        return [Candidate(self._document(row, False), np.asarray(row["embedding"], dtype=np.float32)) for row in rows]

    def _engine_get(self, info: CollectionInfo, ids: list[str], with_vectors: bool) -> list[KnowledgeDocument]:
        return [self._document(row, with_vectors) for row in self._rows(self._sql.get(info.name, ids, with_vectors))]

    def _engine_count(self, info: CollectionInfo, where: Filter | None) -> int:
        return int(self._rows(self._sql.count(info.name, None, where))[0]["n"])

    def _engine_page(self, info: CollectionInfo, limit: int, cursor: str | None, where: Filter | None,
                     with_vectors: bool) -> DocumentPage:
        """Pages in id order; the cursor is the last id of the previous page."""
        rows = self._rows(self._sql.page(info.name, limit + 1, cursor, where, with_vectors))
        docs = [self._document(row, with_vectors) for row in rows[:limit]]
        return DocumentPage(docs, docs[-1].id if len(rows) > limit else None)


__all__ = ["ClickHouseKnowledgeStore"]
