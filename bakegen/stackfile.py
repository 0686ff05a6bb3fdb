"""The stack file reader: ``stacks/*.toml`` into a checked :class:`~bakegen.stack.StackGraph`.

The reader parses every stack, validates every key against bakegen's schema and
each ecosystem's tables (unknown keys are errors with a did-you-mean), checks
the names and the ``extends`` graph, and returns the stacks in build order. It
is given the ecosystems (:mod:`bakegen.project` passes the registry's).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bakegen import schema
from bakegen.errors import Location, StackError, StackErrors, did_you_mean
from bakegen.paths import Unreadable, outside, read_bounded
from bakegen.schema import Invalid
from bakegen.stack import DEFAULT_TAGS, Stack, StackGraph, User, find_line, stack_location
from bakegen.stackschema import REQUIRED, stack_schema

if TYPE_CHECKING:
    from bakegen.ecosystem import AnyEcosystem


# Names bakegen gives to things in the generated files: a stack cannot take them (nor a stage name
# of an ecosystem's).
RESERVED = {"default": "the bake group of all images", "scratch": "FROM scratch"}
MAX_FILE = 1_000_000  # bytes in a stack file


def _validate(
    data: dict[str, Any],
    spec_table: dict[str, Any],
    prefix: tuple[str, ...],
    err: Callable[..., StackError],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = prefix + (key,)
        dotted = ".".join(path)
        if key not in spec_table:
            raise err(
                f"unknown key {schema.shown(dotted)}",
                path,
                did_you_mean(key, spec_table)
                or f"valid keys here: {', '.join(sorted(spec_table))}",
            )
        spec = spec_table[key]
        if isinstance(spec, dict):
            if not isinstance(value, dict):
                raise err(f"'{dotted}' must be a table, got "
                          f"{schema.type_name(value)}", path, f"write it as [{dotted}]")
            out[key] = _validate(value, spec, path, err)
        else:
            try:
                out[key] = spec(value)
            except Invalid as exc:
                raise err(f"{dotted}: {exc.message}", path, exc.hint, exc.value) from None
    return out


def load_stack(path: Path, ecosystems: Sequence[AnyEcosystem], root: Path | None = None) -> Stack:
    """Parse and validate one stack file (inheritance is checked by :func:`load_stacks`)."""
    shown = str(path.relative_to(root)) if root and path.is_relative_to(root) else str(path)
    text = _read_stack_file(path, shown, root)
    data = _parse_toml(text, shown)
    err = _error_factory(text, shown)
    fields = _validate(data, stack_schema(ecosystems), (), err)
    _check_identity(fields, path, err)
    for eco in ecosystems:
        eco.check(
            fields.get(eco.name, {}), fields, err
        )  # the table of its name; fields holds the rest
    if "extends" in fields:
        _check_root_only(fields, err)
    return _stack_from(fields, path, ecosystems)


ErrorFactory = Callable[..., StackError]


def _error_factory(text: str, shown: str) -> ErrorFactory:
    """err(message, key, hint, value): a StackError at the line of ``key`` (of ``value`` in it) in
    the file."""

    def err(
        message: str,
        key: tuple[str, ...] | None = None,
        hint: str | None = None,
        value: str | None = None,
    ) -> StackError:
        line = find_line(text, key) if key else None
        if line is not None and value is not None:
            line = _value_line(text, line, value)
        return StackError(message, location=Location(shown, line), hint=hint)

    return err


def _check_identity(fields: dict[str, Any], path: Path, err: ErrorFactory) -> None:
    """The required keys, the name, and exactly one of base and extends."""
    for key in REQUIRED:
        if key not in fields:
            raise err("missing required key "
                      f"'{key}'", None, f"add {key} = \"...\" at the top of the file")
    if fields["name"] != path.stem:
        raise err(
            f"name '{fields['name']}' does not match the file name '{path.name}'",
            ("name",),
            f'rename the file to {fields["name"]}.toml or set name = "{path.stem}"',
        )
    has_base = "base" in fields
    if has_base == ("extends" in fields):
        raise err(
            "set exactly one of 'base' (a public image) or 'extends' (another stack)",
            ("base",) if has_base else None,
            'for example base = "python:3.13-slim" or extends = "base"',
        )


def _check_root_only(fields: dict[str, Any], err: ErrorFactory) -> None:
    """A child stack sets none of the keys that belong to the root (an ecosystem's own are its
    check's)."""
    for key in ("user", "platforms"):
        if key in fields:
            raise err(
                f"'{key}' can only be set on a root stack",
                (key,),
                f"set [{key}] in the stack that has 'base'; children inherit it",
            )


def _stack_from(fields: dict[str, Any], path: Path, ecosystems: Sequence[AnyEcosystem]) -> Stack:
    """The Stack of validated fields."""
    run, user = fields.get("run", {}), fields.get("user")
    return Stack(
        name=fields["name"],
        path=path,
        description=fields["description"],
        base=fields.get("base"),
        extends=fields.get("extends"),
        tables={
            key: fields[key] for eco in ecosystems for key in eco.stack_tables() if key in fields
        },
        profile=tuple(fields.get("profile", {}).items()),
        user_declared=user is not None,
        env=fields.get("env", ()),
        user=User(**{**User().__dict__, **user})
        if user is not None
        else (User() if "base" in fields else None),
        port=run.get("port"),
        command=run.get("command"),
        labels=fields.get("labels", ()),
        tags=fields.get("tags", DEFAULT_TAGS),
        platforms=tuple(dict.fromkeys(fields["platforms"])) if "platforms" in fields else None,
    )


def _read_stack_file(path: Path, shown: str, root: Path | None = None) -> str:
    """The file's text, or a StackError that says why it cannot be read: a stack file is a regular
    file in the project (a link may point only inside it, never into .git), at most MAX_FILE
    bytes."""
    where = Location(shown)
    if path.is_symlink() and not path.exists():
        raise StackError("a broken symbolic "
                         "link", location=where, hint="point it at a stack file, or remove it")
    if path.is_dir():
        raise StackError("a folder, not a stack "
                         "file", location=where, hint="stack files are stacks/<name>.toml files")
    if root is not None and outside(root, path):
        raise StackError(
            "a symbolic link out of the project (or into .git)",
            location=where,
            hint="keep stack files in the project's stacks/ folder",
        )
    try:
        data = read_bounded(path, MAX_FILE)
    except Unreadable as exc:
        if exc.reason.startswith(("larger", "not a regular")):
            raise StackError(
                exc.reason,
                location=where,
                hint="a stack file is a few lines of TOML in a regular file",
            ) from None
        raise StackError(
            f"cannot read it: {exc.reason}", location=where, hint="check the file's permissions"
        ) from None
    if data.startswith(b"\xef\xbb\xbf"):
        raise StackError(
            "starts with a byte-order mark (BOM)",
            location=Location(shown, 1, 1),
            hint="save the file as UTF-8 without a BOM",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise StackError(
            f"not UTF-8 text: {exc.reason} (byte {data[exc.start]:#04x})",
            location=Location(shown, line),
            hint="save the file as UTF-8",
        ) from None


def _parse_toml(text: str, shown: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg, line, col = _split_toml_error(str(exc), text)
        raise StackError(
            f"malformed TOML: {msg}",
            location=Location(shown, line, col),
            hint="fix the TOML syntax at that position",
        ) from None
    except RecursionError:
        raise StackError(
            "malformed TOML: arrays or tables nested too deeply",
            location=Location(shown),
            hint="a stack file needs no nesting deeper than a table of arrays",
        ) from None


def _value_line(text: str, start: int, value: str) -> int:
    """The line, at or after ``start``, where the string ``value`` is written."""
    lines = text.splitlines()
    for lineno in range(start, len(lines) + 1):
        if f'"{value}"' in lines[lineno - 1] or f"'{value}'" in lines[lineno - 1]:
            return lineno
    return start


def _split_toml_error(message: str, text: str) -> tuple[str, int | None, int | None]:
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)\s*$", message)
    if m:
        return message[: m.start()], int(m.group(1)), int(m.group(2))
    m = re.search(r"\s*\(at end of document\)\s*$", message)
    if m:  # usually an unclosed array, table or string
        return (
            message[: m.start()] + " at the end of the file (unclosed bracket or quote?)",
            max(1, len(text.splitlines())),
            None,
        )
    return message, None, None


def load_stacks(
    root: Path, ecosystems: Sequence[AnyEcosystem], stacks_dir: str = "stacks"
) -> StackGraph:
    """Load every ``<root>/<stacks_dir>/*.toml``; raise :class:`StackErrors` listing every invalid
    file."""
    directory = root / stacks_dir
    if directory.is_dir() and outside(root, directory):
        raise StackErrors([StackError(f"{stacks_dir}/ is a symbolic link out of the project (or "
                                      "into .git)", location=Location(stacks_dir),
                                      hint="keep the stack files in a real stacks/ folder of the "
                                           "project")])
    # Hidden files are not stacks: editors' lock and backup files (.#base.toml) among them.
    files = (
        sorted(p for p in directory.glob("*.toml") if not p.name.startswith("."))
        if directory.is_dir()
        else []
    )
    if not files:
        raise StackErrors(
            [
                StackError(
                    f"no stack files in {directory}",
                    hint="create stacks/<name>.toml, or run bakegen in the project folder (-C DIR)",
                )
            ]
        )
    stacks: dict[str, Stack] = {}
    errors: list[StackError] = []
    for path in files:
        try:
            stack = load_stack(path, ecosystems, root)
        except StackError as exc:
            errors.append(exc)
            continue
        stacks[stack.name] = stack
    if errors:
        raise StackErrors(errors)
    errors = _check_names(stacks, root, ecosystems) or _check_graph(stacks, root)
    if errors:
        raise StackErrors(errors)
    graph = StackGraph(root=root, stacks=stacks)
    graph.order = _build_order(stacks)
    _check_inheritance(graph, ecosystems)
    return graph


def _check_names(
    stacks: dict[str, Stack], root: Path, ecosystems: Sequence[AnyEcosystem]
) -> list[StackError]:
    """Names that collide with what bakegen generates: reserved words, and names equal but for - and
    _."""
    errors = []
    seen: dict[str, str] = {}
    reserved = {**RESERVED, **{stage: "a Dockerfile stage of "
                                      f"{eco.name}" for eco in ecosystems for stage in eco.stages}}
    for name in sorted(stacks):
        if name in reserved:
            errors.append(
                StackError(
                    f"the stack name '{name}' is taken by {reserved[name]} in the generated files",
                    location=stack_location(stacks[name], root, ("name",)),
                    hint="rename the stack (and its file)",
                )
            )
        key = name.replace("-", "_")
        if key in seen:
            errors.append(
                StackError(
                    f"stacks '{seen[key]}' and '{name}' differ only in - and _, "
                    "and would share names in docker-bake.hcl",
                    location=stack_location(stacks[name], root, ("name",)),
                    hint="rename one of them",
                )
            )
        seen[key] = name
    return errors


def _check_graph(stacks: dict[str, Stack], root: Path) -> list[StackError]:
    errors: list[StackError] = []
    for name in sorted(stacks):
        ext = stacks[name].extends
        if ext is not None and ext not in stacks:
            hint = (
                did_you_mean(ext, [s for s in stacks if s != name])
                or f"create stacks/{ext}.toml, or extend one of: {', '.join(sorted(stacks))}"
            )
            errors.append(
                StackError(
                    f"extends '{ext}': no such stack",
                    location=stack_location(stacks[name], root, ("extends",)),
                    hint=hint,
                )
            )
    if errors:
        return errors
    seen: set[str] = set()
    for start in sorted(stacks):
        path: list[str] = []
        node: str | None = start
        while node is not None and node not in seen:
            if node in path:
                cycle = path[path.index(node):] + [node]
                first = stacks[cycle[0]]
                errors.append(StackError(
                    f"extends cycle: {' -> '.join(cycle)}",
                    location=stack_location(first, root, ("extends",)),
                    hint="one stack in the cycle must use 'base' instead of 'extends'",
                ))
                break
            path.append(node)
            node = stacks[node].extends
        seen.update(path)
    return errors


def _build_order(stacks: dict[str, Stack]) -> list[str]:
    order: list[str] = []
    done: set[str] = set()
    ready = sorted(n for n, s in stacks.items() if s.extends is None)
    while ready:
        name = ready.pop(0)
        order.append(name)
        done.add(name)
        ready = sorted(
            set(ready) | {n for n, s in stacks.items() if s.extends == name and n not in done}
        )
    return order


def _check_inheritance(graph: StackGraph, ecosystems: Sequence[AnyEcosystem]) -> None:
    errors = [
        error
        for name in graph.order
        for eco in ecosystems
        for error in eco.check_graph(graph.effective(name), graph)
    ]
    if errors:
        raise StackErrors(errors)
