"""One multi-stage Dockerfile per stack."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment

from bakegen import __version__
from bakegen.files import GENERATED_MARKER
from bakegen.lock import REQUIREMENTS, StackLock, requirements_file
from bakegen.render import APT_SCRIPT, HEALTHCHECK_SCRIPT, SERVER_SCRIPT, SLIM_SCRIPT, START_SCRIPT
from bakegen.stack import DEFAULT_PORT, StackGraph

VENV = "/opt/venv"
STAGING = "/opt/bakegen/staging"


def dockerfile_path(name: str) -> str:
    return f"dockerfiles/{name}/Dockerfile"


def constraints_path(name: str, platform: str) -> str:
    return f"dockerfiles/{name}/pip-constraints-{platform.split('/')[1]}.txt"


def render_constraints(graph: StackGraph, name: str, locks: dict[str, StackLock], platform: str) -> str:
    """Every Python pin of the stack's image on ``platform`` (its parents' and its own), as a pip constraints file."""
    pins = {p.key: p.version for s in graph.ancestors(name) + [graph.stacks[name]] for p in locks[s.name].python.by_platform.get(platform, [])}
    head = f"# {GENERATED_MARKER} {__version__} from locks/ (stack '{name}', {platform}). Do not edit; to update, run: bakegen generate\n"
    return head + "".join(f"{key}=={version}\n" for key, version in sorted(pins.items()))


def _image_user(root_lock: StackLock) -> str | None:
    """The user recorded from the root stack's base image config, unless it is root."""
    image = root_lock.image
    if image is None or not image.user or image.user.split(":")[0] in ("root", "0"):
        return None
    return image.user


JUPYTER_SERVER = "jupyter-server"


def has_server(graph: StackGraph, name: str, locks: dict[str, StackLock]) -> bool:
    """Does the image of ``name`` have a Jupyter server? (A vendor notebook image has its own.)"""
    if graph.python_env(name) == "base":
        return True
    chain = graph.ancestors(name) + [graph.stacks[name]]
    return any(JUPYTER_SERVER in locks[s.name].python.by_name(p) for s in chain for p in locks[s.name].python.by_platform)


def render_dockerfile(env: Environment, graph: StackGraph, name: str, lock: StackLock, locks: dict[str, StackLock]) -> str:
    stack, parent = graph.stacks[name], graph.parent(name)
    return env.get_template("Dockerfile.j2").render(
        header=f"{GENERATED_MARKER} {__version__} from stacks/{name}.toml and locks/{name}/. Do not edit; to update, run: bakegen generate",
        name=name,
        description=stack.description,
        parent=parent.name if parent else None,
        base_default=lock.image.pinned if lock.image else None,
        platforms=lock.platforms,
        lock_dir=f"locks/{name}",
        apt_runtime=bool(lock.apt and any(e.kind in ("req", "dep") for e in lock.apt.entries)),
        apt_build=bool(lock.apt and any(e.kind in ("build", "build-dep") for e in lock.apt.entries)),
        apt_script=APT_SCRIPT,
        npm=lock.npm,
        npm_dir=f"/opt/npm/{name}",
        env=list(stack.env),
        epoch=lock.source_date_epoch or 0,
        **_python_context(graph, name, lock),
        **_user_context(graph, name, lock, locks),
        **_run_context(graph, name, locks),
    )


def _python_context(graph: StackGraph, name: str, lock: StackLock) -> dict[str, Any]:
    """The virtualenv, its requirements, pip and the runtime constraints."""
    root, parent = graph.root_of(name), graph.parent(name)
    shared = graph.python_pip(name) and bool(lock.python.pins)
    return {
        "venv": VENV,
        "staging": STAGING,
        "requirements": f"locks/{name}/{REQUIREMENTS}",
        "requirements_files": [requirements_file(p, lock.platforms) for p in lock.platforms],
        "has_python": bool(lock.python.pins),
        "python_env": root.python_env,
        "interpreter": root.python_interpreter or "",
        "slim_script": SLIM_SCRIPT if graph.python_slim(name) else None,
        "drop_pip": parent is None and root.python_env == "venv" and not graph.python_pip(name),
        "shared_venv": shared,
        "constraints": [constraints_path(name, p) for p in lock.platforms] if shared else [],
    }


def _user_context(graph: StackGraph, name: str, lock: StackLock, locks: dict[str, StackLock]) -> dict[str, Any]:
    """Who the image runs as: the stack's user, or a vendor image's own."""
    root, user = graph.root_of(name), graph.user(name)
    vendor_user = None
    if not root.user_declared and root.python_env == "base":
        vendor_user = _image_user(locks[root.name] or lock)
    run_as = vendor_user or f"{user.uid}:{user.gid}"
    user_name = vendor_user.split(":")[0] if vendor_user else user.name
    run_as_uid, _, run_as_gid = run_as.partition(":")
    return {
        "user": user,
        "user_gid": user.gid,
        "run_as": run_as,
        "run_as_uid": run_as_uid,
        "run_as_gid": run_as_gid or f"$(id -g {run_as_uid})",
        "user_name": user_name,
        "home": f"/home/{user_name}",
        "create_user": vendor_user is None,
    }


def _run_context(graph: StackGraph, name: str, locks: dict[str, StackLock]) -> dict[str, Any]:
    """Entrypoint, command, port, server scripts and healthcheck. A child keeps its parent's unless it sets its own."""
    stack, parent = graph.stacks[name], graph.parent(name)
    parent_server = parent is not None and has_server(graph, parent.name, locks)
    return {
        "port": stack.port or (DEFAULT_PORT if parent is None else None),
        "command": list(stack.command) if stack.command else None,
        "tini": any(p.partition("=")[0] == "tini" for s in graph.ancestors(name) + [stack] for p in s.apt_packages),
        "start_script": START_SCRIPT,
        "server_script": SERVER_SCRIPT,
        "server_here": has_server(graph, name, locks) and not parent_server,
        "healthcheck_script": HEALTHCHECK_SCRIPT,
    }
