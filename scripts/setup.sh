#!/usr/bin/env bash
# Install what ckpt needs on this host, idempotently.
#   scripts/setup.sh          runtime: CRIU >= 4, runc, busybox-static, the Python env
#   scripts/setup.sh --test   also what the tests need: a registry server, skopeo, openssl
# Only Debian 12 gets CRIU from Debian 13 (its own 3.17 cannot dump on current kernels);
# on other distributions install CRIU >= 4 with the host's package manager.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

if [ "$(id -u)" != 0 ]; then
    echo "setup: run as root (CRIU and runc need it)" >&2
    exit 1
fi

apt_updated=0
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ $apt_updated = 0 ]; then apt-get update -qq; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

criu_major() {
    command -v criu >/dev/null || { echo 0; return; }
    criu --version 2>/dev/null | awk '/^Version:/ {split($2, v, "."); print v[1]; exit}'
}

# Judged by the apt sources, not os-release: Debian 13's criu brings Debian 13's base-files along.
is_debian12() { grep -rqs '^Suites:.*bookworm\|^deb .* bookworm ' /etc/apt/sources.list /etc/apt/sources.list.d/; }

install_criu() {
    [ "$(criu_major)" -ge 4 ] 2>/dev/null && python3_has_pycriu && pip_wheel_fits && return 0
    if ! is_debian12; then
        if ! command -v apt-get >/dev/null; then
            echo "setup: install CRIU >= 4 and its Python bindings (pycriu) with your package manager" >&2
            exit 1
        fi
        apt_install criu python3-pycriu python3-venv
        return 0
    fi
    local mirror
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
    cat > /etc/apt/sources.list.d/trixie.sources <<SRC
Types: deb
URIs: $mirror
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    cat > /etc/apt/preferences.d/trixie <<PIN
Package: *
Pin: release n=trixie
Pin-Priority: 100
PIN
    apt-get update -qq; apt_updated=1
    # Debian 13's pycriu moves python3 to 3.13: take its venv and pip wheel from there too.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t trixie \
        criu python3-pycriu python3-venv python3-pip-whl python3-setuptools-whl
}

python3_has_pycriu() { /usr/bin/python3 -c 'import pycriu' 2>/dev/null; }

# Debian 12's pip wheel cannot bootstrap a venv of the python3 (3.13) that Debian 13's pycriu brings.
pip_wheel_fits() {
    local py pip
    py=$(/usr/bin/python3 -c 'import sys; print(sys.version_info[1])')
    pip=$(dpkg-query -W -f='${Version}' python3-pip-whl 2>/dev/null || echo 0)
    [ "$py" -lt 12 ] || dpkg --compare-versions "$pip" ge 24
}

apt_install runc busybox-static iproute2 gcc libc6-dev
install_criu
if [ $want_test = 1 ]; then
    apt_install docker-registry skopeo openssl apache2-utils podman
fi

# The venv sees the system site-packages because pycriu only ships as a distribution package.
if [ ! -x .venv/bin/pip ]; then
    rm -rf .venv
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
extra=""
[ $want_test = 1 ] && extra="[test]"
.venv/bin/pip install -q -e ".${extra}"
echo "setup: ready ($(criu --version | head -1), $(runc --version | head -1))"
