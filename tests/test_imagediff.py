"""The diff's image figures without a registry: content tags as the bake file writes them, layers named by the plan."""

from __future__ import annotations

from conftest import REPO

from bakegen import registry as ordered
from bakegen.imagediff import Image, name_layers, references
from bakegen.plan import plan_dockerfile
from bakegen.project import load_stacks
from bakegen.render.bake import image_names
from bakegen.staleness import current_locks


def test_the_old_images_are_named_by_the_content_tags_the_bake_file_gives():
    graph = load_stacks(REPO)
    locks = current_locks(graph)
    names = image_names(graph, locks, "r.test/acme", "pr-1-")
    assert references(locks, "r.test/acme", "pr-1-") == {s: names[s][-1] for s in graph.order}


def test_layers_are_named_by_the_plan_s_final_stage():
    graph = load_stacks(REPO)
    plan = plan_dockerfile(graph, "scipy", current_locks(graph), ordered.ECOSYSTEMS)
    steps = [step.layer for step in plan.final.steps]
    own = [(step is not None, f"instruction {i}") for i, step in enumerate(steps)]
    history = [(True, "parent layer 1"), (False, "ENV"), (True, "parent layer 2"), *own]
    layers = [(f"sha256:{i:064x}", 100 + i, "zstd") for i in range(2 + sum(1 for s in steps if s is not None))]
    named = name_layers(Image("r/scipy@sha256:" + "0" * 64, layers, history, 10), steps, "base")
    assert [x.step for x in named] == ["from base", "from base", *[s for s in steps if s is not None]]
    short = name_layers(Image("r", layers[:-1], history, 10), steps, "base")
    assert [x.step for x in short][:2] == ["layer 1", "layer 2"]  # a history that does not line up: numbered
