from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CASES, tree

from bakegen.cli import main
from bakegen.ecosystems.python import pip_of
from bakegen.errors import StackErrors
from bakegen.project import load_stacks
from bakegen.stack import find_line

ERROR_CASES = sorted(p.name for p in CASES.iterdir() if (p / "expected-error.txt").exists())


@pytest.mark.parametrize("name", ERROR_CASES)
@pytest.mark.parametrize("command", ["lock", "generate"])
def test_invalid_stacks_give_exact_error_and_write_nothing(name, command, case, capsys):
    root = case(name)
    before = tree(root)
    code = main(["-C", str(root), command])
    err = capsys.readouterr().err
    assert err == (CASES / name / "expected-error.txt").read_text()
    assert code == int((CASES / name / "expected-exit.txt").read_text())
    assert "Traceback" not in err
    assert tree(root) == before


def test_every_error_names_file_and_has_hint():
    for name in ERROR_CASES:
        lines = (CASES / name / "expected-error.txt").read_text().splitlines()
        assert lines[0].startswith("error: stacks/"), name
        assert any(ln.startswith("hint: ") for ln in lines), name


def test_all_invalid_files_are_reported_together(project, capsys):
    root = project({
        "a": 'name = "a"\ndescription = "x"\nbase = "python:3.13-slim"\n[python]\nversion = "3.13"\nbogus = 1\n',
        "b": 'name = "b"\ndescription = "x"\nextends = "a"\ncolour = "red"\n',
    })
    assert main(["-C", str(root), "lock"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [ln for ln in err if ln.startswith("error:")] == [
        "error: stacks/a.toml:6: unknown key 'python.bogus'",
        "error: stacks/b.toml:4: unknown key 'colour'",
    ]


def test_graph_order_inheritance_and_defaults(project):
    root = project({
        "base": 'name = "base"\ndescription = "b"\nbase = "python:3.13-slim"\n[python]\nversion = "3.13"\npackages = ["jupyterlab"]\n',
        "zeta": 'name = "zeta"\ndescription = "z"\nextends = "base"\n',
        "alpha": 'name = "alpha"\ndescription = "a"\nextends = "zeta"\n[env]\nA = "1"\n',
        "other": 'name = "other"\ndescription = "o"\nbase = "debian:trixie"\n[python]\nversion = "3.13"\n[user]\nname = "nb"\nuid = 1001\n',
    })
    graph = load_stacks(root)
    assert graph.order == ["base", "other", "zeta", "alpha"]
    assert [s.name for s in graph.ancestors("alpha")] == ["base", "zeta"]
    assert graph.effective("alpha").python_version == "3.13"
    assert graph.user("alpha").name == "jovyan" and graph.user("alpha").uid == 1000 and graph.user("alpha").gid == 100
    assert (graph.user("other").name, graph.user("other").uid, graph.user("other").gid) == ("nb", 1001, 100)
    assert graph.select(["alpha"]) == ["base", "zeta", "alpha"]
    assert graph.stacks["alpha"].env == (("A", "1"),)
    assert graph.stacks["base"].tags == ("latest",)


def test_child_cannot_set_user(project):
    root = project({
        "base": 'name = "base"\ndescription = "b"\nbase = "python:3.13-slim"\n[python]\nversion = "3.13"\n',
        "kid": 'name = "kid"\ndescription = "k"\nextends = "base"\n[user]\nuid = 5\n',
    })
    with pytest.raises(StackErrors) as exc:
        load_stacks(root)
    assert exc.value.errors[0].lines() == [
        "error: stacks/kid.toml:4: 'user' can only be set on a root stack",
        "hint: set [user] in the stack that has 'base'; children inherit it",
    ]


@pytest.mark.parametrize(
    "text,key,line",
    [
        ('a = 1\n[python]\nversion = "3"\n', ("python", "version"), 3),
        ('[python]\nversion = "3"\n[apt]\npackages = []\n', ("apt", "packages"), 4),
        ('python.version = "3"\n', ("python", "version"), 1),
        ('python = { version = "3" }\n', ("python", "version"), 1),
        ('[labels]\n"org.x" = "y"\n', ("labels", "org.x"), 2),
    ],
)
def test_find_line(text, key, line):
    assert find_line(text, key) == line


def test_no_stacks_folder(tmp_path: Path, capsys):
    assert main(["-C", str(tmp_path), "lock"]) == 2
    assert capsys.readouterr().err.startswith(f"error: no stack files in {tmp_path}/stacks\nhint: ")


def test_slim_must_be_a_boolean(project, capsys):
    root = project({"base": 'name = "base"\ndescription = "b"\nbase = "python:3.13-slim"\n[python]\nversion = "3.13"\nslim = "yes"\n'})
    assert main(["-C", str(root), "generate"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: stacks/base.toml:6: python.slim: expected true or false, got a string",
        "hint: write true or false, without quotes",
    ]


@pytest.mark.parametrize("kid,base_python,message", [
    ('[python]\npip = false\n', "", "'python.pip' can only be set on a root stack"),
    ("", 'env = "base"\npip = true\n', "'python.pip' is for bakegen's virtualenv"),
    ("", 'pip = "yes"\n', "python.pip"),
])
def test_python_pip_is_a_root_venv_boolean(project, kid, base_python, message):
    root = project({
        "base": 'name = "base"\ndescription = "b"\nbase = "python:3.13-slim"\n[python]\nversion = "3.13"\n' + base_python,
        "kid": 'name = "kid"\ndescription = "k"\nextends = "base"\n' + kid,
    })
    with pytest.raises(StackErrors) as exc:
        load_stacks(root)
    assert message in exc.value.errors[0].lines()[0]


def test_python_pip_defaults_to_the_venv_and_is_inherited(project):
    base = 'name = "base"\ndescription = "b"\nbase = "python:3.13-slim"\n[python]\nversion = "3.13"\n'
    kid = 'name = "kid"\ndescription = "k"\nextends = "base"\n'
    graph = load_stacks(project({"base": base, "kid": kid}))
    assert pip_of(graph.effective("base")) and pip_of(graph.effective("kid"))
    graph = load_stacks(project({"base": base + "pip = false\n", "kid": kid}))
    assert not pip_of(graph.effective("base")) and not pip_of(graph.effective("kid"))
    graph = load_stacks(project({"base": base + 'env = "base"\n', "kid": kid}))
    assert not pip_of(graph.effective("kid"))
