"""The project's boundary: what bakegen reads and writes stays in the project, and every read is
bounded.

Everything in a repository can be crafted by a pull request, symbolic links and special
files among them. So:

* an output path (``locks/``, ``dockerfiles/``, ``docker-bake.hcl``, the transaction
  folder, ...) is a plain relative path with no symbolic link in it below the project
  folder (:func:`link_in`), and it is read through the same rule;
* an input (a stack file, a stack's own files, a template override) may be a link, but it
  must resolve inside the project and outside ``.git`` (:func:`outside`);
* every file is read with :func:`read_bounded`: a regular file, at most ``limit`` bytes
  (a link to ``/dev/zero`` or a FIFO is refused, not read until memory runs out).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

MAX_PART = 255  # bytes in one file name (NAME_MAX)
MAX_PATH = 1024  # characters in a path bakegen is given


class Unreadable(Exception):
    """A file bakegen will not read: ``reason`` says why, in a few words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path``; :class:`Unreadable` when it is not one, is larger
    than ``limit`` or cannot be opened. Opens without blocking (a FIFO) and checks the opened file,
    not the name."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise Unreadable(_reason(exc)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Unreadable("not a regular file")
        if info.st_size > limit:
            raise Unreadable(f"larger than {limit} bytes")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise Unreadable(_reason(exc)) from None
    finally:
        os.close(fd)
    if size > limit:
        raise Unreadable(f"larger than {limit} bytes")
    return b"".join(chunks)


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def plain_relative(rel: str) -> bool:
    """A relative path of plain parts: not absolute, no '.', '..' or empty part, no NUL, no
    backslash, each part at most :data:`MAX_PART` bytes."""
    if (
        not isinstance(rel, str)
        or not rel
        or len(rel) > MAX_PATH
        or rel.startswith("/")
        or re.search(r"[\x00-\x1f\\]", rel)
    ):
        return False
    parts = rel.split("/")
    return all(
        p not in ("", ".", "..") and len(p.encode("utf-8", "surrogatepass")) <= MAX_PART
        for p in parts
    )


def link_in(root: Path, rel: str | Path) -> str | None:
    """The first part of ``root/rel`` below ``root`` that is a symbolic link (or not a folder where
    a folder must be), as a path relative to ``root``; None when there is none."""
    path = root
    parts = Path(rel).parts
    for i, part in enumerate(parts):
        path = path / part
        try:
            info = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            # nothing further exists (a file where a folder must be is the writer's to name)
            return None
        except OSError:
            return str(Path(*parts[: i + 1]))
        if stat.S_ISLNK(info.st_mode):
            return str(Path(*parts[: i + 1]))
    return None


def outside(root: Path, path: Path) -> bool:
    """Does ``path`` resolve outside ``root``, or into its ``.git`` folder (which can hold a CI
    token)?"""
    real, top = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    return not real.is_relative_to(top) or real.is_relative_to(top / ".git")
