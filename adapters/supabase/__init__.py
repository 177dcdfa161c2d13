"""Supabase stores: the ``supabase`` conversation store (Postgres through psycopg 3).

Importing this package imports no driver."""

from .conversation import SupabaseConversationStore

__all__ = ["SupabaseConversationStore"]
