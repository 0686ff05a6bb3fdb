"""npm locks made by npm itself (marked network: they ask the npm registry)."""

from __future__ import annotations

import json

import pytest

from bakegen.errors import NetworkError, ResolutionError
from bakegen.lock import is_generated
from bakegen.resolvers.npm import NpmResolver

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
