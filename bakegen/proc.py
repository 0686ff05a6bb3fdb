"""The one subprocess helper: every external tool runs through :func:`run`."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from bakegen.errors import CommandError

log = logging.getLogger("bakegen")


@dataclass(frozen=True)
class Result:
    cmd: list[str]
    returncode: int
    stdout: str
    stderr: str
    data: bytes = b""  # stdout, when run with binary=True

    @property
    def output(self) -> str:
        return (self.stdout + "\n" + self.stderr).strip()


def run(
    cmd: list[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    capture: bool = True,
    timeout: float | None = None,
    binary: bool = False,
) -> Result:
    """Run ``cmd`` without a shell; log it; raise :class:`CommandError` on failure.

    With ``capture=False`` the command's output goes to the terminal (long
    builds) and the error carries only the exit code. With ``binary=True``
    stdout is kept as bytes in ``Result.data`` (``git archive``).
    """
    log.debug("$ %s", shlex.join(cmd))
    try:
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            text=not binary,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )
    except FileNotFoundError as exc:
        raise CommandError(
            cmd, 127, f"{cmd[0]}: command not found", hint=f"install {cmd[0]} and retry"
        ) from exc
    if binary:
        err = (proc.stderr or b"").decode("utf-8", "replace")
        result = Result(cmd, proc.returncode, "", err, proc.stdout or b"")
    else:
        result = Result(cmd, proc.returncode, proc.stdout or "", proc.stderr or "")
    if check and proc.returncode != 0:
        if not capture:
            raise CommandError(
                cmd,
                proc.returncode,
                "(its output is above)",
                hint=f"command was: {shlex.join(cmd)}",
            )
        raise CommandError(cmd, proc.returncode, result.output)
    return result
