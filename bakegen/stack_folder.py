"""A stack's own folder, ``stacks/<stack>/``: the files, start hooks and build steps a stack
adds (the ``custom`` ecosystem's lock part), hashed, and the checks that keep each file a regular
file of that folder."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from bakegen.paths import link_in, outside, read_bounded
from bakegen.stack import EffectiveStack

# bytes: a config file, a script, a small model; big data belongs in a package
MAX_FILE = 50_000_000
# Path parts: letters, digits and ._+-, and @ for npm scopes (JupyterLab's
# user-settings/@jupyterlab/...), each part at most 255 bytes, the file system's limit; a hook's
# file name at most 100: it is part of its name in the image.
RELATIVE = r"(?:[A-Za-z0-9_@][A-Za-z0-9._+@-]{0,254}/){0,32}[A-Za-z0-9_@][A-Za-z0-9._+@-]{0,254}"
HOOK = r"(?:[A-Za-z0-9_][A-Za-z0-9._+-]{0,254}/){0,32}[A-Za-z0-9_][A-Za-z0-9._+-]{0,99}"
# a path part; dot folders (~/.jupyter), never . or ..
_PART = r"(?!\.\.?(?:/|$))[A-Za-z0-9_.@][A-Za-z0-9._+@-]{0,254}"
ABSOLUTE = rf"(?:/{_PART}){{1,32}}"


@dataclass(frozen=True)
class File:
    source: str  # relative to stacks/<stack>/
    sha256: str
    target: str
    mode: str = "0644"
    owner: str = "root"


@dataclass(frozen=True)
class BuildStep:
    run: str
    user: str = "user"
    needs: tuple[str, ...] | None = None  # None: everything


@dataclass
class CustomLock:
    files: list[File]
    hooks: list[File]  # target: the hook's name in before-notebook.d
    steps: list[BuildStep]


def folder(stack: EffectiveStack) -> Path:
    return stack.stack.path.parent / stack.name


def _sha256(path: Path) -> str:
    return hashlib.sha256(read_bounded(path, MAX_FILE)).hexdigest()


def hook_name(stack: EffectiveStack, i: int, source: str) -> str:
    """Parents' hooks first, then this stack's in the order given."""
    return f"{len(stack.ancestors):02d}-{stack.name}-{i:03d}-{source.rsplit('/', 1)[-1]}"


def content(stack: EffectiveStack) -> CustomLock:
    """The stack's files, hooks and steps, with the files hashed (checked by check_graph first)."""
    here = folder(stack)
    files = [
        File(f["source"], _sha256(here / f["source"]), f["target"],
             f.get("mode", "0644").rjust(4, "0"), f.get("owner", "root"))
        for f in stack.stack.tables.get("files", ())
    ]
    hooks = [File(h, _sha256(here / h), hook_name(stack, i, h), "0755")
             for i, h in enumerate(stack.stack.table("start").get("hooks", ()), 1)]
    steps = [BuildStep(s["run"], s.get("user", "user"), tuple(s["needs"]) if "needs" in s else None)
             for s in stack.stack.tables.get("steps", ())]
    return CustomLock(files, hooks, steps)


def file_problem(stack: EffectiveStack, source: str, root: Path) -> str | None:
    """Why ``source`` cannot be copied: missing, not a regular file, too big, or not inside the
    stack's own folder ``stacks/<stack>/`` of the project once links are resolved (a folder linked
    to ``.git`` would put its token in the image)."""
    path, base = folder(stack) / source, folder(stack)
    own = Path(os.path.realpath(root)) / "stacks" / stack.name
    try:
        if not path.exists() and not path.is_symlink():
            shown = base.relative_to(root) if base.is_relative_to(root) else base
            return f"{source}: no such file in {shown}/"
        real = Path(os.path.realpath(path))
        if outside(root, real):
            return f"{source}: a symbolic link out of the project (or into .git)"
        if not real.is_relative_to(own) or outside(root, base):
            return f"{source}: outside the stack's folder stacks/{stack.name}/"
        link = link_in(root, f"stacks/{stack.name}/{source}")
        if link is not None:  # BuildKit resolves a link inside the build context, not as here
            return (f"{source}: {link} is a symbolic link (the image gets what BuildKit finds "
                    "there, which may be another file)")
        if not real.is_file():
            return f"{source}: not a regular file"
        if real.stat().st_size > MAX_FILE:
            return f"{source}: larger than {MAX_FILE} bytes"
        if not os.access(real, os.R_OK):
            return f"{source}: not readable"
    except OSError as exc:
        return f"{source}: cannot be read ({exc.strerror})"
    return None
