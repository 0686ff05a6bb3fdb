"""The real resolvers against PyPI (marked network)."""

from __future__ import annotations

import sys

import pytest

from bakegen.errors import NetworkError, ResolutionError
from bakegen.resolvers.pins import PythonRequest
from bakegen.resolvers.python import PipToolsResolver, UvResolver

HOST_PY = "{}.{}".format(*sys.version_info[:2])
pytestmark = pytest.mark.network


def request(reqs, **kw):
    return PythonRequest(stack="demo", python_version=kw.pop("python_version", HOST_PY), inputs=[("stacks/demo.toml", reqs)], **kw)


def test_uv_and_pip_tools_give_the_same_pins():
    reqs = ["requests<2.33", "packaging<25", "six"]
    uv = {p.key: p.version for p in UvResolver().resolve(request(reqs))}
    pt = {p.key: p.version for p in PipToolsResolver().resolve(request(reqs))}
    assert uv == pt
    assert {"requests", "urllib3", "idna", "certifi", "charset-normalizer", "packaging", "six"} <= set(uv)


def test_both_backends_honour_parent_constraints():
    base = UvResolver().resolve(request(["urllib3<2"]))
    pinned = {p.key: p.version for p in base}["urllib3"]
    for backend in (UvResolver(), PipToolsResolver()):
        pins = backend.resolve(request(["requests"], constraints=[("locks/base/requirements.txt", base)]))
        got = {p.key: p for p in pins}
        assert got["urllib3"].version == pinned
        assert "-c locks/base/requirements.txt" in got["urllib3"].via


def test_uv_targets_another_python_and_hashes_every_pin():
    pins = UvResolver().resolve(request(["numpy>=2"], python_version="3.13"))
    assert pins and all(p.hashes and all(h.startswith("sha256:") for h in p.hashes) for p in pins)
    assert pins[0].via == ("-r stacks/demo.toml",)


def test_pip_tools_refuses_another_python():
    other = "3.13" if HOST_PY != "3.13" else "3.12"
    with pytest.raises(ResolutionError) as exc:
        PipToolsResolver().resolve(request(["six"], python_version=other))
    assert exc.value.message == f"demo: pip-compile resolves for the Python it runs in ({HOST_PY}), but the stack needs Python {other}"
    assert "--resolver uv" in exc.value.hint


@pytest.mark.parametrize("backend", [UvResolver, PipToolsResolver])
def test_unresolvable_package(backend):
    with pytest.raises(ResolutionError) as exc:
        backend().resolve(request(["bakegen-no-such-package-3f9a1c==1.0"]))
    assert exc.value.message.startswith("demo: cannot resolve Python packages: ")
    assert "bakegen-no-such-package-3f9a1c" in exc.value.message
    assert "No solution found" not in exc.value.message and "Traceback" not in exc.value.message


@pytest.mark.parametrize("backend", [UvResolver, PipToolsResolver])
def test_no_network(backend, monkeypatch):
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")
    with pytest.raises(NetworkError) as exc:
        backend().resolve(request(["six"], index_url="http://127.0.0.1:9/simple"))
    assert exc.value.message.startswith("cannot reach the package index http://127.0.0.1:9/simple: ")
    assert "refused" in exc.value.message
    assert "proxy" in exc.value.hint


def test_uv_resolves_for_arm64_without_running_it():
    pins = UvResolver().resolve(request(["numpy>=2"], python_version="3.13", platform="aarch64-manylinux_2_28"))
    assert [p.key for p in pins] == ["numpy"] and pins[0].hashes


def test_a_pin_without_a_wheel_for_the_platform_is_refused_unless_the_stack_allows_sdists():
    # pyzmq 19.0.2 has wheels for old CPythons only, and an sdist
    arm = dict(python_version="3.13", platform="aarch64-manylinux_2_28", target="linux/arm64")
    with pytest.raises(ResolutionError) as exc:
        UvResolver().resolve(request(["pyzmq==19.0.2"], **arm))
    assert exc.value.message.startswith("demo: pyzmq has no wheel for Python 3.13 on linux/arm64 (")
    assert "sdists = true" in exc.value.hint
    pins = UvResolver().resolve(request(["pyzmq==19.0.2"], allow_sdists=True, **arm))
    assert {p.key: p.version for p in pins}["pyzmq"] == "19.0.2"
    # without a pin, uv picks the newest version that has a wheel
    assert {p.key for p in UvResolver().resolve(request(["pyzmq>=19"], **arm))} == {"pyzmq"}


def test_upgrade_one_package_keeps_every_other_pin_byte_identical(project):
    """The real uv backend, through the CLI: pip-compile's existing-pin preference."""
    from bakegen.cli import main

    stack = 'name = "base"\ndescription = "b"\nbase = "localhost:9/py@sha256:' + "9" * 64 + '"\n[python]\nversion = "3.11"\npackages = ["requests", "urllib3%s"]\n'
    root = project({"base": stack % "<2.2"})
    assert main(["-C", str(root), "lock"]) == 0
    old = (root / "locks/base/requirements.txt").read_text()
    (root / "stacks/base.toml").write_text(stack % "")
    assert main(["-C", str(root), "lock"]) == 0
    kept = (root / "locks/base/requirements.txt").read_text()
    assert [ln for ln in kept.splitlines() if ln.startswith("urllib3==")] == [ln for ln in old.splitlines() if ln.startswith("urllib3==")]
    assert main(["-C", str(root), "lock", "--upgrade-package", "urllib3"]) == 0
    new = (root / "locks/base/requirements.txt").read_text()

    def blocks(text):
        out, cur = {}, None
        for ln in text.splitlines():
            if ln and not ln.startswith((" ", "#")):
                cur = ln.split("==")[0]
            if cur:
                out.setdefault(cur, []).append(ln)
        return out

    before, after = blocks(kept), blocks(new)
    assert before["urllib3"] != after["urllib3"]
    assert {k: v for k, v in before.items() if k != "urllib3"} == {k: v for k, v in after.items() if k != "urllib3"}
