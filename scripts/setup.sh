#!/usr/bin/env bash
# Install what ckpt needs on this host, idempotently.
#   scripts/setup.sh          runtime: CRIU >= 4.2, runc, busybox-static, the Python env
#   scripts/setup.sh --test   also what the tests need: a registry server, skopeo, Podman, ...
#
# CRIU must be >= 4.2 on kernels >= 6.16 (older ones cannot dump any inet socket there). Where
# the distribution's CRIU is older (Debian 12 and 13), only CRIU and the libraries it links
# against come from Debian's next suite (forky), pinned so low that upgrades never go there; on
# Debian 12 the C library and GnuTLS it needs come from Debian 13 (trixie), the nearest release
# that has them (with trixie's base-files, which the C library needs). The host's
# own Python is never replaced: pycriu (CRIU's Python library, pure Python) is unpacked from
# Debian's python3-pycriu into ckpt's venv, with protobuf from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

if [ "$(id -u)" != 0 ]; then
    echo "setup: run as root (CRIU and runc need it)" >&2
    exit 1
fi

CRIU_MIN=4.2
export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_refresh() { apt-get update -qq; apt_updated=1; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
apt_install() {
    local missing=()
    for pkg in "$@"; do installed "$pkg" || missing+=("$pkg"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ $apt_updated = 1 ] || apt_refresh
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

criu_version() {
    command -v criu >/dev/null || { echo 0; return; }
    criu --version 2>/dev/null | awk '/^Version:/ {print $2; exit}'
}
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]; }
criu_fits() { version_ge "$(criu_version)" "$CRIU_MIN"; }

# Judged by the apt sources, not os-release: trixie's C library brings trixie's base-files along.
has_suite() { grep -rqs "^Suites:.*\\b$1\\b\\|^deb .* $1 " /etc/apt/sources.list /etc/apt/sources.list.d/; }

# How much apt may take from a suite setup adds. Nothing comes from either unless asked for by
# name (-t SUITE). forky (testing) at 1: `apt upgrade` never moves a package to it, not even one
# installed from it or from trixie (at 100, a newer forky build of trixie's libc6 or base-files
# would be the upgrade). trixie (a release) at 100: what came from it gets its point releases.
suite_pin() { case $1 in forky) echo 1 ;; *) echo 100 ;; esac; }

# Pins SUITE as suite_pin says; also on a machine an older setup pinned otherwise.
pin_suite() {
    local suite=$1 want
    [ -f "/etc/apt/sources.list.d/$suite.sources" ] || return 0
    want=$(printf 'Package: *\nPin: release n=%s\nPin-Priority: %s' "$suite" "$(suite_pin "$suite")")
    [ "$(cat "/etc/apt/preferences.d/$suite" 2>/dev/null)" = "$want" ] || echo "$want" > "/etc/apt/preferences.d/$suite"
}

# Adds a Debian suite from the host's own mirror, pinned.
add_suite() {
    local suite=$1 mirror
    if [ ! -f "/etc/apt/sources.list.d/$suite.sources" ]; then
        mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
        [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 ~ /^(bookworm|trixie)$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
        [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
        printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' \
            "$mirror" "$suite" /usr/share/keyrings/debian-archive-keyring.gpg > "/etc/apt/sources.list.d/$suite.sources"
        apt_updated=0
    fi
    pin_suite "$suite"
}

install_criu() {
    criu_fits && return 0
    if ! command -v apt-get >/dev/null; then
        echo "setup: install CRIU >= $CRIU_MIN with your package manager (older ones cannot dump sockets on kernels >= 6.16)" >&2
        exit 1
    fi
    if ! has_suite bookworm && ! has_suite trixie; then
        # Another apt distribution (Ubuntu, a newer Debian): its own CRIU, if new enough.
        apt_install criu
        criu_fits && return 0
        echo "setup: this distribution's CRIU ($(criu_version)) is older than $CRIU_MIN; install a newer one" >&2
        exit 1
    fi
    add_suite forky
    if has_suite bookworm; then
        add_suite trixie
        apt_refresh
        # forky's CRIU needs glibc >= 2.38 and GnuTLS 3.8 (libgnutls30t64): trixie, a release, has both.
        apt-get install -y -qq --no-install-recommends -t trixie libc6 libgnutls30t64
    fi
    [ $apt_updated = 1 ] || apt_refresh
    # No recommends: criu recommends python3-pycriu, which would move the host's python3.
    apt-get install -y -qq --no-install-recommends -t forky criu
}

# pycriu from the Debian package that matches the installed CRIU, unpacked into the venv.
install_pycriu() {
    local site want have tmp
    site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
    want=$(criu_version)
    have=$(.venv/bin/python -c 'import pycriu.version as v; print(v.__version__)' 2>/dev/null || true)
    [ -n "$have" ] && [ "$have" = "$want" ] && return 0
    if ! command -v apt-get >/dev/null; then
        echo "setup: put CRIU's Python library (pycriu $want) into .venv ($site)" >&2
        exit 1
    fi
    tmp=$(mktemp -d)
    # Only this directory, owned by _apt, so apt's download sandbox can write there.
    chown _apt "$tmp" 2>/dev/null || true
    # The build of the installed criu package; else (the suite moved on) the newest one.
    local build suite=""
    build=$(dpkg-query -W -f='${Version}' criu 2>/dev/null || true)
    has_suite forky && suite="/forky"
    pycriu_download() {
        (cd "$tmp" && { { [ -n "$build" ] && apt-get download -qq "python3-pycriu=$build" 2>/dev/null; } ||
            apt-get download -qq "python3-pycriu$suite" 2>/dev/null || apt-get download -qq python3-pycriu; })
    }
    # A machine whose package lists were cleaned (or are older than its CRIU) needs them fetched.
    pycriu_download || { [ $apt_updated = 1 ] || { apt_refresh; pycriu_download; }; }
    dpkg-deb -x "$tmp"/python3-pycriu_*.deb "$tmp/x"
    rm -rf "$site/pycriu" "$site"/pycriu-*.dist-info
    cp -r "$tmp/x/usr/lib/python3/dist-packages/pycriu" "$tmp/x/usr/lib/python3/dist-packages/"pycriu-*.dist-info "$site/"
    rm -rf "$tmp"
}

system_python=/usr/bin/python3
apt_install runc busybox-static iproute2 gcc libc6-dev python3 python3-venv
python_found=$($system_python -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
install_criu
pin_suite forky
pin_suite trixie
if [ $want_test = 1 ]; then
    apt_install docker-registry skopeo openssl apache2-utils podman iptables debootstrap libcap2-bin
fi

# The host's own python3, without its site-packages: ckpt's dependencies stay in the venv.
venv_fits() {
    [ -x .venv/bin/pip ] || return 1
    grep -q '^include-system-site-packages = false' .venv/pyvenv.cfg || return 1
    [ "$(.venv/bin/python -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')" = "$python_found" ]
}
venv_fits || { rm -rf .venv; $system_python -m venv .venv; }
extra=""
[ $want_test = 1 ] && extra="[test]"
# pip is most of a repeated setup's time (5 s): it runs only when pyproject.toml changed since the
# last install into this venv, or the test extra is asked for and was not installed.
deps_stamp=.venv/ckpt-deps
deps_want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
deps_fit() {
    [ -x .venv/bin/ckpt ] && [ -f $deps_stamp ] || return 1
    local sha had
    read -r sha had < $deps_stamp || true
    [ "$sha" = "$deps_want" ] && { [ -z "$extra" ] || [ "$had" = "$extra" ]; }
}
if ! deps_fit; then
    .venv/bin/pip install -q --disable-pip-version-check -e ".${extra}"
    echo "$deps_want $extra" > $deps_stamp
fi
install_pycriu

python_now=$($system_python -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
if [ "$python_now" != "$python_found" ]; then
    echo "setup: $system_python moved from $python_found to $python_now; this must not happen" >&2
    exit 1
fi
# What this setup found and left, for the test that holds it to that.
printf '{"system_python_before": "%s", "system_python_after": "%s", "criu": "%s"}\n' \
    "$python_found" "$python_now" "$(criu_version)" > .venv/ckpt-setup.json
echo "setup: ready (CRIU $(criu_version), $(runc --version | head -1), $system_python $python_now left as found)"
