#!/usr/bin/env bash
# lab/demo.sh - the netdeploy lab demo, on a fresh Debian 12 machine, as root.
#
# Usage: lab/demo.sh [--mode dhcp|proxy] [--firmware bios|uefi|both]
#
# Installs what is needed, builds netdeploy and the Linux test boot image, makes an isolated
# lab network (network namespaces with a bridge; nothing touches the host's interfaces), starts
# netdeploy in it and PXE-boots QEMU machines (SeaBIOS+iPXE and OVMF UEFI) from it. Each
# machine boots the test boot image, which prints its marker line and powers off. Everything
# is torn down at the end. Logs stay in target/demo/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mode=dhcp
firmware=both
while (($#)); do
    case "$1" in
        --mode) mode="$2"; shift 2 ;;
        --firmware) firmware="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) echo "demo.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$mode" in dhcp|proxy) ;; *) echo "demo.sh: --mode is dhcp or proxy" >&2; exit 2 ;; esac
case "$firmware" in bios) fws=(bios) ;; uefi) fws=(uefi) ;; both) fws=(bios uefi) ;;
    *) echo "demo.sh: --firmware is bios, uefi or both" >&2; exit 2 ;; esac

bash lab/install-deps.sh
echo "== building netdeploy"
cargo build --release --locked
echo "== building the Linux test boot image"
boot/linux-image/build.sh target/lab-image

out="$PWD/target/demo"
rm -rf "$out"
mkdir -p "$out/data"
lab="nddemo"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    [[ "$mode" == proxy ]] && lab/dhcp-peer.sh stop "$lab" >/dev/null 2>&1 || true
    lab/net.sh down "$lab" >/dev/null 2>&1 || true
}
trap cleanup EXIT
lab/net.sh down "$lab" >/dev/null 2>&1 || true
echo "== lab network $lab: bridge ndbr0 10.77.0.1/24 inside network namespace $lab"
lab/net.sh up "$lab"
if [[ "$mode" == proxy ]]; then
    echo "== site DHCP server (dnsmasq, addresses only) at 10.77.0.2"
    lab/dhcp-peer.sh start "$lab"
    range=""
else
    range='range = ["10.77.0.100", "10.77.0.199"]'
fi
cat > "$out/netdeploy.toml" <<TOML
[server]
interfaces = ["ndbr0"]
data_dir = "$out/data"

[dhcp]
mode = "$mode"
$range

[tftp]
root = "/usr/lib/ipxe"

[boot.image]
kernel = "$PWD/target/lab-image/vmlinuz"
initrd = "$PWD/target/lab-image/initrd.img"
cmdline = "console=ttyS0 quiet"
TOML
echo "== netdeploy serve (log: $out/netdeploy.log)"
ip netns exec "$lab" target/release/netdeploy serve --config "$out/netdeploy.toml" \
    >"$out/ready.json" 2>"$out/netdeploy.log" &
server_pid=$!
for _ in $(seq 1 100); do
    [[ -s "$out/ready.json" ]] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$out/netdeploy.log"; exit 1; }
    sleep 0.1
done
cat "$out/ready.json"

status=0
n=0
for fw in "${fws[@]}"; do
    n=$((n + 1))
    mac="52:54:00:de:00:0$n"
    echo "== $fw machine $mac PXE-boots from netdeploy ($mode mode)"
    lab/net.sh tap "$lab" "tap$n"
    if lab/boot-vm.sh --ns "$lab" --firmware "$fw" --mac "$mac" --tap "tap$n" \
        --serial-log "$out/serial-$fw.log" --timeout 240; then
        grep -a NETDEPLOY-BOOT-OK "$out/serial-$fw.log"
    else
        status=1
    fi
    grep -a "$mac" "$out/netdeploy.log" | grep -E "PXE boot reply|iPXE script served" | sed 's/^/  netdeploy: /' || true
done
echo "== counters"
ip netns exec "$lab" curl -s http://10.77.0.1:8080/metrics | grep -v '^#' | grep -v ' 0$' || true
exit "$status"
