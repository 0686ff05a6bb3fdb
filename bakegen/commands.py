"""The commands: each takes the parsed arguments, calls the library and prints what it did.

:func:`bakegen.cli.main` parses the command line and runs one of them. A command returns its
exit code; it reports a failure by raising :class:`~bakegen.errors.BakegenError`, which ``main``
maps to its ``error:`` line and exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bakegen import arguments
from bakegen import registry as ordered
from bakegen.errors import BakegenError, StaleError, one_line
from bakegen.files import (
    check_output_file,
    orphans,
    output_problem,
    pending,
    stale_files,
    write_output,
    write_set,
)
from bakegen.lock import LOCK_VERSION, StackLock
from bakegen.locker import Resolvers, Upgrades, lock_stacks, outcome_files
from bakegen.project import load_stacks, lock_files
from bakegen.resolvers.pins import DEFAULT_INDEX
from bakegen.stack import StackGraph
from bakegen.staleness import (
    LOCK_DIR,
    current_locks,
    lock_folders_without_stack,
    orphan_lock_folders,
    stale_locks,
)

if TYPE_CHECKING:
    from bakegen.build import Chain

# The other commands' modules (Jinja2, the build runner, ...) are imported where they are
# used: `bakegen lock` starts faster without them.
DOCKERFILE_DIR = "dockerfiles"


def cmd_lock(args: argparse.Namespace, make_resolvers: Callable[[], Resolvers]) -> int:
    """``make_resolvers`` makes the resolvers (the Python one that --resolver names), once the
    index URL and the stacks are checked."""
    if not re.fullmatch(r"https?://[^\s/]+(?:/\S*)?", args.index_url):
        raise BakegenError(
            f"--index-url {one_line(repr(args.index_url), 80)} is not an http(s) URL",
            hint=f"for example --index-url {DEFAULT_INDEX}")
    graph = load_stacks(args.root)
    resolvers = make_resolvers()  # Python: the one ecosystem with a choice of resolver
    upgrades = Upgrades.parse(args.upgrade, args.upgrade_package, args.upgrade_ecosystem)
    outcomes = lock_stacks(graph, resolvers, names=args.stacks, index_url=args.index_url,
                           upgrade=upgrades)
    gone = orphan_locks(args.root, graph, outcomes)
    changed = write_set(args.root, outcome_files(outcomes), command="bakegen lock", delete=gone)
    for o in outcomes:
        state = (f"migrated to lock format {LOCK_VERSION}" if o.migrated
                 else "locked" if o.changed else "up to date")
        print(f"{o.stack}: {state} ({summary(o.lock)})")
    for path in changed:
        print(f"{'removed' if path in gone else 'wrote'} {path}")
    return 0


def summary(lock: StackLock) -> str:
    """What a lock holds, per ecosystem: "12 python, 3 apt, base sha256:..."."""
    return ", ".join(eco.summary(lock, lock.parts[eco.name]) for eco in ordered.ECOSYSTEMS
                     if lock.parts.get(eco.name) is not None) or "nothing"


def orphan_locks(root: Path, graph, outcomes) -> list[str]:  # type: ignore[no-untyped-def]
    """Generated files under locks/ that no locked stack has any more (a removed stack, a dropped
    ecosystem)."""
    keep = {f"{LOCK_DIR}/{o.stack}/{rel}" for o in outcomes for rel in lock_files(o.lock)}
    only = {o.stack for o in outcomes} | lock_folders_without_stack(graph)
    return orphans(root, LOCK_DIR, keep, only)


def cmd_generate(args: argparse.Namespace) -> int:
    from bakegen.render import render_project

    graph = load_stacks(args.root)
    if args.check:
        _refuse_interrupted(args.root)
    files = render_project(graph, current_locks(graph))
    if args.check:
        stale = [path for path, _ in stale_files(args.root, files)]
        stale += orphans(args.root, DOCKERFILE_DIR, set(files))
        if stale:
            raise StaleError(f"generated files are out of date: {', '.join(stale)}",
                             hint="run bakegen generate and commit the result")
        print(f"{len(files)} generated files are up to date")
        return 0
    changed = write_set(args.root, files, command="bakegen generate",
                        delete=orphans(args.root, DOCKERFILE_DIR, set(files)))
    for path in changed:
        print(f"{'wrote' if path in files else 'removed'} {path}")
    if not changed:
        print(f"{len(files)} generated files are up to date")
    return 0


def _refuse_interrupted(root: Path) -> None:
    """A write that was killed half-way: name it, and say which command finishes it."""
    interrupted = pending(root)
    if interrupted:
        what = interrupted.removeprefix("bakegen").strip() or "write, which changed nothing"
        again = interrupted if interrupted != "bakegen" else "bakegen lock"
        print(f"stale: interrupted {what}: run {again}")
        raise StaleError(f"interrupted {what}",
                         hint=f"run {again}: it finishes (or throws away) the interrupted write")


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 when every lock and generated file matches its stack, 1 with a reason per stale
    item. No network."""
    from bakegen.render import render_project

    graph = load_stacks(args.root)
    _refuse_interrupted(args.root)
    locks: dict = {}
    problems = [f"{name}: {reason}" for name, reason in stale_locks(graph, locks)]
    problems += [f"locks/{name}: no stack named {name} (run bakegen lock)"
                 for name in orphan_lock_folders(graph)]
    if not problems:
        files = render_project(graph, locks)
        problems = [f"{path}: {reason}" for path, reason in stale_files(args.root, files)]
        problems += [f"{path}: no longer generated (run bakegen generate)"
                     for path in orphans(args.root, DOCKERFILE_DIR, set(files))]
    if problems:
        for p in problems:
            print(f"stale: {p}")
        raise StaleError(f"{len(problems)} stale item(s)",
                         hint="run bakegen lock, then bakegen generate, and commit the result")
    print(f"ok: {len(graph.order)} stacks; locks and generated files are current")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from bakegen.diff import FORMATS, diff_locks, read_rev_locks, read_tree_locks

    if args.output:
        # refused before any work: a folder, a link, a file bakegen did not write
        check_output_file(Path(args.output))
    new = read_tree_locks(args.root)
    old = read_rev_locks(args.root, args.rev)
    parents = {name: lock.parent for name, lock in {**old, **new}.items()}
    text = FORMATS[args.format](diff_locks(old, new, parents), args.rev, "working tree")
    if args.output:
        write_output(Path(args.output), text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from bakegen.render.init import FIRST_STACK, render_init

    files = render_init(args.python)
    stacks = args.root / "stacks"
    if (stacks.is_dir() and any(stacks.glob("*.toml"))) or (args.root / FIRST_STACK).exists():
        del files[FIRST_STACK]  # the user's stacks are theirs
    # one transaction: refuses to overwrite a file bakegen did not write, or the user's stack
    changed = write_set(args.root, files, command="bakegen init",
                        new_only=frozenset({FIRST_STACK}))
    for path in changed:
        print(f"wrote {path}")
    print("next: edit stacks/*.toml, then run: make lock generate build")
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    from bakegen.render.profiles import read_digests, render_profiles

    arguments.registry(args.registry)
    arguments.tag(args.tag)
    if args.output:
        check_output_file(Path(args.output))
    graph = load_stacks(args.root)
    digests = read_digests(Path(args.metadata)) if args.metadata else None
    text = render_profiles(graph, current_locks(graph), registry=args.registry, tag=args.tag,
                           digests=digests, fmt=args.format)
    if args.output:
        write_output(Path(args.output), text)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_sbom(args: argparse.Namespace) -> int:
    """An SBOM per image and platform (CycloneDX 1.6 and/or SPDX 2.3 JSON), from current locks
    alone."""
    from bakegen.sbom import FORMATS, SBOM_DIR, render_sboms

    graph = load_stacks(args.root)
    # graph.select validates the names
    names = [n for n in graph.select(args.stacks) if not args.stacks or n in args.stacks]
    _refuse_interrupted(args.root)
    locks = current_locks(graph)  # refuses stale locks, as generate does
    out = Path(args.output).resolve() if args.output else args.root / SBOM_DIR
    if not args.output and output_problem(args.root, SBOM_DIR):
        raise BakegenError(f"cannot write {SBOM_DIR}/: {output_problem(args.root, SBOM_DIR)}",
                           hint="replace the link by a real folder, or pass --output DIR")
    if out.exists() and not out.is_dir():
        raise BakegenError(f"--output {out} is a file",
                           hint="name a folder (it is created when missing)")
    formats = sorted(FORMATS) if args.format == "both" else [args.format]
    files = render_sboms(graph, locks, names, formats)
    suffixes = tuple(f".{FORMATS[f]}" for f in formats)
    # the files of a platform the stack dropped
    gone = [p for n in names for p in orphans(out, n, set(files)) if p.endswith(suffixes)]
    changed = write_set(out, files, command="bakegen sbom", delete=gone)
    for rel in changed:
        print(f"{'wrote' if rel in files else 'removed'} {_shown(args.root, out / rel)}")
    if not changed:
        print(f"{len(files)} SBOM files are up to date")
    return 0


def _shown(root: Path, path: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


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


def _base_images(args: argparse.Namespace, graph) -> dict[str, str]:  # type: ignore[no-untyped-def]
    base_images = {}
    for item in args.base_image:
        stack, ref = arguments.base_image(item)
        if stack not in graph.stacks or graph.stacks[stack].base is None:
            roots = [n for n in graph.order if graph.stacks[n].base]
            raise BakegenError(f"--base-image: '{stack}' is not a stack with a base image",
                               hint=f"root stacks: {', '.join(roots)}")
        base_images[stack] = ref
    return base_images


def cmd_report(args: argparse.Namespace) -> int:
    from bakegen.report import build_report
    from bakegen.report import to_json as report_json
    from bakegen.report import to_text as report_text

    reports = build_report(load_stacks(args.root), registry=args.registry, tag=args.tag)
    sys.stdout.write(report_json(reports) if args.format == "json" else report_text(reports))
    return 0


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


def _only(args: argparse.Namespace, graph) -> list[str] | None:  # type: ignore[no-untyped-def]
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


def _platform(args: argparse.Namespace, graph, stacks: list[str]) -> str | None:  # type: ignore[no-untyped-def]
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


def _publish(args: argparse.Namespace, graph, opts, only) -> int:  # type: ignore[no-untyped-def]
    """--load and --push: bit-for-bit images, level by level through OCI layouts
    (bakegen.build.reproducible_build); --push moves the tags once every image is pushed."""
    import tempfile

    from bakegen.build import bake_command, chain_of, reproducible_build
    from bakegen.oci import repository_of
    from bakegen.publish import Promotion, metadata_doc, promote
    from bakegen.render.bake import image_names
    from bakegen.sbom import cyclonedx_of

    bake_command(args.root, opts)  # the bake file exists, --load and --push are not both given
    locks = current_locks(graph)
    chain = chain_of(graph, locks, args.targets, only)
    names = image_names(graph, locks, *_names_from(args))
    chain.external = _external_parents(args, graph, locks, chain, names, opts.platform)
    with tempfile.TemporaryDirectory(prefix="bakegen-build-") as work:
        published = reproducible_build(args.root, chain, opts, Path(work), names,
                                       sbom=cyclonedx_of(graph, locks))
    for p in published:
        pushed = (f", {p.pushed_bytes / 1e6:.1f} MB uploaded"
                  if args.push and p.pushed_bytes >= 0 else "")
        print(f"{p.stack}: {p.digest} ({', '.join(p.names)}{pushed})")
    if args.push and only is None and opts.platform is None:
        promote([Promotion(p.stack, repository_of(p.names[0]), p.digest, p.names, p.platforms)
                 for p in published])
        print(f"tagged {len(published)} images, once every image was pushed")
    elif args.push:
        print("pushed by digest only, no tag moved: once every job has passed, run "
              "bakegen promote --metadata FILE... (their --metadata-file)")
    if args.metadata_file:
        write_output(Path(args.metadata_file),
                     json.dumps(metadata_doc(published), indent=2, sort_keys=True) + "\n",
                     require_header=False)
    return 0


def _external_parents(args: argparse.Namespace, graph: StackGraph, locks: dict[str, StackLock],
                      chain: Chain, names: dict[str, list[str]],
                      platform: str | None) -> dict[str, str]:
    """The parents this job does not build: their images by digest, checked against their locks."""
    from bakegen.build import outside_parents
    from bakegen.publish import parent_images, read_metadata

    outside = outside_parents(chain)
    if not outside:
        return {}
    needs: dict[str, list[str]] = {}
    for stack, parent in chain.parents.items():
        if parent in outside:
            wanted = [platform] if platform else graph.platforms(stack)
            needs[parent] = sorted(set(needs.get(parent, [])) | set(wanted))
    given = read_metadata([Path(p) for p in args.parents], graph)
    return parent_images(graph, locks, needs, names, given)


def cmd_promote(args: argparse.Namespace) -> int:
    """Move every tag once every job has pushed its images by digest."""
    from bakegen.publish import metadata_doc, plan_promotion, promote, read_metadata
    from bakegen.render.bake import image_names

    registry, prefix = _names_from(args)
    arguments.output_file(args.metadata_file, "--metadata-file")
    graph = load_stacks(args.root)
    stacks = graph.select(args.stacks) if args.stacks else list(graph.order)
    stacks = [n for n in stacks if not args.stacks or n in args.stacks]
    _refuse_interrupted(args.root)
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
