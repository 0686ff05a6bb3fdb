#!/usr/bin/env python3
"""Building on many machines: what a registry cache from one machine saves another.

Prints figures; asserts nothing. Run: make bench-distributed (needs the engine, the second
engine and the registry: scripts/engine.sh all and scripts/engine.sh second; PyPI and Debian's
archive for the apt refresh).

Machine A is the first engine; machine B is scripts/engine.sh's second engine (its own
dockerd, containerd and data-root), which shares only the registry with A.

1. A builds and pushes base by digest, and exports each stack's layer cache to the registry
   (bakegen build --push --stacks ... --cache REPO);
2. for each child (scipy, geo), BENCH_PAIRS times (default 2), alternating: B's build cache
   emptied, B builds the stack FROM its parent's digest with no cache; emptied again, B builds
   it with A's registry cache (--cache REPO);
3. bakegen promote of the three stacks.

It prints each build's seconds, the median of each and their ratio, and checks (prints) that
every build gave the digest of A's.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from _bench import BASE_IMAGE, CA_BUNDLE, REPO, project, table, workdir

REGISTRY = os.environ.get("BENCH_REGISTRY", "localhost:5000")
PAIRS = int(os.environ.get("BENCH_PAIRS", "2"))
CHILDREN = ("scipy", "geo")


def second_engine() -> dict[str, str]:
    proc = subprocess.run([str(REPO / "scripts" / "engine.sh"), "second"], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench: scripts/engine.sh second failed:\n{proc.stderr}")
    return {**os.environ, "DOCKER_HOST": proc.stdout.split()[-1]}


def bakegen(root: Path, env: dict[str, str], *args: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bakegen", "-C", str(root), *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"bench: bakegen {' '.join(args)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def job(root: Path, env: dict[str, str], repo: str, stack: str, meta: Path, out: Path, *extra: str) -> float:
    ca = ["--ca-bundle", CA_BUNDLE] if CA_BUNDLE else []
    return bakegen(root, env, "build", "--push", "--registry", repo, "--stacks", stack, "--parents", str(meta),
                   "--progress", "quiet", "--metadata-file", str(out), *ca, *extra)


def empty_cache(env: dict[str, str]) -> None:
    subprocess.run(["docker", "buildx", "prune", "--all", "--force"], env=env, capture_output=True, check=True)


def digest(path: Path, stack: str) -> str:
    return json.loads(path.read_text())[stack]["containerimage.digest"]


def main() -> None:
    a, b = dict(os.environ), second_engine()
    with workdir() as tmp:
        root = project(tmp, "distributed")
        for args in (["lock", "--upgrade-ecosystem", "apt"], ["generate"]):  # Debian moves its pins
            bakegen(root, a, *args)
        run = uuid.uuid4().hex[:8]
        repo, cache = f"{REGISTRY}/bench-dist-{run}", f"{REGISTRY}/bench-dist-{run}/cache"
        meta = tmp / "meta"
        meta.mkdir()
        ca = ["--ca-bundle", CA_BUNDLE] if CA_BUNDLE else []
        bakegen(root, a, "build", "--push", "--registry", repo, "--stacks", "base", "--base-image", f"base={BASE_IMAGE}",
                "--cache", cache, "--progress", "quiet", "--metadata-file", str(meta / "base.json"), *ca)
        for stack in CHILDREN:
            job(root, a, repo, stack, meta, meta / f"{stack}.json", "--cache", cache)
        rows = [["stack", "run", "B, no cache (s)", "B, A's registry cache (s)", "same digest as A's"]]
        medians = []
        for stack in CHILDREN:
            cold, warm = [], []
            for n in range(PAIRS):
                checks = []
                for extra, times in (((), cold), (("--cache", cache), warm)):
                    empty_cache(b)
                    out = tmp / f"b-{stack}-{n}-{len(extra)}.json"
                    times.append(job(root, b, repo, stack, meta, out, *extra))
                    checks.append(digest(out, stack) == digest(meta / f"{stack}.json", stack))
                rows.append([stack, str(n + 1), f"{cold[-1]:.1f}", f"{warm[-1]:.1f}", "yes" if all(checks) else "NO"])
            medians.append((stack, statistics.median(cold), statistics.median(warm)))
        seconds = bakegen(root, a, "promote", "--registry", repo, "--metadata", str(meta))
    print(table(rows))
    print()
    for stack, cold, warm in medians:
        print(f"{stack}: median {cold:.1f} s with no cache, {warm:.1f} s from A's registry cache: {warm / cold:.2f}x")
    print(f"bakegen promote of {1 + len(CHILDREN)} stacks (every tag): {seconds:.1f} s")


if __name__ == "__main__":
    main()
