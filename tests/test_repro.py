"""The reproducibility comparison on small OCI tarballs made here. Real double builds: tests/e2e/test_publish.py
(two clean pushes of the example graph) and make bench-repro (every example stack, a stack with files, and arm64)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

from bakegen.oci import read_oci, read_oci_platforms
from bakegen.repro import first_difference, layer_names, platform_difference


def layer(files: dict[str, bytes], mtime: int = 0) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), mtime
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Blobs(dict):
    """Content-addressed blobs of an OCI layout being made."""

    def add(self, data: bytes) -> str:
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        self[d] = data
        return d

    def image(self, layers: list[bytes], **config) -> str:
        history = [{"created_by": f"RUN step {i}"} for i in range(len(layers))]
        digest = self.add(json.dumps({**config, "history": history}).encode())
        return self.add(json.dumps({"config": {"digest": digest}, "layers": [{"digest": self.add(x)} for x in layers]}).encode())

    def write(self, path, top: str) -> None:
        """An OCI tarball whose index.json names ``top``."""
        with tarfile.open(path, "w") as tar:
            for name, data in {"index.json": json.dumps({"manifests": [{"digest": top}]}).encode(),
                               **{f"blobs/sha256/{d.split(':')[1]}": b for d, b in self.items()}}.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def oci(path, layers: list[bytes], created: str = "2026-11-22T00:00:00Z"):
    blobs = Blobs()
    blobs.write(path, blobs.image(layers, created=created))
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


def multi_oci(path, per_platform: dict[str, list[bytes]]):
    """An OCI tarball whose index.json names an image index with one image per platform."""
    blobs = Blobs()
    entries = []
    for platform, layers in per_platform.items():
        os_, arch = platform.split("/")
        entries.append({"digest": blobs.image(layers, os=os_, architecture=arch), "platform": {"os": os_, "architecture": arch}})
    blobs.write(path, blobs.add(json.dumps({"manifests": entries}).encode()))
    return read_oci_platforms(path)


def test_a_multi_platform_build_is_compared_platform_by_platform(tmp_path):
    same = [layer({"etc/x": b"1"})]
    top_a, a = multi_oci(tmp_path / "a.tar", {"linux/amd64": same, "linux/arm64": [layer({"opt/v.pyc": b"1"})]})
    top_b, b = multi_oci(tmp_path / "b.tar", {"linux/amd64": same, "linux/arm64": [layer({"opt/v.pyc": b"2"})]})
    assert sorted(a) == ["linux/amd64", "linux/arm64"] and top_a != top_b
    assert a["linux/amd64"].manifest_digest == b["linux/amd64"].manifest_digest
    assert platform_difference(a, b) == "linux/arm64: layer 1 (RUN step 0): /opt/v.pyc differs in content"
    assert platform_difference(a, a) is None
    _, c = multi_oci(tmp_path / "c.tar", {"linux/amd64": same})
    assert platform_difference(a, c) == "the builds have the platforms linux/amd64, linux/arm64 and linux/amd64"


def test_a_differing_layer_is_named_by_its_plan_step(tmp_path):
    a = oci(tmp_path / "a.tar", [layer({"etc/x": b"1"}), layer({"usr/share/nltk/punkt": b"a"})])
    b = oci(tmp_path / "b.tar", [layer({"etc/x": b"1"}), layer({"usr/share/nltk/punkt": b"b"})])
    # the history has one entry per instruction; an ENV between the two makes no layer
    a.config["history"] = [{"created_by": "RUN step 0"}, {"created_by": "ENV A=1", "empty_layer": True}, {"created_by": "RUN step 1"}]
    steps = [("ENV A=1", None), ('RUN ["/bin/sh", "-c", "python -m nltk.downloader punkt"]', "step 1: python -m nltk.downloader punkt")]
    assert layer_names(a.config, steps) == {1: "step 1: python -m nltk.downloader punkt"}
    assert first_difference(a, b, layer_names(a.config, steps)) == "layer 2 (step 1: python -m nltk.downloader punkt): /usr/share/nltk/punkt differs in content"


def test_reading_layout_tarballs_closes_every_file(tmp_path):
    import gc
    import warnings

    a = oci(tmp_path / "a.tar", [layer({"etc/x": b"1"}), layer({"opt/a": b"a"})])
    b = oci(tmp_path / "b.tar", [layer({"etc/x": b"1"}), layer({"opt/a": b"b"})])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        assert first_difference(a, b) == "layer 2 (RUN step 1): /opt/a differs in content"
        read_oci_platforms(tmp_path / "a.tar")
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_zstd_and_gzip_layers_are_compared_by_their_files(tmp_path):
    """bakegen's layers are zstd by default (--compression gzip for old clients): the first differing file is
    found inside either."""
    import gzip

    import zstandard

    def zstd(data: bytes) -> bytes:
        return zstandard.ZstdCompressor().compress(data)

    for compress in (zstd, gzip.compress):
        a = oci(tmp_path / f"a-{compress.__name__}.tar", [compress(layer({"etc/x": b"1", "opt/venv/y": b"2"}))])
        b = oci(tmp_path / f"b-{compress.__name__}.tar", [compress(layer({"etc/x": b"1", "opt/venv/y": b"3"}))])
        assert "opt/venv/y" in (first_difference(a, b) or ""), compress
