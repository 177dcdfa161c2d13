"""storebridge: one registry for knowledge, conversation and state stores."""
