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
from bakegen.ecosystem import registry
from bakegen.files import GENERATED_MARKER
from bakegen.lock import StackLock
from bakegen.render.escape import dockerfile_comment, dockerfile_env_value, hcl_ident, hcl_string
from bakegen.stack import StackGraph

BAKE_FILE = "docker-bake.hcl"


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
    """Every generated file of the project: the bake file, the scripts, and each stack's Dockerfile and files."""
    from bakegen.plan import HEALTHCHECK_SCRIPT, SERVER_SCRIPT, START_SCRIPT, context, dockerfile_path, plan_dockerfile
    from bakegen.render.bake import render_bake
    from bakegen.render.dockerfile import render_dockerfile

    env = environment()
    header = f"{GENERATED_MARKER} {__version__}. Do not edit; to update, run: bakegen generate"
    scripts = {START_SCRIPT: "bakegen-start.sh.j2", SERVER_SCRIPT: "bakegen-server.sh.j2", HEALTHCHECK_SCRIPT: "bakegen-healthcheck.py.j2"}
    scripts.update({path: template for eco in registry() for path, template in eco.project_templates(graph, locks).items()})
    files = {BAKE_FILE: render_bake(env, graph, locks)}
    files.update({path: env.get_template(template).render(header=header) for path, template in scripts.items()})
    for name in graph.order:
        files[dockerfile_path(name)] = render_dockerfile(env, plan_dockerfile(graph, name, locks))
        ctx = context(graph, name, locks)
        files.update({path: text for eco in registry() for path, text in eco.generated_files(ctx).items()})
    return files
