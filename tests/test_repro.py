"""The reproducibility comparison on small OCI tarballs made here (and, marked e2e, a real double build)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile

import pytest

from bakegen.repro import first_difference, read_oci
from conftest import REPO


def layer(files: dict[str, bytes], mtime: int = 0) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), mtime
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def oci(path, layers: list[bytes], created: str = "2026-11-22T00:00:00Z"):
    blobs = {}

    def add(data: bytes) -> str:
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[d] = data
        return d

    config = add(json.dumps({"created": created, "history": [{"created_by": f"RUN step {i}"} for i in range(len(layers))]}).encode())
    manifest = add(json.dumps({"config": {"digest": config}, "layers": [{"digest": add(x)} for x in layers]}).encode())
    with tarfile.open(path, "w") as tar:
        for name, data in {"index.json": json.dumps({"manifests": [{"digest": manifest}]}).encode(),
                           **{f"blobs/sha256/{d.split(':')[1]}": b for d, b in blobs.items()}}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return read_oci(path)


def test_identical(tmp_path):
    a = oci(tmp_path / "a.tar", [layer({"etc/x": b"1"})])
    b = oci(tmp_path / "b.tar", [layer({"etc/x": b"1"})])
    assert first_difference(a, b) is None


def test_names_the_first_differing_file(tmp_path):
    a = oci(tmp_path / "a.tar", [layer({"etc/x": b"1"}), layer({"opt/a.pyc": b"aa", "opt/b.pyc": b"b"})])
    b = oci(tmp_path / "b.tar", [layer({"etc/x": b"1"}), layer({"opt/a.pyc": b"ab", "opt/b.pyc": b"c"})])
    assert first_difference(a, b) == "layer 2 (RUN step 1): /opt/a.pyc differs in content"


def test_mtime_and_missing_files_and_config(tmp_path):
    a = oci(tmp_path / "a.tar", [layer({"var/log/x": b"1"}, mtime=1)])
    b = oci(tmp_path / "b.tar", [layer({"var/log/x": b"1"}, mtime=2)])
    assert first_difference(a, b) == "layer 1 (RUN step 0): /var/log/x differs in mtime"
    c = oci(tmp_path / "c.tar", [layer({"var/log/x": b"1", "var/log/y": b""}, mtime=1)])
    assert first_difference(a, c) == "layer 1 (RUN step 0): /var/log/y is only in build 2"
    d = oci(tmp_path / "d.tar", [layer({"var/log/x": b"1"}, mtime=1)], created="2027-01-01T00:00:00Z")
    assert first_difference(a, d) == "the image config differs in 'created'"


@pytest.mark.e2e
def test_base_builds_bit_for_bit(engine):
    """Two --no-cache builds of the base stack from the same locks give the same manifest digest."""
    out = subprocess.run(
        [sys.executable, "-m", "bakegen", "-C", str(REPO), "verify-repro", "base",
         "--base-image", f"base={engine.standin}", "--ca-bundle", engine.ca_bundle],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("base: identical (sha256:")
