"""The ecosystems, in order: one module each, and one line each here.

The order is the order of the sections in ``lock.json``, of the builder stages in
a Dockerfile and of the ecosystems in ``bakegen diff``. Adding an ecosystem is a
new module in ``bakegen/ecosystems/`` with an ``ECOSYSTEM`` object, its tests, and
one line below. This module sits above the model (stack, lock, plan) and the
ecosystems; generic code imports it.
"""

from __future__ import annotations

import re
from typing import Any

from bakegen.ecosystem import AnyEcosystem, BuildSecret
from bakegen.ecosystems import apps, apt, custom, image, npm, python, tools

ECOSYSTEMS: list[AnyEcosystem] = [
    image.ECOSYSTEM,
    tools.ECOSYSTEM,
    python.ECOSYSTEM,
    apt.ECOSYSTEM,
    npm.ECOSYSTEM,
    apps.ECOSYSTEM,
    custom.ECOSYSTEM,
]
custom.ECOSYSTEM.bind(
    lambda: ECOSYSTEMS
)  # read when called: a test may put an ecosystem in the list


def build_secrets() -> list[BuildSecret]:
    """Every ecosystem's build secrets (bakegen build --ID FILE), in the ecosystems' order: ids of
    lower-case letters, each once, and never the proxy CA's (cacert)."""
    secrets = [secret for eco in ECOSYSTEMS for secret in eco.build_secrets]
    ids = [s.id for s in secrets]
    bad = [i for i in ids
           if not re.fullmatch(r"[a-z]{1,32}", i) or i == "cacert" or ids.count(i) > 1]
    if bad:
        raise ValueError(f"build secret ids must be unique lower-case words, not cacert: {bad}")
    return secrets


class Resolvers:
    """The resolver of each ecosystem, by its name (``Resolvers(python=..., image=...)``; tests pass
    fakes this way); an ecosystem not given gets its default."""

    def __init__(self, **given: Any):
        unknown = set(given) - {e.name for e in ECOSYSTEMS}
        if unknown:
            raise TypeError(f"Resolvers: no ecosystem named {', '.join(sorted(unknown))}")
        self._given = given
        self._made: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        eco = next(e for e in ECOSYSTEMS if e.name == name)
        if eco.resolver_of:
            return self.get(eco.resolver_of)
        if name in self._given:
            return self._given[name]
        if name not in self._made:
            self._made[name] = eco.default_resolver()
        return self._made[name]
