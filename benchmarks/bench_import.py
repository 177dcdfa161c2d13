"""How long `import storebridge` takes in a fresh interpreter, against bare `python -c pass`.

Target (DESIGN.md): <= 80 ms, nothing heavy imported. Median of N runs each.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def _median_seconds(code: str, runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    bare = _median_seconds("pass", args.runs)
    ours = _median_seconds("import storebridge", args.runs)
    print(f"bare python: {bare * 1000:.1f} ms; import storebridge: {ours * 1000:.1f} ms; "
          f"storebridge's own share: {(ours - bare) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
