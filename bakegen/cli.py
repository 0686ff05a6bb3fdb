"""Command line: the argument parser, and :func:`main`, which runs a command of
:mod:`bakegen.commands` and maps its errors to one ``error:`` line (and a hint) and an exit code."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from bakegen import __version__, arguments
from bakegen import registry as ordered
from bakegen.build_commands import cmd_build, cmd_jobs, cmd_promote, cmd_verify_repro
from bakegen.commands import (
    cmd_audit,
    cmd_check,
    cmd_diff,
    cmd_generate,
    cmd_graph,
    cmd_init,
    cmd_lock,
    cmd_profiles,
    cmd_report,
    cmd_sbom,
)
from bakegen.errors import BakegenError, StackErrors, one_line
from bakegen.locker import Resolvers
from bakegen.resolvers.image import ImageResolver
from bakegen.resolvers.pins import DEFAULT_INDEX
from bakegen.resolvers.python import BACKENDS, get_resolver

DIFF_FORMATS = ("json", "markdown", "text")


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as bakegen's: one ``error:`` line and a hint (not its usage
    text)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {one_line(message)}", file=sys.stderr)
        print(f"hint: {self.prog} --help lists the arguments", file=sys.stderr)
        raise SystemExit(2)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="bakegen",
                description="Lock Jupyter image stacks and compile them to docker buildx bake.")
    p.add_argument("--version", action="version", version=f"bakegen {__version__}")
    p.add_argument("-C", "--directory", dest="root", type=Path, default=Path("."),
                   help="project folder (holds stacks/)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every external command")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_lock_commands(sub)
    _add_output_commands(sub)
    _add_review_commands(sub)
    _add_build_commands(sub)
    return p


def _add_lock_commands(sub: argparse._SubParsersAction) -> None:
    """lock, generate, check and init: the files in the repository."""
    lk = sub.add_parser("lock", help="resolve stacks/*.toml into locks/<stack>/")
    lk.add_argument("stacks", nargs="*", help="stacks to lock (with their parents); default: all")
    lk.add_argument("--upgrade", action="store_true",
                    help="resolve every stack again: newest versions and base-image digests")
    lk.add_argument("--upgrade-package", "-P", action="append", default=[], metavar="NAME[==VER]",
                    help="upgrade one Python, apt or npm package, or base image; every other pin "
                    "is kept (repeatable)")
    lk.add_argument("--upgrade-ecosystem", "-E", action="append", default=[],
                    choices=[eco.name for eco in ordered.ECOSYSTEMS],
                    help="move every pin of one ecosystem (e.g. apt, when Debian published "
                    "updates); the others are kept (repeatable)")
    lk.add_argument("--resolver", choices=sorted(BACKENDS), help="Python resolver (default: uv)",
                    default=os.environ.get("BAKEGEN_RESOLVER", "uv"))
    lk.add_argument("--index-url", default=os.environ.get("BAKEGEN_INDEX_URL", DEFAULT_INDEX),
                    help=f"Python package index (default: {DEFAULT_INDEX})")
    lk.add_argument("--security-only", action="store_true",
                    help="move only the packages whose locked version has a known vulnerability "
                    "with a fix (bakegen audit)")
    lk.add_argument("--min-age", type=int, metavar="DAYS",
                    help="a cool-down: resolve no release younger than DAYS (default: "
                    "bakegen.toml's lock.min_age_days, else none; 0 turns it off)")
    lk.add_argument("--registry-mirror", action="append", metavar="[REGISTRY=]HOST[/PATH]",
                    default=os.environ.get("BAKEGEN_REGISTRY_MIRROR", "").split(),
                    help="resolve base images through this mirror of REGISTRY (default: Docker "
                    "Hub), e.g. a pull-through cache (env: BAKEGEN_REGISTRY_MIRROR; repeatable)")
    lk.set_defaults(func=_lock)

    gen = sub.add_parser("generate", help="compile locks into docker-bake.hcl and dockerfiles/")
    gen.add_argument("--check", action="store_true",
                     help="write nothing; exit 1 when generated files are out of date")
    gen.set_defaults(func=cmd_generate)

    ck = sub.add_parser("check", help="for CI and pre-commit: are locks and generated files "
                        "current? (no network)")
    ck.set_defaults(func=cmd_check)

    it = sub.add_parser("init", help="set up a new repository: a first stack, a Makefile and CI "
                        "workflows")
    it.add_argument("--python", default="3.13", choices=["3.11", "3.12", "3.13"],
                    help="Python of the first stack (default 3.13)")
    it.set_defaults(func=cmd_init)


def _lock(args: argparse.Namespace) -> int:
    """bakegen lock, with the resolvers that --resolver and --registry-mirror name. get_resolver
    and Resolvers are looked up in this module when the command needs them (tests/test_kill.py
    replaces them)."""
    mirrors = arguments.registry_mirrors(args.registry_mirror)
    images = {"image": ImageResolver(mirrors=mirrors)} if mirrors else {}
    return cmd_lock(args, lambda: Resolvers(python=get_resolver(args.resolver), **images))


def _add_output_commands(sub: argparse._SubParsersAction) -> None:
    """profiles, report and sbom: what the project and its images say about themselves."""
    pf = sub.add_parser("profiles",
                        help="Zero to JupyterHub singleuser.profileList (YAML) from the stacks")
    pf.add_argument("--registry", default=os.environ.get("REGISTRY", ""),
                    help="image name prefix, e.g. ghcr.io/acme (env: REGISTRY)")
    pf.add_argument("--tag", default="latest",
                    help="image tag when no digest is known (default: latest)")
    pf.add_argument("--metadata", metavar="FILE",
                    help="bake metadata (docker buildx bake --metadata-file): pin images by digest")
    pf.add_argument("--format", choices=["helm", "configmap"], default="helm",
                    help="Helm values (default) or a ConfigMap holding them")
    pf.add_argument("--output", "-o", help="write to this file instead of standard output")
    pf.set_defaults(func=cmd_profiles)

    rp = sub.add_parser("report", help="size and layers of the built images, what each layer "
                        "installs, and the gain over the parent")
    rp.add_argument("--registry", default=os.environ.get("REGISTRY", ""),
                    help="image name prefix used at build (env: REGISTRY)")
    rp.add_argument("--tag", default="latest")
    rp.add_argument("--format", choices=["text", "json"], default="text")
    rp.set_defaults(func=cmd_report)

    sb = sub.add_parser("sbom", help="an SBOM per image and platform (CycloneDX 1.6, SPDX 2.3) "
                        "from the locks alone (no Docker, no network)")
    sb.add_argument("stacks", nargs="*", help="stacks to describe (default: all)")
    sb.add_argument("--format", choices=["cyclonedx", "spdx", "both"], default="both",
                    help="CycloneDX 1.6 JSON, SPDX 2.3 JSON or both (default)")
    sb.add_argument("--output", "-o", metavar="DIR",
                    help="write DIR/<stack>/<arch>.cdx.json and .spdx.json (default: sbom/ in the "
                    "project)")
    sb.set_defaults(func=cmd_sbom)


def _add_review_commands(sub: argparse._SubParsersAction) -> None:
    """diff, graph and audit: what a reviewer of a lock update reads."""
    df = sub.add_parser("diff",
                        help="what changed in locks/ since a git revision, per image and ecosystem")
    df.add_argument("rev", nargs="?", default="HEAD",
                    help="git revision to compare with (default: HEAD)")
    df.add_argument("--format", choices=DIFF_FORMATS, default="text",
                    help="text (default), markdown (a PR body) or json")
    df.add_argument("--output", "-o", help="write to this file instead of standard output")
    df.add_argument("--registry", help="measure each rebuilt image in this registry: the layers "
                    "that change, the bytes users download again, the size change")
    df.add_argument("--tag-prefix", help="as the images were built with (--registry)")
    df.add_argument("--metadata", action="append", default=[], metavar="FILE",
                    help="the new images' digests (bakegen build or promote --metadata-file); "
                    "default: their content tags")
    df.add_argument("--audit", action="store_true", help="mark each version change 'fixes ID' or "
                    "'introduces ID' (known vulnerabilities, as bakegen audit looks them up)")
    df.add_argument("--index-url", default=os.environ.get("BAKEGEN_INDEX_URL", DEFAULT_INDEX),
                    help="Python package index whose JSON API holds the advisories (--audit)")
    df.set_defaults(func=cmd_diff)

    gr = sub.add_parser("graph", help="the image graph as Mermaid (GitHub renders it) or Graphviz "
                        "dot")
    gr.add_argument("--format", choices=["mermaid", "dot"], default="mermaid")
    gr.add_argument("--changed-since", metavar="REV", help="highlight the images that the lock "
                    "changes since this git revision rebuild")
    gr.add_argument("--output", "-o", help="write to this file instead of standard output")
    gr.set_defaults(func=cmd_graph)

    au = sub.add_parser("audit", help="known vulnerabilities of the locked packages, per image "
                        "(exit 1: a fix the locks do not use; 3: a source not reachable)")
    au.add_argument("stacks", nargs="*", help="stacks to audit (default: all)")
    au.add_argument("--ignore", action="append", default=[], metavar="ID",
                    help="accept this advisory for this run (keep accepted risks, with their "
                    "reason, in bakegen.toml's [[audit.ignore]])")
    au.add_argument("--index-url", default=os.environ.get("BAKEGEN_INDEX_URL", DEFAULT_INDEX),
                    help="Python package index whose JSON API holds the advisories (default: "
                    f"{DEFAULT_INDEX})")
    au.add_argument("--format", choices=["text", "json"], default="text")
    au.set_defaults(func=cmd_audit)


def _add_build_secrets(parser: argparse.ArgumentParser) -> None:
    """--ID FILE for each ecosystem's build secret."""
    for secret in ordered.build_secrets():
        parser.add_argument(f"--{secret.id}", metavar="FILE", help=f"{secret.help}, passed as a "
                            f"BuildKit secret, never in a layer (env: {secret.variable})")


def _add_build_commands(sub: argparse._SubParsersAction) -> None:
    """verify-repro and build: docker buildx bake."""
    vr = sub.add_parser("verify-repro", help="build a stack twice from its locks (--no-cache) and "
                        "compare: identical or the first difference")
    vr.add_argument("stack")
    vr.add_argument("--base-image", action="append", default=[], metavar="STACK=IMAGE",
                    help="replace a root stack's base image")
    vr.add_argument("--ca-bundle", metavar="PEM",
                    help="CA bundle for a TLS-intercepting proxy (env: BAKEGEN_CA_BUNDLE)")
    _add_build_secrets(vr)
    vr.add_argument("--progress", default="quiet", choices=["auto", "plain", "tty", "quiet"],
                    help="build output (default: quiet)")
    vr.add_argument("--against", metavar="REF", help="compare one clean build with the image a "
                    "registry holds (REGISTRY/REPOSITORY:TAG)")
    vr.add_argument("--compression", **_compression())
    vr.set_defaults(func=cmd_verify_repro)

    bd = sub.add_parser("build", help="run docker buildx bake on the generated files")
    bd.add_argument("targets", nargs="*", help="stacks to build (default: all)")
    bd.add_argument("--base-image", action="append", default=[], metavar="STACK=IMAGE",
                    help="replace a root stack's base image")
    bd.add_argument("--ca-bundle", metavar="PEM", help="CA bundle for a TLS-intercepting proxy, "
                    "passed as a BuildKit secret (env: BAKEGEN_CA_BUNDLE)")
    _add_build_secrets(bd)
    bd.add_argument("--registry", help="image name prefix, e.g. ghcr.io/acme")
    bd.add_argument("--tag-prefix", help="prepended to every tag")
    bd.add_argument("--cache", metavar="REPO", help="registry layer cache: read and write "
                    "REPO:<stack> (e.g. ghcr.io/acme/bakegen-cache)")
    bd.add_argument("--load", action="store_true",
                    help="load the images into the local image store")
    bd.add_argument("--push", action="store_true", help="push the images")
    bd.add_argument("--no-cache", action="store_true",
                    help="build every step again (as a new machine would)")
    bd.add_argument("--provenance", action="store_true", help="attach BuildKit's provenance "
                    "attestation (mode=max); it holds build times, so the index digest changes "
                    "on every build")
    bd.add_argument("--compression", **_compression())
    bd.add_argument("--metadata-file", metavar="FILE", help="write bake's build metadata (image "
                    "digests) here; bakegen profiles --metadata reads it")
    bd.add_argument("--progress", default="auto", choices=["auto", "plain", "tty", "quiet"],
                    help="build output style")
    _add_distributed_options(bd)
    bd.set_defaults(func=cmd_build)
    _add_promote(sub)


def _add_promote(sub: argparse._SubParsersAction) -> None:
    from bakegen.jobs import LEVEL_JOBS

    jb = sub.add_parser("jobs", help="the jobs of a distributed CI build: per level, stack and "
                        "platform (GitHub Actions matrices)")
    jb.add_argument("--runner", action="append", metavar="PLATFORM=LABEL",
                    default=os.environ.get("BAKEGEN_RUNNERS", "").split(),
                    help="a runner of its own for a platform, e.g. linux/arm64=ubuntu-24.04-arm "
                    "(default: every platform on ubuntu-latest, arm64 under QEMU; env: "
                    "BAKEGEN_RUNNERS)")
    jb.add_argument("--levels", type=int, default=LEVEL_JOBS,
                    help=f"level jobs in the workflow (default {LEVEL_JOBS}); the last builds the "
                    "deeper levels too")
    jb.add_argument("--format", choices=["github", "json"], default="github",
                    help="github: level0=[...] lines for $GITHUB_OUTPUT (default); json")
    jb.set_defaults(func=cmd_jobs)

    pm = sub.add_parser("promote", help="move every tag at once, after every job of a distributed "
                        "build pushed its images by digest")
    pm.add_argument("stacks", nargs="*", help="stacks whose tags move (default: all)")
    pm.add_argument("--metadata", action="append", required=True, metavar="FILE|DIR",
                    help="the --metadata-file of each job (repeatable; a folder: its *.json)")
    pm.add_argument("--registry", help="image name prefix, as at build (env: REGISTRY)")
    pm.add_argument("--tag-prefix", help="prepended to every tag, as at build (env: TAG_PREFIX)")
    pm.add_argument("--metadata-file", metavar="FILE", help="write each image's final digest "
                    "here (bakegen profiles --metadata reads it)")
    pm.set_defaults(func=cmd_promote)



def _add_distributed_options(bd: argparse.ArgumentParser) -> None:
    """Building on many machines (README: "Building on many machines")."""
    bd.add_argument("--stacks", nargs="+", metavar="NAME",
                    help="with --push: build only these stacks, FROM their parents' images in "
                    "the registry; push by digest, move no tag")
    bd.add_argument("--level", type=int, metavar="N", help="with --push: build only the stacks of "
                    "level N of the graph (0: the stacks with a base image), as --stacks does")
    bd.add_argument("--parents", action="append", default=[], metavar="FILE|DIR",
                    help="--metadata-file of earlier jobs: the parents' digests (default: the "
                    "registry's <date>-<fingerprint> tag of each parent)")
    bd.add_argument("--platform", metavar="OS/ARCH", help="with --load or --push: only this one "
                    "of each stack's platforms (one job per platform; promote merges them)")
    bd.add_argument("--builder", metavar="NAME", help="the buildx builder to build on, e.g. a "
                    "docker context of another engine (default: buildx's current builder)")


def _compression() -> dict[str, Any]:
    from bakegen.build import COMPRESSIONS

    return {"default": COMPRESSIONS[0], "choices": list(COMPRESSIONS),
            "help": f"layer compression of --load and --push (default: {COMPRESSIONS[0]}; gzip "
            "for clients older than Docker 23 or containerd 1.5)"}


class Terminated(BaseException):
    """SIGTERM (a cancelled CI job, docker stop, kill): raised so that temporary folders and files
    are removed."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _logging(args.verbose)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return _run(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    try:
        args.root = args.root.resolve()
        return args.func(args)
    except Terminated:
        print("error: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except StackErrors as exc:
        return _report(exc.errors, exc.exit_code)
    except BakegenError as exc:
        return _report([exc], exc.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001
        # the one catch-all: a bug, never a traceback for the user
        if args.verbose:
            traceback.print_exc()
        return _report([BakegenError(
            f"internal error: {type(exc).__name__}: {exc}",
            hint="this is a bug in bakegen: please report it with the command and the output of "
            "bakegen -v",
        )], 70)


def _report(errors: Sequence[BakegenError], code: int) -> int:
    for err in errors:
        for line in err.lines():
            print(line, file=sys.stderr)
    return code


def _logging(verbose: bool) -> None:
    logger = logging.getLogger("bakegen")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logger.propagate = False
