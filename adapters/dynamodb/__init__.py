"""The ``dynamodb`` state backend: keys with TTL in one DynamoDB table, namespaces as partitions.

    DynamoDBStateStore("dynamodb://us-east-1/my_state?namespace=app")
    DynamoDBStateStore("dynamodb://us-east-1/my_state?endpoint_url=http://127.0.0.1:8000")  # Local / moto
    DynamoDBStateStore(table="my_state", namespace="app", client=boto3.client("dynamodb"))
"""

from .state import DynamoDBStateStore

__all__ = ["DynamoDBStateStore"]
