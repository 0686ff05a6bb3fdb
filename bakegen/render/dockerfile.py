"""One multi-stage Dockerfile per stack."""

from __future__ import annotations

from jinja2 import Environment

from bakegen import __version__
from bakegen.lock import GENERATED_MARKER, REQUIREMENTS, StackLock
from bakegen.stack import DEFAULT_PORT, StackGraph

VENV = "/opt/venv"
STAGING = "/opt/bakegen/staging"


def dockerfile_path(name: str) -> str:
    return f"dockerfiles/{name}/Dockerfile"


def render_dockerfile(env: Environment, graph: StackGraph, name: str, lock: StackLock) -> str:
    stack = graph.stacks[name]
    parent = graph.parent(name)
    user = graph.user(name)
    # A child keeps its parent's entrypoint, command and port unless it sets its own.
    command = stack.command
    port = stack.port
    if parent is None:
        port = port or DEFAULT_PORT
    has_tini = any(p.partition("=")[0] == "tini" for s in graph.ancestors(name) + [stack] for p in s.apt_packages)
    return env.get_template("Dockerfile.j2").render(
        header=f"{GENERATED_MARKER} {__version__} from stacks/{name}.toml and locks/{name}/. Do not edit; to update, run: bakegen generate",
        name=name,
        description=stack.description,
        parent=parent.name if parent else None,
        base_default=lock.image.pinned if lock.image else None,
        platforms=lock.platforms,
        venv=VENV,
        staging=STAGING,
        lock_dir=f"locks/{name}",
        requirements=f"locks/{name}/{REQUIREMENTS}",
        has_python=bool(lock.python.pins),
        apt_runtime=bool(lock.apt and any(e.kind in ("req", "dep") for e in lock.apt.entries)),
        apt_build=bool(lock.apt and any(e.kind in ("build", "build-dep") for e in lock.apt.entries)),
        apt_script="dockerfiles/apt-install.sh",
        npm=lock.npm,
        npm_dir=f"/opt/npm/{name}",
        env=list(stack.env),
        user=user,
        port=port,
        command=list(command) if command else None,
        tini=has_tini,
        start_script="dockerfiles/bakegen-start.sh",
        healthcheck_script="dockerfiles/bakegen-healthcheck.py",
    )
