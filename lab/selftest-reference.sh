#!/usr/bin/env bash
# lab/selftest-reference.sh - acceptance test of the lab scripts without
# netdeploy: builds the Linux test image, sets up a lab network, runs the
# reference boot server (lab/reference-dnsmasq.sh) and boots a BIOS and a UEFI
# machine through PXE -> iPXE -> HTTP until the initramfs prints its marker line.
#
# Usage:
#   lab/selftest-reference.sh [--mode full|proxy|all] [--image-dir DIR]
#                             [--log-dir DIR] [--timeout SECONDS]
#   lab/selftest-reference.sh --help
#
#   --mode full    reference dnsmasq is the only DHCP server (DHCP + PXE + TFTP)
#   --mode proxy   lab/dhcp-peer.sh hands out addresses, the reference dnsmasq
#                  runs as proxyDHCP (checks the peer and the proxyDHCP paths)
#   --mode all     both (default)
#   --image-dir    where boot/linux-image/build.sh keeps vmlinuz/initrd.img
#                  (default: $NETDEPLOY_LINUX_IMAGE_DIR or target/netdeploy-lab/linux-image)
#   --log-dir      serial logs and server logs (default target/netdeploy-lab/selftest)
#   --timeout      per-boot timeout (default 180)
#
# Checks per boot: the marker line carries the machine's MAC and the kernel
# command line from the reference boot.ipxe; in proxy mode the initramfs DHCP
# client must also get an address from the peer (10.77.0.100-199).
# Prints the boot time of each machine and a closing "N passed, N failed";
# exits non-zero on any failure. Always tears the lab network down.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

mode=all
image_dir="${NETDEPLOY_LINUX_IMAGE_DIR:-$LAB_REPO_DIR/target/netdeploy-lab/linux-image}"
log_dir="$LAB_REPO_DIR/target/netdeploy-lab/selftest"
timeout=180
while (($# > 0)); do
    case "$1" in
    -h | --help)
        usage
        exit 0
        ;;
    --mode | --image-dir | --log-dir | --timeout)
        [[ $# -ge 2 && -n "$2" ]] || die "option $1 needs a value (see --help)"
        case "$1" in
        --mode) mode="$2" ;;
        --image-dir) image_dir="$2" ;;
        --log-dir) log_dir="$2" ;;
        --timeout) timeout="$2" ;;
        esac
        shift
        ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
case "$mode" in
full) modes=(full) ;;
proxy) modes=(proxy) ;;
all) modes=(full proxy) ;;
*) die "--mode must be full, proxy or all, not '$mode'" ;;
esac
[[ "$timeout" =~ ^[0-9]+$ ]] || die "--timeout must be a number of seconds"

need_root
need_cmd ip dnsmasq python3 curl qemu-system-x86_64

name="ndst$$"
state="$(lab_state_dir "$name")"
mkdir -p "$log_dir"
log_dir="$(cd "$log_dir" && pwd)"

cleanup() {
    local rc=$?
    "$LAB_DIR/reference-dnsmasq.sh" stop "$name" >/dev/null 2>&1 || true
    "$LAB_DIR/dhcp-peer.sh" stop "$name" >/dev/null 2>&1 || true
    "$LAB_DIR/net.sh" down "$name" >/dev/null 2>&1 || true
    if [[ -d "$state" ]]; then
        cp "$state"/*.log "$log_dir/" 2>/dev/null || true
        rm -rf "$state"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "building the Linux test image in $image_dir"
"$LAB_REPO_DIR/boot/linux-image/build.sh" "$image_dir"

"$LAB_DIR/net.sh" up "$name"
"$LAB_DIR/net.sh" tap "$name" ndtap0
"$LAB_DIR/net.sh" tap "$name" ndtap1

passed=0 failed=0
results=()

# boot_one MODE FIRMWARE TAP MAC
boot_one() {
    local mode="$1" fw="$2" tap="$3" mac="$4"
    local serial="$log_dir/$mode-$fw.serial.log" expect out rc=0 elapsed problem=""
    local mac_re="${mac//:/\\:}"
    if [[ "$mode" == proxy ]]; then
        expect='NETDEPLOY-NET ip='
    else
        expect='NETDEPLOY-BOOT-OK '
    fi
    out="$("$LAB_DIR/boot-vm.sh" --ns "$name" --firmware "$fw" --mac "$mac" --tap "$tap" \
        --serial-log "$serial" --timeout "$timeout" --expect "$expect")" || rc=$?
    elapsed="$(sed -n 's/.*elapsed=\([0-9.]*\).*/\1/p' <<<"$out")"
    if ((rc != 0)); then
        problem="no '$expect' line ($out)"
    elif ! grep -aqE "^NETDEPLOY-BOOT-OK mac=$mac_re cmdline=.*netdeploy\.ref=1 netdeploy\.mac=$mac_re" "$serial"; then
        problem="marker line without mac=$mac or the reference command line: $(grep -a 'NETDEPLOY-BOOT-OK' "$serial" | head -n 1)"
    elif [[ "$mode" == proxy ]] && ! grep -aqE '^NETDEPLOY-NET ip=10\.77\.0\.1[0-9][0-9]' "$serial"; then
        problem="initramfs DHCP got no address from the peer: $(grep -a 'NETDEPLOY-NET' "$serial" | head -n 1)"
    fi
    if [[ -z "$problem" ]]; then
        passed=$((passed + 1))
        results+=("$(printf 'PASS  %-5s %-4s %6ss  (%s)' "$mode" "$fw" "$elapsed" "${expect% }")")
        log "PASS $mode $fw in ${elapsed}s"
    else
        failed=$((failed + 1))
        results+=("$(printf 'FAIL  %-5s %-4s %6ss  %s' "$mode" "$fw" "${elapsed:-?}" "$problem")")
        warn "FAIL $mode $fw: $problem (serial log $serial)"
    fi
}

for m in "${modes[@]}"; do
    if [[ "$m" == proxy ]]; then
        "$LAB_DIR/dhcp-peer.sh" start "$name"
    fi
    "$LAB_DIR/reference-dnsmasq.sh" start "$name" "$image_dir" --mode "$m"
    boot_one "$m" bios ndtap0 52:54:00:4e:44:01
    boot_one "$m" uefi ndtap1 52:54:00:4e:44:02
    "$LAB_DIR/reference-dnsmasq.sh" stop "$name"
    if [[ "$m" == proxy ]]; then
        "$LAB_DIR/dhcp-peer.sh" stop "$name"
    fi
    # Keep this mode's server logs apart from the next one's.
    for f in "$state"/*.log; do
        [[ -e "$f" ]] || continue
        mv "$f" "$log_dir/$m-$(basename "$f")"
    done
done

accel=TCG
[[ "${NETDEPLOY_LAB_KVM:-0}" == 1 ]] && accel=KVM
echo
echo "reference boot results ($accel; time from QEMU start to the expected line):"
printf '  %s\n' "${results[@]}"
echo "logs: $log_dir"
echo "$passed passed, $failed failed"
((failed == 0))
