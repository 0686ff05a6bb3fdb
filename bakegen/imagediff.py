"""What a lock update costs the users of each image: the layers that change, named by their plan
step, the bytes a pull downloads again (compressed) and the change in image size (uncompressed),
per image and platform (``bakegen diff --registry R``).

The figures are exact and come from the registry: the old image is the one the base revision's
lock names (its content tag, ``<date>-<fingerprint>``, which ``promote`` moved); the new one is
the build of the working tree's locks (its digest from ``--metadata FILE``, or its content tag).
The compressed sizes are the manifests'; the uncompressed ones are counted by decompressing the
layers that differ, streamed from the registry. An image the registry does not hold is "not
built": no figure is guessed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import zstandard

from bakegen.attest import is_attestation, platform_name
from bakegen.errors import BakegenError, one_line
from bakegen.lock import StackLock, chain_epoch
from bakegen.lock import content_tag as lock_content_tag
from bakegen.oci import DIGEST, ImageRef, RegistryClient

SOURCE_BYTES = "registry manifests (compressed layer sizes)"
SOURCE_SIZE = "registry layers, decompressed"


@dataclass(frozen=True)
class Layer:
    digest: str
    size: int  # compressed
    step: str  # what made it: the plan step's layer name, or "base image" / "from <parent>"


@dataclass
class ImageFigures:
    stack: str
    platform: str
    old: str | None  # the image reference (None: not built)
    new: str | None
    changed: list[Layer] = field(default_factory=list)  # the new image's layers the old lacks
    download: int | None = None  # compressed bytes of the changed layers and the config
    size_change: int | None = None  # uncompressed bytes: new minus old
    note: str = ""  # why a figure is missing

    @property
    def measured(self) -> bool:
        return self.download is not None


def content_tag(locks: dict[str, StackLock], name: str) -> str | None:
    """``<YYYYMMDD>-<first 12 of the fingerprint>``: the newest lock date of the chain (as the bake
    file stamps it) and the lock's fingerprint; None for a lock without a date."""
    epoch = chain_epoch(locks, name)
    return lock_content_tag(epoch, locks[name].fingerprint) if epoch is not None else None


@dataclass(frozen=True)
class Image:
    """One platform's image in a registry: its layers and its config's history."""

    reference: str
    layers: list[tuple[str, int, str]]  # (digest, compressed size, media type)
    history: list[tuple[bool, str]]  # (makes a layer, created_by)
    config_size: int


def read_manifest(reference: str) -> tuple[bytes, str] | None:
    """The manifest or index the registry serves for ``repository:tag`` or ``repository@digest``,
    and its sha256, read with the client that reads the configs and layers (one login for all);
    None when the registry has no such manifest."""
    image = ImageRef.parse(reference)
    found = RegistryClient().find_manifest(image, image.digest or image.tag or "latest")
    return (found[0], found[2]) if found else None


def fetch_image(reference: str, platform: str) -> Image | None:
    """``REPOSITORY:TAG`` or ``REPOSITORY@DIGEST``; None when the registry has no such image."""
    served = read_manifest(reference)
    if served is None:
        return None
    doc = _json(served[0], reference)
    repo = _repository(reference)
    if "manifests" in doc:
        digest = _platform_entry(doc, platform, reference)
        served = read_manifest(f"{repo}@{digest}") if digest else None
        if served is None:
            return None
        doc = _json(served[0], reference)
    config, layers = _checked(doc.get("config"), reference), doc.get("layers")
    if not isinstance(layers, list):
        raise _bad(reference)
    history = _config(repo, config["digest"]).get("history", [])
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise _bad(reference)
    return Image(reference,
                 [(x["digest"], x["size"], x["mediaType"]) for x in map(
                     lambda x: _checked(x, reference), layers)],
                 [(h.get("empty_layer") is not True, one_line(str(h.get("created_by", "")), 200))
                  for h in history],
                 config["size"])


MAX_SIZE = 1 << 40  # bytes in one blob, at most


def _checked(entry: Any, reference: str) -> dict[str, Any]:
    """A descriptor as the registry served it: a sha256 digest, a size in bytes, a media type."""
    if not (isinstance(entry, dict) and isinstance(entry.get("digest"), str)
            and DIGEST.fullmatch(entry["digest"]) and type(entry.get("size")) is int
            and 0 <= entry["size"] <= MAX_SIZE):
        raise _bad(reference)
    return {"digest": entry["digest"], "size": entry["size"],
            "mediaType": str(entry.get("mediaType", ""))}


def _platform_entry(doc: dict[str, Any], platform: str, reference: str) -> str | None:
    manifests = doc["manifests"]
    if not isinstance(manifests, list):
        raise _bad(reference)
    for m in manifests:
        plat = m.get("platform") if isinstance(m, dict) else None
        if (isinstance(plat, dict) and isinstance(plat.get("os"), str)
                and isinstance(plat.get("architecture"), str) and not is_attestation(m)
                and platform_name(plat) == platform):
            return str(_checked(m, reference)["digest"])
    return None


def _bad(reference: str) -> BakegenError:
    return BakegenError(f"{reference}: the registry served a manifest of another shape",
                        hint="check the registry and the image")


def _repository(reference: str) -> str:
    if "@" in reference:
        return reference.split("@", 1)[0]
    last = reference.rsplit("/", 1)[-1]
    return reference[: -len(last.rsplit(":", 1)[1]) - 1] if ":" in last else reference


def _json(data: bytes, reference: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict):
        raise BakegenError(f"{reference}: the registry served no JSON manifest",
                           hint="check the registry and the image")
    return doc


def _config(repo: str, digest: str) -> dict[str, Any]:
    image = ImageRef.parse(f"{repo}@{digest}")
    client = RegistryClient()
    status, _, body = client.request(
        f"{image.scheme}://{image.api_host}/v2/{image.repository}/blobs/{digest}", image)
    if status != 200:
        raise BakegenError(f"{repo}: cannot read the image config {digest} (HTTP {status})",
                           hint="check your registry credentials")
    return _json(body, f"{repo}@{digest}")


def name_layers(image: Image, steps: list[str | None], parent: str | None) -> list[Layer]:
    """Each layer of ``image`` named: BuildKit writes one history entry per instruction of the final
    stage, so the last ``len(steps)`` entries are the plan's steps (``steps``: each one's layer
    name, None for an instruction without a layer); the layers before are the parent's, or the
    base image's. A history that does not line up names the layers by number."""
    own, before = image.history[len(image.history) - len(steps):], image.history[:-len(steps)]
    names = [f"from {parent}" if parent else "base image" for makes, _ in before if makes]
    names += [step or text[:60] for (makes, text), step in zip(own, steps) if makes]
    if len(steps) > len(image.history) or len(names) != len(image.layers):
        names = [f"layer {i}" for i in range(1, len(image.layers) + 1)]
    return [Layer(d, size, name) for (d, size, _), name in zip(image.layers, names)]


def figures(
    stack: str, platform: str, old_ref: str | None, new_ref: str | None,
    steps: list[str | None], parent: str | None,
) -> ImageFigures:
    """The figures of one image and platform; "not built" when the registry lacks the new one."""
    out = ImageFigures(stack, platform, old_ref, new_ref)
    new = fetch_image(new_ref, platform) if new_ref else None
    if new is None:
        out.note = f"not built: {new_ref or 'no reference'} is not in the registry"
        return out
    old = fetch_image(old_ref, platform) if old_ref else None
    old_layers = {d: media for d, _, media in old.layers} if old else {}
    out.changed = [x for x in name_layers(new, steps, parent) if x.digest not in old_layers]
    out.download = sum(x.size for x in out.changed) + new.config_size
    gone = [(d, media) for d, media in old_layers.items() if d not in {x[0] for x in new.layers}]
    media = {d: m for d, _, m in new.layers}
    repo_new, repo_old = _repository(new.reference), _repository(old.reference) if old else ""
    out.size_change = sum(uncompressed(repo_new, x.digest, media[x.digest]) for x in out.changed)
    out.size_change -= sum(uncompressed(repo_old, d, m) for d, m in gone)
    if old is None:
        out.note = f"new image: {old_ref or 'the base revision has none'} is not in the registry"
    return out


def uncompressed(repository: str, digest: str, media_type: str) -> int:
    """The bytes of a layer's tar stream: the blob streamed from the registry and decompressed
    (gzip or zstd, as its media type says), counted, never stored."""
    image = ImageRef.parse(f"{repository}@{digest}")
    url = f"{image.scheme}://{image.api_host}/v2/{image.repository}/blobs/{digest}"
    with RegistryClient().stream(url, image) as blob:
        reader = _decompressor(blob, media_type)
        total = 0
        try:
            while chunk := reader.read(1 << 20):
                total += len(chunk)
        except (OSError, EOFError, ValueError, zstandard.ZstdError) as exc:
            raise BakegenError(f"{repository}@{digest}: the layer does not decompress "
                               f"({one_line(str(exc), 80)})",
                               hint="the registry served a damaged layer") from None
        return total


def _decompressor(blob: Any, media_type: str) -> Any:
    if media_type.endswith("+zstd") or media_type.endswith(".zstd"):
        return zstandard.ZstdDecompressor().stream_reader(blob)
    if media_type.endswith("gzip"):
        import gzip

        return gzip.GzipFile(fileobj=blob)
    return blob


def references(
    locks: dict[str, StackLock], repository: str, prefix: str
) -> dict[str, str]:
    """Each stack's image by its content tag: ``REPOSITORY/STACK:PREFIX<date>-<fingerprint>``."""
    out = {}
    for name in locks:
        tag = content_tag(locks, name)
        if tag:
            out[name] = f"{repository.rstrip('/')}/{name}:{prefix}{tag}"
    return out


def measure(
    diffs: list[Any],
    old_refs: dict[str, str],
    new_refs: dict[str, str],
    new: dict[str, StackLock],
    steps: dict[str, list[str | None]],
) -> None:
    """Each rebuilt image's figures, per platform of its new lock (``steps``: stack -> its plan's
    final-stage layer names)."""
    for d in diffs:
        if d.rebuild and d.stack in new:
            d.figures = [
                figures(d.stack, platform, old_refs.get(d.stack), new_refs.get(d.stack),
                        steps.get(d.stack, []), new[d.stack].parent)
                for platform in new[d.stack].platforms
            ]
