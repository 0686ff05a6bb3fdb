"""npm locks made by npm itself (marked network: they ask the npm registry)."""

from __future__ import annotations

import json

import pytest

from bakegen.errors import NetworkError, ResolutionError
from bakegen.files import is_generated
from bakegen.resolvers.npm import NpmResolver, split_spec

pytestmark = pytest.mark.network


def test_lock_has_integrity_hashes_and_exact_versions(tmp_path):
    lock = NpmResolver().resolve("geo", ["leaflet@1.9.4"])
    doc = json.loads(lock.package_lock)
    assert doc["lockfileVersion"] >= 2
    entry = doc["packages"]["node_modules/leaflet"]
    assert entry["version"] == "1.9.4" and entry["integrity"].startswith("sha512-")
    assert json.loads(lock.package_json)["dependencies"] == {"leaflet": "1.9.4"}
    assert lock.packages() == {"node_modules/leaflet": "1.9.4"}
    (tmp_path / "package-lock.json").write_text(lock.package_lock)
    (tmp_path / "package.json").write_text(lock.package_json)
    assert is_generated(tmp_path / "package-lock.json") and is_generated(tmp_path / "package.json")


def test_unknown_package():
    with pytest.raises(ResolutionError, match="geo: cannot resolve npm packages: .*404"):
        NpmResolver().resolve("geo", ["bakegen-no-such-package-3f9a1c"])


def test_no_registry(monkeypatch):
    monkeypatch.setenv("npm_config_fetch_retries", "0")  # npm retries for a minute by default
    with pytest.raises(NetworkError, match="geo: cannot reach the npm registry http://127.0.0.1:9/"):
        NpmResolver(registry="http://127.0.0.1:9/").resolve("geo", ["leaflet@1.9.4"])


def test_relock_keeps_previous_versions_and_upgrade_moves_only_what_is_named():
    npm = NpmResolver()
    old = npm.resolve("geo", ["leaflet@1.7.1"])
    # the range now allows newer releases: a re-lock keeps the pin (pip-compile semantics)
    kept = npm.resolve("geo", ["leaflet@^1.7.0"], previous=old)
    assert kept.packages() == {"node_modules/leaflet": "1.7.1"}
    assert json.loads(kept.package_json)["dependencies"] == {"leaflet": "^1.7.0"}
    # --upgrade-package leaflet moves it to the newest match
    upgraded = npm.resolve("geo", ["leaflet@^1.7.0"], previous=old, upgrade=["leaflet"])
    assert upgraded.packages()["node_modules/leaflet"] != "1.7.1" and upgraded.packages()["node_modules/leaflet"].startswith("1.")
    # a spec the old pin no longer satisfies moves it
    assert npm.resolve("geo", ["leaflet@1.8.0"], previous=old).packages() == {"node_modules/leaflet": "1.8.0"}


@pytest.mark.parametrize("spec,expected", [("leaflet@1.9.4", ("leaflet", "1.9.4")), ("@jupyter-widgets/base@^6", ("@jupyter-widgets/base", "^6")), ("leaflet", ("leaflet", "*"))])
def test_split_spec(spec, expected):
    assert split_spec(spec) == expected
