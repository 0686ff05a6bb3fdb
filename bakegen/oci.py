"""OCI images, layouts and registries: the one place bakegen reads or writes them.

* references: :class:`ImageRef` (``NAME[:TAG][@DIGEST]``), :func:`tag_of`, and which
  registries are plain http (:func:`insecure`);
* media types of manifests and indexes (OCI's and Docker's);
* OCI layouts (a folder, or a tarball of one): their index, manifests, configs and
  blobs (:func:`read_oci_platforms`, :func:`layout_blobs`, :func:`put_blob`);
* registries: what a push would upload (:func:`missing_bytes`, the distribution API),
  and, through skopeo (which does the registry's login, proxy and TLS): pushing a layout
  by digest (:func:`push_by_digest`), an index of images already pushed
  (:func:`push_index`), moving a tag (:func:`tag_image`), and reading a manifest
  (:func:`read_manifest`, :func:`registry_digest`). The base-image resolver
  (:mod:`bakegen.resolvers.image`) speaks the distribution API with these references and
  media types.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bakegen import proc
from bakegen.errors import BakegenError, CommandError, NetworkError, one_line
from bakegen.net import tls_context

# --- references ----------------------------------------------------------------------

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_REF_RE = re.compile(
    r"(?P<name>[a-z0-9]+(?:[._/:-][a-z0-9]+)*?)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?"
)


@dataclass(frozen=True)
class ImageRef:
    registry: str  # as written by users: docker.io, ghcr.io, localhost:5000
    repository: str  # library/python
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, ref: str) -> ImageRef:
        m = _REF_RE.fullmatch(ref) if len(ref) <= 512 else None
        if not m:
            raise BakegenError(
                f"invalid image reference {ref[:80]!r}",
                hint="use NAME[:TAG][@sha256:DIGEST], e.g. python:3.13-slim",
            )
        name, tag, digest = m.group("name"), m.group("tag"), m.group("digest")
        first, sep, rest = name.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            registry, repository = first, rest
        else:
            registry, repository = DOCKER_HUB, name
        if registry == DOCKER_HUB and "/" not in repository:
            repository = f"library/{repository}"
        if tag is None and digest is None:
            tag = "latest"
        return cls(registry, repository, tag, digest)

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def scheme(self) -> str:
        return "http" if insecure(self.registry) else "https"


def insecure(registry: str) -> bool:
    """A plain-http registry: localhost, or one named in BAKEGEN_INSECURE_REGISTRIES."""
    host = registry.split("/")[0]
    listed = {
        h.strip() for h in os.environ.get("BAKEGEN_INSECURE_REGISTRIES", "").split(",") if h.strip()
    }
    return host.split(":")[0] in ("localhost", "127.0.0.1") or host in listed


def tag_of(name: str) -> str:
    """``host:5000/repo:tag`` -> ``tag`` (a colon after the last slash)."""
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        raise BakegenError(
            f"the image name {name!r} has no tag",
            hint="bakegen names every image REGISTRY/STACK:TAG",
        )
    return last.rsplit(":", 1)[1]


DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

# A registry image with its tag (verify-repro --against): host/repository:tag
REFERENCE = re.compile(
    r"[a-z0-9.-]+(?::[0-9]{1,5})?(?:/[a-z0-9._-]+)+:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
)


# --- media types ---------------------------------------------------------------------

INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
ACCEPT = ", ".join(INDEX_TYPES + MANIFEST_TYPES)
INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"


# --- layouts -------------------------------------------------------------------------


@dataclass
class OciImage:
    manifest_digest: str
    config: dict
    layers: list[str]  # blob digests, in order
    path: Path


def read_oci(path: Path) -> OciImage:
    """The (first) image of an OCI tarball."""
    return next(iter(read_oci_platforms(path)[1].values()))


def open_blob(path: Path, digest: str) -> AbstractContextManager[IO[bytes]]:
    """A blob of an OCI layout (a folder, or a tarball of one), closed with the layout's tarball."""
    return open_member(path, f"blobs/sha256/{digest.split(':')[1]}")


@contextmanager
def open_member(path: Path, name: str) -> Iterator[IO[bytes]]:
    if path.is_dir():
        with (path / name).open("rb") as fh:
            yield fh
        return
    with tarfile.open(path) as tar:
        member = tar.extractfile(name)
        if member is None:
            raise BakegenError(
                f"{path}: {name} is not a file", hint="the OCI layout is damaged; build it again"
            )
        yield member


def read_oci_platforms(path: Path) -> tuple[str, dict[str, OciImage]]:
    """The digest the layout's index names (an image index or one manifest), and its image per
    platform."""

    def blob(d: str) -> bytes:
        with open_blob(path, d) as fh:
            return fh.read()

    with open_member(path, "index.json") as fh:
        index = json.load(fh)
    top = index["manifests"][0]["digest"]
    doc = json.loads(blob(top))
    entries = (
        [
            (m["digest"], json.loads(blob(m["digest"])))
            for m in doc["manifests"]
            if m.get("platform", {}).get("os") != "unknown"
        ]
        if "manifests" in doc
        else [(top, doc)]
    )
    images = {}
    for digest, manifest in entries:
        config = json.loads(blob(manifest["config"]["digest"]))
        platform = "/".join(
            p for p in (config.get("os"), config.get("architecture"), config.get("variant")) if p
        )
        images[platform] = OciImage(
            digest, config, [layer["digest"] for layer in manifest["layers"]], path
        )
    return top, images


def layout_digest(layout: Path) -> str:
    """The digest of the image (or image index) an OCI layout holds."""
    return str(json.loads((layout / "index.json").read_text())["manifests"][0]["digest"])


def layout_blobs(layout: Path) -> dict[str, int]:
    """The config and layer blobs (digest -> compressed size) of every image in an OCI layout."""

    def doc(digest: str) -> Any:
        return json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_text())

    blobs: dict[str, int] = {}
    todo = [m["digest"] for m in json.loads((layout / "index.json").read_text())["manifests"]]
    while todo:
        manifest = doc(todo.pop())
        todo += [m["digest"] for m in manifest.get("manifests", [])]
        for entry in [manifest["config"], *manifest["layers"]] if "config" in manifest else []:
            blobs[entry["digest"]] = entry["size"]
    return blobs


def put_blob(layout: Path, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
    return digest


def get_json(layout: Path, digest: str) -> Any:
    """A JSON blob of a layout folder (a manifest, an index, a config)."""
    return json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes())


# --- registries ----------------------------------------------------------------------


class RegistryClient:
    """The OCI distribution API, read-only: manifests and blobs, with anonymous bearer tokens as
    Docker Hub and ghcr.io issue them, over https (plain http for :func:`insecure` registries)."""

    def __init__(self, timeout: float = 30.0):
        self.timeout = timeout
        self._tokens: dict[str, str] = {}

    def manifest(self, image: ImageRef, reference: str) -> tuple[bytes, str, str]:
        """A manifest or index: its bytes, media type and digest (checked against the registry's
        header)."""
        found = self.find_manifest(image, reference)
        if found is None:
            sep = "@" if reference.startswith("sha256:") else ":"
            raise BakegenError(
                f"{image.registry}/{image.repository}{sep}{reference}: no such image",
                hint="check the base image name, tag and digest",
            )
        return found

    def find_manifest(self, image: ImageRef, reference: str) -> tuple[bytes, str, str] | None:
        """:meth:`manifest`, or None when the registry has none (HTTP 404). A manifest asked for by
        digest must have that digest."""
        url = f"{image.scheme}://{image.api_host}/v2/{image.repository}/manifests/{reference}"
        status, headers, body = self.request(url, image)
        if status == 404:
            return None
        if status != 200:
            raise BakegenError(
                f"{url}: the registry answered HTTP {status}",
                hint="check the image name and your registry credentials",
            )
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        header = headers.get("Docker-Content-Digest")
        if header and header != digest:
            raise BakegenError(
                f"{url}: Docker-Content-Digest {header} does not match the content ({digest})",
                hint="a proxy or registry altered the manifest",
            )
        if reference.startswith("sha256:") and reference != digest:
            raise BakegenError(f"{url}: the registry served a manifest of digest {digest}",
                               hint="a proxy or registry altered the manifest")
        return body, (headers.get("Content-Type") or "").split(";")[0], digest

    def request(self, url: str, image: ImageRef) -> tuple[int, dict[str, str], bytes]:
        """GET with the registry's token when it asks for one: (status, headers, body)."""
        try:
            with self._open_authorized(url, image) as resp:
                return resp.status, dict(resp.headers.items()), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers.items()), exc.read()

    @contextmanager
    def stream(self, url: str, image: ImageRef) -> Iterator[IO[bytes]]:
        """A blob, read as it arrives (a layer can be large)."""
        try:
            resp = self._open_authorized(url, image)
        except urllib.error.HTTPError as exc:
            raise BakegenError(f"{url}: the registry answered HTTP {exc.code}",
                               hint="check the image name and your registry credentials") from None
        with resp:
            yield resp

    def _open_authorized(self, url: str, image: ImageRef) -> Any:
        """The open response; a 401 with a bearer challenge is answered with a token (anonymous,
        or from the login in Docker's config.json) and the request made again."""
        for attempt in range(2):
            headers = {"Accept": ACCEPT, "User-Agent": "bakegen"}
            request = urllib.request.Request(url, headers=headers)
            token = self._tokens.get(image.api_host + "/" + image.repository)
            if token:  # never sent on to where a redirect points (a blob store)
                request.add_unredirected_header("Authorization", token)
            try:
                return self._open(request)
            except urllib.error.HTTPError as exc:
                challenge = exc.headers.get("WWW-Authenticate", "")
                if exc.code == 401 and attempt == 0 and challenge.lower().startswith("bearer "):
                    token = f"Bearer {self._token(challenge, image)}"
                    self._tokens[image.api_host + "/" + image.repository] = token
                    continue
                if exc.code == 401 and attempt == 0 and challenge.lower().startswith("basic "):
                    # a login never crosses the network in the clear (an http registry)
                    login = docker_login(image.api_host) if image.scheme == "https" else None
                    if login:
                        self._tokens[image.api_host + "/" + image.repository] = f"Basic {login}"
                        continue
                raise
            except (urllib.error.URLError, OSError) as exc:
                raise NetworkError(
                    f"cannot reach the registry {image.api_host}: {getattr(exc, 'reason', exc)}",
                    hint="check the network or proxy; behind a registry mirror: bakegen lock "
                    "--registry-mirror HOST (README: \"Behind a registry mirror\")",
                ) from None
        raise BakegenError(
            f"{url}: the registry refused the token it issued",
            hint="log in to the registry or check the image name",
        )

    def _token(self, challenge: str, image: ImageRef) -> str:
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", None)
        if not realm:
            raise BakegenError(
                f"{image.api_host}: token challenge without a realm",
                hint="the registry's auth is not supported",
            )
        params.setdefault("scope", f"repository:{image.repository}:pull")
        scheme = urllib.parse.urlsplit(realm).scheme
        if scheme != "https" and not (scheme == "http" and image.scheme == "http"):
            raise BakegenError(
                f"{image.api_host}: token realm {one_line(realm, 120)} is not https",
                hint="bakegen asks a registry's token service over https only",
            )
        url = (
            realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(sorted(params.items()))
        )
        request = urllib.request.Request(url, headers={"User-Agent": "bakegen"})
        login = docker_login(image.api_host) if scheme == "https" else None
        if login:  # a private repository: the token is issued for the login (docker login's)
            request.add_unredirected_header("Authorization", f"Basic {login}")
        try:
            with self._open(request) as resp:
                doc = json.loads(resp.read())
        except (urllib.error.URLError, OSError, json.JSONDecodeError) as exc:
            raise NetworkError(
                f"cannot get a registry token from {realm}: {getattr(exc, 'reason', exc)}",
                hint="check the network or proxy",
            ) from None
        token = doc.get("token") or doc.get("access_token")
        if not token:
            raise BakegenError(
                f"{realm} returned no token", hint="the registry's auth is not supported"
            )
        return token

    def _open(self, request: urllib.request.Request):  # type: ignore[no-untyped-def]
        return urllib.request.urlopen(request, timeout=self.timeout, context=tls_context())


def docker_login(host: str) -> str | None:
    """The base64 ``user:password`` that ``docker login HOST`` stored in Docker's config.json
    (``auths``; a credential helper's logins are not read); None without one."""
    folder = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    try:
        auths = json.loads(Path(folder, "config.json").read_text()).get("auths", {})
        keys = [host, f"https://{host}"]
        keys += ["https://index.docker.io/v1/", "docker.io"] if host == DOCKER_HUB_API else []
        entry: dict[str, Any] = next((auths[k] for k in keys if isinstance(auths.get(k), dict)), {})
        login = entry.get("auth")
    except (OSError, ValueError, AttributeError):
        return None
    ok = isinstance(login, str) and re.fullmatch(r"[A-Za-z0-9+/=]{4,4096}", login)
    return login if ok else None


def missing_bytes(layout: Path, name: str) -> int:
    """The compressed bytes of the layout's blobs that the registry of ``name`` does not hold yet
    (what a push uploads, manifests aside); -1 when the registry does not say (it wants a login)."""
    repo = name[: -len(tag_of(name)) - 1]
    host, _, path = repo.partition("/")
    scheme = "http" if insecure(repo) else "https"
    total = 0
    for digest, size in sorted(layout_blobs(layout).items()):
        request = urllib.request.Request(
            f"{scheme}://{host}/v2/{path}/blobs/{digest}", method="HEAD"
        )
        try:
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                request, timeout=30
            ):
                continue
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                return -1
        except (OSError, ValueError, http.client.HTTPException):
            return -1
        total += size
    return total


def repository_of(name: str) -> str:
    """``host:5000/repo:tag`` -> ``host:5000/repo``."""
    return name[: -len(tag_of(name)) - 1]


def _skopeo_tls(reference: str, *flags: str) -> list[str]:
    return [f"{flag}=false" for flag in flags] if insecure(reference) else []


def require_skopeo(what: str) -> None:
    if shutil.which("skopeo") is None:
        raise BakegenError(
            f"{what} needs skopeo, which reads and writes the registry with bakegen's digests",
            hint="install it (apt-get install skopeo; GitHub's ubuntu runners have it)",
        )


def push_by_digest(layout: Path, name: str) -> tuple[str, int]:
    """skopeo copy of the layout's image (index) to the repository of ``name``, by digest only: no
    tag moves. The digest, and the bytes of the blobs the registry lacked."""
    repo = repository_of(name)
    digest = layout_digest(layout)
    missing = missing_bytes(layout, name)
    proc.run(
        [
            "skopeo", "copy", "--quiet", "--all", "--preserve-digests",
            *_skopeo_tls(repo, "--dest-tls-verify"),
            f"oci:{layout}:{tag_of(name)}", f"docker://{repo}@{digest}",
        ]
    )
    return digest, missing


def tag_image(repository: str, digest: str, name: str) -> None:
    """Point the tag ``name`` at ``repository@digest``, which the registry holds: only the manifest
    moves (skopeo finds every blob there already)."""
    proc.run(
        [
            "skopeo", "copy", "--quiet", "--all", "--preserve-digests",
            *_skopeo_tls(repository, "--src-tls-verify", "--dest-tls-verify"),
            f"docker://{repository}@{digest}", f"docker://{name}",
        ]
    )


def push_index(repository: str, data: bytes) -> str:
    """Push an image index whose images the repository holds already (skopeo --multi-arch
    index-only, from a one-index OCI layout); its digest."""
    with tempfile.TemporaryDirectory(prefix="bakegen-index-") as work:
        layout = Path(work)
        (layout / "blobs" / "sha256").mkdir(parents=True)
        (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        digest = put_blob(layout, data)
        entry = {"mediaType": INDEX, "digest": digest, "size": len(data),
                 "annotations": {"org.opencontainers.image.ref.name": "index"}}
        (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
        proc.run(
            [
                "skopeo", "copy", "--quiet", "--multi-arch", "index-only", "--preserve-digests",
                *_skopeo_tls(repository, "--dest-tls-verify"),
                f"oci:{layout}:index", f"docker://{repository}@{digest}",
            ]
        )
    return digest


def read_manifest(reference: str) -> tuple[bytes, str] | None:
    """The manifest or index a registry serves for ``repository:tag`` or ``repository@digest``
    (skopeo does the login, proxy and TLS as for a push), and its sha256; None when the registry
    has no such manifest."""
    tls = _skopeo_tls(reference, "--tls-verify")
    try:
        raw = proc.run(["skopeo", "inspect", "--raw", *tls, f"docker://{reference}"],
                       binary=True).data
    except CommandError as exc:
        # the distribution API's codes for an unknown manifest or repository (not skopeo's own
        # failures, such as a missing skopeo: "command not found")
        if exc.returncode != 127 and re.search(r"manifest unknown|name unknown|status ?code:? 404",
                                               exc.output, re.I):
            return None
        raise
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    if "@" in reference and not reference.endswith("@" + digest):
        raise BakegenError(
            f"{reference}: the registry served a manifest whose digest is {digest}",
            hint="a proxy or registry altered the manifest",
        )
    return raw, digest


def registry_digest(reference: str) -> str:
    """The digest a registry serves for ``host/repository:tag`` (verify-repro --against)."""
    if not REFERENCE.fullmatch(reference):
        raise BakegenError(
            f"--against {one_line(repr(reference), 120)} is not REGISTRY/REPOSITORY:TAG",
            hint="for example --against ghcr.io/acme/geo:latest",
        )
    require_skopeo("verify-repro --against")
    served = read_manifest(reference)
    if served is None:
        raise BakegenError(f"{reference}: no such image in the registry",
                           hint="check the registry, repository and tag")
    return served[1]
