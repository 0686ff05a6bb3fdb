"""Known vulnerabilities of locked packages: where each ecosystem's are published, and how they
are fetched (``bakegen audit``, ``bakegen diff --audit``, ``bakegen lock --security-only``).

An ecosystem names its source (``Ecosystem.advisory_source``), or says why its packages are not
checked (``Ecosystem.audit_unchecked``). The two sources:

* Python: PyPI's JSON API, one request per release (``/pypi/NAME/VERSION/json``): its
  ``vulnerabilities``, the records pip-audit reads (id, aliases, the versions that fix it);
* npm: the registry's bulk advisories endpoint (``/-/npm/v1/security/advisories/bulk``), what
  ``npm audit`` asks; the fixing version is read from the advisory's range (``<1.2.3``).

Every answer is cached for a day (``~/.cache/bakegen/advisories``); each request is bounded (10 s)
and all of them by a deadline. A source that cannot be reached, or refuses, makes its packages
"not checked", with the reason: never a crash, never a silent pass. What a server answers is
checked before it is shown: ids are full-matched, text is put on one line and cut.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from bakegen.errors import one_line
from bakegen.net import tls_context

ADVISORY_ID = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)+|[0-9]{1,12}")
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+!_-]{0,63}")
CACHE_SECONDS = 24 * 3600
REQUEST_SECONDS = 10.0  # each read of a request
ANSWER_SECONDS = 30.0  # a whole answer
DEADLINE_SECONDS = 120.0
WORKERS = 8
MAX_ANSWER = 4 << 20  # bytes


@dataclass(frozen=True)
class Advisory:
    id: str
    aliases: tuple[str, ...]
    fixed: tuple[str, ...]  # versions that fix it; empty: no fix known
    summary: str
    link: str
    package: str = ""  # the package it is about, when one answer covers several


Package = tuple[str, str]  # (name, version)


class Unchecked(Exception):
    """A source gave no answer for a package (or any): ``reason`` says why, in a few words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class AdvisorySource(Protocol):
    label: str  # "PyPI's JSON API"

    def lookup(self, packages: list[Package]) -> dict[Package, list[Advisory] | Unchecked]: ...


# --- the cache ------------------------------------------------------------------------------


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bakegen" / "advisories"


def cached(source: str, key: str) -> list[Advisory] | None:
    """A fresh entry of the cache, checked as strictly as an answer (anyone may write there)."""
    path = cache_dir() / source / (hashlib.sha256(key.encode()).hexdigest() + ".json")
    try:
        doc = json.loads(path.read_text())
        age = time.time() - float(doc["fetched"])
        if not 0 <= age <= CACHE_SECONDS or doc.get("key") != key:
            return None
        found = [_advisory(a) for a in doc["advisories"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None
    return None if any(a is None for a in found) else [a for a in found if a is not None]


def remember(source: str, key: str, advisories: list[Advisory]) -> None:
    folder = cache_dir() / source
    doc = {"key": key, "fetched": time.time(), "advisories": [asdict(a) for a in advisories]}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp") as fh:
            json.dump(doc, fh)
        os.replace(fh.name, folder / (hashlib.sha256(key.encode()).hexdigest() + ".json"))
    except OSError:
        pass  # a cache that cannot be written only costs the next run a request


def _advisory(doc: dict[str, Any]) -> Advisory | None:
    ident = doc["id"]
    if not isinstance(ident, str) or not ADVISORY_ID.fullmatch(ident):
        return None
    return Advisory(ident, ids(doc["aliases"]), versions(doc["fixed"]), text(doc["summary"]),
                    text(doc["link"], 300), text(doc.get("package", ""), 214))


# --- HTTP -------------------------------------------------------------------------------------


def fetch(url: str, data: bytes | None = None, timeout: float = REQUEST_SECONDS) -> Any:
    """A JSON answer; :class:`Unchecked` with the reason when there is none."""
    headers = {"User-Agent": "bakegen", "Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    context = tls_context()
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
            body = _read_within(resp, ANSWER_SECONDS)
    except urllib.error.HTTPError as exc:
        raise Unchecked(f"HTTP {exc.code} from {urllib.parse.urlsplit(url).netloc}") from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unchecked(one_line(f"cannot reach {urllib.parse.urlsplit(url).netloc}: {reason}",
                                 160)) from None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise Unchecked("the answer is not JSON") from None


def _read_within(resp: Any, seconds: float) -> bytes:
    """The body, read a chunk at a time: a server that trickles it is cut off after ``seconds``
    (the socket's timeout bounds each read only)."""
    start, chunks, size = time.monotonic(), [], 0
    read = getattr(resp, "read1", resp.read)  # what has arrived, not a full buffer's worth
    while chunk := read(1 << 16):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ANSWER or time.monotonic() - start > seconds:
            raise Unchecked("the answer is too large" if size > MAX_ANSWER
                            else f"no whole answer within {seconds:.0f} s")
    return b"".join(chunks)


def within_deadline(
    packages: list[Package], one: Any, deadline: float = DEADLINE_SECONDS
) -> dict[Package, list[Advisory] | Unchecked]:
    """``one(package)`` for each package, a few at a time; what is not answered by the deadline
    is not checked."""
    out: dict[Package, list[Advisory] | Unchecked] = {}
    start = time.monotonic()

    def guarded(package: Package) -> tuple[Package, list[Advisory] | Unchecked]:
        if time.monotonic() - start > deadline:
            return package, Unchecked(f"no answer within {deadline:.0f} s")
        try:
            return package, one(package)
        except Unchecked as exc:
            return package, exc

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for package, result in pool.map(guarded, packages):
            out[package] = result
    return out


def text(value: Any, limit: int = 200) -> str:
    return one_line(str(value), limit) if isinstance(value, str) else ""


def ids(values: Any) -> tuple[str, ...]:
    return tuple(v for v in values if isinstance(v, str) and ADVISORY_ID.fullmatch(v)) \
        if isinstance(values, list) else ()


def versions(values: Any) -> tuple[str, ...]:
    return tuple(v for v in values if isinstance(v, str) and VERSION.fullmatch(v)) \
        if isinstance(values, list) else ()


# --- Python: PyPI's JSON API ------------------------------------------------------------------


class PypiAdvisories:
    label = "PyPI's JSON API"

    def __init__(self, base_url: str = "https://pypi.org"):
        self.base_url = base_url.rstrip("/")

    def lookup(self, packages: list[Package]) -> dict[Package, list[Advisory] | Unchecked]:
        return within_deadline(packages, self._one)

    def _one(self, package: Package) -> list[Advisory]:
        name, version = package
        key = f"{self.base_url} {name} {version}"
        hit = cached("pypi", key)
        if hit is not None:
            return hit
        doc = fetch(f"{self.base_url}/pypi/{urllib.parse.quote(name)}/"
                    f"{urllib.parse.quote(version)}/json")
        records = doc.get("vulnerabilities") if isinstance(doc, dict) else None
        if not isinstance(records, list):
            raise Unchecked("the answer has no vulnerabilities list")
        found = [self._record(r) for r in records if isinstance(r, dict) and not r.get("withdrawn")]
        advisories = [a for a in found if a is not None]
        remember("pypi", key, advisories)
        return advisories

    @staticmethod
    def _record(doc: dict[str, Any]) -> Advisory | None:
        ident = doc.get("id")
        if not isinstance(ident, str) or not ADVISORY_ID.fullmatch(ident):
            return None
        return Advisory(ident, ids(doc.get("aliases")), versions(doc.get("fixed_in")),
                        text(doc.get("summary") or doc.get("details")), text(doc.get("link"), 300))


# --- npm: the registry's bulk advisories ------------------------------------------------------


class NpmAdvisories:
    """The bulk endpoint answers per package name: the versions of one name are asked one request
    each (a "round"), so that each advisory is known to be about that version. A nested package
    (``a/node_modules/b``) is asked as ``b``."""

    label = "the npm registry's advisories"

    def __init__(self, registry: str = "https://registry.npmjs.org"):
        self.registry = registry.rstrip("/")

    def lookup(self, packages: list[Package]) -> dict[Package, list[Advisory] | Unchecked]:
        out: dict[Package, list[Advisory] | Unchecked] = {}
        start = time.monotonic()
        for round_ in _rounds(packages):  # the rounds share the one deadline
            late = time.monotonic() - start > DEADLINE_SECONDS
            late_answer = Unchecked(f"no answer within {DEADLINE_SECONDS:.0f} s")
            out.update({p: late_answer for p in round_} if late else self._round(round_))
        return out

    def _round(self, packages: list[Package]) -> dict[Package, list[Advisory] | Unchecked]:
        query = {_npm_name(name): [version] for name, version in packages}
        key = f"{self.registry} " + json.dumps(sorted(query.items()))
        found = cached("npm", key)
        if found is None:
            try:
                doc = fetch(f"{self.registry}/-/npm/v1/security/advisories/bulk",
                            data=json.dumps(query).encode())
                found = self._records(doc)
            except Unchecked as exc:
                return {p: exc for p in packages}
            remember("npm", key, found)
        return {(name, version): [a for a in found if a.package == _npm_name(name)]
                for name, version in packages}

    @staticmethod
    def _records(doc: Any) -> list[Advisory]:
        """The answer's advisories; an answer that is not ``{name: [advisory, ...]}`` is not an
        answer (never a silent pass)."""
        if not isinstance(doc, dict) or not all(isinstance(v, list) for v in doc.values()):
            raise Unchecked("the answer is not the bulk advisories' shape")
        out = []
        for name, records in doc.items():
            for r in records:
                ident = str(r.get("id")) if isinstance(r, dict) else ""
                if not ADVISORY_ID.fullmatch(ident):
                    continue
                ghsa = re.search(r"GHSA(?:-[a-z0-9]{4}){3}", text(r.get("url"), 300))
                out.append(Advisory(ident, (ghsa.group(0),) if ghsa else (),
                                    _fixed_by(text(r.get("vulnerable_versions"))),
                                    text(r.get("title")), text(r.get("url"), 300),
                                    text(name, 214)))
        return out


def _npm_name(name: str) -> str:
    return name.rsplit("node_modules/", 1)[-1]


def _rounds(packages: list[Package]) -> list[list[Package]]:
    """Packages in groups where each name is asked once."""
    rounds: list[list[Package]] = []
    for package in packages:
        free = next((r for r in rounds if all(_npm_name(n) != _npm_name(package[0])
                                              for n, _ in r)), None)
        if free is None:
            rounds.append(free := [])
        free.append(package)
    return rounds


def _fixed_by(vulnerable: str) -> tuple[str, ...]:
    """The versions that fix it, from an advisory's range: each ``<X`` bound (``<=X``: none)."""
    return tuple(m for m in re.findall(r"(?<![<>=])<\s*v?([0-9][0-9A-Za-z.+-]*)", vulnerable)
                 if VERSION.fullmatch(m))
