"""A third-party apt repository: reprepro makes a signed repository (a GPG key made for the test) with one small
package, bakegen-hello, that Debian does not have; it is served on the address of Docker's bridge, where the build's
containers reach it.

bakegen lock checks InRelease against the pinned key and locks the package with its sha256; the image has it,
installed by apt with signed-by (the key mounted from the stack's folder). A second key is refused at lock time, and
so is a key file that does not hold the pinned fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.conftest import bakegen, docker
from e2e.test_sources import free_port, wait_for

pytestmark = pytest.mark.e2e


def gpg(home: Path, *args: str) -> str:
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--quiet", *args], check=True,
                          capture_output=True, text=True).stdout


def new_key(home: Path, who: str) -> str:
    """A new signing key in ``home``; its fingerprint."""
    home.mkdir(mode=0o700)
    gpg(home, "--passphrase", "", "--quick-gen-key", f"{who} <{who}@bakegen.invalid>", "ed25519", "sign", "never")
    rows = [line.split(":") for line in gpg(home, "--with-colons", "--list-keys").splitlines()]
    return next(row[9] for row in rows if row[0] == "fpr")


def hello_deb(folder: Path) -> Path:
    """bakegen-hello 1.0.0, architecture all: one file."""
    root = folder / "hello"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr/share/bakegen-hello").mkdir(parents=True)
    (root / "usr/share/bakegen-hello/hello.txt").write_text("hello from the acme repository\n")
    (root / "DEBIAN/control").write_text("Package: bakegen-hello\nVersion: 1.0.0\nArchitecture: all\n"
                                         "Section: misc\nPriority: optional\nMaintainer: bakegen tests <tests@bakegen.invalid>\n"
                                         "Description: a file, from a signed third-party repository\n")
    deb = folder / "bakegen-hello_1.0.0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)], check=True, capture_output=True)
    return deb


@pytest.fixture(scope="module")
def repository(engine, tmp_path_factory):
    """reprepro's repository signed with key A, over HTTP; (URL, A's fingerprint and public key, B's)."""
    root = tmp_path_factory.mktemp("apt-repository")
    a, b = new_key(root / "gpg-a", "acme"), new_key(root / "gpg-b", "other")
    repo = root / "repo"
    (repo / "conf").mkdir(parents=True)
    (repo / "conf/distributions").write_text(f"Origin: acme\nLabel: acme\nCodename: stable\nArchitectures: amd64 arm64\n"
                                             f"Components: main\nSignWith: {a}\n")
    env = {**os.environ, "GNUPGHOME": str(root / "gpg-a")}
    subprocess.run(["reprepro", "-b", str(repo), "includedeb", "stable", str(hello_deb(root))], check=True, env=env,
                   capture_output=True)
    host = docker("network", "inspect", "bridge", "--format", "{{(index .IPAM.Config 0).Gateway}}").strip()
    port = free_port(host)
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", host, "--directory", str(repo), str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(host, port)
    keys = {fpr: gpg(root / f"gpg-{n}", "--armor", "--export", fpr) for n, fpr in (("a", a), ("b", b))}
    keys["b-secret"] = gpg(root / "gpg-b", "--armor", "--export-secret-keys", b)
    yield f"http://{host}:{port}", a, b, keys, next(repo.glob("pool/main/b/bakegen-hello/*.deb"))
    server.terminate()


STACK = '''name = "acme"
description = "a package from a signed third-party apt repository"
base = "python:3.13-slim@sha256:9662417aace5ae7b8e2609cce472b72a8958e134ba372808abe9cc1a0c0125e6"

[python]
version = "3.13"
pip = false

[apt]
suite = "trixie"
packages = ["bakegen-hello"]

[[apt.repositories]]
name = "acme"
url = "{url}"
suite = "stable"
components = ["main"]
key = "acme.asc"
fingerprint = "{fingerprint}"
'''


def project(root: Path, url: str, fingerprint: str, key: str) -> Path:
    (root / "stacks" / "acme").mkdir(parents=True)
    (root / "stacks" / "acme.toml").write_text(STACK.format(url=url, fingerprint=fingerprint))
    (root / "stacks" / "acme" / "acme.asc").write_text(key)
    return root


def run(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bakegen", "-C", str(root), *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def locked(repository, tmp_path_factory):
    url, a, _, keys, _ = repository
    root = project(tmp_path_factory.mktemp("acme"), url, a, keys[a])
    for args in (["lock"], ["generate"]):
        out = run(root, *args)
        assert out.returncode == 0, out.stdout + out.stderr
    return root


def test_the_lock_pins_the_package_of_the_signed_repository(locked, repository):
    url, a, _, keys, deb = repository
    lines = [line for line in (locked / "locks/acme/apt.lock").read_text().splitlines() if " bakegen-hello " in line]
    assert lines == [f"amd64 req bakegen-hello 1.0.0 sha256:{hashlib.sha256(deb.read_bytes()).hexdigest()} "
                     "pool/main/b/bakegen-hello/bakegen-hello_1.0.0_all.deb"]
    sources = (locked / "locks/acme/apt-sources.list").read_text()
    assert f"deb [signed-by=/tmp/bakegen/keys/acme.asc] {url} stable main" in sources
    (repo,) = json.loads((locked / "locks/acme/lock.json").read_text())["apt"]["repositories"]
    assert repo["fingerprint"] == a and repo["key"] == "stacks/acme/acme.asc"
    assert repo["key_sha256"] == hashlib.sha256(keys[a].encode()).hexdigest()


def test_the_image_has_the_package_installed_by_apt(locked, engine):
    out = bakegen(locked, "build", "--load", "--registry", "bakegen-apt-repository", "--base-image", f"acme={engine.standin}",
                  "--ca-bundle", engine.ca_bundle, "--progress", "plain")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    image = "bakegen-apt-repository/acme:latest"
    shown = docker("run", "--rm", "--entrypoint", "sh", image, "-c",
                   "dpkg-query -W -f '${Version}' bakegen-hello; echo; cat /usr/share/bakegen-hello/hello.txt; ls /tmp/bakegen 2>&1 || true")
    assert shown.splitlines()[:2] == ["1.0.0", "hello from the acme repository"], shown
    assert "No such file" in shown  # the key and the lock were mounted, not copied


def test_a_second_key_is_refused_at_lock_time(repository, tmp_path):
    url, _, b, keys, _ = repository
    root = project(tmp_path, url, b, keys[b])
    out = run(root, "lock")
    assert out.returncode != 0
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"InRelease is not signed by the pinned key {b}" in errors[0], out.stderr
    assert "Traceback" not in out.stderr and not (root / "locks").exists()


def test_a_key_file_without_the_pinned_fingerprint_is_refused(repository, tmp_path):
    url, a, b, keys, _ = repository
    root = project(tmp_path, url, b, keys[a])
    out = run(root, "lock")
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode != 0 and len(errors) == 1 and f"stacks/acme/acme.asc holds the keys ['{a}'], not just the pinned {b}" in errors[0], out.stderr


def test_a_key_file_that_hides_a_second_key_is_refused(repository, tmp_path):
    """The pinned public key and another key's secret key: apt's verifier (sqv) would trust both."""
    url, a, _, keys, _ = repository
    root = project(tmp_path, url, a, keys[a] + keys["b-secret"])
    out = run(root, "lock")
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode != 0 and len(errors) == 1 and "stacks/acme/acme.asc is not one public key" in errors[0], out.stderr
    assert "secret key" in errors[0]
