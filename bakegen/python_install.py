"""Installing locked Python requirements in a Dockerfile, as plan steps (data).

The ``python`` ecosystem's stages and steps (the image's virtualenv, a child's
staging prefix, a vendor image's own Python, the pip constraints), and the pieces
that ``apps`` installs its applications with too: uv from the root stack's lock,
the cache and CA mounts, and the install commands. Both ecosystems plan their
installs from here, so a change to how bakegen installs a lock is made once.
"""

from __future__ import annotations

import shlex

from packaging.utils import canonicalize_name

from bakegen import __version__
from bakegen.ecosystem import BuildSecret
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
from bakegen.python_indexes import PYPI, index_options, indexes_of
from bakegen.stack import EffectiveStack

REQUIREMENTS = "requirements.txt"
VENV = "/opt/venv"
BUILDER = "builder"  # the stage that makes the virtualenv
STAGING = "/opt/bakegen/staging"
ORDER = ORDER_PACKAGES + 10  # after npm and applications: Python pins move most often
# a root stack's virtualenv layer, as bakegen report names it
VENV_LAYER = "Python virtualenv (requirements.txt)"
SLIM_SCRIPT = f"{DOCKERFILE_DIR}/bakegen-slim.py"  # the slim step's pruning script
# bytecode (sharded: bit for bit), duplicates linked, group access
FINISH_SCRIPT = f"{DOCKERFILE_DIR}/bakegen-finish.py"

# The cache mount is root's; a child's builder inherits HOME=/home/<user> from its parent, where
# pip would find no writable cache and download every wheel again.
PIP_CACHE_ENV = ("PIP_CACHE_DIR", "/root/.cache/pip")
PIP_CACHE_MOUNT = Mount("cache", id="bakegen-pip", target="/root/.cache/pip")
UV_CACHE_MOUNT = Mount("cache", id="bakegen-uv", target="/root/.cache/uv")
# the proxy's CA, if any: a BuildKit secret, never in a layer
CACERT_MOUNT = Mount("secret", id="cacert")
FINISH_MOUNT = Mount("bind", source=FINISH_SCRIPT, target="/tmp/bakegen/finish.py")
# A private index's login: the BuildKit secret "netrc" (bakegen build --netrc), read by uv and pip
# through NETRC while they install; never in a layer.
NETRC_SECRET = BuildSecret("netrc", "netrc file", "logins of private package indexes",
                           "pass a netrc file: machine HOST login USER password TOKEN", "NETRC")
PIP_CACERT = Shell("if [ -s /run/secrets/cacert ]; then export PIP_CERT=/run/secrets/cacert; fi")
UV_CACERT = Shell(
    "if [ -s /run/secrets/cacert ]; then export SSL_CERT_FILE=/run/secrets/cacert; fi"
)
# uv (bakegen's build tool, locked by the root stack: ecosystems/tools.py), in the builder stages
# only
UV_PREFIX = "/opt/bakegen/uv"
UV = f"{UV_PREFIX}/bin/uv"
# pip for the uv install: run from the wheel that python3-pip-whl (Debian) or else ensurepip
# (python.org) ships, or from a virtualenv made for it when the base image has no such wheel.
# Debian's python3-pip-whl, which its python3 -m venv installs pip from:
DEBIAN_PIP_WHEELS = "/usr/share/python-wheels"
_ENSUREPIP = "import ensurepip, os; print(os.path.dirname(ensurepip.__file__))"
PIP_CHOICE = (
    Shell(f"pip=; for w in {DEBIAN_PIP_WHEELS}/pip-*.whl "
          f"\"$(python3 -c '{_ENSUREPIP}' 2>/dev/null)\"/_bundled/pip-*.whl; do \\\n"
          '        if [ -f "$w" ]; then pip="python3 $w/pip"; break; fi; \\\n'
          "    done", after=THEN),
    Shell('if [ -z "$pip" ]; then python3 -m venv /opt/bakegen/pip && '
          'pip=/opt/bakegen/pip/bin/pip; fi', after=THEN),
)
PIP_WHEEL = "".join(f"    {part.text}; \\\n" for part in PIP_CHOICE)  # the same, as RUN lines
PIP_OPTIONS = (
    "--no-input", "--disable-pip-version-check", "--require-hashes", "--no-deps", "--no-compile"
)


def requirements_file(platform: str, platforms: list[str]) -> str:
    """The Python lock file of ``platform``: the first platform's is ``requirements.txt``."""
    return REQUIREMENTS if platform == platforms[0] else f"requirements-{arch_of(platform)}.txt"


def env_of(stack: EffectiveStack) -> str:
    """"venv": bakegen's /opt/venv; "base": the base image's own Python (vendor images)."""
    return str(stack.root_table("python").get("env", "venv"))


def pip_of(stack: EffectiveStack) -> bool:
    """Is pip in the image's virtualenv, for runtime installs? ([python] pip of the root; default
    true with env = "venv".)"""
    return env_of(stack) == "venv" and stack.root_table("python").get("pip") is not False


def slim_of(stack: EffectiveStack) -> bool:
    """``[python] slim`` of the stack, else of its nearest ancestor that sets it; False when none
    does."""
    return bool(stack.nearest("python", "slim", False))


# --- the commands ---------------------------------------------------------------------------


def make_venv(path: str, with_pip: bool = True, after: str = THEN) -> Command:
    pip = () if with_pip else ("--without-pip",)
    return Command(("python3", "-m", "venv", *pip, path), after=after)


def uv_install(
    uv: str, python: str, requirements: str, prefix: str | None = None, after: str = AND,
    indexes: tuple[str, ...] = (),
) -> Command:
    """uv's hash-checked install of exactly a lock. ``--link-mode copy``: the cache is another file
    system (a cache mount); files are copied, never linked to it. ``indexes``: the stack's own
    (the primary first); every index is looked at, and the hashes pick the locked file."""
    options = ("--no-config", "--quiet", "--cache-dir", "/root/.cache/uv", "--link-mode", "copy",
               "--require-hashes", "--no-deps", "--python", python)
    into = ("--prefix", prefix) if prefix else ()
    where = (*index_options(indexes), "--index-strategy", "unsafe-best-match") if indexes else ()
    return Command((uv, "pip", "install", *options, *where, *into, "-r", requirements),
                   after=after)


def stack_index_urls(stack: EffectiveStack) -> tuple[str, ...]:
    """The stack's own indexes, the primary first; () for PyPI alone (the Dockerfile stays as it
    was). Derived from the stack, never from a lock."""
    indexes = indexes_of([s.table("python") for s in stack.chain], canonicalize_name)
    return tuple(indexes.all(PYPI)) if indexes.custom else ()


def pip_install(
    pip: str, requirements: str, *extra: str,
    env: tuple[tuple[str, str], ...] = (PIP_CACHE_ENV,), after: str = AND,
) -> Command:
    """pip's hash-checked install of exactly a lock (with no constraints file of the image's)."""
    argv = (pip, "install", *PIP_OPTIONS, *extra, "-r", requirements)
    return Command(argv, env=(("PIP_CONSTRAINT", ""), *env), after=after)


def pip_uninstall(python: str) -> Command:
    options = ("--no-input", "--disable-pip-version-check", "-q", "-y")
    return Command((python, "-m", "pip", "uninstall", *options, "pip"))


def finish(python: str, target: str, *options: str) -> Command:
    """bakegen-finish.py: the bytecode (bit for bit), duplicates linked, and the group's access."""
    return Command((python, "/tmp/bakegen/finish.py", target, *options))


def installer(uv: bool) -> tuple[Mount, Shell]:
    """The cache mount and the CA line of the installer: uv's, or pip's."""
    return (UV_CACHE_MOUNT, UV_CACERT) if uv else (PIP_CACHE_MOUNT, PIP_CACERT)


def uv_steps(ctx: PlanContext) -> list[Step]:
    """uv in the builder, from the root stack's lock: pip (hash-checked) into a prefix of its own,
    per platform."""
    assert ctx.facts.uv_lock is not None
    lock_dir, files = ctx.facts.uv_lock.lock_dir, ctx.facts.uv_lock.files
    tools = (Mount("bind", source=f"{lock_dir}/{f}", target=f"/tmp/bakegen/tools/{f}")
             for f in files)
    mounts = (PIP_CACHE_MOUNT, *tools, CACERT_MOUNT)
    arch = "/tmp/bakegen/tools/build-tools-$TARGETARCH.txt"
    default = "/tmp/bakegen/tools/build-tools.txt"
    pick = Shell(f'req={default}; if [ -f "{arch}" ]; then req="{arch}"; fi', after=THEN)
    env = (("PIP_CONSTRAINT", ""), ("PIP_ROOT_USER_ACTION", "ignore"), PIP_CACHE_ENV)
    req = Verbatim('"$req"')
    argv = (Verbatim("$pip"), "install", *PIP_OPTIONS, "-q", "--target", UV_PREFIX, "-r", req)
    why = (
        "uv, the installer, from the root stack's lock (build-tools.txt): it stays in this stage.",
        "pip runs from the base image's own pip wheel (Debian's, or else ensurepip's) "
        "when it has one:",
        "a virtualenv with pip installed took 2.5 s.",
    )
    run = Run((PIP_CACERT, pick, *PIP_CHOICE, Command(argv, env, after=THEN)), mounts)
    return [Step(arg("TARGETARCH"), why), Step(run)]


# --- the python ecosystem's stages and steps ---------------------------------------------------


def _uv(ctx: PlanContext) -> bool:
    """Does this stack's builder install with uv (its root's lock has bakegen's build tools)?"""
    return ctx.facts.uv_lock is not None


def in_final(ctx: PlanContext) -> bool:
    """Is the root stack's virtualenv made in the final stage, with the builder's uv mounted? Yes
    when the builder would start from the same image (no build tools): copying the virtualenv over
    wrote it twice and made BuildKit hash every byte of it for the cache key (5 s of a 40 s build of
    the S1 set)."""
    root_venv = not ctx.parent and env_of(ctx.stack) == "venv"
    pins = bool(ctx.lock.parts["python"].pins)
    return root_venv and _uv(ctx) and not ctx.facts.tools_stage and pins


def shared_venv(ctx: PlanContext) -> bool:
    return pip_of(ctx.stack) and bool(ctx.lock.parts["python"].pins)


REQUIREMENTS_AT = "/tmp/bakegen/requirements.txt"  # where an install step mounts the lock


def builder_stages(ctx: PlanContext) -> list[Stage]:
    vendor, has_python = env_of(ctx.stack) == "base", bool(ctx.lock.parts["python"].pins)
    if vendor or (ctx.parent and not has_python):
        return []
    root = [Step(user("root"))]
    if in_final(ctx):
        title = heading("builder: uv, the installer, stays in this stage")
        return [Stage(title, ctx.tools, BUILDER, [*root, *uv_steps(ctx)])]
    title = heading("builder: build tools and the pip cache stay in this stage")
    stage = Stage(title, ctx.tools, BUILDER, root)
    if not ctx.parent:  # with uv, pip is in the virtualenv when the lock has it ([python] pip)
        stage.steps.append(Step(Run((make_venv(VENV, with_pip=not _uv(ctx)),))))
    if has_python:
        stage.steps += (uv_steps(ctx) if _uv(ctx) else []) + _install_steps(ctx)
    return [stage]


def final_steps(ctx: PlanContext) -> list[Step]:
    vendor, has_python = env_of(ctx.stack) == "base", bool(ctx.lock.parts["python"].pins)
    steps = []
    if not ctx.parent and not vendor:  # the virtualenv: made here, or copied from the builder
        copy = Step(Copy((VENV,), VENV, stage=BUILDER), layer=VENV_LAYER, order=ORDER)
        made = _install_steps(ctx, final=True) if in_final(ctx) else [copy]
        env = Env((("VIRTUAL_ENV", Verbatim(VENV)), ("PATH", Verbatim(f"{VENV}/bin:$PATH"))))
        steps += [*made, Step(env, order=ORDER)]
    elif has_python and not vendor:
        staged = Copy((f"{STAGING}/",), f"{VENV}/", stage=BUILDER)
        steps.append(Step(staged, layer="Python packages (requirements.txt)", order=ORDER))
    if shared_venv(ctx):
        steps += _constraints_steps(ctx)
    if has_python and vendor:
        steps.append(_vendor_install(ctx))
    return steps


def _install_comments(ctx: PlanContext) -> tuple[str, ...]:
    lines = ["Hash-checked install of exactly the locked wheels. The lock is bind-mounted",
             "and the proxy CA (if any) is a BuildKit secret: neither lands in a layer."]
    if _uv(ctx):
        lines += [
            "uv downloads and installs in parallel. bakegen-finish.py compiles the bytecode (4",
            "processes, each a fixed share of the files: bit for bit on any machine; none for",
            "tests folders) and links identical files.",
        ]
    if not ctx.parent and not pip_of(ctx.stack):
        lines += ["[python] pip = false: no pip in the virtualenv, which stays root's."]
    elif ctx.parent and not _uv(ctx):
        lines.append("ensurepip gives this stage a pip when the parent's virtualenv has none.")
    if shared_venv(ctx):
        lines += ["Runtime installs (%pip install): the virtualenv is writable by the user's group",
                  f"({ctx.stack.user.gid}, setgid folders), as docker-stacks' environment is."]
    if slim_of(ctx.stack):
        lines += [
            "[python] slim: tests folders and C/Cython sources are removed before the layer is "
            "made,",
            "and every top-level module that imported before must still import.",
        ]
    return tuple(lines)


def _install_steps(ctx: PlanContext, final: bool = False) -> list[Step]:
    """The hash-checked install of the lock (per platform when there are several): in the builder,
    or with ``final`` in the final stage, with the builder's uv mounted (its layer: the
    virtualenv)."""
    platforms = ctx.lock.platforms
    uv = Mount("bind", stage=BUILDER, source=UV_PREFIX, target=UV_PREFIX)
    slim = Mount("bind", source=SLIM_SCRIPT, target="/tmp/bakegen/slim.py")
    scripts = (*((uv,) if final else ()), *((slim,) if slim_of(ctx.stack) else ()))
    # in the final stage, the step makes the virtualenv's layer
    layer, order = (VENV_LAYER, ORDER) if final else (None, 0)
    cache, cacert = installer(_uv(ctx))
    pick: tuple[Part, ...] = ()
    head: list[Step] = []
    lock = Mount("bind", source=f"{ctx.lock_dir}/{REQUIREMENTS}", target=REQUIREMENTS_AT)
    locks: tuple[Mount, ...] = (lock,)
    if len(platforms) > 1:
        files = [requirements_file(p, platforms) for p in platforms]
        locks = tuple(Mount("bind", source=f"{ctx.lock_dir}/{f}", target=f"/tmp/bakegen/lock/{f}")
                      for f in files)
        pick = _platform_pick()
        head = [Step(arg("TARGETARCH"), _install_comments(ctx), order=order)]
    login = NETRC_SECRET.login() if stack_index_urls(ctx.stack) else ()
    parts = (cacert, *login[:1], *pick, *_install_commands(ctx, final))
    run = Run(parts, (cache, *locks, *scripts, FINISH_MOUNT, CACERT_MOUNT, *login[1:]))
    return head + [Step(run, () if head else _install_comments(ctx), layer, order)]


def _platform_pick() -> tuple[Part, ...]:
    """The platform's lock file, linked where the install reads it."""
    arch = "/tmp/bakegen/lock/requirements-$TARGETARCH.txt"
    return (
        Shell("req=/tmp/bakegen/lock/requirements.txt", after=THEN),
        Shell(f'if [ -f "{arch}" ]; then req="{arch}"; fi', after=THEN),
        Command(("ln", "-s", Verbatim('"$req"'), REQUIREMENTS_AT), after=THEN),
    )


def _install_commands(ctx: PlanContext, final: bool = False) -> list[Command]:
    """pip install, slim, compileall and the group-writable venv: into the venv (root) or a staging
    prefix (child); ``final``: the venv is made here too."""
    target = STAGING if ctx.parent else VENV
    python, requirements = f"{VENV}/bin/python", REQUIREMENTS_AT
    indexes = stack_index_urls(ctx.stack)
    if _uv(ctx):
        prefix = STAGING if ctx.parent else None
        install = uv_install(UV, python, requirements, prefix, after=AND if final else THEN,
                             indexes=indexes)
        commands = [make_venv(VENV, with_pip=False), install] if final else [install]
    elif ctx.parent:
        ensurepip = (python, "-m", "ensurepip", "--default-pip")
        ensure = Command(ensurepip, after=THEN, redirect=">/dev/null")
        commands = [ensure, pip_install(f"{VENV}/bin/pip", requirements, f"--prefix={STAGING}",
                                        *index_options(indexes) if indexes else ())]
    else:
        commands = [pip_install(f"{VENV}/bin/pip", requirements,
                                *index_options(indexes) if indexes else (), after=THEN)]
    if slim_of(ctx.stack):
        commands.append(Command((python, "/tmp/bakegen/slim.py", requirements, "--prefix", target)))
    if not ctx.parent and not pip_of(ctx.stack) and not _uv(ctx):
        commands.append(pip_uninstall(python))
    dest = ("--dest", VENV) if ctx.parent else ()
    group = ("--group", str(ctx.stack.user.gid)) if shared_venv(ctx) else ()
    return [*commands, finish(python, target, *dest, *group)]


def constraints_path(name: str, platform: str) -> str:
    return f"dockerfiles/{name}/pip-constraints-{arch_of(platform)}.txt"


def render_constraints(ctx: PlanContext, platform: str) -> str:
    """Every Python pin of the stack's image on ``platform`` (its parents' and its own), as a pip
    constraints file."""
    pins = {p.key: p.version for s in ctx.stack.chain
            for p in ctx.locks[s.name].parts["python"].by_platform.get(platform, [])}
    head = f"# {GENERATED_MARKER} {__version__} from locks/ (stack '{ctx.name}', {platform}). "
    head += "Do not edit; to update, run: bakegen generate\n"
    return head + "".join(f"{key}=={version}\n" for key, version in sorted(pins.items()))


def _constraints_steps(ctx: PlanContext) -> list[Step]:
    files = [constraints_path(ctx.name, p) for p in ctx.lock.platforms]
    mounts = tuple(Mount("bind", source=f, target=f"/tmp/bakegen/{f.rsplit('/', 1)[1]}")
                   for f in files)
    arch = Verbatim("/tmp/bakegen/pip-constraints-$TARGETARCH.txt")
    install = Command(("install", "-D", "-m", "0644", arch, "/etc/bakegen/pip-constraints.txt"))
    why = ("The pins of every locked package, for pip at run time: `%pip install x` cannot move",
           "them (PIP_CONSTRAINT= pip install ... moves one on purpose).")
    steps = [
        Step(arg("TARGETARCH"), why, order=ORDER),
        Step(Run((install,), mounts), layer="pip constraints (the image's pins)", order=ORDER),
    ]
    if not ctx.parent:
        env = Env((("PIP_CONSTRAINT", Verbatim("/etc/bakegen/pip-constraints.txt")),))
        steps.append(Step(env, order=ORDER))
    return steps


def _vendor_install(ctx: PlanContext) -> Step:
    interpreter = shlex.quote(ctx.stack.root_table("python").get("interpreter", ""))
    find = 'py=$(command -v python3 || command -v python)'
    py = Shell(f'py={interpreter}; [ -n "$py" ] || {find}', after=THEN)
    epoch = str(ctx.lock.source_date_epoch or 0)
    env = (("SOURCE_DATE_EPOCH", epoch), ("PYTHONHASHSEED", "0"), PIP_CACHE_ENV)
    indexes = stack_index_urls(ctx.stack)
    argv = (Verbatim('"$py"'), "-m", "pip", "install", *PIP_OPTIONS[:4],
            *(index_options(indexes) if indexes else ()), "-r", REQUIREMENTS_AT)
    lock = Mount("bind", source=f"{ctx.lock_dir}/{REQUIREMENTS}", target=REQUIREMENTS_AT)
    why = ("Hash-checked install into the base image's own Python (python.env = \"base\"), in one",
           "layer that holds only what changed; pip replaces the vendor's versions it must move.",
           "SOURCE_DATE_EPOCH (the lock's) makes pip write checked-hash .pyc files; with a fixed",
           "hash seed they are the same in every build.")
    login = NETRC_SECRET.login() if indexes else ()
    mounts = (PIP_CACHE_MOUNT, lock, CACERT_MOUNT, *login[1:])
    run = Run((PIP_CACERT, *login[:1], py, Command(argv, env, after=THEN)), mounts)
    return Step(run, why, "Python packages into the base image's Python", ORDER + 2)
