"""apt resolution against a small fake archive (InRelease + Packages.xz served from a dict)."""

from __future__ import annotations

import hashlib
import lzma

import pytest

from bakegen.errors import BakegenError, ResolutionError
from bakegen.resolvers.apt import AptRequest, AptResolver
from bakegen.resolvers.debian import AptSpec, ArchiveReader

MAIN = """\
Package: tool
Version: 1.0-1
Architecture: amd64
Depends: libfoo (>= 2.0), mail-transport-agent | exim4, base-files
Filename: pool/main/t/tool/tool_1.0-1_amd64.deb
SHA256: {h}
Size: 100

Package: tool
Version: 1.0-2
Architecture: amd64
Depends: libfoo (>= 2.0), mail-transport-agent | exim4, base-files
Filename: pool/main/t/tool/tool_1.0-2_amd64.deb
SHA256: {h}
Size: 100

Package: libfoo
Version: 1.9
Architecture: amd64
Filename: pool/main/libf/libfoo_1.9_amd64.deb
SHA256: {h}
Size: 10

Package: libfoo
Version: 2.1
Architecture: amd64
Depends: libc6
Filename: pool/main/libf/libfoo_2.1_amd64.deb
SHA256: {h}
Size: 10

Package: postfix
Version: 3.9
Architecture: amd64
Provides: mail-transport-agent
Filename: pool/main/p/postfix_3.9_amd64.deb
SHA256: {h}
Size: 10

Package: base-files
Version: 13
Architecture: amd64
Essential: yes
Depends: libc6
Filename: pool/main/b/base-files_13_amd64.deb
SHA256: {h}
Size: 10

Package: libc6
Version: 2.41-1
Architecture: amd64
Filename: pool/main/g/libc6_2.41-1_amd64.deb
SHA256: {h}
Size: 10

Package: cssesc-provider
Version: 5
Architecture: all
Provides: virt-cssesc (= 3.0.0), virt-unversioned
Filename: pool/main/c/cssesc-provider_5_all.deb
SHA256: {h}
Size: 10

Package: wants-virt
Version: 1
Architecture: all
Depends: virt-cssesc (>= 3.0~), virt-unversioned
Filename: pool/main/w/wants-virt_1_all.deb
SHA256: {h}
Size: 10

Package: wants-new-virt
Version: 1
Architecture: all
Depends: virt-cssesc (>= 4)
Filename: pool/main/w/wants-new-virt_1_all.deb
SHA256: {h}
Size: 10

Package: needs-old-foo
Version: 1
Architecture: all
Depends: libfoo (<< 2.0)
Filename: pool/main/n/needs-old-foo_1_all.deb
SHA256: {h}
Size: 10

Package: libfoo-dev
Version: 1.9
Architecture: amd64
Depends: libfoo (= 1.9)
Filename: pool/main/libf/libfoo-dev_1.9_amd64.deb
SHA256: {h}
Size: 10

Package: libfoo-dev
Version: 2.1
Architecture: amd64
Depends: libfoo (= 2.1)
Filename: pool/main/libf/libfoo-dev_2.1_amd64.deb
SHA256: {h}
Size: 10
""".format(h="a" * 64)

SECURITY = """\
Package: libc6
Version: 2.41-1+deb13u1
Architecture: amd64
Filename: pool/updates/g/libc6_2.41-1+deb13u1_amd64.deb
SHA256: {h}
Size: 10
""".format(h="b" * 64)


def archive(pockets: dict[str, str], corrupt: bool = False) -> dict[str, bytes]:
    files = {}
    for url_suite, text in pockets.items():
        blob = lzma.compress(text.encode())
        digest = hashlib.sha256(blob).hexdigest() if not corrupt else "0" * 64
        files[f"{url_suite}/main/binary-amd64/Packages.xz"] = blob
        files[f"{url_suite}/InRelease"] = f"Origin: Debian\nSHA256:\n {digest} {len(blob)} main/binary-amd64/Packages.xz\n".encode()
    return files


def resolver(tmp_path, corrupt=False) -> AptResolver:
    files = archive({
        "http://deb.debian.org/debian/dists/trixie": MAIN,
        "http://deb.debian.org/debian/dists/trixie-updates": "",
        "http://deb.debian.org/debian-security/dists/trixie-security": SECURITY,
    }, corrupt)

    def fetch(url: str) -> bytes:
        if url not in files:
            raise BakegenError(f"{url}: HTTP 404")
        return files[url]

    return AptResolver(ArchiveReader(fetch, tmp_path / "cache"))


def resolve(tmp_path, packages, fixed=None, preferred=None):
    req = AptRequest("demo", AptSpec("debian", "trixie"), ["amd64"], packages, fixed or {}, preferred or {})
    return {p.name: p.version for p in resolver(tmp_path).resolve(req)["amd64"]}


def test_closure_newest_versions_alternatives_and_virtuals(tmp_path):
    assert resolve(tmp_path, ["tool"]) == {
        "tool": "1.0-2",  # the newest
        "libfoo": "2.1",  # >= 2.0
        "libc6": "2.41-1+deb13u1",  # the security pocket wins
        "postfix": "3.9",  # first alternative, a virtual package
        "base-files": "13",  # essential: pinned, and its dependencies too (the lock is the whole closure)
    }


def test_versioned_virtual_packages(tmp_path):
    assert resolve(tmp_path, ["wants-virt"]) == {"wants-virt": "1", "cssesc-provider": "5"}
    with pytest.raises(ResolutionError, match=r"nothing provides virt-cssesc \(>= 4\)"):
        resolve(tmp_path, ["wants-new-virt"])


def test_previous_pins_are_kept_while_they_fit(tmp_path):
    got = resolve(tmp_path, ["tool"], preferred={"amd64": {"tool": "1.0-1", "libc6": "2.41-1", "libfoo": "1.9"}})
    assert got["tool"] == "1.0-1" and got["libc6"] == "2.41-1"
    assert got["libfoo"] == "2.1"  # 1.9 no longer satisfies >= 2.0


def test_exact_version_request(tmp_path):
    assert resolve(tmp_path, ["tool=1.0-1"])["tool"] == "1.0-1"


def test_parent_pins_are_never_moved(tmp_path):
    got = resolve(tmp_path, ["tool"], fixed={"amd64": {"libfoo": "2.1", "libc6": "2.41-1"}})
    assert "libfoo" not in got and "libc6" not in got
    with pytest.raises(ResolutionError) as exc:
        resolve(tmp_path, ["needs-old-foo"], fixed={"amd64": {"libfoo": "2.1"}})
    assert exc.value.message == (
        "demo: cannot resolve apt packages on amd64: needs-old-foo (needed by apt.packages 'needs-old-foo') "
        "needs libfoo (<< 2.0), but a parent pins libfoo 2.1"
    )


def test_a_previous_pin_that_clashes_with_a_parents_new_pin_moves(tmp_path):
    """The child kept libfoo-dev 1.9 from its last lock; the parent now pins libfoo 2.1: the child takes libfoo-dev 2.1."""
    got = resolve(tmp_path, ["libfoo-dev"], fixed={"amd64": {"libfoo": "2.1"}}, preferred={"amd64": {"libfoo-dev": "1.9"}})
    assert got["libfoo-dev"] == "2.1"


def test_unknown_package(tmp_path):
    with pytest.raises(ResolutionError) as exc:
        resolve(tmp_path, ["no-such-pkg"])
    assert exc.value.message == "demo: cannot resolve apt packages on amd64: nothing provides no-such-pkg (needed by apt.packages 'no-such-pkg')"


def test_index_must_match_inrelease(tmp_path):
    req = AptRequest("demo", AptSpec("debian", "trixie"), ["amd64"], ["tool"])
    with pytest.raises(BakegenError, match="does not match the hash in InRelease"):
        resolver(tmp_path, corrupt=True).resolve(req)


def test_parsed_indexes_are_cached_by_hash(tmp_path):
    resolve(tmp_path, ["tool"])
    assert len(list((tmp_path / "cache").glob("*.json"))) == 3


def test_sources_debian_snapshot_and_ubuntu_ports():
    assert AptSpec("debian", "trixie").sources_list(["amd64"]).splitlines() == [
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main",
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie-updates main",
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security trixie-security main",
    ]
    snap = AptSpec("debian", "trixie", snapshot="20261101T000000Z").sources_list(["amd64"]).splitlines()
    assert snap[0] == "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg check-valid-until=no] http://snapshot.debian.org/archive/debian/20261101T000000Z trixie main"
    assert snap[2].endswith("http://snapshot.debian.org/archive/debian-security/20261101T000000Z trixie-security main")
    ubuntu = AptSpec("ubuntu", "noble").sources_list(["amd64", "arm64"]).splitlines()
    assert "deb [arch=amd64 signed-by=/usr/share/keyrings/ubuntu-archive-keyring.gpg] http://archive.ubuntu.com/ubuntu noble main" in ubuntu
    assert "deb [arch=arm64 signed-by=/usr/share/keyrings/ubuntu-archive-keyring.gpg] http://ports.ubuntu.com/ubuntu-ports noble-security main" in ubuntu
    assert AptSpec("ubuntu", "noble", snapshot="20261101T000000Z").sources(["amd64"])[0].url == "https://snapshot.ubuntu.com/ubuntu/20261101T000000Z"
    assert [s.suite for s in AptSpec("debian", "sid").sources(["amd64"])] == ["sid"]


@pytest.mark.network
def test_real_trixie_index_for_two_architectures():
    out = AptResolver().resolve(AptRequest("demo", AptSpec("debian", "trixie"), ["amd64", "arm64"], ["tini"]))
    for arch in ("amd64", "arm64"):
        tini = next(p for p in out[arch] if p.name == "tini")
        assert tini.filename.endswith(f"_{arch}.deb") and len(tini.sha256) == 64


def test_a_reader_fetches_with_http_fetch_as_it_is_when_made(monkeypatch):
    """ArchiveReader looks http_fetch up when it is made (a default argument would have bound it at import,
    and a test that replaces it to forbid the network, as test_lock's migration test does, would not bite)."""
    from bakegen.resolvers import debian

    def forbidden(*a, **k):
        raise AssertionError("no network here")

    monkeypatch.setattr(debian, "http_fetch", forbidden)
    assert ArchiveReader().fetch is forbidden
