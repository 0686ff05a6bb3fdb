"""The OCI distribution client against a small local HTTP registry with token auth."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bakegen.errors import BakegenError, NetworkError
from bakegen.oci import ImageRef
from bakegen.resolvers.image import ImageResolver


def sha(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "config": {"User": "jupyter", "Env": ["PATH=/opt/conda/bin:/usr/bin"]}}).encode()
AMD64 = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {"digest": sha(CONFIG)}, "layers": []}).encode()
BLOBS = {sha(AMD64): AMD64, sha(CONFIG): CONFIG}
INDEX = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [
        {"digest": sha(AMD64), "platform": {"os": "linux", "architecture": "amd64"}},
        {"digest": "sha256:" + "a" * 64, "platform": {"os": "unknown", "architecture": "unknown"}},
        {"digest": "sha256:" + "2" * 64, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"digest": "sha256:" + "3" * 64, "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
    ],
}).encode()
INDEX_DIGEST = sha(INDEX)


class Registry(BaseHTTPRequestHandler):
    token_requests: list[str] = []
    lie_about_digest = False

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/token?"):
            Registry.token_requests.append(self.path)
            body = json.dumps({"token": "secret-token"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.headers.get("Authorization") != "Bearer secret-token":
            self.send_response(401)
            realm = f"http://127.0.0.1:{self.server.server_port}/token"
            self.send_header("WWW-Authenticate", f'Bearer realm="{realm}",service="test-registry",scope="repository:library/python:pull"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        name = self.path.rsplit("/", 1)[-1]
        if ("/manifests/" in self.path or "/blobs/" in self.path) and name in BLOBS:
            self.send_response(200)
            self.send_header("Content-Length", str(len(BLOBS[name])))
            self.end_headers()
            self.wfile.write(BLOBS[name])
            return
        if self.path == "/v2/library/python/manifests/3.13-slim":
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.index.v1+json")
            self.send_header("Docker-Content-Digest", "sha256:" + "f" * 64 if Registry.lie_about_digest else INDEX_DIGEST)
            self.send_header("Content-Length", str(len(INDEX)))
            self.end_headers()
            self.wfile.write(INDEX)
            return
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def server(monkeypatch):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    Registry.token_requests = []
    Registry.lie_about_digest = False
    yield f"127.0.0.1:{srv.server_port}"
    srv.shutdown()


def test_token_auth_and_index(server, monkeypatch):
    monkeypatch.setenv("BAKEGEN_INSECURE_REGISTRIES", server)
    lock = ImageResolver().resolve(f"{server}/library/python:3.13-slim", ["linux/amd64", "linux/arm64"])
    assert lock.digest == INDEX_DIGEST
    assert lock.platforms == {"linux/amd64": sha(AMD64), "linux/arm64": "sha256:" + "2" * 64}
    assert lock.user == "jupyter"  # from the image config of the first platform
    assert lock.pinned == f"{server}/library/python:3.13-slim@{INDEX_DIGEST}"
    assert len(Registry.token_requests) == 1
    assert "scope=repository%3Alibrary%2Fpython%3Apull" in Registry.token_requests[0]
    assert "service=test-registry" in Registry.token_requests[0]


def test_missing_platform(server, monkeypatch):
    monkeypatch.setenv("BAKEGEN_INSECURE_REGISTRIES", server)
    with pytest.raises(BakegenError, match="has no image for linux/s390x") as exc:
        ImageResolver().resolve(f"{server}/library/python:3.13-slim", ["linux/s390x"])
    assert exc.value.hint == "it has: linux/amd64, linux/arm/v7, linux/arm64"


def test_unknown_tag(server, monkeypatch):
    monkeypatch.setenv("BAKEGEN_INSECURE_REGISTRIES", server)
    with pytest.raises(BakegenError, match="no such image"):
        ImageResolver().resolve(f"{server}/library/python:nope", ["linux/amd64"])


def test_digest_header_must_match_content(server, monkeypatch):
    monkeypatch.setenv("BAKEGEN_INSECURE_REGISTRIES", server)
    Registry.lie_about_digest = True
    with pytest.raises(BakegenError, match="does not match the content"):
        ImageResolver().resolve(f"{server}/library/python:3.13-slim", ["linux/amd64"])


def test_unreachable_registry():
    with pytest.raises(NetworkError, match="cannot reach the registry localhost:9") as exc:
        ImageResolver(timeout=5).resolve("localhost:9/python:3", ["linux/amd64"])
    assert "bakegen lock --registry-mirror HOST" in exc.value.hint  # a way forward for a team behind a mirror


@pytest.mark.parametrize("mirror", ["{server}", "{server}/"])
def test_a_mirror_serves_docker_hub_s_images_under_their_own_name(server, monkeypatch, mirror):
    """python:3.13-slim (Docker Hub's library/python) through a mirror: the lock keeps the name, and the digest is
    what the mirror serves, which is Docker Hub's (a digest names the content)."""
    from bakegen.arguments import registry_mirrors

    monkeypatch.setenv("BAKEGEN_INSECURE_REGISTRIES", server)
    lock = ImageResolver(mirrors=registry_mirrors([mirror.format(server=server)])).resolve("python:3.13-slim", ["linux/amd64"])
    assert (lock.ref, lock.digest, lock.pinned) == ("python:3.13-slim", INDEX_DIGEST, f"python:3.13-slim@{INDEX_DIGEST}")
    assert lock.user == "jupyter"


def test_a_mirror_with_a_path_prefixes_the_repository(server, monkeypatch):
    from bakegen.arguments import registry_mirrors

    monkeypatch.setenv("BAKEGEN_INSECURE_REGISTRIES", server)
    with pytest.raises(BakegenError, match=f"{server}/hub/library/python:3.13-slim: no such image"):
        ImageResolver(mirrors=registry_mirrors([f"docker.io={server}/hub"])).resolve("python:3.13-slim", ["linux/amd64"])
    other = ImageResolver(mirrors=registry_mirrors([f"ghcr.io={server}"]))
    with pytest.raises(NetworkError):  # only ghcr.io's images go through that mirror: Docker Hub is not reachable here
        other.registry.timeout = 2
        other.resolve("localhost:9/python:3", ["linux/amd64"])


@pytest.mark.parametrize("value", ["", "=mirror.test", "docker.io=", "Mirror.Test", "mirror.test,x=y", "a b", "mirror.test\nx"])
def test_a_registry_mirror_is_checked(value):
    from bakegen.arguments import registry_mirrors

    with pytest.raises(BakegenError, match="--registry-mirror"):
        registry_mirrors([value])


@pytest.mark.parametrize(
    "ref,expected",
    [
        ("python:3.13-slim", ("docker.io", "library/python", "3.13-slim", None)),
        ("jupyter/base-notebook", ("docker.io", "jupyter/base-notebook", "latest", None)),
        ("localhost:5000/a/b:1", ("localhost:5000", "a/b", "1", None)),
        ("gcr.io/deeplearning-platform-release/base-cpu.py310:m120", ("gcr.io", "deeplearning-platform-release/base-cpu.py310", "m120", None)),
        ("python:3.13@sha256:" + "e" * 64, ("docker.io", "library/python", "3.13", "sha256:" + "e" * 64)),
    ],
)
def test_parse_reference(ref, expected):
    r = ImageRef.parse(ref)
    assert (r.registry, r.repository, r.tag, r.digest) == expected


def test_invalid_reference():
    with pytest.raises(BakegenError, match="invalid image reference"):
        ImageRef.parse("Python:3")
