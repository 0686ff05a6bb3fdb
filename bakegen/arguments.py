"""Command-line values that reach docker, BuildKit's comma-separated attributes, HCL or YAML.

Each is checked with a full match before any subprocess starts, so that
``--cache 'ref,mode=min,type=local,dest=...'`` cannot add keys to an attribute
list and ``--base-image 'base=python:3.13 AS evil'`` cannot reach a Dockerfile.
The CI job that runs bakegen may hold a registry token: a value that does not
have its shape is one ``error:`` line, and nothing runs.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from bakegen.ecosystem import BuildSecret
from bakegen.errors import BakegenError, one_line
from bakegen.oci import REFERENCE, ImageRef  # REFERENCE: host/repository:tag (--against)

REGISTRY = re.compile(
    r"[a-z0-9]+(?:[.-][a-z0-9]+)*(?::[0-9]{1,5})?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
)
TAG_PREFIX = re.compile(r"[A-Za-z0-9_.-]{0,64}")
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# A path that goes into a BuildKit attribute list (id=cacert,src=PATH): no comma, quote or control
# character
PATH_IN_ATTRIBUTES = re.compile(r"[^,\"'\x00-\x1f\x7f]{1,1024}")


def shown(value: str) -> str:
    return one_line(repr(value), 80)


def registry(value: str, flag: str = "--registry") -> str:
    if value and not REGISTRY.fullmatch(value.rstrip("/")):
        raise BakegenError(
            f"{flag} {shown(value)} is not a registry host with an optional path",
            hint=f"for example {flag} ghcr.io/acme (lower case)",
        )
    return value


def registry_mirrors(values: list[str]) -> dict[str, str]:
    """--registry-mirror [REGISTRY=]HOST[/PATH] (default REGISTRY: docker.io), each checked."""
    mirrors = {}
    for value in values:
        source, sep, mirror = value.rpartition("=")
        source, mirror = source if sep else "docker.io", mirror.rstrip("/")
        for part, what in ((source, "registry"), (mirror, "mirror")):
            if not part or not REGISTRY.fullmatch(part):
                raise BakegenError(
                    f"--registry-mirror {shown(value)}: {shown(part)} is not a {what} host",
                    hint="for example --registry-mirror mirror.example.com (for Docker Hub) or "
                    "--registry-mirror ghcr.io=ghcr-mirror.example.com/ghcr",
                )
        mirrors[source] = mirror
    return mirrors


def _checked(pattern: re.Pattern[str], value: str, flag: str, what: str, hint: str) -> str:
    if not pattern.fullmatch(value):
        raise BakegenError(f"{flag} {shown(value)} is not {what}", hint=hint)
    return value


def index_url(value: str) -> str:
    """--index-url: an http(s) URL (the Python index, and its JSON API for bakegen audit)."""
    if not re.fullmatch(r"https?://[^\s/]+(?:/\S*)?", value):
        raise BakegenError(f"--index-url {shown(value)} is not an http(s) URL",
                           hint="for example --index-url https://pypi.org/simple")
    return value


def tag_prefix(value: str) -> str:
    return _checked(TAG_PREFIX, value, "--tag-prefix", "a tag prefix",
                    "letters, digits, '_', '.' and '-', for example pr-42-")


def tag(value: str) -> str:
    return _checked(TAG, value, "--tag", "an image tag",
                    "letters, digits, '_', '.' and '-', at most 128, for example latest")


BUILDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def builder(value: str) -> str:
    """--builder NAME: a buildx builder or docker context (it goes on docker's command line)."""
    return _checked(BUILDER, value, "--builder", "a builder name",
                    "the name docker buildx ls shows, e.g. --builder remote-b")


def cache_repository(value: str | None) -> str | None:
    """--cache REPO: a registry repository (BuildKit reads and writes REPO:<stack>)."""
    if value is not None and ("/" not in value or not REGISTRY.fullmatch(value)):
        raise BakegenError(
            f"--cache {shown(value)} is not a registry repository",
            hint="for example --cache ghcr.io/acme/bakegen-cache (lower case, no tag)",
        )
    return value


def ca_bundle(value: str | None) -> str | None:
    """--ca-bundle PEM: an existing regular file, whose path can go into BuildKit's secret attribute
    as it is."""
    return secret_file(value, "--ca-bundle", "CA bundle",
                       "pass the path of a PEM file, e.g. /etc/ssl/certs/ca-certificates.crt")


def build_secrets(args: argparse.Namespace, declared: list[BuildSecret]) -> dict[str, str]:
    """--ID FILE of each ecosystem's build secret (or BAKEGEN_ID): its variable -> the file."""
    found = {}
    for secret in declared:
        value = getattr(args, secret.id, None) or os.environ.get(secret.variable) or None
        path = secret_file(value, f"--{secret.id}", secret.what, secret.hint)
        if path:
            found[secret.variable] = path
    return found


def secret_file(value: str | None, flag: str, what: str, hint: str) -> str | None:
    """An existing regular file, whose path can go into BuildKit's secret attribute as it is."""
    if not value:
        return None
    path = Path(value).resolve()
    if not PATH_IN_ATTRIBUTES.fullmatch(str(path)):
        raise BakegenError(
            f"{flag} {shown(value)}: a path with a comma, a quote or a control character",
            hint="copy it to a plain path, e.g. /tmp/secret",
        )
    if not path.is_file():
        raise BakegenError(f"{what} {value} not found", hint=hint)
    return str(path)


def base_image(item: str) -> tuple[str, str]:
    """--base-image STACK=IMAGE: the image a valid reference (it becomes a FROM)."""
    stack, sep, ref = item.partition("=")
    if not sep or not stack or not ref:
        raise BakegenError(
            f"--base-image {shown(item)} is not STACK=IMAGE",
            hint="for example --base-image base=python:3.13-slim",
        )
    try:
        ImageRef.parse(ref)
    except BakegenError:
        raise BakegenError(
            f"--base-image {shown(item)}: {shown(ref)} is not an image reference",
            hint="NAME[:TAG][@sha256:DIGEST], e.g. python:3.13-slim",
        ) from None
    return stack, ref


def output_file(value: str | None, flag: str) -> str | None:
    """A file bakegen (or buildx) will write: its folder exists, and it is not a folder itself."""
    if value is None:
        return None
    path = Path(value)
    if path.is_dir():
        raise BakegenError(f"{flag} {value} is a folder", hint="name a file")
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise BakegenError(
            f"{flag} {value}: the folder {path.parent} does not exist or is not writable",
            hint="name a file in an existing folder",
        )
    return value


def against(value: str | None) -> str | None:
    if value is not None and not REFERENCE.fullmatch(value):
        raise BakegenError(
            f"--against {shown(value)} is not REGISTRY/REPOSITORY:TAG",
            hint="for example --against ghcr.io/acme/geo:latest",
        )
    return value
