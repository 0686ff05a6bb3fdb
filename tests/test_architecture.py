"""The shape of the code: one registry of ecosystems, generic code that names none, a plan the
template only writes out, and fingerprints that a new ecosystem does not move."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bakegen import registry as ordered
from bakegen.ecosystem import Ecosystem
from bakegen.project import load_stacks, read_lock
from bakegen.staleness import current_locks, stack_fingerprint

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "bakegen"
ECOSYSTEM_MODULES = {f"bakegen.ecosystems.{p.stem}" for p in (PACKAGE / "ecosystems").glob("*.py") if p.stem != "__init__"}
GENERIC = ["lock.py", "files.py", "ecosystem.py", "locker.py", "diff.py", "report.py", "cli.py", "plan.py", "stack.py", "stackfile.py", "stackschema.py", "lockfile.py", "staleness.py", "project.py", "commands.py", "transaction.py", "render"]


class Dummy(Ecosystem):
    """An ecosystem that no stack uses: [dummy] packages."""

    name = "dummy"
    table = {"packages": lambda value: tuple(value)}

    def used(self, stack: Any) -> bool:
        return bool(stack.table("dummy"))

    def fingerprint(self, stack: Any) -> Any:
        return {"packages": list(stack.table("dummy")["packages"])} if stack.table("dummy") else None


def _imports(path: Path, top_level: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in tree.body if top_level else ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


@pytest.mark.parametrize("where", GENERIC)
def test_generic_code_names_no_ecosystem_module(where):
    paths = sorted((PACKAGE / where).glob("*.py")) if (PACKAGE / where).is_dir() else [PACKAGE / where]
    for path in paths:
        named = _imports(path) & ECOSYSTEM_MODULES
        assert not named, f"{path.relative_to(REPO)} imports {sorted(named)}: go through the registry"


MODEL = ("stack.py", "stackfile.py", "stackschema.py", "lock.py", "lockfile.py", "transaction.py", "plan.py", "ecosystem.py", "files.py", "escape.py", "errors.py", "paths.py", "schema.py")
ABOVE_THE_MODEL = ("bakegen.ecosystems", "bakegen.registry", "bakegen.project", "bakegen.render", "bakegen.locker", "bakegen.cli",
                   "bakegen.commands")


def _module_of(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def _runtime_imports(path: Path) -> set[str]:
    """The bakegen modules a module imports when it runs, at any depth (a lazy import inside a function
    counts); an ``if TYPE_CHECKING:`` block does not run."""
    found: set[str] = set()
    todo: list[ast.AST] = [ast.parse(path.read_text())]
    while todo:
        node = todo.pop()
        if _is_type_checking(node):
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            found.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        todo.extend(ast.iter_child_nodes(node))
    return {m for m in found if m in MODULES}


MODULES = {_module_of(p): p for p in PACKAGE.rglob("*.py")}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (module -> what it imports), or None."""
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            found = None if state.get(nxt) else visit(nxt, [*path, nxt])
            if found:
                return found
        state[node] = 2
        return None

    return next((c for start in sorted(graph) if not state.get(start) for c in [visit(start, [start])] if c), None)


def test_the_import_graph_has_no_cycle():
    """No bakegen module imports, at run time and at any depth, one that imports it back: a lazy import may
    not hide a cycle (the model took the registry from a function once)."""
    graph = {name: _runtime_imports(path) - {name} for name, path in MODULES.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("name", MODEL)
def test_the_model_imports_nothing_above_it(name):
    """The model (stacks, locks, the plan, the ecosystem interface) is given the ecosystems: it imports no
    ecosystem, no registry and nothing that reads a project, at run time or lazily."""
    above = {m for m in _runtime_imports(PACKAGE / name) if m.startswith(ABOVE_THE_MODEL)}
    assert not above, (name, sorted(above))


def _loaded_by(module: str) -> list[str]:
    """The bakegen modules (and jinja2) that importing ``module`` loads, in a fresh interpreter."""
    code = f"import sys, {module}; print(' '.join(sorted(m for m in sys.modules if m.startswith(('bakegen', 'jinja2')))))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()


def test_the_model_loads_no_ecosystem_no_registry_and_no_renderer():
    for module in ("bakegen.stack", "bakegen.lock", "bakegen.plan", "bakegen.ecosystem"):
        loaded = _loaded_by(module)
        assert not [m for m in loaded if m.startswith(("bakegen.ecosystems", "bakegen.registry", "bakegen.render", "jinja2"))], (module, loaded)


def test_an_ecosystem_module_loads_no_other_ecosystem_through_a_package_registry():
    """The ecosystems package is only a folder: importing one ecosystem does not import all of them (the
    registry is bakegen/registry.py, above them)."""
    loaded = _loaded_by("bakegen.ecosystems.image")
    assert "bakegen.registry" not in loaded and [m for m in loaded if m.startswith("bakegen.ecosystems.")] == ["bakegen.ecosystems.image"], loaded


def test_render_never_reaches_a_resolver_or_the_network():
    for path in (PACKAGE / "render").glob("*.py"):
        assert not {m for m in _imports(path) if m.startswith(("bakegen.resolvers", "urllib", "bakegen.proc"))}, path.name


def test_each_ecosystem_is_one_module_and_one_registry_line():
    lines = [line.strip() for line in (PACKAGE / "registry.py").read_text().splitlines() if line.strip().endswith(".ECOSYSTEM,")]
    assert len(lines) == len(ordered.ECOSYSTEMS) == len(ECOSYSTEM_MODULES)
    assert len({e.name for e in ordered.ECOSYSTEMS}) == len(ordered.ECOSYSTEMS)


def decisions(template: str) -> list[str]:
    """The nodes of a Jinja template that decide something: an if (a tag or inline), a set, a macro, a filter, a test."""
    from jinja2 import Environment, nodes

    tree = Environment().parse(template)
    kinds = (nodes.If, nodes.CondExpr, nodes.Assign, nodes.AssignBlock, nodes.Macro, nodes.Filter, nodes.Test, nodes.Compare, nodes.And, nodes.Or, nodes.Not)
    return [type(node).__name__ for node in tree.find_all(kinds)]


def test_the_dockerfile_template_makes_no_decisions():
    from jinja2 import Environment, nodes

    text = (PACKAGE / "render" / "templates" / "Dockerfile.j2").read_text()
    assert decisions(text) == []
    assert len(list(Environment().parse(text).find_all(nodes.For))) == 5


def test_every_stage_name_is_one_an_ecosystem_declares():
    """A stack cannot take a stage's name (bakegen.stack checks the declared names): no stage goes undeclared."""
    from bakegen.plan import plan_dockerfile
    from bakegen.staleness import current_locks

    graph = load_stacks(REPO)
    locks = current_locks(graph)
    declared = {stage for eco in ordered.ECOSYSTEMS for stage in eco.stages}
    used = {stage.name for name in graph.order for stage in plan_dockerfile(graph, name, locks, ordered.ECOSYSTEMS).stages if stage.name}
    assert used and used <= declared, used - declared


@pytest.mark.parametrize("template", ['{{ "a" if x else "b" }}', "{% if x %}a{% endif %}", "{% set y = 1 %}", "{{ x|upper }}", "{{ x == 1 }}"])
def test_the_decision_finder_finds_an_inline_if_and_the_rest(template):
    assert decisions(template)


def test_no_function_is_longer_than_50_lines():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 50:
                long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}")
    assert not long


def _fingerprints(root: Path) -> dict[str, tuple[str, str]]:
    graph = load_stacks(root)
    out = {}
    for name in graph.order:
        parent = graph.parent(name)
        lock = read_lock(root / "locks" / name, root)
        assert lock is not None
        parent_lock = read_lock(root / "locks" / parent.name, root) if parent else None
        out[name] = (lock.fingerprint, stack_fingerprint(graph, name, parent_lock))
    return out


@pytest.mark.parametrize("root", [REPO, REPO / "tests" / "cases" / "migrate-v2"], ids=["examples", "migrate-v2"])
def test_an_ecosystem_that_no_stack_uses_changes_no_fingerprint(root, monkeypatch):
    before = _fingerprints(root)
    assert all(locked == now for locked, now in before.values())  # the committed locks are current
    monkeypatch.setattr(ordered, "ECOSYSTEMS", [*ordered.ECOSYSTEMS, Dummy()])
    assert _fingerprints(root) == before
    if root == REPO:
        current_locks(load_stacks(root))  # and every lock still reads and matches


def test_an_ecosystem_a_stack_uses_changes_its_fingerprint(project, monkeypatch):
    monkeypatch.setattr(ordered, "ECOSYSTEMS", [*ordered.ECOSYSTEMS, Dummy()])
    base = 'name = "base"\ndescription = "b"\nbase = "python:3.13-slim"\n[python]\nversion = "3.13"\n'
    plain = load_stacks(project({"base": base}))
    used = load_stacks(project({"base": base + '[dummy]\npackages = ["x"]\n'}))
    assert stack_fingerprint(plain, "base", None) != stack_fingerprint(used, "base", None)


def test_each_plan_fact_has_one_provider_and_is_read_only_after_it():
    """plan.Facts: every field is set by exactly one ecosystem, and an ecosystem's facts() reads only fields
    that an ecosystem before it in the registry provides (plan.context fills them in that order, and refuses an
    ecosystem that sets a field it does not declare)."""
    from dataclasses import fields

    from bakegen.plan import Facts

    providers = [name for eco in ordered.ECOSYSTEMS for name in eco.provides]
    assert sorted(providers) == sorted(f.name for f in fields(Facts)), providers
    seen: set[str] = set()
    for eco in ordered.ECOSYSTEMS:
        assert set(eco.reads) <= seen, (eco.name, sorted(set(eco.reads) - seen))
        seen |= set(eco.provides)


def test_the_plan_refuses_an_ecosystem_that_sets_a_fact_it_does_not_provide(monkeypatch):
    from dataclasses import replace

    from bakegen.plan import context

    class Sneaky(Dummy):
        def facts(self, ctx):
            return replace(ctx.facts, init="sh")

    graph = load_stacks(REPO)
    locks = current_locks(graph)
    monkeypatch.setattr(ordered, "ECOSYSTEMS", [*ordered.ECOSYSTEMS, Sneaky()])
    with pytest.raises(AssertionError, match=r"set facts it does not provide: \[.init.\]"):
        context(graph, "base", locks, ordered.ECOSYSTEMS)


def test_no_ecosystem_imports_the_registry():
    """The registry is above the ecosystems: it binds the custom ecosystem to the list instead."""
    for path in sorted((PACKAGE / "ecosystems").glob("*.py")):
        assert not {m for m in _imports(path) if m.startswith(("bakegen.registry", "bakegen.project"))}, path.name


def test_the_planner_is_given_the_ecosystems():
    """plan.py (the model of a Dockerfile) neither imports the registry nor looks it up: callers pass it."""
    assert not {m for m in _imports(PACKAGE / "plan.py") if "registry" in m}


def test_the_readme_layout_names_every_module():
    """README's "Code layout" lists each module of bakegen/ (a folder by its name, the ecosystems each)."""
    readme = (REPO / "README.md").read_text()
    layout = readme.split("## Code layout", 1)[1].split("```", 2)[1]
    listed = set(re.findall(r"bakegen/[\w/]+\.py|bakegen/\w+/", layout)) | {f"bakegen/ecosystems/{m}" for m in re.findall(r"\b(\w+\.py)\b", layout)}
    listed |= {path.rsplit("/", 1)[0] + "/" for path in listed if path.count("/") == 2}  # bakegen/resolvers/npm.py: the folder too
    wanted = {f"bakegen/{p.name}" for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")}
    wanted |= {f"bakegen/{p.name}/" for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    wanted |= {f"bakegen/ecosystems/{p.name}" for p in (PACKAGE / "ecosystems").glob("*.py") if p.stem != "__init__"}
    assert not wanted - listed, sorted(wanted - listed)


TYPED_ECOSYSTEM = '''
from dataclasses import dataclass
from typing import Any

from bakegen.ecosystem import Ecosystem, ReadFile, ResolveContext


@dataclass
class DummyLock:
    packages: list[str]


class Dummy(Ecosystem[DummyLock, None]):
    name = "dummy"

    def resolve(self, ctx: ResolveContext[None]) -> DummyLock:
        return DummyLock([])

    def read(self, section: dict[str, Any], read_file: ReadFile, doc: dict[str, Any], where: str) -> RETURNS:
        return SECTION
'''


@pytest.mark.parametrize(("returns", "section", "errors"), [("DummyLock", "DummyLock(section['packages'])", 0), ("dict[str, Any]", "section", 1)])
def test_the_type_checker_holds_an_ecosystem_to_its_lock_part(tmp_path, returns, section, errors):
    """Ecosystem[PartT, ResolverT]: mypy (make lint) refuses an ecosystem whose read() returns something other
    than the part its resolve() makes."""
    (tmp_path / "mypy.ini").write_text("[mypy]\nfollow_imports = silent\n")
    (tmp_path / "dummy.py").write_text(TYPED_ECOSYSTEM.replace("RETURNS", returns).replace("SECTION", section))
    out = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(tmp_path / "mypy.ini"), "--cache-dir", str(tmp_path / "cache"), str(tmp_path / "dummy.py")],
                         capture_output=True, text=True, cwd=REPO)
    assert out.stdout.count("error:") == errors, out.stdout
    assert not errors or 'incompatible with return type "DummyLock" in supertype' in out.stdout


def test_no_module_of_bakegen_is_exempt_from_the_line_limit():
    """Every module of bakegen/ is within 100 columns, which make lint checks: none is listed in
    pyproject.toml's per-file ignores of E501 (tests, benchmarks and scripts may be)."""
    import tomllib

    ignores = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]["per-file-ignores"]
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["ruff"]["line-length"] == 100
    assert not [path for path, codes in ignores.items() if path.startswith("bakegen") and "E501" in codes]
