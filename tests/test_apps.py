"""The fifth ecosystem, [apps]: Python applications in virtualenvs of their own (unit tests, FakeResolver)."""

from __future__ import annotations

import json

import pytest
from fakes import FakeImages, FakeResolver, lock_project

from bakegen.cli import main
from bakegen.diff import diff_locks
from bakegen.errors import StackErrors
from bakegen.files import write_set
from bakegen.locker import Resolvers, Upgrades, lock_stacks
from bakegen.project import load_stacks, read_lock
from bakegen.render import render_project
from bakegen.staleness import current_locks

BASE = 'name = "base"\ndescription = "b"\nbase = "python:3.13-slim"\n[python]\nversion = "3.13"\npackages = ["numpy"]\n'
KID = 'name = "kid"\ndescription = "k"\nextends = "base"\n[apps]\npackages = ["nbstripout", "oldnum-tool"]\n'
IMAGES = {"python:3.13-slim": "sha256:" + "d" * 64}


def lock(root, upgrade=False):
    return lock_project(root, images=IMAGES, upgrade=upgrade)


def test_each_app_is_locked_alone_and_never_constrained_by_the_parent(project):
    root = project({"base": BASE, "kid": KID})
    lock(root)
    kid = read_lock(root / "locks" / "kid", root)
    apps = kid.parts["apps"]
    assert sorted(apps.pins) == ["nbstripout", "oldnum-tool"]
    assert {p.key for p in apps.pins["nbstripout"]["linux/amd64"]} == {"nbstripout", "nbformat", "packaging"}
    # the parent pins numpy 2.1.0; the application gets its own numpy 1.26.4
    assert read_lock(root / "locks" / "base", root).parts["python"].by_name()["numpy"].version == "2.1.0"
    assert {p.key: p.version for p in apps.pins["oldnum-tool"]["linux/amd64"]}["numpy"] == "1.26.4"
    text = (root / "locks" / "kid" / "app-nbstripout.txt").read_text()
    assert "nbstripout==0.8.1 \\\n    --hash=sha256:" in text and "in a virtualenv of its own" in text
    manifest = json.loads((root / "locks" / "kid" / "lock.json").read_text())
    assert manifest["apps"]["apps"]["nbstripout"]["requirement"] == "nbstripout"
    assert "apps" not in json.loads((root / "locks" / "base" / "lock.json").read_text())  # unused: no section, not even null


def test_apps_render_a_builder_stage_of_their_own_and_one_layer(project):
    root = project({"base": BASE, "kid": KID})
    lock(root)
    graph = load_stacks(root)
    files = render_project(graph, current_locks(graph))
    text = files["dockerfiles/kid/Dockerfile"]
    stage = text.split("AS apps-builder")[1].split("# --- final image")[0]
    assert "--mount=type=bind,source=locks/kid/app-nbstripout.txt,target=/tmp/bakegen/apps/app-nbstripout.txt" in stage
    assert "sh /tmp/bakegen/apps.sh /tmp/bakegen/apps /opt/bakegen/apps nbstripout oldnum-tool" in stage
    assert "requirements.txt" not in stage  # a Python pin bump does not re-run the applications
    final = text.split("# --- final image")[1]
    assert "COPY --from=apps-builder /opt/bakegen/apps/ /" in final and "ENV PATH=$PATH:/opt/apps/bin" in final
    assert "dockerfiles/bakegen-apps.sh" in files and "bakegen-apps.sh" not in files["dockerfiles/base/Dockerfile"]


def test_check_sees_an_edited_app_lock(project, capsys):
    root = project({"base": BASE, "kid": KID})
    lock(root)
    graph = load_stacks(root)
    write_set(root, render_project(graph, current_locks(graph)), command="test")
    assert main(["-C", str(root), "check"]) == 0
    (root / "locks" / "kid" / "app-nbstripout.txt").write_text("nbstripout==0.7.0\n")
    assert main(["-C", str(root), "check"]) == 1
    assert "stale: kid: kid/app-nbstripout.txt was edited after locking" in capsys.readouterr().out


def test_upgrade_package_moves_a_pin_inside_one_application(project):
    root = project({"base": BASE, "kid": KID.replace('["nbstripout", "oldnum-tool"]', '["nbstripout"]')})
    lock(root)
    graph = load_stacks(root)
    before = current_locks(graph)
    outcomes = lock_stacks(graph, Resolvers(python=FakeResolver(), image=FakeImages(IMAGES)), upgrade=Upgrades.parse(False, ["nbformat==5.9.0"]))
    kid = next(o for o in outcomes if o.stack == "kid")
    assert kid.changed and {p.key: p.version for p in kid.lock.parts["apps"].pins["nbstripout"]["linux/amd64"]}["nbformat"] == "5.9.0"
    assert not next(o for o in outcomes if o.stack == "base").changed
    diff = {d.stack: d for d in diff_locks(before, {o.stack: o.lock for o in outcomes}, {"base": None, "kid": "base"})}
    assert [(c.name, c.old, c.new, c.kind) for c in diff["kid"].changes["apps"]] == [("nbstripout/nbformat", "5.10.4", "5.9.0", "downgraded")]
    assert diff["kid"].rebuild and not diff["base"].rebuild


@pytest.mark.parametrize("apps, message", [
    ('["nbstripout", "NBStripout>=0.7"]', "are the same application"),
    ('["bin"]', "cannot be named 'bin'"),
    ('["pip"]', "cannot be named 'pip'"),
    ('["nbstripout; python_version < \'3\'"]', "has an environment marker"),
    ('["x @ https://example.com/x.whl"]', "is a direct URL"),
    ('["nbstripout\\nRUN evil"]', "apps.packages"),
])
def test_bad_apps_get_one_error_line(project, capsys, apps, message):
    root = project({"base": BASE + f"[apps]\npackages = {apps}\n"})
    assert main(["-C", str(root), "generate"]) != 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: stacks/base.toml:8: ") and message in err[0], err
    assert "Traceback" not in "\n".join(err) and not (root / "locks").exists()


def test_a_child_cannot_install_an_app_its_parent_has(project):
    root = project({"base": BASE + '[apps]\npackages = ["nbstripout"]\n', "kid": KID})
    with pytest.raises(StackErrors, match="'nbstripout' is already installed by 'base'"):
        load_stacks(root)


def test_an_application_is_installed_with_the_same_commands_as_the_images_virtualenv(project):
    """One install routine (bakegen/python_install.py): the uv install in bakegen-apps.sh has the options of the
    one the Dockerfile runs for /opt/venv, word for word, only with the application's paths."""
    import shlex

    from bakegen.instructions import Run
    from bakegen.plan import plan_dockerfile
    from bakegen.registry import ECOSYSTEMS

    root = project({"base": BASE, "kid": KID})
    lock(root)
    graph = load_stacks(root)
    locks = current_locks(graph)
    script = render_project(graph, locks)["dockerfiles/bakegen-apps.sh"]
    image = next(s.instruction.runs("uv") for s in plan_dockerfile(graph, "base", locks, ECOSYSTEMS).final.steps
                 if isinstance(s.instruction, Run) and s.instruction.runs("uv"))
    line = next(line.strip() for line in script.splitlines() if '"$BAKEGEN_UV" pip install' in line)
    app = shlex.split(line)
    assert app[0] == "$BAKEGEN_UV" and image.argv[0].endswith("/uv")
    options = [w for w in image.argv[1:] if w not in ("/opt/venv/bin/python", "/tmp/bakegen/requirements.txt")]
    assert [w for w in app[1:] if w not in ("$venv/bin/python", "$req")] == options
    assert 'python3 -m venv --without-pip "$venv"' in script and '"$venv/bin/python" /tmp/bakegen/finish.py "$venv"' in script
