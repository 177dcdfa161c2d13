"""`import storebridge` must stay light: no backend client library, no numpy, no framework."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = [
    "numpy", "asyncio", "sqlite3", "chromadb", "qdrant_client", "lancedb", "pymilvus", "psycopg", "asyncpg",
    "pymysql", "aiomysql", "redis", "boto3", "pymongo", "langchain_core", "llama_index", "pydantic", "pinecone",
    "weaviate", "surrealdb", "libsql", "chdb", "google",
]


def test_import_storebridge_imports_no_backend_library() -> None:
    code = (
        "import sys, json, storebridge\n"
        "storebridge.CONVERSATION_STORES.list_registered()\n"
        "print(json.dumps(sorted(m for m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    loaded = set(json.loads(out))
    leaked = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert leaked == [], f"import storebridge loaded {leaked}"
