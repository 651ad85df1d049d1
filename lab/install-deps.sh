#!/usr/bin/env bash
# lab/install-deps.sh - install what netdeploy's build, tests and lab need on Debian 12, as root.
#
# Usage: lab/install-deps.sh
#
# Installs the Debian packages listed in lab/packages.txt (QEMU, OVMF, iPXE, dnsmasq, the TFTP
# and DHCP clients the tests drive, MinGW and Wine for the Windows PE agent, ...), checks for a
# Rust toolchain (cargo) and adds its Windows target. Safe to run again: apt-get and rustup
# skip what is already installed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ "$(id -u)" != 0 ]]; then
    echo "install-deps.sh: run as root (it uses apt-get)" >&2
    exit 1
fi
mapfile -t pkgs < <(grep -v '^\s*#' "$here/packages.txt" | grep -v '^\s*$')
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "install-deps.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# tftpd-hpa's package starts a system TFTP server on port 69; the benchmark runs its own.
if command -v systemctl >/dev/null && systemctl is-active -q tftpd-hpa 2>/dev/null; then
    systemctl stop tftpd-hpa || true
fi
# nginx-light's package starts a system web server on port 80; the HTTP benchmarks run their own.
if command -v systemctl >/dev/null && systemctl is-active -q nginx 2>/dev/null; then
    systemctl stop nginx || true
fi
if ! command -v cargo >/dev/null; then
    if [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        echo "install-deps.sh: cargo is in $HOME/.cargo/bin; add it to PATH" >&2
    else
        echo "install-deps.sh: no Rust toolchain; install one with rustup (https://rustup.rs), Rust 1.85 or newer" >&2
    fi
    exit 1
fi
# The Windows PE agent is built for Rust's x86_64-pc-windows-gnu target.
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-pc-windows-gnu; then
    if ! command -v rustup >/dev/null; then
        echo "install-deps.sh: the Windows PE agent needs rustup's target x86_64-pc-windows-gnu; no rustup here" >&2
        exit 1
    fi
    rustup target add x86_64-pc-windows-gnu
fi
echo "install-deps.sh: ready ($(cargo --version))"
