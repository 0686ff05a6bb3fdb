"""Third-party apt repositories without a network: the stack keys (hostile values refused with one error line),
the lock's record of each repository and its key (crafted ones refused), the sources line and the build's key mount.
tests/e2e/test_apt_repository.py runs a real signed repository (reprepro, gpgv)."""

from __future__ import annotations

import hashlib
import json

import pytest
from fakes import FakeApt, lock_project

from bakegen import registry as ordered
from bakegen.cli import main
from bakegen.lock import manifest_checksum
from bakegen.plan import plan_dockerfile
from bakegen.project import load_stacks
from bakegen.staleness import current_locks

FPR = "0123456789ABCDEF0123456789ABCDEF01234567"
KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot a real key\n-----END PGP PUBLIC KEY BLOCK-----\n"
STACK = ('name = "acme"\ndescription = "a"\nbase = "python:3.13-slim"\n[python]\nversion = "3.13"\n'
         '[apt]\nsuite = "trixie"\npackages = ["bakegen-hello"]\n')
REPO = {"name": '"acme"', "url": '"https://apt.example.com/debian"', "suite": '"stable"', "components": '["main"]',
        "key": '"acme.asc"', "fingerprint": f'"{FPR}"'}


def repo(**changed: str) -> str:
    fields = {**REPO, **changed}
    return "[[apt.repositories]]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items() if v is not None)


@pytest.fixture
def acme(project):
    def make(text: str = repo()) -> object:
        root = project({"acme": STACK + text})
        (root / "stacks" / "acme").mkdir(exist_ok=True)
        (root / "stacks" / "acme" / "acme.asc").write_text(KEY)
        return root
    return make


@pytest.mark.parametrize("changed, message", [
    ({"suite": '"stable main\\ndeb http://evil.example.com/ x"'}, "invalid suite"),
    ({"suite": '"../../x"'}, "invalid suite"),
    ({"components": '["main contrib"]'}, "invalid component"),
    ({"components": "[]"}, "must not be empty"),
    ({"url": '"https://u:p@apt.example.com/"'}, "is not an index URL"),
    ({"key": '"../other/acme.asc"'}, "invalid key file"),
    ({"key": '"acme.txt"'}, "invalid key file"),
    ({"key": '"missing.asc"'}, "no such file"),
    ({"fingerprint": f'"{FPR.lower()}"'}, "invalid key fingerprint"),
    ({"fingerprint": '"0123 4567"'}, "invalid key fingerprint"),
    ({"name": '"Acme Repo"'}, "invalid repository name"),
    ({"fingerprint": None}, "missing 'fingerprint'"),
])
def test_a_hostile_repository_is_one_error_line(acme, capsys, changed, message):
    root = acme(repo(**changed))
    assert main(["-C", str(root), "check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: stacks/acme.toml:") and message in err and err.count("error:") == 1, err
    assert "Traceback" not in err


def test_a_key_file_that_links_out_of_the_stack_s_folder_is_refused(acme, capsys, tmp_path):
    root = acme()
    outside = tmp_path.parent / f"{tmp_path.name}-elsewhere.asc"
    outside.write_text(KEY)
    (root / "stacks" / "acme" / "acme.asc").unlink()
    (root / "stacks" / "acme" / "acme.asc").symlink_to(outside)
    assert main(["-C", str(root), "check"]) == 2
    assert "a symbolic link out of the project" in capsys.readouterr().err


def test_two_repositories_of_one_name_are_refused(acme, capsys):
    root = acme(repo() + repo(url='"https://other.example.com/"'))
    assert main(["-C", str(root), "check"]) == 2
    assert "a repository named 'acme' comes earlier" in capsys.readouterr().err


def locked(acme):
    root = acme()
    lock_project(root, apt=FakeApt({"bakegen-hello": ["1.0.0"]}))
    return root


def test_the_lock_records_the_repository_and_its_key_and_the_build_mounts_the_key(acme):
    root = locked(acme)
    doc = json.loads((root / "locks/acme/lock.json").read_text())
    assert doc["apt"]["repositories"] == [{
        "name": "acme", "url": "https://apt.example.com/debian", "suite": "stable", "components": ["main"],
        "fingerprint": FPR, "key": "stacks/acme/acme.asc", "key_sha256": hashlib.sha256(KEY.encode()).hexdigest()}]
    sources = (root / "locks/acme/apt-sources.list").read_text()
    assert "deb [signed-by=/tmp/bakegen/keys/acme.asc] https://apt.example.com/debian stable main\n" in sources
    graph = load_stacks(root)
    plan = plan_dockerfile(graph, "acme", current_locks(graph), ordered.ECOSYSTEMS)
    text = "\n".join(step.text for stage in plan.stages for step in stage.steps)
    assert "--mount=type=bind,source=stacks/acme/acme.asc,target=/tmp/bakegen/keys/acme.asc" in text


def test_a_changed_key_file_makes_the_lock_stale(acme, capsys):
    root = locked(acme)
    (root / "stacks/acme/acme.asc").write_text(KEY.replace("not a real", "another"))
    assert main(["-C", str(root), "check"]) != 0
    assert "acme" in str(capsys.readouterr())


@pytest.mark.parametrize("field, value, says", [
    ("url", "http://evil.example.com/debian", "tampered"),
    ("suite", "stable main\ndeb http://evil.example.com/ x", "not what bakegen writes"),
    ("key", "stacks/acme/../../../etc/passwd.asc", "not what bakegen writes"),
    ("key", "stacks/other/acme.asc", "tampered"),
    ("fingerprint", "F" * 40, "tampered"),
])
def test_a_lock_crafted_with_recomputed_checksums_is_refused(acme, capsys, field, value, says):
    root = locked(acme)
    path = root / "locks/acme/lock.json"
    doc = json.loads(path.read_text())
    old = doc["apt"]["repositories"][0][field]
    doc["apt"]["repositories"][0][field] = value
    if field == "url":  # the sources file too, as bakegen would write it from this lock
        sources = root / "locks/acme/apt-sources.list"
        sources.write_text(sources.read_text().replace(old, value))
        doc["apt"]["sources_sha256"] = hashlib.sha256(sources.read_bytes()).hexdigest()
    doc["checksum"] = manifest_checksum(doc)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    assert main(["-C", str(root), "check"]) != 0
    shown = str(capsys.readouterr())
    assert says in shown, shown


def test_a_key_file_apt_would_not_read_as_its_suffix_says_is_refused(acme, capsys):
    root = acme()
    (root / "stacks/acme/acme.asc").write_bytes(b"\x99\x01\x0dbinary")
    assert main(["-C", str(root), "check"]) == 2
    assert "acme.asc: a binary key, which apt reads from a .gpg file only" in capsys.readouterr().err


def test_a_huge_key_file_is_one_error_line(acme, capsys):
    root = acme()
    (root / "stacks/acme/acme.asc").write_text(KEY + "x" * 1_000_001)
    assert main(["-C", str(root), "check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: stacks/acme.toml:") and "larger than" in err and "internal error" not in err, err


def test_an_index_entry_no_lock_line_could_hold_is_one_error():
    from bakegen.errors import ResolutionError
    from bakegen.resolvers.apt import AptRequest, _pin
    from bakegen.resolvers.debian import AptSpec

    request = AptRequest("acme", AptSpec("debian", "trixie"), ["amd64"], ["xy"])
    good = {"Version": "1.0", "SHA256": "a" * 64, "Filename": "dists/stable/pool/stable/amd64/xy_1.0_amd64.deb", "Size": "1"}
    assert _pin(request, "amd64", "xy", good).filename == good["Filename"]
    for field, value in (("Filename", "pool/../../x.deb"), ("SHA256", ""), ("Version", "1.0 beta"), ("Size", "")):
        with pytest.raises(ResolutionError, match=f"acme: apt package xy on amd64 cannot be locked: its index gives {field}"):
            _pin(request, "amd64", "xy", {**good, field: value})


def test_a_release_of_another_suite_or_past_its_valid_until_is_refused():
    from debian.deb822 import Release

    from bakegen.errors import BakegenError
    from bakegen.resolvers.debian import Repository, _check_release

    repo = Repository("acme", "https://apt.example.com", "stable", ("main",), FPR, "stacks/acme/acme.asc", "0" * 64)
    _check_release(Release("Codename: stable\nValid-Until: Sat, 01 Jan 2100 00:00:00 UTC\n"), repo)
    with pytest.raises(BakegenError, match="serves the suite oldstable, not stable"):
        _check_release(Release("Codename: oldstable\n"), repo)
    with pytest.raises(BakegenError, match="its Release expired"):
        _check_release(Release("Suite: stable\nValid-Until: Sat, 01 Jan 2000 00:00:00 UTC\n"), repo)
