#!/usr/bin/env bash
# packaging/build-deb.sh - build the Debian package netdeploy_<version>_<arch>.deb with dpkg-deb.
#
# Usage: packaging/build-deb.sh [--bin-dir DIR] [--out DIR]
#
#   --bin-dir DIR  take netdeploy, netdeploy-media and netdeploy-agent.exe from DIR instead of
#                  building them (default: cargo build --release --locked, then target/release
#                  and, for the Windows agent, target/x86_64-pc-windows-gnu/release)
#   --out DIR      where the .deb goes (default: target/debian)
#
# The package holds:
#   /usr/bin/netdeploy, /usr/bin/netdeploy-media    the server and CLI, the media builder
#   /usr/lib/netdeploy/netdeploy-agent.exe          the agent for Windows PE (boot.windows_agent)
#   /etc/netdeploy/netdeploy.toml                   the example configuration (a conffile)
#   /lib/systemd/system/netdeploy.service           the unit (packaging/netdeploy.service)
#   /usr/share/doc/netdeploy/                       README, docs/, the example configuration
# and a postinst that creates the system user netdeploy and /var/lib/netdeploy. Prints the
# path of the .deb on its last line.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir=""
out="$repo/target/debian"
while (($#)); do
    case "$1" in
        --bin-dir) bin_dir="$(cd "$2" && pwd)"; shift 2 ;;
        --out) mkdir -p "$2"; out="$(cd "$2" && pwd)"; shift 2 ;;
        -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-deb.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

if [[ -z "$bin_dir" ]]; then
    (cd "$repo" && cargo build --release --locked -p netdeploy -p media-builder --bins)
    (cd "$repo" && cargo build --release --locked --target x86_64-pc-windows-gnu -p netdeploy-agent)
    bin_dir="$repo/target/release"
    win_agent="$repo/target/x86_64-pc-windows-gnu/release/netdeploy-agent.exe"
else
    win_agent="$bin_dir/netdeploy-agent.exe"
fi
for b in netdeploy netdeploy-media; do
    [[ -x "$bin_dir/$b" ]] || { echo "build-deb.sh: $bin_dir/$b is missing" >&2; exit 1; }
done
[[ -f "$win_agent" ]] || { echo "build-deb.sh: $win_agent is missing" >&2; exit 1; }

version="$(sed -n '/^\[package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n1)"
arch="$(dpkg --print-architecture)"
[[ -n "$version" ]] || { echo "build-deb.sh: no version in Cargo.toml" >&2; exit 1; }

mkdir -p "$out"
stage="$(mktemp -d "$out/stage.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
root="$stage/netdeploy_${version}_${arch}"

install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/etc/netdeploy" \
    "$root/lib/systemd/system" "$root/usr/share/doc/netdeploy/examples" \
    "$root/usr/share/doc/netdeploy/docs"
for b in netdeploy netdeploy-media; do
    install -m 0755 "$bin_dir/$b" "$root/usr/bin/$b"
    # The release profile keeps line tables for backtraces; the package does not need them.
    if command -v strip >/dev/null; then strip --strip-debug "$root/usr/bin/$b"; fi
done
install -d -m 0755 "$root/usr/lib/netdeploy"
install -m 0644 "$win_agent" "$root/usr/lib/netdeploy/netdeploy-agent.exe"
if command -v x86_64-w64-mingw32-strip >/dev/null; then
    x86_64-w64-mingw32-strip --strip-debug "$root/usr/lib/netdeploy/netdeploy-agent.exe"
fi
install -m 0640 "$repo/netdeploy.example.toml" "$root/etc/netdeploy/netdeploy.toml"
install -m 0644 "$repo/packaging/netdeploy.service" "$root/lib/systemd/system/netdeploy.service"
install -m 0644 "$repo/netdeploy.example.toml" "$root/usr/share/doc/netdeploy/examples/netdeploy.toml"
install -m 0644 "$repo/README.md" "$root/usr/share/doc/netdeploy/README.md"
install -m 0644 "$repo/packaging/debian/copyright" "$root/usr/share/doc/netdeploy/copyright"
if [[ -d "$repo/docs" ]]; then
    install -m 0644 "$repo"/docs/*.md "$repo"/docs/*.json "$root/usr/share/doc/netdeploy/docs/"
fi
install -m 0644 "$repo/packaging/debian/conffiles" "$root/DEBIAN/conffiles"
for s in postinst prerm postrm; do
    install -m 0755 "$repo/packaging/debian/$s" "$root/DEBIAN/$s"
done

size_kib="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
cat >"$root/DEBIAN/control" <<CONTROL
Package: netdeploy
Version: $version
Architecture: $arch
Maintainer: netdeploy developers <netdeploy@localhost>
Installed-Size: $size_kib
Depends: libc6 (>= 2.34), adduser
Recommends: ipxe
Suggests: xorriso, isolinux, syslinux-common, syslinux, mtools, systemd-boot-efi, dosfstools, wimtools
Section: net
Priority: optional
Homepage: https://github.com/netdeploy/netdeploy
Description: operating-system deployment server (DHCP/PXE, TFTP, HTTP boot)
 netdeploy answers DHCP or proxyDHCP for network-booting machines (BIOS and
 UEFI), serves their first stage over TFTP, decides which task sequence
 deployment each machine runs, hands iPXE a per-machine script over HTTP,
 serves SHA-256-hashed content to the boot environment and records what
 happened. netdeploy-media builds boot media (hybrid ISO and USB images).
 .
 The service runs as the system user netdeploy with CAP_NET_BIND_SERVICE and
 CAP_NET_RAW only. Edit /etc/netdeploy/netdeploy.toml, then
 systemctl enable --now netdeploy.
CONTROL

deb="$out/netdeploy_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
