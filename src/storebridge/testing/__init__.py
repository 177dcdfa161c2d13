"""The conformance suite, shipped so plugin authors can run it on their own backends.

    import pytest
    from storebridge.testing import KnowledgeStoreSuite

    class TestMyStore(KnowledgeStoreSuite):
        @pytest.fixture
        def store_factory(self, tmp_path):
            # each call: a NEW store object over the SAME test database
            return lambda: MyStore(path=tmp_path / "db")

``store_factory`` is a fixture returning a zero-argument callable (for state stores it also takes an
optional keyword ``namespace``) that returns a new native store object, sync or async, over the same
test database. The suite closes every object it makes, runs every case on the sync face and on the
async face (fixture ``flavour``), gates cases on ``store.capabilities``, and expects the typed error
(``UnsupportedFilterError``, ``NotSupportedError``) wherever a backend does not declare a feature.

Needs ``pytest`` and ``pytest-asyncio`` (``pip install "storebridge[test]"``); importing this package is
the only thing that imports them.
"""

from ._facade import FLAVOURS, Flavour, StoreFacade
from ._suite import (
    NO_ENGINE_HERE,
    NOT_DECLARED,
    StoreFactory,
    StoreSuite,
    assert_same_json,
    expect_error,
    unique,
)
from .conversation import ConversationStoreSuite
from .knowledge import KnowledgeStoreSuite
from .state import StateStoreSuite

__all__ = [
    "FLAVOURS",
    "NOT_DECLARED",
    "NO_ENGINE_HERE",
    "ConversationStoreSuite",
    "Flavour",
    "KnowledgeStoreSuite",
    "StateStoreSuite",
    "StoreFacade",
    "StoreFactory",
    "StoreSuite",
    "assert_same_json",
    "expect_error",
    "unique",
]
