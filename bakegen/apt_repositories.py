"""A stack's third-party apt repositories (NodeSource, CRAN, Microsoft, a company's own), each
with its signing key pinned by fingerprint:

```toml
[[apt.repositories]]
name = "acme"                                   # the key's name in the build
url = "https://apt.example.com/debian"
suite = "stable"
components = ["main"]                           # default: ["main"]
key = "acme.asc"                                # in stacks/<stack>/: .asc (armored) or .gpg
fingerprint = "0123456789ABCDEF0123456789ABCDEF01234567"
```

``bakegen lock`` checks that the key file holds exactly the pinned key and that the repository's
``InRelease`` is signed by it (:mod:`bakegen.resolvers.signed`), then reads only the signed text.
The lock records each repository with its key's sha256; the build mounts the key file from the
stack's folder (never from the lock) and apt checks the signature again (``signed-by``). A child
inherits its parents' repositories and adds its own.
"""

from __future__ import annotations

import hashlib
from typing import Any

from bakegen import schema
from bakegen.errors import StackError
from bakegen.paths import Unreadable, read_bounded
from bakegen.resolvers.debian import Repository
from bakegen.resolvers.signed import ARMOR, FINGERPRINT
from bakegen.stack import NAME as STACK_NAME
from bakegen.stack import EffectiveStack, StackGraph, stack_location
from bakegen.stack_folder import file_problem

NAME = r"[a-z0-9][a-z0-9-]{0,31}"
SUITE = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
COMPONENT = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
KEY_FILE = r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,95}\.(?:asc|gpg)"
MAX_KEY = 1_000_000  # bytes: a public key (with its signatures) is a few kB

RECORD = {
    "name": schema.matching(NAME, "repository name", "nodesource"),
    "url": schema.source_url,
    "suite": schema.matching(SUITE, "suite", "nodistro"),
    "components": schema.list_of(schema.matching(COMPONENT, "component", "main"), non_empty=True),
    "key": schema.matching(KEY_FILE, "key file in the stack's folder (.asc armored, .gpg binary)",
                           "nodesource.asc"),
    "fingerprint": schema.matching(FINGERPRINT, "key fingerprint (40 upper-case hex digits, "
                                   "no spaces)", "6F71F525282841EEDAF851B42F59B5F9"
                                   "9B1BE0B4"),
}
TABLE = schema.list_of(schema.record(RECORD, required=("name", "url", "suite", "key",
                                                       "fingerprint")))


def repositories_of(stack: EffectiveStack) -> tuple[Repository, ...]:
    """The repositories of the stack's chain, root first, each key file hashed (checked first by
    :func:`problems`)."""
    out = []
    for s in stack.chain:
        for table in s.table("apt").get("repositories", ()):
            key = f"stacks/{s.name}/{table['key']}"
            data = read_bounded(s.path.parent / s.name / table["key"], MAX_KEY)
            out.append(Repository(table["name"], table["url"].rstrip("/"), table["suite"],
                                  tuple(table.get("components", ("main",))),
                                  table["fingerprint"], key, hashlib.sha256(data).hexdigest(),
                                  key_data=data))
    return tuple(out)


def problems(stack: EffectiveStack, graph: StackGraph) -> list[StackError]:
    """The stack's own repositories: key files in its folder, names not taken in its chain."""
    out = []
    seen = {t["name"] for s in stack.ancestors for t in s.table("apt").get("repositories", ())}
    for i, table in enumerate(stack.stack.table("apt").get("repositories", ())):
        where = stack_location(stack.stack, graph.root, ("apt", "repositories"))
        problem = file_problem(stack, table["key"], graph.root) or _key_problem(stack, table["key"])
        if table["name"] in seen:
            problem = f"a repository named '{table['name']}' comes earlier in the stack's chain"
        seen.add(table["name"])
        if problem:
            out.append(StackError(f"apt.repositories[{i}]: {problem}", location=where,
                                  hint=f"put the repository's public key in stacks/{stack.name}/ "
                                  "and give each repository its own name"))
    return out


def _key_problem(stack: EffectiveStack, key: str) -> str | None:
    """A key file apt would not read as its suffix says (.asc armored, .gpg binary), or too big."""
    try:
        data = read_bounded(stack.stack.path.parent / stack.name / key, MAX_KEY)
    except Unreadable as exc:
        return f"{key}: {exc.reason}"
    armored = data.lstrip().startswith(ARMOR)
    if armored != key.endswith(".asc"):
        return (f"{key}: {'an armored' if armored else 'a binary'} key, which apt reads from a "
                f"{'.asc' if armored else '.gpg'} file only")
    return None


def fingerprint_of(repos: tuple[Repository, ...]) -> dict[str, Any]:
    """What of them decides the lock (only when there are some: old fingerprints hold)."""
    return {"repositories": [section(r) for r in repos]} if repos else {}


def section(repo: Repository) -> dict[str, Any]:
    """A repository in lock.json."""
    return {"name": repo.name, "url": repo.url, "suite": repo.suite,
            "components": list(repo.components), "fingerprint": repo.fingerprint,
            "key": repo.key, "key_sha256": repo.key_sha256}


def from_section(item: Any) -> Repository | None:
    """A repository of lock.json, checked as strictly as the stack's; None when it is not what
    bakegen writes."""
    try:
        table = LOCKED(item)
    except schema.Invalid:
        return None
    if set(table) != set(LOCKED_FIELDS) or table["url"] != item["url"]:
        return None
    return Repository(table["name"], table["url"], table["suite"], table["components"],
                      table["fingerprint"], table["key"], table["key_sha256"])


# a repository in lock.json: the stack's fields, the key where the project holds it, its sha256
LOCKED_FIELDS = {
    **RECORD,
    "key": schema.matching(rf"stacks/{STACK_NAME}/{KEY_FILE}", "key file", "stacks/a/k.asc"),
    "key_sha256": schema.matching(r"[0-9a-f]{64}", "sha256", "0" * 64),
}
LOCKED = schema.record(LOCKED_FIELDS, required=tuple(LOCKED_FIELDS))


def mounted_keys(stack: EffectiveStack) -> list[tuple[str, str]]:
    """(key file in the project, where the build mounts it) of each repository: from the stack."""
    return [(r.key, r.keyring) for r in repositories_of(stack)]


