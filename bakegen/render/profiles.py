"""JupyterHub profiles: Zero to JupyterHub's ``singleuser.profileList`` from the stacks.

One profile per stack (unless ``[profile] enabled = false``), in build order.
The image is ``REGISTRY/stack:tag``, or ``REGISTRY/stack@sha256:...`` when the
build's metadata (``docker buildx bake --metadata-file``) gives its digest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from bakegen import __version__
from bakegen.errors import BakegenError
from bakegen.lock import GENERATED_MARKER
from bakegen.stack import StackGraph

FORMATS = ("helm", "configmap")


def image_ref(registry: str, stack: str, tag: str, digest: str | None) -> str:
    name = f"{registry.rstrip('/')}/{stack}" if registry else stack
    return f"{name}@{digest}" if digest else f"{name}:{tag}"


def read_digests(path: Path) -> dict[str, str]:
    """``{stack: digest}`` from a bake metadata file."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BakegenError(f"cannot read bake metadata {path}: {exc}", hint="write it with docker buildx bake --metadata-file FILE (or bakegen build --metadata-file FILE)") from None
    return {name: meta["containerimage.digest"] for name, meta in doc.items() if isinstance(meta, dict) and "containerimage.digest" in meta}


def profile_list(graph: StackGraph, registry: str = "", tag: str = "latest", digests: dict[str, str] | None = None) -> list[dict[str, Any]]:
    profiles = []
    for name in graph.order:
        stack = graph.stacks[name]
        opts = dict(stack.profile)
        if not opts.get("enabled", True):
            continue
        override: dict[str, Any] = {"image": image_ref(registry, name, tag, (digests or {}).get(name))}
        for key in ("cpu_limit", "mem_limit", "default_url"):
            if key in opts:
                override[key] = opts[key]
        entry: dict[str, Any] = {
            "display_name": opts.get("display_name", name),
            "description": stack.description,
            "slug": opts.get("slug", name),
        }
        if opts.get("default"):
            entry["default"] = True
        entry["kubespawner_override"] = override
        profiles.append(entry)
    if sum(1 for p in profiles if p.get("default")) > 1:
        raise BakegenError("more than one stack sets [profile] default = true", hint="keep default = true on one stack")
    return profiles


def render_profiles(graph: StackGraph, *, registry: str = "", tag: str = "latest", digests: dict[str, str] | None = None, fmt: str = "helm", command: str = "bakegen profiles") -> str:
    values = {"singleuser": {"profileList": profile_list(graph, registry, tag, digests)}}
    header = f"# {GENERATED_MARKER} {__version__} from stacks/*.toml. Do not edit; to update, run: {command}\n"
    body = yaml.safe_dump(values, sort_keys=False, default_flow_style=False)
    if fmt == "helm":
        return header + "# Zero to JupyterHub values: helm upgrade ... --values THIS_FILE\n" + body
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "bakegen-profiles", "labels": {"app.kubernetes.io/managed-by": "bakegen"}},
        "data": {"values.yaml": body},
    }
    return header + "# The same values in a ConfigMap (data.values.yaml), for tools that read values from the cluster.\n" + yaml.dump(config_map, Dumper=_BlockDumper, sort_keys=False)


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks (|), so embedded YAML stays readable."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_BlockDumper.add_representer(str, _str)
