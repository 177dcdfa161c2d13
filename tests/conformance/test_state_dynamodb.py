"""The state conformance suite on DynamoDB, against the session's moto server (or the endpoint in
``STOREBRIDGE_TEST_DYNAMODB_URL``). One table for the module, as apps use one: every test's namespaces are
cleared after it (``tests/servers/moto.py``), and namespaces are exactly the isolation the store promises."""

from __future__ import annotations

import pytest

from storebridge.testing import StateStoreSuite, StoreFactory
from tests.servers.moto import MotoServer, dynamodb_state_factory

pytestmark = pytest.mark.engine("dynamodb")


class TestDynamoDBState(StateStoreSuite):
    @pytest.fixture
    def store_factory(self, moto_server: MotoServer, dynamodb_table: str,
                      request: pytest.FixtureRequest) -> StoreFactory:
        """``dynamodb_table`` (``tests/servers/moto.py``): one table for this module."""
        return dynamodb_state_factory(moto_server, dynamodb_table, request)
