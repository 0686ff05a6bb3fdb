"""The build commands: build (and its distributed jobs), promote, jobs and verify-repro.

Each takes the parsed arguments, checks every value that reaches docker, BuildKit or a
registry, calls the build runner (:mod:`bakegen.build`) and the registry side
(:mod:`bakegen.publish`), and prints what it did (README: "Building", "Building on many
machines", "Reproducible builds").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bakegen import arguments
from bakegen import registry as ordered
from bakegen.commands import refuse_interrupted
from bakegen.errors import BakegenError
from bakegen.files import write_output
from bakegen.lock import StackLock
from bakegen.oci import require_skopeo
from bakegen.project import load_stacks
from bakegen.stack import StackGraph
from bakegen.staleness import current_locks

if TYPE_CHECKING:
    from bakegen.build import BuildOptions, Chain, Published


def cmd_verify_repro(args: argparse.Namespace) -> int:
    """Build a stack twice from the same locks (or once, against a registry); exit 0 when
    bit-for-bit identical, 1 when not."""
    from bakegen.build import BuildOptions, chain_of
    from bakegen.plan import plan_dockerfile
    from bakegen.repro import verify_repro

    arguments.against(args.against)
    ca_bundle = arguments.ca_bundle(args.ca_bundle or os.environ.get("BAKEGEN_CA_BUNDLE") or None)
    graph = load_stacks(args.root)
    graph.select([args.stack])
    opts = BuildOptions(base_images=_base_images(args, graph), ca_bundle=ca_bundle,
                        secrets=arguments.build_secrets(args, ordered.build_secrets()),
                        progress=args.progress, compression=args.compression)
    locks = current_locks(graph)
    plan = plan_dockerfile(graph, args.stack, locks, ordered.ECOSYSTEMS)
    # to name a differing layer by its step
    steps = [(step.text, step.layer) for step in plan.final.steps]
    from bakegen.render.bake import image_names
    from bakegen.sbom import cyclonedx_of

    result = verify_repro(args.root, chain_of(graph, locks, [args.stack]), opts, steps=steps,
                          against=args.against, sbom=cyclonedx_of(graph, locks),
                          names=image_names(graph, locks, "", ""))
    if result.identical:
        print(f"{args.stack}: identical ({result.digests[0]})"
              + (f", the digest {args.against} has" if args.against else ""))
        return 0
    print(f"{args.stack}: different ({result.digests[0]} vs {result.digests[1]})")
    print(f"first difference: {result.difference}")
    return 1


def _base_images(args: argparse.Namespace, graph: StackGraph) -> dict[str, str]:
    base_images = {}
    for item in args.base_image:
        stack, ref = arguments.base_image(item)
        if stack not in graph.stacks or graph.stacks[stack].base is None:
            roots = [n for n in graph.order if graph.stacks[n].base]
            raise BakegenError(f"--base-image: '{stack}' is not a stack with a base image",
                               hint=f"root stacks: {', '.join(roots)}")
        base_images[stack] = ref
    return base_images


def _names_from(args: argparse.Namespace) -> tuple[str, str]:
    """--registry and --tag-prefix (or REGISTRY and TAG_PREFIX), checked: they end up in image
    names and exporter options."""
    registry = arguments.registry(args.registry if args.registry is not None
                                  else os.environ.get("REGISTRY", ""))
    prefix = arguments.tag_prefix(args.tag_prefix if args.tag_prefix is not None
                                  else os.environ.get("TAG_PREFIX", ""))
    pushing = {"build": getattr(args, "push", False), "promote": True}.get(args.command, False)
    if pushing and not registry:
        flag = "--push" if args.command == "build" else args.command
        raise BakegenError(f"{flag} needs --registry (or REGISTRY): without it the images would go "
                           "to Docker Hub's library/", hint="for example --registry ghcr.io/acme")
    return registry, prefix


def cmd_build(args: argparse.Namespace) -> int:
    from bakegen.build import BuildOptions, build, builder_options

    _names_from(args)
    ca_bundle = arguments.ca_bundle(args.ca_bundle or os.environ.get("BAKEGEN_CA_BUNDLE") or None)
    arguments.cache_repository(args.cache)
    arguments.output_file(args.metadata_file, "--metadata-file")
    graph = load_stacks(args.root)
    base_images = _base_images(args, graph)
    graph.select(args.targets)  # validates target names
    only = _only(args, graph)
    opts = BuildOptions(
        targets=args.targets, base_images=base_images, ca_bundle=ca_bundle,
        secrets=arguments.build_secrets(args, ordered.build_secrets()),
        registry=args.registry, tag_prefix=args.tag_prefix, cache=args.cache, load=args.load,
        push=args.push, progress=args.progress, provenance=args.provenance,
        compression=args.compression,
        **(builder_options(arguments.builder(args.builder)) if args.builder else {}),
        platform=_platform(args, graph, only or graph.select(args.targets)),
        extra=["--no-cache"] if args.no_cache else [],
    )
    if not (args.load or args.push):
        opts.extra += ["--metadata-file", args.metadata_file] if args.metadata_file else []
        build(args.root, opts)
        return 0
    return _publish(args, graph, opts, only)


def _only(args: argparse.Namespace, graph: StackGraph) -> list[str] | None:
    """--stacks NAME... or --level N: only those stacks, FROM their parents' images in the
    registry. None: the targets and their parents, built here."""
    if args.stacks is None and args.level is None:
        if args.parents:
            raise BakegenError("--parents is for --stacks and --level",
                               hint="without them bakegen build builds the parents too")
        return None
    if args.targets or (args.stacks is not None and args.level is not None):
        raise BakegenError("give the stacks to build one way: TARGET..., --stacks or --level",
                           hint="--stacks NAME... builds only those, FROM their parents' images")
    if not args.push:
        raise BakegenError(
            "--stacks and --level build FROM the parents' images in the registry, and push by "
            "digest: they need --push", hint="add --push --registry REGISTRY")
    if args.stacks is not None:
        graph.select(args.stacks)  # validates the names
        return [n for n in graph.order if n in args.stacks]
    levels = graph.levels(graph.order)
    if not 0 <= args.level < len(levels):
        raise BakegenError(f"--level {args.level}: the graph has levels 0 to {len(levels) - 1}",
                           hint="level 0 holds the stacks with a base image, 1 their children")
    return levels[args.level]


def _platform(args: argparse.Namespace, graph: StackGraph, stacks: list[str]) -> str | None:
    """--platform P: one of the platforms of every stack built."""
    if args.platform is None:
        return None
    if not (args.load or args.push):
        raise BakegenError("--platform is for --load and --push",
                           hint="a plain bakegen build builds every platform of each stack")
    for stack in stacks:
        if args.platform not in graph.platforms(stack):
            raise BakegenError(
                f"--platform {arguments.shown(args.platform)}: {stack} is built for "
                f"{', '.join(graph.platforms(stack))}",
                hint="name one of the stack's platforms")
    return str(args.platform)


def _publish(args: argparse.Namespace, graph: StackGraph, opts: BuildOptions,
             only: list[str] | None) -> int:
    """--load and --push: bit-for-bit images, level by level through OCI layouts
    (bakegen.build.reproducible_build); --push moves the tags once every image is pushed."""
    import tempfile

    from bakegen.build import bake_command, chain_of, reproducible_build
    from bakegen.oci import repository_of
    from bakegen.publish import Promotion, promote
    from bakegen.render.bake import image_names
    from bakegen.sbom import cyclonedx_of

    bake_command(args.root, opts)  # the bake file exists, --load and --push are not both given
    if args.push:
        require_skopeo("bakegen build --push")
    locks = current_locks(graph)
    chain = chain_of(graph, locks, args.targets, only)
    names = image_names(graph, locks, *_names_from(args))
    chain.external = _external_parents(args, graph, locks, chain, names, opts.platform)
    with tempfile.TemporaryDirectory(prefix="bakegen-build-") as work:
        published = reproducible_build(args.root, chain, opts, Path(work), names,
                                       sbom=cyclonedx_of(graph, locks))
    _report(args, published)
    if args.push and only is None and opts.platform is None:
        promote([Promotion(p.stack, repository_of(p.names[0]), p.digest, p.names, p.platforms)
                 for p in published])
        print(f"tagged {len(published)} images, once every image was pushed")
    elif args.push:
        print("pushed by digest only, no tag moved: once every job has passed, run "
              "bakegen promote --metadata FILE... (their --metadata-file)")
    return 0


def _report(args: argparse.Namespace, published: list[Published]) -> None:
    """Each image's digest, names and upload; the metadata file (before any tag moves, so that a
    promote that stops half-way can be run again from it)."""
    from bakegen.publish import metadata_doc

    for p in published:
        pushed = (f", {p.pushed_bytes / 1e6:.1f} MB uploaded"
                  if args.push and p.pushed_bytes >= 0 else "")
        print(f"{p.stack}: {p.digest} ({', '.join(p.names)}{pushed})")
    if args.metadata_file:
        write_output(Path(args.metadata_file),
                     json.dumps(metadata_doc(published), indent=2, sort_keys=True) + "\n",
                     require_header=False)


def _external_parents(args: argparse.Namespace, graph: StackGraph, locks: dict[str, StackLock],
                      chain: Chain, names: dict[str, list[str]],
                      platform: str | None) -> dict[str, str]:
    """The parents this job does not build: their images by digest, checked against their locks."""
    from bakegen.build import outside_parents
    from bakegen.publish import parent_images, read_metadata

    given = read_metadata([Path(p) for p in args.parents], graph)  # checked even when unused
    outside = outside_parents(chain)
    if not outside:
        return {}
    needs: dict[str, list[str]] = {}
    for stack, parent in chain.parents.items():
        if parent in outside:
            wanted = [platform] if platform else graph.platforms(stack)
            needs[parent] = sorted(set(needs.get(parent, [])) | set(wanted))
    return parent_images(graph, locks, needs, names, given)


def cmd_promote(args: argparse.Namespace) -> int:
    """Move every tag once every job has pushed its images by digest."""
    from bakegen.publish import metadata_doc, plan_promotion, promote, read_metadata
    from bakegen.render.bake import image_names

    registry, prefix = _names_from(args)
    arguments.output_file(args.metadata_file, "--metadata-file")
    require_skopeo("bakegen promote")
    graph = load_stacks(args.root)
    stacks = graph.select(args.stacks) if args.stacks else list(graph.order)
    stacks = [n for n in stacks if not args.stacks or n in args.stacks]
    refuse_interrupted(args.root)
    locks = current_locks(graph)
    given = read_metadata([Path(p) for p in args.metadata], graph)
    plan = plan_promotion(graph, locks, stacks, image_names(graph, locks, registry, prefix), given)
    promote(plan)
    for p in plan:
        merged = " (merged from one image per platform)" if p.index else ""
        print(f"{p.stack}: {p.digest}{merged} -> {', '.join(p.names)}")
    if args.metadata_file:
        write_output(Path(args.metadata_file),
                     json.dumps(metadata_doc(plan), indent=2, sort_keys=True) + "\n",
                     require_header=False)
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    """The jobs of a distributed CI build, per level: GitHub Actions matrices."""
    from bakegen.jobs import github_output, level_jobs, runners

    own = runners(args.runner)
    levels = level_jobs(load_stacks(args.root), own, args.levels)
    if args.format == "github":
        sys.stdout.write(github_output(levels))
    else:
        from dataclasses import asdict

        doc = [[asdict(j) for j in jobs] for jobs in levels]
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    return 0
