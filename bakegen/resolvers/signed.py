"""OpenPGP checks of a third-party apt repository, with GnuPG's own tools (never by hand): the
fingerprint of a key file (``gpg --show-keys``) and an ``InRelease`` verified against that one key
(``gpgv``), which gives back only the signed text.

Each check runs in a new, empty GnuPG home: the machine's keyrings and agent never take part.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from bakegen import proc
from bakegen.errors import BakegenError, CommandError, ResolutionError

FINGERPRINT = r"[0-9A-F]{40}"  # OpenPGP v4 (GnuPG 2.2, Debian's, reads no v6 key)
ARMOR = b"-----BEGIN PGP PUBLIC KEY BLOCK-----"
# The packets of one public key: apt's verifier (sqv in trixie) trusts every key a keyring holds,
# a secret one too, so nothing else may be in the file.
PUBLIC_PACKETS = ("public key", "public sub key", "user ID", "attribute", "signature", "trust")


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BakegenError(f"apt.repositories needs GnuPG's {name}, which is not installed",
                           hint="install Debian's gnupg and gpgv (make tools does)")
    return found


def packets(key: bytes) -> list[str]:
    """The kinds of the OpenPGP packets of a key file (``gpg --list-packets``), in order."""
    with tempfile.TemporaryDirectory(prefix="bakegen-gpg-") as home:
        (Path(home) / "key").write_bytes(key)
        out = proc.run([_tool("gpg"), "--homedir", home, "--batch", "--list-packets",
                        str(Path(home) / "key")], check=False).stdout
    return re.findall(r"^:([^:]+) packet:", out, re.M)


def fingerprints(key: bytes) -> list[str]:
    """The primary keys' fingerprints of a key file (armored or binary)."""
    with tempfile.TemporaryDirectory(prefix="bakegen-gpg-") as home:
        (Path(home) / "key").write_bytes(key)
        try:
            out = proc.run([_tool("gpg"), "--homedir", home, "--batch", "--with-colons",
                            "--show-keys", str(Path(home) / "key")]).stdout
        except CommandError:
            return []
    rows = [line.split(":") for line in out.splitlines()]
    found, primary = [], False
    for row in rows:
        if row[0] in ("pub", "sub"):
            primary = row[0] == "pub"
        elif row[0] == "fpr" and primary and len(row) > 9:
            found.append(row[9])
            primary = False
    return found


def verify(inrelease: bytes, key: bytes, fingerprint: str, where: str, key_file: str) -> bytes:
    """The text ``inrelease`` signs, when ``key`` is exactly the key with ``fingerprint`` and it
    made a good signature; else one :class:`ResolutionError`. Only the signed text is returned:
    nothing around it."""
    kinds = packets(key)
    if kinds.count("public key") != 1 or not set(kinds) <= set(PUBLIC_PACKETS):
        raise ResolutionError(
            f"{where}: {key_file} is not one public key (its OpenPGP packets: "
            f"{', '.join(dict.fromkeys(kinds)) or 'none'})",
            hint="export only the vendor's key: gpg --armor --export FINGERPRINT > KEY.asc")
    found = fingerprints(key)
    if found != [fingerprint]:
        raise ResolutionError(
            f"{where}: {key_file} holds the keys {found or 'none'}, not just the pinned "
            f"{fingerprint}", hint="compare the key with the vendor's announced fingerprint; put "
            "only that key in the file")
    with tempfile.TemporaryDirectory(prefix="bakegen-gpgv-") as home:
        tmp = Path(home)
        keyring = _keyring(tmp, key, fingerprint)
        (tmp / "InRelease").write_bytes(inrelease)
        run = proc.run([_tool("gpgv"), "--homedir", home, "--keyring", str(keyring), "--status-fd",
                        "1", "--output", str(tmp / "signed"), str(tmp / "InRelease")], check=False)
        primaries = re.findall(r"^\[GNUPG:\] VALIDSIG (?:\S+ ){9}(\S+)", run.stdout, re.M)
        if run.returncode != 0 or primaries != [fingerprint]:
            reason = "no good signature" if run.returncode else f"signed by {primaries}"
            raise ResolutionError(
                f"{where}: InRelease is not signed by the pinned key {fingerprint} ({reason})",
                hint="the repository's key changed, or someone serves another InRelease; check the "
                "vendor's announced fingerprint before you change the key or the fingerprint")
        return (tmp / "signed").read_bytes()


def _keyring(tmp: Path, key: bytes, fingerprint: str) -> Path:
    """A binary keyring (what gpgv reads) of exactly the pinned key."""
    (tmp / "key").write_bytes(key)
    imported = tmp / "import"
    imported.mkdir(mode=0o700)
    gpg = [_tool("gpg"), "--homedir", str(imported), "--batch", "--quiet"]
    proc.run([*gpg, "--import", str(tmp / "key")])
    keyring = tmp / "keyring.gpg"
    keyring.write_bytes(proc.run([*gpg, "--export", fingerprint], binary=True).data)
    return keyring
