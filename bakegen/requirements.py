"""Python pins outside the resolver: the lock files of the python, apps and tools ecosystems
(pip-compile's hashed requirements format) and the pins' SBOM components (``pkg:pypi``).

Lock files are written deterministically (pins sorted by name, hashes sorted) and read back
strictly, from the files a lock's manifest names (no option line, a hash for every pin); a
parent's pins are digested for its children's fingerprints.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from packageurl import PackageURL

from bakegen import __version__
from bakegen.ecosystem import ReadFile, SbomItem
from bakegen.errors import Location, StaleError
from bakegen.files import GENERATED_MARKER
from bakegen.lock import StackLock
from bakegen.python_install import REQUIREMENTS
from bakegen.resolvers.pins import Pin, parse_requirements


def render_requirements(lock: StackLock, platform: str | None = None,
                        command: str = "bakegen lock") -> str:
    """Render pip-compile's format. Deterministic: pins sorted by name, hashes sorted."""
    py = lock.parts["python"]
    platform = platform or lock.platforms[0]
    lines = [
        "#",
        f"# {GENERATED_MARKER} {__version__} for stack '{lock.stack}', Python {py.version} "
        f"on {platform}.",
        f"# Resolved with {py.resolver}. Do not edit; to update, run:",
        "#",
        f"#    {command}",
        "#",
    ]
    if py.parents:
        lines.append("# Installed on top of (never moves their pins):")
        lines.extend(f"#    locks/{p}/{REQUIREMENTS}" for p in py.parents)
        lines.append("#")
    for pin in sorted(py.by_platform[platform], key=lambda p: p.key):
        lines += pin_lines(pin)
    return "\n".join(lines) + "\n"


def pin_lines(pin: Pin) -> list[str]:
    lines = [f"{pin.key}=={pin.version}" + (" \\" if pin.hashes else "")]
    lines += [f"    --hash={h}" + (" \\" if i < len(pin.hashes) - 1 else "")
              for i, h in enumerate(pin.hashes)]
    if len(pin.via) == 1:
        lines.append(f"    # via {pin.via[0]}")
    elif pin.via:
        lines.append("    # via")
        lines.extend(f"    #   {v}" for v in pin.via)
    if pin.index:
        lines.append(f"    # from {pin.index}")
    return lines


def pins_digest(by_platform: dict[str, list[Pin]]) -> str:
    text = "".join(
        f"{platform} {p.key}=={p.version} {' '.join(p.hashes)}"
        + (f" from {p.index}" if p.index else "") + "\n"
        for platform, pins in sorted(by_platform.items())
        for p in sorted(pins, key=lambda p: p.key)
    )
    return hashlib.sha256(text.encode()).hexdigest()


def read_requirements(files: dict[str, Any], platforms: list[str], read_file: ReadFile,
                      where: str, name_of: Callable[[str, list[str]], str]) -> dict[str, list[Pin]]:
    """The hashed pins of each platform, from the lock files the manifest names: one per platform,
    each named as bakegen names it (the file the Dockerfile mounts), read strictly (no option line,
    a hash for every pin)."""
    if set(files) != set(platforms):
        raise StaleError(f"the lock's files are for {sorted(files)}, its platforms are {platforms}",
                         location=Location(where), hint="run bakegen lock")
    out = {}
    for platform in platforms:
        name = name_of(platform, platforms)
        if files[platform]["file"] != name:
            shown = str(files[platform]["file"])[:80]
            raise StaleError(f"the manifest names {shown!r} for {platform}, not {name}",
                             location=Location(where), hint="run bakegen lock")
        text = read_file(name, files[platform]["sha256"])
        out[platform] = parse_requirements(text, f"{where}/{name}", strict=True)
    return out


def pypi_items(stack: str, pins: list[Pin]) -> list[SbomItem]:
    """SBOM components of Python distributions (``pkg:pypi``), with their sha256 hashes."""
    return [
        SbomItem("pypi", pin.key, pin.version,
                 PackageURL(type="pypi", name=pin.key, version=pin.version), stack,
                 tuple(("sha256", h.removeprefix("sha256:")) for h in pin.hashes))
        for pin in pins
    ]
