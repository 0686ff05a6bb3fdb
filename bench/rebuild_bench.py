#!/usr/bin/env python3
"""Rebuild time after one leaf pin bump, against a full build.

Prints figures; asserts nothing. Run: make bench-rebuild (needs the engine: make
engine, and PyPI for the re-lock).

1. full: `docker buildx bake --no-cache` of the example graph (warm download caches);
2. bump: `bakegen lock --upgrade-package NAME==VERSION` moves one pin of the leaf
   stack (`geo`; default `xyzservices` to its previous release, or BENCH_BUMP=NAME==VERSION),
   then `bakegen generate`;
3. rebuild: the same bake, with the build cache of step 1.

It prints both times, how many RUN/COPY steps ran and how many came from the
cache, and whether the parents' images stayed the same.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request

from _bench import bake, bakegen, docker, executed_steps, project, table, workdir
from packaging.version import Version

from bakegen.project import load_stacks, read_lock

LEAF = "geo"


def previous_release(name: str, current: str) -> str:
    with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=30) as resp:
        releases = json.load(resp)["releases"]
    older = [Version(v) for v, files in releases.items() if files and not Version(v).is_prerelease and Version(v) < Version(current)]
    if not older:
        sys.exit(f"bench: {name} has no release before {current}; set BENCH_BUMP=NAME==VERSION")
    return str(max(older))


def image_layers(names: list[str], registry: str) -> dict[str, list[str]]:
    return {n: json.loads(docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", f"{registry}/{n}:latest")) for n in names}


def main() -> None:
    with workdir() as tmp:
        root = project(tmp, "graph")
        graph = load_stacks(root)
        pins = {p.key: p.version for p in read_lock(root / "locks" / LEAF).parts["python"].pins}
        bump = os.environ.get("BENCH_BUMP")
        if not bump:
            bump = f"xyzservices=={previous_release('xyzservices', pins['xyzservices'])}"
        registry = "bench-rebuild"
        bake(root, [], registry)  # fills the cache mounts
        full, log = bake(root, [], registry, "--no-cache")
        full_steps = executed_steps(log)
        before = image_layers(graph.order, registry)
        bakegen(root, "lock", "--upgrade-package", bump)
        bakegen(root, "generate")
        rebuild, log = bake(root, [], registry)
        steps = executed_steps(log)
        after = image_layers(graph.order, registry)
    name, _, version = bump.partition("==")
    print(f"bump: {name} {pins.get(name, '?')} -> {version} in {LEAF}")
    print(table([
        ["build", "time", "RUN/COPY steps run", "from cache"],
        ["full (--no-cache)", f"{full:.1f}s", str(full_steps[0]), str(full_steps[1])],
        [f"rebuild after the {LEAF} bump", f"{rebuild:.1f}s", str(steps[0]), str(steps[1])],
    ]))
    print(f"rebuild / full: {rebuild / full:.1%}")
    for n in graph.order:
        new = [layer for layer in after[n] if layer not in before[n]]
        print(f"  {n}: {len(after[n])} layers, {len(new)} new: " + ("unchanged" if not new else "rebuilt from layer " + str(after[n].index(new[0]) + 1)))


if __name__ == "__main__":
    main()
