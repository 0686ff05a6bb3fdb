#!/usr/bin/env python3
"""Time `bakegen lock` against the bare resolver it drives, in pairs, warm caches.

Prints figures; asserts nothing. Run: make bench-lock-speed (or python bench/lock_speed_bench.py).

* S1: one stack with the example base + scipy packages (about 110 pins), locked
  from nothing (no previous lock), against the bare
  `uv pip compile --no-python-downloads --generate-hashes` of the same input.
  BENCH_PAIRS pairs (default 5), interleaved; the median of the ratios.
* A 4-stack graph (a root, two children of it, a grandchild): one `bakegen lock`
  against the bare uv commands a user would run for the same four stacks, one
  after another, each with its parents' pins as constraints.
* A no-op `bakegen lock` (nothing changed).
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
from uv import find_uv_bin  # noqa: E402

from bakegen.project import load_stacks  # noqa: E402

PAIRS = int(os.environ.get("BENCH_PAIRS", "5"))
# pinned as the example is: no registry is asked (none is reachable here)
BASE_IMAGE = "python:3.13-slim@sha256:9662417aace5ae7b8e2609cce472b72a8958e134ba372808abe9cc1a0c0125e6"
UV = find_uv_bin()


def uv_compile(infile: Path, out: Path, constraints: list[Path] = ()) -> list[str]:  # type: ignore[assignment]
    return [UV, "pip", "compile", "--no-config", "--quiet", "--generate-hashes", "--no-header", "--annotation-style=split",
            "--python-version", "3.13", "--python-platform", "x86_64-manylinux_2_28", "--no-python-downloads",
            "--index-url", "https://pypi.org/simple", "--only-binary", ":all:", "--output-file", str(out), str(infile),
            *[a for c in constraints for a in ("--constraint", str(c))]]


def stack(name: str, packages: list[str], parent: str | None = None) -> str:
    head = f'name = "{name}"\ndescription = "bench"\n'
    head += f'extends = "{parent}"\n' if parent else f'base = "{BASE_IMAGE}"\n'
    version = "" if parent else 'version = "3.13"\n'
    return head + "[python]\n" + version + f"packages = {packages!r}\n".replace("'", '"')


def s1_pairs(tmp: Path, env: dict[str, str], packages: list[str]) -> tuple[list[float], list[float]]:
    root = tmp / "s1"
    (root / "stacks").mkdir(parents=True)
    (root / "stacks" / "s1.toml").write_text(stack("s1", packages))
    infile = tmp / "s1.in"
    infile.write_text("".join(f"{p}\n" for p in packages))
    bake = [sys.executable, "-m", "bakegen", "-C", str(root), "lock"]
    timed(bake, REPO, env)  # warm the caches (uv's, and the image lookup's failure path)
    ours, bare = [], []
    for i in range(PAIRS):
        shutil.rmtree(root / "locks")
        ours.append(timed(bake, REPO, env))
        bare.append(timed(uv_compile(infile, tmp / f"s1-{i}.txt"), tmp, env))
    return ours, bare


def graph_pair(tmp: Path, env: dict[str, str], base: list[str], scipy: list[str]) -> tuple[float, float]:
    root = tmp / "g4"
    (root / "stacks").mkdir(parents=True)
    specs = {"root": (base, None), "sci": (scipy, "root"), "web": (["requests", "httpx"], "root"), "leaf": (["ipyleaflet"], "sci")}
    for name, (packages, parent) in specs.items():
        (root / "stacks" / f"{name}.toml").write_text(stack(name, packages, parent))
    bake = [sys.executable, "-m", "bakegen", "-C", str(root), "lock"]
    timed(bake, REPO, env)
    shutil.rmtree(root / "locks")
    ours = timed(bake, REPO, env)
    # by hand: each stack after its parents, with their pins as constraints
    bare = 0.0
    outs: dict[str, Path] = {}
    for name in ("root", "sci", "web", "leaf"):
        chain = [name]
        while specs[chain[0]][1]:
            chain.insert(0, specs[chain[0]][1])  # type: ignore[arg-type]
        infile = tmp / f"g-{name}.in"
        infile.write_text("".join(f"{p}\n" for n in chain for p in specs[n][0]))
        outs[name] = tmp / f"g-{name}.txt"
        bare += timed(uv_compile(infile, outs[name], [outs[n] for n in chain[:-1]]), tmp, env)
    return ours, bare


def noop(tmp: Path, env: dict[str, str]) -> list[float]:
    root = tmp / "s1"
    bake = [sys.executable, "-m", "bakegen", "-C", str(root), "lock"]
    return [timed(bake, REPO, env) for _ in range(PAIRS)]


def main() -> None:
    graph = load_stacks(REPO)
    base, scipy = list(graph.stacks["base"].table("python")["packages"]), list(graph.stacks["scipy"].table("python")["packages"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_")) or k in ("PIP_CERT",)}
    with tempfile.TemporaryDirectory(prefix="bakegen-bench-") as tmpdir:
        tmp = Path(tmpdir)
        ours, bare = s1_pairs(tmp, env, base + scipy)
        g_ours, g_bare = graph_pair(tmp, env, base, scipy)
        idle = noop(tmp, env)
        pins = sum(1 for line in (tmp / "s1-0.txt").read_text().splitlines() if "==" in line)
    ratios = [o / b for o, b in zip(ours, bare)]
    print(f"S1: {pins} pins ({', '.join(base + scipy)}), {PAIRS} pairs, warm caches")
    print(f"  bakegen lock (from nothing)          median {statistics.median(ours):6.2f}s  {' '.join(f'{x:.2f}' for x in ours)}")
    print(f"  uv pip compile --no-python-downloads median {statistics.median(bare):6.2f}s  {' '.join(f'{x:.2f}' for x in bare)}")
    print(f"  ratio bakegen/uv: median {statistics.median(ratios):.2f}x  (pairs: {' '.join(f'{r:.2f}' for r in ratios)}; goal <= 1.2x)")
    print(f"4-stack graph (root, two children, a grandchild): bakegen lock {g_ours:.2f}s, the four uv commands in order {g_bare:.2f}s,"
          f" ratio {g_ours / g_bare:.2f}x")
    print(f"no-op bakegen lock: median {statistics.median(idle):.2f}s (goal < 0.5 s)")


if __name__ == "__main__":
    main()
