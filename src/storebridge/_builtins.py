"""Every built-in backend, declared as data: one row each, nothing imported until first use.

A row with ``target=None`` is planned: it shows in ``list_registered()`` so the whole map is visible,
and ``create()`` says plainly that it is not shipped yet. Shipping a backend means filling in its
``target`` here and adding its package under ``adapters/``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .registry import BackendSpec, Kind

A = "storebridge.adapters"


def _declare(kind: Kind) -> Callable[..., BackendSpec]:
    def declare(name: str, target: str | None, **fields: Any) -> BackendSpec:
        return BackendSpec(name=name, kind=kind, target=target, **fields)

    return declare


_k, _c, _s = _declare("knowledge"), _declare("conversation"), _declare("state")

KNOWLEDGE = [
    _k("sqlite", f"{A}.sqlite.knowledge:SQLiteKnowledgeStore", extra="sqlite", schemes=("sqlite", "file"),
       description="embedded default: SQLite file, exact numpy search"),
    _k("chroma", f"{A}.chroma.knowledge:ChromaKnowledgeStore", extra="chroma", requires=("chromadb",), aliases=("chromadb",),
       schemes=("chroma", "chroma+http", "chroma+https", "chroma+local")),
    _k("qdrant", f"{A}.qdrant.knowledge:QdrantKnowledgeStore", extra="qdrant", requires=("qdrant_client",),
       schemes=("qdrant", "qdrant+http", "qdrant+https", "qdrant+local")),
    _k("pinecone", f"{A}.pinecone.knowledge:PineconeKnowledgeStore", extra="pinecone", requires=("pinecone",), schemes=("pinecone",)),
    _k("weaviate", f"{A}.weaviate.knowledge:WeaviateKnowledgeStore", extra="weaviate", requires=("weaviate",),
       schemes=("weaviate", "weaviate+http", "weaviate+https")),
    _k("lancedb", f"{A}.lancedb.knowledge:LanceDBKnowledgeStore", extra="lancedb", requires=("lancedb",), schemes=("lancedb", "lance")),
    _k("milvus", f"{A}.milvus.knowledge:MilvusKnowledgeStore", extra="milvus", requires=("pymilvus",), schemes=("milvus", "milvus+lite", "milvus+http", "milvus+https")),
    _k("pgvector", f"{A}.pgvector.knowledge:PgVectorKnowledgeStore", extra="pgvector", requires=("psycopg", "psycopg_pool"), schemes=("pgvector", "postgresql+pgvector")),
    _k("redis", f"{A}.redis.knowledge:RedisKnowledgeStore", extra="redis", requires=("redis",), schemes=("redis", "rediss")),
    _k("cassandra", f"{A}.cassandra.knowledge:CassandraKnowledgeStore", extra="cassandra", requires=("cassandra",),
       schemes=("cassandra", "cassandra+astra")),
    _k("clickhouse", f"{A}.clickhouse.knowledge:ClickHouseKnowledgeStore", extra="clickhouse", requires=("chdb",),
       schemes=("clickhouse", "clickhouse+http", "clickhouse+https", "chdb")),
    _k("mongodb_vector", f"{A}.mongodb.knowledge:MongoDBVectorKnowledgeStore", extra="mongodb", requires=("pymongo",), aliases=("mongodb_atlas", "mongo_vector"),
       schemes=("mongodb", "mongodb+srv")),
    _k("couchbase", f"{A}.couchbase.knowledge:CouchbaseKnowledgeStore", extra="couchbase", requires=("couchbase",), schemes=("couchbase", "couchbases")),
    _k("singlestore_vector", f"{A}.singlestore_vector.knowledge:SingleStoreVectorKnowledgeStore", extra="singlestore", requires=("singlestoredb",), aliases=("singlestore_v",),
       schemes=("singlestore", "singlestoredb")),
    _k("surrealdb_vector", f"{A}.surrealdb.knowledge:SurrealDBKnowledgeStore", extra="surrealdb", requires=("surrealdb",), aliases=("surrealdb_v",),
       schemes=("surrealdb", "surrealdb+ws", "surrealdb+wss", "surrealdb+http", "surrealkv", "surrealdb+mem")),
    _k("upstash_vector", f"{A}.upstash_vector.knowledge:UpstashVectorKnowledgeStore", extra="upstash", requires=("upstash_vector",), aliases=("upstash_v",),
       schemes=("upstash-vector",)),
    _k("lightrag", f"{A}.lightrag:LightRAGKnowledgeStore", extra="lightrag", requires=("lightrag",), schemes=("lightrag",)),
    _k("langchain", f"{A}.langchain.knowledge:LangChainKnowledgeStore", extra="langchain", requires=("langchain_core",), aliases=("langchain_adapter",),
       description="wraps any LangChain VectorStore"),
    _k("llamaindex", f"{A}.llamaindex.knowledge:LlamaIndexKnowledgeStore", extra="llamaindex", requires=("llama_index.core",),
       aliases=("llama_index", "llamaindex_adapter"), description="wraps any LlamaIndex vector store"),
    _k("cosmosdb", f"{A}.cosmosdb.knowledge:CosmosDBKnowledgeStore", extra="cosmosdb", requires=("azure.cosmos",),
       aliases=("cosmos", "azure_cosmos", "cosmosdb_vector"), schemes=("cosmosdb", "cosmos")),
]

CONVERSATION = [
    _c("sqlite", f"{A}.sqlite.conversation:SQLiteConversationStore", extra="sqlite", schemes=("sqlite", "file"),
       description="embedded default: SQLite file, WAL"),
    _c("async_sqlite", f"{A}.sqlite.conversation:async_sqlite_store", extra="sqlite",
       aliases=("aiosqlite", "sqlite_async"), schemes=("sqlite+aiosqlite", "sqlite+async"), flavour="async",
       description="the SQLite store's async face (one implementation, no schema drift)"),
    _c("json", f"{A}.jsonfiles:JSONConversationStore", extra="json", schemes=("json",),
       description="one JSON-lines file per session"),
    _c("postgres", f"{A}.postgres.conversation:PostgresConversationStore", extra="postgres", requires=("psycopg",),
       aliases=("neon", "cockroachdb", "crdb", "cockroach", "xata"),
       schemes=("postgresql", "postgres", "postgresql+psycopg", "cockroachdb", "neon")),
    _c("async_postgres", f"{A}.postgres.conversation:AsyncPostgresConversationStore", extra="async_postgres", requires=("asyncpg",), aliases=("asyncpg", "postgres_async"),
       schemes=("postgresql+asyncpg", "postgres+asyncpg"), flavour="async"),
    _c("mysql", f"{A}.mysql.conversation:MySQLConversationStore", extra="mysql", requires=("pymysql",), schemes=("mysql", "mysql+pymysql", "mariadb")),
    _c("async_mysql", f"{A}.mysql.conversation:AsyncMySQLConversationStore", extra="async_mysql", requires=("aiomysql",), aliases=("aiomysql", "mysql_async"),
       schemes=("mysql+aiomysql",), flavour="async"),
    _c("singlestore", f"{A}.singlestore.conversation:SingleStoreConversationStore", extra="singlestore", requires=("singlestoredb",), schemes=("singlestore", "singlestoredb")),
    _c("supabase", f"{A}.supabase.conversation:SupabaseConversationStore", extra="supabase", requires=("psycopg",), schemes=("supabase", "postgresql+supabase")),
    _c("surrealdb", f"{A}.surrealdb.conversation:SurrealDBConversationStore", extra="surrealdb", requires=("surrealdb",),
       schemes=("surrealdb", "surrealdb+ws", "surrealdb+wss", "surrealdb+http", "surrealkv", "surrealdb+mem")),
    _c("turso", f"{A}.turso.conversation:TursoConversationStore", extra="turso", requires=("libsql",), aliases=("libsql",), schemes=("libsql", "turso")),
    _c("langchain", f"{A}.langchain.conversation:LangChainConversationStore", extra="langchain", requires=("langchain_core",), aliases=("langchain_adapter",),
       description="wraps a LangChain BaseChatMessageHistory factory"),
    _c("llamaindex", f"{A}.llamaindex.conversation:LlamaIndexConversationStore", extra="llamaindex", requires=("llama_index.core",),
       aliases=("llama_index", "llamaindex_adapter"), description="wraps a LlamaIndex BaseChatStore"),
]

STATE = [
    _s("memory", f"{A}.memory:MemoryStateStore", extra="memory", schemes=("memory", "mem"),
       description="in process, thread-safe, optional snapshot file"),
    _s("sqlite", f"{A}.sqlite.state:SQLiteStateStore", extra="sqlite", schemes=("sqlite", "file"),
       description="embedded default: SQLite file with TTL"),
    _s("redis", f"{A}.redis.state:RedisStateStore", extra="redis", requires=("redis",), aliases=("valkey",),
       schemes=("redis", "rediss", "valkey", "unix")),
    _s("dynamodb", f"{A}.dynamodb:DynamoDBStateStore", extra="dynamodb", requires=("boto3",), schemes=("dynamodb",)),
    _s("firestore", f"{A}.firestore:FirestoreStateStore", extra="firestore", requires=("google.cloud.firestore",), schemes=("firestore",)),
    _s("mongodb", f"{A}.mongodb.state:MongoDBStateStore", extra="mongodb", requires=("pymongo",), schemes=("mongodb", "mongodb+srv")),
    _s("async_mongodb", f"{A}.mongodb.state:AsyncMongoDBStateStore", extra="mongodb", requires=("pymongo",), aliases=("motor", "mongodb_async"),
       schemes=("mongodb+async",), flavour="async"),
    _s("upstash", f"{A}.upstash.state:UpstashStateStore", extra="upstash", requires=("upstash_redis",), schemes=("upstash", "upstash-redis")),
    _s("gcs", f"{A}.gcs:GCSStateStore", extra="gcs", requires=("google.cloud.storage",), schemes=("gs", "gcs")),
    _s("langchain", f"{A}.langchain.state:LangChainStateStore", extra="langchain", requires=("langchain_core",), aliases=("langchain_adapter",),
       description="wraps a LangChain BaseStore"),
]
