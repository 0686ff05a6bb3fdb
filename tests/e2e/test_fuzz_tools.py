"""The fuzzer's inputs through the real tools: docker buildx bake --print, BuildKit's
Dockerfile check, and a real build that reads the values back (a smaller budget: each
example runs docker)."""

from __future__ import annotations

import json
import subprocess
import tempfile
import uuid
from pathlib import Path

import dockerfile
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz import HOSTILE, lock_and_generate, project, stack_text

from bakegen.errors import StackErrors
from bakegen.project import load_stacks
from e2e.conftest import docker

pytestmark = pytest.mark.e2e
# the fields whose values are written into the generated files as they are
WRITTEN = ["description", "env_value", "label_value", "command", "display_name"]


def read_back(root: Path) -> dict:
    """The generated bake file, building FROM scratch with the generated Dockerfile's ENV and CMD lines:
    the image's config (labels from the HCL, env and command from the Dockerfile) as Docker reads it."""
    lines = [c.original for c in dockerfile.parse_file(str(root / "dockerfiles" / "fz" / "Dockerfile")) if c.cmd in ("ENV", "CMD")]
    (root / "probe.Dockerfile").write_text("FROM scratch\n" + "\n".join(lines) + "\n", encoding="utf-8")
    tag = f"bakegen-fuzz/probe:{uuid.uuid4().hex[:12]}"
    cmd = ["docker", "buildx", "bake", "--load", "--set", "fz.dockerfile=probe.Dockerfile", "--set", f"fz.tags={tag}", "fz"]
    out = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    try:
        return json.loads(docker("image", "inspect", tag, "--format", "{{json .Config}}"))
    finally:
        docker("image", "rm", "-f", tag, check=False)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(field=st.sampled_from(WRITTEN), value=HOSTILE)
def test_the_real_tools_read_back_exactly_what_the_stack_says(field, value, engine):
    with tempfile.TemporaryDirectory(prefix="bakegen-fuzz-") as tmp:
        root = project(Path(tmp), stack_text(field, value))
        try:
            load_stacks(root)
        except StackErrors:
            return  # refusals are the unit fuzzer's business
        assert lock_and_generate(root)
        check = subprocess.run(["docker", "buildx", "build", "--call=check", "--build-arg", f"BASE_IMAGE={engine.standin}",
                                "-f", "dockerfiles/fz/Dockerfile", "."], cwd=root, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        config = read_back(root)
        assert config["Labels"]["org.example.x"] == "v" + (value if field == "label_value" else "")
        assert config["Labels"].get("org.opencontainers.image.description", "") == (value if field == "description" else "")
        env = dict(item.split("=", 1) for item in config["Env"])
        assert env["FOO"] == "bar" + (value if field == "env_value" else "")
        assert config["Cmd"] == ["start-notebook.py" + (value if field == "command" else "")]
