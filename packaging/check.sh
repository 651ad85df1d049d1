#!/usr/bin/env bash
# packaging/check.sh - build the Debian package and check it: the unit passes
# `systemd-analyze verify` with no diagnostic at all, runs unprivileged with only the
# capabilities netdeploy needs, and the package has the files, maintainer scripts and control
# fields it should. Exits non-zero on the first problem; the last line says what passed.
#
# Usage: packaging/check.sh [--bin-dir DIR]
#   --bin-dir DIR  package binaries already built in DIR (default: a release build)
#
# Needs dpkg-deb and systemd-analyze (Debian packages dpkg and systemd, in lab/packages.txt).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fail() { echo "check.sh: $*" >&2; exit 1; }
for tool in dpkg-deb systemd-analyze; do
    command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install dpkg systemd)"
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
deb="$("$repo/packaging/build-deb.sh" --out "$work/out" "$@" | tail -n1)"
[[ -f "$deb" ]] || fail "build-deb.sh made no package"
echo "check.sh: built $(basename "$deb")"

# Control fields.
info="$(dpkg-deb --info "$deb")"
for field in "Package: netdeploy" "Architecture: $(dpkg --print-architecture)" "Depends: .*adduser"; do
    grep -q "^ $field" <<<"$info" || fail "control has no \"$field\""
done
for script in postinst prerm postrm conffiles; do
    grep -qE "^ +[0-9]+ bytes, +[0-9]+ lines +\*? +$script" <<<"$info" || fail "no $script in the control archive"
done

# Files.
contents="$(dpkg-deb --contents "$deb")"
for path in ./usr/bin/netdeploy ./usr/bin/netdeploy-media ./usr/lib/netdeploy/netdeploy-agent.exe \
    ./etc/netdeploy/netdeploy.toml \
    ./lib/systemd/system/netdeploy.service ./usr/share/doc/netdeploy/copyright \
    ./usr/share/doc/netdeploy/README.md; do
    grep -q " $path\$" <<<"$contents" || fail "the package has no $path"
done
grep -qE '^-rwxr-xr-x root/root .* \./usr/bin/netdeploy$' <<<"$contents" || fail "/usr/bin/netdeploy is not root-owned 0755"
grep -qE '^-rw-r----- root/root .* \./etc/netdeploy/netdeploy.toml$' <<<"$contents" || fail "the configuration is readable by others"

root="$work/root"
dpkg-deb --extract "$deb" "$root"
dpkg-deb --control "$deb" "$root/DEBIAN"
grep -qx /etc/netdeploy/netdeploy.toml "$root/DEBIAN/conffiles" || fail "the configuration is not a conffile"
for s in postinst prerm postrm; do
    sh -n "$root/DEBIAN/$s" || fail "$s is not valid sh"
done
grep -q 'adduser --system' "$root/DEBIAN/postinst" || fail "postinst does not create the system user"
"$root/usr/bin/netdeploy" --version >/dev/null || fail "the packaged netdeploy does not run"
"$root/usr/bin/netdeploy" config-example | cmp -s - "$root/etc/netdeploy/netdeploy.toml" \
    || fail "/etc/netdeploy/netdeploy.toml differs from netdeploy config-example"

# The unit, as installed: systemd-analyze verify against the package's files plus the host's
# units (for sysinit.target, network-online.target, ...). It exits 0 on unknown keys and bad
# values, so any diagnostic fails the check.
unit="$root/lib/systemd/system/netdeploy.service"
cp -an /lib/systemd/system/. "$root/lib/systemd/system/"
diag="$(systemd-analyze verify --root="$root" /lib/systemd/system/netdeploy.service 2>&1)" \
    || fail "systemd-analyze verify failed: $diag"
[[ -z "$diag" ]] || fail "systemd-analyze verify: $diag"
value() { sed -n "s/^$1=//p" "$unit"; }
[[ "$(value User)" == netdeploy ]] || fail "the unit does not run as user netdeploy"
caps="CAP_NET_BIND_SERVICE CAP_NET_RAW"
[[ "$(value AmbientCapabilities)" == "$caps" ]] || fail "AmbientCapabilities is not \"$caps\""
[[ "$(value CapabilityBoundingSet)" == "$caps" ]] || fail "CapabilityBoundingSet is not \"$caps\""
for setting in NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
    StateDirectory=netdeploy LimitNOFILE=65536; do
    grep -qx "$setting" "$unit" || fail "the unit lacks $setting"
done
grep -q '^RestrictAddressFamilies=' "$unit" || fail "the unit does not restrict address families"
exposure="$(systemd-analyze security --offline=yes --root="$root" netdeploy.service 2>/dev/null \
    | sed -n 's/.*Overall exposure level for netdeploy.service: \([0-9.]*\).*/\1/p')"
echo "check.sh: systemd-analyze security exposure ${exposure:-?} (0 safest, 10 unsafe)"
echo "check.sh: ok: $(basename "$deb") builds, its unit verifies and runs as netdeploy with $caps"
