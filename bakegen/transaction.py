"""The transaction folder ``.bakegen-transaction/``: staged files, their journal, carrying it out.

:func:`bakegen.files.write_set` writes a set of files as one transaction, so that a run killed
at any moment leaves every output all old or all new:

1. each new file is written to ``.bakegen-transaction/`` in the project folder (:func:`stage`);
2. a journal that lists them (and the files to delete) is written and renamed into place
   (:func:`write_journal`): from this moment the transaction is decided;
3. each file is renamed over its target, each file to delete is removed (:func:`carry_out`);
4. the journal and the folder are removed.

A run killed before step 2 leaves the old files and a folder without a journal, which the next
run removes. One killed after it leaves a journal, which the next run carries out
(:func:`bakegen.files.recover`).

A journal found in the folder may have been committed by a pull request. :func:`read_journal`
takes only one in bakegen's form: it names the folder it was made in (device and inode, which
a checkout or a copy cannot keep), one of bakegen's own commands, plain relative paths outside
this folder, and staged files by bakegen's names with their sha256. Whether each file may be
written or removed (bakegen's header, no symbolic link on the way) is for :mod:`bakegen.files`
to check: this module knows nothing of who owns a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bakegen.errors import BakegenError, one_line
from bakegen.paths import Unreadable, plain_relative, read_bounded

TRANSACTION_DIR = ".bakegen-transaction"
JOURNAL = "journal.json"
# The commands that write through a transaction: a journal naming anything else is not bakegen's.
COMMANDS = ("bakegen lock", "bakegen generate", "bakegen init", "bakegen sbom")
MAX_JOURNAL = 10_000_000
_STAGED = re.compile(r"[0-9]{4,6}")


@dataclass(frozen=True)
class Entry:
    path: str  # relative to the project folder
    staged: str | None  # file name in the transaction folder; None: delete ``path``
    sha256: str | None = None


def _folder_id(folder: Path) -> str:
    info = os.lstat(folder)
    return f"{info.st_dev}:{info.st_ino}"


def refused(message: str) -> BakegenError:
    return BakegenError(
        f"{TRANSACTION_DIR}/ {message}: it was not left by an interrupted bakegen run in this "
        "folder, so it is not carried out",
        hint=f"remove it (rm -rf {TRANSACTION_DIR}; git rm -r --cached {TRANSACTION_DIR} if it "
        "was committed), then run bakegen lock and bakegen generate",
    )


def transaction_folder(root: Path) -> Path | None:
    """The transaction folder, None when there is none; an error when it is a link or not a
    folder."""
    folder = root / TRANSACTION_DIR
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise refused(f"cannot be inspected ({exc.strerror})") from None
    if not stat.S_ISDIR(info.st_mode):
        raise refused("is a symbolic link or a file, not a folder")
    return folder


def read_journal(folder: Path) -> tuple[str, list[Entry]] | None:
    """(command, entries) of a journal in bakegen's form, written in this very folder; None when
    there is no journal. The caller checks that each entry may be carried out."""
    journal = folder / JOURNAL
    if not os.path.lexists(journal):
        return None
    try:
        doc = json.loads(read_bounded(journal, MAX_JOURNAL).decode("utf-8"))
    except Unreadable as exc:
        raise refused(f"has a journal that cannot be read ({exc.reason})") from None
    except (ValueError, RecursionError):
        raise refused("has a journal that is not JSON") from None
    if (not isinstance(doc, dict) or set(doc) != {"command", "folder", "entries"}
            or doc["command"] not in COMMANDS):
        raise refused("has a journal that is not bakegen's")
    if doc["folder"] != _folder_id(folder):
        raise refused("was made in another folder (it was committed or copied)")
    return doc["command"], _entries(doc["entries"])


def _entries(items: Any) -> list[Entry]:
    if not isinstance(items, list):
        raise refused("has a journal that is not bakegen's")
    out = []
    for item in items:
        if not isinstance(item, dict) or set(item) != {"path", "staged", "sha256"}:
            raise refused("has a journal entry that is not bakegen's")
        entry = Entry(item["path"], item["staged"], item["sha256"])
        staged_ok = entry.staged is None and entry.sha256 is None or (
            isinstance(entry.staged, str) and _STAGED.fullmatch(entry.staged)
            and isinstance(entry.sha256, str) and re.fullmatch(r"[0-9a-f]{64}", entry.sha256))
        if (not plain_relative(entry.path) or entry.path.split("/")[0] == TRANSACTION_DIR
                or not staged_ok):
            shown = one_line(repr(entry.path), 80)
            raise refused(f"names {shown}, which is not a file bakegen writes")
        out.append(entry)
    if len({e.path for e in out}) != len(out):
        raise refused("names one file twice")
    return out


def check_unstarted(folder: Path) -> None:
    """A folder without a journal holds only staged files (and a partial journal) of bakegen's."""
    try:
        names = os.listdir(folder)
    except OSError as exc:
        raise refused(f"cannot be listed ({exc.strerror})") from None
    for name in names:
        if (not (_STAGED.fullmatch(name) or name == JOURNAL + ".part")
                or not stat.S_ISREG(os.lstat(folder / name).st_mode)):
            shown = one_line(repr(name), 60)
            raise refused(f"holds {shown}, which is not a staged file of bakegen's")


def stage(folder: Path, index: int, rel: str, text: str) -> Entry:
    """Step 1: the new text of ``rel``, written (and synced) to the transaction folder."""
    name = f"{index:04d}"
    with open(folder / name, "x", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(folder / name, 0o644)
    return Entry(rel, name, hashlib.sha256(text.encode("utf-8")).hexdigest())


def write_journal(folder: Path, command: str, entries: list[Entry]) -> None:
    """Step 2: the journal, renamed into place: the transaction is decided."""
    tmp = folder / (JOURNAL + ".part")
    with open(tmp, "x", encoding="utf-8") as fh:
        json.dump({"command": command, "folder": _folder_id(folder),
                   "entries": [e.__dict__ for e in entries]}, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / JOURNAL)  # the moment the transaction is decided
    _fsync_dir(folder)


def carry_out(root: Path, folder: Path, entries: list[Entry]) -> None:
    """Steps 3 and 4, for a journal just written or left by an interrupted run."""
    try:
        for entry in entries:
            target = root / entry.path
            if entry.staged is None:
                target.unlink(missing_ok=True)
                _remove_empty_parents(root, target.parent)
                continue
            staged = folder / entry.staged
            if staged.exists():  # else it was moved into place before an interruption
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, target)
        for parent in {(root / e.path).parent for e in entries}:
            if parent.exists():
                _fsync_dir(parent)
        (folder / JOURNAL).unlink()
        shutil.rmtree(folder)
    except OSError as exc:
        raise BakegenError(
            f"could not finish writing {exc.filename}: {exc.strerror}",
            hint="fix the cause, then run the same bakegen command again: it finishes the write",
        ) from None


def _remove_empty_parents(root: Path, folder: Path) -> None:
    while (folder != root and folder.is_dir() and not folder.is_symlink()
           and not any(folder.iterdir())):
        folder.rmdir()
        folder = folder.parent


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
