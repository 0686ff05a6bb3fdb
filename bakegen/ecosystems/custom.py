"""The stack's own content: files it copies in, build steps it runs, and start hooks.

    [[files]]                       # from the stack's folder, stacks/<stack>/
    source = "jupyter_server_config.py"
    target = "/etc/jupyter/jupyter_server_config.py"
    mode = "0644"                   # default 0644
    owner = "root"                  # or "user" (the image's user and group)

    [[steps]]
    run = "python -m nltk.downloader -d /usr/share/nltk_data punkt"
    user = "root"                   # or "user" (default)
    needs = ["python"]              # what it uses; default: everything (it runs last)

    [start] hooks = ["hooks/marker.sh"]     # run before the server starts, in order, after the
    parents' hooks

Files and hooks are hashed into the stack's fingerprint (an edited file makes the lock
stale; ``bakegen lock`` re-hashes it and resolves nothing else). In the image, files
and hooks come after the packages (an edit re-copies one small layer); a step comes
right after the last thing it ``needs`` (an ecosystem, or "files"), so a bump of
anything it does not need does not re-run it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Sequence
from typing import Any

from bakegen import schema
from bakegen.ecosystem import AnyEcosystem, Ecosystem, LockedEntry, ReadFile, ResolveContext
from bakegen.errors import StackError
from bakegen.instructions import Command, Copy, Run, Shell, user
from bakegen.lock import SCHEMA_SHA, StackLock, schema_obj
from bakegen.paths import MAX_PART
from bakegen.plan import (
    ORDER_PACKAGES,
    ORDER_USER,
    SERVER_LINKS,
    START_LINK,
    PlanContext,
    Step,
    user_facts,
)
from bakegen.stack import EffectiveStack, StackGraph, stack_location
from bakegen.stack_folder import (
    ABSOLUTE,
    HOOK,
    MAX_FILE,
    RELATIVE,
    BuildStep,
    CustomLock,
    File,
    content,
    file_problem,
    hook_name,
)

NAME = "files"
ORDER = ORDER_PACKAGES + 15  # after every ecosystem's packages
HOOKS = "/usr/local/bin/before-notebook.d"
# Where a file may not go: bakegen's own files and folders, and the kernel's.
RESERVED = (
    "/usr/local/bin/before-notebook.d", "/usr/local/bin/start-notebook.d",
    "/usr/local/bin/bakegen-start", "/usr/local/bin/bakegen-server",
    *(f"/usr/local/bin/{name}" for name in (*SERVER_LINKS, START_LINK)),
    "/usr/local/lib/bakegen-healthcheck.py", "/etc/bakegen", "/opt/bakegen", "/tmp/bakegen",
    "/opt/apps", "/opt/npm", "/proc", "/sys", "/dev",
)


def _needs(value: Any) -> str:
    name = schema.string(value)
    known = [e.name for e in ECOSYSTEM.others()]
    if name not in known:
        hint = f"name one of: {', '.join(known)}"
        raise schema.Invalid(f"unknown ecosystem {schema.shown(name)}", hint, name)
    return name


def _command(value: Any) -> str:
    """One line of shell, not blank."""
    text = schema.text(value)
    if not text.strip():
        hint = 'write the command to run, e.g. run = "python -m nltk.downloader punkt"'
        raise schema.Invalid("an empty command", hint, text)
    return text


TABLES: dict[str, Any] = {
    "files": schema.list_of(schema.record({
        "source": schema.matching(RELATIVE, "file in the stack's folder",
                                  "jupyter_server_config.py or lab/overrides.json"),
        "target": schema.matching(ABSOLUTE, "absolute path in the image",
                                  "/etc/jupyter/jupyter_server_config.py"),
        "mode": schema.matching(r"0?[0-7]{3}", "file mode", "0644 or 0755"),
        "owner": schema.one_of("root", "user"),
    }, required=("source", "target"))),
    "steps": schema.list_of(schema.record({
        "run": _command,
        "user": schema.one_of("root", "user"),
        "needs": schema.list_of(_needs),
    }, required=("run",))),
    "start": {
        "hooks": schema.list_of(
            schema.matching(HOOK, "hook file in the stack's folder", "hooks/10-marker.sh")
        )
    },
}


class Custom(Ecosystem[CustomLock, None]):
    name = NAME
    audit_unchecked = "the stack's own files and steps: nothing to look up"
    offline = True  # locking it reads files, never the network: a change re-resolves nothing else
    layer_order = ORDER

    def __init__(self) -> None:
        super().__init__()
        self._ecosystems: Callable[[], Sequence[AnyEcosystem]] = tuple

    def bind(self, ecosystems: Callable[[], Sequence[AnyEcosystem]]) -> None:
        """The registry's ecosystems (a step's ``needs`` names them; its layer goes after theirs):
        the registry binds them, since this ecosystem is one of them."""
        self._ecosystems = ecosystems

    def others(self) -> Sequence[AnyEcosystem]:
        return self._ecosystems()

    def stack_tables(self) -> dict[str, Any]:
        return TABLES

    def check(self, table: dict[str, Any], fields: dict[str, Any], err: Any) -> None:
        targets = [f["target"] for f in fields.get("files", ())]
        for target in targets:
            if targets.count(target) > 1:
                hint = "give each file its own target"
                raise err(f"files: two files go to {target}", ("files",), hint, target)
            if any(target == r or target.startswith(r + "/") for r in RESERVED):
                hint = "use [start] hooks for start hooks; pick another target"
                raise err(f"files: {target} is bakegen's or the system's", ("files",), hint, target)
            if any(other.startswith(target + "/") for other in targets):
                message = f"files: {target} is a file, and another file goes inside it"
                raise err(message, ("files",), "give each file its own folder", target)

    def check_graph(self, stack: EffectiveStack, graph: StackGraph) -> list[StackError]:
        declared = stack.stack.table("start").get("hooks", ())
        sources = [("files", f["source"]) for f in stack.stack.tables.get("files", ())]
        sources += [("start", h) for h in declared]
        hooks = [hook_name(stack, i, h) for i, h in enumerate(declared, 1)]
        if any(len(h.encode()) > MAX_PART for h in hooks):
            where = stack_location(stack.stack, graph.root, ("start", "hooks"))
            message = ("start.hooks: a hook's name in the image (depth, stack, number and file "
                       "name) is longer than 255 bytes")
            return [StackError(message, location=where, hint="give the hook a shorter file name")]
        for key, source in sources:
            problem = file_problem(stack, source, graph.root)
            if problem:
                at = (key, "hooks") if key == "start" else (key,)
                where = stack_location(stack.stack, graph.root, at)
                hint = (f"keep the file in stacks/{stack.name}/, readable, at most {MAX_FILE} "
                        "bytes, and give its path relative to that folder")
                return [StackError(f"{key}: {problem}", location=where, hint=hint)]
        return []

    def used(self, stack: EffectiveStack) -> bool:
        return any(stack.stack.tables.get(k) for k in TABLES)

    def fingerprint(self, stack: EffectiveStack) -> Any:
        if not self.used(stack):
            return None
        part = content(stack)
        return {
            "files": [list(f.__dict__.values()) for f in part.files],
            "hooks": [list(h.__dict__.values()) for h in part.hooks],
            "steps": [[s.run, s.user, _needs_of(s)] for s in part.steps],
        }

    def resolve(self, ctx: ResolveContext[None]) -> CustomLock:
        return content(ctx.stack)

    def tampered(self, stack: EffectiveStack, lock: StackLock) -> list[tuple[str, Any, Any]]:
        """The section is derived from the stack alone: it must be exactly what the stack gives
        today."""
        part = lock.parts.get(self.name)
        if part is None and not self.used(stack):
            return []
        want = content(stack) if self.used(stack) else None
        return [("files, steps and hooks", part, want)] if part != want else []

    def section_of(
        self, lock: StackLock, part: CustomLock, files: dict[str, str]
    ) -> dict[str, Any]:
        def step(s: BuildStep) -> dict[str, Any]:
            return {"run": s.run, "user": s.user, "needs": _needs_of(s)}

        return {
            "files": [f.__dict__ for f in part.files],
            "hooks": [h.__dict__ for h in part.hooks],
            "steps": [step(s) for s in part.steps],
        }

    def read(
        self, section: dict[str, Any], read_file: ReadFile, doc: dict[str, Any], where: str
    ) -> CustomLock:
        steps = [BuildStep(s["run"], s["user"], None if s["needs"] is None else tuple(s["needs"]))
                 for s in section["steps"]]
        files, hooks = [File(**f) for f in section["files"]], [File(**h) for h in section["hooks"]]
        return CustomLock(files, hooks, steps)

    def section_schema(self) -> dict[str, Any]:
        def file(source: str) -> dict[str, Any]:
            return schema_obj({
                "source": {"type": "string", "pattern": f"^{source}$"}, "sha256": SCHEMA_SHA,
                "target": {"type": "string"}, "mode": {"type": "string", "pattern": "^0[0-7]{3}$"},
                "owner": {"enum": ["root", "user"]},
            })

        needs = {"type": ["array", "null"], "items": {"type": "string"}}
        user_ = {"enum": ["root", "user"]}
        step = schema_obj({"run": {"type": "string"}, "user": user_, "needs": needs})
        return schema_obj({
            "files": {"type": "array", "items": file(RELATIVE)},
            "hooks": {"type": "array", "items": file(HOOK)},
            "steps": {"type": "array", "items": step},
        })

    def section_problem(self, section: dict[str, Any]) -> str | None:
        """What reaches the Dockerfile must have the shape the stack schema allows."""
        try:
            part = self.read(section, lambda name, sha: "", {}, "")
        except (KeyError, TypeError, AttributeError):
            return "files: not what bakegen writes"
        files_ok = all(
            re.fullmatch(pattern, f.source) and re.fullmatch(r"[0-9a-f]{64}", f.sha256)
            and re.fullmatch(r"0[0-7]{3}", f.mode) and f.owner in ("root", "user")
            for pattern, group in ((RELATIVE, part.files), (HOOK, part.hooks)) for f in group
        )
        targets_ok = all(re.fullmatch(ABSOLUTE, f.target) for f in part.files)
        hook_names = all(re.fullmatch(r"[A-Za-z0-9._+-]+", h.target) for h in part.hooks)
        targets_ok = targets_ok and hook_names
        known = {e.name for e in self.others()}
        steps_ok = all(
            _is_text(s.run) and s.user in ("root", "user") and set(s.needs or ()) <= known
            for s in part.steps
        )
        return None if files_ok and targets_ok and steps_ok else "files: not what bakegen writes"

    def entries(self, lock: StackLock, part: CustomLock) -> list[LockedEntry]:
        return [
            *(LockedEntry(self.name, f.target, "", f"sha256:{f.sha256[:12]}") for f in part.files),
            *(LockedEntry(self.name, f"start hook {h.source}", "", f"sha256:{h.sha256[:12]}")
              for h in part.hooks),
            *(LockedEntry(self.name, f"step {i}", "", s.run) for i, s in enumerate(part.steps, 1)),
        ]

    def upgrade_names(self, stack: EffectiveStack, lock: StackLock | None) -> set[str]:
        return set()

    def summary(self, lock: StackLock, part: CustomLock) -> str:
        return f"{len(part.files)} files, {len(part.hooks)} start hooks, {len(part.steps)} steps"

    # --- the Dockerfile ---
    def final_steps(self, ctx: PlanContext) -> list[Step]:
        part = ctx.lock.parts.get(self.name)
        if part is None:
            return []
        u = user_facts(ctx)
        chown = f"{u['uid']}" + (f":{u['gid']}" if u["gid"].isdigit() else "")
        owner = {"root": "", "user": chown}
        src = f"stacks/{ctx.name}"
        steps = _folders(part.files, chown)
        for f in part.files:
            copy = Copy((f"{src}/{f.source}",), f.target, chmod=f.mode, chown=owner[f.owner])
            steps.append(Step(copy, layer=f"file {f.target}", order=ORDER))
        for h in part.hooks:
            copy = Copy((f"{src}/{h.source}",), f"{HOOKS}/{h.target}", chmod="0755")
            steps.append(Step(copy, layer=f"start hook {h.source}", order=ORDER))
        if steps:
            why = f"The stack's own files and start hooks (stacks/{ctx.name}/), after its packages."
            steps[0].comments = (why,)
        for i, s in enumerate(part.steps, 1):
            steps += _build_step(ctx, i, s, u["run_as"])
        return steps


def _needs_of(step: BuildStep) -> list[str] | None:
    return list(step.needs) if step.needs is not None else None


def _is_text(value: Any) -> bool:
    """What a stack's step may hold (the stack schema's one-line text)."""
    try:
        schema.text(value)
    except schema.Invalid:
        return False
    return True


def _folders(files: list[File], chown: str) -> list[Step]:
    """The targets' folders, made first (0755): COPY --chmod would give the folders it makes the
    file's mode (moby/buildkit#5943), and a 0644 folder cannot be entered. Existing folders are left
    as they are; the folders made for a user's file (``~/.jupyter`` for a lab setting) are the
    user's and, like the home, its group's (2775), so that the user, or an arbitrary uid in the
    group, can write next to it."""
    root = sorted({_parent(f.target) for f in files if f.owner == "root"} - {""})
    # parents first
    mine = sorted({d for f in files if f.owner == "user" for d in _ancestors(_parent(f.target))}
                  - set(root))
    if not root and not mine:
        return []
    parts: list[Command | Shell] = [Command(("mkdir", "-p", *root))] if root else []
    if mine:
        make = f'mkdir "$d" && chown {shlex.quote(chown)} "$d" && chmod 2775 "$d" || exit 1'
        folders = " ".join(shlex.quote(d) for d in mine)
        parts.append(Shell(f'for d in {folders}; do if [ ! -d "$d" ]; then {make}; fi; done'))
    return [Step(Run(tuple(parts), inline=True), layer="folders of the stack's files", order=ORDER)]


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0]


def _ancestors(folder: str) -> list[str]:
    """``/a/b/c`` -> ``/a``, ``/a/b``, ``/a/b/c``."""
    names = [n for n in folder.split("/") if n]
    return ["/" + "/".join(names[: i + 1]) for i in range(len(names))]


def _step_order(needs: tuple[str, ...] | None) -> int:
    """Right after the last thing the step needs; after everything when it does not say."""
    if needs is None:
        return ORDER + 2
    orders = [next(e for e in ECOSYSTEM.others() if e.name == n).layer_order for n in needs]
    return max(orders, default=ORDER_USER) + 1


def _build_step(ctx: PlanContext, i: int, step: BuildStep, run_as: str) -> list[Step]:
    """A [[steps]] item: exec form (no shell-form parsing, no heredoc), as root or as the user."""
    order = _step_order(step.needs)
    if step.user != "root":
        order = max(order, ORDER_USER + 1)  # the user exists
    label = f"step {i}: {step.run[:60]}"
    why = f"[[steps]] {i} of stacks/{ctx.name}.toml, as {step.user}."
    run = Step(Run((Command(("/bin/sh", "-c", step.run)),), exec_form=True), (why,), label, order)
    if step.user == "root":
        return [run]
    return [Step(user(run_as), order=order), run, Step(user("root"), order=order)]


ECOSYSTEM = Custom()
