"""The ``supabase`` conversation store: Supabase is PostgreSQL, so this is the ``postgres`` store
(psycopg 3, the shared SQL layer, JSONB, migrations) with Supabase's connection rules.

URLs: the connection string Supabase shows, e.g.
``postgresql://postgres.<project-ref>:<password>@aws-0-<region>.pooler.supabase.com:6543/postgres``, or
the same with ``supabase://`` (rewritten to ``postgresql://``; a ``supabase://`` URL without a port gets
6543). For Supabase hosts ``sslmode=require`` is added unless the URL sets ``sslmode``.

Ports: **6543 is the transaction pooler** (Supavisor/pgbouncer in transaction mode): consecutive
transactions of one client may run on different server connections, so session-level state does not
survive between them, server-side prepared statements included. On that port psycopg's automatic
prepare is off (``prepare_threshold=None``); everything else the store does fits transaction pooling
(every call is one transaction; the migrations' lock is ``pg_advisory_xact_lock``, released at commit).
5432 (session pooler or the direct host) behaves like any PostgreSQL server, prepared statements on.

Why Postgres directly and not Supabase's REST API (PostgREST, ``supabase-py``): an append must reserve
sequence numbers on the session row and insert the batch in **one transaction**; PostgREST runs each
HTTP request as its own transaction and has no multi-statement transactions, so the same guarantees
would need a SQL function installed in the user's database (``rpc``), plus row-level-security policies
or the service-role key, and every call would pay an HTTPS round trip and JSON serialisation on both
sides. The REST client would also make schema migrations impossible (PostgREST does not run DDL).
A Postgres connection gives the transactions, the migrations, and 5-10x lower latency per call; the
price is that the database password (not the anon key) is needed, as for any Postgres client.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from storebridge.adapters.postgres.conversation import PostgresConversationStore, parse_postgres_url
from storebridge.urls import StoreURL, parse_url

SCHEMES = frozenset({"supabase", "postgresql", "postgres"})
#: The port of Supabase's transaction pooler.
TRANSACTION_POOLER_PORT = 6543
_SUPABASE_HOSTS = (".supabase.com", ".supabase.co")
_UNSET: Any = object()


def supabase_url(url: str | StoreURL) -> StoreURL:
    """The PostgreSQL URL for a Supabase URL (``supabase://`` or ``postgresql[+supabase]://``)."""
    parsed = parse_url(url)
    if parsed.scheme == "postgresql" and parsed.driver == "supabase":
        parsed = dataclasses.replace(parsed, driver=None)
    if parsed.scheme == "supabase":
        parsed = dataclasses.replace(parsed, scheme="postgresql", driver=None,
                                     port=parsed.port or TRANSACTION_POOLER_PORT)
    parsed = parse_postgres_url(parsed, schemes=SCHEMES - {"supabase"})
    host = (parsed.host or "").lower()
    if host.endswith(_SUPABASE_HOSTS) and "sslmode" not in parsed.query:
        parsed = dataclasses.replace(parsed, query={**parsed.query, "sslmode": "require"})
    return parsed


class SupabaseConversationStore(PostgresConversationStore):
    """Conversation store on a Supabase project's Postgres (see the module docstring). Options are the
    ``postgres`` store's; ``prepare_threshold`` defaults to None on the transaction pooler's port."""

    backend_name = "supabase"

    def __init__(self, url: str, *, prepare_threshold: int | None = _UNSET, **options: Any) -> None:
        parsed = supabase_url(url)
        if prepare_threshold is _UNSET:
            prepare_threshold = None if parsed.port == TRANSACTION_POOLER_PORT else 5
        super().__init__(parsed.render(reveal=True), prepare_threshold=prepare_threshold, **options)


__all__ = ["TRANSACTION_POOLER_PORT", "SupabaseConversationStore", "supabase_url"]
