"""A stack's Python package indexes: a private index in place of PyPI, extra indexes, and packages
pinned to one index (uv's explicit indexes), so that a name on a private index is never taken
from PyPI (dependency confusion).

```toml
[python]
index_url = "https://pypi.example.com/simple"      # in place of PyPI
extra_index_urls = ["https://download.pytorch.org/whl/cu130"]

[python.sources]                                    # this package from this index only
acme-tools = "https://pypi.example.com/simple"
```

A URL holds no credential (no ``user:password@``): credentials come from a netrc file, at lock
time from the machine (``NETRC`` or ``~/.netrc``, as uv and pip read it) and at build time as the
BuildKit secret ``netrc`` (``bakegen build --netrc FILE``), never from a stack, a lock, a generated
file or a layer. A child inherits its parents' indexes: its own index_url replaces theirs, its
extra indexes and sources are added.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PYPI = "https://pypi.org/simple"
PROJECT = "bakegen-sources"  # the name of the project uv resolves a stack with sources as
PACKAGE_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?"


@dataclass(frozen=True)
class Indexes:
    primary: str | None = None  # None: the --index-url of bakegen lock (PyPI by default)
    extras: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict)  # canonical name -> its one index

    @property
    def custom(self) -> bool:
        return bool(self.primary or self.extras or self.sources)

    def searched(self, default: str) -> list[str]:
        """The indexes any package may come from (the primary first); a source's index serves
        only its own packages."""
        return list(dict.fromkeys(u.rstrip("/") for u in [self.primary or default, *self.extras]))

    def all(self, default: str) -> list[str]:
        """Every index the stack's packages may come from, the primary first."""
        urls = [*self.searched(default), *sorted(set(self.sources.values()))]
        return list(dict.fromkeys(u.rstrip("/") for u in urls))

    def fingerprint(self) -> dict[str, Any]:
        """What of them decides the lock (only when set: old fingerprints hold)."""
        return {"indexes": {"primary": self.primary, "extras": list(self.extras),
                            "sources": dict(sorted(self.sources.items()))}} if self.custom else {}


def indexes_of(chain: list[dict[str, Any]], canonical: Any) -> Indexes:
    """The indexes of a stack from its chain's [python] tables, root first: the nearest
    ``index_url``, every ``extra_index_urls``, the sources (a child's win)."""
    primary, extras, sources = None, [], {}
    for table in chain:
        primary = table.get("index_url", primary)
        extras += [u for u in table.get("extra_index_urls", ()) if u not in extras]
        sources.update({canonical(name): url for name, url in table.get("sources", ())})
    return Indexes(primary, tuple(extras), sources)


def index_options(urls: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``--index-url`` (the first) and ``--extra-index-url`` options, as uv and pip take them."""
    return ("--index-url", urls[0], *(a for u in urls[1:] for a in ("--extra-index-url", u)))


def uv_index_args(indexes: Indexes, default: str) -> list[str]:
    """uv's options to resolve with (the sources come as explicit indexes in
    :func:`sources_project`)."""
    return list(index_options(indexes.searched(default)))


def sources_project(indexes: Indexes, requirements: list[str]) -> str:
    """A pyproject.toml that uv pip compile reads as an input: ``requirements`` as its
    dependencies, and each source as an explicit index that only its package may use."""
    names = {url: f"source-{i}" for i, url in enumerate(sorted(set(indexes.sources.values())))}
    lines = ["[project]", f"name = {_toml(PROJECT)}", 'version = "0"',
             "dependencies = [" + ", ".join(_toml(r) for r in requirements) + "]", "",
             "[tool.uv.sources]"]
    lines += [f"{_toml(name)} = {{ index = {_toml(names[url])} }}"
              for name, url in sorted(indexes.sources.items())]
    for url, name in sorted(names.items(), key=lambda item: item[1]):
        lines += ["", "[[tool.uv.index]]", f"name = {_toml(name)}", f"url = {_toml(url)}",
                  "explicit = true"]
    return "\n".join(lines) + "\n"


def _toml(text: str) -> str:
    """A TOML basic string (the values are checked names, requirements and URLs; escaped all the
    same)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
