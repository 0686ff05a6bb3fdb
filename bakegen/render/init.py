"""What ``bakegen init`` writes into a new repository: a first stack, a Makefile, CI workflows."""

from __future__ import annotations

from bakegen import __version__
from bakegen.files import GENERATED_MARKER
from bakegen.jobs import LEVEL_JOBS
from bakegen.render import environment

WORKFLOWS = ("bakegen-check.yml", "bakegen-upgrade.yml", "bakegen-build.yml")
FIRST_STACK = "stacks/base.toml"
# Lock-update bots, kept out of what bakegen generates (Renovate reads JSON5, which holds our
# header).
BOT_CONFIGS = {
    ".github/renovate.json5": "renovate.json5.j2",
    ".github/dependabot.yml": "dependabot.yml.j2",
}


def render_init(python: str = "3.13") -> dict[str, str]:
    """``{path: text}``. The stack is the user's from the start (no header); the rest is regenerated
    by init."""
    env = environment()
    header = f"{GENERATED_MARKER} {__version__} (bakegen init). Do not edit; to update, run: "
    header += "bakegen init"
    files = {
        FIRST_STACK: env.get_template("init/stack.toml.j2").render(python=python),
        "Makefile": env.get_template("init/Makefile.j2").render(header=header),
    }
    for name in WORKFLOWS:
        files[f".github/workflows/{name}"] = env.get_template(f"init/{name}.j2").render(
            header=header, version=__version__, levels=LEVEL_JOBS
        )
    for path, template in BOT_CONFIGS.items():
        files[path] = env.get_template(f"init/{template}").render(header=header)
    return files
