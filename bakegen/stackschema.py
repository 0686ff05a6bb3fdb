"""The keys of a stack file and the checker of each (:mod:`bakegen.schema`): bakegen's own, and
each ecosystem's table (:func:`stack_schema`).

Each key maps to a checker that returns the converted value or raises ``Invalid(message, hint)``;
a table maps to a nested schema. :mod:`bakegen.stackfile` validates a file against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bakegen import schema
from bakegen.errors import BakegenError, did_you_mean
from bakegen.oci import ImageRef
from bakegen.schema import Invalid
from bakegen.stack import ENV_NAME, LABEL_KEY, NAME, PLATFORMS, TAG, USER

if TYPE_CHECKING:
    from bakegen.ecosystem import AnyEcosystem


def _platform(value: Any) -> str:
    value = schema.string(value)
    if value not in PLATFORMS:
        raise Invalid(
            f"unsupported platform {schema.shown(value)}",
            did_you_mean(value, PLATFORMS) or f"use one of: {', '.join(PLATFORMS)}",
            value,
        )
    return value


def _image(value: Any) -> str:
    value = schema.text(value)
    try:
        ImageRef.parse(value)
    except BakegenError as exc:
        raise Invalid(exc.message, exc.hint, value) from None
    return value


# Debian's and Ubuntu's own users (base-passwd): the image's user must be a new one, never root.
SYSTEM_USERS = (
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy",
    "www-data", "backup", "list", "irc", "gnats", "_apt", "nobody", "systemd-network",
    "systemd-timesync", "messagebus", "ubuntu",
)  # fmt: skip


def _user_name(value: Any) -> str:
    value = schema.matching(USER, "user name", "jovyan")(value)
    if value in SYSTEM_USERS:
        message = f"'{value}' is a user of the base image's system (its home is not /home/{value})"
        hint = "name the notebook user, e.g. jovyan; the image never runs as root"
        raise Invalid(message, hint, value)
    return value


# Kubernetes' label keys (an optional DNS-subdomain prefix, a name of 63 at most) and values
K8S_LABEL_VALUE = r"(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?"
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
K8S_LABEL_KEY = (rf"(?:{_DNS_LABEL}(?:\.{_DNS_LABEL})*/)?"
                 r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")

SCHEMA: dict[str, Any] = {
    "name": schema.matching(NAME, "stack name", "scipy"),
    "description": schema.text,
    "base": _image,
    "extends": schema.matching(NAME, "stack name", "base"),
    "tags": schema.list_of(schema.matching(TAG, "tag", "latest"), non_empty=True),
    "platforms": schema.list_of(_platform, non_empty=True),
    "profile": {
        "enabled": schema.boolean,
        "display_name": schema.text,
        "slug": schema.matching(NAME, "slug", "scipy"),
        "default": schema.boolean,
        "cpu_limit": schema.number(0.01, 1024),
        "mem_limit": schema.matching(
            r"\d{1,9}(?:\.\d{1,6})?[KMGT]",
            "memory limit",
            "4G (K, M, G or T, as JupyterHub reads them: 4G is 4 GiB)",
        ),
        "default_url": schema.matching(r"/[A-Za-z0-9._~%/-]*", "default_url", "/lab"),
        # NVIDIA GPUs per server: KubeSpawner's extra_resource_limits {"nvidia.com/gpu": N}
        "gpu": schema.int_in(0, 64),  # 0: none (a child of a GPU stack)
        "node_selector": schema.table_of(
            schema.matching(K8S_LABEL_KEY, "Kubernetes label key", "nvidia.com/gpu.present"),
            schema.matching(K8S_LABEL_VALUE, "Kubernetes label value", "true"),
        ),
    },
    "env": schema.table_of(
        schema.matching(ENV_NAME, "environment variable name", "MPLBACKEND"), schema.text
    ),
    "user": {
        "name": _user_name,
        "uid": schema.int_in(1, 2**31 - 1),
        "gid": schema.int_in(0, 2**31 - 1),
    },
    "run": {
        "port": schema.int_in(1, 65535),
        "command": schema.list_of(schema.text, non_empty=True),
    },
    "labels": schema.table_of(
        schema.matching(LABEL_KEY, "label name", "org.opencontainers.image.source"), schema.text
    ),
}


REQUIRED = ("name", "description")


def stack_schema(ecosystems: Sequence[AnyEcosystem]) -> dict[str, Any]:
    """The stack file's keys: bakegen's own, and each ecosystem's table."""
    return {
        **SCHEMA,
        **{key: spec for eco in ecosystems for key, spec in eco.stack_tables().items()},
    }
