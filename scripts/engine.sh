#!/usr/bin/env bash
# Start a real Docker engine with buildx for bakegen's end-to-end tests.
#
#   scripts/engine.sh up          install (when missing) and start dockerd + buildx
#   scripts/engine.sh standin     build the local stand-in for python:3.13-slim
#   scripts/engine.sh registry    also start a local OCI registry on 127.0.0.1:5000
#   scripts/engine.sh arm64       arm64 emulation (QEMU, binfmt_misc) and the stand-in for
#                                 amd64 + arm64 as one image index in the local registry;
#                                 prints its reference (REGISTRY/bakegen-standin/python:3.13-slim@sha256:...)
#   scripts/engine.sh all         up, standin, registry, and arm64 started in the background (the
#                                 first `arm64` call waits for it): make test overlaps the slow
#                                 QEMU part with the unit tests
#   scripts/engine.sh second      a second, separate engine ("another machine"): its own dockerd,
#                                 containerd, data-root, socket and bridge; shares nothing with the
#                                 first but the registry. Prints its DOCKER_HOST (unix://...)
#   scripts/engine.sh graphviz    Debian's graphviz (dot), with which the tests check bakegen graph
#   scripts/engine.sh aptrepo     Debian's reprepro, gnupg and gpgv: the signed apt repository of the
#                                 e2e tests, and bakegen lock's check of a repository's signature
#   scripts/engine.sh down        stop the dockerds (and registry) this script started
#
# Does nothing when a working engine with buildx is already running. Installs
# from Debian packages only (root, Debian): sid's docker.io/docker-buildx/
# containerd unpacked under $ENGINE_DIR, bookworm's runc + iptables from apt.
# The machine's own apt configuration is left untouched.
set -euo pipefail

ENGINE_DIR=${BAKEGEN_ENGINE_DIR:-/opt/bakegen-engine}
STANDIN_TAG=${BAKEGEN_STANDIN_TAG:-bakegen-standin/python:3.13-slim}
STANDIN_SUITE=${BAKEGEN_STANDIN_SUITE:-trixie}
MIRROR=${BAKEGEN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE_DIR=${BAKEGEN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/bakegen}
LOG=$ENGINE_DIR/dockerd.log
# buildx goes where the docker CLI looks for every user, whatever HOME is.
PLUGIN_DIR=${BAKEGEN_CLI_PLUGIN_DIR:-/usr/local/lib/docker/cli-plugins}

say() { echo "engine: $*" >&2; }
die() { echo "engine: error: $*" >&2; exit 1; }

engine_ok() {
    docker info >/dev/null 2>&1 && docker buildx version >/dev/null 2>&1
}

apt_install() {
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_engine() {
    [ "$(id -u)" = 0 ] || die "installing an engine needs root; start dockerd yourself or run as root"
    command -v apt-get >/dev/null || die "no apt-get: install Docker with buildx yourself (https://docs.docker.com/engine/install/)"
    apt_install runc iptables ca-certificates debian-archive-keyring
    if [ -x "$ENGINE_DIR/root/usr/sbin/dockerd" ] && [ -x "$ENGINE_DIR/root/usr/bin/docker" ] \
        && [ -x "$ENGINE_DIR/root/usr/libexec/docker/cli-plugins/docker-buildx" ]; then
        link_tools; return 0
    fi
    local tmp; tmp=$(mktemp -d)
    mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial"
    # Signed by Debian's archive key. Valid-Until is not checked: sid's Release is
    # valid for a week, and a mirror that lags behind it still serves signed packages.
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR sid main" > "$tmp/sources.list"
    local aptopts=(-q -o APT::Sandbox::User=root -o "Dir::Etc::sourcelist=$tmp/sources.list" -o Dir::Etc::sourceparts=/dev/null
                   -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache" -o Acquire::Check-Valid-Until=false)
    say "downloading docker.io, docker-cli, docker-buildx, containerd from Debian sid"
    apt-get "${aptopts[@]}" update >/dev/null
    (cd "$tmp" && apt-get "${aptopts[@]}" download docker.io docker-cli docker-buildx containerd tini-static >/dev/null)
    mkdir -p "$ENGINE_DIR/root"
    for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$ENGINE_DIR/root"; done
    # sid's runc needs a newer glibc than bookworm's: keep bookworm's runc.
    rm -f "$ENGINE_DIR/root/usr/sbin/runc" "$ENGINE_DIR/root/usr/bin/runc"
    rm -rf "$tmp"
    link_tools
}

link_tools() {
    mkdir -p "$PLUGIN_DIR"
    ln -sf "$ENGINE_DIR/root/usr/libexec/docker/cli-plugins/docker-buildx" "$PLUGIN_DIR/docker-buildx"
    # A machine without a docker client gets sid's (a machine that has one keeps it).
    command -v docker >/dev/null || ln -sf "$ENGINE_DIR/root/usr/bin/docker" /usr/local/bin/docker
}

start_engine() {
    mkdir -p "$ENGINE_DIR"
    local cfg=$ENGINE_DIR/daemon.json
    # The containerd image store lets BuildKit export OCI tarballs (used for
    # reproducibility checks) and keeps `docker save` in OCI layout.
    echo '{"features": {"containerd-snapshotter": true}}' > "$cfg"
    # A dockerd killed by an earlier run leaves its pid file behind, and a new one refuses to start.
    local pidfile=/var/run/docker.pid
    if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then rm -f "$pidfile"; fi
    say "starting dockerd (log: $LOG)"
    PATH="$ENGINE_DIR/root/usr/sbin:$ENGINE_DIR/root/usr/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        setsid nohup dockerd --config-file "$cfg" >"$LOG" 2>&1 < /dev/null &
    echo $! > "$ENGINE_DIR/dockerd.pid"
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { tail -20 "$LOG" >&2; die "dockerd did not start"; }
}

cmd_up() {
    if engine_ok; then say "engine already running"; return 0; fi
    install_engine
    if docker info >/dev/null 2>&1; then
        say "an engine is running without buildx: using the buildx plugin from $ENGINE_DIR"
    else
        start_engine
    fi
    engine_ok || die "engine started but buildx does not work"
    say "ready: $(docker version --format 'engine {{.Server.Version}}'), buildx $(docker buildx version | awk '{print $2}')"
}

host_arch() { dpkg --print-architecture 2>/dev/null || { case "$(uname -m)" in x86_64) echo amd64 ;; aarch64) echo arm64 ;; *) uname -m ;; esac; }; }

standin_tarball() {
    # The stand-in's root filesystem for one architecture, debootstrapped once and cached.
    # A foreign architecture runs debootstrap's second stage under QEMU (cmd_qemu first).
    local arch=$1 tarball=$CACHE_DIR/standin-$STANDIN_SUITE-python-$1.tar
    [ -s "$tarball" ] && { echo "$tarball"; return 0; }
    [ "$(id -u)" = 0 ] || die "debootstrap needs root"
    apt_install debootstrap
    mkdir -p "$CACHE_DIR"
    local log=$CACHE_DIR/debootstrap-$arch.log include=python3,python3-venv,ca-certificates
    if [ "$arch" != "$(host_arch)" ]; then
        # mmdebstrap runs apt natively and only the packages' scripts under QEMU:
        # 3-4 min here, against 10-16 min for debootstrap's second stage under QEMU.
        apt_install mmdebstrap arch-test  # arch-test: how mmdebstrap tells that arm64 binaries run here
        local start=$SECONDS
        say "mmdebstrap $STANDIN_SUITE $arch (minbase + python3, python3-venv; package scripts run under QEMU)"
        mmdebstrap --arch="$arch" --variant=minbase --include="$include" --format=tar \
            "$STANDIN_SUITE" "$tarball.tmp" "$MIRROR" >"$log" 2>&1 \
            || { tail -20 "$log" >&2; rm -f "$tarball.tmp"; die "mmdebstrap ($arch) failed"; }
        mv "$tarball.tmp" "$tarball"
        say "mmdebstrap $arch took $((SECONDS - start)) s"
        echo "$tarball"
        return 0
    fi
    local root; root=$(mktemp -d "${TMPDIR:-/tmp}/bakegen-standin-$arch.XXXXXX")
    say "debootstrap $STANDIN_SUITE $arch (minbase + python3, python3-venv)"
    debootstrap --variant=minbase --include="$include" --arch="$arch" "$STANDIN_SUITE" "$root" "$MIRROR" >"$log" 2>&1 \
        || { tail -20 "$log" >&2; rm -rf "$root"; die "debootstrap failed"; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
    echo "$tarball"
}

import_standin() {
    # import_standin ARCH TAG
    docker image inspect "$2" >/dev/null 2>&1 && { say "$2 present"; return 0; }
    local tarball; tarball=$(standin_tarball "$1")
    say "importing $2 (linux/$1)"
    docker import --platform "linux/$1" --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["python3"]' "$tarball" "$2" >/dev/null
}

cmd_standin() {
    # A stand-in for the public python:3.13-slim (Debian trixie + Python 3.13):
    # the same Debian release and Python minor version, made with debootstrap
    # because no container registry is reachable here.
    import_standin "$(host_arch)" "$STANDIN_TAG"
}

cmd_qemu() {
    # Emulation of the other architecture of the pair (arm64 on amd64, amd64 on arm64) from
    # Debian's qemu-user-static, registered in binfmt_misc with the F flag (the interpreter is
    # opened at once, so it works in containers and chroots).
    local cpu
    case "$(host_arch)" in amd64) cpu=aarch64 ;; arm64) cpu=x86_64 ;; *) die "no emulation set-up for $(host_arch)" ;; esac
    local entry=/proc/sys/fs/binfmt_misc/qemu-$cpu
    if [ -f "$entry" ] && grep -q '^enabled' "$entry" && grep -q '^flags:.*F' "$entry"; then return 0; fi
    [ "$(id -u)" = 0 ] || die "registering $cpu emulation needs root"
    apt_install qemu-user-static
    [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
        || die "cannot mount binfmt_misc"
    [ -f "$entry" ] && echo -1 > "$entry"   # an entry without F would not work in containers
    local conf=/usr/lib/binfmt.d/qemu-$cpu.conf line
    line=$(grep -v '^#' "$conf" | grep . | head -1) || die "no $cpu line in $conf"
    case "${line##*:}" in *F*) ;; *) line="${line}F" ;; esac
    printf '%s' "$line" > /proc/sys/fs/binfmt_misc/register
    grep -q '^flags:.*F' "$entry" || die "$cpu emulation did not register"
    say "$cpu emulation registered: $("qemu-$cpu-static" --version | head -1)"
}

cmd_arm64() {
    # The stand-in for amd64 and arm64, published as one image index, as the real python:3.13-slim is.
    # One at a time: a second call (the tests' fixture) waits for a first (started in the background).
    mkdir -p "$ENGINE_DIR"
    exec 9>"$ENGINE_DIR/arm64.lock"
    flock 9
    cmd_up
    cmd_qemu
    cmd_registry
    local arch repo=bakegen-standin/python tag=${STANDIN_TAG##*:}
    for arch in amd64 arm64; do
        import_standin "$arch" "$STANDIN_TAG-$arch"
        docker tag "$STANDIN_TAG-$arch" "$REGISTRY_ADDR/$repo:$tag-$arch"
        docker push -q "$REGISTRY_ADDR/$repo:$tag-$arch" >/dev/null
    done
    local digest
    digest=$(python3 "$(dirname "$0")/registry-index.py" "http://$REGISTRY_ADDR" "$repo" "$tag" "$tag-amd64" "$tag-arm64") \
        || die "could not publish the stand-in's image index"
    say "stand-in index: $REGISTRY_ADDR/$repo:$tag@$digest"
    echo "$REGISTRY_ADDR/$repo:$tag@$digest"
}

cmd_arm64_background() {
    # `arm64` in the background, its output in a log; `arm64` (or the tests) waits for it and prints the index.
    mkdir -p "$ENGINE_DIR"
    local log=$ENGINE_DIR/arm64.log
    # One at a time: a second `all` (make test runs make e2e, which runs it again) while the first job
    # holds the lock would truncate that job's log and queue a second job behind it.
    if ! flock -n "$ENGINE_DIR/arm64.lock" true; then
        say "the arm64 stand-in is being made in the background already (log: $log)"
        return 0
    fi
    say "making the arm64 stand-in in the background (log: $log); scripts/engine.sh arm64 waits for it"
    setsid nohup "$(cd "$(dirname "$0")" && pwd)/$(basename "$0")" arm64 >"$log" 2>&1 < /dev/null &
    sleep 1  # it holds the lock before the caller goes on
}

REGISTRY_ADDR=${BAKEGEN_REGISTRY_ADDR:-127.0.0.1:5000}

cmd_registry() {
    # Debian's docker-registry (CNCF distribution), for digest-pinning and push tests;
    # skopeo, with which bakegen build --push copies each image with its digest.
    apt_install skopeo
    if curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1; then say "registry already on $REGISTRY_ADDR"; return 0; fi
    apt_install docker-registry curl
    mkdir -p "$ENGINE_DIR/registry"
    cat > "$ENGINE_DIR/registry.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $ENGINE_DIR/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
YML
    setsid nohup docker-registry serve "$ENGINE_DIR/registry.yml" >"$ENGINE_DIR/registry.log" 2>&1 < /dev/null &
    echo $! > "$ENGINE_DIR/registry.pid"
    for _ in $(seq 1 30); do
        curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1 && { say "registry on $REGISTRY_ADDR"; return 0; }
        sleep 0.5
    done
    tail -20 "$ENGINE_DIR/registry.log" >&2
    die "docker-registry did not start"
}

SECOND_DIR=$ENGINE_DIR/second
# Its data-root is a folder of its own, not on overlayfs: BuildKit's overlay snapshotter cannot
# unpack a layer's whiteouts onto an overlay (a container's root; scripts/fresh-machine.sh mounts a
# volume here, as it does for /var/lib/docker).
SECOND_DATA=${BAKEGEN_SECOND_DATA_ROOT:-/var/lib/bakegen-engine-second}
SECOND_RUN=${BAKEGEN_SECOND_RUN:-/run/bakegen-engine-second}
SECOND_HOST=unix://$SECOND_RUN/docker.sock
SECOND_BRIDGE=bkg-second0
SECOND_NET=${BAKEGEN_SECOND_NET:-172.31.250.1/24}

second_network() {
    # Its own bridge, not docker0: two daemons on one bridge would hand out the same addresses.
    # The second daemon leaves iptables alone (it would rewrite the first one's chains); its build
    # containers reach the network through these two rules.
    ip link show "$SECOND_BRIDGE" >/dev/null 2>&1 || {
        ip link add "$SECOND_BRIDGE" type bridge
        ip addr add "$SECOND_NET" dev "$SECOND_BRIDGE"
    }
    ip link set "$SECOND_BRIDGE" up
    local subnet chain=FORWARD
    subnet=$(python3 -c "import ipaddress,sys; print(ipaddress.ip_interface(sys.argv[1]).network)" "$SECOND_NET")
    iptables -t nat -C POSTROUTING -s "$subnet" ! -o "$SECOND_BRIDGE" -j MASQUERADE 2>/dev/null \
        || iptables -t nat -A POSTROUTING -s "$subnet" ! -o "$SECOND_BRIDGE" -j MASQUERADE
    iptables -nL DOCKER-USER >/dev/null 2>&1 && chain=DOCKER-USER
    iptables -C "$chain" -i "$SECOND_BRIDGE" -j ACCEPT 2>/dev/null \
        || iptables -I "$chain" -i "$SECOND_BRIDGE" -j ACCEPT
    iptables -C "$chain" -o "$SECOND_BRIDGE" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT 2>/dev/null \
        || iptables -I "$chain" -o "$SECOND_BRIDGE" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
}

cmd_second() {
    cmd_up >&2
    if DOCKER_HOST=$SECOND_HOST docker info >/dev/null 2>&1; then
        say "second engine already running ($SECOND_HOST)"; echo "$SECOND_HOST"; return 0
    fi
    [ "$(id -u)" = 0 ] || die "starting a second engine needs root"
    apt_install iproute2
    second_network
    mkdir -p "$SECOND_DIR" "$SECOND_RUN" "$SECOND_DATA"
    [ "$(stat -f -c %T "$SECOND_DATA")" != overlayfs ] \
        || die "$SECOND_DATA is on overlayfs (a container's root?): mount a volume there, or set BAKEGEN_SECOND_DATA_ROOT"
    echo '{"features": {"containerd-snapshotter": true}}' > "$SECOND_DIR/daemon.json"
    local pidfile=$SECOND_RUN/docker.pid
    if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then rm -f "$pidfile"; fi
    say "starting a second dockerd on $SECOND_HOST (log: $SECOND_DIR/dockerd.log)"
    # --exec-root apart: its own containerd (socket and state), started by this dockerd
    PATH="$ENGINE_DIR/root/usr/sbin:$ENGINE_DIR/root/usr/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        setsid nohup dockerd --config-file "$SECOND_DIR/daemon.json" --data-root "$SECOND_DATA" \
        --exec-root "$SECOND_RUN/exec" --pidfile "$pidfile" -H "$SECOND_HOST" \
        --bridge "$SECOND_BRIDGE" --iptables=false --ip6tables=false \
        >"$SECOND_DIR/dockerd.log" 2>&1 < /dev/null &
    echo $! > "$ENGINE_DIR/second.pid"
    for _ in $(seq 1 60); do
        DOCKER_HOST=$SECOND_HOST docker info >/dev/null 2>&1 && break
        sleep 1
    done
    DOCKER_HOST=$SECOND_HOST docker info >/dev/null 2>&1 \
        || { tail -20 "$SECOND_DIR/dockerd.log" >&2; die "the second dockerd did not start"; }
    say "second engine ready: $SECOND_HOST"
    echo "$SECOND_HOST"
}

cmd_down() {
    for name in registry second dockerd; do
        local pidf=$ENGINE_DIR/$name.pid
        [ -f "$pidf" ] || continue
        kill "$(cat "$pidf")" 2>/dev/null || true
        rm -f "$pidf"
    done
}

case "${1:-up}" in
    up) cmd_up ;;
    standin) cmd_up; cmd_standin ;;
    registry) cmd_registry ;;
    arm64) cmd_arm64 ;;
    second) cmd_second ;;
    graphviz) command -v dot >/dev/null || { [ "$(id -u)" = 0 ] || die "installing graphviz needs root (or install it yourself)"; apt_install graphviz; } ;;
    aptrepo) command -v reprepro >/dev/null && command -v gpg >/dev/null && command -v gpgv >/dev/null || { [ "$(id -u)" = 0 ] || die "installing reprepro needs root (or install reprepro, gnupg and gpgv yourself)"; apt_install reprepro gnupg gpgv; } ;;
    all) cmd_up; cmd_standin; cmd_registry; cmd_arm64_background ;;
    down) cmd_down ;;
    *) die "usage: $0 up|standin|registry|arm64|second|graphviz|aptrepo|all|down" ;;
esac
