"""Installing locked Python requirements in a Dockerfile, as plan steps (data).

The ``python`` ecosystem's stages and steps (the image's virtualenv, a child's
staging prefix, a vendor image's own Python, the pip constraints), and the pieces
that ``apps`` installs its applications with too: uv from the root stack's lock,
the cache and CA mounts, and the install commands. Both ecosystems plan their
installs from here, so a change to how bakegen installs a lock is made once.
"""

from __future__ import annotations

import shlex

from bakegen import __version__
from bakegen.files import GENERATED_MARKER
from bakegen.instructions import (
    AND,
    THEN,
    Command,
    Copy,
    Env,
    Mount,
    Part,
    Run,
    Shell,
    Verbatim,
    arg,
    user,
)
from bakegen.lock import arch_of
from bakegen.plan import DOCKERFILE_DIR, ORDER_PACKAGES, PlanContext, Stage, Step, heading
from bakegen.stack import EffectiveStack

REQUIREMENTS = "requirements.txt"
VENV = "/opt/venv"
BUILDER = "builder"  # the stage that makes the virtualenv
STAGING = "/opt/bakegen/staging"
ORDER = ORDER_PACKAGES + 10  # after npm and applications: Python pins move most often
VENV_LAYER = "Python virtualenv (requirements.txt)"  # a root stack's virtualenv layer, as bakegen report names it
SLIM_SCRIPT = f"{DOCKERFILE_DIR}/bakegen-slim.py"  # the slim step's pruning script
FINISH_SCRIPT = f"{DOCKERFILE_DIR}/bakegen-finish.py"  # bytecode (sharded: bit for bit), duplicates linked, group access

# The cache mount is root's; a child's builder inherits HOME=/home/<user> from its parent, where pip would
# find no writable cache and download every wheel again.
PIP_CACHE_ENV = ("PIP_CACHE_DIR", "/root/.cache/pip")
PIP_CACHE_MOUNT = Mount("cache", id="bakegen-pip", target="/root/.cache/pip")
UV_CACHE_MOUNT = Mount("cache", id="bakegen-uv", target="/root/.cache/uv")
CACERT_MOUNT = Mount("secret", id="cacert")  # the proxy's CA, if any: a BuildKit secret, never in a layer
FINISH_MOUNT = Mount("bind", source=FINISH_SCRIPT, target="/tmp/bakegen/finish.py")
PIP_CACERT = Shell("if [ -s /run/secrets/cacert ]; then export PIP_CERT=/run/secrets/cacert; fi")
UV_CACERT = Shell("if [ -s /run/secrets/cacert ]; then export SSL_CERT_FILE=/run/secrets/cacert; fi")
# uv (bakegen's build tool, locked by the root stack: ecosystems/tools.py), in the builder stages only
UV_PREFIX = "/opt/bakegen/uv"
UV = f"{UV_PREFIX}/bin/uv"
# pip for the uv install: run from the wheel that python3-pip-whl (Debian) or else ensurepip (python.org) ships, or
# from a virtualenv made for it when the base image has no such wheel
DEBIAN_PIP_WHEELS = "/usr/share/python-wheels"  # Debian's python3-pip-whl, which its python3 -m venv installs pip from
PIP_CHOICE = (
    Shell(f"pip=; for w in {DEBIAN_PIP_WHEELS}/pip-*.whl \"$(python3 -c 'import ensurepip, os; print(os.path.dirname(ensurepip.__file__))' 2>/dev/null)\"/_bundled/pip-*.whl; do \\\n"
          '        if [ -f "$w" ]; then pip="python3 $w/pip"; break; fi; \\\n'
          "    done", after=THEN),
    Shell('if [ -z "$pip" ]; then python3 -m venv /opt/bakegen/pip && pip=/opt/bakegen/pip/bin/pip; fi', after=THEN),
)
PIP_WHEEL = "".join(f"    {part.text}; \\\n" for part in PIP_CHOICE)  # the same, as the lines of a RUN
PIP_OPTIONS = ("--no-input", "--disable-pip-version-check", "--require-hashes", "--no-deps", "--no-compile")


def requirements_file(platform: str, platforms: list[str]) -> str:
    """The Python lock file of ``platform``: the first platform's is ``requirements.txt``."""
    return REQUIREMENTS if platform == platforms[0] else f"requirements-{arch_of(platform)}.txt"


def env_of(stack: EffectiveStack) -> str:
    """"venv": bakegen's /opt/venv; "base": the base image's own Python (vendor images)."""
    return str(stack.root_table("python").get("env", "venv"))


def pip_of(stack: EffectiveStack) -> bool:
    """Is pip in the image's virtualenv, for runtime installs? ([python] pip of the root; default true with env = "venv".)"""
    return env_of(stack) == "venv" and stack.root_table("python").get("pip") is not False


def slim_of(stack: EffectiveStack) -> bool:
    """``[python] slim`` of the stack, else of its nearest ancestor that sets it; False when none does."""
    return bool(stack.nearest("python", "slim", False))


# --- the commands ---------------------------------------------------------------------------


def make_venv(path: str, with_pip: bool = True, after: str = THEN) -> Command:
    return Command(("python3", "-m", "venv", *(() if with_pip else ("--without-pip",)), path), after=after)


def uv_install(uv: str, python: str, requirements: str, prefix: str | None = None, after: str = AND) -> Command:
    """uv's hash-checked install of exactly a lock. ``--link-mode copy``: the cache is another file system (a
    cache mount); files are copied, never linked to it."""
    options = ("--no-config", "--quiet", "--cache-dir", "/root/.cache/uv", "--link-mode", "copy", "--require-hashes", "--no-deps")
    return Command((uv, "pip", "install", *options, "--python", python, *(("--prefix", prefix) if prefix else ()), "-r", requirements), after=after)


def pip_install(pip: str, requirements: str, *extra: str, env: tuple[tuple[str, str], ...] = (PIP_CACHE_ENV,), after: str = AND) -> Command:
    """pip's hash-checked install of exactly a lock (with no constraints file of the image's)."""
    return Command((pip, "install", *PIP_OPTIONS, *extra, "-r", requirements), env=(("PIP_CONSTRAINT", ""), *env), after=after)


def pip_uninstall(python: str) -> Command:
    return Command((python, "-m", "pip", "uninstall", "--no-input", "--disable-pip-version-check", "-q", "-y", "pip"))


def finish(python: str, target: str, *options: str) -> Command:
    """bakegen-finish.py: the bytecode (bit for bit), duplicates linked, and the group's access."""
    return Command((python, "/tmp/bakegen/finish.py", target, *options))


def installer(uv: bool) -> tuple[Mount, Shell]:
    """The cache mount and the CA line of the installer: uv's, or pip's."""
    return (UV_CACHE_MOUNT, UV_CACERT) if uv else (PIP_CACHE_MOUNT, PIP_CACERT)


def uv_steps(ctx: PlanContext) -> list[Step]:
    """uv in the builder, from the root stack's lock: pip (hash-checked) into a prefix of its own, per platform."""
    assert ctx.facts.uv_lock is not None
    lock_dir, files = ctx.facts.uv_lock.lock_dir, ctx.facts.uv_lock.files
    mounts = (PIP_CACHE_MOUNT, *(Mount("bind", source=f"{lock_dir}/{f}", target=f"/tmp/bakegen/tools/{f}") for f in files), CACERT_MOUNT)
    pick = Shell('req=/tmp/bakegen/tools/build-tools.txt; if [ -f "/tmp/bakegen/tools/build-tools-$TARGETARCH.txt" ]; then '
                 'req="/tmp/bakegen/tools/build-tools-$TARGETARCH.txt"; fi', after=THEN)
    env = (("PIP_CONSTRAINT", ""), ("PIP_ROOT_USER_ACTION", "ignore"), PIP_CACHE_ENV)
    install = Command((Verbatim("$pip"), "install", *PIP_OPTIONS, "-q", "--target", UV_PREFIX, "-r", Verbatim('"$req"')), env, after=THEN)
    return [Step(arg("TARGETARCH"), ("uv, the installer, from the root stack's lock (build-tools.txt): it stays in this stage.",
                                     "pip runs from the base image's own pip wheel (Debian's, or else ensurepip's) when it has one:",
                                     "a virtualenv with pip installed took 2.5 s.")), Step(Run((PIP_CACERT, pick, *PIP_CHOICE, install), mounts))]


# --- the python ecosystem's stages and steps ---------------------------------------------------


def _uv(ctx: PlanContext) -> bool:
    """Does this stack's builder install with uv (its root's lock has bakegen's build tools)?"""
    return ctx.facts.uv_lock is not None


def in_final(ctx: PlanContext) -> bool:
    """Is the root stack's virtualenv made in the final stage, with the builder's uv mounted? Yes when the builder
    would start from the same image (no build tools): copying the virtualenv over wrote it twice and made BuildKit
    hash every byte of it for the cache key (5 s of a 40 s build of the S1 set)."""
    return (not ctx.parent and env_of(ctx.stack) == "venv" and _uv(ctx) and not ctx.facts.tools_stage
            and bool(ctx.lock.parts["python"].pins))


def shared_venv(ctx: PlanContext) -> bool:
    return pip_of(ctx.stack) and bool(ctx.lock.parts["python"].pins)


def builder_stages(ctx: PlanContext) -> list[Stage]:
    vendor, has_python = env_of(ctx.stack) == "base", bool(ctx.lock.parts["python"].pins)
    if vendor or (ctx.parent and not has_python):
        return []
    if in_final(ctx):
        return [Stage(heading("builder: uv, the installer, stays in this stage"), ctx.tools, BUILDER, [Step(user("root")), *uv_steps(ctx)])]
    stage = Stage(heading("builder: build tools and the pip cache stay in this stage"), ctx.tools, BUILDER, [Step(user("root"))])
    if not ctx.parent:  # with uv, pip is in the virtualenv when the lock has it ([python] pip)
        stage.steps.append(Step(Run((make_venv(VENV, with_pip=not _uv(ctx)),))))
    if has_python:
        stage.steps += (uv_steps(ctx) if _uv(ctx) else []) + _install_steps(ctx)
    return [stage]


def final_steps(ctx: PlanContext) -> list[Step]:
    vendor, has_python = env_of(ctx.stack) == "base", bool(ctx.lock.parts["python"].pins)
    steps = []
    if not ctx.parent and not vendor:  # the virtualenv: made here, or copied from the builder
        made = _install_steps(ctx, final=True) if in_final(ctx) else [Step(Copy((VENV,), VENV, stage=BUILDER), layer=VENV_LAYER, order=ORDER)]
        steps += [*made, Step(Env((("VIRTUAL_ENV", Verbatim(VENV)), ("PATH", Verbatim(f"{VENV}/bin:$PATH")))), order=ORDER)]
    elif has_python and not vendor:
        steps.append(Step(Copy((f"{STAGING}/",), f"{VENV}/", stage=BUILDER), layer="Python packages (requirements.txt)", order=ORDER))
    if shared_venv(ctx):
        steps += _constraints_steps(ctx)
    if has_python and vendor:
        steps.append(_vendor_install(ctx))
    return steps


def _install_comments(ctx: PlanContext) -> tuple[str, ...]:
    lines = ["Hash-checked install of exactly the locked wheels. The lock is bind-mounted",
             "and the proxy CA (if any) is a BuildKit secret: neither lands in a layer."]
    if _uv(ctx):
        lines += ["uv downloads and installs in parallel. bakegen-finish.py compiles the bytecode (4",
                  "processes, each a fixed share of the files: bit for bit on any machine; none for"]
        lines += ["tests folders) and links identical files."]
    if not ctx.parent and not pip_of(ctx.stack):
        lines += ["[python] pip = false: no pip in the virtualenv, which stays root's."]
    elif ctx.parent and not _uv(ctx):
        lines.append("ensurepip gives this stage a pip when the parent's virtualenv has none.")
    if shared_venv(ctx):
        lines += ["Runtime installs (%pip install): the virtualenv is writable by the user's group",
                  f"({ctx.stack.user.gid}, setgid folders), as docker-stacks' environment is."]
    if slim_of(ctx.stack):
        lines += ["[python] slim: tests folders and C/Cython sources are removed before the layer is made,",
                  "and every top-level module that imported before must still import."]
    return tuple(lines)


def _install_steps(ctx: PlanContext, final: bool = False) -> list[Step]:
    """The hash-checked install of the lock (per platform when there are several): in the builder, or with
    ``final`` in the final stage, with the builder's uv mounted (its layer: the virtualenv)."""
    platforms = ctx.lock.platforms
    scripts: tuple[Mount, ...] = (Mount("bind", stage=BUILDER, source=UV_PREFIX, target=UV_PREFIX),) if final else ()
    scripts += (Mount("bind", source=SLIM_SCRIPT, target="/tmp/bakegen/slim.py"),) if slim_of(ctx.stack) else ()
    layer, order = (VENV_LAYER, ORDER) if final else (None, 0)  # in the final stage, the step makes the virtualenv's layer
    cache, cacert = installer(_uv(ctx))
    pick: tuple[Part, ...] = ()
    if len(platforms) > 1:
        locks = tuple(Mount("bind", source=f"{ctx.lock_dir}/{f}", target=f"/tmp/bakegen/lock/{f}") for f in (requirements_file(p, platforms) for p in platforms))
        pick = (Shell("req=/tmp/bakegen/lock/requirements.txt", after=THEN),
                Shell('if [ -f "/tmp/bakegen/lock/requirements-$TARGETARCH.txt" ]; then req="/tmp/bakegen/lock/requirements-$TARGETARCH.txt"; fi', after=THEN),
                Command(("ln", "-s", Verbatim('"$req"'), "/tmp/bakegen/requirements.txt"), after=THEN))
        head = [Step(arg("TARGETARCH"), _install_comments(ctx), order=order)]
    else:
        locks, head = (Mount("bind", source=f"{ctx.lock_dir}/{REQUIREMENTS}", target="/tmp/bakegen/requirements.txt"),), []
    run = Run((cacert, *pick, *_install_commands(ctx, final)), (cache, *locks, *scripts, FINISH_MOUNT, CACERT_MOUNT))
    return head + [Step(run, () if head else _install_comments(ctx), layer, order)]


def _install_commands(ctx: PlanContext, final: bool = False) -> list[Command]:
    """pip install, slim, compileall and the group-writable venv: into the venv (root) or a staging prefix (child);
    ``final``: the venv is made here too."""
    target, python, requirements = STAGING if ctx.parent else VENV, f"{VENV}/bin/python", "/tmp/bakegen/requirements.txt"
    if _uv(ctx):
        prefix = STAGING if ctx.parent else None
        commands = [make_venv(VENV, with_pip=False), uv_install(UV, python, requirements, prefix)] if final else [uv_install(UV, python, requirements, prefix, THEN)]
    elif ctx.parent:
        ensure = Command((python, "-m", "ensurepip", "--default-pip"), after=THEN, redirect=">/dev/null")
        commands = [ensure, pip_install(f"{VENV}/bin/pip", requirements, f"--prefix={STAGING}")]
    else:
        commands = [pip_install(f"{VENV}/bin/pip", requirements, after=THEN)]
    if slim_of(ctx.stack):
        commands.append(Command((python, "/tmp/bakegen/slim.py", requirements, "--prefix", target)))
    if not ctx.parent and not pip_of(ctx.stack) and not _uv(ctx):
        commands.append(pip_uninstall(python))
    options = (("--dest", VENV) if ctx.parent else ()) + (("--group", str(ctx.stack.user.gid)) if shared_venv(ctx) else ())
    return [*commands, finish(python, target, *options)]


def constraints_path(name: str, platform: str) -> str:
    return f"dockerfiles/{name}/pip-constraints-{arch_of(platform)}.txt"


def render_constraints(ctx: PlanContext, platform: str) -> str:
    """Every Python pin of the stack's image on ``platform`` (its parents' and its own), as a pip constraints file."""
    pins = {p.key: p.version for s in ctx.stack.chain for p in ctx.locks[s.name].parts["python"].by_platform.get(platform, [])}
    head = f"# {GENERATED_MARKER} {__version__} from locks/ (stack '{ctx.name}', {platform}). Do not edit; to update, run: bakegen generate\n"
    return head + "".join(f"{key}=={version}\n" for key, version in sorted(pins.items()))


def _constraints_steps(ctx: PlanContext) -> list[Step]:
    files = [constraints_path(ctx.name, p) for p in ctx.lock.platforms]
    mounts = tuple(Mount("bind", source=f, target=f"/tmp/bakegen/{f.rsplit('/', 1)[1]}") for f in files)
    install = Command(("install", "-D", "-m", "0644", Verbatim("/tmp/bakegen/pip-constraints-$TARGETARCH.txt"), "/etc/bakegen/pip-constraints.txt"))
    steps = [
        Step(arg("TARGETARCH"), ("The pins of every locked package, for pip at run time: `%pip install x` cannot move",
                                 "them (PIP_CONSTRAINT= pip install ... moves one on purpose)."), order=ORDER),
        Step(Run((install,), mounts), layer="pip constraints (the image's pins)", order=ORDER),
    ]
    if not ctx.parent:
        steps.append(Step(Env((("PIP_CONSTRAINT", Verbatim("/etc/bakegen/pip-constraints.txt")),)), order=ORDER))
    return steps


def _vendor_install(ctx: PlanContext) -> Step:
    interpreter = ctx.stack.root_table("python").get("interpreter", "")
    py = Shell(f'py={shlex.quote(interpreter)}; [ -n "$py" ] || py=$(command -v python3 || command -v python)', after=THEN)
    env = (("SOURCE_DATE_EPOCH", str(ctx.lock.source_date_epoch or 0)), ("PYTHONHASHSEED", "0"), PIP_CACHE_ENV)
    install = Command((Verbatim('"$py"'), "-m", "pip", "install", *PIP_OPTIONS[:4], "-r", "/tmp/bakegen/requirements.txt"), env, after=THEN)
    mounts = (PIP_CACHE_MOUNT, Mount("bind", source=f"{ctx.lock_dir}/{REQUIREMENTS}", target="/tmp/bakegen/requirements.txt"), CACERT_MOUNT)
    return Step(
        Run((PIP_CACERT, py, install), mounts),
        ("Hash-checked install into the base image's own Python (python.env = \"base\"), in one",
         "layer that holds only what changed; pip replaces the vendor's versions it must move.",
         "SOURCE_DATE_EPOCH (the lock's) makes pip write checked-hash .pyc files; with a fixed",
         "hash seed they are the same in every build."),
        "Python packages into the base image's Python", ORDER + 2)
