#!/usr/bin/env python3
"""Layer compression: what gzip and zstd cost to export and weigh to download.

Prints figures; asserts nothing. Run: make bench-compression (needs the engine, make engine).

The scipy example stack (base and scipy) is built once, so that every export below
starts from the same cached layers; then, for each compression, its image is
exported to an OCI layout (type=oci, rewrite-timestamp, force-compression: every
layer is compressed again). It prints the export time and the compressed bytes
of the image's layers, the base's included (what a new client downloads).
"""

from __future__ import annotations

import os
import re
import subprocess
import time

from _bench import BASE_IMAGE, IMAGE_PREFIX, bake, mb, project, table, workdir

from bakegen.build import BuildOptions, bake_command
from bakegen.oci import layout_blobs

CHOICES = [("gzip", "compression=gzip"), ("gzip level 1", "compression=gzip,compression-level=1"), ("zstd", "compression=zstd"),
           ("zstd level 9", "compression=zstd,compression-level=9")]


def export(root, dest, compression: str) -> tuple[float, float]:
    """(seconds of the export step, seconds of the whole bake) for scipy to an OCI layout in dest."""
    epoch = re.search(r'"source_date_epoch": "?(\d+)', (root / "locks" / "base" / "lock.json").read_text())
    sets = [f"scipy.output=type=oci,dest={dest},tar=false,rewrite-timestamp=true,force-compression=true,{compression}",
            "scipy.attest=type=provenance,disabled=true", f"scipy.args.SOURCE_DATE_EPOCH={epoch.group(1) if epoch else 0}"]
    opts = BuildOptions(targets=["scipy"], base_images={"base": BASE_IMAGE}, registry=f"{IMAGE_PREFIX}compression", progress="plain",
                        extra=[f"--allow=fs.write={dest.parent}", *[a for s in sets for a in ("--set", s)]])
    cmd, variables = bake_command(root, opts)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, env={**os.environ, **variables}, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"bench: export failed:\n{proc.stderr[-4000:]}")
    steps = re.findall(r"^#(\d+) (?:\[\S+\] )?exporting to oci image format\n(?:.*\n)*?#\1 DONE ([0-9.]+)s$", proc.stderr, re.M)
    return (float(steps[-1][1]) if steps else float("nan")), took


def main() -> None:
    with workdir() as tmp:
        root = project(tmp, "project")
        seconds, _ = bake(root, ["base", "scipy"], f"{IMAGE_PREFIX}compression")
        print(f"first build of base and scipy (cached for the exports below): {seconds:.1f}s", flush=True)
        rows = [["compression", "export step", "whole bake", "the image, compressed (to download)"]]
        for name, option in CHOICES:
            dest = tmp / name.replace(" ", "-")
            step, whole = export(root, dest, option)
            size = sum(layout_blobs(dest).values())
            rows.append([name, f"{step:.1f}s", f"{whole:.1f}s", mb(size)])
            print(f"{name}: export {step:.1f}s, {mb(size)}", flush=True)
    print(f"base image: {BASE_IMAGE}; every layer compressed again (force-compression=true)")
    print(table(rows))


if __name__ == "__main__":
    main()
