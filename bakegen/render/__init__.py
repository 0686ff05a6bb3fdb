"""Renderers: pure functions from (stacks, locks) to ``{path: text}``.

Templates live in ``templates/`` and are rendered by one Jinja2 environment
with ``StrictUndefined``, so a misspelled variable is an error, not an empty
string.
"""

from __future__ import annotations

import json
import shlex

from jinja2 import Environment, PackageLoader, StrictUndefined

from bakegen import __version__
from bakegen.files import GENERATED_MARKER
from bakegen.lock import StackLock
from bakegen.render.escape import dockerfile_comment, dockerfile_env_value, hcl_ident, hcl_string
from bakegen.stack import StackGraph

BAKE_FILE = "docker-bake.hcl"
DOCKERFILE_DIR = "dockerfiles"
APT_SCRIPT = f"{DOCKERFILE_DIR}/apt-install.sh"
START_SCRIPT = f"{DOCKERFILE_DIR}/bakegen-start.sh"
SERVER_SCRIPT = f"{DOCKERFILE_DIR}/bakegen-server.sh"
HEALTHCHECK_SCRIPT = f"{DOCKERFILE_DIR}/bakegen-healthcheck.py"
SLIM_SCRIPT = f"{DOCKERFILE_DIR}/bakegen-slim.py"


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("bakegen.render", "templates"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters.update(json=json.dumps, hcl=hcl_string, hcl_ident=hcl_ident, env_value=dockerfile_env_value, comment=dockerfile_comment, sh=shlex.quote)
    return env


def render_project(graph: StackGraph, locks: dict[str, StackLock]) -> dict[str, str]:
    """Every generated file of the project: the bake file and one Dockerfile per stack."""
    from bakegen.render.bake import render_bake
    from bakegen.render.dockerfile import constraints_path, dockerfile_path, render_constraints, render_dockerfile

    env = environment()
    header = f"{GENERATED_MARKER} {__version__}. Do not edit; to update, run: bakegen generate"
    files = {
        BAKE_FILE: render_bake(env, graph, locks),
        START_SCRIPT: env.get_template("bakegen-start.sh.j2").render(header=header),
        SERVER_SCRIPT: env.get_template("bakegen-server.sh.j2").render(header=header),
        HEALTHCHECK_SCRIPT: env.get_template("bakegen-healthcheck.py.j2").render(header=header),
    }
    if any(lock.apt is not None for lock in locks.values()):
        files[APT_SCRIPT] = env.get_template("apt-install.sh.j2").render(header=header)
    if any(graph.python_slim(name) and locks[name].python.pins for name in graph.order):
        files[SLIM_SCRIPT] = env.get_template("bakegen-slim.py.j2").render(header=header)
    for name in graph.order:
        files[dockerfile_path(name)] = render_dockerfile(env, graph, name, locks[name], locks)
        if graph.python_pip(name) and locks[name].python.pins:
            files.update({constraints_path(name, p): render_constraints(graph, name, locks, p) for p in locks[name].platforms})
    return files
