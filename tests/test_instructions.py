"""Plan steps as data (bakegen/instructions.py): what each step runs, mounts and runs as, read from the data;
its text, read back by BuildKit's own Dockerfile parser and by /bin/sh, says the same."""

from __future__ import annotations

import subprocess
from pathlib import Path

import dockerfile
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_custom import lock, make

from bakegen.escape import dockerfile_env_value
from bakegen.instructions import (
    THEN,
    Command,
    Copy,
    Directive,
    Env,
    ExecForm,
    Healthcheck,
    Mount,
    Run,
    Shell,
    Verbatim,
    dockerfile_text,
)
from bakegen.plan import DockerfilePlan, Step, plan_dockerfile
from bakegen.project import load_stacks
from bakegen.registry import ECOSYSTEMS
from bakegen.staleness import current_locks

REPO = Path(__file__).resolve().parents[1]


def plans(root: Path) -> dict[str, DockerfilePlan]:
    graph = load_stacks(root)
    locks = current_locks(graph)
    return {name: plan_dockerfile(graph, name, locks, ECOSYSTEMS) for name in graph.order}


@pytest.fixture(scope="module")
def examples() -> dict[str, DockerfilePlan]:
    return plans(REPO)


@pytest.fixture
def custom(project) -> dict[str, DockerfilePlan]:
    """A stack with its own files, start hooks and [[steps]] (as root and as the user), and a child."""
    root = make(project)
    lock(root)
    return plans(root)


def _steps(all_plans: dict[str, DockerfilePlan]) -> list[tuple[str, str | None, Step]]:
    return [(name, who, step) for name, plan in all_plans.items() for stage in plan.stages for who, step in stage.as_users()]


def test_the_uv_install_is_found_in_the_data_with_its_user_and_mounts(examples):
    """The question a reviewer asks (which step installs the lock, as whom, with what mounted), asked of the data."""
    (who, step), = [(who, step) for who, step in examples["base"].final.as_users() if isinstance(step.instruction, Run) and step.instruction.runs("uv")]
    run = step.instruction
    assert who == "root" and step.layer == "Python virtualenv (requirements.txt)"
    assert Mount("bind", source="locks/base/requirements.txt", target="/tmp/bakegen/requirements.txt") in run.mounts
    assert Mount("bind", stage="builder", source="/opt/bakegen/uv", target="/opt/bakegen/uv") in run.mounts
    assert Mount("secret", id="cacert") in run.mounts
    uv = run.runs("uv")
    assert uv is not None and uv.argv[-2:] == ("-r", "/tmp/bakegen/requirements.txt") and "--require-hashes" in uv.argv
    assert [c.argv[0] for c in run.commands()] == ["python3", "/opt/bakegen/uv/bin/uv", "/opt/venv/bin/python"]


def test_a_step_of_the_stack_runs_as_its_user_and_only_there(custom):
    steps = [(who, step) for who, step in custom["base"].final.as_users() if step.layer and step.layer.startswith("step ")]
    assert [(who, step.instruction.parts[0].argv[:2]) for who, step in steps] == [("root", ("/bin/sh", "-c"))] + [("1000:100", ("/bin/sh", "-c"))] * 2
    assert custom["base"].final.as_users()[-1][0] == "1000:100"  # the image runs as the user


@pytest.mark.parametrize("which", ["examples", "custom"])
def test_no_step_that_runs_as_the_user_mounts_a_secret_or_a_cache(which, request):
    """The CA secret and the package caches are root's, in steps bakegen writes: never in a step of the user's."""
    for name, who, step in _steps(request.getfixturevalue(which)):
        if isinstance(step.instruction, Run) and who not in ("root", None):
            assert not [m for m in step.instruction.mounts if m.type in ("secret", "cache")], (name, step.text)


def _mount_fields(flag: str) -> dict[str, str]:
    """A --mount flag as BuildKit reads it: comma-separated key=value fields."""
    assert flag.startswith("--mount=")
    return dict(field.split("=", 1) for field in flag.removeprefix("--mount=").split(","))


def _fields_of(mount: Mount) -> dict[str, str]:
    names = {"stage": "from"}
    return {names.get(k, k): v for k, v in vars(mount).items() if v}


def _parsed(text: str) -> dockerfile.Command:
    (command,) = dockerfile.parse_string(text + "\n")
    return command


@pytest.mark.parametrize("which", ["examples", "custom"])
def test_buildkits_parser_reads_every_step_as_its_data(which, request):
    """Each step's text, read by BuildKit's parser (Go, through the dockerfile package), has the instruction's
    keyword, flags, words and form: nothing the data says is lost or added in the writing."""
    checked = set()
    for _, _, step in _steps(request.getfixturevalue(which)):
        instruction, parsed = step.instruction, _parsed(step.text)
        checked.add(type(instruction).__name__)
        if isinstance(instruction, Run):
            assert parsed.cmd == "RUN" and parsed.json == instruction.exec_form
            assert [_mount_fields(flag) for flag in parsed.flags] == [_fields_of(m) for m in instruction.mounts]
            if instruction.exec_form:
                assert parsed.value == instruction.parts[0].argv
        elif isinstance(instruction, Copy):
            assert parsed.cmd == "COPY" and parsed.value == (*instruction.sources, instruction.dest)
            assert set(parsed.flags) == {f for f in (f"--from={instruction.stage}" * bool(instruction.stage), f"--chmod={instruction.chmod}" * bool(instruction.chmod),
                                                     f"--chown={instruction.chown}" * bool(instruction.chown)) if f}
        elif isinstance(instruction, Env):
            written = [v if isinstance(v, Verbatim) else dockerfile_env_value(v) for _, v in instruction.pairs]
            assert parsed.cmd == "ENV" and parsed.value == tuple(x for (k, _), v in zip(instruction.pairs, written) for x in (k, v))
        elif isinstance(instruction, ExecForm):
            assert parsed.cmd == instruction.keyword and parsed.json and parsed.value == instruction.argv
        elif isinstance(instruction, Directive):
            assert (parsed.cmd, parsed.value) == (instruction.keyword, (instruction.value,))
        else:
            assert isinstance(instruction, Healthcheck) and parsed.value == ("CMD", *instruction.argv)
    wanted = {"Run", "Copy", "Env", "Directive", "ExecForm"} | ({"Healthcheck"} if which == "examples" else set())
    assert wanted <= checked, checked


def _sh_words(command: Command) -> list[str]:
    """What /bin/sh makes of the command's words: each argument, as the program would receive it."""
    script = "for a; do printf '%s\\0' \"$a\"; done"
    out = subprocess.run(["/bin/sh", "-c", f"set -- {command.shell()}; {script}"], capture_output=True, check=True)
    return out.stdout.decode().split("\0")[:-1]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=0, max_size=12), min_size=1, max_size=5))
def test_a_command_reaches_the_shell_as_its_argv(words):
    """A plain word (a stack's value among them) is quoted: /bin/sh splits the text back into exactly the argv,
    whatever it holds ($, quotes, spaces, newlines, ;)."""
    assert _sh_words(Command(tuple(words))) == words


def test_a_verbatim_word_is_expanded_by_the_shell_and_a_plain_one_is_not():
    command = Command((Verbatim('"$HOME"'), "$HOME", "a b", "$(touch /tmp/bakegen-pwned)"))
    assert command.shell() == "\"$HOME\" '$HOME' 'a b' '$(touch /tmp/bakegen-pwned)'"
    assert _sh_words(command)[1:] == ["$HOME", "a b", "$(touch /tmp/bakegen-pwned)"]


def test_the_writer_lays_a_run_out_as_bakegen_always_has():
    mounts = (Mount("cache", id="c", target="/root/.cache", sharing="locked"), Mount("bind", stage="builder", source="/a", target="/b"), Mount("secret", id="cacert"))
    run = Run((Shell("if true; then :; fi"), Command(("a", "1"), env=(("X", ""), ("Y", "y z")), after=THEN), Command(("b",), redirect=">/dev/null")), mounts)
    assert dockerfile_text(run) == (
        "RUN --mount=type=cache,id=c,target=/root/.cache,sharing=locked \\\n"
        "    --mount=type=bind,from=builder,source=/a,target=/b \\\n"
        "    --mount=type=secret,id=cacert \\\n"
        "    if true; then :; fi; \\\n"
        "    X= Y='y z' a 1 \\\n"
        " && b >/dev/null"
    )
    assert dockerfile_text(Run((Command(("mkdir", "-p", "/x")), Shell("true")), inline=True)) == "RUN mkdir -p /x && true"
    assert dockerfile_text(Run((Command(("/bin/sh", "-c", 'echo "hi"')),), exec_form=True)) == 'RUN ["/bin/sh", "-c", "echo \\"hi\\""]'
    assert dockerfile_text(Env((("A", "x $y"), ("PATH", Verbatim("/v/bin:$PATH"))))) == 'ENV A="x \\$y" \\\n    PATH=/v/bin:$PATH'
    assert dockerfile_text(Copy(("s",), "/d", stage="b", chmod="0644", chown="1:2")) == "COPY --from=b --chmod=0644 --chown=1:2 s /d"
