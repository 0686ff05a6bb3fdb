"""Images in a registry, built on many machines: parents by digest, and tags moved at once.

A job of a distributed build (``bakegen build --push --stacks NAME`` or ``--level N``) builds
FROM its parents' images in the registry, pinned by digest, and pushes its own images by digest
only. Each job's ``--metadata-file`` says what it pushed; the next jobs read their parents'
digests from it (:func:`parent_images`). Once every job has passed, ``bakegen promote`` reads
all of them, checks every image, merges the images that were built one platform per job into
one index, and only then moves every tag (:func:`promote`). A failed job leaves every tag where
it was. README: "Building on many machines".
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bakegen import registry as ordered
from bakegen.attest import image_index, is_attestation, platform_name
from bakegen.build import Published
from bakegen.errors import BakegenError, one_line
from bakegen.lock import StackLock, lock_identity
from bakegen.oci import DIGEST, push_index, read_manifest, repository_of, tag_image, tag_of
from bakegen.paths import Unreadable, read_bounded
from bakegen.stack import StackGraph

PLATFORM = re.compile(r"[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?")
LOCK_ANNOTATION = "io.bakegen.lock"  # what the image was built from (bakegen.lock.lock_identity)
METADATA_LIMIT = 1 << 20  # bytes: a metadata file is a few hundred bytes per image


@dataclass(frozen=True)
class Pushed:
    """One image pushed by digest, as a job's metadata file records it."""

    stack: str
    digest: str  # the image index (or manifest) in the stack's repository
    platforms: dict[str, str]  # platform -> image manifest digest; empty: every platform
    source: str  # the file it was read from

    def covers(self, platforms: list[str]) -> bool:
        return not self.platforms or set(platforms) <= set(self.platforms)


# --- metadata files ----------------------------------------------------------------------


def metadata_doc(published: Sequence[Published | Promotion]) -> dict[str, Any]:
    """What ``--metadata-file`` records: bake's key for the digest (``bakegen profiles --metadata``
    reads it), the names, the bytes uploaded, and each platform's image."""
    return {
        p.stack: {
            "containerimage.digest": p.digest,
            "image.name": ",".join(p.names),
            **({"bakegen.pushed_bytes": p.pushed_bytes} if isinstance(p, Published) else {}),
            "bakegen.platforms": dict(sorted(p.platforms.items())),
        }
        for p in published
    }


def read_metadata(paths: list[Path], graph: StackGraph) -> dict[str, list[Pushed]]:
    """The images that earlier jobs pushed, by stack, from their metadata files (a folder stands
    for the ``*.json`` files in it). Every value is checked: a digest is ``sha256:`` and 64 hex
    digits, a platform is ``os/arch[/variant]`` of the stack, a stack is one of the graph's."""
    found: dict[str, list[Pushed]] = {}
    for path in _metadata_files(paths):
        for stack, entry in _read_json(path).items():
            found.setdefault(stack, []).append(_pushed(path, stack, entry, graph))
    return found


def _metadata_files(paths: list[Path]) -> list[Path]:
    """The files named, and the ``*.json`` files of the folders named; a symbolic link is refused
    (a metadata file comes from a CI artifact, and is never followed out of it)."""
    files: list[Path] = []
    for path in paths:
        if path.is_symlink():
            raise BakegenError(f"metadata file {path} is a symbolic link",
                               hint="pass the --metadata-file of an earlier job itself")
        if path.is_dir():
            files += [_no_link(p) for p in sorted(path.glob("*.json"))]
        elif path.exists():
            files.append(path)
        else:
            raise BakegenError(
                f"metadata file {path} not found",
                hint="pass the --metadata-file of an earlier job, or a folder of them",
            )
    return files


def _no_link(path: Path) -> Path:
    if path.is_symlink():
        raise BakegenError(f"metadata file {path} is a symbolic link",
                           hint="a folder of metadata files holds the files themselves")
    return path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(read_bounded(path, METADATA_LIMIT))
    except Unreadable as exc:
        raise BakegenError(f"{path}: not a metadata file ({exc.reason}, at most 1 MiB)",
                           hint="pass the --metadata-file that bakegen build wrote") from None
    except (ValueError, RecursionError) as exc:
        raise BakegenError(f"{path}: not a metadata file ({type(exc).__name__})",
                           hint="pass the --metadata-file that bakegen build wrote") from None
    if not isinstance(doc, dict):
        raise BakegenError(f"{path}: not a metadata file (a JSON object of at most 1 MiB)",
                           hint="pass the --metadata-file that bakegen build wrote")
    return doc


def _pushed(path: Path, stack: str, entry: Any, graph: StackGraph) -> Pushed:
    def bad(key: str, what: str) -> BakegenError:
        return BakegenError(f"{path}: {one_line(repr(stack), 80)}: {key}: {what}",
                            hint="pass the --metadata-file that bakegen build wrote, unchanged")

    if stack not in graph.stacks:
        raise bad("(the key)", "no stack of this project has that name")
    if not isinstance(entry, dict):
        raise bad("(the value)", "not an object")
    digest = entry.get("containerimage.digest")
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise bad("containerimage.digest", "not sha256: and 64 hex digits")
    platforms = entry.get("bakegen.platforms", {})
    if not isinstance(platforms, dict) or not all(
        isinstance(k, str) and k in graph.platforms(stack)
        and isinstance(v, str) and DIGEST.fullmatch(v)
        for k, v in platforms.items()
    ):
        raise bad("bakegen.platforms",
                  f"not platforms of the stack ({', '.join(graph.platforms(stack))}) and digests")
    return Pushed(stack, digest, dict(platforms), str(path))


# --- parents -----------------------------------------------------------------------------


def parent_images(
    graph: StackGraph,
    locks: dict[str, StackLock],
    parents: dict[str, list[str]],
    names: dict[str, list[str]],
    given: dict[str, list[Pushed]],
) -> dict[str, str]:
    """``parents``: each parent that this job does not build, with the platforms its children
    need. Its image by digest (``REPOSITORY@sha256:...``), from an earlier job's metadata, or else
    from the registry's content tag (``<date>-<fingerprint>``, which ``promote`` moved). Each is
    checked against the parent's lock: a parent built from other locks is refused."""
    out = {}
    for parent, platforms in sorted(parents.items()):
        repo = repository_of(names[parent][0])
        digest = _given_digest(given.get(parent, []), platforms) or _tagged_digest(
            parent, names[parent], locks[parent]
        )
        check_image(parent, repo, digest, locks[parent], platforms)
        out[parent] = f"{repo}@{digest}"
    return out


def _given_digest(entries: list[Pushed], platforms: list[str]) -> str | None:
    return next((e.digest for e in entries if e.covers(platforms)), None)


def _tagged_digest(parent: str, names: list[str], lock: StackLock) -> str:
    content = content_name(names, lock)
    served = read_manifest(content) if content else None
    if served is None:
        raise BakegenError(
            f"the image of the parent {parent} is not known: no metadata file names it, and the "
            f"registry has no {content or 'content tag of it'}",
            hint=f"build and push it first (bakegen build --push --stacks {parent} "
            f"--metadata-file {parent}.json), then pass --parents {parent}.json",
        )
    return served[1]


def content_name(names: list[str], lock: StackLock) -> str | None:
    """The name whose tag is the lock's content tag, ``<date>-<first 12 of the fingerprint>``."""
    short = lock.fingerprint.split(":")[1][:12]
    return next((n for n in names if tag_of(n).endswith(f"-{short}")), None)


def check_image(
    stack: str, repo: str, digest: str, lock: StackLock, platforms: list[str]
) -> dict[str, str]:
    """The registry holds ``repo@digest``, an index with an image for each of ``platforms`` whose
    manifest carries the lock's fingerprint; each platform's manifest digest."""
    images = _index(stack, repo, digest).images
    out = {}
    for platform in platforms:
        if platform not in images:
            raise BakegenError(f"{stack}: {repo}@{digest} has no image for {platform}",
                               hint=one_line(f"it has: {', '.join(sorted(images)) or 'none'}", 200))
        image = images[platform]["digest"]
        annotations = _document(stack, repo, image, "image manifest").get("annotations")
        found = annotations.get(LOCK_ANNOTATION) if isinstance(annotations, dict) else None
        wanted = lock_identity(lock, ordered.ECOSYSTEMS)
        if found != wanted:
            raise BakegenError(
                f"{stack}: {repo}@{digest} ({platform}) was built from other locks "
                f"({LOCK_ANNOTATION} {one_line(str(found), 80)}, the lock's is {wanted})",
                hint="build it again from the current locks (bakegen build --push)",
            )
        out[platform] = image
    return out


@dataclass(frozen=True)
class IndexEntries:
    images: dict[str, dict[str, Any]]  # platform -> the image's descriptor
    attestations: list[dict[str, Any]]


def _index(stack: str, repo: str, digest: str) -> IndexEntries:
    """The index ``repo@digest``, every entry checked: what a registry serves can be crafted."""
    manifests = _document(stack, repo, digest, "image index").get("manifests")
    bad = BakegenError(f"{stack}: {repo}@{digest} is not an image index as bakegen build --push "
                       "pushes it", hint="push it again with bakegen build --push")
    if not isinstance(manifests, list) or not all(_descriptor_ok(m) for m in manifests):
        raise bad
    images: dict[str, dict[str, Any]] = {}
    for m in manifests:
        if not is_attestation(m):
            if platform_name(m["platform"]) in images:
                raise bad  # two images for one platform: which one would be checked?
            images[platform_name(m["platform"])] = m
    return IndexEntries(images, [m for m in manifests if is_attestation(m)])


def _descriptor_ok(m: Any) -> bool:
    platform = m.get("platform") if isinstance(m, dict) else None
    return (
        isinstance(platform, dict)
        and all(isinstance(platform.get(k), str) for k in ("os", "architecture"))
        and isinstance(m.get("mediaType"), str)
        and isinstance(m.get("digest"), str) and DIGEST.fullmatch(m["digest"]) is not None
        and type(m.get("size")) is int
        and isinstance(m.get("annotations", {}), dict)
    )


def _document(stack: str, repo: str, digest: str, what: str) -> dict[str, Any]:
    served = read_manifest(f"{repo}@{digest}")
    if served is None:
        raise BakegenError(f"{stack}: {repo}@{digest} is not in the registry",
                           hint="push it again (bakegen build --push), or check --registry")
    try:
        doc = json.loads(served[0])
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict):
        raise BakegenError(f"{stack}: {repo}@{digest} is not a JSON {what}",
                           hint="push it again with bakegen build --push")
    return doc


# --- promote -----------------------------------------------------------------------------


@dataclass
class Promotion:
    stack: str
    repository: str
    digest: str  # what every tag of the stack will name
    names: list[str]
    platforms: dict[str, str]  # platform -> image manifest digest
    index: bytes | None = None  # an index merged from per-platform images, pushed first


def plan_promotion(
    graph: StackGraph,
    locks: dict[str, StackLock],
    stacks: list[str],
    names: dict[str, list[str]],
    given: dict[str, list[Pushed]],
) -> list[Promotion]:
    """Check that every stack has a pushed image of its current lock for each of its platforms,
    before any tag moves. Images built one platform per job are merged into one index."""
    out = []
    for stack in stacks:
        entries = given.get(stack)
        if not entries:
            raise BakegenError(
                f"{stack}: no job pushed an image of it (no metadata file names it)",
                hint="every job of the graph must pass before promote; nothing was moved",
            )
        out.append(_promotion(stack, locks[stack], names[stack], entries, graph.platforms(stack)))
    return out


def _promotion(
    stack: str, lock: StackLock, names: list[str], entries: list[Pushed], platforms: list[str]
) -> Promotion:
    repo = repository_of(names[0])
    whole = _given_digest(entries, platforms)
    if whole is not None:
        checked = check_image(stack, repo, whole, lock, platforms)
        return Promotion(stack, repo, whole, names, checked)
    images: list[dict[str, Any]] = []
    attestations: list[dict[str, Any]] = []
    found: dict[str, str] = {}
    for platform in platforms:
        entry = _given_digest(entries, [platform])
        if entry is None:
            raise BakegenError(
                f"{stack}: no job pushed its {platform} image",
                hint="every job of the graph must pass before promote; nothing was moved",
            )
        found |= check_image(stack, repo, entry, lock, [platform])
        part = _index_entries(stack, repo, entry, platform)
        images += part[0]
        attestations += part[1]
    data = image_index(images, attestations)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return Promotion(stack, repo, digest, names, found, data)


def _index_entries(
    stack: str, repo: str, digest: str, platform: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The image of ``platform`` in a per-platform job's index (which check_image checked), and
    its attestations."""
    entries = _index(stack, repo, digest)
    image = entries.images[platform]
    attached = [a for a in entries.attestations
                if a.get("annotations", {}).get("vnd.docker.reference.digest") == image["digest"]]
    return [image], attached


def promote(promotions: list[Promotion]) -> None:
    """Push the merged indexes (by digest), then move every tag. A registry has no transaction
    over many tags: they move one after another, after every image was checked; a run that
    stops half-way says how far it got, and running promote again finishes it."""
    for p in promotions:
        if p.index is not None:
            push_index(p.repository, p.index)
    moves = [(p, name) for p in promotions for name in p.names]
    for done, (p, name) in enumerate(moves):
        try:
            tag_image(p.repository, p.digest, name)
        except BakegenError as exc:
            raise BakegenError(
                f"moved {done} of {len(moves)} tags, then {name}: {exc.message}",
                hint="every image is in the registry: run bakegen promote again with the same "
                "--metadata to move the rest",
            ) from None
