"""Weaviate knowledge store (sync, on ``weaviate-client`` v4: REST for the schema, gRPC for data).

Targets Weaviate 1.27+ (the oldest server weaviate-client 4.10+ accepts; written against client 4.23).
Not verified against a live server here (none runs on these machines): the translation layer is
unit-tested in ``tests/unit/test_weaviate_knowledge.py``, and the conformance suite runs live when
``STOREBRIDGE_TEST_WEAVIATE_URL`` is set.

URLs: ``weaviate://host:8080?grpc_port=50051&api_key=...`` (``weaviate+http`` the same),
``weaviate+https://host[:443]?grpc_host=...&grpc_port=443&api_key=...`` (a ``*.weaviate.cloud`` host uses
the client's Weaviate Cloud helper), options ``prefix`` (class-name prefix, default ``Storebridge``),
``index`` (``hnsw``, the default, or ``flat``: brute force, exact), ``consistency`` (``ONE``, ``QUORUM``,
``ALL``), ``timeout`` (seconds) and ``wait_for_indexing`` (``true``/``false``). ``client=`` takes a
connected ``WeaviateClient``, which the store never closes. The API key never appears in a repr or error.

Layout. A collection is a Weaviate class ``<prefix>_<encoded name>`` (see ``_filters``) with one named
vector, ``default``, self-provided (``Configure.Vectors.self_provided``) and indexed with the
collection's metric (cosine -> ``cosine``, l2 -> ``l2-squared``, dot -> ``dot``). Its description holds
the original name, dimension and distance as JSON. An object's UUID is
``storebridge.vectors.stable_uuid(id)``; its properties are ``sb_id``, ``sb_uid`` (the UUID as text, for
filtered scrolls), ``sb_content``, ``sb_source`` (``"s"`` + the source id, absent for None: Weaviate
does not keep an empty string apart from a missing value), ``sb_meta`` (the metadata as JSON text, for
exact round-trips), ``sb_vec`` (the original float32 vector, base64: Weaviate normalises cosine vectors,
so the exact original is kept and the engine is given a unit vector computed in float64),
``sb_tokens`` and one ``sb_n_<key>`` number property per numeric metadata key (added to the schema on
first use; see ``_filters`` for the tokens). Every property is declared explicitly, so auto-schema
never guesses a type.

Filters are compiled natively (``_filters.compile_filter``), every operator with FILTERS.md's meaning;
nothing is evaluated client-side. Numbers in range conditions compare as float64 (integers beyond 2**53
round as in JSON); equality is exact. Nested keys are not declared.

Search asks Weaviate for ``k + 16`` neighbours (HNSW by default, so approximate: recall floor 0.9 is
declared; ``index=flat`` is exact) and re-scores them in float64 from ``sb_vec``. Writes go through
``data.insert_many`` (gRPC batch, upsert semantics); any object the server rejects raises
``OperationFailedError`` naming it (the objects before it in the batch may be written). With
``wait_for_indexing`` (the default) a write returns once the collection's vector queue is empty, so a
server running ``ASYNC_INDEXING`` is searchable right after a write. ``delete_many`` removes at most
``QUERY_MAXIMUM_RESULTS`` objects per call, so deletes by filter repeat until nothing matches; the same
server setting (default 10,000) bounds ``k + 16`` in a search (beyond it the server's error is raised,
typed). Scrolls without a filter use the cursor API (``after``, uuid order); with a filter, which the
cursor API refuses, ``sb_uid > cursor`` sorted by ``sb_uid`` (a text range on a field-tokenized property).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from typing import Any

import numpy as np

from storebridge.engine import (
    Candidate,
    EngineKnowledgeStore,
    flag_option,
    option,
    poll,
    seconds_option,
    url_options,
)
from storebridge.errors import (
    AlreadyExistsError,
    ConfigurationError,
    ConnectionFailedError,
    OperationFailedError,
    StorebridgeError,
    ValidationError,
)
from storebridge.filters import Filter
from storebridge.knowledge import KnowledgeCapabilities
from storebridge.models import CollectionInfo, Distance, DocumentPage, KnowledgeDocument
from storebridge.urls import mask_secrets, parse_url
from storebridge.vectors import metadata_json, stable_uuid

from . import _filters as wf

try:  # imported lazily by the registry; the module needs the client
    import weaviate.exceptions as werr
    from weaviate.classes.config import (
        Configure,
        ConsistencyLevel,
        DataType,
        Property,
        Tokenization,
        VectorDistances,
    )
    from weaviate.classes.data import DataObject
    from weaviate.classes.init import AdditionalConfig, Auth, Timeout
    from weaviate.classes.query import Filter as WFilter
    from weaviate.classes.query import Sort
    from weaviate.connect.helpers import connect_to_custom, connect_to_weaviate_cloud
except ImportError as exc:  # pragma: no cover - the registry checks first
    raise ImportError("the weaviate backend needs weaviate-client: pip install \"storebridge[weaviate]\"") from exc

_CLOUD_SUFFIXES = (".weaviate.cloud", ".weaviate.network")
_METRICS = {"cosine": VectorDistances.COSINE, "l2-squared": VectorDistances.L2_SQUARED, "dot": VectorDistances.DOT}
_OPTIONS = {"grpc_port", "grpc_host", "api_key", "prefix", "index", "consistency", "timeout", "wait_for_indexing"}


def _encode_vector(vector: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def _decode_vector(text: Any, dimension: int) -> np.ndarray:
    vector = np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)
    if vector.shape != (dimension,):
        raise OperationFailedError(f"a stored vector has {vector.shape[0]} values, not {dimension}")
    return vector


def engine_vector(row: np.ndarray, distance: Distance) -> list[float]:
    """What Weaviate indexes: the vector itself, or for cosine its unit vector computed in float64 (so
    vectors whose float32 squared norm overflows are still scanned correctly)."""
    if distance is Distance.COSINE:
        wide = row.astype(np.float64)
        return (wide / np.linalg.norm(wide)).astype(np.float32).tolist()  # type: ignore[no-any-return]
    return row.tolist()  # type: ignore[no-any-return]


def properties(doc: KnowledgeDocument, vector: np.ndarray) -> dict[str, Any]:
    """One object's properties (see the module docstring)."""
    tokens, numbers = wf.indexed(doc.metadata)
    uid = stable_uuid(doc.id)
    props: dict[str, Any] = {wf.ID: doc.id, wf.UID: uid, wf.CONTENT: doc.content, wf.META: metadata_json(doc),
                             wf.VEC: _encode_vector(vector), wf.TOKENS: tokens}
    if doc.source_id is not None:
        props[wf.SOURCE] = "s" + doc.source_id
    props.update(numbers)
    return props


def _document(props: dict[str, Any], dimension: int, with_vector: bool) -> tuple[KnowledgeDocument, np.ndarray]:
    if not isinstance(props.get(wf.ID), str) or wf.VEC not in props:
        raise OperationFailedError("an object in the collection was not written by storebridge (no sb_id/sb_vec)")
    vector = _decode_vector(props[wf.VEC], dimension)
    source = props.get(wf.SOURCE)
    doc = KnowledgeDocument(id=props[wf.ID], content=props.get(wf.CONTENT) or "",
                            metadata=json.loads(props.get(wf.META) or "{}"),
                            source_id=source[1:] if isinstance(source, str) and source else None,
                            embedding=vector.tolist() if with_vector else None)
    return doc, vector


def _schema_properties() -> list[Any]:
    """The fixed properties of every collection; only ``sb_tokens`` and ``sb_uid`` are indexed."""
    def stored(name: str) -> Any:
        return Property(name=name, data_type=DataType.TEXT, index_filterable=False, index_searchable=False,
                        skip_vectorization=True)
    return [
        stored(wf.ID), stored(wf.CONTENT), stored(wf.SOURCE), stored(wf.META), stored(wf.VEC),
        Property(name=wf.UID, data_type=DataType.TEXT, tokenization=Tokenization.FIELD, index_filterable=True,
                 index_searchable=False, skip_vectorization=True),
        Property(name=wf.TOKENS, data_type=DataType.TEXT_ARRAY, tokenization=Tokenization.FIELD,
                 index_filterable=True, index_searchable=False, skip_vectorization=True),
    ]


def _number_property(name: str) -> Any:
    return Property(name=name, data_type=DataType.NUMBER, index_filterable=True, index_range_filters=True,
                    skip_vectorization=True)


class WeaviateKnowledgeStore(EngineKnowledgeStore):
    """Knowledge collections as Weaviate classes (see the module docstring for layout and limits)."""

    backend_name = "weaviate"
    write_batch = 200
    capabilities = KnowledgeCapabilities(  # every operator, top-level keys, every distance
        recall_floor=0.9,
        max_batch=200,
        notes=("HNSW (approximate) by default, candidates re-scored exactly; index=flat is exact brute force",
               "every filter operator is evaluated by Weaviate (1.27+: NotEqual is the exact complement of Equal)",
               "range filters compare numbers as float64",
               "not verified against a live server here; set STOREBRIDGE_TEST_WEAVIATE_URL to run the suite"),
    )

    def __init__(self, url: str | None = None, *, client: Any = None, api_key: str | None = None,
                 prefix: str | None = None, index: str | None = None, consistency: str | None = None,
                 timeout: float | None = None, wait_for_indexing: bool | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self._closed = False
        self._numbers: dict[str, frozenset[str]] = {}
        self._foreign: dict[str, frozenset[str]] = {}
        if (url is None) == (client is None):
            raise ConfigurationError("pass either a weaviate URL or client= to the weaviate store")
        options: dict[str, str] = {}
        parsed = None
        if url is not None:
            parsed = parse_url(url)
            if parsed.scheme != "weaviate" or parsed.driver not in (None, "http", "https"):
                raise ConfigurationError(f"not a weaviate URL: {parsed}; use weaviate://host:8080 or "
                                         "weaviate+https://host")
            if not parsed.host:
                raise ConfigurationError(f"the weaviate URL {parsed} names no host")
            options = url_options(parsed.query, _OPTIONS, "weaviate")
            api_key = option("api_key", api_key, options.get("api_key"))
        self._secrets = (api_key,)
        self._prefix = wf.check_prefix(option("prefix", prefix, options.get("prefix")) or wf.DEFAULT_PREFIX)
        self._index = (option("index", index, options.get("index")) or "hnsw").lower()
        if self._index not in ("hnsw", "flat"):
            raise ConfigurationError(f"weaviate index must be hnsw or flat, got {self._index!r}")
        if self._index == "flat":
            self.capabilities = dataclasses.replace(type(self).capabilities, recall_floor=1.0)
        level = option("consistency", consistency, options.get("consistency"))
        self._consistency = None
        if level is not None:
            try:
                self._consistency = ConsistencyLevel(str(level).upper())
            except ValueError:
                raise ConfigurationError(f"weaviate consistency must be ONE, QUORUM or ALL, got {level!r}") from None
        self._wait = flag_option("wait_for_indexing", option("wait_for_indexing", wait_for_indexing,
                                                             options.get("wait_for_indexing")), True)
        timeout = seconds_option("timeout", option("timeout", timeout, options.get("timeout")))
        if client is not None:
            self._client = client
            self._where = "the given Weaviate client"
            return
        assert parsed is not None
        https = parsed.driver == "https"
        host = parsed.host or ""
        port = parsed.port or (443 if https else 8080)
        self._where = f"weaviate{'+https' if https else ''}://{host}:{port}"
        try:
            grpc_port = int(options.get("grpc_port") or (443 if https else 50051))
        except ValueError:
            raise ConfigurationError(f"weaviate grpc_port must be a port number, got {options['grpc_port']!r}") from None
        config = AdditionalConfig(timeout=Timeout(init=timeout or 30, query=timeout or 60, insert=timeout or 120))
        credentials = Auth.api_key(api_key) if api_key else None
        cloud = https and host.endswith(_CLOUD_SUFFIXES) and "grpc_host" not in options
        if cloud and credentials is None:
            raise ConfigurationError("Weaviate Cloud needs an api_key (URL option or argument)")
        try:
            if cloud:
                assert credentials is not None
                self._client = connect_to_weaviate_cloud(host, credentials, headers=headers,
                                                         additional_config=config)
            else:
                self._client = connect_to_custom(
                    http_host=host, http_port=port, http_secure=https, grpc_host=options.get("grpc_host") or host,
                    grpc_port=grpc_port, grpc_secure=https, headers=headers, additional_config=config,
                    auth_credentials=credentials)
            self._owned_client = self._client
        except Exception as exc:
            raise self._translate_error(exc, "connect") from exc

    def __repr__(self) -> str:
        return f"WeaviateKnowledgeStore({self._where}, prefix={self._prefix!r})"

    # -- plumbing -------------------------------------------------------------------------------------

    def _translate_error(self, exc: Exception, what: str) -> StorebridgeError:
        text = mask_secrets(exc, *self._secrets)
        status = getattr(exc, "status_code", None) if isinstance(exc, werr.UnexpectedStatusCodeError) else None
        if isinstance(exc, werr.AuthenticationFailedError) or status == 401:
            return ConfigurationError(f"weaviate {what}: {self._where} refused the credentials; check api_key "
                                      f"({text})")
        if isinstance(exc, werr.InsufficientPermissionsError) or status == 403:
            return OperationFailedError(f"weaviate {what}: the API key may not do this on {self._where} ({text})")
        if isinstance(exc, (werr.WeaviateConnectionError, werr.WeaviateGRPCUnavailableError,
                            werr.WeaviateStartUpError, werr.WeaviateTimeoutError, werr.WeaviateClosedClientError,
                            ConnectionError, TimeoutError)):
            return ConnectionFailedError(f"weaviate {what}: cannot reach {self._where} ({text})")
        return OperationFailedError(f"weaviate {what} failed on {self._where}: {text}")

    def _collection(self, name: str) -> Any:
        collection = self._client.collections.use(wf.class_name(self._prefix, name))
        if self._consistency is not None:
            collection = collection.with_consistency_level(self._consistency)
        return collection

    def _compiled(self, info: CollectionInfo, where: Filter | None) -> wf.Compiled:
        return wf.compile_filter(where, self._numbers.get(info.name, frozenset()))

    # -- collections ----------------------------------------------------------------------------------

    def _engine_describe(self, name: str) -> CollectionInfo | None:
        cls = wf.class_name(self._prefix, name)
        try:
            config = self._client.collections.use(cls).config.get(simple=True)
        except werr.UnexpectedStatusCodeError as exc:
            if exc.status_code == 404:
                return None
            raise
        if config is None:
            return None
        ours = [p for p in config.properties if p.name.startswith(wf.NUMBER_PREFIX)]
        self._numbers[name] = frozenset(p.name for p in ours if p.data_type == DataType.NUMBER)
        self._foreign[name] = frozenset(p.name for p in ours if p.data_type != DataType.NUMBER)
        return wf.info_from_description(cls, config.description, name)

    def _engine_create(self, info: CollectionInfo) -> None:
        metric = _METRICS[wf.weaviate_distance(info.distance)]
        index = (Configure.VectorIndex.flat(distance_metric=metric) if self._index == "flat"
                 else Configure.VectorIndex.hnsw(distance_metric=metric))
        try:
            self._client.collections.create(
                name=wf.class_name(self._prefix, info.name), description=wf.description(info),
                vector_config=Configure.Vectors.self_provided(name=wf.VECTOR_NAME, vector_index_config=index),
                properties=_schema_properties())
        except werr.UnexpectedStatusCodeError as exc:
            existing = self._engine_describe(info.name)  # created meanwhile by another store?
            if existing is None:
                raise
            if existing != info:
                raise AlreadyExistsError(f"knowledge collection {info.name!r} was created meanwhile with dimension "
                                         f"{existing.dimension} and distance {existing.distance.value!r}") from exc
        self._numbers[info.name] = self._foreign[info.name] = frozenset()

    def _engine_drop(self, name: str) -> None:
        self._client.collections.delete(wf.class_name(self._prefix, name))
        self._numbers.pop(name, None)

    def _engine_names(self) -> list[str]:
        names = []
        for cls, config in self._client.collections.list_all(simple=True).items():
            name = wf.name_from_class(self._prefix, cls)
            if name is None:
                continue
            try:
                wf.info_from_description(cls, getattr(config, "description", None), name)
            except OperationFailedError:
                continue  # a class under our prefix that this store did not make
            names.append(name)
        return names

    # -- writes ---------------------------------------------------------------------------------------

    def _ensure_numbers(self, info: CollectionInfo, needed: set[str]) -> None:
        """Add the ``sb_n_*`` properties this batch needs before writing it (explicitly typed ``number``;
        auto-schema would make an integer property from a first integer value)."""
        foreign = needed & self._foreign.get(info.name, frozenset())
        if foreign:
            raise OperationFailedError(f"the Weaviate properties {sorted(foreign)} of collection {info.name!r} are not "
                                       "of type number; they were not made by storebridge")
        missing = needed - self._numbers.get(info.name, frozenset())
        if not missing:
            return
        collection = self._collection(info.name)
        known = {p.name: p for p in collection.config.get(simple=True).properties}
        for prop in sorted(missing):
            if prop not in known:
                try:
                    collection.config.add_property(_number_property(prop))
                except (werr.WeaviateInvalidInputError, werr.UnexpectedStatusCodeError):
                    # added meanwhile by another writer? then it is there now, else the error stands
                    again = {p.name: p for p in collection.config.get(simple=True).properties}
                    if prop not in again:
                        raise
                    known[prop] = again[prop]
            if prop in known and known[prop].data_type != DataType.NUMBER:
                raise OperationFailedError(
                    f"the Weaviate property {prop!r} of collection {info.name!r} has type "
                    f"{known[prop].data_type!r}, not number; it was not made by storebridge")
        self._numbers[info.name] = self._numbers.get(info.name, frozenset()) | needed

    def _engine_write(self, info: CollectionInfo, documents: list[KnowledgeDocument], vectors: np.ndarray) -> None:
        objects: list[Any] = []
        needed: set[str] = set()
        for doc, row in zip(documents, vectors, strict=True):
            props = properties(doc, row)
            needed.update(k for k in props if k.startswith(wf.NUMBER_PREFIX))
            objects.append(DataObject(properties=props, uuid=stable_uuid(doc.id),
                                      vector={wf.VECTOR_NAME: engine_vector(row, info.distance)}))
        self._ensure_numbers(info, needed)
        collection = self._collection(info.name)
        result = collection.data.insert_many(objects)
        errors = getattr(result, "errors", None) or {}
        if errors:
            failed = sorted(errors.items())[:5]
            detail = "; ".join(f"{documents[i].id!r}: {getattr(e, 'message', e)}" for i, e in failed)
            raise OperationFailedError(f"Weaviate refused {len(errors)} of {len(objects)} documents written to "
                                       f"{info.name!r} (the others may be written): {detail}")
        if self._wait:
            self._wait_for_indexing(collection, info)

    def _wait_for_indexing(self, collection: Any, info: CollectionInfo, limit: float = 120.0) -> None:
        """Return once every shard's vector queue is empty (it always is without ASYNC_INDEXING)."""
        for _ in poll(limit, delay=0.2, most=0.2):
            shards = collection.config.get_shards()
            if all(getattr(s, "vector_queue_size", 0) == 0 for s in shards):
                return
        raise OperationFailedError(
            f"the documents were written to {info.name!r}, but Weaviate has not indexed their vectors after "
            f"{limit:.0f} s; searches may miss them until it has (or pass wait_for_indexing=False)")

    def _engine_existing(self, info: CollectionInfo, ids: list[str]) -> list[str]:
        found = self._fetch(info, ids, [wf.ID])
        return [props[wf.ID] for props in found if isinstance(props.get(wf.ID), str)]

    def _fetch(self, info: CollectionInfo, ids: list[str], returned: list[str]) -> list[dict[str, Any]]:
        uuids = list(dict.fromkeys(stable_uuid(i) for i in ids))
        if not uuids:
            return []
        response = self._collection(info.name).query.fetch_objects(
            filters=WFilter.by_id().contains_any(uuids), limit=len(uuids), return_properties=returned)
        return [dict(obj.properties) for obj in response.objects]

    def _engine_delete(self, info: CollectionInfo, ids: list[str] | None, where: Filter | None) -> int:
        compiled = self._compiled(info, where)
        if ids is not None:
            if not ids:
                return 0
            compiled = wf.with_ids(compiled, [stable_uuid(i) for i in ids])
        if compiled is False:
            return 0
        selector = wf.to_weaviate(compiled)
        collection = self._collection(info.name)
        removed = 0
        while True:  # one call deletes at most QUERY_MAXIMUM_RESULTS objects
            result = collection.data.delete_many(where=selector)
            if result.failed:
                raise OperationFailedError(f"Weaviate failed to delete {result.failed} of {result.matches} matching "
                                           f"documents in {info.name!r} ({removed + result.successful} deleted)")
            removed += result.successful
            if result.matches == 0:
                return removed
            if result.successful == 0:
                raise OperationFailedError(f"Weaviate matched {result.matches} documents in {info.name!r} for "
                                           "deletion but deleted none")

    # -- reads ----------------------------------------------------------------------------------------

    def _engine_nearest(self, info: CollectionInfo, query: np.ndarray, limit: int,
                        where: Filter | None) -> list[Candidate]:
        compiled = self._compiled(info, where)
        if compiled is False:
            return []
        response = self._collection(info.name).query.near_vector(
            near_vector=query.tolist(), target_vector=wf.VECTOR_NAME, limit=limit,
            filters=None if compiled is True else wf.to_weaviate(compiled), return_properties=wf.RETURNED,
            include_vector=False)
        candidates = []
        for obj in response.objects:
            doc, vector = _document(dict(obj.properties), info.dimension, False)
            candidates.append(Candidate(doc, vector))
        return candidates

    def _engine_get(self, info: CollectionInfo, ids: list[str], with_vectors: bool) -> list[KnowledgeDocument]:
        return [_document(props, info.dimension, with_vectors)[0] for props in self._fetch(info, ids, wf.RETURNED)]

    def _engine_count(self, info: CollectionInfo, where: Filter | None) -> int:
        compiled = self._compiled(info, where)
        if compiled is False:
            return 0
        result = self._collection(info.name).aggregate.over_all(
            total_count=True, filters=None if compiled is True else wf.to_weaviate(compiled))
        return int(result.total_count or 0)

    def _engine_page(self, info: CollectionInfo, limit: int, cursor: str | None, where: Filter | None,
                     with_vectors: bool) -> DocumentPage:
        if cursor is not None and not _is_uuid(cursor):
            raise ValidationError(f"invalid scroll cursor {cursor!r}; pass the next_cursor of the previous page")
        compiled = self._compiled(info, where)
        if compiled is False:
            return DocumentPage([], None)
        collection = self._collection(info.name)
        if compiled is True:  # the cursor API: uuid order, no filter allowed
            response = collection.query.fetch_objects(after=cursor, limit=limit + 1, return_properties=wf.RETURNED)
        else:
            response = collection.query.fetch_objects(
                filters=wf.to_weaviate(wf.after_uid(compiled, cursor)), sort=Sort.by_property(wf.UID, ascending=True),
                limit=limit + 1, return_properties=wf.RETURNED)
        objects = list(response.objects)
        page = objects[:limit]
        documents = [_document(dict(obj.properties), info.dimension, with_vectors)[0] for obj in page]
        more = len(objects) > limit
        return DocumentPage(documents, str(page[-1].uuid) if more and page else None)


def _is_uuid(text: Any) -> bool:
    try:
        return isinstance(text, str) and str(uuid.UUID(text)) == text
    except ValueError:
        return False


__all__ = ["WeaviateKnowledgeStore", "engine_vector", "properties"]
