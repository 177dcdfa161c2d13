"""Exact top-10 search of the SQLite knowledge store against bare numpy on the same data.

    .venv/bin/python benchmarks/bench_knowledge_search.py [--n 100000] [--dim 384] [--queries 50]

Builds ``n`` seeded random float32 vectors (metadata ``{"group": i % 10}``), ingests them into a
temporary SQLite file from a generator (so in batches, as a large import would), and times, as the
median over ``queries`` after warm-up:

* unfiltered top-10 against numpy's ``M @ q`` + ``argpartition`` on the same pre-normalised matrix;
* a filter matching 20% (``{"group": {"$in": [1, 2]}}``), repeated (served from the filter cache)
  and cold (a different but equivalent filter each query, so SQLite evaluates it every time),
  against numpy's ``M @ q`` restricted to the same 20% of rows, known in advance;

checks recall@10 = 1.0 against numpy for every query, and prints milliseconds and ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from storebridge.adapters.sqlite.knowledge import BATCH_SIZE, SQLiteKnowledgeStore
from storebridge.models import KnowledgeDocument

GROUPS = 10
K = 10


def paired_median_ms(ours: Callable[[int], Any], bare: Callable[[int], Any], queries: int,
                     warmup: int = 3) -> tuple[float, float]:
    """Median milliseconds of both, timed alternately query by query, so load from other processes on
    the machine hits both sides alike (the ratio is the figure to trust)."""
    for i in range(warmup):
        ours(i)
        bare(i)
    ours_times: list[float] = []
    bare_times: list[float] = []
    for i in range(queries):
        for run, times in ((ours, ours_times), (bare, bare_times)):
            start = time.perf_counter()
            run(i)
            times.append(time.perf_counter() - start)
    return statistics.median(ours_times) * 1000, statistics.median(bare_times) * 1000


def numpy_top(matrix: np.ndarray, q: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """The baseline: one product and an argpartition, best first (``rows`` restricts the scores)."""
    scores = matrix @ q
    if rows is not None:
        scores = scores[rows]
    top = np.argpartition(scores, len(scores) - K)[-K:]
    top = top[np.argsort(-scores[top])]
    return top if rows is None else rows[top]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="documents (default 100000)")
    parser.add_argument("--dim", type=int, default=384, help="dimension (default 384)")
    parser.add_argument("--queries", type=int, default=50, help="timed queries per case (default 50)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    vectors = rng.standard_normal((args.n, args.dim), dtype=np.float32)
    queries = rng.standard_normal((args.queries + 3, args.dim), dtype=np.float32)
    groups = np.arange(args.n) % GROUPS
    normalised = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    filtered_rows = np.flatnonzero(np.isin(groups, [1, 2]))

    def documents() -> Iterator[KnowledgeDocument]:
        for i in range(args.n):
            yield KnowledgeDocument(id=f"doc{i}", content=f"document {i}", embedding=vectors[i].tolist(),
                                    metadata={"group": int(groups[i])})

    with tempfile.TemporaryDirectory() as tmp, SQLiteKnowledgeStore(path=Path(tmp) / "bench.db") as store:
        store.create_collection("bench", args.dim, "cosine")
        start = time.perf_counter()
        store.insert("bench", documents())
        ingest = time.perf_counter() - start
        start = time.perf_counter()
        store.search("bench", queries[0].tolist(), k=K)
        first = time.perf_counter() - start

        query_lists = [q.tolist() for q in queries]
        unit_queries = [q / np.linalg.norm(q) for q in queries]

        def recall(hits: list[Any], expected: np.ndarray) -> float:
            return len({hit.id for hit in hits} & {f"doc{i}" for i in expected}) / K

        recalls = [recall(store.search("bench", query_lists[i], k=K), numpy_top(normalised, unit_queries[i]))
                   for i in range(len(queries))]
        recalls += [recall(store.search("bench", query_lists[i], k=K, filter={"group": {"$in": [1, 2]}}),
                           numpy_top(normalised, unit_queries[i], filtered_rows)) for i in range(len(queries))]

        def unfiltered(i: int) -> Any:
            return store.search("bench", query_lists[i], k=K)

        def repeated_filter(i: int) -> Any:
            return store.search("bench", query_lists[i], k=K, filter={"group": {"$in": [1, 2]}})

        def new_filter(i: int) -> Any:
            # Matches the same 20% but is a different filter every time: never a filter-cache hit.
            return store.search("bench", query_lists[i], k=K, filter={"group": {"$in": [1, 2, -1 - i]}})

        def bare(i: int) -> Any:
            return numpy_top(normalised, unit_queries[i])

        def bare_filtered(i: int) -> Any:
            return numpy_top(normalised, unit_queries[i], filtered_rows)

        ours, numpy_ms = paired_median_ms(unfiltered, bare, args.queries)
        ours_warm, numpy_filtered = paired_median_ms(repeated_filter, bare_filtered, args.queries)
        ours_cold, numpy_filtered_2 = paired_median_ms(new_filter, bare_filtered, args.queries, warmup=0)

    print(f"data: {args.n} x {args.dim} float32, cosine, top-{K}, median of {args.queries} queries; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"ingest (generator, batches of {BATCH_SIZE}, durable commits, building the documents included): "
          f"{ingest:.2f} s = {args.n / ingest:,.0f} docs/s")
    print(f"first search (loads the matrix from SQLite): {first * 1000:.0f} ms")
    print(f"recall@10 vs numpy: min {min(recalls):.3f} over {len(recalls)} queries")
    print(f"unfiltered:           storebridge {ours:7.2f} ms   numpy {numpy_ms:7.2f} ms   ratio {ours / numpy_ms:.2f}")
    print(f"filtered 20%, cached: storebridge {ours_warm:7.2f} ms   numpy {numpy_filtered:7.2f} ms   "
          f"ratio {ours_warm / numpy_filtered:.2f}")
    print(f"filtered 20%, cold:   storebridge {ours_cold:7.2f} ms   numpy {numpy_filtered_2:7.2f} ms   "
          f"ratio {ours_cold / numpy_filtered_2:.2f}")
    return 0 if min(recalls) == 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
