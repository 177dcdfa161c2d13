"""The shared SQL layer of the server-backed conversation stores (postgres, async_postgres, mysql,
async_mysql, singlestore, supabase).

* :mod:`.dialects`: what differs between engines, declared as data.
* :mod:`.schema`: the tables, their migrations, and the migration runner (a plan).
* :mod:`.operations`: every statement and every operation, written once as plans.
* :mod:`.plan`: what a plan is; :mod:`.runner`: transactions, retries and typed errors for sync and
  async drivers; :mod:`.dbapi`: statements on DB-API connections; :mod:`.pool`: a thread-safe pool for
  drivers without one.
* :mod:`.store`: the sync and async store classes the engine adapters subclass.
* :mod:`.rows`: rows <-> models (the SQLite store's converters, plus JSONB-safe JSON).

Nothing here imports a driver: the engine packages do, when a store is built.
"""

from .dialects import ASYNCPG, MYSQL, POSTGRES, SINGLESTORE, SINGLESTORE_SHARDED, Dialect, Failure
from .operations import ConversationSQL
from .plan import Call, Op, Plan
from .runner import AsyncRunner, RetryPolicy, SyncRunner, Target
from .schema import COMPONENT, SQLMigration, Step, conversation_migrations, migrate_plan
from .store import AsyncSQLConversationStore, SQLConversationStore

__all__ = [
    "ASYNCPG",
    "COMPONENT",
    "MYSQL",
    "POSTGRES",
    "SINGLESTORE",
    "SINGLESTORE_SHARDED",
    "AsyncRunner",
    "AsyncSQLConversationStore",
    "Call",
    "ConversationSQL",
    "Dialect",
    "Failure",
    "Op",
    "Plan",
    "RetryPolicy",
    "SQLConversationStore",
    "SQLMigration",
    "Step",
    "SyncRunner",
    "Target",
    "conversation_migrations",
    "migrate_plan",
]
