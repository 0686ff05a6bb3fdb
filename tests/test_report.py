from __future__ import annotations

from bakegen.report import ImageReport, Layer, _what, to_text


def test_layers_are_named_by_what_they_install():
    assert _what("RUN /bin/sh -c sh /tmp/bakegen/apt-install.sh /tmp/bakegen/lock runtime # buildkit") == "apt packages (apt.lock)"
    assert _what("COPY /opt/bakegen/staging/ /opt/venv/ # buildkit") == "Python packages (requirements.txt)"
    assert _what("COPY /opt/npm/geo /opt/npm/geo # buildkit") == "npm packages (package-lock.json)"
    assert _what("RUN |1 SOURCE_DATE_EPOCH=1 /bin/sh -c if ! id -u jovyan; then useradd ...") == "user and ~/work"
    assert _what("RUN /bin/sh -c make") == "other"


def test_text_shows_only_the_childs_own_layers():
    parent = ImageReport("base", "base:latest", None, 10, [Layer(100, "", "base image"), Layer(50, "", "Python virtualenv (requirements.txt)")], 30)
    child = ImageReport("kid", "kid:latest", "base", 12, parent.layers + [Layer(20, "", "Python packages (requirements.txt)")], 10, parent.size, 2)
    assert to_text([parent, child]).splitlines()[-3:] == [
        "kid (kid:latest, linux/amd64): 0.0 MB on disk (0.0 MB to download), 3 layers, 10 Dockerfile lines; +0.0 MB and +1 layers over base",
        "      0.0 MB  Python packages (requirements.txt)",
        "      0.0 MB  2 layers shared with base",
    ]
    assert child.added_size == 20
