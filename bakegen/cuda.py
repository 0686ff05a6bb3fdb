"""The CUDA an image's Python packages were built for, read from its locked versions, and the
oldest NVIDIA driver that runs it.

Two ways a lock says it:

* a PyTorch index's local version: ``torch==2.11.0+cu130`` is CUDA 13.0 (``+cpu``: none);
* PyPI's CUDA wheels, which torch (and JAX's and CuPy's CUDA builds) pull in:
  ``nvidia-cuda-runtime==13.2.86`` (CUDA 13) or ``nvidia-cuda-runtime-cu12==12.8.90``.

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


@dataclass(frozen=True)
class Cuda:
    version: str  # major.minor: "13.0"

    @property
    def variant(self) -> str:
        """PyTorch's name for it: cu130."""
        return "cu" + self.version.replace(".", "")

    @property
    def min_driver(self) -> str:
        """The oldest NVIDIA driver that runs it ("unknown" for a CUDA newer than bakegen)."""
        return MIN_DRIVER.get(int(self.version.split(".")[0]), "unknown")

    def record(self) -> dict[str, str]:
        """In lock.json and the image's labels."""
        return {"version": self.version, "variant": self.variant, "min_driver": self.min_driver}


def cuda_of(packages: dict[str, str]) -> Cuda | None:
    """The CUDA of locked ``{name: version}`` (canonical names), or None."""
    local = _LOCAL.fullmatch(packages.get("torch", ""))
    if local:
        return Cuda(f"{int(local.group(1))}.{local.group(2)}")
    runtime = next((v for name, v in sorted(packages.items()) if _RUNTIME.fullmatch(name)), None)
    found = re.match(r"([0-9]+)\.([0-9]+)", runtime or "")
    return Cuda(f"{int(found.group(1))}.{int(found.group(2))}") if found else None


def cuda_section(packages: dict[str, Any]) -> dict[str, dict[str, str]]:
    """lock.json's record of each platform's CUDA (platforms without one left out), from its
    ``{platform: {name: version}}``."""
    out = {}
    for platform, versions in sorted(packages.items()):
        found = cuda_of(versions) if isinstance(versions, dict) else None
        if found is not None:
            out[platform] = found.record()
    return out


def cuda_labels(section: dict[str, dict[str, str]]) -> dict[str, str]:
    """The image's labels: io.bakegen.cuda (13.0), .cuda.variant (cu130), .cuda.min-driver (580);
    each platform's, joined, when they differ."""
    labels = {}
    for key, label in (("version", "io.bakegen.cuda"), ("variant", "io.bakegen.cuda.variant"),
                       ("min_driver", "io.bakegen.cuda.min-driver")):
        values = {f"{platform}={record[key]}" for platform, record in section.items()}
        plain = {record[key] for record in section.values()}
        if plain:
            labels[label] = plain.pop() if len(plain) == 1 else ",".join(sorted(values))
    return labels
