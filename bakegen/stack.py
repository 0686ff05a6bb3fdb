"""The stack model (what the user wrote) and its strict loader.

A stack file ``stacks/<name>.toml`` describes one image. The loader parses
every stack, validates every key (unknown keys are errors with a did-you-mean),
checks the ``extends`` graph and returns the stacks in build order.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from bakegen.errors import Location, StackError, StackErrors, did_you_mean
from bakegen.resolvers.apt import DEBIAN_SUITES, UBUNTU_SUITES, distro_of

DEFAULT_USER = ("jovyan", 1000, 100)
DEFAULT_PORT = 8888
DEFAULT_TAGS = ("latest",)

NAME_RE = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$")
PYTHON_RE = re.compile(r"^3\.\d{1,2}$")
APT_PKG_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(?:=[A-Za-z0-9.+~:-]+)?$")
ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
NPM_RE = re.compile(r"^(?:@[a-z0-9-~][a-z0-9-._~]*/)?[a-z0-9-~][a-z0-9-._~]*(?:@[^\s@]+)?$")
PLATFORMS = ("linux/amd64", "linux/arm64")
DEFAULT_PLATFORMS = ("linux/amd64",)


@dataclass(frozen=True)
class User:
    name: str = DEFAULT_USER[0]
    uid: int = DEFAULT_USER[1]
    gid: int = DEFAULT_USER[2]


@dataclass(frozen=True)
class Stack:
    """One validated stack file. Inherited values are resolved by :class:`StackGraph`."""

    name: str
    path: Path
    description: str
    base: str | None = None
    extends: str | None = None
    python_version: str | None = None
    python_packages: tuple[str, ...] = ()
    apt_packages: tuple[str, ...] = ()
    apt_build: tuple[str, ...] = ()
    apt_suite: str | None = None
    apt_snapshot: str | None = None
    apt_mirror: str | None = None
    npm_packages: tuple[str, ...] = ()
    npm_allow_scripts: bool = False
    npm_node: str = "apt"
    profile: tuple[tuple[str, Any], ...] = ()  # [profile] overrides for JupyterHub's profileList
    python_env: str = "venv"  # "venv": a new /opt/venv; "base": the base image's own Python (vendor images)
    python_interpreter: str | None = None  # with env = "base": found on the image's PATH unless set
    python_slim: bool | None = None  # None: as the parent (default False)
    user_declared: bool = False
    env: tuple[tuple[str, str], ...] = ()
    user: User | None = None
    port: int | None = None
    command: tuple[str, ...] | None = None
    labels: tuple[tuple[str, str], ...] = ()
    tags: tuple[str, ...] = DEFAULT_TAGS
    platforms: tuple[str, ...] | None = None

    def requirements(self) -> list[Requirement]:
        return [Requirement(r) for r in self.python_packages]


# --- schema -----------------------------------------------------------------
# Each key maps to a checker that returns the converted value or raises
# _Invalid(message, hint). Tables map to nested schemas.


class _Invalid(Exception):
    def __init__(self, message: str, hint: str | None = None, value: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.value = value  # the offending list item, to point at its own line


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_tname(value)}", "put the value in double quotes")
    return value


def _matching(regex: re.Pattern[str], what: str, example: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        value = _string(value)
        if not regex.match(value):
            raise _Invalid(f"invalid {what} {value!r}", f"use something like {example!r}", value)
        return value

    return check


def _int_in(lo: int, hi: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Invalid(f"expected an integer, got {_tname(value)}", "write a whole number without quotes")
        if not lo <= value <= hi:
            raise _Invalid(f"{value} is out of range {lo}..{hi}")
        return value

    return check


def _list_of(item: Callable[[Any], Any], *, non_empty: bool = False) -> Callable[[Any], tuple[Any, ...]]:
    def check(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise _Invalid(f"expected an array, got {_tname(value)}", 'write a list such as ["a", "b"]')
        if non_empty and not value:
            raise _Invalid("must not be empty")
        return tuple(item(v) for v in value)

    return check


def _platform(value: Any) -> str:
    value = _string(value)
    if value not in PLATFORMS:
        raise _Invalid(f"unsupported platform {value!r}", did_you_mean(value, PLATFORMS) or f"use one of: {', '.join(PLATFORMS)}", value)
    return value


def _number(lo: float, hi: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid(f"expected a number, got {_tname(value)}", "write a number without quotes, e.g. 2 or 0.5")
        if not lo <= value <= hi:
            raise _Invalid(f"{value} is out of range {lo}..{hi}")
        return value

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"expected true or false, got {_tname(value)}", "write true or false, without quotes")
    return value


def _one_of(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        value = _string(value)
        if value not in choices:
            raise _Invalid(f"expected one of {', '.join(choices)}, got {value!r}", did_you_mean(value, choices))
        return value

    return check


def _requirement(value: Any) -> str:
    value = _string(value)
    try:
        req = Requirement(value)
    except InvalidRequirement as exc:
        detail = str(exc).splitlines()[0]
        raise _Invalid(
            f"invalid requirement {value!r}: {detail}",
            "write a PEP 508 requirement such as 'numpy>=2.1' or 'pandas[excel]~=2.2'",
            value,
        ) from None
    if req.url:
        raise _Invalid(f"requirement {value!r} is a direct URL", "name a package from the index, with a version range", value)
    return value


def _env_value(value: Any) -> str:
    value = _string(value)
    if "\n" in value or "\r" in value or "\0" in value:
        raise _Invalid("environment values cannot contain newlines or NUL bytes", "put the value on one line")
    return value


def _table_of(key: Callable[[Any], str], val: Callable[[Any], str]) -> Callable[[Any], tuple[tuple[str, str], ...]]:
    def check(value: Any) -> tuple[tuple[str, str], ...]:
        if not isinstance(value, dict):
            raise _Invalid(f"expected a table, got {_tname(value)}", 'write it as a [table] of key = "value" lines')
        return tuple((key(k), val(v)) for k, v in value.items())

    return check


def _tname(value: Any) -> str:
    return {str: "a string", int: "an integer", float: "a float", bool: "a boolean", list: "an array", dict: "a table"}.get(
        type(value), type(value).__name__
    )


_env_name = _matching(ENV_RE, "environment variable name", "MPLBACKEND")

SCHEMA: dict[str, Any] = {
    "name": _matching(NAME_RE, "stack name", "scipy"),
    "description": _string,
    "base": _string,
    "extends": _matching(NAME_RE, "stack name", "base"),
    "tags": _list_of(_matching(TAG_RE, "tag", "latest"), non_empty=True),
    "platforms": _list_of(_platform, non_empty=True),
    "python": {
        "version": _matching(PYTHON_RE, "Python version", "3.13"),
        "packages": _list_of(_requirement),
        "env": _one_of("venv", "base"),
        "interpreter": _matching(re.compile(r"^/\S+$"), "interpreter path", "/opt/conda/bin/python"),
        "slim": _bool,
    },
    "apt": {
        "packages": _list_of(_matching(APT_PKG_RE, "apt package", "git or git=1:2.47.3-0+deb13u1")),
        "build": _list_of(_matching(APT_PKG_RE, "apt package", "build-essential")),
        "suite": _matching(re.compile(r"^[a-z]+$"), "suite", "trixie"),
        "snapshot": _matching(re.compile(r"^\d{8}T\d{6}Z$"), "snapshot", "20261101T000000Z"),
        "mirror": _matching(re.compile(r"^https?://\S+[^/]$"), "mirror URL", "http://deb.debian.org/debian"),
    },
    "npm": {
        "packages": _list_of(_matching(NPM_RE, "npm package", "leaflet@1.9.4")),
        "allow_scripts": _bool,
        "node": _one_of("apt", "base"),
    },
    "profile": {
        "enabled": _bool,
        "display_name": _string,
        "slug": _matching(NAME_RE, "slug", "scipy"),
        "default": _bool,
        "cpu_limit": _number(0.01, 1024),
        "mem_limit": _matching(re.compile(r"^\d+(?:\.\d+)?[KMGT]$"), "memory limit", "4G (K, M, G or T, as JupyterHub reads them: 4G is 4 GiB)"),
        "default_url": _matching(re.compile(r"^/\S*$"), "default_url", "/lab"),
    },
    "env": _table_of(_env_name, _env_value),
    "user": {
        "name": _matching(USER_RE, "user name", "jovyan"),
        "uid": _int_in(1, 2**31 - 1),
        "gid": _int_in(0, 2**31 - 1),
    },
    "run": {
        "port": _int_in(1, 65535),
        "command": _list_of(_string, non_empty=True),
    },
    "labels": _table_of(_string, _string),
}
REQUIRED = ("name", "description")


# --- locating keys in the source text ------------------------------------------

_HEADER_RE = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]\s*(?:#.*)?$")
_KEY_RE = re.compile(r"""^\s*((?:"(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:"(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+))*)\s*=""")


_PART_RE = re.compile(r"""\s*("(?:[^"\\]|\\.)*"|'[^']*'|[^.\s]+)\s*""")


def _unquote(key: str) -> str:
    return key[1:-1] if key[:1] in "\"'" else key


def _split_dotted(key: str) -> tuple[str, ...]:
    return tuple(_unquote(m.group(1)) for m in _PART_RE.finditer(key))


def find_line(text: str, dotted: tuple[str, ...]) -> int | None:
    """Best-effort 1-based line of ``dotted`` (e.g. ("python", "pakages")) in TOML text."""
    table: tuple[str, ...] = ()
    header_line: int | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _HEADER_RE.match(line)
        if m:
            table = _split_dotted(m.group(1))
            if table == dotted:
                return lineno
            if table == dotted[:-1]:
                header_line = lineno
            continue
        m = _KEY_RE.match(line)
        if m:
            key = _split_dotted(m.group(1))
            if table + key == dotted or table + key == dotted[: len(table + key)] and len(table + key) < len(dotted):
                return lineno
    return header_line


# --- loading --------------------------------------------------------------------


def _validate(data: dict[str, Any], schema: dict[str, Any], prefix: tuple[str, ...], err: Callable[..., StackError]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = prefix + (key,)
        dotted = ".".join(path)
        if key not in schema:
            raise err(f"unknown key '{dotted}'", path, did_you_mean(key, schema) or f"valid keys here: {', '.join(sorted(schema))}")
        spec = schema[key]
        if isinstance(spec, dict):
            if not isinstance(value, dict):
                raise err(f"'{dotted}' must be a table, got {_tname(value)}", path, f"write it as [{dotted}]")
            out[key] = _validate(value, spec, path, err)
        else:
            try:
                out[key] = spec(value)
            except _Invalid as exc:
                raise err(f"{dotted}: {exc.message}", path, exc.hint, exc.value) from None
    return out


def load_stack(path: Path, root: Path | None = None) -> Stack:
    """Parse and validate one stack file (inheritance is checked by :func:`load_stacks`)."""
    shown = str(path.relative_to(root)) if root and path.is_relative_to(root) else str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise StackError(f"not UTF-8 text: {exc.reason}", location=Location(shown), hint="save the file as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg, line, col = _split_toml_error(str(exc), text)
        raise StackError(f"malformed TOML: {msg}", location=Location(shown, line, col), hint="fix the TOML syntax at that position") from None

    def err(message: str, key: tuple[str, ...] | None = None, hint: str | None = None, value: str | None = None) -> StackError:
        line = find_line(text, key) if key else None
        if line is not None and value is not None:
            line = _value_line(text, line, value)
        return StackError(message, location=Location(shown, line), hint=hint)

    fields = _validate(data, SCHEMA, (), err)
    for key in REQUIRED:
        if key not in fields:
            raise err(f"missing required key '{key}'", None, f"add {key} = \"...\" at the top of the file")
    if fields["name"] != path.stem:
        raise err(f"name '{fields['name']}' does not match the file name '{path.name}'", ("name",), f"rename the file to {fields['name']}.toml or set name = \"{path.stem}\"")
    has_base, has_extends = "base" in fields, "extends" in fields
    if has_base == has_extends:
        raise err(
            "set exactly one of 'base' (a public image) or 'extends' (another stack)",
            ("base",) if has_base else None,
            'for example base = "python:3.13-slim" or extends = "base"',
        )
    python = fields.get("python", {})
    apt = fields.get("apt", {})
    if "interpreter" in python and python.get("env", "venv") != "base":
        raise err("'python.interpreter' needs python.env = \"base\"", ("python", "interpreter"), 'set env = "base" to install into the base image\'s own Python')
    if has_base and "version" not in python:
        raise err("missing 'python.version' for a stack with a base image", ("python",), 'add [python] version = "3.13" matching the base image')
    if has_extends:
        for key in ("user", "platforms"):
            if key in fields:
                raise err(f"'{key}' can only be set on a root stack", (key,), f"set [{key}] in the stack that has 'base'; children inherit it")
        for key in ("env", "interpreter"):
            if key in python:
                raise err(f"'python.{key}' can only be set on a root stack", ("python", key), "a child uses its parent's Python")
        for key in ("suite", "snapshot", "mirror"):
            if key in apt:
                raise err(f"'apt.{key}' can only be set on a root stack", ("apt", key), "the base image decides where apt packages come from; set it in the stack that has 'base'")
    run = fields.get("run", {})
    user = fields.get("user")
    return Stack(
        name=fields["name"],
        path=path,
        description=fields["description"],
        base=fields.get("base"),
        extends=fields.get("extends"),
        python_version=python.get("version"),
        python_packages=python.get("packages", ()),
        apt_packages=apt.get("packages", ()),
        apt_build=apt.get("build", ()),
        apt_suite=apt.get("suite"),
        apt_snapshot=apt.get("snapshot"),
        apt_mirror=apt.get("mirror"),
        npm_packages=fields.get("npm", {}).get("packages", ()),
        npm_allow_scripts=fields.get("npm", {}).get("allow_scripts", False),
        npm_node=fields.get("npm", {}).get("node", "apt"),
        profile=tuple(fields.get("profile", {}).items()),
        python_env=python.get("env", "venv"),
        python_interpreter=python.get("interpreter"),
        python_slim=python.get("slim"),
        user_declared=user is not None,
        env=fields.get("env", ()),
        user=User(**{**User().__dict__, **user}) if user is not None else (User() if has_base else None),
        port=run.get("port"),
        command=run.get("command"),
        labels=fields.get("labels", ()),
        tags=fields.get("tags", DEFAULT_TAGS),
        platforms=tuple(dict.fromkeys(fields["platforms"])) if "platforms" in fields else None,
    )


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
        return message[: m.start()] + " at the end of the file (unclosed bracket or quote?)", max(1, len(text.splitlines())), None
    return message, None, None


@dataclass
class StackGraph:
    """All stacks of a project, validated, in build order (parents first)."""

    root: Path
    stacks: dict[str, Stack]
    order: list[str] = field(default_factory=list)

    def parent(self, name: str) -> Stack | None:
        ext = self.stacks[name].extends
        return self.stacks[ext] if ext else None

    def ancestors(self, name: str) -> list[Stack]:
        """Root first, excluding ``name`` itself."""
        chain: list[Stack] = []
        p = self.parent(name)
        while p is not None:
            chain.append(p)
            p = self.parent(p.name)
        return chain[::-1]

    def root_of(self, name: str) -> Stack:
        chain = self.ancestors(name)
        return chain[0] if chain else self.stacks[name]

    def python_version(self, name: str) -> str:
        version = self.root_of(name).python_version
        assert version is not None
        return version

    def user(self, name: str) -> User:
        user = self.root_of(name).user
        assert user is not None
        return user

    def python_env(self, name: str) -> str:
        return self.root_of(name).python_env

    def python_slim(self, name: str) -> bool:
        """``[python] slim`` of the stack, else of its nearest ancestor that sets it; False when none does."""
        for stack in [self.stacks[name], *reversed(self.ancestors(name))]:
            if stack.python_slim is not None:
                return stack.python_slim
        return False

    def platforms(self, name: str) -> list[str]:
        return list(self.root_of(name).platforms or DEFAULT_PLATFORMS)

    def select(self, names: list[str] | None) -> list[str]:
        """``names`` plus their ancestors, in build order; all stacks when ``names`` is empty."""
        if not names:
            return list(self.order)
        wanted: set[str] = set()
        for n in names:
            if n not in self.stacks:
                raise StackError(f"no stack named '{n}'", hint=did_you_mean(n, self.stacks) or f"stacks: {', '.join(self.order)}")
            wanted.add(n)
            wanted.update(s.name for s in self.ancestors(n))
        return [n for n in self.order if n in wanted]


def load_stacks(root: Path, stacks_dir: str = "stacks") -> StackGraph:
    """Load every ``<root>/<stacks_dir>/*.toml``; raise :class:`StackErrors` listing every invalid file."""
    directory = root / stacks_dir
    files = sorted(directory.glob("*.toml"))
    if not files:
        raise StackErrors([StackError(f"no stack files in {directory}", hint="create stacks/<name>.toml, or run bakegen in the project folder (-C DIR)")])
    stacks: dict[str, Stack] = {}
    errors: list[StackError] = []
    for path in files:
        try:
            stack = load_stack(path, root)
        except StackError as exc:
            errors.append(exc)
            continue
        stacks[stack.name] = stack
    if errors:
        raise StackErrors(errors)
    errors = _check_graph(stacks, root)
    if errors:
        raise StackErrors(errors)
    graph = StackGraph(root=root, stacks=stacks)
    graph.order = _build_order(stacks)
    _check_inheritance(graph)
    return graph


def _shown(stack: Stack, root: Path) -> str:
    return str(stack.path.relative_to(root)) if stack.path.is_relative_to(root) else str(stack.path)


def _location(stack: Stack, root: Path, key: tuple[str, ...]) -> Location:
    return Location(_shown(stack, root), find_line(stack.path.read_text(encoding="utf-8"), key))


def _check_graph(stacks: dict[str, Stack], root: Path) -> list[StackError]:
    errors: list[StackError] = []
    for name in sorted(stacks):
        ext = stacks[name].extends
        if ext is not None and ext not in stacks:
            hint = did_you_mean(ext, [s for s in stacks if s != name]) or f"create stacks/{ext}.toml, or extend one of: {', '.join(sorted(stacks))}"
            errors.append(StackError(f"extends '{ext}': no such stack", location=_location(stacks[name], root, ("extends",)), hint=hint))
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
                    location=_location(first, root, ("extends",)),
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
        ready = sorted(set(ready) | {n for n, s in stacks.items() if s.extends == name and n not in done})
    return order


def _check_inheritance(graph: StackGraph) -> None:
    errors: list[StackError] = []
    for name in graph.order:
        stack = graph.stacks[name]
        parent = graph.parent(name)
        root = graph.root_of(name)
        if (stack.apt_packages or stack.apt_build) and root.apt_suite is None:
            errors.append(StackError(
                f"apt packages need 'apt.suite' in stacks/{root.name}.toml",
                location=_location(stack, graph.root, ("apt", "packages" if stack.apt_packages else "build")),
                hint=f"set [apt] suite = \"trixie\" (the Debian or Ubuntu release of {root.base}) in stacks/{root.name}.toml",
            ))
        elif root.apt_suite is not None and distro_of(root.apt_suite) is None and stack is root:
            errors.append(StackError(
                f"apt.suite: unknown Debian or Ubuntu release '{root.apt_suite}'",
                location=_location(stack, graph.root, ("apt", "suite")),
                hint=did_you_mean(root.apt_suite, DEBIAN_SUITES + UBUNTU_SUITES) or f"use one of: {', '.join(DEBIAN_SUITES + UBUNTU_SUITES)}",
            ))
        if stack.python_slim and root.python_env == "base":
            errors.append(StackError(
                "python.slim needs bakegen's own virtualenv, and this stack installs into its base image's Python",
                location=_location(stack, graph.root, ("python", "slim")),
                hint=f"remove slim, or set [python] env = \"venv\" in stacks/{root.name}.toml",
            ))
        if stack.npm_packages and stack.npm_node == "apt":
            builder_apt = {p.partition("=")[0] for p in stack.apt_build} | {
                p.partition("=")[0] for s in graph.ancestors(name) + [stack] for p in s.apt_packages
            }
            missing = [tool for tool in ("nodejs", "npm") if tool not in builder_apt]
            if missing:
                errors.append(StackError(
                    f"npm packages need {' and '.join(missing)} in the builder stage",
                    location=_location(stack, graph.root, ("npm", "packages")),
                    hint='add [apt] build = ["nodejs", "npm"] (locked, builder stage only), or set npm.node = "base" if the base image has node',
                ))
        if parent is None:
            continue
        want = graph.python_version(name)
        if stack.python_version is not None and stack.python_version != want:
            errors.append(StackError(
                f"python.version '{stack.python_version}' differs from '{want}' inherited from '{parent.name}'",
                location=_location(stack, graph.root, ("python", "version")),
                hint="a child stack runs its parent's Python: remove python.version or make it match",
            ))
    if errors:
        raise StackErrors(errors)


def canonical_requirements(stack: Stack) -> list[str]:
    """Requirement strings normalized for hashing: canonical names, sorted."""
    out = []
    for req in stack.requirements():
        req.name = canonicalize_name(req.name)
        out.append(str(req))
    return sorted(out)
