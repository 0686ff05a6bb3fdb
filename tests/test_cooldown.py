"""The lock's cool-down (bakegen lock --min-age, bakegen.toml's lock.min_age_days) and the settings file.

The network tests resolve against PyPI and the npm registry, with packages whose release dates are known:
six 1.16.0 (2021-05-05) and 1.17.0 (2024-12-04); leaflet 1.9.3 (2022-11-18) and 1.9.4 (2023-05-18)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import pytest
from conftest import write_stacks
from fakes import FakeImages, FakeResolver

from bakegen.cli import main
from bakegen.errors import BakegenError
from bakegen.resolvers.pins import PythonRequest
from bakegen.settings import SETTINGS_FILE, read_settings

HOST_PY = "{}.{}".format(*sys.version_info[:2])


def days_since(day: str) -> int:
    return (datetime.now(UTC) - datetime.fromisoformat(day).replace(tzinfo=UTC)).days


# --- settings -----------------------------------------------------------------------------


def test_settings_are_optional_and_read_strictly(tmp_path):
    assert read_settings(tmp_path).min_age_days is None
    (tmp_path / SETTINGS_FILE).write_text('[lock]\nmin_age_days = 7\n\n[[audit.ignore]]\nid = "GHSA-abcd-efgh-ijkl"\n'
                                          'reason = "not reachable from our images"\n')
    settings = read_settings(tmp_path)
    assert settings.min_age_days == 7
    assert [(i.id, i.reason) for i in settings.ignored] == [("GHSA-abcd-efgh-ijkl", "not reachable from our images")]


@pytest.mark.parametrize("text, message", [
    ("[lock]\nmin_age = 7\n", "bakegen.toml:2: lock.min_age: unknown key"),
    ("[lockk]\n", "bakegen.toml:1: lockk: unknown key"),
    ("[lock]\nmin_age_days = -1\n", "bakegen.toml:2: lock.min_age_days: -1 is not a number of days"),
    ("[lock]\nmin_age_days = true\n", "lock.min_age_days: True is not a number of days"),
    ("[lock]\nmin_age_days = 7.5\n", "lock.min_age_days: 7.5 is not a number of days"),
    ("lock = 3\n", "bakegen.toml:1: lock: not a table"),
    ("[[audit.ignore]]\nid = \"GHSA-1\\n-2\"\nreason = \"x\"\n", "audit.ignore.id: 'GHSA-1\\n-2' is not an advisory id"),
    ("[[audit.ignore]]\nid = \"GHSA-abcd\"\n", "audit.ignore.reason: an accepted risk needs its reason"),
    ("[[audit.ignore]]\nid = \"GHSA-abcd\"\nreason = \"   \"\n", "an accepted risk needs its reason"),
    ("[[audit.ignore]]\nid = \"GHSA-abcd\"\nreason = \"a\\nb\"\n", "an accepted risk needs its reason"),
    ("[audit]\nignore = [\"GHSA-abcd\"]\n", "audit.ignore: not an array of tables"),
    ("[lock\n", "bakegen.toml: not TOML"),
])
def test_a_bad_setting_is_one_error_with_the_file_and_line(tmp_path, capsys, text, message):
    (tmp_path / SETTINGS_FILE).write_text(text)
    with pytest.raises(BakegenError) as err:
        read_settings(tmp_path)
    line = err.value.lines()[0]
    assert line.startswith("error: ") and message in line, line


def test_a_settings_file_that_leaves_the_project_is_refused(tmp_path):
    outside = tmp_path / "elsewhere.toml"
    outside.write_text("[lock]\nmin_age_days = 1\n")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / SETTINGS_FILE).symlink_to(outside)
    with pytest.raises(BakegenError, match="resolves outside the project"):
        read_settings(tmp_path / "p")


# --- the cut-off reaches every resolver -----------------------------------------------------


class Recording(FakeResolver):
    def __init__(self):
        super().__init__()
        self.cutoffs: list[str | None] = []

    def resolve(self, request: PythonRequest):
        if request.inputs[0][0] != "bakegen's build tools":  # uv's pin is the uv bakegen runs with: no cool-down
            self.cutoffs.append(request.exclude_newer)
        return super().resolve(request)


STACK = 'name = "base"\ndescription = "b"\nbase = "python:3.13-slim"\n[python]\nversion = "3.13"\npackages = ["six"]\n'


def test_min_age_is_the_cut_off_of_every_python_resolution(tmp_path, monkeypatch, capsys):
    root = write_stacks(tmp_path, {"base": STACK})
    from bakegen import registry

    recording = Recording()
    monkeypatch.setattr("bakegen.cli.get_resolver", lambda name: recording)
    monkeypatch.setattr("bakegen.cli.Resolvers", lambda python, **kw: registry.Resolvers(python=python, image=FakeImages()))
    assert main(["-C", str(root), "lock", "--min-age", "10"]) == 0
    out = capsys.readouterr().out
    (cutoff,) = set(recording.cutoffs)
    assert cutoff and (datetime.now(UTC) - datetime.fromisoformat(cutoff)).days == 10
    assert f"cool-down: no release published after {cutoff} (10 days)" in out
    (root / SETTINGS_FILE).write_text("[lock]\nmin_age_days = 3\n")
    recording.cutoffs.clear()
    assert main(["-C", str(root), "lock", "--upgrade"]) == 0
    assert recording.cutoffs and {(datetime.now(UTC) - datetime.fromisoformat(c)).days for c in recording.cutoffs} == {3}
    recording.cutoffs.clear()
    assert main(["-C", str(root), "lock", "--upgrade", "--min-age", "0"]) == 0
    assert set(recording.cutoffs) == {None}
    assert main(["-C", str(root), "lock", "--min-age", "-2"]) == 2


def test_ecosystems_that_cannot_honour_the_cut_off_say_so(tmp_path, caplog):
    from bakegen.locker import lock_stacks
    from bakegen.project import load_stacks
    from bakegen.registry import Resolvers

    root = write_stacks(tmp_path, {"base": STACK})
    with caplog.at_level("WARNING", logger="bakegen"):
        lock_stacks(load_stacks(root), Resolvers(python=FakeResolver(), image=FakeImages()), exclude_newer="2024-06-01T00:00:00Z")
    assert "base image: the cool-down does not apply" in caplog.text


# --- the real resolvers -----------------------------------------------------------------------


@pytest.mark.network
@pytest.mark.parametrize("backend", ["uv", "pip-tools"])
def test_the_cool_down_leaves_out_a_release_younger_than_the_limit(backend):
    from bakegen.resolvers.python import get_resolver

    def six(cutoff):
        request = PythonRequest(stack="demo", python_version=HOST_PY, inputs=[("stacks/demo.toml", ["six"])], exclude_newer=cutoff)
        return {p.key: p.version for p in get_resolver(backend).resolve(request)}["six"]

    assert six(None) >= "1.17.0"
    assert six("2024-06-01T00:00:00Z") == "1.16.0"  # 1.17.0 came out on 2024-12-04


@pytest.mark.network
def test_npm_s_before_leaves_out_a_release_younger_than_the_limit():
    """npm's --before reads the registry's publish times; so does this test (a mirror keeps times of its own)."""
    import json
    import urllib.request

    from packaging.version import Version

    from bakegen.resolvers.npm import NpmResolver

    with urllib.request.urlopen("https://registry.npmjs.org/d3-array", timeout=30) as resp:
        times = json.load(resp)["time"]
    major3 = sorted((Version(v), t) for v, t in times.items() if v[:2] == "3." and not Version(v).is_prerelease)
    newest, published = major3[-1]
    cutoff = (datetime.fromisoformat(published) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    expected = max(v for v, t in major3 if datetime.fromisoformat(t) <= datetime.fromisoformat(cutoff))
    assert expected < newest
    assert NpmResolver().resolve("demo", ["d3-array@^3.0.0"]).packages()["node_modules/d3-array"] == str(newest)
    assert NpmResolver().resolve("demo", ["d3-array@^3.0.0"], before=cutoff).packages()["node_modules/d3-array"] == str(expected)


@pytest.mark.network
def test_lock_min_age_against_pypi(tmp_path, capsys):
    """The whole command: bakegen lock --min-age with the real uv, counted back to a date between two releases."""
    root = write_stacks(tmp_path, {"base": STACK.replace('base = "python:3.13-slim"',
                                                         'base = "python:3.13-slim@sha256:' + "1" * 64 + '"')})
    assert main(["-C", str(root), "lock", "--min-age", str(days_since("2024-06-01"))]) == 0
    assert "six==1.16.0" in (root / "locks" / "base" / "requirements.txt").read_text()
