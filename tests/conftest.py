from __future__ import annotations

import shutil
from pathlib import Path

import pytest

HERE = Path(__file__).parent
REPO = HERE.parent
CASES = HERE / "cases"


@pytest.fixture(autouse=True)
def _pinned_local_uv(monkeypatch):
    """A first lock pins the uv that bakegen runs with (bakegen.ecosystems.tools.local_uv): one the fake index has."""
    monkeypatch.setattr("bakegen.ecosystems.tools.local_uv", lambda: "0.13.9")


def write_stacks(root: Path, stacks: dict[str, str]) -> Path:
    (root / "stacks").mkdir(parents=True, exist_ok=True)
    for name, text in stacks.items():
        (root / "stacks" / f"{name}.toml").write_text(text)
    return root


@pytest.fixture
def project(tmp_path: Path):
    """A function that makes a project folder from {stack name: TOML text}."""

    def make(stacks: dict[str, str]) -> Path:
        return write_stacks(tmp_path, stacks)

    return make


@pytest.fixture
def case(tmp_path: Path):
    """Copy tests/cases/<name>/ into a temporary project folder."""

    def copy(name: str) -> Path:
        dest = tmp_path / name
        shutil.copytree(CASES / name, dest)
        return dest

    return copy


def diff_repo(root: Path) -> Path:
    """A git repository whose HEAD has tests/cases/diff's 'before' locks and whose working tree has its 'after'
    ones."""
    import subprocess

    shutil.copytree(CASES / "diff" / "before" / "locks", root / "locks")
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "before"], check=True)
    shutil.rmtree(root / "locks")
    shutil.copytree(CASES / "diff" / "after" / "locks", root / "locks")
    return root


def tree(root: Path) -> dict[str, bytes]:
    """Every file below root with its bytes: to prove a command wrote nothing."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def snapshot(root: Path) -> dict[str, object]:
    """Everything below root, links not followed: each file's bytes, each link's target, each folder, each
    special file's kind. Equal before and after: nothing was written, moved or removed. (Walked by file
    descriptors: a path too long for the system is still seen.)"""
    import os
    import stat

    out: dict[str, object] = {}
    for folder, dirs, files, fd in os.fwalk(root, follow_symlinks=False):
        for name in sorted(dirs + files):
            info = os.lstat(name, dir_fd=fd)
            rel = str(Path(folder, name).relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                out[rel] = ("link", os.readlink(name, dir_fd=fd))
            elif stat.S_ISREG(info.st_mode):
                handle = os.open(name, os.O_RDONLY, dir_fd=fd)
                with os.fdopen(handle, "rb") as fh:
                    out[rel] = ("file", fh.read(), stat.S_IMODE(info.st_mode))
            else:
                out[rel] = ("dir" if stat.S_ISDIR(info.st_mode) else "special", stat.S_IMODE(info.st_mode))
    return out


class Engine:
    """A running Docker engine with buildx, and the local stand-in base image."""

    standin = "bakegen-standin/python:3.13-slim"
    ca_bundle = "/etc/ssl/certs/ca-certificates.crt"


@pytest.fixture(scope="session")
def engine() -> Engine:
    """Start the engine with the project's own script. Never skips: no engine is a failure."""
    import subprocess

    proc = subprocess.run([str(REPO / "scripts" / "engine.sh"), "standin"], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"scripts/engine.sh standin failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    return Engine()


@pytest.fixture(scope="session")
def arm64_standin(engine) -> str:
    """The stand-in for amd64 and arm64 as one image index in the local registry (arm64 runs under QEMU)."""
    import subprocess

    proc = subprocess.run([str(REPO / "scripts" / "engine.sh"), "arm64"], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"scripts/engine.sh arm64 failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    return proc.stdout.split()[-1]


@pytest.fixture(scope="session")
def registry(engine) -> str:
    """A real OCI registry (Debian's docker-registry) on 127.0.0.1:5000, started by scripts/engine.sh."""
    import subprocess

    proc = subprocess.run([str(REPO / "scripts" / "engine.sh"), "registry"], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"scripts/engine.sh registry failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    return "localhost:5000"
