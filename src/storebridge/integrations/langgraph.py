"""A LangGraph ``BaseStore`` (namespaced long-term memory, optionally searched by meaning) over storebridge.

    from storebridge.integrations.langgraph import StorebridgeLangGraphStore
    store = StorebridgeLangGraphStore(state_store)                                   # key-value + filters
    store = StorebridgeLangGraphStore(state_store, knowledge=kb, index={"dims": 384, "embed": embeddings,
                                                                     "fields": ["text"]})  # + semantic search

Items live in the state store (any backend, sync or async), one key per item:
``<key_prefix>i:<label>.<label>...<escaped key>`` (labels cannot contain ``.``, and ``.``/``%`` in the key
are escaped, so a namespace prefix is a key prefix). The value is ``{"value", "created_at", "updated_at",
"ttl", "vectors"}``; LangGraph TTLs (minutes) become the state store's TTL, refreshed on reads.

With a knowledge store and an ``index`` config, each indexed field of an item (LangGraph's ``fields`` / the
``index=`` of ``put``, ``"$"`` meaning the whole value) is embedded into collection ``collection`` as one
document whose metadata names the item's namespace (``ns_0``, ``ns_1``...) and key; a search with ``query``
ranks items by their best field (cosine similarity, as LangGraph's own stores), restricted to the namespace
prefix by the knowledge store's filter. Without them, ``query`` is ignored, as LangGraph's stores do when no
index is configured, and search pages through the matching items in key order.

``filter`` uses storebridge's portable filter language on the item value (LangGraph's ``$eq $ne $gt $gte
$lt $lte`` plus ``$in $nin $exists $contains``; a nested dict means a nested path); list-equality filters
raise ``UnsupportedFilterError``. Operations of a batch run in order. Vectors of an item that expired by TTL
stay in the knowledge store until the item is written or deleted again; searches never return them.
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    validate_op_namespace,
)
from langgraph.store.base.embed import ensure_embeddings, get_text_at_path, tokenize_path

from ..errors import ConfigurationError, UnsupportedFilterError
from ..filters import FilterLike, matcher, parse_filter
from ..identifiers import validate_collection_name
from ..models import KnowledgeDocument
from ._faces import Faces, run_inline
from .langchain import _Face, _faces

_INDEX_KEYS = frozenset({"dims", "embed", "fields"})


def _escape(key: str) -> str:
    return key.replace("%", "%25").replace(".", "%2E")


def _unescape(text: str) -> str:
    return text.replace("%2E", ".").replace("%25", "%")


def _value_filter(spec: Mapping[str, Any] | None) -> FilterLike:
    """LangGraph's filter dict as a storebridge filter on the item value (nested dicts become dotted paths)."""
    if not spec:
        return None
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Mapping[str, Any]) -> None:
        for field, wanted in node.items():
            path = f"{prefix}{field}"
            if isinstance(wanted, Mapping) and wanted and not any(str(k).startswith("$") for k in wanted):
                walk(path + ".", wanted)
            elif isinstance(wanted, (list, tuple)):
                raise UnsupportedFilterError(f"filter on {path!r}: list equality is not supported; use "
                                             "{'$contains': item} or {'$in': [...]}")
            else:
                flat[path] = wanted

    walk("", spec)
    return parse_filter(flat)


def _matches(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    path = condition.path
    if len(namespace) < len(path):
        return False
    pairs = zip(namespace, path) if condition.match_type == "prefix" else zip(reversed(namespace), reversed(path))
    return all(want == "*" or have == want for have, want in pairs)


class StorebridgeLangGraphStore(BaseStore):
    """LangGraph long-term memory over a storebridge state store (+ a knowledge store for semantic search)."""

    supports_ttl = True

    def __init__(self, state: Any, *, knowledge: Any = None, index: IndexConfig | None = None,
                 collection: str = "langgraph_store", key_prefix: str = "lg:", ttl: TTLConfig | None = None) -> None:
        if (knowledge is None) != (index is None):
            raise ConfigurationError("semantic search needs both knowledge= (a knowledge store) and index= "
                                     "({'dims': ..., 'embed': ..., 'fields': [...]}); pass both or neither")
        self._state = _faces(state)
        self._knowledge: Faces[_Face] | None = None
        self.collection = validate_collection_name(collection)
        self.key_prefix = key_prefix
        self.ttl_config = ttl
        self.index_config = None if index is None else dict(index)
        self._fields: list[tuple[str, Any]] = []
        if index is not None:
            unknown = sorted(set(index) - _INDEX_KEYS)
            if unknown:
                raise ConfigurationError(f"unsupported index option(s) {unknown}; use {sorted(_INDEX_KEYS)}")
            self._knowledge = _faces(knowledge, ensure_embeddings(index.get("embed")))
            self._dims = int(index["dims"])
            self._fields = [self._field(path) for path in (index.get("fields") or ["$"])]
        self._collection_ready = False

    @staticmethod
    def _field(path: str) -> tuple[str, Any]:
        return (path, path if path == "$" else tokenize_path(path))

    # -- keys -----------------------------------------------------------------------------------------

    def _item_prefix(self, namespace: tuple[str, ...]) -> str:
        return f"{self.key_prefix}i:" + "".join(f"{label}." for label in namespace)

    def _item_key(self, namespace: tuple[str, ...], key: str) -> str:
        return self._item_prefix(namespace) + _escape(key)

    def _decode(self, state_key: str) -> tuple[tuple[str, ...], str]:
        body = state_key[len(self.key_prefix) + 2:]
        namespace, _, key = body.rpartition(".")
        return tuple(namespace.split(".")), _unescape(key)

    @staticmethod
    def _item(namespace: tuple[str, ...], key: str, record: Mapping[str, Any], score: float | None = None,
              search: bool = False) -> Item:
        times = {"created_at": datetime.fromisoformat(record["created_at"]),
                 "updated_at": datetime.fromisoformat(record["updated_at"])}
        if search:
            return SearchItem(namespace, key, record["value"], score=score, **times)
        return Item(value=record["value"], key=key, namespace=namespace, **times)

    # -- operations, each written once over the faces ---------------------------------------------------

    async def _batch(self, state: _Face, knowledge: _Face | None, ops: Iterable[Op]) -> list[Result]:
        results: list[Result] = []
        for op in ops:
            validate_op_namespace(op)
            if isinstance(op, GetOp):
                results.append(await self._get(state, op))
            elif isinstance(op, PutOp):
                if not op.namespace:
                    raise InvalidNamespaceError("Namespace cannot be empty.")
                await self._put(state, knowledge, op)
                results.append(None)
            elif isinstance(op, SearchOp):
                results.append(await self._search(state, knowledge, op))
            elif isinstance(op, ListNamespacesOp):
                results.append(await self._list_namespaces(state, op))
            else:
                raise ConfigurationError(f"unknown LangGraph store operation {type(op).__name__}")
        return results

    async def _refresh(self, state: _Face, records: Mapping[str, Mapping[str, Any]], refresh: bool) -> None:
        if refresh:
            for state_key, record in records.items():
                if record.get("ttl"):
                    await state.call("expire", state_key, record["ttl"] * 60.0)

    async def _get(self, state: _Face, op: GetOp) -> Item | None:
        state_key = self._item_key(op.namespace, op.key)
        record = await state.call("get", state_key)
        if record is None:
            return None
        await self._refresh(state, {state_key: record}, op.refresh_ttl)
        return self._item(op.namespace, op.key, record)

    async def _put(self, state: _Face, knowledge: _Face | None, op: PutOp) -> None:
        state_key = self._item_key(op.namespace, op.key)
        old = await state.call("get", state_key)
        stale = list(old.get("vectors", [])) if old else []
        if op.value is None:
            await state.call("delete", state_key)
        else:
            vectors = await self._index(knowledge, op, state_key) if knowledge is not None else []
            now = datetime.now(timezone.utc).isoformat()
            record = {"value": dict(op.value), "created_at": old["created_at"] if old else now, "updated_at": now,
                      "ttl": op.ttl, "vectors": vectors}
            await state.call("set", state_key, record, ttl=None if op.ttl is None else op.ttl * 60.0)
            stale = [doc_id for doc_id in stale if doc_id not in vectors]
        if stale and knowledge is not None:
            await knowledge.call("delete", self.collection, stale)

    async def _index(self, knowledge: _Face, op: PutOp, state_key: str) -> list[str]:
        """Embed and upsert the item's indexed fields; returns their document ids."""
        if op.index is False or op.value is None:
            return []
        fields = self._fields if op.index is None else [self._field(path) for path in op.index]
        texts: list[tuple[str, str]] = []
        for path, tokens in fields:
            found = get_text_at_path(op.value, tokens)
            texts += [(path if len(found) == 1 else f"{path}.{i}", text) for i, text in enumerate(found)]
        if not texts:
            return []
        vectors = await knowledge.embed_documents([text for _, text in texts])
        labels = {f"ns_{i}": label for i, label in enumerate(op.namespace)}
        documents = [KnowledgeDocument(id=f"{state_key}#{path}", content=text, embedding=vector,
                                       metadata={**labels, "key": op.key, "path": path})
                     for (path, text), vector in zip(texts, vectors)]
        await self._ensure_collection(knowledge)
        await knowledge.call("upsert", self.collection, documents)
        return [doc.id for doc in documents]

    async def _ensure_collection(self, knowledge: _Face) -> None:
        if not self._collection_ready:
            await knowledge.call("create_collection", self.collection, self._dims, "cosine", exist_ok=True)
            self._collection_ready = True

    async def _search(self, state: _Face, knowledge: _Face | None, op: SearchOp) -> list[SearchItem]:
        match = matcher(_value_filter(op.filter))
        want = op.offset + op.limit
        if op.query and knowledge is not None:
            found = await self._semantic(state, knowledge, op, match, want)
        else:
            found = []
        if len(found) < want:  # no query (or not enough ranked items): page through the matching items
            seen = {state_key for state_key, _, _ in found}
            ranked_only = bool(op.query and knowledge is not None)
            for state_key, record in await self._scan(state, op.namespace_prefix):
                if state_key not in seen and match(record["value"]) and not (ranked_only and record["vectors"]):
                    found.append((state_key, record, None))
                    if len(found) >= want:
                        break
        page = found[op.offset:want]
        await self._refresh(state, {state_key: record for state_key, record, _ in page}, op.refresh_ttl)
        return [self._item(*self._decode(state_key), record, score, search=True)  # type: ignore[misc]
                for state_key, record, score in page]

    async def _scan(self, state: _Face, prefix: tuple[str, ...]) -> list[tuple[str, dict[str, Any]]]:
        keys = await state.call("keys", prefix=self._item_prefix(prefix))
        records = await state.call("get_many", keys) if keys else {}
        return [(key, records[key]) for key in keys if key in records]

    async def _semantic(self, state: _Face, knowledge: _Face, op: SearchOp, match: Any,
                        want: int) -> list[tuple[str, dict[str, Any], float | None]]:
        """Items ranked by their best field's similarity, over-fetching until ``want`` match the filter."""
        vector = await knowledge.embed_query(op.query or "")
        labels = {f"ns_{i}": label for i, label in enumerate(op.namespace_prefix)}
        await self._ensure_collection(knowledge)
        fetch = max(2 * want, 10)
        while True:
            hits = await knowledge.call("search", self.collection, vector, k=fetch, filter=labels or None)
            best: dict[str, float] = {}
            for hit in hits:  # best first, so the first hit of an item is its best field
                best.setdefault(hit.id.rpartition("#")[0], hit.score)
            records = await state.call("get_many", list(best)) if best else {}
            found: list[tuple[str, dict[str, Any], float | None]] = [
                (state_key, records[state_key], score) for state_key, score in best.items()
                if state_key in records and match(records[state_key]["value"])]
            if len(found) >= want or len(hits) < fetch:
                return found
            fetch *= 4

    async def _list_namespaces(self, state: _Face, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        keys = await state.call("keys", prefix=f"{self.key_prefix}i:")
        namespaces = {self._decode(key)[0] for key in keys}
        chosen = [ns for ns in namespaces if all(_matches(c, ns) for c in op.match_conditions or ())]
        if op.max_depth is not None:
            chosen = list({ns[:op.max_depth] for ns in chosen})
        return sorted(chosen)[op.offset:op.offset + op.limit]

    # -- LangGraph's two entry points -------------------------------------------------------------------

    def _run_batch(self, ops: Iterable[Op], is_async: bool) -> Coroutine[Any, Any, list[Result]]:
        state = self._state.get(is_async)
        knowledge = None if self._knowledge is None else self._knowledge.get(is_async)
        return self._batch(state, knowledge, list(ops))

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run the operations in order, on the stores' sync faces."""
        return run_inline(self._run_batch(ops, False))

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Run the operations in order, awaiting the stores' async faces."""
        return await self._run_batch(ops, True)


__all__ = ["StorebridgeLangGraphStore"]
