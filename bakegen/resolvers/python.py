"""Resolve Python requirements to hashed pins, for the image's Python, not the host's.

Two backends share one domain call, :meth:`PythonResolver.resolve` (the request, the pins and
the interface are in :mod:`bakegen.resolvers.pins`):

* ``uv`` (default): ``uv pip compile`` targets any Python version and platform
  with ``--python-version`` / ``--python-platform``;
* ``pip-tools``: ``pip-compile`` resolves for the interpreter it runs in, so it
  refuses a stack whose Python differs from that interpreter.

Both ignore the machine's pip/uv configuration (find-links, extra indexes,
constraints): a lock must not depend on the machine that made it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import cache
from pathlib import Path

from bakegen import proc
from bakegen.errors import BakegenError, CommandError, NetworkError, ResolutionError, ToolError
from bakegen.net import tls_context
from bakegen.python_indexes import PROJECT, sources_project, uv_index_args
from bakegen.resolvers.pins import (
    Pin,
    PythonRequest,
    PythonResolver,
    parse_requirements,
)

# --- shared helpers -------------------------------------------------------------

_NETWORK_PATTERNS = (
    "Failed to fetch",
    "error sending request",
    "Connection refused",
    "dns error",
    "Name or service not known",
    "NewConnectionError",
    "Max retries exceeded",
    "timed out",
    "ProxyError",
    "SSLError",
    "certificate verify failed",
    "invalid peer certificate",
)
_NETWORK_HINT = ("check the network or proxy; behind a TLS-intercepting proxy set SSL_CERT_FILE to "
                 "its CA bundle; use --index-url for a mirror")


def _write_inputs(tmp: Path,
                  request: PythonRequest) -> tuple[list[str], list[str], dict[str, str]]:
    """Write one .in file per input and one constraints file per parent; map file names back to
    labels."""
    labels: dict[str, str] = {}
    ins, cons = [], []
    indexes = request.indexes
    if indexes is not None and indexes.sources:  # one project: its sources pin packages to indexes
        (tmp / "pyproject.toml").write_text(
            sources_project(indexes, [r for _, reqs in request.inputs for r in reqs]))
        labels["pyproject.toml"] = ", ".join(label for label, _ in request.inputs)
        ins.append("pyproject.toml")
    for i, (label, reqs) in enumerate(request.inputs if not ins else []):
        name = f"in{i}.in"
        (tmp / name).write_text("".join(f"{r}\n" for r in reqs))
        labels[name] = label
        ins.append(name)
    for i, (label, pins) in enumerate(request.constraints):
        name = f"c{i}.txt"
        (tmp / name).write_text("".join(f"{p.key}=={p.version}\n" for p in pins))
        labels[name] = label
        cons.append(name)
    return ins, cons, labels


# how uv names the project of a stack with sources (python_indexes.sources_project) in # via
SOURCES_VIA = f"{PROJECT} (pyproject.toml)"


def _relabel(pins: list[Pin], labels: dict[str, str]) -> list[Pin]:
    """Turn ``-r in0.in`` / ``-c c0.txt`` (and uv's ``bakegen-sources (pyproject.toml)``) in
    ``# via`` comments into stack and lock paths."""
    pattern = re.compile(r"^(-[rc])\s+(\S+)$")
    out = []
    for pin in pins:
        via = []
        for v in pin.via:
            m = pattern.match(v.replace(SOURCES_VIA, "-r pyproject.toml"))
            if m and Path(m.group(2)).name in labels:
                v = f"{m.group(1)} {labels[Path(m.group(2)).name]}"
            via.append(v)
        out.append(Pin(pin.key, pin.version, pin.hashes, tuple(via), pin.index))
    return out


# uv's hint when an index refuses it (no login in the netrc, or a wrong one)
_NO_LOGIN = re.compile(r"index URL \((\S+)\) could not be queried due to a lack of valid "
                       r"authentication credentials \((\d{3}[A-Za-z ]*)\)")

_USAGE = ("unexpected argument", "Usage:", "unrecognized arguments", "No such option",
          "invalid value")


def _classify(exc: CommandError, request: PythonRequest, backend: str) -> BakegenError:
    out = exc.output
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    if any(u in out for u in _USAGE):
        first = lines[0] if lines else ""
        usage = next((ln for ln in lines if any(u in ln for u in _USAGE)), first)
        return ToolError(f"{backend} refused bakegen's command: {usage[:200]}",
                         hint=f"this {backend} may be too old or too new for bakegen; {exc.hint}")
    login = _NO_LOGIN.search(out)
    if login:
        return NetworkError(
            f"{request.stack}: the package index {login.group(1)} asks for a login "
            f"({login.group(2)})", hint="put 'machine HOST login USER password TOKEN' in a netrc "
            "file and run NETRC=FILE bakegen lock (README: \"Package sources and credentials\")")
    if any(p in out for p in _NETWORK_PATTERNS):
        last = lines[-1] if lines else ""
        detail = next((ln for ln in lines if any(p in ln for p in _NETWORK_PATTERNS)), last)
        return NetworkError(f"{request.stack}: cannot reach the package index {request.index_url} "
                            f"({backend}: {detail[:200]})", hint=_NETWORK_HINT)
    detail = _first_reason(lines)
    wheel = _NO_WHEEL.search(out)
    if wheel and not request.allow_sdists:
        return ResolutionError(
            f"{request.stack}: {wheel.group(1)} has no wheel for Python {request.python_version} "
            f"on {request.target} ({detail})",
            hint="pick a version that publishes a wheel for this platform, or drop the platform; "
            "[python] sdists = true lets this stack compile sdists in the build (hours under "
            "emulation)",
        )
    return ResolutionError(
        f"{request.stack}: cannot resolve Python packages: {detail}",
        hint="check the names and versions in python.packages; a child stack cannot move a "
        f"version its parent pinned (resolver: {backend})",
    )


# uv: "Because foo==1.0 has no usable wheels" (pip-compile's message does not tell a missing wheel
# from a missing version)
_NO_WHEEL = re.compile(
    r"\b([A-Za-z0-9][A-Za-z0-9._-]*?)(?:[=<>!~]=?[^ ]*)? ha(?:s|ve) no usable wheels")

_MARKERS = re.compile(r"^(?:[×╰─▶\s]+|error:\s*|cause:\s*|ERROR:\s*)+", re.IGNORECASE)


def _first_reason(lines: list[str]) -> str:
    """The line of a resolver's output that says why: uv's "Because ...", pip's "Could not
    find ..."."""
    texts = [_MARKERS.sub("", ln).strip() for ln in lines]
    noise = ("No solution found", "Traceback", "File ")
    texts = [t for t in texts if t and not t.startswith(noise)]
    for t in texts:
        if t.startswith("Because") or "Could not find a version" in t or "conflict" in t.lower():
            return t[:300]
    return texts[0][:300] if texts else "no solution"


@cache
def check_index(index_url: str, timeout: float = 20.0) -> None:
    """Fail fast with a :class:`NetworkError` when the index does not answer at all.

    Any HTTP answer counts as reachable; only connection, DNS, TLS and proxy
    failures are network errors. Honours the proxy variables and SSL_CERT_FILE.
    """
    context = tls_context("SSL_CERT_FILE", "PIP_CERT")
    req = urllib.request.Request(index_url.rstrip("/") + "/", method="HEAD",
                                 headers={"User-Agent": "bakegen"})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context):
            return
    except urllib.error.HTTPError:
        return  # the server answered
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NetworkError(f"cannot reach the package index {index_url}: {reason}",
                           hint=_NETWORK_HINT) from None


_KEPT = ("PIP_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_RETRIES", "UV_CACHE_DIR", "UV_HTTP_RETRIES")


def _isolated_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_")) or k in _KEPT}
    env["PIP_CONFIG_FILE"] = os.devnull
    env.update(extra or {})
    return env


def _compile(request: PythonRequest, backend: str,
             command: Callable[[list[str], str], list[str]]) -> list[Pin]:
    """Run a pip-compile-style ``command`` on the request's inputs and constraints; parse its
    output.

    When it fails, a plain request to the index tells a network failure from a resolution one.
    """
    with tempfile.TemporaryDirectory(prefix=f"bakegen-{backend}-") as tmpdir:
        tmp = Path(tmpdir)
        inputs, constraints, labels = _write_inputs(tmp, request)
        if request.preferences:
            preferred = "".join(f"{p.key}=={p.version}\n" for p in request.preferences)
            (tmp / "out.txt").write_text(preferred)
        cmd = command(inputs, "out.txt") + [arg for c in constraints for arg in ("--constraint", c)]
        cmd += [arg for spec in request.upgrade for arg in ("--upgrade-package", spec)]
        try:
            proc.run(cmd, cwd=tmp, env=_isolated_env())
        except CommandError as exc:
            check_index(_first_index(request))
            raise _classify(exc, request, backend) from None
        pins = parse_requirements((tmp / "out.txt").read_text(), f"{backend} output")
    return _unmark_default(_relabel(pins, labels), request)


def _first_index(request: PythonRequest) -> str:
    """The index a failed resolution asks first: the stack's own, or bakegen lock's --index-url."""
    custom = request.indexes is not None and request.indexes.custom
    return request.indexes.searched(request.index_url)[0] if custom else request.index_url


def _unmark_default(pins: list[Pin], request: PythonRequest) -> list[Pin]:
    """A pin from bakegen lock's --index-url (PyPI or a mirror of it), when the stack names no
    primary index, records no index: a lock made through a mirror is the lock made from PyPI."""
    if request.indexes is None or request.indexes.primary:
        return pins
    default = request.index_url.rstrip("/")
    return [dataclasses.replace(p, index="") if p.index.rstrip("/") == default else p for p in pins]


# --- uv ---------------------------------------------------------------------------


class UvResolver:
    """``uv pip compile`` for any target Python version and platform."""

    name = "uv"

    def __init__(self, uv: str | None = None):
        self._uv = uv
        # the python and tools ecosystems' threads share this resolver
        self._uv_lock = threading.Lock()

    @property
    def uv(self) -> str:
        # One thread at a time: find_uv_bin() reads sysconfig, whose first get_config_vars() is
        # not thread-safe before Python 3.12 (a concurrent caller sees EXE None: "uv" + None, a
        # TypeError).
        with self._uv_lock:
            if self._uv is None:
                try:
                    from uv import find_uv_bin

                    self._uv = find_uv_bin()
                except (ImportError, FileNotFoundError):
                    raise ToolError("uv is not installed",
                                    hint="pip install uv, or choose --resolver pip-tools") from None
            return self._uv

    def version(self) -> str:
        out = proc.run([self.uv, "--version"], env=_isolated_env()).stdout.split()
        return f"uv {out[1] if len(out) > 1 else '?'}"

    def resolve(self, request: PythonRequest) -> list[Pin]:
        def command(inputs: list[str], output: str) -> list[str]:
            return [
                self.uv, "pip", "compile", "--no-config", "--quiet",
                "--generate-hashes", "--no-header", "--annotation-style=split",
                "--python-version", request.python_version,
                "--python-platform", request.platform,
                # No interpreter of the target version is needed to resolve for it: never
                # download one.
                "--no-python-downloads",
                *_indexes(request),
                "--output-file", output,
                *([] if request.allow_sdists else ["--only-binary", ":all:"]),
                *(["--exclude-newer", request.exclude_newer] if request.exclude_newer else []),
                *inputs,
            ]

        return _compile(request, "uv", command)


# --- pip-tools ----------------------------------------------------------------------


class PipToolsResolver:
    """pip-tools' ``pip-compile``, run in this interpreter (so only for its Python version)."""

    name = "pip-tools"

    def __init__(self, python: str | None = None):
        self.python = python or sys.executable

    def _interpreter_version(self) -> str:
        code = "import sys; print('%d.%d' % sys.version_info[:2])"
        return proc.run([self.python, "-c", code]).stdout.strip()

    def version(self) -> str:
        code = "import importlib.metadata as m; print(m.version('pip-tools'))"
        out = proc.run([self.python, "-c", code], env=_isolated_env())
        return f"pip-tools {out.stdout.strip()}"

    def resolve(self, request: PythonRequest) -> list[Pin]:
        if request.indexes is not None and request.indexes.custom:
            raise ToolError(
                f"{request.stack}: python.index_url, extra_index_urls and sources need the uv "
                "resolver", hint="use the default --resolver uv")
        have = self._interpreter_version()
        if have != request.python_version:
            raise ResolutionError(
                f"{request.stack}: pip-compile resolves for the Python it runs in ({have}), but "
                f"the stack needs Python {request.python_version}",
                hint="use the default --resolver uv, which targets any Python, or run bakegen "
                f"with Python {request.python_version}",
            )

        def command(inputs: list[str], output: str) -> list[str]:
            return [
                self.python, "-m", "piptools", "compile", "--quiet",
                "--generate-hashes", "--allow-unsafe", "--strip-extras", "--no-header",
                "--no-emit-index-url", "--no-emit-find-links", "--annotation-style=split",
                "--index-url", request.index_url,
                "--output-file", output,
                *_pip_args(request),
                *inputs,
            ]

        return _compile(request, "pip-compile", command)


def _indexes(request: PythonRequest) -> list[str]:
    """The stack's indexes, each pin annotated with the one it came from; or --index-url alone
    (no annotation: the locks of stacks without indexes of their own stay as they were)."""
    indexes = request.indexes
    if indexes is None or not indexes.custom:
        return ["--index-url", request.index_url]
    return [*uv_index_args(indexes, request.index_url), "--emit-index-annotation"]


def _pip_args(request: PythonRequest) -> list[str]:
    """pip-compile's one --pip-args: wheels only, and pip's cool-down (--uploaded-prior-to, pip
    26.1 and newer)."""
    args = [] if request.allow_sdists else ["--only-binary=:all:"]
    args += [f"--uploaded-prior-to={request.exclude_newer}"] if request.exclude_newer else []
    return [f"--pip-args={' '.join(args)}"] if args else []


BACKENDS: dict[str, Callable[[], PythonResolver]] = {"uv": UvResolver,
                                                     "pip-tools": PipToolsResolver}


def get_resolver(name: str) -> PythonResolver:
    try:
        return BACKENDS[name]()
    except KeyError:
        raise BakegenError(f"unknown resolver '{name}'",
                           hint=f"choose one of: {', '.join(BACKENDS)}") from None
