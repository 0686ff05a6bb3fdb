"""The base image: a root stack's ``base``, pinned by digest (per platform), in the ``base`` section
of lock.json."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from packageurl import PackageURL

from bakegen.ecosystem import Ecosystem, LockedEntry, ReadFile, ResolveContext, SbomItem
from bakegen.errors import NetworkError
from bakegen.lock import (
    DIGEST_PATTERN,
    SCHEMA_DIGEST,
    SCHEMA_PLATFORM,
    StackLock,
    arch_of,
    matches,
    schema_obj,
)
from bakegen.oci import INDEX_TYPES, MANIFEST_TYPES, ImageRef
from bakegen.plan import Facts, PlanContext
from bakegen.resolvers.image import IMAGE_USER, ImageLock, ImageResolver, is_root
from bakegen.stack import PLATFORMS, EffectiveStack


class Image(Ecosystem[ImageLock, ImageResolver]):
    name = "image"
    audit_unchecked = "the base image: scan it with a registry scanner"
    section = "base"
    fingerprint_key = "base_image"
    provides = ("base_image", "base_user")
    in_format_2 = True

    def default_resolver(self) -> ImageResolver:
        return ImageResolver()

    def used(self, stack: EffectiveStack) -> bool:
        return stack.stack.base is not None

    def fingerprint(self, stack: EffectiveStack) -> Any:
        return stack.stack.base

    def resolve(self, ctx: ResolveContext[ImageResolver]) -> ImageLock:
        """Pin the base by digest; keep the digest already locked unless upgrading."""
        ref, platforms = ctx.stack.stack.base, list(ctx.stack.platforms)
        assert ref is not None
        old = ctx.existing.parts.get(self.name) if ctx.existing else None
        if (
            old is not None
            and old.ref == ref
            and not (ctx.move_all or ctx.upgrade)
            and set(platforms) <= set(old.platforms)
        ):
            return old
        pinned = ImageRef.parse(ref).digest
        if ctx.exclude_newer and pinned is None:
            ctx.warnings.append("base image: the cool-down does not apply: a tag names what the "
                                "registry has now (write the digest to keep one)")
        try:
            return ctx.resolver.resolve(ref, platforms)
        except NetworkError as exc:
            if pinned is None:
                raise
            # The stack pins the digest itself: that digest is the lock. Without the
            # registry we cannot list its per-platform manifests; say so.
            ctx.warnings.append(
                f"{exc.message}; kept {ref.split('@')[0]}@{pinned} as written, "
                "without per-platform digests"
            )
            return ImageLock(ref=ref, digest=pinned, media_type="unknown", platforms={})

    def tampered(self, stack: EffectiveStack, lock: StackLock) -> list[tuple[str, Any, Any]]:
        image, base = lock.parts.get(self.name), stack.stack.base
        facts: list[tuple[str, Any, Any]] = [("base image", image.ref if image else None, base)]
        pinned = ImageRef.parse(base).digest if base else None
        if pinned is not None:
            facts.append(("base image digest", image.digest if image else None, pinned))
        return facts

    def section_of(self, lock: StackLock, part: ImageLock, files: dict[str, str]) -> dict[str, Any]:
        return {
            "ref": part.ref,
            "digest": part.digest,
            "media_type": part.media_type,
            "platforms": dict(sorted(part.platforms.items())),
            "user": part.user,
        }

    def read(
        self, section: dict[str, Any], read_file: ReadFile, doc: dict[str, Any], where: str
    ) -> ImageLock:
        return ImageLock(
            ref=section["ref"],
            digest=section["digest"],
            media_type=section["media_type"],
            platforms=dict(section["platforms"]),
            user=section.get("user"),
        )

    def section_schema(self) -> dict[str, Any]:
        return schema_obj(
            {
                "ref": {"type": "string", "maxLength": 512},
                "digest": SCHEMA_DIGEST,
                "media_type": {"type": "string"},
                "platforms": {
                    "type": "object",
                    "propertyNames": SCHEMA_PLATFORM,
                    "additionalProperties": SCHEMA_DIGEST,
                },
                "user": {"type": ["string", "null"], "pattern": f"^{IMAGE_USER}$"},
            },
            ["digest", "media_type", "platforms", "ref"],
        )

    def section_problem(self, section: dict[str, Any]) -> str | None:
        if not section:
            return None
        checks = [
            ("base/ref", isinstance(section.get("ref"), str) and len(section["ref"]) <= 512),
            ("base/digest", matches(section.get("digest"), DIGEST_PATTERN)),
            ("base/user", section.get("user") is None or matches(section.get("user"), IMAGE_USER)),
            (
                "base/media_type",
                section.get("media_type") in (*INDEX_TYPES, *MANIFEST_TYPES, "unknown"),
            ),
            (
                "base/platforms",
                isinstance(section.get("platforms"), dict)
                and all(
                    p in PLATFORMS and matches(d, DIGEST_PATTERN)
                    for p, d in section["platforms"].items()
                ),
            ),
        ]
        return next((f"{where}: not what bakegen writes" for where, ok in checks if not ok), None)

    def entries(self, lock: StackLock, part: ImageLock) -> list[LockedEntry]:
        return [LockedEntry(self.name, part.ref.split("@", 1)[0], "", part.digest)]

    def summary(self, lock: StackLock, part: ImageLock) -> str:
        return f"base {part.digest[:19]}"

    def upgrade_names(self, stack: EffectiveStack, lock: StackLock | None) -> set[str]:
        """The base as written without digest, without tag, or its short name (``python``)."""
        if stack.stack.base is None:
            return set()
        bare = stack.stack.base.split("@", 1)[0]
        return {bare, bare.rsplit(":", 1)[0], bare.rsplit("/", 1)[-1].split(":")[0]}

    def sbom_items(self, lock: StackLock, part: ImageLock, platform: str) -> list[SbomItem]:
        ref = ImageRef.parse(part.ref)
        per_platform = part.platforms.get(platform)
        digest = per_platform or part.digest
        qualifiers = {"repository_url": f"{ref.registry}/{ref.repository}"}
        if per_platform:
            qualifiers["arch"] = arch_of(platform)
        if ref.tag:
            qualifiers["tag"] = ref.tag
        name = ref.repository.rsplit("/", 1)[-1]
        purl = PackageURL(type="oci", name=name, version=digest, qualifiers=qualifiers)
        return [
            SbomItem(
                "oci", name, digest, purl, lock.stack, (("sha256", digest.removeprefix("sha256:")),)
            )
        ]

    def facts(self, ctx: PlanContext) -> Facts:
        """The pinned base (the ARG default) and the base image's own user, unless it is root."""
        image = ctx.lock.parts.get(self.name)
        root_image = (
            ctx.locks[ctx.stack.root.name].parts.get(self.name)
            if ctx.stack.root.name in ctx.locks
            else image
        )
        user = (
            root_image.user
            if root_image and root_image.user and not is_root(root_image.user)
            else None
        )
        return replace(ctx.facts, base_image=image.pinned if image else None, base_user=user)


ECOSYSTEM = Image()
