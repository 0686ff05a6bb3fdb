"""Renderers: pure functions from (stacks, locks) to ``{path: text}``.

Templates live in ``templates/`` and are rendered by one Jinja2 environment
with ``StrictUndefined``, so a misspelled variable is an error, not an empty
string. A project's own ``templates/`` folder overrides them, file by file
(:data:`TEMPLATE_VARIABLES` says what each template receives).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    PackageLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
)
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from bakegen import __version__
from bakegen import registry as ordered
from bakegen.errors import BakegenError, Location, one_line
from bakegen.escape import dockerfile_comment, dockerfile_env_value, hcl_ident, hcl_string
from bakegen.files import GENERATED_MARKER
from bakegen.lock import StackLock
from bakegen.paths import Unreadable, read_bounded
from bakegen.plan import (
    HEALTHCHECK_SCRIPT,
    SERVER_SCRIPT,
    START_SCRIPT,
    context,
    dockerfile_path,
    plan_dockerfile,
)
from bakegen.render.bake import render_bake
from bakegen.render.dockerfile import render_dockerfile
from bakegen.stack import StackGraph

BAKE_FILE = "docker-bake.hcl"
OVERRIDES = "templates"
MAX_TEMPLATE = 1_000_000  # bytes in a template override
MAX_OUTPUT = 10_000_000  # characters of one repetition (``"x" * n``) in a template
RENDER_SECONDS = 60.0  # the whole render with overrides
# What each template receives (README: "Overriding a template"); every other template (the
# scripts) receives only ``header``. Anything else is an error.
TEMPLATE_VARIABLES = {
    "Dockerfile.j2": "plan: DockerfilePlan (head: lines; stages: heading, notes, from_line, base, "
    "name, steps: comments, text, layer, instruction)",
    "docker-bake.hcl.j2": "header, group (stack names), targets (name, dockerfile, base_var, "
    "base_default, platforms, parent, tags, labels, label_keys, annotations, "
    "epoch)",
    "bakegen-apps.sh.j2": "header, install (shell lines: uv_venv, uv_install, pip_venv, "
    "pip_install, pip_uninstall, finish)",
}


def packaged_templates() -> list[str]:
    """The templates a project may override (bakegen init's own are not among them)."""
    return [
        t for t in PackageLoader("bakegen.render", "templates").list_templates() if "/" not in t
    ]


def variables_of(template: str) -> str:
    return TEMPLATE_VARIABLES.get(template, "header")


class _Overrides(BaseLoader):
    """The project's override files, by the names that were checked (no hidden file, no link, no
    folder), each read bounded: an ``{% include %}`` of anything else is not found."""

    def __init__(self, folder: Path, names: set[str]):
        self.folder, self.names = folder, names

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        if template not in self.names:
            raise TemplateNotFound(template)
        try:
            text = read_bounded(self.folder / template, MAX_TEMPLATE).decode("utf-8")
        except (Unreadable, UnicodeDecodeError) as exc:
            raise BakegenError(
                f"cannot read it: {getattr(exc, 'reason', 'not UTF-8')}",
                location=Location(f"{OVERRIDES}/{template}"),
                hint="templates/ holds regular UTF-8 files",
            ) from None
        return text, str(self.folder / template), lambda: True


class _Sandbox(SandboxedEnvironment):
    """Jinja's sandbox, with ``*`` and ``**`` capped: an override cannot make a string of
    gigabytes."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if (
            operator == "**"
            and isinstance(right, int)
            and (right > 64 or (isinstance(left, int) and abs(left) > 2**64))
        ):
            raise SecurityError("** with a large exponent is not allowed in a template")
        if operator == "*":
            seq, count = (left, right) if isinstance(right, int) else (right, left)
            if (
                isinstance(seq, (str, list, tuple))
                and isinstance(count, int)
                and len(seq) * count > MAX_OUTPUT
            ):
                raise SecurityError(
                    f"a repetition longer than {MAX_OUTPUT} is not allowed in a template"
                )
        return super().call_binop(context, operator, left, right)


def environment(root: Path | None = None) -> Environment:
    """The templates: a project's ``templates/`` folder first (when ``root`` has one), then
    bakegen's."""
    packaged = PackageLoader("bakegen.render", "templates")
    overrides = root / OVERRIDES if root is not None else None
    names = (
        _check_overrides(overrides)
        if overrides is not None and (overrides.exists() or overrides.is_symlink())
        else None
    )
    # Sandboxed: an override comes from whoever can open a pull request, and bakegen check runs it
    # in CI.
    env = _Sandbox(
        loader=ChoiceLoader([_Overrides(overrides, names), packaged])
        if overrides is not None and names is not None
        else packaged,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters.update(
        json=json.dumps,
        hcl=hcl_string,
        hcl_ident=hcl_ident,
        env_value=dockerfile_env_value,
        comment=dockerfile_comment,
        sh=shlex.quote,
    )
    return env


def _check_overrides(folder: Path) -> set[str]:
    """The names of the project's overrides: templates/ holds regular files, each named after one of
    bakegen's templates (a typo is an error, not ignored; hidden files, editors' backups among them,
    are skipped)."""

    def refuse(message: str, where: str) -> BakegenError:
        return BakegenError(
            message,
            location=Location(where),
            hint="templates/ holds regular files named after bakegen's templates: "
            f"{', '.join(packaged_templates())}",
        )

    if folder.is_symlink() or not folder.is_dir():
        raise refuse("not a folder", OVERRIDES)
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise refuse(f"cannot read it: {exc.strerror}", OVERRIDES) from None
    names = set()
    for path in entries:
        shown = f"{OVERRIDES}/{path.name}"
        if path.name.startswith("."):
            continue
        if path.is_symlink() or not path.is_file():
            raise refuse("not a regular file (a folder, a symbolic link or a device)", shown)
        if path.name not in packaged_templates():
            raise refuse(f"{shown} overrides no bakegen template", shown)
        if not os.access(path, os.R_OK):
            raise refuse("not readable", shown)
        if path.stat().st_size > MAX_TEMPLATE:
            raise refuse(f"larger than {MAX_TEMPLATE} bytes", shown)
        names.add(path.name)
    return names


def template_error(exc: Exception, tb: TracebackType | None) -> BakegenError:
    """A template's error, at its file and line (an override's, usually)."""
    name, line = (
        getattr(exc, "filename", None) or getattr(exc, "name", None),
        getattr(exc, "lineno", None),
    )
    if not isinstance(exc, TemplateSyntaxError):
        while tb is not None:  # the innermost frame in a template
            if tb.tb_frame.f_code.co_filename.endswith(".j2"):
                name, line = tb.tb_frame.f_code.co_filename, tb.tb_lineno
            tb = tb.tb_next
    where = str(name) if name else "a template"
    shown = f"{OVERRIDES}/{Path(where).name}" if f"/{OVERRIDES}/" in where else Path(where).name
    message = getattr(exc, "message", None) or f"{type(exc).__name__}: {one_line(str(exc), 200)}"
    if isinstance(exc, TemplateNotFound):
        message = f"no template {one_line(repr(exc.name), 80)} (an override can include bakegen's "
        message += "templates and the project's overrides only)"
    return BakegenError(
        message,
        location=Location(shown, line),
        hint=f"this template receives: {variables_of(Path(where).name)}"
        if name
        else "check the template",
    )


def render_project(graph: StackGraph, locks: dict[str, StackLock]) -> dict[str, str]:
    """Every generated file of the project: the bake file, the scripts, and each stack's Dockerfile
    and files."""
    overridden = (graph.root / OVERRIDES).is_dir()
    try:
        with _time_limit(RENDER_SECONDS if overridden else None):
            files = _render_project(graph, locks)
    except TemplateError as exc:
        raise template_error(exc, exc.__traceback__) from None
    except BakegenError:
        raise
    except Exception as exc:  # noqa: BLE001 - an override can raise anything a sandboxed template can
        if not overridden:
            raise  # bakegen's own templates: a bug
        raise template_error(exc, exc.__traceback__) from None
    _check_headers(graph.root, files)
    return files


class RenderTimeout(BakegenError):
    """Rendering with the project's overrides took too long (an override that loops)."""


@contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`RenderTimeout` after ``seconds`` (main thread only: SIGALRM)."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise RenderTimeout(
            f"rendering with the project's templates took longer than {seconds:.0f} s",
            location=Location(f"{OVERRIDES}/"),
            hint="an override must not loop over large ranges; bakegen's own templates render in "
            "well under a second",
        )

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _check_headers(root: Path, files: dict[str, str]) -> None:
    """Every file an override writes keeps bakegen's header, or the next generate would refuse to
    overwrite it."""
    for path, text in files.items():
        if GENERATED_MARKER not in "".join(text.splitlines(keepends=True)[:5]):
            raise BakegenError(
                f"the output for {path} lost the '{GENERATED_MARKER}' header",
                location=Location(f"{OVERRIDES}/"),
                hint="keep the header line the packaged template writes first (bakegen only "
                "overwrites files that carry it)",
            )


def _render_project(graph: StackGraph, locks: dict[str, StackLock]) -> dict[str, str]:
    env = environment(graph.root)
    header = f"{GENERATED_MARKER} {__version__}. Do not edit; to update, run: bakegen generate"
    scripts = {
        START_SCRIPT: "bakegen-start.sh.j2",
        SERVER_SCRIPT: "bakegen-server.sh.j2",
        HEALTHCHECK_SCRIPT: "bakegen-healthcheck.py.j2",
    }
    scripts.update(
        {
            path: template
            for eco in ordered.ECOSYSTEMS
            for path, template in eco.project_templates(graph, locks).items()
        }
    )
    files = {BAKE_FILE: render_bake(env, graph, locks)}
    variables = {
        t: {k: v for eco in ordered.ECOSYSTEMS for k, v in eco.template_variables(t).items()}
        for t in scripts.values()
    }
    files.update(
        {
            path: env.get_template(template).render(header=header, **variables[template])
            for path, template in scripts.items()
        }
    )
    for name in graph.order:
        files[dockerfile_path(name)] = render_dockerfile(
            env, plan_dockerfile(graph, name, locks, ordered.ECOSYSTEMS)
        )
        ctx = context(graph, name, locks, ordered.ECOSYSTEMS)
        files.update(
            {
                path: text
                for eco in ordered.ECOSYSTEMS
                for path, text in eco.generated_files(ctx).items()
            }
        )
    return files
