#!/usr/bin/env python3
"""Cold build time: bakegen's generated Dockerfile against the single-stage Dockerfile it replaces.

Prints figures; asserts nothing. Run: make bench-build (needs the engine, make engine, and PyPI).

The S1 package set (numpy, pandas, scipy, matplotlib, seaborn, bokeh, jupyterlab,
ipykernel, scikit-learn, sympy) is locked once with bakegen (one root stack on the
stand-in base, no apt packages), then built in pairs, each build cold: BuildKit's
cache (cache mounts included, so no pip or uv cache) is pruned before it.

* bakegen: `bakegen build --load`, as `make build` runs it, of the generated
  Dockerfile (uv in the builder, bytecode on every core, the virtualenv copied into
  the final image; exported to an OCI layout with zstd layers, then docker load);
* seed: a single-stage Dockerfile as a team writes it: `python -m venv`, `pip install
  --no-cache-dir -r` the same locked requirements (with their hashes), a non-root
  user, a `CMD`.

Both load their image into the engine (the seed: docker buildx build --load). The pairs alternate their order
(bakegen first, then seed first). It prints every build's time, the time of each
step of the first pair, and the median ratio bakegen / seed. BENCH_PAIRS (default 3)
sets the number of pairs.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _bench import BASE_IMAGE, CA_BUNDLE, IMAGE_PREFIX, REPO, bakegen, table, workdir

S1 = ["numpy", "pandas", "scipy", "matplotlib", "seaborn", "bokeh", "jupyterlab", "ipykernel", "scikit-learn", "sympy"]
# the examples' base, pinned by digest (no registry is reachable to resolve a tag); built on the stand-in
PINNED = re.search(r'^base = "([^"]+)"', (REPO / "stacks" / "base.toml").read_text(), re.M).group(1)  # type: ignore[union-attr]
STACK = f'''name = "s1"
description = "The S1 package set, for bench/build_bench.py"
base = "{PINNED}"
[python]
version = "3.13"
packages = {S1!r}
'''.replace("'", '"')
SEED = """\
FROM {base}
RUN useradd --create-home --uid 1000 --gid 100 jovyan
COPY requirements.txt /tmp/requirements.txt
RUN --mount=type=secret,id=cacert \\
    if [ -s /run/secrets/cacert ]; then export PIP_CERT=/run/secrets/cacert; fi; \\
    python3 -m venv /opt/venv \\
 && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt
ENV PATH=/opt/venv/bin:$PATH
USER 1000:100
CMD ["jupyter", "lab", "--ip=0.0.0.0"]
"""


def prune() -> None:
    """No BuildKit cache at all: layers, cache mounts (pip's and uv's), everything."""
    subprocess.run(["docker", "buildx", "prune", "--all", "--force"], capture_output=True, check=True)


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed:\n{proc.stderr[-6000:]}")
    return took, proc.stderr


def build_bakegen(root: Path) -> tuple[float, str]:
    """What `make build` runs: bakegen build --load (an OCI layout with rewritten timestamps and zstd layers, then docker load)."""
    cmd = [sys.executable, "-m", "bakegen", "-C", str(root), "build", "s1", "--load", "--progress", "plain",
           "--base-image", f"s1={BASE_IMAGE}", "--registry", f"{IMAGE_PREFIX}build", *(["--ca-bundle", CA_BUNDLE] if CA_BUNDLE else [])]
    return timed(cmd, root, dict(os.environ))


def build_seed(ctx: Path) -> tuple[float, str]:
    secret = ["--secret", f"id=cacert,src={CA_BUNDLE}"] if CA_BUNDLE else []
    cmd = ["docker", "buildx", "build", "--load", "--progress", "plain", "--provenance=false", "-t", f"{IMAGE_PREFIX}seed/s1:latest", *secret, str(ctx)]
    return timed(cmd, ctx, dict(os.environ))


def steps(log: str) -> list[tuple[str, float]]:
    """(step, seconds) of the RUN, COPY and export steps of a plain-progress log, slowest first."""
    names = {m.group(1): m.group(2)[:90] for m in re.finditer(r"^#(\d+) (?:\[[^\]]*\] )?((?:RUN|COPY|exporting to )[^\n]*)$", log, re.M)}
    done = {m.group(1): float(m.group(2)) for m in re.finditer(r"^#(\d+) DONE ([0-9.]+)s$", log, re.M)}
    return sorted(((names[n], done[n]) for n in names if n in done), key=lambda item: -item[1])


def main() -> None:
    pairs = int(os.environ.get("BENCH_PAIRS", "3"))
    with workdir() as tmp:
        root = tmp / "s1"
        (root / "stacks").mkdir(parents=True)
        (root / "stacks" / "s1.toml").write_text(STACK)
        start = time.perf_counter()
        bakegen(root, "lock")
        bakegen(root, "generate")
        print(f"lock + generate of S1: {time.perf_counter() - start:.1f}s")
        seed = tmp / "seed"
        seed.mkdir()
        (seed / "requirements.txt").write_text((root / "locks" / "s1" / "requirements.txt").read_text())
        (seed / "Dockerfile").write_text(SEED.format(base=BASE_IMAGE))
        rows, ratios, logs = [["pair", "bakegen", "seed", "ratio"]], [], {}
        for i in range(pairs):
            order = [("bakegen", lambda: build_bakegen(root)), ("seed", lambda: build_seed(seed))]
            times = {}
            for name, build in order if i % 2 == 0 else order[::-1]:
                prune()
                times[name], log = build()
                logs.setdefault(name, log)
            ratios.append(times["bakegen"] / times["seed"])
            rows.append([str(i + 1), f"{times['bakegen']:.1f}s", f"{times['seed']:.1f}s", f"{ratios[-1]:.2f}x"])
            print(f"pair {i + 1}: bakegen {times['bakegen']:.1f}s, seed {times['seed']:.1f}s", flush=True)
        prune()
    print(f"base image: {BASE_IMAGE}; cold builds (BuildKit cache pruned before each), --load")
    print(table(rows))
    for name in ("bakegen", "seed"):
        print(f"\nsteps of the first {name} build, slowest first:")
        print(table([["seconds", "step"], *[[f"{t:.1f}", s] for s, t in steps(logs[name])]]))
    print(f"\nmedian ratio bakegen / seed over {pairs} pairs: {statistics.median(ratios):.2f}x (goal: <= 0.6x)")


if __name__ == "__main__":
    main()
