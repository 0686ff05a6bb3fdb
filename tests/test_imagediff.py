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


import json  # noqa: E402

import pytest  # noqa: E402

from bakegen import imagediff  # noqa: E402
from bakegen.errors import BakegenError  # noqa: E402

DIGEST = "sha256:" + "a" * 64
LAYER = {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": DIGEST, "size": 10}


@pytest.mark.parametrize("served", [
    {"manifests": 5},
    {"manifests": [{"platform": {"os": "linux", "architecture": "amd64"}, "digest": "sha256:../../../v2/x/manifests/y", "size": 1}]},
    {"config": {"digest": DIGEST, "size": 1}, "layers": None},
    {"config": {"digest": DIGEST, "size": "abc"}, "layers": []},
    {"config": {"digest": DIGEST, "size": 1}, "layers": [{**LAYER, "size": -5}]},
    {"config": {"digest": DIGEST, "size": 1}, "layers": [{**LAYER, "size": 10 ** 400}]},
    {"config": {"digest": DIGEST, "size": 1}, "layers": [{**LAYER, "size": 1.5}]},
    {"config": {"digest": DIGEST, "size": 1}, "layers": [{**LAYER, "digest": "sha256:../x"}]},
])
def test_a_crafted_manifest_is_one_error_line(monkeypatch, served):
    calls = []

    def read(reference):
        calls.append(reference)
        return json.dumps(served).encode(), "sha256:" + "0" * 64

    monkeypatch.setattr(imagediff, "read_manifest", read)
    monkeypatch.setattr(imagediff, "_config", lambda repo, digest: {"history": []})
    with pytest.raises(BakegenError, match="a manifest of another shape"):
        imagediff.fetch_image("r.test/acme/base:latest", "linux/amd64")
    assert all(".." not in c for c in calls)  # a crafted digest never reaches skopeo


def test_a_lock_s_crafted_base_reference_never_reaches_the_picture():
    from bakegen.graph import _without_digest

    assert _without_digest('x"] ; click n0 "javascript:alert(1)') is None
    assert _without_digest("python:3.13-slim@sha256:" + "1" * 64) == "python:3.13-slim"


def test_an_index_without_the_platform_is_not_built(monkeypatch):
    served = {"manifests": [{"platform": "linux/amd64", "digest": DIGEST, "size": 1}]}
    monkeypatch.setattr(imagediff, "read_manifest", lambda ref: (json.dumps(served).encode(), DIGEST))
    assert imagediff.fetch_image("r.test/acme/base:latest", "linux/amd64") is None
