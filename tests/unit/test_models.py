"""The record types: validation, Distance, frozen-ness and replace()."""

from __future__ import annotations

import dataclasses
import math
import time
from datetime import timezone

import numpy as np
import pytest

from storebridge.errors import DimensionMismatchError, StorebridgeError, ValidationError
from storebridge.models import (
    ROLES,
    CollectionInfo,
    ConversationMessage,
    ConversationSession,
    Distance,
    DocumentPage,
    KnowledgeDocument,
    SearchHit,
    new_id,
    validate_session_id,
    validate_vector,
)

# ---------------------------------------------------------------------------------------------------------
# ids


def test_new_id_is_unique_hex():
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000
    for value in list(ids)[:10]:
        assert len(value) == 32
        int(value, 16)


# ---------------------------------------------------------------------------------------------------------
# KnowledgeDocument


def test_document_defaults():
    doc = KnowledgeDocument(content="hello")
    assert doc.id and isinstance(doc.id, str)
    assert doc.embedding is None
    assert doc.metadata == {}
    assert doc.source_id is None
    assert KnowledgeDocument().id != KnowledgeDocument().id


def test_document_metadata_kept_as_given():
    metadata = {"nested": {"a": [1, None, "ü"]}, "n": None, "emoji": "🙂"}
    doc = KnowledgeDocument(id="d1", content="x", metadata=metadata)
    assert doc.metadata == {"nested": {"a": [1, None, "ü"]}, "n": None, "emoji": "🙂"}


@pytest.mark.parametrize("bad_id", ["", None, 5, b"id", ["a"]])
def test_document_id_must_be_a_non_empty_string(bad_id):
    with pytest.raises(ValidationError, match="id"):
        KnowledgeDocument(id=bad_id)


@pytest.mark.parametrize("content", [None, 5, b"bytes", ["a"]])
def test_document_content_must_be_a_string(content):
    with pytest.raises(ValidationError, match="content"):
        KnowledgeDocument(id="d", content=content)


@pytest.mark.parametrize("metadata", [None, [], [("a", 1)], "a=1", 5])
def test_document_metadata_must_be_a_dict(metadata):
    with pytest.raises(ValidationError, match="metadata"):
        KnowledgeDocument(id="d", metadata=metadata)


def test_document_embedding_becomes_a_list_of_floats():
    assert KnowledgeDocument(embedding=(1, 2, 3)).embedding == [1.0, 2.0, 3.0]
    emb = KnowledgeDocument(embedding=np.array([0.5, 1.5], dtype=np.float32)).embedding
    assert emb == [0.5, 1.5]
    assert isinstance(emb, list) and all(type(x) is float for x in emb)


@pytest.mark.parametrize("embedding", ["abc", 5, (object(),), ("x", "y"), (1.0, None)])
def test_document_bad_embedding_is_a_validation_error(embedding):
    with pytest.raises(ValidationError):
        KnowledgeDocument(id="d", embedding=embedding)


def test_document_is_frozen():
    doc = KnowledgeDocument(id="d", content="x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        doc.content = "y"  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        doc.extra = 1  # type: ignore[attr-defined]


def test_document_replace():
    doc = KnowledgeDocument(id="d", content="x", metadata={"a": 1}, source_id="s")
    new = doc.replace(content="y", metadata={"b": 2})
    assert new is not doc
    assert (new.id, new.content, new.metadata, new.source_id) == ("d", "y", {"b": 2}, "s")
    assert (doc.content, doc.metadata) == ("x", {"a": 1})
    assert new == KnowledgeDocument(id="d", content="y", metadata={"b": 2}, source_id="s")


def test_document_replace_validates():
    doc = KnowledgeDocument(id="d")
    with pytest.raises(ValidationError):
        doc.replace(id="")
    with pytest.raises(ValidationError):
        doc.replace(metadata="nope")
    assert doc.replace(embedding=(1, 2)).embedding == [1.0, 2.0]


def test_documents_need_keywords():
    with pytest.raises(TypeError):
        KnowledgeDocument("d", "content")  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------------------
# validate_vector


def test_validate_vector_returns_floats():
    out = validate_vector([1, 2.5, -3])
    assert out == [1.0, 2.5, -3.0]
    assert all(type(x) is float for x in out)


def test_validate_vector_accepts_numpy_and_tuples():
    assert validate_vector(np.array([1, 2, 3], dtype=np.float32), 3) == [1.0, 2.0, 3.0]
    assert validate_vector((0.1, 0.2), 2) == [0.1, 0.2]
    assert all(type(x) is float for x in validate_vector(np.arange(4, dtype=np.int64)))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, np.float32("nan")])
def test_validate_vector_refuses_nan_and_infinity(bad):
    with pytest.raises(ValidationError, match="NaN or infinity"):
        validate_vector([0.1, bad, 0.3])


def test_validate_vector_wrong_dimension():
    with pytest.raises(DimensionMismatchError) as info:
        validate_vector([1.0, 2.0], 3)
    assert "2" in str(info.value) and "3" in str(info.value)
    assert isinstance(info.value, ValidationError)
    with pytest.raises(DimensionMismatchError):
        validate_vector([1.0] * 4, 3)
    assert validate_vector([1.0] * 3, 3) == [1.0] * 3


def test_validate_vector_empty():
    with pytest.raises(ValidationError, match="empty"):
        validate_vector([])


@pytest.mark.parametrize("bad", [None, 5, [1.0, None], [1.0, "x"], [[1.0, 2.0]], [1.0, {}]])
def test_validate_vector_non_numbers(bad):
    with pytest.raises(ValidationError):
        validate_vector(bad)


@pytest.mark.parametrize("bad", ["123", "1.5", b"123", bytearray(b"12")])
def test_validate_vector_refuses_text(bad):
    # text is a sequence of characters (bytes of ints), not of numbers: "123" is not the vector [1, 2, 3]
    with pytest.raises(ValidationError):
        validate_vector(bad)
    with pytest.raises(ValidationError):
        KnowledgeDocument(id="d", embedding=bad)


def test_validate_vector_names_what():
    with pytest.raises(ValidationError, match="query vector"):
        validate_vector([math.nan], what="query vector")


# ---------------------------------------------------------------------------------------------------------
# Distance


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cosine", Distance.COSINE),
        ("COSINE", Distance.COSINE),
        ("cos", Distance.COSINE),
        ("Cos", Distance.COSINE),
        ("l2", Distance.L2),
        ("L2", Distance.L2),
        ("euclidean", Distance.L2),
        ("Euclidean", Distance.L2),
        ("euclid", Distance.L2),
        ("dot", Distance.DOT),
        ("ip", Distance.DOT),
        ("IP", Distance.DOT),
        ("inner_product", Distance.DOT),
        ("dot_product", Distance.DOT),
        (Distance.L2, Distance.L2),
    ],
)
def test_distance_parse(text, expected):
    assert Distance.parse(text) is expected


@pytest.mark.parametrize("text", ["manhattan", "", "cosine ", "hamming", None, 3])
def test_distance_parse_unknown(text):
    with pytest.raises(ValidationError) as info:
        Distance.parse(text)
    message = str(info.value)
    assert "'cosine'" in message and "'l2'" in message and "'dot'" in message


def test_distance_is_a_string_enum():
    assert Distance.COSINE == "cosine"
    assert Distance("l2") is Distance.L2
    assert {d.value for d in Distance} == {"cosine", "l2", "dot"}


@pytest.mark.parametrize(
    ("distance", "raw", "score"),
    [
        (Distance.COSINE, 0.0, 1.0),
        (Distance.COSINE, 1.0, 0.0),
        (Distance.COSINE, 2.0, -1.0),
        (Distance.COSINE, 0.25, 0.75),
        (Distance.L2, 0.0, 1.0),
        (Distance.L2, 1.0, 0.5),
        (Distance.L2, 3.0, 0.25),
        (Distance.DOT, -5.0, 5.0),
        (Distance.DOT, 2.0, -2.0),
        (Distance.DOT, 0.0, 0.0),
    ],
)
def test_distance_score(distance, raw, score):
    assert distance.score(raw) == pytest.approx(score)


def test_scores_are_higher_is_better():
    for distance in Distance:
        assert distance.score(0.1) > distance.score(0.9)


def test_cosine_score_is_the_similarity():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([-1.0, 0.5, 2.0])
    similarity = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    assert Distance.COSINE.score(1 - similarity) == pytest.approx(similarity)
    assert Distance.DOT.score(-float(a @ b)) == pytest.approx(float(a @ b))
    l2 = float(np.linalg.norm(a - b))
    assert Distance.L2.score(l2) == pytest.approx(1 / (1 + l2))


def test_search_hit_and_collection_info():
    doc = KnowledgeDocument(id="d9")
    hit = SearchHit(document=doc, score=0.9, distance=0.1)
    assert hit.id == "d9"
    with pytest.raises(dataclasses.FrozenInstanceError):
        hit.score = 1.0  # type: ignore[misc]
    info = CollectionInfo("c", 3)
    assert info.distance is Distance.COSINE
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.dimension = 4  # type: ignore[misc]
    page = DocumentPage(documents=[doc], next_cursor=None)
    assert page.documents == [doc] and page.next_cursor is None


# ---------------------------------------------------------------------------------------------------------
# Sessions


@pytest.mark.parametrize(
    "session_id",
    ["s", "a" * 512, "../../etc/passwd", "a'; DROP TABLE sessions; --", "ünï 🙂", "with space", "a/b\\c", "\n"],
)
def test_session_ids_are_data(session_id):
    assert validate_session_id(session_id) == session_id
    assert ConversationSession(session_id=session_id).session_id == session_id


@pytest.mark.parametrize("session_id", ["", None, 5, b"s", "a" * 513, "a\x00b", "\x00"])
def test_bad_session_ids(session_id):
    with pytest.raises(ValidationError, match="session_id"):
        validate_session_id(session_id)
    with pytest.raises(ValidationError):
        ConversationSession(session_id=session_id)


def test_session_defaults_and_times():
    before = time.time()
    session = ConversationSession(session_id="s1", user_id="u")
    after = time.time()
    assert before <= session.created_at <= after
    assert before <= session.updated_at <= after
    assert session.state == {} and session.metadata == {}
    assert session.agent_id is None and session.name is None
    assert session.created_datetime.tzinfo is not None
    assert session.created_datetime.utcoffset() == timezone.utc.utcoffset(None)
    assert session.created_datetime.timestamp() == pytest.approx(session.created_at)
    assert session.updated_datetime.timestamp() == pytest.approx(session.updated_at)


@pytest.mark.parametrize(("field", "value"), [("state", []), ("metadata", "x"), ("state", None), ("metadata", 1)])
def test_session_state_and_metadata_must_be_dicts(field, value):
    with pytest.raises(ValidationError):
        ConversationSession(session_id="s", **{field: value})


def test_session_is_frozen_and_replace_works():
    session = ConversationSession(session_id="s", name="old", state={"step": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        session.name = "new"  # type: ignore[misc]
    new = session.replace(name="new", updated_at=session.updated_at + 10)
    assert (new.name, new.session_id, new.state) == ("new", "s", {"step": 1})
    assert session.name == "old"
    assert new.updated_at == session.updated_at + 10
    assert new.created_at == session.created_at
    with pytest.raises(ValidationError):
        session.replace(session_id="")
    with pytest.raises(ValidationError):
        session.replace(state=[1])


# ---------------------------------------------------------------------------------------------------------
# Messages


@pytest.mark.parametrize("role", sorted(ROLES))
def test_every_role_is_accepted(role):
    assert ConversationMessage(role=role, content="hi").role == role


def test_roles():
    assert ROLES == {"system", "user", "assistant", "tool", "function", "developer"}


@pytest.mark.parametrize("role", ["", "User", "ASSISTANT", "admin", "human", "ai", None, 1])
def test_bad_role(role):
    with pytest.raises(ValidationError, match="role"):
        ConversationMessage(role=role)


def test_role_is_required():
    with pytest.raises(TypeError):
        ConversationMessage(content="x")  # type: ignore[call-arg]


def test_message_defaults():
    before = time.time()
    message = ConversationMessage(role="user", content="hi")
    assert message.session_id == ""
    assert message.sequence is None
    assert message.tool_calls is None and message.tool_call_id is None
    assert message.metadata == {}
    assert len(message.id) == 32
    assert before <= message.created_at <= time.time()
    assert message.created_datetime.tzinfo is not None
    assert ConversationMessage(role="user").id != ConversationMessage(role="user").id


@pytest.mark.parametrize("bad_id", ["", None, 3])
def test_message_id_must_be_a_non_empty_string(bad_id):
    with pytest.raises(ValidationError, match="id"):
        ConversationMessage(id=bad_id, role="user")


@pytest.mark.parametrize("content", [None, 3, {"type": "text"}, [{"type": "text", "text": "x"}]])
def test_message_content_must_be_a_string(content):
    with pytest.raises(ValidationError, match="content"):
        ConversationMessage(role="user", content=content)


@pytest.mark.parametrize("tool_calls", [{"id": "c1"}, "call", 5, ({"id": "c1"},)])
def test_tool_calls_must_be_a_list(tool_calls):
    with pytest.raises(ValidationError, match="tool_calls"):
        ConversationMessage(role="assistant", tool_calls=tool_calls)


def test_tool_calls_and_tool_message():
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    assistant = ConversationMessage(role="assistant", tool_calls=calls)
    assert assistant.tool_calls == calls
    tool = ConversationMessage(role="tool", content="42", tool_call_id="c1")
    assert tool.tool_call_id == "c1"


@pytest.mark.parametrize("metadata", [None, [], "x"])
def test_message_metadata_must_be_a_dict(metadata):
    with pytest.raises(ValidationError, match="metadata"):
        ConversationMessage(role="user", metadata=metadata)


def test_message_is_frozen_and_replace_works():
    message = ConversationMessage(id="m1", role="user", content="hi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.content = "x"  # type: ignore[misc]
    bound = message.replace(session_id="s1", sequence=3)
    assert (bound.id, bound.session_id, bound.sequence, bound.content) == ("m1", "s1", 3, "hi")
    assert message.session_id == "" and message.sequence is None
    with pytest.raises(ValidationError):
        message.replace(role="robot")


def test_validation_errors_are_storebridge_and_value_errors():
    with pytest.raises(StorebridgeError):
        ConversationMessage(role="robot")
    with pytest.raises(ValueError):
        ConversationMessage(role="robot")
