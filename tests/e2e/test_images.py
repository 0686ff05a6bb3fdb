"""Build the shipped example stacks with a real BuildKit, then run the images.

Needs a Docker engine with buildx: the ``engine`` fixture starts one with
scripts/engine.sh (and makes the stand-in base image) when none is running.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
import uuid
from datetime import UTC
from pathlib import Path
from typing import IO

import pytest

from bakegen.ecosystems.python import slim_of
from bakegen.lock import manifest_checksum
from bakegen.project import load_stacks, read_lock
from e2e.conftest import Built, bakegen, docker, last_bake_steps, run

pytestmark = pytest.mark.e2e

IMPORTS = {"base": ["jupyterlab"], "scipy": ["numpy", "pandas", "matplotlib", "sklearn"], "geo": ["ipyleaflet"]}


@pytest.mark.parametrize("name", ["base", "scipy", "geo"])
def test_packages_import(built, name):
    modules = [m for stack in built.chain(name) for m in IMPORTS[stack]]
    out = run(built.image(name), "python", "-c", f"import {', '.join(modules)}; print('ok')")
    assert out.strip() == "ok"


@pytest.mark.parametrize("name", ["base", "scipy", "geo"])
def test_installed_versions_are_exactly_the_locked_ones(built, name):
    locked = {}
    for stack in built.chain(name):
        lock = read_lock(built.root / "locks" / stack)
        locked.update({p.key: p.version for p in lock.parts["python"].pins})
    listed = json.loads(run(built.image(name), "python", "-c", LIST_DISTS))
    from packaging.utils import canonicalize_name

    installed = {canonicalize_name(n): v for n, v in listed}
    assert installed == locked  # pip included: [python] pip (the default) locks it with the root
    assert f"pip {locked['pip']} from /opt/venv/" in docker("run", "--rm", built.image(name), "python", "-m", "pip", "--version")


LIST_DISTS = "import importlib.metadata as m, json; print(json.dumps([(d.metadata['Name'], d.version) for d in m.distributions()]))"


@pytest.mark.parametrize("name", ["base", "scipy", "geo"])
def test_user_is_not_root(built, name):
    assert run(built.image(name), "id", "-u").strip() == "1000"
    assert run(built.image(name), "id", "-un").strip() == "jovyan"
    assert run(built.image(name), "id", "-g").strip() == "100"


def test_jupyter_lab_answers_http(built):
    cid = docker("run", "-d", "-p", "127.0.0.1::8888", built.image("base")).strip()
    try:
        port = docker("port", cid, "8888/tcp").splitlines()[0].rsplit(":", 1)[1]
        deadline = time.monotonic() + 90
        body = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=5) as resp:
                    body = json.loads(resp.read())
                    break
            except OSError:
                time.sleep(1)
        assert body is not None, docker("logs", cid, check=False)
        assert "version" in body
        top = docker("top", cid, "-o", "pid,uid,args").splitlines()[1:]
        assert any("jupyter-lab" in line or "jupyter lab" in line for line in top), top
        assert top and all(line.split()[1] == "1000" for line in top), top
    finally:
        docker("rm", "-f", cid, check=False)


def test_leaflet_extension_enabled_in_geo(built):
    out = docker("run", "--rm", built.image("geo"), "sh", "-c", "jupyter labextension list 2>&1")
    line = next((ln for ln in out.splitlines() if "jupyter-leaflet" in ln), "")
    assert "enabled" in line and "OK" in line, out


# Run inside an image: every top-level module of every locked distribution of the
# stacks named in argv (found with importlib.metadata, not with bakegen's slim code).
SMOKE = """
import importlib, importlib.metadata as md, json, re, sys
wanted = set(json.loads(sys.argv[1]))
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
modules = sorted({m for m, dists in md.packages_distributions().items()
                  if any(norm(d) in wanted for d in dists) and m.isidentifier() and m not in ("tests", "test")})
failed = {}
for m in modules:
    try:
        importlib.import_module(m)
    except Exception as exc:
        failed[m] = repr(exc)
tests = [str(f) for d in md.distributions() if norm(d.metadata["Name"]) in wanted
         for f in (d.files or ()) if {"tests", "test"} & set(f.parts[:-1]) and f.locate().exists()]
print(json.dumps({"modules": modules, "failed": failed, "tests": tests[:20]}))
"""


@pytest.mark.parametrize("name", ["scipy", "geo"])
def test_slim_stacks_have_no_tests_and_every_top_level_module_imports(built, name):
    graph = load_stacks(built.root)
    assert slim_of(graph.effective(name))
    wanted = [p.key for p in read_lock(built.root / "locks" / name).parts["python"].pins]
    out = json.loads(run(built.image(name), "python", "-c", SMOKE, json.dumps(wanted)).splitlines()[-1])
    assert out["failed"] == {}
    assert out["tests"] == []
    assert len(out["modules"]) >= len(wanted) // 2, out["modules"]
    if name == "scipy":
        assert {"numpy", "scipy", "pandas", "sklearn", "matplotlib"} <= set(out["modules"])
        # slimming is per stack: the base stack (not slim) keeps its packages' tests
        assert run(built.image(name), "sh", "-c", "ls -d /opt/venv/lib/python3*/site-packages/tornado/test").strip()


def saved_layers(image: str, tmp: Path) -> list[tarfile.TarFile]:
    path = tmp / (image.replace("/", "_").replace(":", "_") + ".tar")
    docker("save", image, "-o", str(path))
    outer = tarfile.open(path)
    manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
    return [_random_access(outer.extractfile(layer)) for layer in manifest[0]["Layers"]]  # type: ignore[arg-type]


def _random_access(blob: IO[bytes]) -> tarfile.TarFile:
    """A saved layer (zstd, bakegen's default, or gzip) as a tar archive that can be read in any order."""
    from bakegen.repro import layer_tar

    plain = io.BytesIO()
    with layer_tar(blob) as tar, tarfile.open(fileobj=plain, mode="w") as copy:
        for member in tar:
            copy.addfile(member, tar.extractfile(member) if member.isfile() else None)
    plain.seek(0)
    return tarfile.open(fileobj=plain)


def layer_ids(image: str) -> list[str]:
    return json.loads(docker("image", "inspect", image, "--format", "{{json .RootFS.Layers}}"))


def test_children_reuse_parent_layers_and_install_only_what_parents_lack(built, tmp_path):
    for child in ("scipy", "geo"):
        parent = built.parents[child]
        assert layer_ids(built.image(child))[: len(layer_ids(built.image(parent)))] == layer_ids(built.image(parent))
    parent_count = len(layer_ids(built.image("base")))
    new_files = [m.name for layer in saved_layers(built.image("scipy"), tmp_path)[parent_count:] for m in layer.getmembers()]
    assert any("/site-packages/numpy/" in f for f in new_files)
    assert any("/site-packages/pandas/" in f for f in new_files)
    assert not any("/site-packages/jupyterlab/" in f or "/site-packages/tornado/" in f for f in new_files)
    # and the Python layer holds exactly the scipy lock's distributions
    dists = {f.split("/site-packages/")[1].split("-")[0].lower().replace("_", "-") for f in new_files if f.endswith(".dist-info/METADATA")}
    lock = read_lock(built.root / "locks" / "scipy")
    assert dists == {p.key.replace("_", "-") for p in lock.parts["python"].pins}


def test_no_lock_file_or_secret_in_any_layer(built, engine, tmp_path):
    ca = Path(engine.ca_bundle).read_bytes() if Path(engine.ca_bundle).is_file() else None
    ca_digest = hashlib.sha256(ca).hexdigest() if ca else None
    base_count = len(layer_ids(engine.standin))
    for name in built.order:
        for layer in saved_layers(built.image(name), tmp_path)[base_count:]:
            for m in layer.getmembers():
                assert "bakegen/requirements.txt" not in m.name and not m.name.startswith(("run/secrets", "opt/bakegen")), (name, m.name)
                if ca and m.isfile() and m.size == len(ca):
                    assert hashlib.sha256(layer.extractfile(m).read()).hexdigest() != ca_digest, (name, m.name)  # type: ignore[union-attr]


def test_no_build_tools_in_final_images(built):
    out = run(built.image("geo"), "sh", "-c", "command -v gcc cc make uv || true")
    assert out.strip() == ""


@pytest.mark.parametrize("name", ["base", "scipy", "geo"])
def test_apt_packages_are_exactly_the_locked_ones(built, name):
    """Every runtime package of every apt lock of the chain (dependencies the base image already had
    included) is installed at its locked version: the lock is the truth about the image."""
    locked: dict[str, str] = {}
    for stack in built.chain(name):
        apt = read_lock(built.root / "locks" / stack).parts.get("apt")  # a stack without apt packages has no apt lock
        locked.update(apt.packages("amd64") if apt else {})
    out = run(built.image(name), "dpkg-query", "-W", "-f", "${Package} ${Version} ${db:Status-Status}\\n", *sorted(locked))
    installed = {p: v for p, v, status in (line.split() for line in out.splitlines()) if status == "installed"}
    assert installed == locked
    requested = {e.name for e in read_lock(built.root / "locks" / "base").parts["apt"].entries if e.kind == "req"}
    assert requested == {"tini", "sudo"} and len(locked) > 20


def tampered_build(built: Built, engine, tmp_path: Path, edit, target: str = "base") -> subprocess.CompletedProcess:
    root = tmp_path / "tampered"
    shutil.copytree(built.root, root)
    edit(root)
    env = {**__import__("os").environ, "BASE_IMAGE_BASE": engine.standin, "CA_BUNDLE": engine.ca_bundle}
    return subprocess.run(
        ["docker", "buildx", "bake", f"--allow=fs.read={engine.ca_bundle}", "--progress", "plain", target],
        cwd=root, env=env, capture_output=True, text=True,
    )


def test_build_fails_when_a_python_hash_is_tampered_with(built, engine, tmp_path):
    def edit(root: Path) -> None:
        req = root / "locks/base/requirements.txt"
        text = req.read_text()
        start = text.index("\nsix==")
        end = text.index("# via", start)
        block = text[start:end]
        req.write_text(text.replace(block, __import__("re").sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, block)))

    out = tampered_build(built, engine, tmp_path, edit)
    assert out.returncode != 0
    # uv installs the lock (build-tools.txt): its refusal names the package and the hash it expected
    assert "Hash mismatch for `six==" in out.stdout + out.stderr
    assert "sha256:" + "0" * 64 in out.stdout + out.stderr


def test_build_fails_when_an_apt_hash_is_tampered_with(built, engine, tmp_path):
    def edit(root: Path) -> None:
        lock = root / "locks/base/apt.lock"
        lines = [ln if " req tini " not in ln else __import__("re").sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, ln) for ln in lock.read_text().splitlines()]
        lock.write_text("\n".join(lines) + "\n")

    out = tampered_build(built, engine, tmp_path, edit)
    assert out.returncode != 0
    assert "does not match sha256:" + "0" * 64 in out.stdout + out.stderr


def test_build_fails_when_apt_would_install_an_unlocked_package(built, engine, tmp_path):
    """git locked at its real version, but without its dependencies: apt's plan must be refused."""
    from bakegen.resolvers.apt import AptRequest, AptResolver
    from bakegen.resolvers.debian import AptSpec

    git = next(p for p in AptResolver().resolve(AptRequest("t", AptSpec("debian", "trixie"), ["amd64"], ["git"]))["amd64"] if p.name == "git")

    def edit(root: Path) -> None:
        lock = root / "locks/base/apt.lock"
        lock.write_text(lock.read_text() + f"amd64 req git {git.version} sha256:{git.sha256} {git.filename}\n")

    out = tampered_build(built, engine, tmp_path, edit)
    assert out.returncode != 0
    assert "bakegen: apt would install packages that are not in /tmp/bakegen/lock/apt.lock for amd64:" in out.stdout + out.stderr
    assert "git-man" in out.stdout + out.stderr


def test_npm_packages_are_exactly_the_locked_ones(built, tmp_path):
    cid = docker("create", built.image("geo")).strip()
    try:
        docker("cp", f"{cid}:/opt/npm/geo", str(tmp_path / "geo"))
    finally:
        docker("rm", cid, check=False)
    assert not (tmp_path / "geo" / "package-lock.json").exists()  # no lock file left in the layer
    out = subprocess.run(["npm", "ls", "--all", "--json"], cwd=tmp_path / "geo", capture_output=True, text=True, check=True)
    tree = json.loads(out.stdout)["dependencies"]
    locked = read_lock(built.root / "locks" / "geo").parts["npm"].packages()
    assert {f"node_modules/{name}": dep["version"] for name, dep in tree.items()} == locked == {"node_modules/leaflet": "1.9.4"}
    assert run(built.image("geo"), "sh", "-c", "command -v node npm || true").strip() == ""  # node stayed in the builder


def test_build_fails_when_an_npm_integrity_is_tampered_with(built, engine, tmp_path):
    import base64

    def edit(root: Path) -> None:
        lock = root / "locks/geo/package-lock.json"
        doc = json.loads(lock.read_text())
        doc["packages"]["node_modules/leaflet"]["integrity"] = "sha512-" + base64.b64encode(b"\0" * 64).decode()
        lock.write_text(json.dumps(doc, indent=2) + "\n")

    out = tampered_build(built, engine, tmp_path, edit, target="geo")
    assert out.returncode != 0
    assert "EINTEGRITY" in out.stdout + out.stderr


def test_labels_and_content_tags(built):
    from datetime import datetime

    lock = read_lock(built.root / "locks" / "base")
    info = json.loads(docker("image", "inspect", built.image("base")))[0]
    labels = info["Config"]["Labels"]
    created = datetime.fromtimestamp(lock.source_date_epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert labels["org.opencontainers.image.created"] == created  # from the lock, not the clock
    assert labels["io.bakegen.fingerprint"] == lock.fingerprint and labels["io.bakegen.stack"] == "base"
    assert "org.opencontainers.image.revision" not in labels  # REVISION unset: no empty label
    content_tag = f"{created[:10].replace('-', '')}-{lock.fingerprint.split(':')[1][:12]}"
    assert {f"bakegen-e2e/base:{t}" for t in ("latest", "python-3.13", content_tag)} <= set(info["RepoTags"])


def test_report_on_the_built_graph(built):
    out = subprocess.run([sys.executable, "-m", "bakegen", "-C", str(built.root), "report", "--registry", "bakegen-e2e", "--format", "json"],
                         capture_output=True, text=True, check=True).stdout
    reports = {r["stack"]: r for r in json.loads(out)}
    assert list(reports) == ["base", "scipy", "geo"]
    base, scipy, geo = reports["base"], reports["scipy"], reports["geo"]
    assert {"apt packages (apt.lock)", "Python virtualenv (requirements.txt)"} <= {x["installs"] for x in base["layer_sizes"]}
    assert [x["installs"] for x in scipy["layer_sizes"][base["layers"]:]] == ["Python packages (requirements.txt)", "pip constraints (the image's pins)"]
    assert scipy["added_size"] == sum(x["size"] for x in scipy["layer_sizes"][base["layers"]:]) and scipy["layer_sizes"][-2]["size"] > 0
    # npm changes less often than Python: first
    assert [x["installs"] for x in geo["layer_sizes"][scipy["layers"]:]] == ["npm packages (package-lock.json)", "Python packages (requirements.txt)", "pip constraints (the image's pins)"]
    assert all(r["size"] > 0 and r["compressed"] > 0 and r["dockerfile_lines"] > 0 for r in reports.values())


def test_a_leaf_python_change_rebuilds_only_its_python_layer(built, engine, tmp_path):
    root = tmp_path / "bumped"
    shutil.copytree(built.root, root)
    req = root / "locks" / "geo" / "requirements.txt"
    # unique each run: an earlier run's identical change would be in BuildKit's cache. The manifest
    # is made to agree (bakegen build --load reads current locks: it stamps the images with their date)
    head, rest = req.read_text().split("\n", 1)  # a line of the header: bakegen accepts it (the body is what it writes)
    req.write_text(f"{head}\n# a change to the leaf's Python lock: {uuid.uuid4()}\n{rest}")
    manifest = root / "locks" / "geo" / "lock.json"
    doc = json.loads(manifest.read_text())
    doc["python"]["files"]["linux/amd64"]["sha256"] = hashlib.sha256(req.read_bytes()).hexdigest()
    doc["checksum"] = manifest_checksum(doc)
    manifest.write_text(json.dumps(doc, indent=2) + "\n")
    args = ["build", "geo", "--base-image", f"base={engine.standin}", "--registry", "bakegen-e2e-bumped", "--load", "--progress", "plain"]
    if Path(engine.ca_bundle).is_file():
        args += ["--ca-bundle", engine.ca_bundle]
    proc = bakegen(root, *args)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ran_lines = [text for text, ran in last_bake_steps(proc.stdout + proc.stderr, "geo").items() if ran]
    assert any("pip install" in line for line in ran_lines), ran_lines
    assert not any("npm ci" in line or "apt-install.sh" in line for line in ran_lines), ran_lines
    before, after = layer_ids(built.image("geo")), layer_ids("bakegen-e2e-bumped/geo:latest")
    assert len(before) == len(after)
    assert after[:-1] == before[:-1]  # the parents' layers and geo's npm layer, byte for byte
