"""One multi-stage Dockerfile per stack: its plan (bakegen/plan.py), written out by
Dockerfile.j2."""

from __future__ import annotations

from jinja2 import Environment

from bakegen.plan import DockerfilePlan


def render_dockerfile(env: Environment, plan: DockerfilePlan) -> str:
    return env.get_template("Dockerfile.j2").render(plan=plan)
