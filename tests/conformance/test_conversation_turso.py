"""The conversation conformance suite on ``turso`` (libsql client), on a local libSQL file: the engine is
embedded in the client, so these cases run on every machine and never skip. Three ways of naming the
same kind of database: a ``turso:///`` URL, a ``libsql:///`` URL and ``path=``.

Remote Turso databases (``libsql://<db>.turso.io``) and embedded replicas are not exercised here."""

from __future__ import annotations

from pathlib import Path

import pytest

from storebridge.testing import ConversationStoreSuite, StoreFactory


class TestTursoConversation(ConversationStoreSuite):
    @pytest.fixture(params=["turso-url", "libsql-url", "path"])
    def store_factory(self, request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
        from storebridge.adapters.turso import TursoConversationStore

        db = tmp_path / "conversation.db"
        if request.param == "turso-url":
            return lambda: TursoConversationStore(f"turso:///{db}")
        if request.param == "libsql-url":
            return lambda: TursoConversationStore(f"libsql:///{db}", table_prefix="lib_")
        return lambda: TursoConversationStore(path=str(db))
