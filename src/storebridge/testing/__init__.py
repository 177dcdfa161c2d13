"""The conformance suite, shipped so plugin authors can run it on their own backends."""
