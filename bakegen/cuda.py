"""The CUDA an image's Python packages were built for, read from its locked versions, and the
oldest NVIDIA driver that runs it.

Two ways a lock says it:

* a PyTorch index's local version: ``torch==2.11.0+cu130`` is CUDA 13.0 (``+cpu``: none);
* PyPI's CUDA wheels, which torch pulls in: ``nvidia-cuda-runtime==13.2.86`` (CUDA 13.2) or
  ``nvidia-cuda-runtime-cu12==12.8.90``;
* a package built for one CUDA major version: ``cupy-cuda12x``, ``jax-cuda12-plugin`` (CUDA 12).

When several say it, the newest counts: the image needs its driver.

The driver is NVIDIA's minimum for CUDA minor-version compatibility of that major version
(the CUDA Toolkit release notes, "CUDA Toolkit and Minimum Required Driver Version for CUDA
Minor Version Compatibility"): any 13.x runs on driver 580 or newer, 12.x on 525.60.13, 11.x on
450.80.02. A kernel compiled for a newer PTX than the driver knows still needs that toolkit's
own driver.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MIN_DRIVER = {11: "450.80.02", 12: "525.60.13", 13: "580"}
_RUNTIME = re.compile(r"nvidia-cuda-runtime(?:-cu[0-9]{2})?")
_LOCAL = re.compile(r"[^+]+\+cu([0-9]{2})([0-9])")  # torch 2.11.0+cu130: 13.0
# CUDA builds named by major version only: cupy-cuda12x, jax-cuda12-plugin, jax-cuda12-pjrt
_MAJOR_ONLY = re.compile(r"cupy-cuda([0-9]{2})x|jax-cuda([0-9]{2})-(?:plugin|pjrt)")


@dataclass(frozen=True)
class Cuda:
    major: int
    minor: int | None = None  # None: a package names only the major version (cupy-cuda12x)

    @property
    def version(self) -> str:
        return f"{self.major}" if self.minor is None else f"{self.major}.{self.minor}"

    @property
    def variant(self) -> str:
        """PyTorch's name for it: cu130 (cu12 for a major version only)."""
        return f"cu{self.major}{'' if self.minor is None else self.minor}"

    @property
    def min_driver(self) -> str:
        """The oldest NVIDIA driver that runs it ("unknown" for a CUDA newer than bakegen)."""
        return MIN_DRIVER.get(self.major, "unknown")

    def record(self) -> dict[str, str]:
        """In lock.json and the image's labels."""
        return {"version": self.version, "variant": self.variant, "min_driver": self.min_driver}


def cuda_of(packages: dict[str, str]) -> Cuda | None:
    """The newest CUDA that locked ``{name: version}`` (canonical names) were built for, or None:
    the image needs the driver of the newest."""
    found = [_local(packages.get("torch", ""))]
    for name, version in packages.items():
        runtime = _RUNTIME.fullmatch(name) and re.match(r"([0-9]{1,3})\.([0-9]{1,3})", version)
        found.append(Cuda(int(runtime.group(1)), int(runtime.group(2))) if runtime else None)
        major = _MAJOR_ONLY.fullmatch(name)
        found.append(Cuda(int(major.group(1) or major.group(2))) if major else None)
    known = [c for c in found if c is not None]
    return max(known, key=_newest) if known else None


def _newest(cuda: Cuda) -> tuple[int, int]:
    return cuda.major, cuda.minor if cuda.minor is not None else -1


def _local(torch: str) -> Cuda | None:
    local = _LOCAL.fullmatch(torch)
    return Cuda(int(local.group(1)), int(local.group(2))) if local else None


def cuda_section(packages: dict[str, Any]) -> dict[str, dict[str, str]]:
    """lock.json's record of each platform's CUDA (platforms without one left out), from its
    ``{platform: {name: version}}``."""
    out = {}
    for platform, versions in sorted(packages.items()):
        found = cuda_of(versions) if isinstance(versions, dict) else None
        if found is not None:
            out[platform] = found.record()
    return out


def cuda_labels(packages: dict[str, dict[str, str]]) -> dict[str, str]:
    """The image's labels from each platform's ``{name: version}``: io.bakegen.cuda (13.0),
    .cuda.variant (cu130), .cuda.min-driver (580); when the platforms differ (one without CUDA
    says "none"), each platform's, joined: linux/amd64=13.0,linux/arm64=none."""
    records = {p: (c.record() if (c := cuda_of(v)) else None) for p, v in sorted(packages.items())}
    if not any(records.values()):
        return {}
    labels = {}
    for key, label in (("version", "io.bakegen.cuda"), ("variant", "io.bakegen.cuda.variant"),
                       ("min_driver", "io.bakegen.cuda.min-driver")):
        values = {p: (r[key] if r else "none") for p, r in records.items()}
        same = set(values.values())
        joined = ",".join(f"{p}={v}" for p, v in values.items())
        labels[label] = same.pop() if len(same) == 1 else joined
    return labels
