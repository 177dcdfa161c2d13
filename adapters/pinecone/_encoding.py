"""The record layout the Pinecone and Upstash Vector adapters share: how filter facts are spelled as
tokens, the payload that keeps a document exact, engine ids, and size-bounded write requests. Pure
Python, no client import, so the unit tests pin it without a server.

Why tokens. Both engines' metadata filters differ from FILTERS.md where it matters most: Pinecone's
``$ne`` skips records that lack the field (reported 2024, haystack-core-integrations#590) and has
no ``$not``; Upstash writes booleans as ``1``/``0`` (so ``True`` would equal ``1``) and documents
no escaping for string literals. So the adapters never filter on the user's own fields. Each record
carries:

* ``_sb_t``: a list of strings, present on every record (it always holds ``"doc"``), with one token
  per fact a filter can ask about a top-level metadata key ``k`` (the facts of
  :mod:`storebridge.filter_facts`, spelled here):

  ========================  ===========================================================
  token                     fact
  ========================  ===========================================================
  ``p.<h(k)>``              ``k`` is present and not None (``$exists``)
  ``s.<h(k, v)>``           ``k`` holds the string ``v``
  ``n.<h(k, canon(v))>``    ``k`` holds the number ``v`` (int or float, never bool)
  ``b.<h(k, "1"/"0")>``     ``k`` holds the bool ``v``
  ``q.<h(k)>``              ``k`` holds a number (used to negate range comparisons)
  ``ls.`` / ``ln.`` / ``lb.``  ``k`` is a list with that string / number / bool element
  ========================  ===========================================================

  ``h`` is a 96-bit BLAKE2b digest of the key and the value joined by NUL (keys cannot hold NUL),
  so a token is ``[a-z.0-9]`` only: no user text ever reaches a filter expression, whatever it
  holds (quotes, backslashes, operators, NUL, any unicode), and no length limit of the engine's
  string handling matters. ``canon`` is :func:`storebridge.filter_facts.canonical_number`: values
  Python calls equal get the same text (``1`` and ``1.0`` are ``"1"``; ``True`` has a token kind of
  its own).
* ``_sb_n_<h(k)>``: the number itself, for range comparisons, on records where ``k`` is a number.

Filters are the negation-normal form of :mod:`storebridge.filter_facts` over these fields: "the token
list has one of these" (positive or negated: the list is never missing, so a negation never meets a
missing field) and range comparisons, which only ever need to be true on numbers:

==============  ====================================================================
operator        compiled to
==============  ====================================================================
eq / ne         has / has-not the typed equality token
in / nin        has any / has none of the tokens (``in []`` is false, ``nin []`` true)
exists          has / has-not ``p.``
contains        has the typed list-element token (false on non-lists: no such token)
gt gte lt lte   ``_sb_n_<h(k)> <op> v`` (bounds no double holds decided here); negated: has-not
                ``q.`` OR the opposite comparison
and / or / not  negation is pushed to the leaves (De Morgan), so the result has no NOT
==============  ====================================================================

Range comparisons run in the engines' float64, so integers beyond 2**53 compare rounded; equality
uses the exact tokens.

The rest of a document (content, source id, the user's metadata as JSON text, so ``1.0`` stays a float
and None and nesting are kept) is the payload (:func:`payload`), stored beside the tokens.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from storebridge.errors import ValidationError
from storebridge.filter_facts import Fact, Token, Value, field_facts
from storebridge.filters import Scalar
from storebridge.models import KnowledgeDocument
from storebridge.vectors import METADATA_JSON

TOKENS_FIELD = "_sb_t"
NUMBER_FIELD_PREFIX = "_sb_n_"
#: On every document record; reserved records (catalogs, markers, overflow chunks) lack it.
DOC_TOKEN = "doc"


def digest(*parts: str) -> str:
    """96 bits of BLAKE2b over the parts joined by NUL, as 24 hex digits."""
    return hashlib.blake2b("\x00".join(parts).encode("utf-8"), digest_size=12).hexdigest()


def token_text(token: Token) -> str:
    """The spelling of a fact in ``_sb_t`` (see the module docstring)."""
    if token.fact is Fact.PRESENT:
        return f"p.{digest(token.key)}"
    if token.fact is Fact.NUMBER:
        return f"q.{digest(token.key)}"
    assert token.value is not None
    prefix = "l" if token.fact is Fact.ELEMENT else ""
    return f"{prefix}{token.value.kind}.{digest(token.key, token.value.text)}"


def presence_token(key: str) -> str:
    return token_text(Token(Fact.PRESENT, key))


def number_kind_token(key: str) -> str:
    return token_text(Token(Fact.NUMBER, key))


def equality_token(key: str, value: Scalar, *, element: bool = False) -> str:
    """The token of ``key == value`` (``element``: of a list element of ``key`` equal to ``value``)."""
    return token_text(Token(Fact.ELEMENT if element else Fact.EQUALS, key, Value.of(value)))


def number_field(key: str) -> str:
    return f"{NUMBER_FIELD_PREFIX}{digest(key)}"


def index_fields(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a record carries for filtering: the token list (always with ``"doc"``) and the
    numeric copies. Nested values and None are not indexed (nested keys are not declared)."""
    tokens: dict[str, None] = {DOC_TOKEN: None}
    numbers: dict[str, Any] = {}
    for facts in field_facts(metadata):
        tokens.update(dict.fromkeys(token_text(token) for token in facts.tokens()))
        if facts.number is not None:
            numbers[number_field(facts.key)] = facts.number
    return {TOKENS_FIELD: list(tokens), **numbers}


def check_index_size(doc: KnowledgeDocument, size: Callable[[Any], int], limit: int, engine: str) -> None:
    """Refuse a document whose filter fields take more than ``limit`` (as ``size`` measures them)."""
    if size(index_fields(doc.metadata)) > limit:
        raise ValidationError(
            f"metadata of document {doc.id!r} has too many filterable fields for {engine} per vector; nest the "
            "fields that need no filtering in a dict")


# -- payloads and requests ---------------------------------------------------------------------------------


def payload(doc: KnowledgeDocument) -> str:
    """Content, source id and metadata as JSON text that loads back equal, types included."""
    return METADATA_JSON.encode({"c": doc.content, "s": doc.source_id, "m": dict(doc.metadata)})


def document(engine_id: str, text: str, embedding: list[float] | None) -> KnowledgeDocument:
    """The document a record holds: its id (decoded) and its :func:`payload`."""
    data = json.loads(text)
    return KnowledgeDocument(id=decode_id(engine_id), content=data["c"], source_id=data["s"], metadata=data["m"],
                             embedding=embedding)


def request_batches(records: list[dict[str, Any]], size: Callable[[Any], int], max_bytes: int,
                    max_records: int | None = None) -> Iterator[list[dict[str, Any]]]:
    """Records in write requests of at most ``max_bytes`` (as ``size`` measures each record) and
    ``max_records``; a record larger than ``max_bytes`` goes alone (the engine says if it is too large)."""
    batch: list[dict[str, Any]] = []
    used = 0
    for record in records:
        record_size = size(record)
        if batch and ((max_records is not None and len(batch) >= max_records) or used + record_size > max_bytes):
            yield batch
            batch, used = [], 0
        batch.append(record)
        used += record_size
    if batch:
        yield batch


# -- document ids ----------------------------------------------------------------------------------------

#: Ids of records the adapters write for themselves start with this; no document id maps onto it.
RESERVED_ID_PREFIX = "~~"


def encode_id(document_id: str) -> str:
    """The engine id of a document: the id itself when it is printable ASCII not starting with ``~``,
    else ``~`` and the hex of its UTF-8 (engines take ASCII ids; hex never starts with ``~``)."""
    if document_id.isascii() and document_id.isprintable() and not document_id.startswith("~"):
        return document_id
    return "~" + document_id.encode("utf-8").hex()


def decode_id(engine_id: str) -> str:
    if engine_id.startswith("~"):
        return bytes.fromhex(engine_id[1:]).decode("utf-8")
    return engine_id


def is_reserved_id(engine_id: str) -> bool:
    return engine_id.startswith(RESERVED_ID_PREFIX)


__all__ = [
    "DOC_TOKEN",
    "NUMBER_FIELD_PREFIX",
    "RESERVED_ID_PREFIX",
    "TOKENS_FIELD",
    "check_index_size",
    "decode_id",
    "digest",
    "document",
    "encode_id",
    "equality_token",
    "index_fields",
    "is_reserved_id",
    "number_field",
    "number_kind_token",
    "payload",
    "presence_token",
    "request_batches",
    "token_text",
]
