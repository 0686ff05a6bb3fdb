"""A fuzzer (hypothesis, a fixed budget) over the stack values that reach generated files.

It puts strings with newlines, quotes, $, ${, %{, backticks, NUL, unicode and huge
values into one field of a valid stack at a time. Either bakegen refuses the stack
with one `error:` line and writes nothing, or what it writes parses with the real
parsers and says exactly what the stack says:

* every Dockerfile parses with BuildKit's own parser (the `dockerfile` package
  wraps it) into the same instructions as the stack with a plain value: an
  injected value cannot add, remove or reshape an instruction, and the exec-form
  instructions stay JSON;
* the profiles are YAML whose values are the stack's strings;
* the scripts pass `bash -n`.

tests/e2e/test_fuzz_tools.py runs the same inputs through docker buildx bake
--print, BuildKit's Dockerfile check and a real build.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import dockerfile
import pytest
import yaml
from conftest import tree
from fakes import FakeApt, lock_project
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bakegen.cli import main
from bakegen.errors import ResolutionError, StackErrors
from bakegen.project import load_stacks

PIECES = ["\n", "\r", "\t", "\x00", '"', "'", "$", "${", "%{", "}", "`", "\\", ";", "|", "&", " ", "#", "*", "$(id)", "\u2028",
          "\ufeff", "é", "✓", "-", ".", "/", "=", ":", "a", "Z", "9", "_", "@", "[", "]", "\x1b", "\x7f"]
HOSTILE = st.one_of(st.lists(st.sampled_from(PIECES), min_size=1, max_size=10).map("".join), st.just("x" * 5000), st.just(""))

STACK = """\
name = "fz"
description = "{description}"
base = "python:3.13-slim{base}"
tags = ["latest{tag}"]
[python]
version = "3.13"
packages = ["jupyterlab{requirement}"]
[apt]
suite = "trixie"
packages = ["tini{apt}"]
[env]
"FOO{env_key}" = "bar{env_value}"
[labels]
"org.example.x{label_key}" = "v{label_value}"
[user]
name = "jovyan{user}"
uid = 1000
gid = 100
[run]
command = ["start-notebook.py{command}"]
[profile]
display_name = "Fuzz{display_name}"
slug = "fz{slug}"
mem_limit = "4G{mem_limit}"
default_url = "/lab{default_url}"
"""
FIELDS = ["description", "base", "tag", "requirement", "apt", "env_key", "env_value", "label_key", "label_value", "user", "command",
          "display_name", "slug", "mem_limit", "default_url"]


def toml_string(value: str) -> str:
    """``value`` inside a TOML basic string (escapes for quotes, backslashes and control characters)."""
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def stack_text(field: str, value: str) -> str:
    return STACK.format(**{f: toml_string(value) if f == field else "" for f in FIELDS})


def lock_and_generate(root: Path) -> bool:
    """Lock with the fakes and generate; False when a valid name is one the fakes do not know."""
    try:
        lock_project(root, apt=FakeApt({"tini": ["0.19"]}))
    except ResolutionError as exc:
        assert "\n" not in exc.message
        return False
    assert main(["-C", str(root), "generate"]) == 0
    return True


def shape(path: Path) -> list[tuple]:
    """The instructions of a Dockerfile as BuildKit's parser reads them: name, exec form, flags, and how many values."""
    return [(c.cmd, c.json, c.flags, len(c.value)) for c in dockerfile.parse_file(str(path))]


def project(tmp: Path, text: str) -> Path:
    root = tmp / "p"
    (root / "stacks").mkdir(parents=True)
    (root / "stacks" / "fz.toml").write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, list[tuple]]:
    """The plain stack's Dockerfile shape, and its profile."""
    root = project(tmp_path_factory.mktemp("ref"), stack_text("description", ""))
    lock_and_generate(root)
    return {"dockerfile": shape(root / "dockerfiles" / "fz" / "Dockerfile")}


def refused_cleanly(root: Path, capsys) -> None:
    before = tree(root)
    assert main(["-C", str(root), "generate"]) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "Traceback" not in err and "internal error" not in err, err
    assert lines[0].startswith("error: stacks/fz.toml") and len([ln for ln in lines if ln.startswith("error:")]) == 1, err
    assert all(ln.startswith(("error: ", "hint: ")) for ln in lines), err
    assert tree(root) == before


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), value=HOSTILE)
def test_a_hostile_value_is_refused_or_written_exactly(field, value, reference, capsys):
    with tempfile.TemporaryDirectory(prefix="bakegen-fuzz-") as tmp:
        root = project(Path(tmp), stack_text(field, value))
        try:
            load_stacks(root)
        except StackErrors:
            event("refused")
            refused_cleanly(root, capsys)
            return
        if not lock_and_generate(root):
            event("a valid name the fakes do not know")
            return
        event(f"written: {field}")
        capsys.readouterr()
        assert shape(root / "dockerfiles" / "fz" / "Dockerfile") == reference["dockerfile"], (field, value)
        for script in (root / "dockerfiles").glob("*.sh"):
            assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
        assert main(["-C", str(root), "profiles", "--registry", "r.example"]) == 0
        (profile,) = yaml.safe_load(capsys.readouterr().out)["singleuser"]["profileList"]
        if field in ("display_name", "description", "slug", "default_url", "mem_limit"):
            expected = {"display_name": "Fuzz" + value, "description": "" + value, "slug": "fz" + value}.get(field)
            if expected is not None:
                assert profile[field] == expected
        shutil.rmtree(root)
