from __future__ import annotations

import pytest
from fakes import FakeApt, FakeImages, FakeResolver, lock_project

from bakegen.errors import ResolutionError, StaleError
from bakegen.locker import Resolvers, Upgrades, lock_stacks
from bakegen.project import load_stacks
from bakegen.staleness import current_locks

BASE = 'name = "base"\ndescription = "b"\nbase = "python:3.13-slim"\n[python]\nversion = "3.13"\npackages = ["jupyterlab<4.3"]\n'
SCIPY = 'name = "scipy"\ndescription = "s"\nextends = "base"\n[python]\npackages = ["pandas", "packaging"]\n'
GEO = 'name = "geo"\ndescription = "g"\nextends = "scipy"\n[python]\npackages = ["ipyleaflet"]\n'


def lock(root, resolver, names=None, images=None, upgrade=False):
    outcomes = lock_project(root, python=resolver, image=images or FakeImages(), names=names, upgrade=upgrade)
    return {o.stack: o for o in outcomes}


def test_child_is_constrained_by_parent_and_lists_only_new_packages(project):
    root = project({"base": BASE, "scipy": SCIPY})
    fake = FakeResolver()
    out = lock(root, fake)
    base = out["base"].lock.parts["python"].by_name()
    scipy = out["scipy"].lock.parts["python"].by_name()
    # pip is locked with the root (python.pip defaults to true), from an input of its own
    assert {k: p.version for k, p in base.items()} == {"jupyterlab": "4.2.0", "tornado": "6.4", "packaging": "24.1", "jupyter-server": "2.14.0", "pip": "25.2"}
    assert [label for label, _ in fake.calls[0].inputs] == ["stacks/base.toml", "stacks/base.toml [python] pip"]
    # packaging is requested again by scipy but stays in base's lock only
    assert set(scipy) == {"pandas", "numpy", "python-dateutil", "six"}
    scipy_request = fake.calls[1]
    assert scipy_request.constraints[0][0] == "locks/base/requirements.txt"
    assert {p.key for p in scipy_request.constraints[0][1]} == set(base)
    assert [label for label, _ in scipy_request.inputs] == ["stacks/base.toml", "stacks/scipy.toml"]
    assert "locks/base/requirements.txt" in (root / "locks/scipy/requirements.txt").read_text()


def test_child_can_never_move_a_parent_pin(project):
    # base pins tornado 6.2 (jupyterlab<4.3 allows it when capped); the child needs >= 6.4
    root = project({
        "base": BASE.replace('"jupyterlab<4.3"', '"jupyterlab<4.3", "tornado<6.4"'),
        "kid": 'name = "kid"\ndescription = "k"\nextends = "base"\n[python]\npackages = ["needs-new-tornado"]\n',
    })
    with pytest.raises(ResolutionError, match="tornado"):
        lock(root, FakeResolver())
    assert not (root / "locks").exists()


def test_moved_pin_from_a_resolver_is_refused(project):
    class Mover(FakeResolver):
        def resolve(self, request):
            pins = super().resolve(request)
            if request.constraints:  # misbehave: ignore the parent's pin
                pins = [p.__class__(p.key, "0.0.1", p.hashes, p.via) if p.key == "packaging" else p for p in pins]
            return pins

    root = project({"base": BASE, "scipy": SCIPY})
    with pytest.raises(ResolutionError, match="moved packaging from 24.1"):
        lock(root, Mover())


def test_unchanged_stacks_are_not_resolved_again(project):
    root = project({"base": BASE, "scipy": SCIPY, "geo": GEO})
    lock(root, FakeResolver())
    before = {p: (root / p).read_text() for p in ("locks/base/lock.json", "locks/geo/requirements.txt")}
    fake = FakeResolver()
    out = lock(root, fake)
    assert fake.calls == []
    assert not any(o.changed for o in out.values())
    assert before == {p: (root / p).read_text() for p in before}


def test_changing_a_parent_relocks_its_children(project):
    root = project({"base": BASE, "scipy": SCIPY, "geo": GEO})
    lock(root, FakeResolver())
    (root / "stacks/base.toml").write_text(BASE.replace("jupyterlab<4.3", "jupyterlab"))
    fake = FakeResolver()
    out = lock(root, fake)
    assert [o for o in out if out[o].changed] == ["base", "scipy", "geo"]
    # like pip-compile, a relaxed requirement keeps the existing pin; --upgrade moves it
    assert out["base"].lock.parts["python"].by_name()["jupyterlab"].version == "4.2.0"
    out = lock(root, FakeResolver(), upgrade=True)
    assert out["base"].lock.parts["python"].by_name()["jupyterlab"].version == "4.3.1"


def test_changing_a_leaf_relocks_only_the_leaf(project):
    root = project({"base": BASE, "scipy": SCIPY, "geo": GEO})
    lock(root, FakeResolver())
    (root / "stacks/geo.toml").write_text(GEO.replace('["ipyleaflet"]', '["ipyleaflet", "six"]'))
    fake = FakeResolver()
    out = lock(root, fake)
    assert [o for o in out if out[o].changed] == ["geo"]
    assert len(fake.calls) == 1


def test_locking_one_stack_locks_its_parents_only(project):
    root = project({"base": BASE, "scipy": SCIPY, "geo": GEO})
    out = lock(root, FakeResolver(), names=["scipy"])
    assert list(out) == ["base", "scipy"]
    assert not (root / "locks/geo").exists()


def test_stack_without_python_packages_needs_no_resolver(project):
    root = project({"base": BASE, "empty": 'name = "empty"\ndescription = "e"\nextends = "base"\n'})
    fake = FakeResolver()
    out = lock(root, fake)
    assert out["empty"].lock.parts["python"].pins == [] and len(fake.calls) == 1


def test_current_locks_reports_stale_stacks(project):
    root = project({"base": BASE, "scipy": SCIPY})
    graph = load_stacks(root)
    with pytest.raises(StaleError) as exc:
        current_locks(graph)
    assert exc.value.message == "locks are out of date: base (no lock), scipy (parent 'base' is not locked)"
    lock(root, FakeResolver())
    assert set(current_locks(load_stacks(root))) == {"base", "scipy"}
    (root / "stacks/scipy.toml").write_text(SCIPY.replace('"packaging"', '"six"'))
    with pytest.raises(StaleError, match=r"scipy \(stacks/scipy.toml or its parent's lock changed since it was locked\)"):
        current_locks(load_stacks(root))


def test_failed_resolution_writes_nothing(project):
    root = project({"base": BASE, "bad": 'name = "bad"\ndescription = "b"\nextends = "base"\n[python]\npackages = ["no-such-thing"]\n'})
    with pytest.raises(ResolutionError, match="no-such-thing"):
        lock(root, FakeResolver())
    assert not (root / "locks").exists()


def test_base_image_is_pinned_and_kept_until_upgrade(project):
    root = project({"base": BASE, "scipy": SCIPY})
    registry = FakeImages({"python:3.13-slim": "sha256:" + "a" * 64})
    out = lock(root, FakeResolver(), images=registry)
    assert out["base"].lock.parts["image"].pinned == "python:3.13-slim@sha256:" + "a" * 64
    assert out["scipy"].lock.parts.get("image") is None
    assert set(out["base"].lock.parts["image"].platforms) == {"linux/amd64"}
    # a new image is pushed under the same tag
    registry.digests["python:3.13-slim"] = "sha256:" + "b" * 64
    (root / "stacks/base.toml").write_text(BASE.replace("jupyterlab<4.3", "jupyterlab<4.4"))
    out = lock(root, FakeResolver(), images=registry)
    assert out["base"].changed and out["base"].lock.parts["image"].digest == "sha256:" + "a" * 64  # a plain lock keeps it
    out = lock(root, FakeResolver(), images=registry, upgrade=True)
    assert out["base"].lock.parts["image"].digest == "sha256:" + "b" * 64


def test_changing_the_base_ref_resolves_it_again(project):
    root = project({"base": BASE})
    registry = FakeImages()
    lock(root, FakeResolver(), images=registry)
    (root / "stacks/base.toml").write_text(BASE.replace("python:3.13-slim", "python:3.13-slim-trixie"))
    out = lock(root, FakeResolver(), images=registry)
    assert registry.calls == ["python:3.13-slim", "python:3.13-slim-trixie"]
    assert out["base"].lock.parts["image"].ref == "python:3.13-slim-trixie"


def test_digest_pinned_base_without_registry_keeps_the_digest_and_warns(project):
    from bakegen.errors import NetworkError

    class Offline(FakeImages):
        def resolve(self, ref, platforms):
            raise NetworkError("cannot reach the registry registry-1.docker.io: refused")

    digest = "sha256:" + "c" * 64
    root = project({"base": BASE.replace('"python:3.13-slim"', f'"python:3.13-slim@{digest}"')})
    out = lock(root, FakeResolver(), images=Offline())
    assert out["base"].lock.parts["image"].pinned == f"python:3.13-slim@{digest}"
    assert out["base"].warnings and "without per-platform digests" in out["base"].warnings[0]
    tag_root = project({"base": BASE})
    with pytest.raises(NetworkError):
        lock(tag_root, FakeResolver(), images=Offline())


def test_multi_platform_stacks_lock_each_platform(project):
    root = project({"base": BASE.replace('base = "python:3.13-slim"', 'base = "python:3.13-slim"\nplatforms = ["linux/amd64", "linux/arm64"]'), "scipy": SCIPY})
    fake = FakeResolver()
    out = lock(root, fake)
    assert [c.platform for c in fake.calls] == ["x86_64-manylinux_2_28", "aarch64-manylinux_2_28"] * 2
    assert out["scipy"].lock.platforms == ["linux/amd64", "linux/arm64"]
    assert (root / "locks/scipy/requirements-arm64.txt").exists()
    assert fake.calls[3].constraints[0][0] == "locks/base/requirements-arm64.txt"


def test_upgrade_package_moves_one_pin_and_relocks_children(project):
    root = project({"base": BASE, "scipy": SCIPY, "geo": GEO})
    old_index = {k: v for k, v in FakeResolver().index.items()}
    old_index["tornado"] = {"6.2": []}
    old_index["packaging"] = {"24.1": []}
    lock(root, FakeResolver(old_index))
    before = {p: (root / p).read_text() for p in ("locks/base/requirements.txt", "locks/scipy/requirements.txt", "locks/geo/requirements.txt")}
    # new releases appear; a plain lock moves nothing
    assert not any(o.changed for o in lock(root, FakeResolver()).values())
    out = lock(root, FakeResolver(), upgrade=Upgrades.parse(False, ["tornado"]))
    assert [n for n in out if out[n].changed] == ["base", "scipy", "geo"]  # children relocked against the new parent
    base = out["base"].lock.parts["python"].by_name()
    assert base["tornado"].version == "6.4" and base["packaging"].version == "24.1" and base["jupyterlab"].version == "4.2.0"
    after = (root / "locks/base/requirements.txt").read_text()
    changed = [ln for ln in after.splitlines() if ln not in before["locks/base/requirements.txt"].splitlines()]
    assert [ln for ln in changed if not ln.startswith(("#", "    "))] == ["tornado==6.4 \\"]
    assert (root / "locks/scipy/requirements.txt").read_text() == before["locks/scipy/requirements.txt"]


def test_upgrade_package_to_a_version(project):
    root = project({"base": BASE})
    lock(root, FakeResolver())
    out = lock(root, FakeResolver(), upgrade=Upgrades.parse(False, ["tornado==6.2"]))
    assert out["base"].lock.parts["python"].by_name()["tornado"].version == "6.2"


def test_upgrade_package_unknown_name_is_an_error(project):
    root = project({"base": BASE})
    lock(root, FakeResolver())
    with pytest.raises(Exception, match=r"--upgrade-package nope: no locked package or base image \(image, tools, python, apt, npm, apps, files\) is named 'nope'"):
        lock(root, FakeResolver(), upgrade=Upgrades.parse(False, ["nope"]))


def test_upgrade_package_for_the_base_image(project):
    root = project({"base": BASE, "scipy": SCIPY})
    registry = FakeImages({"python:3.13-slim": "sha256:" + "a" * 64})
    lock(root, FakeResolver(), images=registry)
    registry.digests["python:3.13-slim"] = "sha256:" + "b" * 64
    out = lock(root, FakeResolver(), images=registry, upgrade=Upgrades.parse(False, ["python:3.13-slim"]))
    assert out["base"].lock.parts["image"].digest == "sha256:" + "b" * 64
    assert out["base"].lock.parts["python"].by_name() == lock(root, FakeResolver())["base"].lock.parts["python"].by_name()


def test_upgrade_package_for_apt_keeps_the_other_apt_pins(project):
    root = project({"base": BASE + '[apt]\nsuite = "trixie"\npackages = ["tini", "less"]\n'})
    archive = FakeApt({"tini": ["0.18"], "less": ["600"]})
    lock_project(root, apt=archive)
    archive.versions = {"tini": ["0.18", "0.19"], "less": ["600", "668"]}  # new versions appear
    out = lock_stacks(load_stacks(root), Resolvers(python=FakeResolver(), image=FakeImages(), apt=archive), upgrade=Upgrades.parse(False, ["tini"]))
    assert out[0].lock.parts["apt"].packages("amd64") == {"tini": "0.19", "less": "600"}
