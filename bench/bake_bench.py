#!/usr/bin/env python3
"""A parallel bake of the example graph against building the same images one after another.

Prints figures; asserts nothing. Run: make bench-bake (needs the engine: make engine).

* parallel: one `docker buildx bake --no-cache` of every stack (what bakegen
  build runs): BuildKit schedules every stage of the graph at once;
* one after another: `docker buildx bake --no-cache <stack>` per stack in build
  order, each child built FROM its parent's finished image (a named context
  `docker-image://`), as separate `docker build` calls would.

Both start with warm download caches (a first build fills the pip, apt and npm
cache mounts), so the figures compare scheduling, not the network.
BENCH_RUNS=N repeats each measurement (default 1).
"""

from __future__ import annotations

import os
import statistics

from _bench import bake, project, table, workdir

from bakegen.project import load_stacks

RUNS = int(os.environ.get("BENCH_RUNS", "1"))


def main() -> None:
    with workdir() as tmp:
        root = project(tmp, "graph")
        graph = load_stacks(root)
        bake(root, [], "bench-warm")  # fills the cache mounts
        parallel, sequential = [], []
        for _ in range(RUNS):
            took, _ = bake(root, [], "bench-parallel", "--no-cache")
            parallel.append(took)
            total = 0.0
            for name in graph.order:
                parent = graph.stacks[name].extends
                link = ["--set", f"{name}.contexts.{parent}=docker-image://bench-sequential/{parent}:latest"] if parent else []
                took, _ = bake(root, [name], "bench-sequential", "--no-cache", *link)
                print(f"  one after another: {name} {took:.1f}s")
                total += took
            sequential.append(total)
    p, s = statistics.median(parallel), statistics.median(sequential)
    print(f"example graph: {' -> '.join(graph.order)} ({os.cpu_count()} CPUs), --no-cache, warm download caches, n={RUNS}")
    print(table([
        ["build", "time"],
        ["parallel: one bake of the graph", f"{p:.1f}s"],
        ["one after another: one build per stack", f"{s:.1f}s"],
    ]))
    print(f"speed-up: {s / p:.2f}x")


if __name__ == "__main__":
    main()
