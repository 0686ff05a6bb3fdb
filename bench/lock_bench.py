#!/usr/bin/env python3
"""Time `bakegen lock` for the example scipy stack against plain pip-compile.

Prints figures; asserts nothing. Run: make bench  (or python bench/lock_bench.py).
BENCH_RUNS=N repeats each measurement (default 1: a cold pip-compile takes minutes).

* bakegen lock scipy (uv backend; locks base and scipy), cold and warm uv cache
* pip-compile --generate-hashes on the same requirements, cold and warm cache
  (pip-compile resolves for this interpreter's Python; bakegen for the stack's)
* a no-op re-lock (inputs unchanged: nothing is resolved)
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _bench import timed  # noqa: E402

from bakegen.project import load_stacks  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "1"))


def main() -> None:
    graph = load_stacks(REPO)
    reqs = [r for s in ("base", "scipy") for r in graph.stacks[s].table("python")["packages"]]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bakegen-bench-") as tmpdir:
        tmp = Path(tmpdir)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k == "PIP_CERT"}
        env["PIP_CONFIG_FILE"] = os.devnull

        def project() -> Path:
            root = Path(tempfile.mkdtemp(dir=tmp))
            shutil.copytree(REPO / "stacks", root / "stacks")
            return root

        bake = [sys.executable, "-m", "bakegen"]
        cold, warm, noop = [], [], []
        for i in range(RUNS):
            cache = {**env, "UV_CACHE_DIR": str(tmp / f"uv-cold-{i}")}
            cold.append(timed(bake + ["-C", str(project()), "lock", "scipy"], REPO, cache))
        warm_env = {**env, "UV_CACHE_DIR": str(tmp / "uv-warm")}
        timed(bake + ["-C", str(project()), "lock", "scipy"], REPO, warm_env)
        for _ in range(RUNS):
            root = project()
            warm.append(timed(bake + ["-C", str(root), "lock", "scipy"], REPO, warm_env))
            noop.append(timed(bake + ["-C", str(root), "lock", "scipy"], REPO, warm_env))

        infile = tmp / "scipy.in"
        infile.write_text("".join(f"{r}\n" for r in reqs))
        pc = [sys.executable, "-m", "piptools", "compile", "--quiet", "--generate-hashes", "--allow-unsafe", "--strip-extras"]
        pc_cold, pc_warm = [], []
        for i in range(RUNS):
            cold_env = {**env, "PIP_CACHE_DIR": str(tmp / f"pip-cold-{i}")}
            pc_cold.append(timed(pc + ["--cache-dir", str(tmp / f"pc-cold-{i}"), "-o", str(tmp / f"c{i}.txt"), str(infile)], tmp, cold_env))
        warm_pip = {**env, "PIP_CACHE_DIR": str(tmp / "pip-warm")}
        timed(pc + ["--cache-dir", str(tmp / "pc-warm"), "-o", str(tmp / "w.txt"), str(infile)], tmp, warm_pip)
        for i in range(RUNS):
            pc_warm.append(timed(pc + ["--cache-dir", str(tmp / "pc-warm"), "-o", str(tmp / f"w{i}.txt"), str(infile)], tmp, warm_pip))

    def fmt(xs: list[float]) -> str:
        return f"{statistics.median(xs):7.2f}s  (min {min(xs):.2f}, max {max(xs):.2f}, n={len(xs)})"

    rows = [
        ("bakegen lock scipy, cold cache (uv)", cold),
        ("bakegen lock scipy, warm cache (uv)", warm),
        ("bakegen lock scipy, no-op re-lock", noop),
        (f"pip-compile --generate-hashes, cold cache (Python {sys.version_info[0]}.{sys.version_info[1]})", pc_cold),
        ("pip-compile --generate-hashes, warm cache", pc_warm),
    ]
    print(f"requirements: {', '.join(reqs)}")
    for label, xs in rows:
        print(f"{label:<62} {fmt(xs)}")
    print(f"speed-up, cold: {statistics.median(pc_cold) / statistics.median(cold):.1f}x; warm: {statistics.median(pc_warm) / statistics.median(warm):.1f}x")


if __name__ == "__main__":
    main()
