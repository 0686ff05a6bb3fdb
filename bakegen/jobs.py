"""The CI jobs of a distributed build: one per level of the graph, stack and platform.

``bakegen jobs`` prints them as GitHub Actions matrices, one per level job of the generated
``bakegen-build.yml`` (README: "Building on many machines"). A platform with a runner of its own
(``--runner linux/arm64=ubuntu-24.04-arm``) gets a job of its own; the other platforms of a stack
are built together, under QEMU, on the default runner. The workflow has a fixed number of level
jobs: the last one builds the deeper levels too, parents first, in one job per platform.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from bakegen.errors import BakegenError, one_line
from bakegen.stack import StackGraph

DEFAULT_RUNNER = "ubuntu-latest"
NATIVE = "linux/amd64"  # the default runner's own platform
LEVEL_JOBS = 4  # level-0 ... level-3 in bakegen-build.yml
RUNNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
PLATFORM = re.compile(r"linux/[a-z0-9]+(?:/v[0-9])?")


@dataclass(frozen=True)
class Job:
    id: str  # for artifact and file names
    name: str
    stacks: str  # space-separated, parents first
    platform: str  # one platform, or "" for every platform of the stacks
    runner: str
    qemu: bool  # a platform other than the runner's own is built


def runners(values: list[str]) -> dict[str, str]:
    """--runner PLATFORM=LABEL, each checked (they reach the workflow's runs-on)."""
    out = {}
    for value in values:
        platform, sep, label = value.partition("=")
        if not sep or not PLATFORM.fullmatch(platform) or not RUNNER.fullmatch(label):
            raise BakegenError(
                f"--runner {one_line(repr(value), 80)} is not PLATFORM=RUNNER-LABEL",
                hint="for example --runner linux/arm64=ubuntu-24.04-arm",
            )
        out[platform] = label
    return out


def level_jobs(
    graph: StackGraph, own: dict[str, str], levels: int = LEVEL_JOBS
) -> list[list[Job]]:
    """The jobs of each of ``levels`` level jobs (the last also holds the deeper levels)."""
    if levels < 1:
        raise BakegenError("--levels must be 1 or more", hint="the workflow has 4 level jobs")
    depth = graph.levels(graph.order)
    out = [_jobs(level, graph, own, together=False) for level in depth[: levels - 1]]
    out += [_jobs([n for level in depth[levels - 1:] for n in level], graph, own, together=True)]
    return out + [[] for _ in range(levels - len(out))]


def _jobs(stacks: list[str], graph: StackGraph, own: dict[str, str], together: bool) -> list[Job]:
    """One job per stack and runner; ``together``: the stacks (of several levels, parents first)
    that are built for the same platforms share one job per runner."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    for stack in stacks:
        platforms = tuple(graph.platforms(stack))
        for platform, runner, key in _splits(list(platforms), own):
            group = (key, platforms if together else stack, platform, runner)
            groups.setdefault(group, []).append(stack)
    jobs = []
    for (key, _, platform, runner), names in sorted(groups.items(), key=lambda g: g[0][0]):
        builds = [platform] if platform else list(graph.platforms(names[0]))
        qemu = runner == DEFAULT_RUNNER and any(p != NATIVE for p in builds)
        jobs.append(Job(f"{'+'.join(names)}-{key}", f"{' '.join(names)} ({', '.join(builds)})",
                        " ".join(names), platform, runner, qemu))
    return jobs


def _splits(platforms: list[str], own: dict[str, str]) -> list[tuple[str, str, str]]:
    """(platform or "", runner, key): a job for each platform with its own runner, and one for
    the rest together."""
    alone = [p for p in platforms if p in own]
    rest = [p for p in platforms if p not in own]
    out = [(p, own[p], p.split("/")[1]) for p in alone]
    if rest and alone:
        out += [(p, DEFAULT_RUNNER, p.split("/")[1]) for p in rest]
    elif rest:
        out.append(("", DEFAULT_RUNNER, "all"))
    return out


def github_output(levels: list[list[Job]]) -> str:
    """``level0=[...]`` lines for $GITHUB_OUTPUT: each level job's matrix ``include``."""
    return "".join(
        f"level{i}={json.dumps([asdict(j) for j in jobs], separators=(',', ':'))}\n"
        for i, jobs in enumerate(levels)
    )
