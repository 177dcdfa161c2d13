"""Helpers every knowledge adapter needs, written once: checking documents and vectors before a write,
turning them into float32 matrices, exact scores per distance, id lists, batches, stable point ids.

Adapters import this module (it imports numpy, so the core's ``import storebridge`` never does).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, islice
from typing import Any

import numpy as np

from .errors import ValidationError
from .models import Distance, KnowledgeDocument, validate_vector

Vector = Sequence[float]

#: Documents validated and written per transaction when a write gets a non-sequence iterable.
BATCH_SIZE = 1000
#: Rows scored per step in float64 by :func:`exact_scores` (bounds the scratch space when k is huge).
_BLOCK = 8192
_F32_MAX = float(np.finfo(np.float32).max)
#: JSON that loads back equal, types included; keys are not \u-escaped (SQLite's JSON paths need that).
METADATA_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_ID_NAMESPACE = uuid.UUID("6f1c1a2e-5b7d-4c1e-9a3f-2d8e7b6a5c4d")


def stable_uuid(document_id: str) -> str:
    """A UUIDv5 for engines whose point ids must be UUIDs or ints: the same string id always maps to the
    same point (so upserts replace, never duplicate); keep the original id in the payload."""
    return str(uuid.uuid5(_ID_NAMESPACE, document_id))


def storable_text(value: str, what: str) -> str:
    """A str SQLite can store: Python strings may hold lone surrogates, which are not UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{what} is not valid Unicode (it contains a lone surrogate)") from None
    return value


def has_non_string_key(value: Any) -> bool:
    if isinstance(value, dict):
        return any(not isinstance(k, str) or has_non_string_key(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(has_non_string_key(v) for v in value)
    return False


def metadata_json(doc: KnowledgeDocument) -> str:
    """The metadata as JSON text that loads back equal, types included (1.0 stays a float)."""
    metadata = dict(doc.metadata)
    try:
        text = METADATA_JSON.encode(metadata)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"metadata of document {doc.id!r} cannot be stored as JSON ({exc}); use strings, finite numbers, "
            "bools, None, lists and dicts"
        ) from None
    if has_non_string_key(metadata):
        raise ValidationError(
            f"metadata of document {doc.id!r} has a non-string key; JSON would turn it into a string, "
            "so use string keys"
        )
    return storable_text(text, f"metadata of document {doc.id!r}")


def check_documents(documents: Sequence[Any]) -> None:
    for doc in documents:
        if not isinstance(doc, KnowledgeDocument):
            raise ValidationError(f"expected KnowledgeDocument objects, got {type(doc).__name__} {doc!r:.80}")
        if doc.embedding is None:
            raise ValidationError(
                f"document {doc.id!r} has no embedding; compute one (see storebridge.embedders) before writing"
            )
        if doc.source_id is not None and not isinstance(doc.source_id, str):
            raise ValidationError(f"source_id of document {doc.id!r} must be a string or None")


def embedding_matrix(documents: Sequence[KnowledgeDocument], dimension: int, distance: Distance) -> np.ndarray:
    """The batch's embeddings as a float32 matrix, or the first bad document's precise error."""
    array: np.ndarray | None = None
    if all(isinstance(doc.embedding, list) and len(doc.embedding) == dimension for doc in documents):
        try:
            with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused just below
                array = np.fromiter(chain.from_iterable(doc.embedding for doc in documents),  # type: ignore[misc]
                                    dtype=np.float32, count=len(documents) * dimension)
            array = array.reshape(len(documents), dimension)
        except (TypeError, ValueError):
            array = None
    # Not finite in float32: NaN, infinity, or beyond float32's range (which this store keeps).
    if array is None or not np.isfinite(array).all():
        for doc in documents:  # the reference validation names the bad document and its problem
            validate_vector(doc.embedding, dimension, what=f"embedding of document {doc.id!r}")
        bad = np.empty(0, np.intp) if array is None else np.flatnonzero(~np.isfinite(array).all(axis=1))
        where = f"document {documents[int(bad[0])].id!r}" if len(bad) else "a document"
        raise ValidationError(f"the embedding of {where} has values beyond float32's range (±{_F32_MAX:.4g}), "
                              "which this store keeps; scale the vectors")
    if distance is Distance.COSINE:
        zero = np.flatnonzero(~array.any(axis=1))
        if len(zero):
            raise ValidationError(
                f"document {documents[int(zero[0])].id!r} has a zero embedding, which has no cosine similarity "
                "to anything; drop it or use a collection with the l2 or dot distance"
            )
    return array


def query_vectors(vector: Vector, dimension: int, distance: Distance) -> tuple[np.ndarray, np.ndarray]:
    """The query as given in float64 (for exact scores) and as scanned in float32 (cosine: unit length)."""
    q64 = np.asarray(validate_vector(vector, dimension, what="query vector"), dtype=np.float64)
    scan = q64
    if distance is Distance.COSINE:
        norm = float(np.linalg.norm(q64))
        if norm == 0.0:
            raise ValidationError("the query vector is all zeros, which has no cosine similarity to anything")
        scan = q64 / norm
    q32 = scan.astype(np.float32)
    if not np.isfinite(q32).all():
        raise ValidationError(f"the query vector has values beyond float32's range (±{_F32_MAX:.4g})")
    return q64, q32



def positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"{what} must be a positive integer, got {value!r}")
    return value


def id_list(ids: Any) -> list[str]:
    """Ids as a list; a bare string is refused (iterating it would treat each character as an id)."""
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise ValidationError(f"ids must be a list of strings, got {type(ids).__name__} {ids!r:.80}")
    out = list(ids)
    for doc_id in out:
        if not isinstance(doc_id, str):
            raise ValidationError(f"document ids are strings, got {type(doc_id).__name__} {doc_id!r}")
    return out



def batches(documents: Iterable[Any], size: int = BATCH_SIZE) -> Iterator[list[Any]]:
    iterator = iter(documents)
    while batch := list(islice(iterator, size)):
        yield batch



def exact_scores(distance: Distance, vectors: np.ndarray, q64: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(distance, score)`` of stored vectors in float64, per the table on :class:`Distance`.

    Dot products and squared norms use the same summation, so a vector scored against itself gets a
    cosine of exactly 1 (``sqrt(a * a) == a`` in IEEE arithmetic)."""
    raw = np.empty(len(vectors), dtype=np.float64)
    q_squared = float((q64 * q64).sum())
    for start in range(0, len(vectors), _BLOCK):  # blocks bound the float64 copy when k is huge
        rows = vectors[start:start + _BLOCK].astype(np.float64)
        if distance is Distance.COSINE:
            norms = np.sqrt((rows * rows).sum(axis=1) * q_squared)
            norms[norms == 0.0] = 1.0
            raw[start:start + _BLOCK] = 1.0 - np.clip((rows * q64).sum(axis=1) / norms, -1.0, 1.0)
        elif distance is Distance.L2:
            raw[start:start + _BLOCK] = np.sqrt(((rows - q64) ** 2).sum(axis=1))
        else:
            raw[start:start + _BLOCK] = -(rows * q64).sum(axis=1)
    return raw, np.array([distance.score(float(d)) for d in raw], dtype=np.float64)
