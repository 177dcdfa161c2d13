"""How a knowledge document is laid out as a Cosmos DB item, and the container policies that go with it.

Pure: no client import (the unit tests pin this without a server).

One container per collection, named ``<prefix><collection>``, partition key ``/id``. Item properties:

* ``id``: :func:`storebridge.vectors.stable_uuid` of the document id. Cosmos ids may not contain ``/``,
  ``\\``, ``?`` or ``#`` and stop at 255 characters; any document id maps onto a 36-character UUIDv5,
  the same id always onto the same item (so upserts replace) and distinct ids never collide.
* ``doc_id``, ``content``, ``source_id``: the document's own values.
* ``metadata_json``: the caller's metadata as JSON text, what reads return (Cosmos numbers are doubles:
  ``2**53 + 1`` or ``1.0`` would not come back as given).
* ``fields``: the copy filters run on. Each top-level metadata key that is a valid filter key
  (:func:`storebridge.filters.validate_key`) and whose value is not None, with the value's filterable
  part: a string, a bool or a number as is; a list as its string, bool and number elements (other
  elements can never equal a filter value); a dict as ``{}`` (present, equal to nothing).
* ``embedding``: the float32 vector as JSON numbers (each a float32 value written as the double it
  is, so it reads back bit for bit).

The vector embedding policy declares ``/embedding`` as float32 with the collection's dimension and
distance (cosine -> ``cosine``, l2 -> ``euclidean``, dot -> ``dotproduct``); the indexing policy adds
the vector index (``quantizedFlat``, ``diskANN`` or ``flat``) and leaves ``/embedding``, ``/content`` and
``/metadata_json`` out of the range index (never filtered on; indexing them only costs RUs on writes).
A collection's dimension and distance are read back from the container's vector embedding policy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from storebridge.errors import OperationFailedError, StorebridgeError
from storebridge.filters import validate_key
from storebridge.models import CollectionInfo, Distance, KnowledgeDocument
from storebridge.vectors import metadata_json, stable_uuid

ID = "id"
DOC_ID = "doc_id"
CONTENT = "content"
SOURCE_ID = "source_id"
METADATA_JSON = "metadata_json"
FIELDS = "fields"
EMBEDDING = "embedding"

PARTITION_KEY_PATH = "/id"
EMBEDDING_PATH = "/embedding"
INDEX_TYPES = ("quantizedFlat", "diskANN", "flat")
#: The ``flat`` vector index holds at most this many dimensions (documented by Microsoft).
FLAT_MAX_DIMENSIONS = 505
COSMOS_DISTANCE = {Distance.COSINE: "cosine", Distance.L2: "euclidean", Distance.DOT: "dotproduct"}
_FROM_COSMOS = {v: k for k, v in COSMOS_DISTANCE.items()}
#: Integers beyond this are not exactly representable as the doubles Cosmos holds.
_EXACT_INT = 2**53


def item_id(document_id: str) -> str:
    """The Cosmos item id (and partition key value) of a document id."""
    return stable_uuid(document_id)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _filterable_number(value: float) -> float | None:
    """A number as Cosmos will hold it (a double); None if it has none (an int beyond 1.8e308, an infinity)."""
    if isinstance(value, int):
        if abs(value) <= _EXACT_INT:
            return value
        try:
            return float(value)
        except OverflowError:
            return None
    return value if math.isfinite(value) else None


def _filterable(value: Any) -> Any:
    """The part of a metadata value filters can see, or None if nothing of it is filterable."""
    if isinstance(value, (str, bool)):
        return value
    if _is_number(value):
        return _filterable_number(value)
    if isinstance(value, (list, tuple)):
        elements: list[Any] = []
        for element in value:
            if isinstance(element, (str, bool)):
                elements.append(element)
            elif _is_number(element):
                number = _filterable_number(element)
                if number is not None:
                    elements.append(number)
        return elements
    if isinstance(value, Mapping):
        return {}
    return None


def _valid_key(key: Any) -> bool:
    try:
        validate_key(key)
    except StorebridgeError:
        return False
    return True


def filter_fields(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The ``fields`` copy of a document's metadata (see the module docstring)."""
    fields: dict[str, Any] = {}
    for key, value in metadata.items():
        if value is None or not _valid_key(key):
            continue
        copy = _filterable(value)
        if copy is not None:
            fields[key] = copy
    return fields


def to_item(doc: KnowledgeDocument, vector: np.ndarray) -> dict[str, Any]:
    """The item for a validated document and its checked float32 vector."""
    return {
        ID: item_id(doc.id),
        DOC_ID: doc.id,
        CONTENT: doc.content,
        SOURCE_ID: doc.source_id,
        METADATA_JSON: metadata_json(doc),
        FIELDS: filter_fields(doc.metadata),
        EMBEDDING: np.asarray(vector, dtype=np.float32).tolist(),
    }


def vector_of(item: Mapping[str, Any]) -> np.ndarray:
    """The item's stored float32 vector."""
    return np.asarray(item[EMBEDDING], dtype=np.float32)


def from_item(item: Mapping[str, Any], container: str, with_vector: bool) -> KnowledgeDocument:
    """The document an item holds; an item this store did not write is an error, not a guess."""
    if not isinstance(item.get(DOC_ID), str) or not isinstance(item.get(METADATA_JSON), str):
        raise OperationFailedError(
            f"item {item.get(ID)!r} of container {container!r} was not written by storebridge (no {DOC_ID!r} "
            f"or {METADATA_JSON!r}); keep other data out of storebridge's containers")
    embedding = vector_of(item).tolist() if with_vector else None
    return KnowledgeDocument(id=item[DOC_ID], content=item.get(CONTENT) or "", source_id=item.get(SOURCE_ID),
                             metadata=json.loads(item[METADATA_JSON]), embedding=embedding)


def vector_embedding_policy(info: CollectionInfo) -> dict[str, Any]:
    return {"vectorEmbeddings": [{"path": EMBEDDING_PATH, "dataType": "float32", "dimensions": info.dimension,
                                  "distanceFunction": COSMOS_DISTANCE[info.distance]}]}


def indexing_policy(index_type: str) -> dict[str, Any]:
    return {
        "indexingMode": "consistent",
        "automatic": True,
        "includedPaths": [{"path": "/*"}],
        "excludedPaths": [{"path": '/"_etag"/?'}, {"path": f"{EMBEDDING_PATH}/*"}, {"path": f"/{CONTENT}/?"},
                          {"path": f"/{METADATA_JSON}/?"}],
        "vectorIndexes": [{"path": EMBEDDING_PATH, "type": index_type}],
    }


def collection_info(name: str, container: str, properties: Mapping[str, Any]) -> CollectionInfo:
    """The collection a container holds, read from its partition key and vector embedding policy."""
    paths = (properties.get("partitionKey") or {}).get("paths")
    embeddings = (properties.get("vectorEmbeddingPolicy") or {}).get("vectorEmbeddings") or []
    ours = [e for e in embeddings if isinstance(e, Mapping) and e.get("path") == EMBEDDING_PATH]
    if paths != [PARTITION_KEY_PATH] or len(ours) != 1 or ours[0].get("distanceFunction") not in _FROM_COSMOS \
            or not isinstance(ours[0].get("dimensions"), int):
        raise OperationFailedError(
            f"the Cosmos DB container {container!r} was not made by storebridge (it needs partition key "
            f"{PARTITION_KEY_PATH!r} and a vector embedding policy on {EMBEDDING_PATH!r}); use another collection "
            "name or collection prefix")
    return CollectionInfo(name, int(ours[0]["dimensions"]), _FROM_COSMOS[ours[0]["distanceFunction"]])


def is_storebridge_container(properties: Mapping[str, Any]) -> bool:
    """Whether a container has this store's layout (used to list only the collections it made)."""
    try:
        collection_info("x", str(properties.get("id")), properties)
    except OperationFailedError:
        return False
    return True


__all__ = [
    "CONTENT",
    "COSMOS_DISTANCE",
    "DOC_ID",
    "EMBEDDING",
    "FIELDS",
    "FLAT_MAX_DIMENSIONS",
    "ID",
    "INDEX_TYPES",
    "METADATA_JSON",
    "PARTITION_KEY_PATH",
    "SOURCE_ID",
    "collection_info",
    "filter_fields",
    "from_item",
    "indexing_policy",
    "is_storebridge_container",
    "item_id",
    "to_item",
    "vector_embedding_policy",
    "vector_of",
]
