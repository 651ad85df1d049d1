#!/usr/bin/env bash
# lab/demo.sh - the netdeploy lab demo, on a fresh Debian 12 machine, as root.
#
# Usage: lab/demo.sh [--mode dhcp|proxy] [--firmware bios|uefi|both]
#
# Installs what is needed, builds netdeploy and the Linux boot image (kernel, busybox initramfs
# and the netdeploy agent), makes an isolated lab network (a network namespace with a bridge;
# nothing touches the host's interfaces) and applies a site file: one device per demo machine,
# a package holding a 16 MiB disk image, a task sequence that writes it to /dev/vda and powers
# off, and a required deployment of it. netdeploy then serves the lab and QEMU machines
# (SeaBIOS+iPXE and OVMF UEFI) PXE-boot from it, run the deployment, report back, and the
# demo checks each machine's disk against the image's SHA-256 and prints `netdeploy status`.
# Everything is torn down at the end. Logs, the site file and the disks stay in target/demo/.
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
macs=()
for i in "${!fws[@]}"; do macs+=("52:54:00:de:00:0$((i + 1))"); done
echo "== the demo package: a 16 MiB disk image"
mkdir -p "$out/package"
printf 'netdeploy demo disk image, made %s\n' "$(date -u +%FT%TZ)" >"$out/package/disk.img"
head -c $((16 * 1024 * 1024 - 4096)) /dev/urandom >>"$out/package/disk.img"
truncate -s 16M "$out/package/disk.img"
image_sha=$(sha256sum "$out/package/disk.img" | cut -d' ' -f1)
echo "disk.img sha256 $image_sha"
{
    echo 'site_code = "DEM"'
    i=0
    for mac in "${macs[@]}"; do
        i=$((i + 1))
        printf '\n[[device]]\nname = "demo-pc%d"\nmacs = ["%s"]\n' "$i" "$mac"
    done
    cat <<SITE

[[collection]]
id = "demo-lab"
name = "Demo lab machines"
members = [$(for i in $(seq 1 ${#macs[@]}); do printf '"demo-pc%d",' "$i"; done)]

[[boot_image]]
id = "linux-x64"
arch = "x64"
kernel = "$PWD/target/lab-image/vmlinuz"
initrd = "$PWD/target/lab-image/initrd.img"
cmdline = "console=ttyS0 quiet"

[[package]]
id = "demo-disk"
from = "$out/package"

[[task_sequence]]
id = "image-disk"
name = "Write the demo disk image"
boot_image = "linux-x64"
steps = [
  { name = "write the disk", action = "apply_image", package = "demo-disk", file = "disk.img", target = "/dev/vda" },
  { name = "power off", action = "poweroff" },
]

[[deployment]]
id = "DEM00001"
task_sequence = "image-disk"
collection = "demo-lab"
purpose = "required"
available_to = "media_pxe"
accept_high_risk = true
SITE
} >"$out/site.toml"
echo "== netdeploy site apply (site file: $out/site.toml)"
target/release/netdeploy --data-dir "$out/data" site apply "$out/site.toml"

cat > "$out/netdeploy.toml" <<TOML
[server]
interfaces = ["ndbr0"]
data_dir = "$out/data"

[dhcp]
mode = "$mode"
$range

[tftp]
root = "/usr/lib/ipxe"
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
for i in "${!fws[@]}"; do
    fw="${fws[$i]}"
    n=$((i + 1))
    mac="${macs[$i]}"
    disk="$out/disk-$fw.img"
    truncate -s 0 "$disk"
    truncate -s 32M "$disk"
    echo "== $fw machine $mac PXE-boots from netdeploy ($mode mode) and runs deployment DEM00001"
    lab/net.sh tap "$lab" "tap$n"
    if lab/boot-vm.sh --ns "$lab" --firmware "$fw" --mac "$mac" --tap "tap$n" \
        --disk "$disk" --expect 'NETDEPLOY-AGENT-RESULT' \
        --serial-log "$out/serial-$fw.log" --timeout 300; then
        grep -a -E 'netdeploy-agent: (step|deployment)|NETDEPLOY-AGENT-RESULT' "$out/serial-$fw.log" \
            | tr -d '\r' | sed 's/^/  machine: /'
        grep -aq 'NETDEPLOY-AGENT-RESULT success' "$out/serial-$fw.log" || status=1
        sleep 2 # the agent syncs and powers off; QEMU ends
        disk_sha=$(head -c $((16 * 1024 * 1024)) "$disk" | sha256sum | cut -d' ' -f1)
        if [[ "$disk_sha" == "$image_sha" ]]; then
            echo "  disk: the first 16 MiB of $disk match disk.img (sha256 $disk_sha)"
        else
            echo "  disk: $disk does NOT match disk.img (sha256 $disk_sha)"
            status=1
        fi
    else
        status=1
    fi
    grep -a "$mac" "$out/netdeploy.log" \
        | grep -E "PXE boot reply|iPXE script served|agent status" \
        | sed 's/^/  netdeploy: /' || true
done
echo "== netdeploy status --machines"
target/release/netdeploy --data-dir "$out/data" status --machines
echo "== counters"
ip netns exec "$lab" curl -s http://10.77.0.1:8080/metrics | grep -v '^#' | grep -v ' 0$' || true
if ((status == 0)); then
    echo "== demo passed: every machine PXE-booted, ran DEM00001 and its disk holds the image"
else
    echo "== demo FAILED: see $out/ (serial-*.log, netdeploy.log)"
fi
exit "$status"
