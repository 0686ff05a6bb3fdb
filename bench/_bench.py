"""Helpers shared by the image benchmarks (size, bake, rebuild, repro).

They build the shipped example stacks in a throw-away copy of the project with
the real engine (make engine). The root stack's base image is the local stand-in
(scripts/engine.sh) unless BENCH_BASE_IMAGE names another one; BENCH_CA_BUNDLE
(default: the system bundle, when present) is passed as the build's CA secret.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bakegen.build import BuildOptions, bake_command  # noqa: E402

BASE_IMAGE = os.environ.get("BENCH_BASE_IMAGE", "bakegen-standin/python:3.13-slim")
_CA = os.environ.get("BENCH_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
CA_BUNDLE = _CA if _CA and Path(_CA).is_file() else None
PROJECT_FILES = ("stacks", "locks", "dockerfiles", "docker-bake.hcl")


IMAGE_PREFIX = "bench-"  # every image a benchmark tags: bench-<what>/<stack>:<tag>


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Seconds that ``cmd`` took; the benchmark stops when it fails."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return took


@contextmanager
def workdir() -> Iterator[Path]:
    """A temporary folder; on the way out, the benchmark's images are removed (the build cache stays)."""
    try:
        with tempfile.TemporaryDirectory(prefix="bakegen-bench-") as tmp:
            yield Path(tmp)
    finally:
        images = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True).stdout.split()
        ours = [i for i in images if i.startswith(IMAGE_PREFIX)]
        if ours:
            subprocess.run(["docker", "rmi", "--force", *ours], capture_output=True)


def project(tmp: Path, name: str) -> Path:
    """A copy of the example project (stacks, locks, generated files) in tmp/name."""
    root = tmp / name
    root.mkdir()
    for item in PROJECT_FILES:
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / item)
    return root


def bakegen(root: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "bakegen", "-C", str(root), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench: bakegen {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def bake(root: Path, targets: list[str], registry: str, *extra: str) -> tuple[float, str]:
    """docker buildx bake (through bakegen's build runner) with --load; returns (seconds, plain log)."""
    opts = BuildOptions(
        targets=targets, base_images={"base": BASE_IMAGE}, ca_bundle=CA_BUNDLE, registry=registry, load=True, progress="plain", extra=list(extra),
    )
    cmd, variables = bake_command(root, opts)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, env={**os.environ, **variables}, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{proc.stderr[-6000:]}")
    return took, proc.stderr


def executed_steps(log: str) -> tuple[int, int]:
    """(steps run, steps taken from the cache) in a plain-progress BuildKit log."""
    ran, cached = set(), set()
    for m in re.finditer(r"^#(\d+) (\[[^\n]*\] (?:RUN|COPY)[^\n]*)$", log, re.M):
        ran.add(m.group(1))
    for m in re.finditer(r"^#(\d+) CACHED$", log, re.M):
        cached.add(m.group(1))
    return len(ran - cached), len(ran & cached)


def docker(*args: str) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench: docker {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def image_size(image: str) -> tuple[int, int, int]:
    """(bytes on disk: the sum of the layers, bytes to download: compressed, layer count), as bakegen report counts them."""
    from bakegen.report import inspect

    compressed, layers = inspect(image)
    return sum(size for size, _ in layers), compressed, len(layers)


def venv_size(image: str, path: str = "/opt/venv") -> int:
    """Bytes of the files under ``path`` in ``image`` (a hard-linked file counted once, as on disk)."""
    return int(docker("run", "--rm", "--entrypoint", "du", image, "-sb", path).split()[0])


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)
