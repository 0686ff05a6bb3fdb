"""The TLS context of every HTTPS request bakegen makes itself (indexes, registries, advisories):
the system's CAs, or the CA bundle that ``SSL_CERT_FILE`` names (a TLS-intercepting proxy's)."""

from __future__ import annotations

import os
import ssl


def tls_context(*variables: str) -> ssl.SSLContext:
    """A default context with the CA bundle of the first of ``variables`` (SSL_CERT_FILE when none
    is given) that names an existing file."""
    for name in variables or ("SSL_CERT_FILE",):
        cafile = os.environ.get(name)
        if cafile and os.path.isfile(cafile):
            return ssl.create_default_context(cafile=cafile)
    return ssl.create_default_context()
