"""The README demo: every store on the embedded defaults, no server, no configuration.

The code lives in ``storebridge.cli.demo`` (read it there: it is the example), so that this script and
``storebridge demo`` run the same thing. Run it twice: the second run resumes the same conversation
(same session_id) and finds the documents and the counter already there. Set STOREBRIDGE_DB to choose
the file (default ./.storebridge/storebridge.db).
"""

from __future__ import annotations

from storebridge.cli.demo import run

if __name__ == "__main__":
    run()
