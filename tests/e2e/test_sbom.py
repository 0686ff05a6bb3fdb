"""bakegen sbom, from the locks alone, equals what the built images really hold.

For each example image: the Python distributions in the virtualenv, the npm
packages under /opt/npm and the dpkg database. The images are built on the
stand-in base, whose own Debian packages are not in any lock: they are what the
base image component (pkg:oci) covers, so a package the image has and the SBOM
does not list must be one of the stand-in's, at the stand-in's version.
"""

from __future__ import annotations

import json

import pytest
from packageurl import PackageURL
from packaging.utils import canonicalize_name

from e2e.conftest import bakegen, docker

pytestmark = pytest.mark.e2e

IMAGES = ["base", "scipy", "geo"]

NPM_PROBE = r"""
import json, os, re
found = set()
for top, dirs, files in os.walk("/opt/npm"):
    if "package.json" in files and re.search(r"/node_modules/(@[^/]+/)?[^/@][^/]*$", top):
        with open(os.path.join(top, "package.json")) as f:
            meta = json.load(f)
        found.add((meta["name"], meta["version"]))
print(json.dumps(sorted(found)))
"""
PY_PROBE = "import json, importlib.metadata as m; print(json.dumps(sorted([d.metadata['Name'], d.version] for d in m.distributions())))"
DPKG = ["dpkg-query", "-W", "-f", "${Package} ${Version}\n"]


@pytest.fixture(scope="module")
def sboms(built, tmp_path_factory):
    out = tmp_path_factory.mktemp("sbom")
    proc = bakegen(built.root, "sbom", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def components(sboms, name: str) -> dict[str, set[tuple[str, str]]]:
    """purl type -> {(name, version)}, from the CycloneDX file; the SPDX file must say the same."""
    cdx = json.loads((sboms / name / "amd64.cdx.json").read_text())
    spdx = json.loads((sboms / name / "amd64.spdx.json").read_text())
    purls = sorted(c["purl"] for c in cdx["components"])
    spdx_purls = sorted(r["referenceLocator"] for p in spdx["packages"] for r in p.get("externalRefs", []) if r["referenceType"] == "purl")
    assert purls == spdx_purls
    out: dict[str, set[tuple[str, str]]] = {}
    for purl in map(PackageURL.from_string, purls):
        full = f"{purl.namespace}/{purl.name}" if purl.type == "npm" and purl.namespace else purl.name  # deb's namespace is the distro
        out.setdefault(purl.type, set()).add((full, purl.version))
    return out


def dpkg(image: str) -> set[tuple[str, str]]:
    return {tuple(line.split(" ", 1)) for line in docker("run", "--rm", "--entrypoint", "", image, *DPKG).splitlines() if line}  # type: ignore[misc]


@pytest.mark.parametrize("name", IMAGES)
def test_python_components_are_the_installed_distributions(built, sboms, name):
    listed = json.loads(docker("run", "--rm", "--entrypoint", "", built.image(name), "python", "-c", PY_PROBE))
    assert components(sboms, name)["pypi"] == {(canonicalize_name(n), v) for n, v in listed}


@pytest.mark.parametrize("name", IMAGES)
def test_deb_components_are_the_installed_packages_beyond_the_base(built, engine, sboms, name):
    listed = components(sboms, name)["deb"]
    installed = dpkg(built.image(name))
    assert listed <= installed, sorted(listed - installed)  # nothing listed that is not there
    from_base = installed - listed
    assert from_base <= dpkg(engine.standin), sorted(from_base - dpkg(engine.standin))  # nothing missing but the base's own
    assert listed and from_base  # both kinds exist: the test can tell them apart


@pytest.mark.parametrize("name", IMAGES)
def test_npm_components_are_the_installed_node_modules(built, sboms, name):
    found = {tuple(x) for x in json.loads(docker("run", "--rm", "--entrypoint", "", built.image(name), "python", "-c", NPM_PROBE))}
    assert components(sboms, name).get("npm", set()) == found
    assert (name == "geo") == bool(found)


def test_the_base_image_is_one_oci_component(built, sboms):
    for name in IMAGES:
        assert len(components(sboms, name)["oci"]) == 1
