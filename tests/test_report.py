from __future__ import annotations

from pathlib import Path

import pytest

from bakegen.errors import BakegenError
from bakegen.plan import plan_dockerfile
from bakegen.project import load_stacks
from bakegen.registry import ECOSYSTEMS
from bakegen.report import ImageReport, Layer, label_layers, to_text
from bakegen.staleness import current_locks

ROOT = Path(__file__).resolve().parents[1]


def _history(plan, before):
    """A BuildKit history: what came before, then one entry per instruction of the final stage (sizes 1, 2, ...)."""
    return before + [(i + 1, step.text.split()[0]) for i, step in enumerate(plan.final.steps)]


def test_layers_are_named_from_the_plan_not_from_their_text():
    graph = load_stacks(ROOT)
    locks = current_locks(graph)
    base, geo = plan_dockerfile(graph, "base", locks, ECOSYSTEMS), plan_dockerfile(graph, "geo", locks, ECOSYSTEMS)
    layers = label_layers(_history(base, [(100, ""), (0, "ENV X=1")]), base, None)
    assert [layer.what for layer in layers] == ["base image", *base.layers()]
    assert "apt packages (apt.lock)" in base.layers() and "Python virtualenv (requirements.txt)" in base.layers()
    # a child: the parent's layers as its report named them, then its own
    inherited = [Layer(5, "", "from the parent")]
    kid = label_layers(_history(geo, [(7, "RUN x"), (8, "COPY y")]), geo, inherited)
    assert [layer.what for layer in kid] == ["from the parent", "npm packages (package-lock.json)", "Python packages (requirements.txt)", "pip constraints (the image's pins)"]
    assert [layer.size for layer in kid][1:] == [i + 1 for i, step in enumerate(geo.final.steps) if step.layer]


def test_an_image_older_than_its_plan_is_an_error():
    graph = load_stacks(ROOT)
    plan = plan_dockerfile(graph, "base", current_locks(graph), ECOSYSTEMS)
    with pytest.raises(BakegenError, match="fewer instructions"):
        label_layers([(1, "RUN x")], plan, None)


MB = 1_000_000


def test_text_shows_only_the_childs_own_layers():
    parent = ImageReport("base", "base:latest", None, 10 * MB, [Layer(100 * MB, "", "base image"), Layer(52_500_000, "", "Python virtualenv (requirements.txt)")], 30)
    child = ImageReport("kid", "kid:latest", "base", 12 * MB, parent.layers + [Layer(20_500_000, "", "Python packages (requirements.txt)")], 10, parent.size, 2)
    assert to_text([parent, child]).splitlines()[-3:] == [
        "kid (kid:latest, linux/amd64): 173.0 MB on disk (12.0 MB to download), 3 layers, 10 Dockerfile lines; +20.5 MB and +1 layers over base",
        "     20.5 MB  Python packages (requirements.txt)",
        "    152.5 MB  2 layers shared with base",
    ]
    assert child.added_size == 20_500_000
