"""docker-bake.hcl: one target per stack, parents linked with ``target:`` contexts."""

from __future__ import annotations

from jinja2 import Environment

from bakegen import __version__
from bakegen.lock import GENERATED_MARKER, StackLock
from bakegen.render.escape import hcl_ident
from bakegen.stack import StackGraph


def base_variable(name: str) -> str:
    return f"BASE_IMAGE_{hcl_ident(name)}"


def render_bake(env: Environment, graph: StackGraph, locks: dict[str, StackLock]) -> str:
    from bakegen.render.dockerfile import dockerfile_path

    targets = []
    seen_vars: dict[str, str] = {}
    for name in graph.order:
        stack = graph.stacks[name]
        var = base_variable(name) if stack.base else None
        if var is not None:
            if var in seen_vars:
                raise ValueError(f"stacks '{seen_vars[var]}' and '{name}' map to the same bake variable {var}")
            seen_vars[var] = name
        labels = {
            "org.opencontainers.image.title": name,
            "org.opencontainers.image.description": stack.description,
            "io.bakegen.stack": name,
            "io.bakegen.fingerprint": locks[name].fingerprint,
            **dict(stack.labels),
        }
        targets.append({
            "name": name,
            "dockerfile": dockerfile_path(name),
            "base_var": var,
            "base_default": locks[name].image.pinned if locks[name].image else None,
            "platforms": locks[name].platforms,
            "parent": stack.extends,
            "tags": list(stack.tags),
            "labels": sorted(labels.items()),
        })
    return env.get_template("docker-bake.hcl.j2").render(
        header=f"{GENERATED_MARKER} {__version__}. Do not edit; to update, run: bakegen generate",
        targets=targets,
        group=sorted(graph.order),
    )
