"""bakegen sbom: an exact SBOM per image and platform, from the locks alone (no Docker, no network).

For each stack and platform, CycloneDX 1.6 JSON (``<arch>.cdx.json``, built with
cyclonedx-python-lib's model and its JSON outputter) and SPDX 2.3 JSON
(``<arch>.spdx.json``, a plain dict). The components are what the image holds
by its locks and its parents' locks, root first:

* the base image (``pkg:oci``), by the platform's manifest digest when the lock
  records one, else by the digest the lock pins (an index or a manifest);
* the Python distributions of the platform's requirements file (``pkg:pypi``),
  with every sha256 the lock allows;
* the runtime apt packages (kinds ``req`` and ``dep``; ``build`` packages stay in
  the builder stage) of the platform's architecture (``pkg:deb``), with the
  ``.deb``'s sha256; the purl's ``arch`` is the package's own architecture, read
  from its pool file name (``all`` for an architecture-independent package, as
  dpkg reports it in the image), and ``distro`` is the locked suite;
* every package of npm's package-lock.json but the root (``pkg:npm``), except an
  optional one whose ``os``/``cpu`` exclude the platform (npm ci skips it), with
  its integrity hash as hex.

Licenses: only npm's package-lock.json records them (the ``license`` field npm
copies from each package's manifest), so only npm components carry one.
requirements.txt, apt.lock and the base image's lock record no license, so the
Python, apt and base-image components have none (SPDX: NOASSERTION). Nothing is
fetched to fill them in.

Determinism: the same locks give byte-identical files. The only time in them
(CycloneDX ``metadata.timestamp``, SPDX ``creationInfo.created`` and annotation
dates) is the image's SOURCE_DATE_EPOCH: the newest ``source_date_epoch`` of the
locks it is built from (its own or a parent's), as the bake file's
``org.opencontainers.image.created`` label; ``FALLBACK_EPOCH`` (1970-01-01) when
no lock has one, which a current lock always has. The CycloneDX ``serialNumber``
and the SPDX ``documentNamespace`` are uuid5 of the document rendered with a nil
one: a hash of the content. Components are sorted; files end with a newline.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model import (
    ExternalReference,
    ExternalReferenceType,
    HashAlgorithm,
    HashType,
    Property,
    XsUri,
)
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import LicenseAcknowledgement, LicenseExpression
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output.json import JsonV1Dot6

from bakegen import __version__
from bakegen import registry as ordered
from bakegen.ecosystem import HASHES
from bakegen.ecosystem import SbomItem as Item
from bakegen.errors import BakegenError
from bakegen.files import GENERATED_MARKER
from bakegen.lock import StackLock, arch_of, chain_epoch
from bakegen.stack import StackGraph

SBOM_DIR = "sbom"
FORMATS = {"cyclonedx": "cdx.json", "spdx": "spdx.json"}  # format -> file suffix
FALLBACK_EPOCH = 0  # 1970-01-01T00:00:00Z: only for a lock without source_date_epoch
UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://bakegen.dev/sbom")
SPDX_NAMESPACE = "https://bakegen.dev/spdx"


@dataclass(frozen=True)
class ImageSbom:
    """What one image holds on one platform."""

    stack: str
    platform: str
    fingerprint: str
    description: str
    tags: tuple[str, ...]
    epoch: int
    items: tuple[Item, ...]

    @property
    def arch(self) -> str:
        return arch_of(self.platform)

    @property
    def created(self) -> datetime:
        return datetime.fromtimestamp(self.epoch, UTC)


# --- the image's components, from the locks ------------------------------------------


def image_sbom(
    graph: StackGraph, locks: dict[str, StackLock], name: str, platform: str
) -> ImageSbom:
    """The components of stack ``name``'s image on ``platform``: its locks and its parents', root
    first."""
    chain = [locks[s.name] for s in graph.ancestors(name)] + [locks[name]]
    items: dict[str, Item] = {}
    for lock in chain:
        for item in lock_items(lock, platform):
            items.setdefault(item.ref, item)  # a purl twice: the stack nearest the root installs it
    stack = graph.stacks[name]
    return ImageSbom(
        stack=name,
        platform=platform,
        fingerprint=locks[name].fingerprint,
        description=stack.description,
        tags=tuple(stack.tags),
        epoch=chain_epoch(locks, name) or FALLBACK_EPOCH,
        items=tuple(items[k] for k in sorted(items)),
    )


def lock_items(lock: StackLock, platform: str) -> list[Item]:
    """Everything one stack's lock installs in the final image on ``platform``, from each
    ecosystem."""
    return [
        item
        for eco in ordered.ECOSYSTEMS
        if lock.parts.get(eco.name) is not None
        for item in eco.sbom_items(lock, lock.parts[eco.name], platform)
    ]


# --- CycloneDX 1.6 ----------------------------------------------------------------------


def to_cyclonedx(image: ImageSbom) -> str:
    """CycloneDX 1.6 JSON; its serialNumber is uuid5 of the same document with a nil one."""
    bom = _cdx_bom(image)
    bom.serial_number = uuid.UUID(int=0)
    bom.serial_number = uuid.uuid5(UUID_NAMESPACE, _cdx_text(bom))
    return _cdx_text(bom)


def _cdx_bom(image: ImageSbom) -> Bom:
    props = [
        Property(name="bakegen:stack", value=image.stack),
        Property(name="bakegen:platform", value=image.platform),
    ]
    props += [Property(name="bakegen:tag", value=t) for t in image.tags]
    root = Component(
        type=ComponentType.CONTAINER,
        name=image.stack,
        version=image.fingerprint,
        bom_ref=f"bakegen-image:{image.stack}",
        description=image.description,
        properties=props,
    )
    tool = Component(type=ComponentType.APPLICATION, name="bakegen", version=__version__)
    components = [_cdx_component(item) for item in image.items]
    bom = Bom(
        metadata=BomMetaData(
            timestamp=image.created, tools=ToolRepository(components=[tool]), component=root
        ),
        components=components,
        properties=[Property(name="bakegen:generated", value=_generated(image))],
    )
    bom.register_dependency(root, components)  # the image holds every component
    return bom


def _cdx_component(item: Item) -> Component:
    hashes = [
        HashType(alg=HashAlgorithm(HASHES[alg][0]), content=hexdigest)
        for alg, hexdigest in item.hashes
    ]
    licenses = (
        [
            LicenseFactory().make_from_string(
                item.license, license_acknowledgement=LicenseAcknowledgement.DECLARED
            )
        ]
        if item.license
        else []
    )
    refs = (
        [ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(item.download))]
        if item.download
        else []
    )
    group, name = (
        item.name.split("/", 1)
        if item.kind == "npm" and item.name.startswith("@")
        else (None, item.name)
    )
    return Component(
        type=ComponentType.CONTAINER if item.kind == "oci" else ComponentType.LIBRARY,
        group=group,
        name=name,
        version=item.version,
        bom_ref=item.ref,
        purl=item.purl,
        hashes=hashes,
        licenses=licenses,
        external_references=refs,
        properties=[Property(name="bakegen:stack", value=item.stack)],
    )


def _cdx_text(bom: Bom) -> str:
    """The outputter's JSON with the top-level ``properties`` first, so that the file's fifth line
    holds ``Generated by bakegen`` (files.is_generated reads five lines: bakegen may then overwrite
    it)."""
    doc = json.loads(JsonV1Dot6(bom).output_as_string(indent=2))
    first = [
        "properties",
        "$schema",
        "bomFormat",
        "specVersion",
        "serialNumber",
        "version",
        "metadata",
        "components",
    ]
    return _json({**{k: doc[k] for k in first if k in doc}, **doc})


# --- SPDX 2.3 -----------------------------------------------------------------------------


def to_spdx(image: ImageSbom) -> str:
    """SPDX 2.3 JSON; its documentNamespace ends with uuid5 of the same document with a nil one."""
    doc = _spdx_doc(image)
    doc["documentNamespace"] = _spdx_namespace(image, uuid.UUID(int=0))
    doc["documentNamespace"] = _spdx_namespace(image, uuid.uuid5(UUID_NAMESPACE, _json(doc)))
    return _json(doc)


def _spdx_namespace(image: ImageSbom, key: uuid.UUID) -> str:
    return f"{SPDX_NAMESPACE}/{image.stack}/{image.arch}-{key}"


def _spdx_doc(image: ImageSbom) -> dict[str, Any]:
    root_id = f"SPDXRef-image-{_spdx_safe(image.stack)}"
    created = _spdx_time(image)
    root = {
        "SPDXID": root_id,
        "name": image.stack,
        "versionInfo": image.fingerprint,
        "description": image.description,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
        "annotations": [_spdx_annotation(created, f"bakegen:platform={image.platform}")],
    }
    packages = [_spdx_package(item, created) for item in image.items]
    relationships = [
        {
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relationshipType": "DESCRIBES",
            "relatedSpdxElement": root_id,
        }
    ]
    relationships += [
        {
            "spdxElementId": root_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": p["SPDXID"],
        }
        for p in packages
    ]
    return {
        "comment": _generated(image),  # the second line: files.is_generated finds it
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{image.stack}-{image.arch}",
        "documentNamespace": "",
        "creationInfo": {"created": created, "creators": [f"Tool: bakegen-{__version__}"]},
        "packages": [root, *packages],
        "relationships": relationships,
    }


def _spdx_package(item: Item, created: str) -> dict[str, Any]:
    return {
        "SPDXID": spdx_id(item),
        "name": item.name,
        "versionInfo": item.version,
        "downloadLocation": item.download or "NOASSERTION",
        "filesAnalyzed": False,
        "checksums": [
            {"algorithm": HASHES[alg][1], "checksumValue": hexdigest}
            for alg, hexdigest in item.hashes
        ],
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": spdx_license(item.license),
        "copyrightText": "NOASSERTION",
        "externalRefs": [
            {
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": item.ref,
            }
        ],
        "primaryPackagePurpose": "CONTAINER" if item.kind == "oci" else "LIBRARY",
        "annotations": [_spdx_annotation(created, f"bakegen:stack={item.stack}")],
    }


def _spdx_annotation(created: str, comment: str) -> dict[str, str]:
    return {
        "annotationDate": created,
        "annotationType": "OTHER",
        "annotator": f"Tool: bakegen-{__version__}",
        "comment": comment,
    }


def spdx_id(item: Item) -> str:
    """Stable and unique: the kind, the name, and a hash of the purl."""
    digest = hashlib.sha256(item.ref.encode()).hexdigest()[:12]
    return f"SPDXRef-{item.kind}-{_spdx_safe(item.name)}-{digest}"


def spdx_license(value: str | None) -> str:
    """An SPDX license expression, or NOASSERTION for none or a free-text license."""
    if not value:
        return "NOASSERTION"
    lic = LicenseFactory().make_from_string(value)
    if isinstance(lic, LicenseExpression):
        return str(lic.value)
    return str(lic.id) if lic.id else "NOASSERTION"


def _spdx_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-") or "x"


def _spdx_time(image: ImageSbom) -> str:
    return image.created.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- files ---------------------------------------------------------------------------------


def _generated(image: ImageSbom) -> str:
    where = f"for stack '{image.stack}' on {image.platform} from locks/"
    return f"{GENERATED_MARKER} {__version__} {where}. Do not edit; to update, run: bakegen sbom"


def _json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2) + "\n"


RENDERERS = {"cyclonedx": to_cyclonedx, "spdx": to_spdx}


def cyclonedx_of(graph: StackGraph, locks: dict[str, StackLock]) -> Callable[[str, str], str]:
    """(stack, platform) -> the image's CycloneDX JSON, for the attestation bakegen build
    attaches."""

    def sbom(stack: str, platform: str) -> str:
        if platform not in locks[stack].platforms:
            raise BakegenError(
                f"{stack}: the built image is for {platform}, which the lock does not have",
                hint="run bakegen lock, then bakegen generate",
            )
        return to_cyclonedx(image_sbom(graph, locks, stack, platform))

    return sbom


def sbom_path(stack: str, platform: str, fmt: str) -> str:
    """``<stack>/<arch>.cdx.json``, relative to the output folder."""
    return f"{stack}/{arch_of(platform)}.{FORMATS[fmt]}"


def render_sboms(
    graph: StackGraph, locks: dict[str, StackLock], names: list[str], formats: list[str]
) -> dict[str, str]:
    """{path relative to the output folder: text} for every stack of ``names``, platform and
    format."""
    files = {}
    for name in names:
        for platform in locks[name].platforms:
            image = image_sbom(graph, locks, name, platform)
            files.update({sbom_path(name, platform, fmt): RENDERERS[fmt](image) for fmt in formats})
    return files
