"""The hostile-input corpus (tests/corpus): every case is refused with one line, exit 2, and nothing written."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import HERE, tree

from bakegen.cli import main

CORPUS = HERE / "corpus"
STACK_CASES = json.loads((CORPUS / "stacks.json").read_text())
BASE = 'name = "base"\ndescription = "a valid root"\nbase = "python:3.13-slim"\n[python]\nversion = "3.13"\npackages = ["jupyterlab"]\n'


def test_the_corpus_is_what_its_generator_writes(tmp_path):
    sys.path.insert(0, str(CORPUS))
    try:
        import generate
    finally:
        sys.path.remove(str(CORPUS))
    generate.write(tmp_path)
    assert tree(tmp_path) == {k: v for k, v in tree(CORPUS).items() if not k.endswith(".py") and "__pycache__" not in k}
    assert len(STACK_CASES) >= 100


def refused(capsys, root, *args) -> list[str]:
    code = main(["-C", str(root), *args])
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "Traceback" not in err and "internal error" not in err, err
    assert code == 2, (code, err)
    assert [ln for ln in lines if ln.startswith("error:")] == lines[:1] and all(ln.startswith(("error: ", "hint: ")) for ln in lines), err
    return lines


@pytest.mark.parametrize("case", sorted(STACK_CASES))
def test_a_hostile_stack_file_is_refused(case, tmp_path, capsys):
    expect = STACK_CASES[case]
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "base.toml").write_text(BASE)
    (tmp_path / "stacks" / f"{expect['stack']}.toml").write_bytes((CORPUS / "stacks" / f"{case}.toml").read_bytes())
    before = tree(tmp_path)
    for command in (["check"], ["generate"], ["lock"], ["profiles", "--registry", "r.example"]):
        lines = refused(capsys, tmp_path, *command)
        assert lines[0].startswith(f"error: stacks/{expect['stack']}.toml"), lines
        assert expect["error"] in lines[0], lines
    assert tree(tmp_path) == before


# --- tampered locks ----------------------------------------------------------------------------

TAMPERS = json.loads((CORPUS / "locks.json").read_text())
DIGEST = "sha256:" + "d" * 64
PINNED = BASE.replace('base = "python:3.13-slim"', f'base = "python:3.13-slim@{DIGEST}"')
KID = 'name = "kid"\ndescription = "a child"\nextends = "base"\n[python]\npackages = ["numpy"]\n'


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    """A project locked (fake resolvers) and generated: check says ok."""
    from fakes import lock_project

    from bakegen.files import write_set
    from bakegen.project import load_stacks
    from bakegen.render import render_project
    from bakegen.staleness import current_locks

    root = tmp_path_factory.mktemp("locked")
    (root / "stacks").mkdir()
    (root / "stacks" / "base.toml").write_text(PINNED)
    (root / "stacks" / "kid.toml").write_text(KID)
    lock_project(root, images={f"python:3.13-slim@{DIGEST}": DIGEST})
    write_set(root, render_project(load_stacks(root), current_locks(load_stacks(root))), command="test")
    assert main(["-C", str(root), "check"]) == 0
    return root


def tamper(root, t: dict) -> None:
    from bakegen.lock import manifest_checksum

    path = root / t["file"]
    op = t["op"]
    path.parent.mkdir(parents=True, exist_ok=True)
    if op == "json":
        doc = json.loads(path.read_text())
        node = doc
        for key in t["path"][:-1]:
            node = node[key]
        if t["value"] is None and t["path"][-1] == "checksum":
            del node["checksum"]
        else:
            node[t["path"][-1]] = t["value"]
        if t.get("rehash"):
            doc["checksum"] = manifest_checksum(doc)
        path.write_text(json.dumps(doc, indent=2) + "\n")
    elif op == "write":
        path.write_text(t["value"])
    elif op == "append":
        path.write_text(path.read_text() + t["value"])
    elif op == "bytes":
        path.write_bytes(path.read_bytes() + bytes.fromhex(t["value"]))
    elif op == "delete":
        path.unlink()
    elif op == "folder":
        path.unlink()
        path.mkdir()
    elif op == "copy":
        path.write_bytes((root / t["value"]).read_bytes())


@pytest.mark.parametrize("case", sorted(TAMPERS))
def test_a_tampered_lock_is_never_used(case, locked, tmp_path, capsys):
    import shutil

    root = tmp_path / "p"
    shutil.copytree(locked, root)
    t = TAMPERS[case]
    tamper(root, t)
    before = tree(root)
    for command in (["check"], ["generate", "--check"]):
        code = main(["-C", str(root), *command])
        out, err = capsys.readouterr()
        lines = err.splitlines()
        assert "Traceback" not in err and "internal error" not in err, err
        assert code == t.get("exit", 1), (code, out, err)
        assert len([ln for ln in lines if ln.startswith("error:")]) == 1 and all(ln.startswith(("error: ", "hint: ")) for ln in lines), err
        if command == ["check"]:
            assert t["says"] in out + err, out + err
            assert t.get("out", "") in out, out
    assert tree(root) == before


# --- the project folder and the command line ------------------------------------------------------


def _folder(root):
    (root / "stacks" / "bad.toml").mkdir()


def _dangling(root):
    (root / "stacks" / "bad.toml").symlink_to(root / "nowhere.toml")


def _collision(root):
    for name in ("a-b", "a_b"):
        (root / "stacks" / f"{name}.toml").write_text(BASE.replace('name = "base"', f'name = "{name}"'))


def _unreadable(root):
    (root / "stacks" / "bad.toml").write_text(BASE.replace('"base"', '"bad"'))
    (root / "stacks" / "bad.toml").chmod(0)


PROJECT_CASES = {
    "stack-file-is-a-folder": (_folder, ["check"], 2, "stacks/bad.toml: a folder, not a stack file"),
    "stack-file-is-a-dangling-link": (_dangling, ["check"], 2, "stacks/bad.toml: a broken symbolic link"),
    "names-differ-only-in-dash": (_collision, ["check"], 2, "differ only in - and _"),
    "index-url-not-a-url": (None, ["lock", "--index-url", "notaurl"], 2, "--index-url 'notaurl' is not an http(s) URL"),
    "index-url-with-newline": (None, ["lock", "--index-url", "https://x.org/\n"], 2, "is not an http(s) URL"),
    "diff-output-a-folder": (None, ["diff", "--output", "stacks"], 2, "is a folder"),
    "diff-output-missing-folder": (None, ["diff", "--output", "no/such/folder/x.md"], 2, "does not exist"),
    "profiles-metadata-a-list": (lambda r: (r / "m.json").write_text("[1, 2]"), ["profiles", "--registry", "r", "--metadata", "m.json"], 2, "is not a JSON object"),
    "profiles-metadata-not-utf8": (lambda r: (r / "m.json").write_bytes(b"{\xff}"), ["profiles", "--registry", "r", "--metadata", "m.json"], 2, "cannot read bake metadata"),
    "profiles-metadata-bad-digest": (lambda r: (r / "m.json").write_text('{"base": {"containerimage.digest": "x;y"}}'), ["profiles", "--registry", "r", "--metadata", "m.json"], 2, "has no sha256 digest"),
    "upgrade-package-empty": (None, ["lock", "--upgrade-package", "=="], 2, "is not NAME or NAME==VERSION"),
    "base-image-not-a-pair": (None, ["build", "--base-image", "base"], 2, "is not STACK=IMAGE"),
}


@pytest.mark.parametrize("case", sorted(PROJECT_CASES))
def test_a_hostile_project_or_argument_is_refused(case, locked, tmp_path, capsys, monkeypatch):
    import shutil

    setup, command, exit_code, says = PROJECT_CASES[case]
    root = tmp_path / "p"
    shutil.copytree(locked, root)
    if setup:
        setup(root)
    monkeypatch.chdir(root)
    before = tree(root) if case != "stack-file-is-a-dangling-link" else None
    code = main(["-C", str(root), *command])
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert "Traceback" not in err and "internal error" not in err, err
    assert code == exit_code and len([ln for ln in lines if ln.startswith("error:")]) == 1, (code, out, err)
    assert all(ln.startswith(("error: ", "hint: ")) for ln in lines) and says in lines[0], err
    if before is not None:
        assert tree(root) == before


def test_init_where_github_is_a_file_writes_nothing(tmp_path, capsys):
    (tmp_path / ".github").write_text("not a folder\n")
    assert main(["-C", str(tmp_path), "init"]) == 2
    assert capsys.readouterr().err.startswith("error: .github is a file, not a folder")
    assert tree(tmp_path) == {".github": b"not a folder\n"}


def test_init_where_stacks_is_a_file_writes_nothing(tmp_path, capsys):
    (tmp_path / "stacks").write_text("not a folder\n")
    assert main(["-C", str(tmp_path), "init"]) == 2
    assert capsys.readouterr().err.startswith("error: stacks is a file, not a folder")
    assert tree(tmp_path) == {"stacks": b"not a folder\n"}


def test_a_folder_that_cannot_be_written_changes_nothing(locked, capsys):
    """As a user who may write the project folder but not dockerfiles/kid: refused before anything is written."""
    import os
    import shutil
    import subprocess
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="bakegen-ro-"))
    try:
        os.chmod(top, 0o755)
        root = top / "p"
        shutil.copytree(locked, root)
        (root / "dockerfiles" / "kid" / "Dockerfile").write_text("# Generated by bakegen\nstale\n")
        for path in [root, *root.rglob("*")]:
            os.chown(path, 65534, 65534)
        os.chown(root / "dockerfiles" / "kid", 0, 0)  # the one folder this user cannot write
        before = tree(root)
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "bakegen", "-C", str(root), "generate"]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HOME": str(top)})
        assert out.returncode == 2 and out.stderr.splitlines()[0] == (
            f"error: cannot write dockerfiles/kid/Dockerfile: {root}/dockerfiles/kid is not writable"), out.stderr
        assert "Traceback" not in out.stderr and tree(root) == before
    finally:
        shutil.rmtree(top)


def test_hidden_files_in_stacks_are_not_stacks(locked, tmp_path, capsys):
    import shutil

    root = tmp_path / "p"
    shutil.copytree(locked, root)
    (root / "stacks" / ".#base.toml").symlink_to("user@host.1234:1700000000")  # an editor's lock file
    (root / "stacks" / ".base.toml.swp").write_text("\x00binary")
    assert main(["-C", str(root), "check"]) == 0, capsys.readouterr()


def test_a_removed_stack_is_named_by_check_and_cleaned_up_by_lock_and_generate(locked, tmp_path, capsys):
    import shutil

    root = tmp_path / "p"
    shutil.copytree(locked, root)
    (root / "stacks" / "kid.toml").unlink()
    assert main(["-C", str(root), "check"]) == 1
    out = capsys.readouterr().out
    assert "stale: locks/kid: no stack named kid (run bakegen lock)" in out, out
    assert main(["-C", str(root), "lock"]) == 0  # base is current: nothing is resolved
    assert "removed locks/kid/lock.json" in capsys.readouterr().out
    assert not (root / "locks" / "kid").exists()
    assert main(["-C", str(root), "generate"]) == 0
    assert "removed dockerfiles/kid/Dockerfile" in capsys.readouterr().out
    assert not (root / "dockerfiles" / "kid").exists()
    assert main(["-C", str(root), "check"]) == 0


def test_a_stack_label_wins_over_the_source_url_variable(tmp_path, capsys):
    from fakes import lock_project

    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "base.toml").write_text(BASE + '[labels]\n"org.opencontainers.image.source" = "https://example.org/images"\n')
    lock_project(tmp_path)
    assert main(["-C", str(tmp_path), "generate"]) == 0
    bake = (tmp_path / "docker-bake.hcl").read_text()
    assert bake.count('"org.opencontainers.image.source"') == 1 and '"org.opencontainers.image.revision"' in bake
