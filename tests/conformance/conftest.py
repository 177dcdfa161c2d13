"""The conformance suite over every engine in ``tests/engines.py``.

The cases live in :mod:`storebridge.testing` (shipped, so third-party backends run them unchanged);
the modules here only parametrize ``store_factory`` over the engines that run on this machine. Run
one backend with ``-k "sqlite-"``, one face with ``-k "-async"``.
"""
