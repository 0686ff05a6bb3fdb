"""The commands on the repository's files and what they describe (the build commands are in
:mod:`bakegen.build_commands`): each takes the parsed arguments, calls the library and prints
what it did.

:func:`bakegen.cli.main` parses the command line and runs one of them. A command returns its
exit code; it reports a failure by raising :class:`~bakegen.errors.BakegenError`, which ``main``
maps to its ``error:`` line and exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bakegen import arguments
from bakegen import registry as ordered
from bakegen.advisories import ADVISORY_ID
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
from bakegen.settings import MAX_MIN_AGE, read_settings
from bakegen.stack import StackGraph
from bakegen.staleness import (
    LOCK_DIR,
    current_locks,
    lock_folders_without_stack,
    orphan_lock_folders,
    stale_locks,
)

# The other commands' modules (Jinja2, the build runner, ...) are imported where they are
# used: `bakegen lock` starts faster without them.
DOCKERFILE_DIR = "dockerfiles"
log = logging.getLogger("bakegen")


def cmd_lock(args: argparse.Namespace, make_resolvers: Callable[[], Resolvers]) -> int:
    """``make_resolvers`` makes the resolvers (the Python one that --resolver names), once the
    index URL and the stacks are checked."""
    arguments.index_url(args.index_url)
    graph = load_stacks(args.root)
    if args.security_only:
        args.upgrade_package = security_fixes(args, graph)
        if not args.upgrade_package:
            return 0
    cutoff = cooldown(args.min_age, read_settings(args.root).min_age_days)
    resolvers = make_resolvers()  # Python: the one ecosystem with a choice of resolver
    upgrades = Upgrades.parse(args.upgrade, args.upgrade_package, args.upgrade_ecosystem)
    outcomes = lock_stacks(graph, resolvers, names=args.stacks, index_url=args.index_url,
                           upgrade=upgrades, exclude_newer=cutoff)
    gone = orphan_locks(args.root, graph, outcomes)
    changed = write_set(args.root, outcome_files(outcomes), command="bakegen lock", delete=gone)
    for o in outcomes:
        state = (f"migrated to lock format {LOCK_VERSION}" if o.migrated
                 else "locked" if o.changed else "up to date")
        print(f"{o.stack}: {state} ({summary(o.lock)})")
    for path in changed:
        print(f"{'removed' if path in gone else 'wrote'} {path}")
    return 0


def security_fixes(args: argparse.Namespace, graph: StackGraph) -> list[str]:
    """--security-only: the packages whose locked version has a known vulnerability with a fix
    (bakegen audit), as --upgrade-package names; nothing else moves."""
    from bakegen.audit import audit

    if args.upgrade or args.upgrade_package or args.upgrade_ecosystem:
        raise BakegenError("--security-only moves only the packages with a vulnerability fix",
                           hint="leave out --upgrade, --upgrade-package and --upgrade-ecosystem")
    stacks = graph.select(args.stacks or None)  # the stacks bakegen lock will lock
    report = audit(graph, current_locks(graph), stacks, args.index_url,
                   accepted_risks(argparse.Namespace(root=args.root, ignore=[])))
    fixes = sorted({(f.package, f.advisory.id) for f in report.findings if f.fixable})
    for group in report.unchecked_groups():
        log.warning("warning: --security-only: not checked: %s", group)
    if not fixes:
        print("security-only: no locked package has a known vulnerability with a fix")
    for package, ident in fixes:
        print(f"security-only: {package} moves ({ident})")
    return sorted({package for package, _ in fixes})


def cooldown(flag: int | None, setting: int | None) -> str | None:
    """The cool-down's cut-off (RFC 3339, UTC, to the second): --min-age, or bakegen.toml's
    lock.min_age_days; None for no cool-down (0 days, or none set)."""
    days = flag if flag is not None else setting
    if flag is not None and not 0 <= flag <= MAX_MIN_AGE:
        raise BakegenError(f"--min-age {flag}: not a number of days from 0 to {MAX_MIN_AGE}",
                           hint="for example --min-age 7")
    if not days:
        return None
    cutoff = datetime.now(UTC).replace(microsecond=0) - timedelta(days=days)
    print(f"cool-down: no release published after {cutoff:%Y-%m-%dT%H:%M:%SZ} ({days} days)")
    return f"{cutoff:%Y-%m-%dT%H:%M:%SZ}"


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
        refuse_interrupted(args.root)
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


def refuse_interrupted(root: Path) -> None:
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
    refuse_interrupted(args.root)
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
    from bakegen.graph import nodes_of_locks

    if args.output:
        # refused before any work: a folder, a link, a file bakegen did not write
        check_output_file(Path(args.output))
    new = read_tree_locks(args.root)
    old = read_rev_locks(args.root, args.rev)
    parents = {name: lock.parent for name, lock in {**old, **new}.items()}
    diffs = diff_locks(old, new, parents)
    if args.audit:
        from bakegen.audit import mark_changes

        arguments.index_url(args.index_url)
        for problem in mark_changes(diffs, args.index_url):
            log.warning("warning: not checked: %s", problem)
    if args.registry:
        _measure(args, diffs, old, new)
    text = FORMATS[args.format](diffs, args.rev, "working tree", nodes=nodes_of_locks(new))
    _write_or_print(args.output, text)
    return 0


def _measure(args: argparse.Namespace, diffs: list[Any], old: dict[str, StackLock],
             new: dict[str, StackLock]) -> None:
    """--registry: each rebuilt image's layers and bytes, old against new (bakegen.imagediff)."""
    from bakegen.imagediff import measure, references
    from bakegen.plan import plan_dockerfile
    from bakegen.publish import read_metadata

    registry = arguments.registry(args.registry)
    prefix = arguments.tag_prefix(args.tag_prefix or "")
    graph = load_stacks(args.root)
    new_refs = references(new, registry, prefix)
    for stack, pushed in read_metadata([Path(p) for p in args.metadata], graph).items():
        new_refs[stack] = f"{registry.rstrip('/')}/{stack}@{pushed[0].digest}"
    steps: dict[str, list[str | None]] = {}
    for d in diffs:
        if d.rebuild and d.stack in graph.stacks:
            try:
                plan = plan_dockerfile(graph, d.stack, current_locks(graph), ordered.ECOSYSTEMS)
                steps[d.stack] = [step.layer for step in plan.final.steps]
            except BakegenError:
                pass  # stale locks: the layers are named by number
    measure(diffs, references(old, registry, prefix), new_refs, new, steps)


def _write_or_print(output: str | None, text: str) -> None:
    if output:
        write_output(Path(output), text)
    else:
        sys.stdout.write(text)


def cmd_graph(args: argparse.Namespace) -> int:
    """The image graph as Mermaid or Graphviz dot; --changed-since REV highlights the images a
    change since REV rebuilds."""
    from bakegen.graph import FORMATS, nodes_of_graph

    if args.output:
        check_output_file(Path(args.output))
    graph = load_stacks(args.root)
    changed = _rebuilt_since(args.root, args.changed_since) if args.changed_since else set()
    _write_or_print(args.output, FORMATS[args.format](nodes_of_graph(graph), changed))
    return 0


def _rebuilt_since(root: Path, rev: str) -> set[str]:
    from bakegen.diff import diff_locks, read_rev_locks, read_tree_locks

    new, old = read_tree_locks(root), read_rev_locks(root, rev)
    parents = {name: lock.parent for name, lock in {**old, **new}.items()}
    return {d.stack for d in diff_locks(old, new, parents) if d.rebuild}


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
    refuse_interrupted(args.root)
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


def cmd_audit(args: argparse.Namespace) -> int:
    """The known vulnerabilities of the locked packages: exit 1 for a fix the locks do not use, 3
    when a source could not be asked (bakegen.audit)."""
    from bakegen.audit import FORMATS, audit

    arguments.index_url(args.index_url)
    graph = load_stacks(args.root)
    names = [n for n in graph.select(args.stacks) if not args.stacks or n in args.stacks]
    refuse_interrupted(args.root)
    report = audit(graph, current_locks(graph), names, args.index_url, accepted_risks(args))
    if report.unchecked_sources():
        log.warning("warning: some packages were not checked: the sources did not answer (see "
                    "'not checked' below); exit %d", report.exit_code)
    sys.stdout.write(FORMATS[args.format](report))
    return report.exit_code


def accepted_risks(args: argparse.Namespace) -> dict[str, str]:
    """bakegen.toml's [[audit.ignore]] (id: reason), and --ignore ID for this run."""
    accepted = {i.id: i.reason for i in read_settings(args.root).ignored}
    for ident in args.ignore:
        if not ADVISORY_ID.fullmatch(ident):
            raise BakegenError(f"--ignore {one_line(repr(ident), 80)} is not an advisory id",
                               hint="for example --ignore GHSA-xxxx-xxxx-xxxx")
        accepted.setdefault(ident, "--ignore (no reason recorded in bakegen.toml)")
    return accepted


def cmd_report(args: argparse.Namespace) -> int:
    from bakegen.report import build_report
    from bakegen.report import to_json as report_json
    from bakegen.report import to_text as report_text

    reports = build_report(load_stacks(args.root), registry=args.registry, tag=args.tag)
    sys.stdout.write(report_json(reports) if args.format == "json" else report_text(reports))
    return 0
