"""Writes the hostile-input corpus: tests/corpus/stacks/*.toml and tests/corpus/cases.json.

Each stack case is one stack file, stacks/bad.toml, beside a valid stacks/base.toml;
every bakegen command must refuse it with one `error:` line that names the file
(and the line, when there is one), exit 2, and write nothing. Run it after changing
the cases: `python tests/corpus/generate.py` (tests/test_corpus.py checks the
folder is current).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent

ROOT = 'name = "bad"\ndescription = "a hostile stack"\nbase = "python:3.13-slim"\n[python]\nversion = "3.13"\npackages = ["numpy"]\n'
CHILD = 'name = "bad"\ndescription = "a hostile child"\nextends = "base"\n'

# What a value must not hold, wherever it goes.
CONTROL = {"newline": "\\n", "cr": "\\r", "nul": "\\u0000", "tab-newline": "\\t\\n", "line-separator": "\\u2028",
           "rtl-override": "\\u202e", "bom-inside": "\\ufeff", "escape": "\\u001b[31m", "del": "\\u007f"}
# Shell, Dockerfile, HCL and YAML metacharacters: refused where a value is structured.
META = {"command-substitution": "$(touch /tmp/PWNED)", "backticks": "`id`", "quote-break": '\\";touch /tmp/PWNED;\\"',
        "semicolon": "x;id", "hcl-interpolation": "${HOME}", "hcl-directive": "%{ if true }x%{ endif }",
        "space": "a b", "yaml-flow": "{a: b}", "glob": "*", "pipe": "a|b", "ampersand": "a&&b", "redirect": "a>b",
        "dollar-ifs": "/x${IFS}y", "hash": "a#b", "unicode-lookalike": "jоvyan"}


def root(**edits: str) -> str:
    text = ROOT
    for old, new in edits.items():
        text = text.replace(old, new)
    return text


# (field, where the value goes in a stack file) for structured values: any META or CONTROL is refused
STRUCTURED = {
    "base": lambda v: root(**{'base = "python:3.13-slim"': f'base = "python:3.13-slim{v}"'}),
    "extends": lambda v: CHILD.replace('extends = "base"', f'extends = "base{v}"'),
    "tags": lambda v: root(**{'[python]': f'tags = ["latest{v}"]\n[python]'}),
    "python-version": lambda v: root(**{'version = "3.13"': f'version = "3.13{v}"'}),
    "python-interpreter": lambda v: root(**{'packages = ["numpy"]': f'packages = ["numpy"]\nenv = "base"\ninterpreter = "/opt/conda/bin/python{v}"'}),
    "apt-package": lambda v: root() + f'[apt]\nsuite = "trixie"\npackages = ["git{v}"]\n',
    "apt-build": lambda v: root() + f'[apt]\nsuite = "trixie"\nbuild = ["gcc{v}"]\n',
    "apt-suite": lambda v: root() + f'[apt]\nsuite = "trixie{v}"\npackages = ["git"]\n',
    "apt-snapshot": lambda v: root() + f'[apt]\nsuite = "trixie"\nsnapshot = "20261101T000000Z{v}"\npackages = ["git"]\n',
    "apt-mirror": lambda v: root() + f'[apt]\nsuite = "trixie"\nmirror = "http://deb.debian.org/debian{v}"\npackages = ["git"]\n',
    "npm-package": lambda v: root() + f'[apt]\nsuite = "trixie"\nbuild = ["nodejs", "npm"]\n[npm]\npackages = ["leaflet@1.9.4{v}"]\n',
    "profile-slug": lambda v: root() + f'[profile]\nslug = "bad{v}"\n',
    "profile-mem-limit": lambda v: root() + f'[profile]\nmem_limit = "4G{v}"\n',
    "profile-default-url": lambda v: root() + f'[profile]\ndefault_url = "/lab{v}"\n',
    "env-key": lambda v: root() + f'[env]\n"FOO{v}" = "1"\n',
    "user-name": lambda v: root() + f'[user]\nname = "jovyan{v}"\nuid = 1000\ngid = 100\n',
    "label-key": lambda v: root() + f'[labels]\n"org.example.x{v}" = "1"\n',
}
# free text (rendered quoted): only control characters are refused
TEXT = {
    "description": lambda v: root(**{'description = "a hostile stack"': f'description = "a hostile stack{v}"'}),
    "profile-display-name": lambda v: root() + f'[profile]\ndisplay_name = "Bad{v}"\n',
    "env-value": lambda v: root() + f'[env]\nFOO = "1{v}"\n',
    "label-value": lambda v: root() + f'[labels]\n"org.example.x" = "1{v}"\n',
    "run-command": lambda v: root() + f'[run]\ncommand = ["python{v}"]\n',
    "python-requirement": lambda v: root(**{'packages = ["numpy"]': f'packages = ["numpy{v}"]'}),
}
# metacharacters that are fine in one structured field (a space in an npm range)
ALLOWED = {("npm-package", "space"), ("npm-package", "glob"), ("npm-package", "pipe"), ("npm-package", "redirect"),
           ("profile-default-url", "hash")}
# whole files: (name, text or bytes, what the error says)
WHOLE = [
    ("bom-file", b"\xef\xbb\xbf" + ROOT.encode(), "starts with a byte-order mark (BOM)"),
    ("not-utf8", ROOT.encode().replace(b"hostile", b"hostil\xe9"), "not UTF-8 text"),
    ("deep-nesting", (root() + "x = " + "[" * 5000 + "]" * 5000 + "\n").encode(), "nested too deeply"),
    ("unknown-key", root(**{"[python]": "flavour = \"x\"\n[python]"}).encode(), "unknown key 'flavour'"),
    ("unknown-table-key", root(**{'version = "3.13"': 'version = "3.13"\npakages = []'}).encode(), "unknown key 'python.pakages'"),
    ("wrong-type-tags", root(**{"[python]": 'tags = "latest"\n[python]'}).encode(), "tags: expected an array"),
    ("wrong-type-port", (root() + "[run]\nport = \"8888\"\n").encode(), "run.port: expected an integer"),
    ("port-range", (root() + "[run]\nport = 70000\n").encode(), "run.port: 70000 is out of range"),
    ("uid-zero", (root() + '[user]\nname = "x"\nuid = 0\ngid = 0\n').encode(), "user.uid: 0 is out of range"),
    ("huge-uid", (root() + '[user]\nname = "x"\nuid = 99999999999\ngid = 1\n').encode(), "user.uid: 99999999999 is out of range"),
    ("bool-as-string", (root() + '[python]\n').encode(), "malformed TOML"),
    ("huge-description", root(**{'description = "a hostile stack"': 'description = "' + "x" * 5000 + '"'}).encode(), "longer than 4096"),
    ("many-tags", root(**{"[python]": "tags = [" + ", ".join(f'"t{i}"' for i in range(1001)) + "]\n[python]"}).encode(), "more than 1000"),
    ("missing-description", ROOT.replace('description = "a hostile stack"\n', "").encode(), "missing required key 'description'"),
    ("name-mismatch", ROOT.replace('name = "bad"', 'name = "other"').encode(), "does not match the file name"),
    ("base-and-extends", (ROOT.replace('base = "python:3.13-slim"', 'base = "python:3.13-slim"\nextends = "base"')).encode(), "set exactly one of 'base'"),
    ("extends-missing", CHILD.replace('extends = "base"', 'extends = "nope"').encode(), "extends 'nope': no such stack"),
    ("extends-self", CHILD.replace('extends = "base"', 'extends = "bad"').encode(), "extends cycle"),
    ("child-platforms", (CHILD + 'platforms = ["linux/arm64"]\n').encode(), "'platforms' can only be set on a root stack"),
    ("bad-platform", root(**{"[python]": 'platforms = ["linux/s390x"]\n[python]'}).encode(), "unsupported platform"),
    ("url-requirement", root(**{'packages = ["numpy"]': 'packages = ["numpy @ https://example.org/numpy.whl"]'}).encode(), "is a direct URL"),
    ("requirement-option", root(**{'packages = ["numpy"]': 'packages = ["-r /etc/passwd"]'}).encode(), "invalid requirement"),
    ("npm-file", (root() + '[apt]\nsuite = "trixie"\nbuild = ["nodejs", "npm"]\n[npm]\npackages = ["leaflet@file:/etc"]\n').encode(), "invalid npm package"),
    ("npm-git", (root() + '[apt]\nsuite = "trixie"\nbuild = ["nodejs", "npm"]\n[npm]\npackages = ["leaflet@git+https://x.org/l.git"]\n').encode(), "invalid npm package"),
    ("npm-github", (root() + '[apt]\nsuite = "trixie"\nbuild = ["nodejs", "npm"]\n[npm]\npackages = ["user/repo"]\n').encode(), "invalid npm package"),
    ("npm-alias", (root() + '[apt]\nsuite = "trixie"\nbuild = ["nodejs", "npm"]\n[npm]\npackages = ["l@npm:leaflet@1"]\n').encode(), "invalid npm package"),
    ("npm-url", (root() + '[apt]\nsuite = "trixie"\nbuild = ["nodejs", "npm"]\n[npm]\npackages = ["l@https://x.org/l.tgz"]\n').encode(), "invalid npm package"),
    ("npm-without-node", (root() + '[npm]\npackages = ["leaflet@1.9.4"]\n').encode(), "npm packages need nodejs and npm"),
    ("unknown-suite", (root() + '[apt]\nsuite = "wheezy"\npackages = ["git"]\n').encode(), "unknown Debian or Ubuntu release"),
    ("apt-without-suite", (root() + '[apt]\npackages = ["git"]\n').encode(), "apt packages need 'apt.suite'"),
    ("interpreter-without-env", root(**{'packages = ["numpy"]': 'packages = ["numpy"]\ninterpreter = "/usr/bin/python3"'}).encode(), "needs python.env"),
    ("slim-on-vendor", root(**{'packages = ["numpy"]': 'packages = ["numpy"]\nenv = "base"\nslim = true'}).encode(), "python.slim needs"),
    ("reserved-default", ROOT.encode(), "taken by the bake group"),
    ("reserved-scratch", ROOT.encode(), "taken by FROM scratch"),
    ("reserved-builder", ROOT.encode(), "taken by a Dockerfile stage"),
    ("reserved-apps-builder", ROOT.encode(), "taken by a Dockerfile stage of apps"),
    ("reserved-npm-builder", ROOT.encode(), "taken by a Dockerfile stage of npm"),
    ("reserved-build-tools", ROOT.encode(), "taken by a Dockerfile stage of apt"),
    ("user-root", (root() + '[user]\nname = "root"\nuid = 1000\ngid = 100\n').encode(), "'root' is a user of the base image's system"),
    ("user-nobody", (root() + '[user]\nname = "nobody"\nuid = 1000\ngid = 100\n').encode(), "'nobody' is a user of the base image's system"),
    ("file-name-300", (root() + '[[files]]\nsource = "' + "a" * 300 + '"\ntarget = "/etc/x"\n').encode(), "invalid file in the stack's folder"),
    ("file-target-300", (root() + '[[files]]\nsource = "a"\ntarget = "/etc/' + "a" * 300 + '"\n').encode(), "invalid absolute path in the image"),
    ("hook-name-300", (root() + '[start]\nhooks = ["' + "h" * 300 + '.sh"]\n').encode(), "invalid hook file in the stack's folder"),
    ("file-target-start-sh", (root() + '[[files]]\nsource = "a"\ntarget = "/usr/local/bin/start.sh"\n').encode(), "is bakegen's or the system's"),
    ("file-target-start-notebook", (root() + '[[files]]\nsource = "a"\ntarget = "/usr/local/bin/start-notebook.py"\n').encode(), "is bakegen's or the system's"),
    ("image-ref-uppercase", root(**{'base = "python:3.13-slim"': 'base = "Python:3.13"'}).encode(), "invalid image reference"),
    ("image-ref-bad-digest", root(**{'base = "python:3.13-slim"': 'base = "python@sha256:1234"'}).encode(), "invalid image reference"),
    ("cpu-limit-string", (root() + '[profile]\ncpu_limit = "2"\n').encode(), "profile.cpu_limit: expected a number"),
    ("mem-limit-gib", (root() + '[profile]\nmem_limit = "4Gi"\n').encode(), "invalid memory limit"),
    ("python-child-mismatch", (CHILD + '[python]\nversion = "3.12"\n').encode(), "differs from '3.13'"),
    ("empty-tag", root(**{"[python]": 'tags = [""]\n[python]'}).encode(), "invalid tag ''"),
    ("empty-apt-package", (root() + '[apt]\nsuite = "trixie"\npackages = [""]\n').encode(), "invalid apt package ''"),
    ("empty-env-key", (root() + '[env]\n"" = "1"\n').encode(), "invalid environment variable name ''"),
    ("empty-command", (root() + '[run]\ncommand = []\n').encode(), "run.command: must not be empty"),
    ("empty-base", root(**{'base = "python:3.13-slim"': 'base = ""'}).encode(), "invalid image reference"),
    ("table-as-value", root(**{"[python]": 'python = "3.13"\n[python]'}).encode(), "malformed TOML"),
]
# stack names that are taken: the stack file is named after them
RENAMED = {"reserved-default": "default", "reserved-scratch": "scratch", "reserved-builder": "builder", "reserved-apps-builder": "apps-builder",
           "reserved-npm-builder": "npm-builder", "reserved-build-tools": "build-tools"}


def cases() -> dict[str, tuple[str, bytes, str]]:
    """{case: (stack name, file bytes, error fragment)}."""
    out: dict[str, tuple[str, bytes, str]] = {}
    for field, make in STRUCTURED.items():
        for kind, value in {**CONTROL, **META}.items():
            if (field, kind) not in ALLOWED:
                out[f"{field}--{kind}"] = ("bad", make(value).encode(), "")
    for field, make in TEXT.items():
        for kind, value in CONTROL.items():
            out[f"{field}--{kind}"] = ("bad", make(value).encode(), "")
    for case, data, fragment in WHOLE:
        name = RENAMED.get(case, "bad")
        text = data.replace(b'name = "bad"', f'name = "{name}"'.encode(), 1)
        out[case] = (name, text, fragment)
    return out


def write(folder: Path = HERE) -> None:
    stacks = folder / "stacks"
    stacks.mkdir(exist_ok=True)
    for old in stacks.glob("*.toml"):
        old.unlink()
    index = {}
    for case, (name, data, fragment) in sorted(cases().items()):
        (stacks / f"{case}.toml").write_bytes(data)
        index[case] = {"stack": name, "error": fragment}
    (folder / "stacks.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    write_tampers(folder)




# Tampered locks, applied to a locked example (tests/test_corpus.py): each is
# {"file", "op", ...} and what `bakegen check` must say (exit 1, "stale: ..." on
# stdout, one error line) unless "exit" says otherwise.
D0 = "sha256:" + "0" * 64
TAMPERS = {
    "digest-edited": {"file": "locks/base/lock.json", "op": "json", "path": ["base", "digest"], "value": D0, "says": "checksum does not match"},
    "digest-edited-and-rehashed": {"file": "locks/base/lock.json", "op": "json", "path": ["base", "digest"], "value": D0, "rehash": True,
                                   "says": "tampered: the lock's base image digest"},
    "platforms-emptied": {"file": "locks/base/lock.json", "op": "json", "path": ["platforms"], "value": [], "rehash": True, "says": "damaged lock manifest: platforms"},
    "version-as-list": {"file": "locks/base/lock.json", "op": "json", "path": ["version"], "value": [2], "says": "not a format number"},
    "version-from-the-future": {"file": "locks/base/lock.json", "op": "json", "path": ["version"], "value": 99, "says": "lock format version 99 is not supported", "exit": 2},
    "epoch-as-string": {"file": "locks/base/lock.json", "op": "json", "path": ["source_date_epoch"], "value": "soon", "rehash": True, "says": "source_date_epoch"},
    "epoch-huge": {"file": "locks/base/lock.json", "op": "json", "path": ["source_date_epoch"], "value": 10**30, "rehash": True, "says": "source_date_epoch"},
    "checksum-removed": {"file": "locks/base/lock.json", "op": "json", "path": ["checksum"], "value": None, "says": "checksum does not match"},
    "stack-renamed": {"file": "locks/kid/lock.json", "op": "json", "path": ["stack"], "value": "base", "rehash": True, "says": "tampered: the lock's stack"},
    "parent-changed": {"file": "locks/kid/lock.json", "op": "json", "path": ["parent"], "value": None, "rehash": True, "says": "tampered: the lock's parent"},
    "user-injected": {"file": "locks/base/lock.json", "op": "json", "path": ["base", "user"], "value": "x;id", "rehash": True, "says": "damaged lock manifest: base/user"},
    "unknown-key": {"file": "locks/base/lock.json", "op": "json", "path": ["extra"], "value": 1, "rehash": True, "says": "damaged lock manifest"},
    "file-outside": {"file": "locks/base/lock.json", "op": "json", "path": ["python", "files", "linux/amd64", "file"], "value": "../../stacks/base.toml",
                     "rehash": True, "says": "the manifest names '../../stacks/base.toml' for linux/amd64, not requirements.txt"},
    "platform-file-missing": {"file": "locks/base/lock.json", "op": "json", "path": ["python", "files"], "value": {}, "rehash": True,
                              "says": "the lock's files are for [], its platforms are ['linux/amd64']"},
    "python-section-null": {"file": "locks/base/lock.json", "op": "json", "path": ["python"], "value": None, "rehash": True, "says": "python: missing"},
    # a section newer than format 2 is there or not; null would switch the root's installer from uv to pip
    "tools-section-null": {"file": "locks/base/lock.json", "op": "json", "path": ["tools"], "value": None, "rehash": True, "says": "tools: not what bakegen writes"},
    "manifest-not-json": {"file": "locks/base/lock.json", "op": "write", "value": "{not json", "says": "unreadable lock manifest"},
    "manifest-empty": {"file": "locks/base/lock.json", "op": "write", "value": "", "says": "unreadable lock manifest"},
    "manifest-deep": {"file": "locks/base/lock.json", "op": "write", "value": "[" * 100000, "says": "unreadable lock manifest"},
    "manifest-a-folder": {"file": "locks/base/lock.json", "op": "folder", "says": "cannot read the lock manifest"},
    "manifest-deleted": {"file": "locks/base/lock.json", "op": "delete", "says": "no lock"},
    "requirements-edited": {"file": "locks/base/requirements.txt", "op": "append", "value": "evil==1.0\n", "says": "was edited after locking"},
    "requirements-not-utf8": {"file": "locks/base/requirements.txt", "op": "bytes", "value": "ff", "says": "is not UTF-8 text"},
    "requirements-deleted": {"file": "locks/base/requirements.txt", "op": "delete", "says": "requirements.txt is missing"},
    "committed-journal": {"file": ".bakegen-transaction/journal.json", "op": "write", "value": '{"command": "bakegen lock", "folder": "1:2", "entries": []}',
                          "says": "was made in another folder (it was committed or copied)", "exit": 2},
    "interrupted-before-journal": {"file": ".bakegen-transaction/0000", "op": "write", "value": "x", "says": "interrupted write"},
    "orphan-lock": {"file": "locks/gone/requirements.txt", "op": "copy", "value": "locks/base/requirements.txt", "says": "stale item", "out": "no stack named gone"},
    "orphan-dockerfile": {"file": "dockerfiles/gone/Dockerfile", "op": "copy", "value": "dockerfiles/base/Dockerfile", "says": "stale item", "out": "no longer generated"},
    "generated-file-edited": {"file": "dockerfiles/base/Dockerfile", "op": "append", "value": "RUN id\n", "says": "stale item", "out": "dockerfiles/base/Dockerfile: out of date"},
}


def write_tampers(folder: Path = HERE) -> None:
    (folder / "locks.json").write_text(json.dumps(TAMPERS, indent=1, sort_keys=True, ensure_ascii=True) + "\n")


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
