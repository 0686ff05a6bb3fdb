"""The Dockerfile plan: a stack's stages and steps, as data.

Python decides everything here; ``Dockerfile.j2`` only writes the plan out. Each
ecosystem adds its own stages and final-image steps (``Ecosystem.builder_stages``,
``final_steps``); this module adds what every image has (the user, the start
scripts, the environment, the port, the entrypoint) and orders the steps.

Each :class:`Step` holds one instruction as data (:mod:`bakegen.instructions`:
a ``RUN``'s commands as argv lists, its mounts) and says what its layer holds
(``layer``), so ``bakegen report`` names the layers of a built image from the
plan, not from its text; ``Step.text`` is the instruction written out.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from bakegen import __version__
from bakegen.escape import dockerfile_comment
from bakegen.files import GENERATED_MARKER
from bakegen.instructions import (
    Command,
    Copy,
    Directive,
    Env,
    ExecForm,
    Healthcheck,
    Instruction,
    Run,
    Shell,
    Verbatim,
    dockerfile_text,
    user,
)
from bakegen.lock import StackLock
from bakegen.stack import DEFAULT_PORT, EffectiveStack, StackGraph

if TYPE_CHECKING:
    from bakegen.ecosystem import AnyEcosystem

DOCKERFILE_DIR = "dockerfiles"
START_SCRIPT = f"{DOCKERFILE_DIR}/bakegen-start.sh"
SERVER_SCRIPT = f"{DOCKERFILE_DIR}/bakegen-server.sh"
HEALTHCHECK_SCRIPT = f"{DOCKERFILE_DIR}/bakegen-healthcheck.py"
# docker-stacks' start commands, linked to bakegen's own scripts in /usr/local/bin (when the base
# has none)
SERVER_LINKS = (
    "start-notebook.py",
    "start-notebook.sh",
    "start-singleuser.py",
    "start-singleuser.sh",
)
START_LINK = "start.sh"

# Where a final-image step goes: packages in the order they change least often first,
# so that a bump re-runs as few layers as possible. Each ecosystem adds its offset.
ORDER_ROOT = 0
ORDER_SYSTEM = 10  # system packages
ORDER_USER = 20  # the user, its home and the start scripts (root stacks)
ORDER_PACKAGES = 30  # language packages and applications; then the stack's own files and steps
ORDER_ENV = 50  # the stack's [env]
ORDER_RUNTIME = 60  # USER, WORKDIR, port, healthcheck, entrypoint, command


@dataclass
class Step:
    """One instruction (data: :mod:`bakegen.instructions`), the comments above it, what its layer
    holds (None: it makes no layer, e.g. ENV) and where it goes in the final stage (``order``)."""

    instruction: Instruction
    comments: tuple[str, ...] = ()
    layer: str | None = None
    order: int = 0

    @property
    def text(self) -> str:
        """The instruction as written (continuation lines included)."""
        return dockerfile_text(self.instruction)


@dataclass
class Stage:
    heading: str  # the comment line above FROM ("# --- builder: ...")
    base: str  # FROM
    name: str | None = None  # AS name; None for the final image
    steps: list[Step] = field(default_factory=list)
    notes: tuple[str, ...] = ()  # comment lines between the heading and FROM

    @property
    def from_line(self) -> str:
        return f"FROM {self.base} AS {self.name}" if self.name else f"FROM {self.base}"

    def as_users(self) -> list[tuple[str | None, Step]]:
        """Each step with the user it runs as (None: the image's own, before the stage's first
        USER)."""
        who: str | None = None
        out = []
        for step in self.steps:
            if isinstance(step.instruction, Directive) and step.instruction.keyword == "USER":
                who = step.instruction.value
            out.append((who, step))
        return out


@dataclass
class DockerfilePlan:
    stack: str
    head: list[str]  # the lines before the first stage (comments, ARG)
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def layers(self) -> list[str]:
        """What each layer of the final stage holds, in order."""
        return [step.layer for step in self.final.steps if step.layer is not None]


@dataclass(frozen=True)
class UvLock:
    """Where the builder stages find uv's lock: the root stack's lock folder and its build-tools
    files."""

    lock_dir: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class Facts:
    """What ecosystems tell the plan's core and each other. Each field comes from one ecosystem (its
    ``Ecosystem.provides``); :func:`context` fills them in the registry's order, so an ecosystem's
    ``facts`` may read only fields of those before it (its ``Ecosystem.reads``;
    tests/test_architecture.py checks both). Steps read any field: they are planned after every
    ecosystem's facts."""

    base_image: str | None = None  # image: the pinned base, the ARG default of a root stack
    base_user: str | None = None  # image: the base image's own user, unless it is root
    uv_lock: UvLock | None = None  # tools: uv's lock (None: a lock from before uv; pip installs)
    server_here: bool = False  # python: this image adds the Jupyter server (its parent has none)
    server_python: str | None = None  # python: the Python that runs the healthcheck
    image_user: str | None = None  # python: a vendor image's own user, when the stack names none
    tools_stage: str | None = None  # apt: the build-tools stage's name, when apt.build has packages
    init: str | None = None  # apt: the init (tini) when the image installs it


@dataclass
class PlanContext:
    """What the ecosystems' steps are made from."""

    stack: EffectiveStack
    lock: StackLock
    locks: dict[str, StackLock]
    graph: StackGraph
    ecosystems: Sequence[AnyEcosystem]  # the registry's, in order (bakegen.registry.ECOSYSTEMS)
    facts: Facts = field(default_factory=Facts)  # what ecosystems tell the core and each other

    @property
    def name(self) -> str:
        return self.stack.name

    @property
    def parent(self) -> str | None:
        return self.stack.parent.name if self.stack.parent else None

    @property
    def from_(self) -> str:
        """The final image's FROM: the parent stack's image (a bake context) or the pinned base."""
        return self.parent or "${BASE_IMAGE}"

    @property
    def lock_dir(self) -> str:
        return f"locks/{self.name}"

    @property
    def tools(self) -> str:
        """What the builder stages start from."""
        return self.facts.tools_stage or self.from_


def heading(title: str) -> str:
    """A stage's heading comment, 79 columns wide."""
    return f"# --- {title} ".ljust(79, "-")


def dockerfile_path(name: str) -> str:
    return f"{DOCKERFILE_DIR}/{name}/Dockerfile"


def plan_dockerfile(
    graph: StackGraph, name: str, locks: dict[str, StackLock], ecosystems: Sequence[AnyEcosystem]
) -> DockerfilePlan:
    ctx = context(graph, name, locks, ecosystems)
    builders = [stage for eco in ecosystems for stage in eco.builder_stages(ctx)]
    tools = [stage for eco in ecosystems if builders for stage in [eco.tools_stage(ctx)] if stage]
    final = Stage(
        heading("final image"), ctx.from_, steps=sorted(_final_steps(ctx), key=lambda s: s.order)
    )
    return DockerfilePlan(name, _head(ctx), [*tools, *builders, final])


def context(
    graph: StackGraph, name: str, locks: dict[str, StackLock], ecosystems: Sequence[AnyEcosystem]
) -> PlanContext:
    """The plan context, with each ecosystem's facts, in the registry's order (each sees those
    before it)."""
    ctx = PlanContext(graph.effective(name), locks[name], locks, graph, ecosystems)
    for eco in ecosystems:
        before, ctx.facts = asdict(ctx.facts), eco.facts(ctx)
        changed = {key for key, value in asdict(ctx.facts).items() if before[key] != value}
        if not changed <= set(eco.provides):
            raise AssertionError(
                f"the {eco.name} ecosystem set facts it does not provide: "
                f"{sorted(changed - set(eco.provides))}"
            )
    return ctx


def _head(ctx: PlanContext) -> list[str]:
    stack = ctx.stack.stack
    lines = [
        f"# {GENERATED_MARKER} {__version__} from stacks/{ctx.name}.toml and locks/{ctx.name}/. Do "
        "not edit; to update, run: bakegen generate",
        "#",
        f"# Stack {ctx.name}: {dockerfile_comment(stack.description)}",
        f"# Build it with the other stacks: docker buildx bake {ctx.name}   (see docker-bake.hcl)",
    ]
    if ctx.parent:
        return lines + [
            f'# "{ctx.parent}" below is the {ctx.parent} stack\'s image, linked by bake:',
            f'#   contexts = {{ {ctx.parent} = "target:{ctx.parent}" }}',
        ]
    return lines + [f"ARG BASE_IMAGE={ctx.facts.base_image}"]


def _final_steps(ctx: PlanContext) -> list[Step]:
    steps = [Step(user("root"), order=ORDER_ROOT)]
    steps += [step for eco in ctx.ecosystems for step in eco.final_steps(ctx)]
    if not ctx.parent:
        steps += _user_steps(ctx)
    steps += [Step(Env(((key, value),)), order=ORDER_ENV) for key, value in ctx.stack.stack.env]
    return steps + _runtime_steps(ctx)


def user_facts(ctx: PlanContext) -> dict[str, Any]:
    """Who the image runs as: the stack's user, or a vendor image's own (when an ecosystem says
    so)."""
    user, vendor_user = ctx.stack.user, ctx.facts.image_user
    run_as = vendor_user or f"{user.uid}:{user.gid}"
    user_name = vendor_user.split(":")[0] if vendor_user else user.name
    uid, _, gid = run_as.partition(":")
    return {
        "run_as": run_as,
        "uid": uid,
        "gid": gid or f"$(id -g {uid})",
        "user_name": user_name,
        "home": f"/home/{user_name}",
        "create_user": vendor_user is None,
    }


def _user_steps(ctx: PlanContext) -> list[Step]:
    u = user_facts(ctx)
    home = (
        "The user's home is group-writable (setgid) for its group, as docker-stacks does: an",
        "arbitrary uid started with --group-add users can write it.",
    )
    user = (("BAKEGEN_USER", u["user_name"]), ("NB_USER", u["user_name"]), ("HOME", u["home"]))
    scripts = (
        (START_SCRIPT, "/usr/local/bin/bakegen-start", "0755", "entrypoint script"),
        (SERVER_SCRIPT, "/usr/local/bin/bakegen-server", "0755", "server start script"),
        (HEALTHCHECK_SCRIPT, "/usr/local/lib/bakegen-healthcheck.py", "0644", "healthcheck script"),
    )
    steps = [
        Step(Copy((src,), dest, chmod=mode), (), layer, ORDER_USER)
        for src, dest, mode, layer in scripts
    ]
    steps[0].comments = home
    run, why = _user_run(ctx, u)
    env = Env((*user, ("SHELL", Verbatim("/bin/bash"))))
    return [*steps, Step(run, (why,), "user and ~/work", ORDER_USER), Step(env, order=ORDER_USER)]


def _user_run(ctx: PlanContext, u: dict[str, Any]) -> tuple[Run, str]:
    """The user (unless the base image has its own), its home and ~/work, the start hooks' folders
    and docker-stacks' start commands."""
    vendor = "The base image's own user (from its image config), as vendor notebook images have."
    create, why = _create_user(ctx) if u["create_user"] else (Command(("true",)), vendor)
    gid = u["gid"] if u["gid"].isdigit() else Verbatim(u["gid"])  # $(id -g <the image's user>)
    home = (
        "install",
        "-d",
        "-m",
        "2775",
        "-o",
        u["uid"],
        "-g",
        gid,
        u["home"],
        u["home"] + "/work",
    )
    hooks = ("install", "-d", "/usr/local/bin/start-notebook.d", "/usr/local/bin/before-notebook.d")
    links = Shell(
        f"for name in {' '.join(SERVER_LINKS)}; do \\\n"
        "        [ -e /usr/local/bin/$name ] || ln -s bakegen-server /usr/local/bin/$name; \\\n"
        "    done"
    )
    link = f"/usr/local/bin/{START_LINK}"
    start = Shell(f"{{ [ -e {link} ] || ln -s bakegen-start {link}; }}")
    return Run((create, Command(home), Command(hooks), links, start)), why


def _create_user(ctx: PlanContext) -> tuple[Shell, str]:
    """The stack's user and group, unless the base image has them (useradd dates /etc/shadow with
    the lock's epoch)."""
    user, q = ctx.stack.user, shlex.quote
    create = Shell(
        f"if ! id -u {q(user.name)} >/dev/null 2>&1; then \\\n"
        f"        (getent group {user.gid} >/dev/null || groupadd --gid {user.gid} {q(user.name)}) "
        "\\\n"
        f"     && SOURCE_DATE_EPOCH={ctx.lock.source_date_epoch or 0} useradd --no-log-init "
        f"--create-home --uid {user.uid} --gid {user.gid} --shell /bin/bash {q(user.name)}; \\\n"
        "    fi"
    )
    return create, "useradd dates /etc/shadow with SOURCE_DATE_EPOCH: the lock's, not the clock."


def _runtime_steps(ctx: PlanContext) -> list[Step]:
    u, stack = user_facts(ctx), ctx.stack.stack
    steps = [Step(user(u["run_as"]))]
    if not ctx.parent:
        steps.append(Step(Directive("WORKDIR", u["home"]), layer="working directory"))
    port = stack.port or (DEFAULT_PORT if not ctx.parent else None)
    if port:
        steps += [
            Step(Env((("JUPYTER_PORT", Verbatim(str(port))),))),
            Step(Directive("EXPOSE", str(port))),
        ]
    if ctx.facts.server_here:
        options = (
            ("interval", "10s"),
            ("timeout", "5s"),
            ("start-period", "60s"),
            ("start-interval", "2s"),
            ("retries", "3"),
        )
        steps.append(
            Step(
                Healthcheck(
                    options, (str(ctx.facts.server_python), "/usr/local/lib/bakegen-healthcheck.py")
                )
            )
        )
    if not ctx.parent:
        steps.append(_entrypoint(ctx))
    command = (
        list(stack.command)
        if stack.command
        else ["start-notebook.py"]
        if ctx.facts.server_here
        else None
        if ctx.parent
        else ["python3"]
    )
    if command:
        steps.append(Step(ExecForm("CMD", tuple(command))))
    for step in steps:
        step.order = ORDER_RUNTIME
    return steps


def _entrypoint(ctx: PlanContext) -> Step:
    if ctx.facts.init:
        return Step(ExecForm("ENTRYPOINT", (ctx.facts.init, "-g", "--", "bakegen-start")))
    return Step(
        ExecForm("ENTRYPOINT", ("bakegen-start",)),
        ("No tini in apt.packages: the start script runs as PID 1 without an init.",),
    )
