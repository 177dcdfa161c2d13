"""The embedded defaults on SQLite: a knowledge store with exact search, a conversation store and a
state store with TTL. All three can share one database file (their tables do not overlap)."""
