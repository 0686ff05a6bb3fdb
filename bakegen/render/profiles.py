"""JupyterHub profiles: Zero to JupyterHub's ``singleuser.profileList`` from the stacks.

One profile per stack (unless ``[profile] enabled = false``), in build order.
The image is ``REGISTRY/stack:tag``, or ``REGISTRY/stack@sha256:...`` when the
build's metadata (``docker buildx bake --metadata-file``) gives its digest.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import yaml

from bakegen import __version__
from bakegen import registry as ordered
from bakegen.errors import BakegenError, one_line
from bakegen.files import GENERATED_MARKER
from bakegen.lock import StackLock
from bakegen.paths import Unreadable, read_bounded
from bakegen.plan import context, user_facts
from bakegen.stack import StackGraph

log = logging.getLogger("bakegen")
FORMATS = ("helm", "configmap")
MAX_METADATA = 10_000_000  # bytes in a bake metadata file


def image_ref(registry: str, stack: str, tag: str, digest: str | None) -> str:
    name = f"{registry.rstrip('/')}/{stack}" if registry else stack
    return f"{name}@{digest}" if digest else f"{name}:{tag}"


def read_digests(path: Path) -> dict[str, str]:
    """``{stack: digest}`` from a bake metadata file."""
    hint = "write it with docker buildx bake --metadata-file FILE "
    hint += "(or bakegen build --metadata-file FILE)"
    try:
        doc = json.loads(read_bounded(path, MAX_METADATA).decode("utf-8"))
    except Unreadable as exc:
        raise BakegenError(f"cannot read bake metadata {path}: {exc.reason}", hint=hint) from None
    except (ValueError, RecursionError) as exc:
        raise BakegenError(
            f"cannot read bake metadata {path}: {one_line(str(exc), 200)}", hint=hint
        ) from None
    if not isinstance(doc, dict):
        raise BakegenError(f"bake metadata {path} is not a JSON object of targets", hint=hint)
    digests = {
        name: meta.get("containerimage.digest")
        for name, meta in doc.items()
        if isinstance(meta, dict) and "containerimage.digest" in meta
    }
    for name, digest in digests.items():
        if not isinstance(digest, str) or not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise BakegenError(
                f"bake metadata {path}: {one_line(repr(name), 60)} has no sha256 digest", hint=hint
            )
    return digests  # type: ignore[return-value]


# What a child's profile takes from its parent's, unless it sets its own: a hub admin
# expects geo (on scipy) to get at least scipy's resources and landing page.
INHERITED = ("cpu_limit", "mem_limit", "default_url", "gpu", "node_selector")
# Kubernetes' extended resource of NVIDIA's device plugin
GPU_RESOURCE = "nvidia.com/gpu"
# Zero to JupyterHub's defaults (singleuser.uid, singleuser.fsGid): a profile says
# uid, gid and fs_gid only for images whose user differs.
Z2JH_USER = (1000, 100)


def _options(graph: StackGraph, name: str) -> dict[str, Any]:
    """The stack's [profile], with cpu_limit, mem_limit and default_url inherited from its
    parents."""
    opts: dict[str, Any] = {}
    selector: dict[str, str] = {}  # a node_selector adds to its parents' (a key of its own wins)
    for stack in [*graph.ancestors(name), graph.stacks[name]]:
        own = dict(stack.profile)
        selector.update(dict(own.get("node_selector", ())))
        opts.update(own if stack.name == name else {k: v for k, v in own.items() if k in INHERITED})
    return {**opts, "node_selector": tuple(selector.items())} if selector else opts


def _user_ids(graph: StackGraph, name: str, locks: dict[str, StackLock]) -> tuple[int, int] | None:
    """(uid, gid) of the image's user: [user], or the vendor image's own numeric user; None when
    unknown."""
    found = re.fullmatch(
        r"(\d+)(?::(\d+))?", user_facts(context(graph, name, locks, ordered.ECOSYSTEMS))["run_as"]
    )
    if found is None:
        return None
    return int(found.group(1)), int(found.group(2) or found.group(1))


def _placement(opts: dict[str, Any], platforms: list[str]) -> dict[str, Any]:
    """The GPUs a server asks for, and the nodes it may run on: its one platform's architecture
    and the stack's node_selector."""
    out: dict[str, Any] = {}
    if opts.get("gpu"):  # gpu = 0: a child of a GPU stack that needs none
        out["extra_resource_limits"] = {GPU_RESOURCE: opts["gpu"]}
    selector = {"kubernetes.io/arch": platforms[0].split("/")[1]} if len(platforms) == 1 else {}
    selector.update(dict(opts.get("node_selector", ())))
    if selector:  # quoted: a value such as y or 1e3 is a string to Kubernetes, not to every YAML
        out["node_selector"] = {_Quoted(k): _Quoted(v) for k, v in selector.items()}
    return out


def profile_list(
    graph: StackGraph,
    locks: dict[str, StackLock],
    registry: str,
    tag: str = "latest",
    digests: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    profiles = []
    for name in graph.order:
        opts = _options(graph, name)
        if not opts.get("enabled", True):
            continue
        digest = (digests or {}).get(name)
        override: dict[str, Any] = {
            "image": image_ref(registry, name, tag, digest),
            "image_pull_policy": "IfNotPresent" if digest else "Always",
        }
        override.update({key: opts[key] for key in ("cpu_limit", "mem_limit", "default_url")
                         if key in opts})
        override.update(_placement(opts, graph.platforms(name)))
        ids = _user_ids(graph, name, locks)
        if ids is None:
            log.warning(
                "warning: %s: the base image's user is not numeric; set [user] uid and gid so that "
                "the profile can say them",
                name,
            )
        elif ids != Z2JH_USER:
            override.update(uid=ids[0], gid=ids[1], fs_gid=ids[1])
        entry: dict[str, Any] = {
            "display_name": opts.get("display_name", name),
            "description": graph.stacks[name].description,
            "slug": opts.get("slug", name),
        }
        if opts.get("default"):
            entry["default"] = True
        entry["kubespawner_override"] = override
        profiles.append(entry)
    _check_unique(profiles)
    return profiles


def _check_unique(profiles: list[dict[str, Any]]) -> None:
    if sum(1 for p in profiles if p.get("default")) > 1:
        raise BakegenError(
            "more than one stack sets [profile] default = true",
            hint="keep default = true on one stack",
        )
    slugs = [p["slug"] for p in profiles]
    twice = sorted({s for s in slugs if slugs.count(s) > 1})
    if twice:
        raise BakegenError(
            f"two profiles have the slug '{twice[0]}'",
            hint="give one of them another [profile] slug",
        )


def check_registry(registry: str) -> None:
    """An image without a registry is pulled from Docker Hub's library namespace: refuse to write
    such a profile."""
    if not registry.strip("/"):
        raise BakegenError(
            "no --registry: Kubernetes would pull the images from Docker Hub's library namespace "
            "(image: base:latest is docker.io/library/base)",
            hint="pass --registry (or set REGISTRY) to where bakegen build --push put the images, "
            "e.g. --registry ghcr.io/acme; "
            "for images loaded into the cluster by hand, --registry docker.io/library says so",
        )


def render_profiles(
    graph: StackGraph,
    locks: dict[str, StackLock],
    *,
    registry: str,
    tag: str = "latest",
    digests: dict[str, str] | None = None,
    fmt: str = "helm",
    command: str = "bakegen profiles",
) -> str:
    check_registry(registry)
    values = {"singleuser": {"profileList": profile_list(graph, locks, registry, tag, digests)}}
    header = f"# {GENERATED_MARKER} {__version__} from stacks/*.toml. Do not edit; "
    header += f"to update, run: {command}\n"
    body = yaml.dump(values, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
    if fmt == "helm":
        return header + "# Zero to JupyterHub values: helm upgrade ... --values THIS_FILE\n" + body
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "bakegen-profiles",
            "labels": {"app.kubernetes.io/managed-by": "bakegen"},
        },
        "data": {"values.yaml": body},
    }
    return (
        header
        + "# The same values in a ConfigMap (data.values.yaml), for tools that read values from "
        "the cluster.\n" + yaml.dump(config_map, Dumper=_BlockDumper, sort_keys=False)
    )


class _Quoted(str):
    """A string written in double quotes, whatever it looks like."""


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, with _Quoted strings in double quotes."""


_Dumper.add_representer(
    _Quoted, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", str(value),
                                                           style='"'))


class _BlockDumper(_Dumper):
    """Multi-line strings as literal blocks (|), so embedded YAML stays readable."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None
    )


_BlockDumper.add_representer(str, _str)
