"""Dockerfile instructions as data, and the one function that writes them out.

A plan step (:class:`bakegen.plan.Step`) holds one instruction. A ``RUN`` says what
it runs (each command an argv list, with the variables set for it), what it
mounts and how its commands follow each other, so a test asks "which step runs
uv, with which mounts, as which user" of the data, never of shell text.
:func:`dockerfile_text` is the only place where an instruction becomes text.

Quoting: a plain ``str`` word is quoted for its context when written (a shell
word with :func:`shlex.quote`, an ``ENV`` value as a double-quoted Dockerfile
word); a :class:`Verbatim` is bakegen's own text, written as it is because it
means an expansion (``"$req"``, ``$PATH``, ``$TARGETARCH``). A stack's value
never reaches a :class:`Verbatim` unless it was quoted first.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, fields

from bakegen.escape import dockerfile_env_value

CONTINUE = " \\\n    "  # a continuation line of an instruction
AND = "&&"  # run the next command only when this one succeeded
THEN = ";"  # run the next command after this one


class Verbatim(str):
    """bakegen's own shell or Dockerfile text, written as it is (an expansion, a loop, a test)."""


@dataclass(frozen=True)
class Mount:
    """A ``RUN --mount``: ``bind`` (a file of the build context, or ``stage``'s folder), ``cache``
    or ``secret``."""

    type: str
    target: str = ""
    source: str = ""
    stage: str = ""  # from=: a stage of this Dockerfile
    id: str = ""
    sharing: str = ""

    def flag(self) -> str:
        keys = {"stage": "from"}
        order = ("type", "stage", "id", "source", "target", "sharing")
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return "--mount=" + ",".join(
            f"{keys.get(name, name)}={values[name]}" for name in order if values[name]
        )


@dataclass(frozen=True)
class Command:
    """One program run by a ``RUN``: its argv, the variables set for it alone, and how it follows
    the part before."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()  # VAR=value before the program (an empty value: VAR=)
    after: str = AND  # AND or THEN: how it follows the part before it
    redirect: str = ""  # bakegen's own redirection (">/dev/null")

    def shell(self) -> str:
        env = [f"{key}={_word(value) if value else ''}" for key, value in self.env]
        return " ".join([*env, *(_word(word) for word in self.argv)]) + (
            f" {self.redirect}" if self.redirect else ""
        )


@dataclass(frozen=True)
class Shell:
    """A part of a ``RUN`` that is shell, not one program: a test, a loop, an assignment (bakegen's
    own text)."""

    text: str
    after: str = AND

    def shell(self) -> str:
        return self.text


Part = Command | Shell


@dataclass(frozen=True)
class Run:
    """``RUN``: the parts in order (each on its own line, or all on one with ``inline``), and the
    mounts. ``exec_form``: one command, run without a shell (its argv written as JSON)."""

    parts: tuple[Part, ...]
    mounts: tuple[Mount, ...] = ()
    inline: bool = False
    exec_form: bool = False

    def commands(self) -> list[Command]:
        return [part for part in self.parts if isinstance(part, Command)]

    def runs(self, program: str) -> Command | None:
        """The first command whose program (argv[0], or its file name) is ``program``."""
        return next(
            (
                c
                for c in self.commands()
                if c.argv and program in (c.argv[0], c.argv[0].rsplit("/", 1)[-1])
            ),
            None,
        )


@dataclass(frozen=True)
class Copy:
    sources: tuple[str, ...]
    dest: str
    stage: str = ""  # --from
    chmod: str = ""
    chown: str = ""


@dataclass(frozen=True)
class Env:
    """``ENV``: a plain value is quoted (no expansion); a :class:`Verbatim` one is written as is."""

    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Directive:
    """An instruction with one plain argument: ``USER``, ``WORKDIR``, ``EXPOSE``, ``ARG``."""

    keyword: str
    value: str


@dataclass(frozen=True)
class ExecForm:
    """``ENTRYPOINT``, ``CMD``: an argv, written as JSON."""

    keyword: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Healthcheck:
    options: tuple[tuple[str, str], ...]
    argv: tuple[str, ...]


Instruction = Run | Copy | Env | Directive | ExecForm | Healthcheck


def user(who: str) -> Directive:
    return Directive("USER", who)


def arg(name: str) -> Directive:
    return Directive("ARG", name)


def dockerfile_text(instruction: Instruction) -> str:
    """The instruction as it is written in a Dockerfile (continuation lines included)."""
    if isinstance(instruction, Run):
        return _run(instruction)
    if isinstance(instruction, Copy):
        flags = [f"--from={instruction.stage}"] * bool(instruction.stage) + [
            f"--chmod={instruction.chmod}"
        ] * bool(instruction.chmod)
        flags += [f"--chown={instruction.chown}"] * bool(instruction.chown)
        return " ".join(["COPY", *flags, *instruction.sources, instruction.dest])
    if isinstance(instruction, Env):
        return "ENV " + CONTINUE.join(
            f"{key}={_env_value(value)}" for key, value in instruction.pairs
        )
    if isinstance(instruction, Directive):
        return f"{instruction.keyword} {instruction.value}"
    if isinstance(instruction, ExecForm):
        return f"{instruction.keyword} {json.dumps(list(instruction.argv))}"
    options = " ".join(f"--{key}={value}" for key, value in instruction.options)
    return f"HEALTHCHECK {options} \\\n    CMD {json.dumps(list(instruction.argv))}"


def _run(run: Run) -> str:
    if run.exec_form:
        (command,) = run.parts
        assert isinstance(command, Command) and not command.env and not run.mounts
        return f"RUN {json.dumps(list(command.argv))}"
    script = run.parts[0].shell()
    for part in run.parts[1:]:
        if run.inline:
            script += f" {part.after} " if part.after == AND else f"{part.after} "
        else:
            script += " \\\n && " if part.after == AND else f"{part.after}{CONTINUE}"
        script += part.shell()
    return "RUN " + CONTINUE.join([*(m.flag() for m in run.mounts), script])


def _word(word: str) -> str:
    return word if isinstance(word, Verbatim) else shlex.quote(word)


def _env_value(value: str) -> str:
    return value if isinstance(value, Verbatim) else dockerfile_env_value(value)
