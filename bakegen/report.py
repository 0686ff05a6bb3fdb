"""What the built images weigh: size, layers, what each layer installs, and the gain over the
parent."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from bakegen import proc
from bakegen import registry as ordered
from bakegen.errors import BakegenError, CommandError
from bakegen.files import read_output
from bakegen.plan import DockerfilePlan, dockerfile_path, plan_dockerfile
from bakegen.stack import StackGraph
from bakegen.staleness import current_locks


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
        return (
            None
            if self.parent_layers is None
            else sum(layer.size for layer in self.layers[self.parent_layers :])
        )


def inspect(image: str, platform: str | None = None) -> tuple[int, list[tuple[int, str]]]:
    """Compressed size and history of ``image`` (oldest first: (size, instruction) per instruction);
    of one platform's image when ``platform`` is given (a multi-platform image)."""
    plat = ["--platform", platform] if platform else []
    try:
        info = json.loads(proc.run(["docker", "image", "inspect", *plat, image]).stdout)[0]
        hist = [
            json.loads(line)
            for line in proc.run(
                [
                    "docker",
                    "history",
                    *plat,
                    "--no-trunc",
                    "--human=false",
                    "--format",
                    "{{json .}}",
                    image,
                ]
            ).stdout.splitlines()
            if line.strip()
        ]
    except CommandError:
        where = f" for {platform}" if platform else ""
        raise BakegenError(
            f"image {image} not found{where}",
            hint="build it first (bakegen build --load), with the same --registry",
        ) from None
    return int(info.get("Size", 0)), [
        (int(h.get("Size", 0) or 0), h.get("CreatedBy", "")) for h in reversed(hist)
    ]


def label_layers(
    history: list[tuple[int, str]], plan: DockerfilePlan, inherited: list[Layer] | None
) -> list[Layer]:
    """The image's layers, named from its plan: BuildKit writes one history entry per instruction
    of the final stage, so the last entries are the plan's steps, in order. What comes before is the
    parent's (``inherited``, as its own report named them) or the base image's."""
    steps = plan.final.steps
    if len(history) < len(steps):
        raise BakegenError(
            f"{plan.stack}: the image has fewer instructions than its Dockerfile",
            hint="rebuild it (bakegen build --load) from the current locks",
        )
    before, own = history[: len(history) - len(steps)], history[len(history) - len(steps) :]
    layers = (
        list(inherited)
        if inherited is not None
        else [
            Layer(size, step, "base image") for size, step in before if size or _makes_layer(step)
        ]
    )
    layers += [
        Layer(size, text, step.layer)
        for (size, text), step in zip(own, steps)
        if step.layer is not None
    ]
    return layers


def _makes_layer(step: str) -> bool:
    return step.startswith(("RUN", "COPY", "ADD", "/bin/sh -c")) and "#(nop)" not in step


def build_report(graph: StackGraph, registry: str = "", tag: str = "latest") -> list[ImageReport]:
    """One report per stack and platform (a multi-platform stack's images are inspected one by
    one)."""
    locks = current_locks(graph)
    reports: dict[tuple[str, str], ImageReport] = {}
    for name in graph.order:
        image = f"{registry.rstrip('/')}/{name}:{tag}" if registry else f"{name}:{tag}"
        platforms = graph.platforms(name)
        plan = plan_dockerfile(graph, name, locks, ordered.ECOSYSTEMS)
        for platform in platforms:
            reports[name, platform] = _report_one(
                graph, plan, image, platform if len(platforms) > 1 else None, reports
            )
    return list(reports.values())


def _report_one(
    graph: StackGraph,
    plan: DockerfilePlan,
    image: str,
    platform: str | None,
    done: dict[tuple[str, str], ImageReport],
) -> ImageReport:
    name = plan.stack
    compressed, history = inspect(image, platform)
    parent = graph.stacks[name].extends
    mine = done.get((parent, platform or graph.platforms(name)[0])) if parent else None
    layers = label_layers(history, plan, mine.layers if mine else None)
    lines = dockerfile_lines(graph.root, dockerfile_path(name))
    r = ImageReport(
        name,
        image,
        parent,
        compressed,
        layers,
        lines,
        platform=platform or graph.platforms(name)[0],
    )
    if mine:
        r.parent_size, r.parent_layers = mine.size, len(mine.layers)
    return r


def mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f} MB"


def to_text(reports: list[ImageReport]) -> str:
    out = []
    for r in reports:
        head = f"{r.stack} ({r.image}, {r.platform}): {mb(r.size)} on disk "
        head += f"({mb(r.compressed)} to download), {len(r.layers)} layers, "
        head += f"{r.dockerfile_lines} Dockerfile lines"
        if r.parent:
            own = len(r.layers) - (r.parent_layers or 0)
            head += f"; +{mb(r.added_size)} and +{own} layers over {r.parent}"
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
    return (
        json.dumps(
            [
                {
                    "stack": r.stack,
                    "image": r.image,
                    "platform": r.platform,
                    "parent": r.parent,
                    "size": r.size,
                    "compressed": r.compressed,
                    "layers": len(r.layers),
                    "dockerfile_lines": r.dockerfile_lines,
                    "added_size": r.added_size,
                    "layer_sizes": [
                        {"size": layer.size, "installs": layer.what} for layer in r.layers
                    ],
                }
                for r in reports
            ],
            indent=2,
        )
        + "\n"
    )


def dockerfile_lines(root: Path, rel: str) -> int:
    """Instruction lines (continuations count), without comments and blank lines, of a generated
    Dockerfile."""
    return sum(
        1
        for ln in (read_output(root, rel) or "").splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    )
