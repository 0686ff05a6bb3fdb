"""Reviewing a lock update: the size and layer figures of `bakegen diff --registry` against the registry's own
manifests and layers.

tests/cases/review holds two committed lock states of a small graph (base: six, packaging; kid: idna), a real
upgrade resolved against PyPI once (`bakegen lock -E python`). Both are built and pushed to the local registry; the
diff between them is measured, and each figure is computed again here, from the manifests and the decompressed
layers, by a code path of the test's own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
import uuid

import pytest
import zstandard
from conftest import CASES

from e2e.conftest import bakegen, registry_get

pytestmark = pytest.mark.e2e


def git(root, *args):
    subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
                   check=True, capture_output=True)


def image(repo: str, reference: str) -> dict:
    index, _ = registry_get(repo, reference)
    digest = next(m["digest"] for m in index["manifests"] if m["platform"]["os"] == "linux")
    return registry_get(repo, digest)[0]


def uncompressed(repo: str, digest: str) -> int:
    host, _, path = repo.partition("/")
    url = f"http://{host.replace('localhost', '127.0.0.1')}/v2/{path}/blobs/{digest}"
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=60) as resp:
        return len(zstandard.ZstdDecompressor().stream_reader(resp).read())


@pytest.fixture(scope="module")
def reviewed(engine, registry, tmp_path_factory):
    root = tmp_path_factory.mktemp("review")
    shutil.copytree(CASES / "review" / "before", root, dirs_exist_ok=True)
    assert bakegen(root, "generate").returncode == 0  # the fixture holds the stacks and locks only
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "before")
    repo = f"{registry}/bakegen-review-{uuid.uuid4().hex[:8]}"
    build = ["build", "--push", "--registry", repo, "--base-image", f"base={engine.standin}", "--ca-bundle", engine.ca_bundle,
             "--progress", "quiet"]
    out = bakegen(root, *build)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    shutil.rmtree(root / "locks")
    shutil.copytree(CASES / "review" / "after" / "locks", root / "locks")
    assert bakegen(root, "generate").returncode == 0
    assert bakegen(root, "check").returncode == 0, "the committed after state is current"
    # as the upgrade workflow builds it: tagged upgrade-*, the images users pull keep their tags
    out = bakegen(root, *build, "--tag-prefix", "upgrade-", "--metadata-file", str(root / "new.json"))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    diff = bakegen(root, "diff", "HEAD", "--registry", repo, "--metadata", str(root / "new.json"), "--format", "json")
    assert diff.returncode == 0, diff.stderr
    markdown = bakegen(root, "diff", "HEAD", "--registry", repo, "--metadata", str(root / "new.json"), "--format", "markdown")
    assert markdown.returncode == 0, markdown.stderr
    return root, repo, json.loads(diff.stdout), markdown.stdout


@pytest.mark.parametrize("stack", ["base", "kid"])
def test_the_figures_are_the_registry_s(reviewed, stack):
    root, repo, doc, _ = reviewed
    (figures,) = doc["images"][stack]["figures"]
    old_lock = json.loads(subprocess.run(["git", "-C", str(root), "show", f"HEAD:locks/{stack}/lock.json"], capture_output=True,
                                         text=True, check=True).stdout)
    assert figures["old"].startswith(f"{repo}/{stack}:") and old_lock["fingerprint"][7:19] in figures["old"]
    old = image(f"{repo}/{stack}", figures["old"].rsplit(":", 1)[1])
    new = image(f"{repo}/{stack}", figures["new"].split("@")[1])
    old_layers = {x["digest"] for x in old["layers"]}
    new_only = [x for x in new["layers"] if x["digest"] not in old_layers]
    gone = [x for x in old["layers"] if x["digest"] not in {y["digest"] for y in new["layers"]}]
    assert [x["digest"] for x in figures["changed_layers"]] == [x["digest"] for x in new_only] and new_only
    assert figures["download_bytes"] == sum(x["size"] for x in new_only) + new["config"]["size"]
    expected = sum(uncompressed(f"{repo}/{stack}", x["digest"]) for x in new_only)
    expected -= sum(uncompressed(f"{repo}/{stack}", x["digest"]) for x in gone)
    assert figures["size_change_bytes"] == expected
    print(f"{stack}: {len(new_only)} of {len(new['layers'])} layers change ({[x['step'] for x in figures['changed_layers']]}), "
          f"{figures['download_bytes']} bytes downloaded again, image size {figures['size_change_bytes']:+d} bytes")


def test_the_changed_layers_are_named_by_their_plan_step(reviewed):
    _, _, doc, _ = reviewed
    steps = {x["step"] for s in ("base", "kid") for x in doc["images"][s]["figures"][0]["changed_layers"]}
    assert any(s.lower().startswith("python packages") for s in steps), steps
    assert not any(s.startswith("layer ") for s in steps), steps  # the history lined up with the plan


def test_an_image_the_registry_lacks_is_not_built(reviewed):
    root, repo, _, _ = reviewed
    out = bakegen(root, "diff", "HEAD", "--registry", f"{repo}-nothing", "--format", "json")
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)["images"]["base"]["figures"][0]
    assert figures["download_bytes"] is None and figures["note"].startswith("not built: ")


def test_the_pull_request_body_shows_the_figures_and_the_picture(reviewed):
    _, _, _, markdown = reviewed
    assert "### What users download again" in markdown and "| `kid` | linux/amd64 |" in markdown
    assert "```mermaid" in markdown and "class n0,n1 changed" in markdown
