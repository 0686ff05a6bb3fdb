"""Package sources without a network: a stack's Python indexes (the stack keys, the resolver's options and inputs, the
lock's record of each package's index, the install step) and npm registries (tests/e2e/test_sources.py runs both
against real servers with logins)."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest
from conftest import write_stacks
from fakes import FakeResolver, lock_project

from bakegen import registry as ordered
from bakegen.cli import main
from bakegen.plan import plan_dockerfile
from bakegen.project import load_stacks, read_lock
from bakegen.python_indexes import Indexes, sources_project, uv_index_args
from bakegen.requirements import pin_lines
from bakegen.resolvers.pins import Pin, PythonRequest, parse_requirements
from bakegen.staleness import current_locks

BASE = 'name = "base"\ndescription = "b"\nbase = "python:3.13-slim"\n[python]\nversion = "3.13"\npackages = ["six"]\n'
PRIVATE = "https://pypi.example.com/simple"


@pytest.mark.parametrize("value, message", [
    ('index_url = "https://alice:s3cret@pypi.example.com/simple"', "is not an index URL"),
    ('index_url = "ftp://pypi.example.com/simple"', "is not an index URL"),
    ('index_url = "https://pypi.example.com/simple?token=x"', "is not an index URL"),
    ('index_url = "https://pypi.example.com/simple\\n--extra-index-url http://evil"', "is not an index URL"),
    ('extra_index_urls = ["https://ok.example.com/simple", "https://x@evil.example.com/"]', "is not an index URL"),
    ('sources = { "six; rm -rf /" = "https://pypi.example.com/simple" }', "package name"),
    # uv writes a URL back normalized (# from ...): a lock compares it as text
    ('index_url = "https://PyPI.example.com/simple"', "lower-case host"),
    ('index_url = "https://pypi.example.com/a/../simple"', "no . or .."),
    ('extra_index_urls = ["https://pypi.example.com:443/simple"]', "no default port"),
])
def test_an_index_is_a_url_without_a_login(project, capsys, value, message):
    root = project({"base": BASE + value + "\n"})
    assert main(["-C", str(root), "check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: stacks/base.toml:") and message in err, err


def test_the_indexes_are_in_the_fingerprint_only_when_a_stack_names_some(tmp_path):
    plain = write_stacks(tmp_path / "a", {"base": BASE})
    named = write_stacks(tmp_path / "b", {"base": BASE + f'index_url = "{PRIVATE}"\n'})
    lock_project(plain)
    lock_project(named)
    before = read_lock(plain / "locks" / "base").fingerprint
    assert before != read_lock(named / "locks" / "base").fingerprint


class Recording(FakeResolver):
    def __init__(self):
        super().__init__()
        self.requests: list[PythonRequest] = []

    def resolve(self, request):
        self.requests.append(request)
        return super().resolve(request)


def test_a_child_adds_its_indexes_and_sources_to_its_parents(tmp_path):
    root = write_stacks(tmp_path, {
        "base": BASE + f'index_url = "{PRIVATE}"\n',
        "kid": 'name = "kid"\ndescription = "k"\nextends = "base"\n[python]\npackages = ["packaging"]\n'
               'extra_index_urls = ["https://download.pytorch.org/whl/cu130"]\n[python.sources]\nPackaging = "https://other.example.com/simple"\n',
    })
    recording = Recording()
    lock_project(root, python=recording)
    kid = next(r for r in recording.requests if r.stack == "kid" and r.inputs[0][0] != "bakegen's build tools")
    assert kid.indexes == Indexes(PRIVATE, ("https://download.pytorch.org/whl/cu130",), {"packaging": "https://other.example.com/simple"})
    # a source's index is uv's explicit index, never an extra one: it serves its own packages only
    assert uv_index_args(kid.indexes, "https://pypi.org/simple") == [
        "--index-url", PRIVATE, "--extra-index-url", "https://download.pytorch.org/whl/cu130"]
    assert kid.indexes.all("https://pypi.org/simple")[-1] == "https://other.example.com/simple"


def test_the_sources_are_an_explicit_index_in_a_project_uv_reads():
    indexes = Indexes(None, (), {"acme-tools": PRIVATE, "six": PRIVATE})
    doc = tomllib.loads(sources_project(indexes, ['six>=1', 'acme-tools; python_version < "3.14"']))
    assert doc["project"]["dependencies"] == ['six>=1', 'acme-tools; python_version < "3.14"']
    assert doc["tool"]["uv"]["sources"] == {"acme-tools": {"index": "source-0"}, "six": {"index": "source-0"}}
    assert doc["tool"]["uv"]["index"] == [{"name": "source-0", "url": PRIVATE, "explicit": True}]


def test_each_pin_keeps_its_index_in_the_lock_file():
    pin = Pin("six", "1.0.0+acme", ("sha256:" + "a" * 64,), ("stacks/base.toml",), PRIVATE)
    (again,) = parse_requirements("\n".join(pin_lines(pin)) + "\n", strict=True)
    assert again == pin
    with pytest.raises(Exception, match="names no index URL"):
        parse_requirements("six==1.0 \\\n    --hash=sha256:" + "a" * 64 + "\n    # from https://alice:pw@x.example.com/simple\n", strict=True)


def test_the_install_names_the_stack_s_indexes_and_mounts_the_netrc_secret(tmp_path):
    plain = write_stacks(tmp_path / "a", {"base": BASE})
    named = write_stacks(tmp_path / "b", {"base": BASE + f'[python.sources]\nsix = "{PRIVATE}"\n'})
    texts = {}
    for root in (plain, named):
        lock_project(root, python=FromIndexes({"six": PRIVATE}))
        graph = load_stacks(root)
        plan = plan_dockerfile(graph, "base", current_locks(graph), ordered.ECOSYSTEMS)
        texts[root] = "\n".join(step.text for stage in plan.stages for step in stage.steps)
    assert "netrc" not in texts[plain] and "--index-url" not in texts[plain]
    assert "--mount=type=secret,id=netrc" in texts[named]
    assert f"--index-url https://pypi.org/simple --extra-index-url {PRIVATE} --index-strategy unsafe-best-match" in texts[named]


def test_pip_tools_refuses_a_stack_with_indexes():
    from bakegen.errors import BakegenError
    from bakegen.resolvers.python import PipToolsResolver

    request = PythonRequest(stack="base", python_version="3.13", indexes=Indexes(PRIVATE))
    with pytest.raises(BakegenError, match="need the uv resolver"):
        PipToolsResolver().resolve(request)


# --- npm registries ---------------------------------------------------------------------------

NPM = ('name = "web"\ndescription = "w"\nbase = "python:3.13-slim"\n[python]\nversion = "3.13"\n'
       '[apt]\nsuite = "trixie"\nbuild = ["nodejs", "npm"]\n[npm]\npackages = ["@acme/hello@1.0.0"]\n')


@pytest.mark.parametrize("value, message", [
    ('registry = "https://alice:tok@npm.example.com/"', "is not an index URL"),
    ('[npm.scopes]\n"acme" = "https://npm.example.com/"', "npm scope"),
    ('[npm.scopes]\n"@acme" = "https://npm.example.com/?_authToken=x"', "is not an index URL"),
])
def test_an_npm_registry_is_a_url_without_a_token(project, capsys, value, message):
    root = project({"web": NPM + value + "\n"})
    assert main(["-C", str(root), "check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: stacks/web.toml:") and message in err, err


def test_a_scoped_package_must_come_from_its_scope_s_registry():
    from bakegen.errors import ResolutionError
    from bakegen.resolvers.npm import check_registry_only

    def lock(resolved):
        return {"packages": {"": {}, "node_modules/@acme/hello": {
            "version": "1.0.0", "resolved": resolved, "integrity": "sha512-" + "a" * 86 + "=="}}}

    mine = "https://npm.example.com"
    check_registry_only(lock(f"{mine}/@acme/hello/-/hello-1.0.0.tgz"), "web", "https://registry.npmjs.org/", {"@acme": mine})
    with pytest.raises(ResolutionError, match="does not come from the registry"):
        check_registry_only(lock("https://registry.npmjs.org/@acme/hello/-/hello-1.0.0.tgz"), "web",
                            "https://registry.npmjs.org/", {"@acme": mine})


def test_the_npm_install_mounts_the_npmrc_secret_only_for_a_stack_with_registries():
    from bakegen.ecosystems.npm import Npm
    from bakegen.resolvers.npm import NpmLock

    class Ctx:
        def __init__(self, registries):
            self.lock = type("L", (), {"parts": {"npm": NpmLock("{}", "{}", "npm 11", registries=registries)}})()
            self.lock_dir, self.name, self.tools = "locks/web", "web", "tools"

    def text(registries):
        (stage,) = Npm().builder_stages(Ctx(registries))
        return "\n".join(step.text for step in stage.steps)

    assert "npmrc" not in text(())
    assert "--mount=type=secret,id=npmrc" in text((("@acme", "https://npm.example.com"),))
    assert "NPM_CONFIG_USERCONFIG=/run/secrets/npmrc" in text((("@acme", "https://npm.example.com"),))


def test_each_build_secret_is_an_option_an_environment_variable_and_a_bake_variable(tmp_path, monkeypatch):
    """--netrc FILE or BAKEGEN_NETRC (and npm's --npmrc): the file goes to bake as the variable BAKEGEN_<ID> and is
    read as the secret ID; uv's own NETRC in the environment is not a bake variable, so it reaches no build."""
    from bakegen import arguments
    from bakegen.build import BuildOptions, bake_command
    from bakegen.cli import parser

    netrc, npmrc = tmp_path / "netrc", tmp_path / "npmrc"
    netrc.write_text("machine x login a password b\n")
    npmrc.write_text("//x/:_authToken=t\n")
    monkeypatch.setenv("BAKEGEN_NETRC", str(netrc))
    monkeypatch.setenv("NETRC", "/somewhere/else")
    args = parser().parse_args(["build", "--npmrc", str(npmrc)])
    secrets = arguments.build_secrets(args, ordered.build_secrets())
    assert secrets == {"BAKEGEN_NETRC": str(netrc), "BAKEGEN_NPMRC": str(npmrc)}
    (tmp_path / "docker-bake.hcl").write_text("")
    cmd, variables = bake_command(tmp_path, BuildOptions(secrets=secrets))
    assert variables == secrets and f"--allow=fs.read={netrc}" in cmd and f"--allow=fs.read={npmrc}" in cmd
    text = (Path(__file__).parents[1] / "docker-bake.hcl").read_text()
    for secret in ordered.build_secrets():
        assert f'variable "{secret.variable}"' in text
        assert f'["id={secret.id},src=${{{secret.variable}}}"]' in text
    assert 'variable "NETRC"' not in text


def test_a_build_secret_that_is_not_a_file_is_one_error(project, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BAKEGEN_NPMRC", str(tmp_path / "missing"))
    root = project({"base": BASE})
    assert main(["-C", str(root), "build"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: .npmrc file ") and "not found" in err and "_authToken" in err, err


class FromIndexes(FakeResolver):
    """The fake resolver, with the index uv would annotate each pin with."""

    def __init__(self, index_of):
        super().__init__()
        self.index_of = index_of

    def resolve(self, request):
        pins = super().resolve(request)
        if request.indexes is None or not request.indexes.custom:  # uv annotates only then
            return pins
        return [dataclasses.replace(p, index=self.index_of.get(p.key, "")) for p in pins]


def test_a_sourced_package_from_another_of_the_stack_s_indexes_is_refused(project, capsys):
    other = "https://other.example.com/simple"
    root = project({"base": BASE + f'extra_index_urls = ["{other}"]\n[python.sources]\nsix = "{PRIVATE}"\n'})
    lock_project(root, python=FromIndexes({"six": other}))
    assert main(["-C", str(root), "check"]) != 0
    out = capsys.readouterr()
    assert "the lock's python sources not from their own index is ['six']" in out.out + out.err, out
    lock_project(root, python=FromIndexes({"six": PRIVATE}))
    capsys.readouterr()
    main(["-C", str(root), "check"])
    assert "sources not from" not in str(capsys.readouterr())


def test_a_lock_made_through_a_mirror_records_no_index_for_the_mirror_s_packages():
    from bakegen.resolvers.python import _unmark_default

    mirror = "https://mirror.example.com/pypi/simple"
    pins = [Pin("six", "1.0", index=PRIVATE), Pin("idna", "3.0", index=mirror)]
    sourced = PythonRequest(stack="base", python_version="3.13", index_url=mirror + "/", indexes=Indexes(None, (), {"six": PRIVATE}))
    assert [p.index for p in _unmark_default(pins, sourced)] == [PRIVATE, ""]
    primary = dataclasses.replace(sourced, indexes=Indexes(mirror, (), {"six": PRIVATE}))
    assert [p.index for p in _unmark_default(pins, primary)] == [PRIVATE, mirror]


def test_uv_s_project_of_sources_is_named_by_the_stack_in_via():
    from bakegen.resolvers.python import SOURCES_VIA, _relabel

    (pin,) = _relabel([Pin("six", "1.0", via=(SOURCES_VIA,))], {"pyproject.toml": "stacks/base.toml"})
    assert pin.via == ("-r stacks/base.toml",)


def test_an_index_that_asks_for_a_login_is_one_error_with_the_netrc_hint():
    from bakegen.errors import CommandError
    from bakegen.resolvers.python import _classify

    out = ("error: No solution found when resolving dependencies\n  cause: Because six was not found\n\n"
           "hint: An index URL (http://127.0.0.1:8765/simple) could not be queried due to a lack of valid "
           "authentication credentials (401 Unauthorized)\n")
    error = _classify(CommandError(["uv"], 1, out), PythonRequest(stack="base", python_version="3.13"), "uv")
    assert str(error) == "base: the package index http://127.0.0.1:8765/simple asks for a login (401 Unauthorized)"
    assert "netrc" in error.hint


def test_bakegen_npmrc_gives_npm_its_logins_and_nothing_else(tmp_path):
    from bakegen.resolvers.npm import _NPM_CONFIG, _logins

    npmrc = tmp_path / "npmrc"
    npmrc.write_text("registry=https://evil.example.com/\n//npm.example.com/:_authToken=t0k\nignore-scripts=false\n"
                     "@acme:registry=https://evil.example.com/\n  //h:4873/path/:_auth = eA==  \n")
    assert _logins(str(npmrc)) == "//npm.example.com/:_authToken=t0k\n//h:4873/path/:_auth = eA==\n"
    assert _logins(None) == ""
    assert _NPM_CONFIG.fullmatch("npm_config_registry") and _NPM_CONFIG.fullmatch("npm_config_@acme:registry")
    assert not _NPM_CONFIG.fullmatch("npm_config_https_proxy") and not _NPM_CONFIG.fullmatch("npm_config_cafile")


def test_a_build_secret_id_is_one_lower_case_word_used_once(monkeypatch):
    from bakegen.ecosystem import BuildSecret

    python = next(e for e in ordered.ECOSYSTEMS if e.name == "python")
    for bad in ("cacert", "netrc", "Bad-Id"):
        monkeypatch.setattr(python, "build_secrets", (*python.build_secrets, BuildSecret(bad, "x", "y", "z", "ENV")))
        with pytest.raises(ValueError, match="build secret ids"):
            ordered.build_secrets()


def test_the_diff_says_a_package_moved_to_another_index():
    from bakegen.diff import Change, _compare, _line
    from bakegen.ecosystems.python import version_newer

    (moved,) = _compare({"six": f"1.0 from {PRIVATE}"}, {"six": "1.0 from https://other.example.com/simple"}, version_newer)
    assert moved.kind == "moved" and _line(moved) == f"→ six 1.0 from {PRIVATE} -> 1.0 from https://other.example.com/simple"
    assert Change("six", "1.0", "1.1 from x").kind == "upgraded"
