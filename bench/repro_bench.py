#!/usr/bin/env python3
"""Reproducible, yes or no, for each example stack.

Prints figures; asserts nothing. Run: make bench-repro (needs the engine: make engine).

For each stack, `bakegen verify-repro STACK`: two `--no-cache` builds from the
same locks (a child's builds include its parents), each to an OCI tarball with
rewrite-timestamp; yes when the manifest digests are equal, else the first
differing file. The shipped stacks are checked as shipped (scipy and geo slim).
"""

from __future__ import annotations

import subprocess
import sys
import time

from _bench import BASE_IMAGE, CA_BUNDLE, project, table, workdir

from bakegen.stack import load_stacks


def main() -> None:
    rows = [["stack", "reproducible", "time (2 builds)", "digest or first difference"]]
    with workdir() as tmp:
        root = project(tmp, "graph")
        for name in load_stacks(root).order:
            cmd = [sys.executable, "-m", "bakegen", "-C", str(root), "verify-repro", name, "--base-image", f"base={BASE_IMAGE}", "--progress", "quiet"]
            if CA_BUNDLE:
                cmd += ["--ca-bundle", CA_BUNDLE]
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            took = time.perf_counter() - start
            if proc.returncode not in (0, 1):
                sys.exit(f"bench: verify-repro {name} failed:\n{proc.stdout}{proc.stderr[-4000:]}")
            detail = (proc.stdout.strip().splitlines() or ["?"])[-1].removeprefix(f"{name}: ")
            rows.append([name, "yes" if proc.returncode == 0 else "no", f"{took:.0f}s", detail])
            print(f"  {name}: {detail}", flush=True)
    print(f"base image: {BASE_IMAGE}")
    print(table(rows))


if __name__ == "__main__":
    main()
