"""Resolve a base image reference to a digest through the OCI distribution API.

``python:3.13-slim`` -> the digest of its image index (or manifest), plus the
digest of the manifest for each requested platform, and the image config's
User. It reads OCI image indexes and Docker manifest lists through
:class:`bakegen.oci.RegistryClient` (anonymous token auth as Docker Hub and
ghcr.io use it; plain http for registries on localhost).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace

from bakegen.errors import BakegenError
from bakegen.oci import INDEX_TYPES, ImageRef, RegistryClient

# An image config's User: a name or uid, with an optional group name or gid (numbers without leading
# zeros).
_ID = r"(?:[A-Za-z_][A-Za-z0-9_.-]{0,31}|0|[1-9][0-9]{0,9})"
IMAGE_USER = rf"{_ID}(?::{_ID})?"


def is_root(user: str) -> bool:
    """Does ``USER user`` run as root (uid 0, by name or number)?"""
    name = user.split(":")[0]
    return name == "root" or (name.isdigit() and int(name) == 0)


@dataclass(frozen=True)
class ImageLock:
    """A base image pinned by digest; ``platforms`` maps "linux/amd64" to that platform's manifest
    digest."""

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
    """Domain call: :meth:`resolve` a reference to an :class:`ImageLock`. ``mirrors`` maps a
    registry (``docker.io``) to a mirror that serves the same repositories
    (``mirror.example.com`` or ``harbor.example.com/dockerhub``): the lock keeps the image's own
    name, with the digest the mirror serves (a digest names the content, wherever it is)."""

    def __init__(self, timeout: float = 30.0, mirrors: dict[str, str] | None = None):
        self.timeout = timeout
        self.registry = RegistryClient(timeout)
        self.mirrors = dict(mirrors or {})

    def resolve(self, ref: str, platforms: list[str]) -> ImageLock:
        image = self._through_mirror(ImageRef.parse(ref))
        reference = image.digest or image.tag
        assert reference is not None
        body, media_type, digest = self.registry.manifest(image, reference)
        if image.digest and digest != image.digest:
            raise BakegenError(
                f"{ref}: the registry returned digest {digest}",
                hint="the reference's digest does not match its content",
            )
        per_platform: dict[str, str] = {}
        doc = json.loads(body)
        media_type = doc.get("mediaType", media_type)
        if media_type in INDEX_TYPES or "manifests" in doc:
            available: dict[str, str] = {}
            for m in doc.get("manifests", []):
                p = m.get("platform") or {}
                if p.get("os") in (None, "unknown"):
                    continue  # attestations
                key = f"{p['os']}/{p['architecture']}" + (
                    f"/{p['variant']}" if p.get("variant") and p["architecture"] != "arm64" else ""
                )
                available.setdefault(key, m["digest"])
            for plat in platforms:
                if plat not in available:
                    raise BakegenError(
                        f"{ref} has no image for {plat}",
                        hint=f"it has: {', '.join(sorted(available))}",
                    )
                per_platform[plat] = available[plat]
        else:
            for plat in platforms:
                per_platform[plat] = digest  # a single-platform image
        user = self._config_user(image, per_platform[platforms[0]] if platforms else digest)
        return ImageLock(
            ref=ref, digest=digest, media_type=media_type, platforms=per_platform, user=user
        )

    def _through_mirror(self, image: ImageRef) -> ImageRef:
        mirror = self.mirrors.get(image.registry)
        if mirror is None:
            return image
        host, _, prefix = mirror.partition("/")
        repository = f"{prefix}/{image.repository}" if prefix else image.repository
        return replace(image, registry=host, repository=repository)

    def _config_user(self, image: ImageRef, manifest_digest: str) -> str | None:
        """The User of the image config behind a (platform) manifest; None when unset."""
        body, _, got = self.registry.manifest(image, manifest_digest)
        if got != manifest_digest:
            raise BakegenError(
                f"{image.registry}/{image.repository}: manifest {manifest_digest} "
                f"has content {got}",
                hint="the registry served the wrong manifest",
            )
        config = json.loads(body).get("config", {}).get("digest")
        if not config:
            return None
        status, _, blob = self.registry.request(
            f"{image.scheme}://{image.api_host}/v2/{image.repository}/blobs/{config}", image
        )
        if status != 200 or "sha256:" + hashlib.sha256(blob).hexdigest() != config:
            raise BakegenError(
                f"{image.registry}/{image.repository}: cannot read the image config {config}",
                hint="the registry did not serve the config blob",
            )
        user = (json.loads(blob).get("config") or {}).get("User") or None
        if user is not None and not re.fullmatch(IMAGE_USER, user):
            raise BakegenError(
                f"{image.registry}/{image.repository}: the image config's User {user[:40]!r} "
                "is not a user or user:group",
                hint="declare [user] in the stack",
            )
        return user
