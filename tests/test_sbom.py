"""bakegen sbom: CycloneDX 1.6 and SPDX 2.3 from the locks alone, checked with the real validators and
against the lock files read here directly (no Docker, no network)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import socket
import tomllib
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import REPO, tree
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from fakes import FakeApt, lock_project
from packageurl import PackageURL
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from bakegen.cli import main
from bakegen.ecosystems.npm import npm_fits, sri_hashes
from bakegen.files import is_generated
from bakegen.resolvers.npm import NpmLock, package_manifest, split_spec

EXAMPLE = ("stacks", "locks", "dockerfiles")
NPM_CPU = {"amd64": "x64", "arm64": "arm64"}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("bakegen sbom must not use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A copy of the repository's example project (stacks, locks, generated files)."""
    root = tmp_path / "example"
    for folder in EXAMPLE:
        shutil.copytree(REPO / folder, root / folder)
    shutil.copy(REPO / "docker-bake.hcl", root)
    return root


# --- a two-platform project locked with the fakes, with scoped and platform-only npm packages ----

ROOT = 'name = "r"\ndescription = "root"\nbase = "python:3.13-slim"\nplatforms = ["linux/amd64", "linux/arm64"]\n' \
       '[python]\nversion = "3.13"\npackages = ["six"]\n[apt]\nsuite = "trixie"\npackages = ["tini"]\n'
CHILD = 'name = "c"\ndescription = "child"\nextends = "r"\ntags = ["v1"]\n[python]\npackages = ["packaging"]\n' \
        '[npm]\npackages = ["@scope/pkg@1.0.0", "opt@2.0.0"]\nnode = "base"\n'


def sri(content: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(content).digest()).decode()


class FakeNpm:
    """npm in a dict: a scoped package, a package only for arm64, one name at two install paths."""

    def version(self) -> str:
        return "npm 0.0-fake"

    def resolve(self, stack, specs, allow_scripts=False, node="apt", previous=None, upgrade=(), before=None, registries=()):
        reg = "https://registry.npmjs.org"
        packages = {
            "": {"name": f"bakegen-{stack}", "version": "0.0.0", "dependencies": dict(split_spec(s) for s in specs)},
            "node_modules/@scope/pkg": {"version": "1.0.0", "resolved": f"{reg}/@scope/pkg/-/pkg-1.0.0.tgz", "integrity": sri(b"pkg"), "license": "MIT"},
            "node_modules/@scope/pkg/node_modules/dup": {"version": "3.0.0", "resolved": f"{reg}/dup/-/dup-3.0.0.tgz", "integrity": sri(b"dup")},
            "node_modules/dup": {"version": "3.0.0", "resolved": f"{reg}/dup/-/dup-3.0.0.tgz", "integrity": sri(b"dup"), "license": "SEE LICENSE IN LICENSE"},
            "node_modules/opt": {"version": "2.0.0", "resolved": f"{reg}/opt/-/opt-2.0.0.tgz", "integrity": sri(b"opt"), "optional": True,
                                 "cpu": ["arm64"], "license": "(MIT OR Apache-2.0)"},
        }
        lock = json.dumps({"name": f"bakegen-{stack}", "version": "0.0.0", "lockfileVersion": 3, "requires": True, "packages": packages}, indent=2) + "\n"
        return NpmLock(json.dumps(package_manifest(stack, specs), indent=2) + "\n", lock, self.version(), allow_scripts, node)


@pytest.fixture
def multi(project) -> Path:
    root = project({"r": ROOT, "c": CHILD})
    lock_project(root, apt=FakeApt({"tini": ["0.19"]}), npm=FakeNpm())
    return root


# --- what the locks say, read here without bakegen ------------------------------------------


def chain(root: Path, stack: str) -> list[str]:
    names: list[str] = []
    while stack:
        names.insert(0, stack)
        stack = tomllib.loads((root / "stacks" / f"{stack}.toml").read_text()).get("extends")
    return names


def manifest(root: Path, stack: str) -> dict:
    return json.loads((root / "locks" / stack / "lock.json").read_text())


def expected(root: Path, stack: str, platform: str) -> dict:
    """{(type, namespace, name, version, qualifiers): (hashes, stack)} from the raw lock files of the chain."""
    arch = platform.split("/")[1]
    out: dict = {}
    for name in chain(root, stack):
        doc, folder = manifest(root, name), root / "locks" / name
        for key, hashes in [*base_of(doc, platform), *requirements_of(folder / doc["python"]["files"][platform]["file"]),
                            *apt_of(folder, doc, arch), *npm_of(folder, doc, arch)]:
            out.setdefault(key, (hashes, name))
    return out


def base_of(doc: dict, platform: str) -> list:
    if not doc["base"]:
        return []
    ref, _, pinned = doc["base"]["ref"].partition("@")
    repo, _, tag = ref.partition(":")
    per_platform = doc["base"]["platforms"].get(platform)
    digest = per_platform or doc["base"]["digest"]
    quals = {"repository_url": f"docker.io/library/{repo}", "tag": tag} | ({"arch": platform.split("/")[1]} if per_platform else {})
    return [(("oci", None, repo, digest, tuple(sorted(quals.items()))), frozenset({("sha256", digest.split(":")[1])}))]


def requirements_of(path: Path) -> list:
    out, current = [], None
    for line in path.read_text().splitlines():
        if m := re.match(r"([A-Za-z0-9._-]+)==(\S+)", line):
            current = (re.sub(r"[-_.]+", "-", m[1]).lower(), m[2], set())
            out.append(current)
        elif current and (h := re.search(r"--hash=sha256:([0-9a-f]{64})", line)):
            current[2].add(("sha256", h[1]))
    return [(("pypi", None, n, v, ()), frozenset(h)) for n, v, h in out]


def apt_of(folder: Path, doc: dict, arch: str) -> list:
    if not doc["apt"]:
        return []
    out = []
    for line in (folder / "apt.lock").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        a, kind, name, version, sha, pool = line.split()
        if a == arch and kind in ("req", "dep"):
            quals = (("arch", re.search(r"_([a-z0-9]+)\.deb$", pool)[1]), ("distro", doc["apt"]["suite"]))
            out.append((("deb", doc["apt"]["distro"], name, version, quals), frozenset({("sha256", sha.removeprefix("sha256:"))})))
    return out


def npm_of(folder: Path, doc: dict, arch: str) -> list:
    if not doc["npm"]:
        return []
    out = []
    for path, meta in json.loads((folder / "package-lock.json").read_text())["packages"].items():
        if not path or ("cpu" in meta and NPM_CPU[arch] not in meta["cpu"]):
            continue
        scope, _, name = path.split("node_modules/")[-1].rpartition("/")
        alg, _, b64 = meta["integrity"].partition("-")
        out.append((("npm", scope or None, name, meta["version"], ()), frozenset({(alg, base64.b64decode(b64).hex())})))
    return out


# --- what the SBOMs say ------------------------------------------------------------------------


def purl_key(purl: str) -> tuple:
    p = PackageURL.from_string(purl)
    return p.type, p.namespace, p.name, p.version, tuple(sorted((p.qualifiers or {}).items()))


def cyclonedx_components(doc: dict) -> dict:
    out = {}
    for c in doc["components"]:
        assert c["bom-ref"] == c["purl"]
        stacks = [p["value"] for p in c["properties"] if p["name"] == "bakegen:stack"]
        hashes = frozenset((h["alg"].lower().replace("-", ""), h["content"]) for h in c.get("hashes", []))
        assert purl_key(c["purl"]) not in out
        out[purl_key(c["purl"])] = (hashes, *stacks)
    return out


def spdx_components(doc: dict) -> dict:
    out = {}
    for p in doc["packages"][1:]:
        (ref,) = [r["referenceLocator"] for r in p["externalRefs"] if r["referenceType"] == "purl"]
        stacks = [a["comment"].removeprefix("bakegen:stack=") for a in p["annotations"]]
        hashes = frozenset((c["algorithm"].lower(), c["checksumValue"]) for c in p.get("checksums", []))
        assert purl_key(ref) not in out
        out[purl_key(ref)] = (hashes, *stacks)
    return out


def outputs(root: Path, out: str = "sbom") -> list[tuple[str, str, Path]]:
    """(stack, platform, path without suffix) for every stack of the project and platform of its lock."""
    found = []
    for path in sorted((root / "stacks").glob("*.toml")):
        for platform in manifest(root, path.stem)["platforms"]:
            found.append((path.stem, platform, root / out / path.stem / platform.split("/")[1]))
    return found


def read(path: Path, suffix: str) -> dict:
    return json.loads(path.with_name(path.name + suffix).read_text())


def sbom(root: Path, *args: str) -> int:
    return main(["-C", str(root), "sbom", *args])


# --- tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["example", "multi"])
def test_both_formats_pass_the_real_validators(which, request, capsys):
    root = request.getfixturevalue(which)
    assert sbom(root) == 0
    written = sorted(str(p.relative_to(root)) for p in (root / "sbom").rglob("*") if p.is_file())
    assert written == sorted(f"sbom/{s}/{p.split('/')[1]}.{ext}" for s, p, _ in outputs(root) for ext in ("cdx.json", "spdx.json"))
    for _, _, base in outputs(root):
        cdx = base.with_name(base.name + ".cdx.json")
        assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(cdx.read_text(), all_errors=True) is None, cdx
        spdx = base.with_name(base.name + ".spdx.json")
        assert validate_full_spdx_document(parse_file(str(spdx))) == [], spdx


def test_the_validators_catch_a_broken_document(example, tmp_path):
    assert sbom(example) == 0
    _, _, base = outputs(example)[0]
    cdx = read(base, ".cdx.json")
    cdx["components"][0]["hashes"][0]["content"] = "not-hex"
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(cdx)) is not None
    spdx = read(base, ".spdx.json")
    spdx["relationships"][0]["relatedSpdxElement"] = "SPDXRef-nothing"
    (tmp_path / "bad.spdx.json").write_text(json.dumps(spdx))
    assert validate_full_spdx_document(parse_file(str(tmp_path / "bad.spdx.json"))) != []


@pytest.mark.parametrize("which", ["example", "multi"])
def test_components_are_exactly_the_locks(which, request):
    root = request.getfixturevalue(which)
    assert sbom(root) == 0
    for stack, platform, base in outputs(root):
        want = expected(root, stack, platform)
        assert want, (stack, platform)
        assert cyclonedx_components(read(base, ".cdx.json")) == want, (stack, platform)
        assert spdx_components(read(base, ".spdx.json")) == want, (stack, platform)


def test_a_child_holds_its_parents_components(example):
    assert sbom(example) == 0
    geo = cyclonedx_components(read(example / "sbom" / "geo" / "amd64", ".cdx.json"))
    for parent in ("base", "scipy"):
        own = cyclonedx_components(read(example / "sbom" / parent / "amd64", ".cdx.json"))
        assert own.items() <= geo.items(), parent
    stacks = {key[2]: stack for key, (_, stack) in geo.items()}
    assert (stacks["python"], stacks["jupyterlab"], stacks["numpy"], stacks["ipyleaflet"], stacks["leaflet"]) == ("base", "base", "scipy", "geo", "geo")
    assert {s for _, s in geo.values()} == {"base", "scipy", "geo"}
    assert "nodejs" not in stacks  # geo's apt packages are build-stage only: not in the image


def test_image_metadata_time_and_ids_come_from_the_locks(example):
    assert sbom(example) == 0
    for stack, _platform, base in outputs(example):
        epoch = max(manifest(example, s)["source_date_epoch"] for s in chain(example, stack))
        when = datetime.fromtimestamp(epoch, UTC)
        cdx, spdx = read(base, ".cdx.json"), read(base, ".spdx.json")
        assert datetime.fromisoformat(cdx["metadata"]["timestamp"]) == when
        assert spdx["creationInfo"]["created"] == when.strftime("%Y-%m-%dT%H:%M:%SZ")
        component = cdx["metadata"]["component"]
        assert (component["type"], component["name"], component["version"]) == ("container", stack, manifest(example, stack)["fingerprint"])
        assert uuid.UUID(cdx["serialNumber"].removeprefix("urn:uuid:")).version == 5
        assert uuid.UUID(spdx["documentNamespace"][-36:]).version == 5
        assert spdx["packages"][0]["name"] == stack and spdx["packages"][0]["primaryPackagePurpose"] == "CONTAINER"


def test_npm_names_hashes_licenses_and_platforms(multi):
    assert sbom(multi) == 0
    amd64, arm64 = (read(multi / "sbom" / "c" / arch, ".cdx.json") for arch in ("amd64", "arm64"))
    by_purl = {c["purl"]: c for c in arm64["components"]}
    scoped = by_purl["pkg:npm/%40scope/pkg@1.0.0"]
    assert (scoped["group"], scoped["name"]) == ("@scope", "pkg")
    assert scoped["hashes"] == [{"alg": "SHA-512", "content": hashlib.sha512(b"pkg").hexdigest()}]
    assert scoped["licenses"] == [{"license": {"id": "MIT", "acknowledgement": "declared"}}]
    assert by_purl["pkg:npm/opt@2.0.0"]["licenses"] == [{"expression": "(MIT OR Apache-2.0)", "acknowledgement": "declared"}]
    assert "pkg:npm/opt@2.0.0" not in {c["purl"] for c in amd64["components"]}  # cpu: arm64 only
    assert [c["purl"] for c in arm64["components"]].count("pkg:npm/dup@3.0.0") == 1  # two install paths, one component
    spdx = {p["name"]: p for p in read(multi / "sbom" / "c" / "arm64", ".spdx.json")["packages"]}
    assert (spdx["@scope/pkg"]["licenseDeclared"], spdx["opt"]["licenseDeclared"], spdx["dup"]["licenseDeclared"]) == ("MIT", "(MIT OR Apache-2.0)", "NOASSERTION")
    assert all(p["licenseDeclared"] == "NOASSERTION" for name, p in spdx.items() if name not in ("@scope/pkg", "opt"))
    python = {c["name"]: c for c in arm64["components"] if c["type"] == "container"}["python"]
    assert "arch=arm64" in python["purl"] and python["version"] == manifest(multi, "r")["base"]["platforms"]["linux/arm64"]


def test_output_is_byte_identical_across_runs(example, tmp_path):
    assert sbom(example, "-o", str(tmp_path / "one")) == 0
    assert sbom(example, "-o", str(tmp_path / "two")) == 0
    one, two = tree(tmp_path / "one"), tree(tmp_path / "two")
    assert one == two and len(one) == 6
    assert all(text.endswith(b"}\n") for text in one.values())


def test_a_second_run_changes_nothing_and_repairs_and_prunes(example, capsys):
    assert sbom(example) == 0
    before = tree(example / "sbom")
    assert all(is_generated(example / "sbom" / rel) for rel in before)  # bakegen may overwrite its own files
    capsys.readouterr()
    assert sbom(example) == 0
    assert capsys.readouterr().out == "6 SBOM files are up to date\n"
    edited = example / "sbom" / "base" / "amd64.spdx.json"
    edited.write_text(edited.read_text().replace('"base-amd64"', '"edited"'))
    shutil.copy(example / "sbom" / "geo" / "amd64.cdx.json", example / "sbom" / "geo" / "arm64.cdx.json")  # a dropped platform
    assert sbom(example) == 0
    assert capsys.readouterr().out == "wrote sbom/base/amd64.spdx.json\nremoved sbom/geo/arm64.cdx.json\n"
    assert tree(example / "sbom") == before


def test_format_and_stack_selection(example, capsys):
    assert sbom(example, "geo", "--format", "cyclonedx") == 0
    assert capsys.readouterr().out == "wrote sbom/geo/amd64.cdx.json\n"
    assert sbom(example, "scipy", "--format", "spdx") == 0
    assert sorted(tree(example / "sbom")) == ["geo/amd64.cdx.json", "scipy/amd64.spdx.json"]


def test_relative_output_is_from_the_working_folder(example, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sbom(example, "base", "-o", "out") == 0
    assert sorted(tree(tmp_path / "out")) == ["base/amd64.cdx.json", "base/amd64.spdx.json"]
    assert not (example / "sbom").exists()


def test_unknown_stack_is_one_error_and_writes_nothing(example, capsys):
    before = tree(example)
    assert sbom(example, "geoo") == 2
    assert capsys.readouterr().err == "error: no stack named 'geoo'\nhint: did you mean 'geo'?\n"
    assert tree(example) == before


@pytest.mark.parametrize("edit", ["stack", "lock"])
def test_a_stale_lock_is_refused_and_nothing_is_written(example, capsys, edit):
    if edit == "stack":
        path = example / "stacks" / "geo.toml"
        path.write_text(path.read_text().replace('"ipyleaflet>=0.19"', '"ipyleaflet>=0.19", "six"'))
    else:
        path = example / "locks" / "scipy" / "requirements.txt"
        path.write_text(path.read_text().replace("numpy==", "numpy===", 1))
    before = tree(example)
    assert sbom(example) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[1] == "hint: run bakegen lock"
    assert err[0].startswith("error: locks are out of date: ")
    assert ("geo (stacks/geo.toml" if edit == "stack" else "scipy (scipy/requirements.txt was edited") in err[0]
    assert tree(example) == before


def test_a_failed_write_writes_nothing(example, capsys):
    mine = example / "sbom" / "scipy" / "amd64.spdx.json"
    mine.parent.mkdir(parents=True)
    mine.write_text("{}\n")  # not bakegen's: never overwritten
    before = tree(example)
    assert sbom(example) == 2
    assert capsys.readouterr().err.splitlines()[0] == "error: scipy/amd64.spdx.json exists and was not generated by bakegen; refusing to overwrite it"
    assert tree(example) == before


def test_output_that_is_a_file_is_an_error(example, capsys):
    (example / "sbom").write_text("")
    assert sbom(example) == 2
    assert capsys.readouterr().err.startswith(f"error: --output {example / 'sbom'} is a file\n")


def test_sri_and_npm_platform_helpers():
    assert sri_hashes(sri(b"x") + " sha1-" + base64.b64encode(hashlib.sha1(b"x").digest()).decode() + " md5-AAAA") == (
        ("sha1", hashlib.sha1(b"x").hexdigest()), ("sha512", hashlib.sha512(b"x").hexdigest()))
    assert sri_hashes("sha512-!!!") == ()
    assert npm_fits({}, "amd64") and npm_fits({"cpu": ["x64"], "os": ["linux"]}, "amd64")
    assert not npm_fits({"cpu": ["arm64"]}, "amd64") and not npm_fits({"os": ["darwin"]}, "arm64")
    assert not npm_fits({"cpu": ["!x64"]}, "amd64") and npm_fits({"cpu": ["!x64"]}, "arm64")
