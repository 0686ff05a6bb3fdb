"""docker-bake.hcl: one target per stack, parents linked with ``target:`` contexts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment

from bakegen import __version__
from bakegen import registry as ordered
from bakegen.escape import hcl_ident
from bakegen.files import GENERATED_MARKER
from bakegen.lock import StackLock, chain_epoch, content_tag, lock_identity
from bakegen.plan import dockerfile_path
from bakegen.stack import StackGraph


def base_variable(name: str) -> str:
    return f"BASE_IMAGE_{hcl_ident(name)}"


def render_bake(env: Environment, graph: StackGraph, locks: dict[str, StackLock]) -> str:
    targets = _targets(graph, locks)
    return env.get_template("docker-bake.hcl.j2").render(
        header=f"{GENERATED_MARKER} {__version__}. Do not edit; to update, run: bakegen generate",
        targets=targets,
        group=sorted(graph.order),
        secrets=ordered.build_secrets(),
    )


def _targets(graph: StackGraph, locks: dict[str, StackLock]) -> list[dict[str, Any]]:
    seen_vars: dict[str, str] = {}
    targets = []
    for name in graph.order:
        var = base_variable(name) if graph.stacks[name].base else None
        if var is not None and var in seen_vars:
            raise ValueError(
                f"stacks '{seen_vars[var]}' and '{name}' map to the same bake variable {var}"
            )
        if var is not None:
            seen_vars[var] = name
        # an image is as new as the newest lock it is built from (its own or a parent's)
        targets.append(_target(graph, locks, name, var, chain_epoch(locks, name)))
    return targets


def _locked_labels(chain: list[StackLock]) -> dict[str, str]:
    """The labels the ecosystems decide from the locks of an image's chain (root first)."""
    return {key: value for eco in ordered.ECOSYSTEMS for key, value in eco.labels(chain).items()}


def image_names(
    graph: StackGraph, locks: dict[str, StackLock], registry: str, tag_prefix: str
) -> dict[str, list[str]]:
    """Each stack's image references, as the bake file's ``image()`` function makes them from
    REGISTRY and TAG_PREFIX (``ghcr.io/acme/scipy:pr-1-latest``); the lock's content tag
    (``<date>-<fingerprint>``) is the last."""
    prefix = f"{registry.rstrip('/')}/" if registry else ""
    return {t["name"]: [f"{prefix}{t['name']}:{tag_prefix}{tag}" for tag in t["tags"]]
            for t in _targets(graph, locks)}


def _target(
    graph: StackGraph, locks: dict[str, StackLock], name: str, var: str | None, epoch: int | None
) -> dict[str, Any]:
    """One bake target: its Dockerfile, base variable, platforms, tags, labels and annotations."""
    stack, lock = graph.stacks[name], locks[name]
    created = (
        datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if epoch is not None
        else None
    )
    labels = {
        "org.opencontainers.image.title": name,
        "org.opencontainers.image.description": stack.description,
        "io.bakegen.stack": name,
        "io.bakegen.fingerprint": lock.fingerprint,
        **({"org.opencontainers.image.created": created} if created else {}),
        **_locked_labels([locks[a.name] for a in graph.ancestors(name)] + [lock]),
        **dict(stack.labels),
    }
    python_tag = f"python-{graph.effective(name).python_version}"
    content = content_tag(epoch, lock.fingerprint) if epoch is not None else None
    tags = list(dict.fromkeys([*stack.tags, python_tag, *([content] if content else [])]))
    annotations = [
        f"manifest:io.bakegen.stack={name}",
        f"manifest:io.bakegen.fingerprint={lock.fingerprint}",
        f"manifest:io.bakegen.lock={lock_identity(lock, ordered.ECOSYSTEMS)}",
    ]
    if created:
        annotations.insert(0, f"manifest:org.opencontainers.image.created={created}")
    return {
        "name": name,
        "dockerfile": dockerfile_path(name),
        "base_var": var,
        "base_default": image.pinned if (image := lock.parts.get("image")) else None,
        "platforms": lock.platforms,
        "parent": stack.extends,
        "tags": tags,
        "labels": sorted(labels.items()),
        "label_keys": set(labels),  # a label the stack sets wins over SOURCE_URL and REVISION
        "annotations": annotations,
        "epoch": epoch,
    }
