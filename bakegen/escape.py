"""Quoting for the languages bakegen writes: HCL (bake) and Dockerfile."""

from __future__ import annotations

import re

_HCL_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def hcl_string(value: str) -> str:
    """A double-quoted HCL string literal that evaluates to exactly ``value``.

    Besides quotes, backslashes and control characters, HCL templates treat
    ``${`` and ``%{`` as the start of an interpolation or directive; they are
    escaped as ``$${`` and ``%%{``.
    """
    out = []
    i = 0
    while i < len(value):
        ch = value[i]
        nxt = value[i + 1] if i + 1 < len(value) else ""
        if ch in "$%" and nxt == "{":
            out.append(ch + ch + "{")
            i += 2
            continue
        if ch in _HCL_ESCAPES:
            out.append(_HCL_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
        i += 1
    return '"' + "".join(out) + '"'


def hcl_ident(name: str) -> str:
    """An HCL variable name derived from a stack name: ``geo-py`` -> ``GEO_PY``."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", name).upper()
    return ident if re.match(r"^[A-Za-z_]", ident) else "_" + ident


def dockerfile_env_value(value: str) -> str:
    """A double-quoted Dockerfile word: no variable expansion, quotes and backslashes kept."""
    if "\n" in value or "\r" in value:
        raise ValueError("Dockerfile values cannot contain newlines")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def dockerfile_comment(value: str) -> str:
    """Text safe to place after ``# `` on one Dockerfile line."""
    return " ".join(value.split())
