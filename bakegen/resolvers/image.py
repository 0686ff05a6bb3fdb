"""Resolve a base image reference to a digest through the OCI distribution API.

``python:3.13-slim`` -> the digest of its image index (or manifest), plus the
digest of the manifest for each requested platform. Handles anonymous token
auth as Docker Hub and ghcr.io use it, OCI image indexes and Docker manifest
lists. Registries on localhost are spoken to over plain http.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from bakegen.errors import BakegenError, NetworkError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json")
ACCEPT = ", ".join(INDEX_TYPES + MANIFEST_TYPES)

# An image config's User: a name or uid, with an optional group name or gid (numbers without leading zeros).
_ID = r"(?:[A-Za-z_][A-Za-z0-9_.-]{0,31}|0|[1-9][0-9]{0,9})"
IMAGE_USER = rf"{_ID}(?::{_ID})?"


def is_root(user: str) -> bool:
    """Does ``USER user`` run as root (uid 0, by name or number)?"""
    name = user.split(":")[0]
    return name == "root" or (name.isdigit() and int(name) == 0)


_REF_RE = re.compile(r"(?P<name>[a-z0-9]+(?:[._/:-][a-z0-9]+)*?)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?")


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
            raise BakegenError(f"invalid image reference {ref[:80]!r}", hint="use NAME[:TAG][@sha256:DIGEST], e.g. python:3.13-slim")
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
        host = self.registry.split(":")[0]
        insecure = {h.strip() for h in os.environ.get("BAKEGEN_INSECURE_REGISTRIES", "").split(",") if h.strip()}
        return "http" if host in ("localhost", "127.0.0.1") or self.registry in insecure else "https"


@dataclass(frozen=True)
class ImageLock:
    """A base image pinned by digest; ``platforms`` maps "linux/amd64" to that platform's manifest digest."""

    ref: str
    digest: str
    media_type: str
    platforms: dict[str, str] = field(default_factory=dict)
    user: str | None = None  # the image config's User (vendor images run as their own user)

    @property
    def pinned(self) -> str:
        """``ref@digest``: what the Dockerfile's FROM uses."""
        base = self.ref.split("@", 1)[0]
        return f"{base}@{self.digest}"


class ImageResolver:
    """Domain call: :meth:`resolve` a reference to an :class:`ImageLock`."""

    def __init__(self, timeout: float = 30.0):
        self.timeout = timeout
        self._tokens: dict[str, str] = {}

    def resolve(self, ref: str, platforms: list[str]) -> ImageLock:
        image = ImageRef.parse(ref)
        reference = image.digest or image.tag
        assert reference is not None
        body, media_type, digest = self._get_manifest(image, reference)
        if image.digest and digest != image.digest:
            raise BakegenError(f"{ref}: the registry returned digest {digest}", hint="the reference's digest does not match its content")
        per_platform: dict[str, str] = {}
        doc = json.loads(body)
        media_type = doc.get("mediaType", media_type)
        if media_type in INDEX_TYPES or "manifests" in doc:
            available: dict[str, str] = {}
            for m in doc.get("manifests", []):
                p = m.get("platform") or {}
                if p.get("os") in (None, "unknown"):
                    continue  # attestations
                key = f"{p['os']}/{p['architecture']}" + (f"/{p['variant']}" if p.get("variant") and p["architecture"] != "arm64" else "")
                available.setdefault(key, m["digest"])
            for plat in platforms:
                if plat not in available:
                    raise BakegenError(f"{ref} has no image for {plat}", hint=f"it has: {', '.join(sorted(available))}")
                per_platform[plat] = available[plat]
        else:
            for plat in platforms:
                per_platform[plat] = digest  # a single-platform image
        user = self._config_user(image, per_platform[platforms[0]] if platforms else digest)
        return ImageLock(ref=ref, digest=digest, media_type=media_type, platforms=per_platform, user=user)

    def _config_user(self, image: ImageRef, manifest_digest: str) -> str | None:
        """The User of the image config behind a (platform) manifest; None when unset."""
        body, _, got = self._get_manifest(image, manifest_digest)
        if got != manifest_digest:
            raise BakegenError(f"{image.registry}/{image.repository}: manifest {manifest_digest} has content {got}", hint="the registry served the wrong manifest")
        config = json.loads(body).get("config", {}).get("digest")
        if not config:
            return None
        status, _, blob = self._request(f"{image.scheme}://{image.api_host}/v2/{image.repository}/blobs/{config}", image)
        if status != 200 or "sha256:" + hashlib.sha256(blob).hexdigest() != config:
            raise BakegenError(f"{image.registry}/{image.repository}: cannot read the image config {config}", hint="the registry did not serve the config blob")
        user = (json.loads(blob).get("config") or {}).get("User") or None
        if user is not None and not re.fullmatch(IMAGE_USER, user):
            raise BakegenError(f"{image.registry}/{image.repository}: the image config's User {user[:40]!r} is not a user or user:group", hint="declare [user] in the stack")
        return user

    # --- HTTP -------------------------------------------------------------------

    def _get_manifest(self, image: ImageRef, reference: str) -> tuple[bytes, str, str]:
        url = f"{image.scheme}://{image.api_host}/v2/{image.repository}/manifests/{reference}"
        status, headers, body = self._request(url, image)
        if status == 404:
            sep = "@" if reference.startswith("sha256:") else ":"
            raise BakegenError(f"{image.registry}/{image.repository}{sep}{reference}: no such image", hint="check the base image name, tag and digest")
        if status != 200:
            raise BakegenError(f"{url}: the registry answered HTTP {status}", hint="check the image name and your registry credentials")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        header = headers.get("Docker-Content-Digest")
        if header and header != digest:
            raise BakegenError(f"{url}: Docker-Content-Digest {header} does not match the content ({digest})", hint="a proxy or registry altered the manifest")
        return body, (headers.get("Content-Type") or "").split(";")[0], digest

    def _request(self, url: str, image: ImageRef) -> tuple[int, dict[str, str], bytes]:
        for attempt in range(2):
            headers = {"Accept": ACCEPT, "User-Agent": "bakegen"}
            token = self._tokens.get(image.api_host + "/" + image.repository)
            if token:
                headers["Authorization"] = f"Bearer {token}"
            try:
                with self._open(urllib.request.Request(url, headers=headers)) as resp:
                    return resp.status, dict(resp.headers.items()), resp.read()
            except urllib.error.HTTPError as exc:
                challenge = exc.headers.get("WWW-Authenticate", "")
                if exc.code == 401 and attempt == 0 and challenge.lower().startswith("bearer "):
                    self._tokens[image.api_host + "/" + image.repository] = self._token(challenge, image)
                    continue
                return exc.code, dict(exc.headers.items()), exc.read()
            except (urllib.error.URLError, OSError) as exc:
                raise NetworkError(
                    f"cannot reach the registry {image.api_host}: {getattr(exc, 'reason', exc)}",
                    hint="check the network or proxy; set BASE_IMAGE_* at build time to use a mirror",
                ) from None
        raise BakegenError(f"{url}: the registry refused the token it issued", hint="log in to the registry or check the image name")

    def _token(self, challenge: str, image: ImageRef) -> str:
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", None)
        if not realm:
            raise BakegenError(f"{image.api_host}: token challenge without a realm", hint="the registry's auth is not supported")
        params.setdefault("scope", f"repository:{image.repository}:pull")
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(sorted(params.items()))
        try:
            with self._open(urllib.request.Request(url, headers={"User-Agent": "bakegen"})) as resp:
                doc = json.loads(resp.read())
        except (urllib.error.URLError, OSError, json.JSONDecodeError) as exc:
            raise NetworkError(f"cannot get a registry token from {realm}: {getattr(exc, 'reason', exc)}", hint="check the network or proxy") from None
        token = doc.get("token") or doc.get("access_token")
        if not token:
            raise BakegenError(f"{realm} returned no token", hint="the registry's auth is not supported")
        return token

    def _open(self, request: urllib.request.Request):  # type: ignore[no-untyped-def]
        cafile = os.environ.get("SSL_CERT_FILE")
        context = ssl.create_default_context(cafile=cafile if cafile and os.path.isfile(cafile) else None)
        return urllib.request.urlopen(request, timeout=self.timeout, context=context)
