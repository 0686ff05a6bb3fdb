"""bakegen diff on real before/after locks, against golden files."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from conftest import CASES

from bakegen.cli import main

FORMATS = {"text": "expected.txt", "markdown": "expected.md", "json": "expected.json"}


@pytest.fixture
def repo(tmp_path):
    """A git repository whose HEAD has the 'before' locks and whose working tree has the 'after' ones."""
    shutil.copytree(CASES / "diff" / "before" / "locks", tmp_path / "locks")
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "before"], check=True)
    shutil.rmtree(tmp_path / "locks")
    shutil.copytree(CASES / "diff" / "after" / "locks", tmp_path / "locks")
    return tmp_path


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_diff_matches_golden_file(repo, fmt, capsys):
    assert main(["-C", str(repo), "diff", "--format", fmt]) == 0
    assert capsys.readouterr().out == (CASES / "diff" / FORMATS[fmt]).read_text()


def test_diff_json_says_what_to_rebuild(repo, capsys):
    main(["-C", str(repo), "diff", "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["rebuild"] == ["base", "child"]
    assert doc["images"]["child"]["status"] == "unchanged"
    assert doc["images"]["child"]["reason"] == "its parent base is rebuilt"
    kinds = {(c["name"], c["change"]) for c in doc["images"]["base"]["changes"]["python"]}
    assert kinds == {("six", "upgraded"), ("packaging", "downgraded"), ("certifi", "added"), ("idna", "removed")}


def test_no_changes_and_an_older_revision(repo, capsys):
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "after"], check=True)
    assert main(["-C", str(repo), "diff"]) == 0
    assert capsys.readouterr().out == "bakegen diff HEAD..working tree\nrebuild: nothing\n"
    assert main(["-C", str(repo), "diff", "HEAD~1", "--output", str(repo / "body.md"), "--format", "markdown"]) == 0
    assert (repo / "body.md").read_text() == (CASES / "diff" / "expected.md").read_text().replace("`HEAD`", "`HEAD~1`")


def test_bad_revision(repo, capsys):
    assert main(["-C", str(repo), "diff", "nope"]) == 2
    assert capsys.readouterr().err.startswith(f"error: 'nope' is not a git revision in {repo}\nhint: ")
