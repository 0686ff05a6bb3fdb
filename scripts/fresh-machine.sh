#!/usr/bin/env bash
# Run the README's test command on a really new machine, and time it.
#
#   scripts/fresh-machine.sh            # .ci/run (make test) in a fresh Debian bookworm container
#   scripts/fresh-machine.sh make example
#
# The machine is a container made from a debootstrapped Debian bookworm rootfs
# (python3, venv, make, git: what a new machine of this kind has; no docker, no
# Node.js, no caches), privileged so that it starts its own dockerd
# (docker-in-docker, through scripts/engine.sh like CI), with a clean copy of
# this working tree (tracked files and untracked ones git does not ignore: no
# .venv, no node_modules). It trusts the same CA bundle as this machine (a
# TLS-intercepting proxy) and sees the same environment variables for it.
# Needs root, a running Docker engine here (scripts/engine.sh up) and Debian's archive.
set -euo pipefail
cd "$(dirname "$0")/.."

MIRROR=${BAKEGEN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
IMAGE=${BAKEGEN_FRESH_IMAGE:-bakegen-fresh/bookworm:latest}
CACHE_DIR=${BAKEGEN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/bakegen}
PACKAGES=python3,python3-venv,python3-pip,make,git,ca-certificates,curl,procps,iproute2,xz-utils,gcc,libc6-dev

say() { echo "fresh-machine: $*" >&2; }
die() { echo "fresh-machine: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, a privileged container)"
docker info >/dev/null 2>&1 || die "no Docker engine: run scripts/engine.sh up first"

make_image() {
    docker image inspect "$IMAGE" >/dev/null 2>&1 && { say "$IMAGE present"; return 0; }
    command -v debootstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
    mkdir -p "$CACHE_DIR"
    local root; root=$(mktemp -d "${TMPDIR:-/tmp}/bakegen-fresh-root.XXXXXX")
    say "debootstrap bookworm ($PACKAGES)"
    debootstrap --variant=minbase --include="$PACKAGES" bookworm "$root" "$MIRROR" >"$CACHE_DIR/fresh-debootstrap.log" 2>&1 \
        || { tail -20 "$CACHE_DIR/fresh-debootstrap.log" >&2; rm -rf "$root"; die "debootstrap failed"; }
    # The proxy's CA, as this machine trusts it.
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
    chroot "$root" update-ca-certificates >/dev/null
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$IMAGE" >/dev/null
    rm -rf "$root"
    say "made $IMAGE"
}

checkout() {
    # The working tree as a clean checkout would have it.
    local dest=$1
    git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$dest"
}

make_image
work=$(mktemp -d "${TMPDIR:-/var/tmp}/bakegen-fresh.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"
checkout "$work/src"
cmd=("$@")
[ ${#cmd[@]} -gt 0 ] || cmd=(bash .ci/run)
ca=/etc/ssl/certs/ca-certificates.crt
# Each line of the run, prefixed with the seconds since the start; the phases are summed up at the end.
stamp() {
    local line
    while IFS= read -r line; do printf '[%5d s] %s\n' $(( $(date +%s) - start )) "$line"; done
}
# phase name <TAB> the first line of the run that starts it (a fixed string)
PHASES='install (pip)	-m venv .venv
npm test tools	npm ci
engine, stand-ins, registry	scripts/engine.sh all
lint, check, generate	make lint
unit and network tests	-m "not e2e"
e2e tests	-m e2e'
phases() {
    local log=$1 name marker at
    while IFS=$'\t' read -r name marker; do
        at=$(grep -F -m1 -- "$marker" "$log" | sed -n 's/^\[ *\([0-9]*\) s\].*/\1/p')
        say "phase at ${at:-?} s: $name"
    done < <(printf '%b\n' "$PHASES")
    grep -E '(passed|failed|error).* in [0-9.]+s' "$log" | sed 's/^/fresh-machine: result: /' >&2 || true
}
say "running ${cmd[*]} in a new $IMAGE container (docker-in-docker)"
start=$(date +%s)
log="$work/run.log"
set +e
docker run --rm --privileged \
    -v "$work/src:/src" -w /src \
    -v /var/lib/docker -v /var/lib/containerd -v /var/lib/bakegen-engine-second \
    -e HOME=/root -e SSL_CERT_FILE=$ca -e PIP_CERT=$ca -e REQUESTS_CA_BUNDLE=$ca -e CURL_CA_BUNDLE=$ca \
    -e NODE_EXTRA_CA_CERTS=$ca -e GIT_SSL_CAINFO=$ca -e PIP_DEFAULT_TIMEOUT=180 \
    "$IMAGE" "${cmd[@]}" 2>&1 | stamp | tee "$log"
rc=${PIPESTATUS[0]}
set -e
phases "$log"
say "${cmd[*]} exited with $rc after $(( $(date +%s) - start )) s"
exit $rc
