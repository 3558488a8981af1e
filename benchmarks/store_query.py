"""Time the store queries behind one refresh of the terminal app: layer_table + summary.

The project has synthetic 3x3 conv layers (200 by default), a full score cache
of 9 candidate ratios per layer, a baseline, an auto-selected selection and a
few manual edits. The queries run through a read-only store, as the app polls.

Usage:
    python benchmarks/store_query.py [--layers 200] [--repeats 200] [--store PATH]

Prints the median and the 10th and 90th percentiles of each query in ms, once
with a score written by another connection before every refresh (as during a
search) and once with nothing written. The goal is a median under 20 ms for
layer_table + summary after a write.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

from store import open_store
from store.testing import create_synthetic_project

GOAL_MS = 20.0
CANDIDATES = 10  # candidate ratios 0.1 .. 0.9: 9 per layer


def build_store(path: Path, layers: int) -> None:
    with open_store(path) as store:
        create_synthetic_project(store, "bench", layers, candidates=CANDIDATES, target="0.5")
        store.auto_select("bench")
        names = [record.name for record in store.layers("bench")]
        for name, ratio in zip(names[::40], ("0.55", "0.3", "0.75", "0.45", "0.65")):
            store.set_layer_ratio("bench", name, ratio)


def time_ms(function, repeats: int, between=None) -> list[float]:
    """Time `function` `repeats` times; `between` runs untimed before each call."""
    timings = []
    for _ in range(repeats):
        if between is not None:
            between()
        start = time.perf_counter()
        function()
        timings.append((time.perf_counter() - start) * 1000)
    return timings


class ScoreWriter:
    """Writes one score per call through a second connection, as a running search does."""

    def __init__(self, path: Path):
        self.store = open_store(path)
        self.key = self.store.score_key("bench")
        self.layer = self.store.layers("bench")[0].name
        self.count = 0

    def __call__(self) -> None:
        self.count += 1
        self.store.put_score(self.key, self.layer, "0.1", 0.5 + self.count * 1e-6)


def describe(name: str, timings: list[float]) -> str:
    deciles = statistics.quantiles(timings, n=10)
    return f"{name:<24} median {statistics.median(timings):7.2f} ms   p10 {deciles[0]:7.2f}   p90 {deciles[-1]:7.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=200, help="number of eligible conv layers (default 200)")
    parser.add_argument("--repeats", type=int, default=200, help="timed repeats of each query (default 200)")
    parser.add_argument("--store", type=Path, help="store file to create; a temporary file by default")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        path = args.store or Path(folder) / "store.db"
        if path.exists():
            parser.error(f"--store {path} exists; give a path for a new file")
        build_store(path, args.layers)
        writer = ScoreWriter(path)
        with open_store(path, readonly=True) as store:
            def refresh():
                store.layer_table("bench")
                store.summary("bench")

            first = time_ms(refresh, 1)[0]
            changed = {
                "layer_table": time_ms(lambda: store.layer_table("bench"), args.repeats, writer),
                "summary": time_ms(lambda: store.summary("bench"), args.repeats, writer),
                "layer_table + summary": time_ms(refresh, args.repeats, writer),
            }
            unchanged = time_ms(refresh, args.repeats)
            rows = store.layer_table("bench")
        writer.store.close()

    scores = sum(len(row.scores) for row in rows)
    print(f"project: {len(rows)} layers, {scores} cached scores; Python {platform.python_version()}")
    print(f"first refresh, parsing the layer JSON: {first:.2f} ms")
    print("after another connection wrote a score (every refresh rereads the store):")
    for name, timings in changed.items():
        print("  " + describe(name, timings))
    print("with nothing written since the previous refresh (cached snapshot):")
    print("  " + describe("layer_table + summary", unchanged))
    median = statistics.median(changed["layer_table + summary"])
    verdict = "meets" if median < GOAL_MS else "misses"
    print(f"{verdict} the goal: median {median:.2f} ms < {GOAL_MS:.0f} ms for layer_table + summary after a write")


if __name__ == "__main__":
    main()
