"""The state conformance suite on DynamoDB, against the session's moto server (or the endpoint in
``STOREBRIDGE_TEST_DYNAMODB_URL``). One table for the session, as apps use it: every test has its
own namespace, which is exactly the isolation the store promises."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from storebridge.testing import StateStoreSuite, StoreFactory
from tests.engines import unique_prefix
from tests.servers.moto import MotoServer, moto_server  # noqa: F401  (the session fixture)

pytestmark = pytest.mark.engine("dynamodb")


@pytest.fixture(scope="module")
def dynamodb_table(moto_server: MotoServer) -> Iterator[str]:  # noqa: F811
    """A fresh table name; the first store creates the table. Deleted at the end (real endpoints cost)."""
    import boto3

    table = unique_prefix("sb_state_").rstrip("_")
    yield table
    client = boto3.session.Session().client("dynamodb", region_name=moto_server.region,
                                            endpoint_url=moto_server.endpoint_url, **moto_server.credentials)
    try:
        client.delete_table(TableName=table)
    except client.exceptions.ResourceNotFoundException:
        pass
    finally:
        client.close()


class TestDynamoDBState(StateStoreSuite):
    @pytest.fixture
    def store_factory(self, moto_server: MotoServer, dynamodb_table: str) -> StoreFactory:  # noqa: F811
        from storebridge.adapters.dynamodb import DynamoDBStateStore

        url = f"dynamodb://{moto_server.region}/{dynamodb_table}"
        return lambda namespace="": DynamoDBStateStore(
            url, namespace=namespace, endpoint_url=moto_server.endpoint_url, **moto_server.credentials
        )
