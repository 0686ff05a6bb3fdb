"""What the built images weigh: size, layers, what each layer installs, and the gain over the parent."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from bakegen import proc
from bakegen.errors import BakegenError, CommandError
from bakegen.render.dockerfile import dockerfile_path
from bakegen.stack import StackGraph

# What a Dockerfile step installs, from its history line
_STEPS = [
    (re.compile(r"apt-install\.sh \S+ runtime"), "apt packages (apt.lock)"),
    (re.compile(r"apt-install\.sh \S+ build"), "apt build tools (apt.lock)"),
    (re.compile(r"COPY /opt/venv /opt/venv"), "Python virtualenv (requirements.txt)"),
    (re.compile(r"COPY /opt/bakegen/staging/ /opt/venv/"), "Python packages (requirements.txt)"),
    (re.compile(r"-m pip install .*--require-hashes"), "Python packages into the base image's Python"),
    (re.compile(r"COPY /opt/npm/"), "npm packages (package-lock.json)"),
    (re.compile(r"pip-constraints"), "pip constraints (the image's pins)"),
    (re.compile(r"useradd|install -d"), "user and ~/work"),
    (re.compile(r"bakegen-start"), "entrypoint script"),
    (re.compile(r"bakegen-healthcheck"), "healthcheck script"),
    (re.compile(r"^WORKDIR"), "working directory"),
]


@dataclass
class Layer:
    size: int
    step: str
    what: str


@dataclass
class ImageReport:
    stack: str
    image: str
    parent: str | None
    compressed: int  # what a pull downloads
    layers: list[Layer] = field(default_factory=list)
    dockerfile_lines: int = 0
    parent_size: int | None = None
    parent_layers: int | None = None
    platform: str = "linux/amd64"

    @property
    def size(self) -> int:
        """On disk: the sum of the uncompressed layers."""
        return sum(layer.size for layer in self.layers)

    @property
    def added_size(self) -> int | None:
        """The child's own layers (the parent's are shared)."""
        return None if self.parent_layers is None else sum(layer.size for layer in self.layers[self.parent_layers:])


def _what(step: str) -> str:
    for pattern, label in _STEPS:
        if pattern.search(step):
            return label
    return "base image" if step.startswith(("/bin/sh -c #(nop)", "ADD", "FROM")) or not step else "other"


def inspect(image: str, platform: str | None = None) -> tuple[int, list[Layer]]:
    """Size and layers of ``image``; of one platform's image when ``platform`` is given (a multi-platform image)."""
    plat = ["--platform", platform] if platform else []
    try:
        info = json.loads(proc.run(["docker", "image", "inspect", *plat, image]).stdout)[0]
        hist = [json.loads(line) for line in proc.run(["docker", "history", *plat, "--no-trunc", "--human=false", "--format", "{{json .}}", image]).stdout.splitlines() if line.strip()]
    except CommandError:
        where = f" for {platform}" if platform else ""
        raise BakegenError(f"image {image} not found{where}", hint="build it first (bakegen build --load), with the same --registry") from None
    layers = []
    for h in reversed(hist):  # oldest first
        size = int(h.get("Size", 0) or 0)
        step = h.get("CreatedBy", "")
        if size == 0 and "COPY" not in step and "RUN" not in step:
            continue  # metadata-only steps (ENV, USER, ...)
        layers.append(Layer(size, step, _what(step)))
    return int(info.get("Size", 0)), layers


def build_report(graph: StackGraph, registry: str = "", tag: str = "latest") -> list[ImageReport]:
    """One report per stack and platform (a multi-platform stack's images are inspected one by one)."""
    reports: dict[tuple[str, str], ImageReport] = {}
    for name in graph.order:
        image = f"{registry.rstrip('/')}/{name}:{tag}" if registry else f"{name}:{tag}"
        platforms = graph.platforms(name)
        for platform in platforms:
            reports[name, platform] = _report_one(graph, name, image, platform if len(platforms) > 1 else None, reports)
    return list(reports.values())


def _report_one(graph: StackGraph, name: str, image: str, platform: str | None, done: dict[tuple[str, str], ImageReport]) -> ImageReport:
    compressed, layers = inspect(image, platform)
    parent = graph.stacks[name].extends
    dockerfile = graph.root / dockerfile_path(name)
    lines = dockerfile_lines(dockerfile) if dockerfile.exists() else 0
    r = ImageReport(name, image, parent, compressed, layers, lines, platform=platform or graph.platforms(name)[0])
    mine = done.get((parent, r.platform)) if parent else None
    if mine:
        r.parent_size, r.parent_layers = mine.size, len(mine.layers)
    return r


def mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f} MB"


def to_text(reports: list[ImageReport]) -> str:
    out = []
    for r in reports:
        head = f"{r.stack} ({r.image}, {r.platform}): {mb(r.size)} on disk ({mb(r.compressed)} to download), {len(r.layers)} layers, {r.dockerfile_lines} Dockerfile lines"
        if r.parent:
            head += f"; +{mb(r.added_size)} and +{len(r.layers) - (r.parent_layers or 0)} layers over {r.parent}"
        out.append(head)
        start = r.parent_layers or 0
        for i, layer in enumerate(r.layers):
            if i < start:
                continue  # the parent's layers, shared byte for byte
            out.append(f"  {mb(layer.size):>10}  {layer.what}")
        if start:
            out.append(f"  {mb(r.parent_size):>10}  {start} layers shared with {r.parent}")
    return "\n".join(out) + "\n"


def to_json(reports: list[ImageReport]) -> str:
    return json.dumps([
        {
            "stack": r.stack, "image": r.image, "platform": r.platform, "parent": r.parent, "size": r.size, "compressed": r.compressed, "layers": len(r.layers),
            "dockerfile_lines": r.dockerfile_lines, "added_size": r.added_size,
            "layer_sizes": [{"size": layer.size, "installs": layer.what} for layer in r.layers],
        }
        for r in reports
    ], indent=2) + "\n"


def dockerfile_lines(path: Path) -> int:
    """Instruction lines (continuations count), without comments and blank lines."""
    return sum(1 for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#"))
