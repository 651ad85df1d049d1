#!/usr/bin/env bash
# lab/boot-vm.sh - boot one QEMU test machine on the lab network and wait for
# a line on its serial console.
#
# Usage:
#   lab/boot-vm.sh --ns NAME --firmware bios|uefi|uefi-secureboot --mac MAC --tap TAP
#                  --serial-log FILE [--timeout SECONDS] [--expect REGEX]
#                  [--disk FILE] [--cdrom ISO] [--usb IMG] [--no-net]
#                  [--smbios-uuid UUID] [--no-pxe] [--http-boot] [--pxe-ipv6]
#                  [--serial-input PATH] [--memory MIB]
#   lab/boot-vm.sh --help
#
#   --ns NAME            network namespace to run QEMU in (from lab/net.sh up NAME)
#   --firmware bios      SeaBIOS, NIC with QEMU's default iPXE option ROM
#   --firmware uefi      OVMF (code read-only, private copy of the vars), NIC
#                        option ROM disabled so OVMF's own PXE stack boots
#   --firmware uefi-secureboot
#                        the same with Secure Boot enforced: a q35 machine with
#                        SMM, OVMF_CODE_4M.secboot.fd on a secure pflash and a
#                        private copy of OVMF_VARS_4M.ms.fd (Microsoft's keys
#                        enrolled, Secure Boot on), so only binaries signed for
#                        the UEFI CA (shim, then what shim trusts) start
#   --mac MAC            MAC address of the virtio-net NIC
#   --tap TAP            tap device in NAME (from lab/net.sh tap NAME TAP)
#   --serial-log FILE    serial console (ttyS0) output, truncated at start
#   --timeout SECONDS    give up after SECONDS (default 180)
#   --expect REGEX       extended regex to wait for (default NETDEPLOY-BOOT-OK)
#   --disk FILE          virtio-blk disk (raw, or qcow2 by extension), boot after net
#   --cdrom ISO          IDE CD-ROM, boot after net
#   --usb IMG            USB mass storage stick on an xHCI controller, boot after net
#   --no-net             no NIC (then --ns, --mac and --tap are not needed)
#   --no-pxe             a NIC that the firmware does not boot from (no option ROM,
#                        no boot index): boot media with a network behind them
#   --smbios-uuid UUID   SMBIOS system UUID (-smbios type=1,uuid=UUID); without
#                        it a random one is generated and logged, since real
#                        machines always send one (DHCP option 97)
#   --http-boot          UEFI only: OVMF's PXE is turned off, so the machine
#                        network-boots with UEFI HTTP boot (DHCP vendor class
#                        HTTPClient, option 93 = 16) and no TFTP
#   --pxe-ipv6           UEFI only: OVMF's PXE over IPv4 is turned off, so the
#                        machine PXE-boots over IPv6 (DHCPv6, boot file URL in
#                        option 59, TFTP over IPv6)
#   --serial-input PATH  a FIFO made at PATH whose bytes are typed into the
#                        serial console (a media password, a menu choice):
#                        cat >PATH, or echo LAB00003 >PATH. Output still goes
#                        to --serial-log, byte for byte. (Not a socket: QEMU
#                        7.2 logs a character twice when a socket reader falls
#                        behind, and nothing would be logged before a reader
#                        connects.)
#   --memory MIB         guest memory (default 512; Windows PE, which wimboot loads
#                        into memory whole, wants 2048)
#
# Boot order: network, CD-ROM, USB, disk. Memory 512 MiB unless --memory, no display,
# -no-reboot (a guest reboot or power-off ends QEMU).
# Exit status: 0 when the serial log matched REGEX; 1 on timeout or when QEMU
# exited first (the last 30 lines of the serial log are shown); 2 on bad usage.
# On stdout: "ok elapsed=SECONDS" or "fail elapsed=SECONDS reason=...".
# QEMU is always killed (by PID) when this script exits.
#
# Environment:
#   NETDEPLOY_LAB_KVM=1     use KVM instead of TCG
#   NETDEPLOY_OVMF_CODE     OVMF code image (default /usr/share/OVMF/OVMF_CODE_4M.fd)
#   NETDEPLOY_OVMF_VARS     OVMF vars template (default /usr/share/OVMF/OVMF_VARS_4M.fd)
#   NETDEPLOY_OVMF_SECBOOT_CODE  the same for uefi-secureboot
#                           (default /usr/share/OVMF/OVMF_CODE_4M.secboot.fd)
#   NETDEPLOY_OVMF_SECBOOT_VARS  (default /usr/share/OVMF/OVMF_VARS_4M.ms.fd)
#   NETDEPLOY_QEMU          QEMU binary (default qemu-system-x86_64)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

usage_error() {
    printf '%s: error: %s (see --help)\n' "$LAB_PROG" "$*" >&2
    exit 2
}

ns="" firmware="" mac="" tap="" serial_log="" timeout=180 expect="NETDEPLOY-BOOT-OK"
memory=512 disk="" cdrom="" usb="" no_net=0 no_pxe=0 smbios_uuid="" serial_input="" http_boot=0 pxe_ipv6=0

need_arg() {
    [[ $# -ge 2 && -n "$2" ]] || usage_error "option $1 needs a value"
}

while (($# > 0)); do
    case "$1" in
    -h | --help)
        usage
        exit 0
        ;;
    --ns) need_arg "$@"; ns="$2"; shift ;;
    --firmware) need_arg "$@"; firmware="$2"; shift ;;
    --mac) need_arg "$@"; mac="$2"; shift ;;
    --tap) need_arg "$@"; tap="$2"; shift ;;
    --serial-log) need_arg "$@"; serial_log="$2"; shift ;;
    --timeout) need_arg "$@"; timeout="$2"; shift ;;
    --expect) need_arg "$@"; expect="$2"; shift ;;
    --disk) need_arg "$@"; disk="$2"; shift ;;
    --cdrom) need_arg "$@"; cdrom="$2"; shift ;;
    --usb) need_arg "$@"; usb="$2"; shift ;;
    --smbios-uuid) need_arg "$@"; smbios_uuid="$2"; shift ;;
    --serial-input) need_arg "$@"; serial_input="$2"; shift ;;
    --memory) need_arg "$@"; memory="$2"; shift ;;
    --no-net) no_net=1 ;;
    --no-pxe) no_pxe=1 ;;
    --http-boot) http_boot=1 ;;
    --pxe-ipv6) pxe_ipv6=1 ;;
    *) usage_error "unknown argument '$1'" ;;
    esac
    shift
done

case "$firmware" in
bios | uefi | uefi-secureboot) ;;
"") usage_error "missing --firmware bios|uefi|uefi-secureboot" ;;
*) usage_error "--firmware must be bios, uefi or uefi-secureboot, not '$firmware'" ;;
esac
((http_boot == 0)) || [[ "$firmware" == uefi ]] || usage_error "--http-boot needs --firmware uefi"
((pxe_ipv6 == 0)) || [[ "$firmware" == uefi ]] || usage_error "--pxe-ipv6 needs --firmware uefi"

[[ -n "$serial_log" ]] || usage_error "missing --serial-log FILE"
if [[ ! "$timeout" =~ ^[0-9]+$ ]] || ((timeout == 0)); then
    usage_error "--timeout must be a positive number of seconds"
fi
if ((no_net == 0)); then
    [[ -n "$ns" ]] || usage_error "missing --ns NAME (or --no-net)"
    [[ -n "$tap" ]] || usage_error "missing --tap TAP (or --no-net)"
    [[ -n "$mac" ]] || usage_error "missing --mac MAC (or --no-net)"
    [[ "$mac" =~ ^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$ ]] || usage_error "invalid --mac '$mac' (want xx:xx:xx:xx:xx:xx)"
    (((16#${mac:0:2} & 1) == 0)) || usage_error "--mac '$mac' is a multicast address"
fi
if [[ ! "$memory" =~ ^[0-9]+$ ]] || ((memory < 64)); then
    usage_error "--memory must be a number of MiB, at least 64"
fi
if [[ -n "$smbios_uuid" && ! "$smbios_uuid" =~ ^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$ ]]; then
    usage_error "invalid --smbios-uuid '$smbios_uuid'"
fi
for f in "$disk" "$cdrom" "$usb"; do
    [[ -z "$f" || -f "$f" ]] || die "no such file: $f"
done

QEMU="${NETDEPLOY_QEMU:-qemu-system-x86_64}"
need_cmd "$QEMU"
if ((no_net == 0)); then
    need_root
    need_cmd ip
    ns_exists "$ns" || die "namespace $ns does not exist (run 'lab/net.sh up $ns')"
    ip -n "$ns" link show dev "$tap" >/dev/null 2>&1 ||
        die "tap $tap does not exist in namespace $ns (run 'lab/net.sh tap $ns $tap')"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/netdeploy-vm.XXXXXX")"
qemu_pid=""
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    if [[ -n "$qemu_pid" ]]; then
        kill_pid "$qemu_pid" qemu || true
    fi
    rm -rf "$work"
    [[ -z "$serial_input" ]] || rm -f "$serial_input"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$(dirname "$serial_log")"
: >"$serial_log"

mapfile -t accel < <(qemu_accel_args)
machine=pc
# Secure Boot: OVMF keeps its variables (the keys, the Secure Boot switch) out of the
# guest's reach only on a q35 machine with SMM and a secure flash.
[[ "$firmware" == uefi-secureboot ]] && machine=q35,smm=on
args=(
    -name "netdeploy-lab-$firmware"
    -machine "$machine" "${accel[@]}"
    -m "$memory" -smp 1
    -nodefaults -no-user-config
    -display none -vga none
    -monitor none
    -no-reboot
    # SeaBIOS: after "No bootable device" wait 5 s, then reboot, which
    # -no-reboot turns into a QEMU exit (a quick failure instead of a timeout).
    -boot reboot-timeout=5000
)

if [[ -n "$serial_input" ]]; then
    # QEMU's pipe backend reads PATH.in and writes PATH.out: here a FIFO to type
    # into and the serial log itself, a plain file that never refuses a byte.
    rm -f "$serial_input"
    mkfifo -m 600 "$serial_input"
    ln -s "$(realpath "$serial_input")" "$work/console.in"
    ln -s "$(realpath "$serial_log")" "$work/console.out"
    args+=(
        -chardev "pipe,id=ser0,path=$work/console"
        -serial chardev:ser0
    )
else
    args+=(-serial "file:$serial_log")
fi

if [[ "$firmware" == uefi-secureboot ]]; then
    code="${NETDEPLOY_OVMF_SECBOOT_CODE:-/usr/share/OVMF/OVMF_CODE_4M.secboot.fd}"
    vars="${NETDEPLOY_OVMF_SECBOOT_VARS:-/usr/share/OVMF/OVMF_VARS_4M.ms.fd}"
    [[ -f "$code" ]] || die "OVMF Secure Boot code image $code not found (install ovmf or set NETDEPLOY_OVMF_SECBOOT_CODE)"
    [[ -f "$vars" ]] || die "OVMF vars template with enrolled keys $vars not found (set NETDEPLOY_OVMF_SECBOOT_VARS)"
    cp "$vars" "$work/OVMF_VARS.fd"
    args+=(
        -global driver=cfi.pflash01,property=secure,value=on
        -drive "if=pflash,format=raw,unit=0,readonly=on,file=$code"
        -drive "if=pflash,format=raw,unit=1,file=$work/OVMF_VARS.fd"
    )
elif [[ "$firmware" == uefi ]]; then
    code="${NETDEPLOY_OVMF_CODE:-}"
    vars="${NETDEPLOY_OVMF_VARS:-}"
    if [[ -z "$code" ]]; then
        for pair in OVMF_CODE_4M.fd:OVMF_VARS_4M.fd OVMF_CODE.fd:OVMF_VARS.fd; do
            if [[ -f "/usr/share/OVMF/${pair%%:*}" && -f "/usr/share/OVMF/${pair##*:}" ]]; then
                code="/usr/share/OVMF/${pair%%:*}"
                vars="${vars:-/usr/share/OVMF/${pair##*:}}"
                break
            fi
        done
    fi
    [[ -n "$code" && -f "$code" ]] || die "OVMF code image not found (install ovmf or set NETDEPLOY_OVMF_CODE)"
    [[ -n "$vars" && -f "$vars" ]] || die "OVMF vars template not found (set NETDEPLOY_OVMF_VARS)"
    cp "$vars" "$work/OVMF_VARS.fd"
    args+=(
        -drive "if=pflash,format=raw,unit=0,readonly=on,file=$code"
        -drive "if=pflash,format=raw,unit=1,file=$work/OVMF_VARS.fd"
    )
    if ((pxe_ipv6 == 1)); then
        # OVMF's knob: no PXE over IPv4, so the machine network-boots over IPv6 first.
        args+=(-fw_cfg name=opt/org.tianocore/IPv4PXESupport,string=n)
    fi
    if ((http_boot == 1)); then
        # OVMF's knobs: no PXE over IPv4 or IPv6, which leaves its HTTP boot.
        args+=(
            -fw_cfg name=opt/org.tianocore/IPv4PXESupport,string=n
            -fw_cfg name=opt/org.tianocore/IPv6PXESupport,string=n
        )
    fi
else
    # SeaBIOS: mirror the (absent) VGA text screen to ttyS0, so that the
    # BIOS and iPXE messages land in the serial log too.
    printf '\xf8\x03' >"$work/sercon-port"
    args+=(-fw_cfg "name=etc/sercon-port,file=$work/sercon-port")
fi

bootindex=1
if ((no_net == 0)); then
    if ((no_pxe == 1)); then
        nic="virtio-net-pci,netdev=net0,mac=$mac,romfile="
    else
        nic="virtio-net-pci,netdev=net0,mac=$mac,bootindex=$bootindex"
        # UEFI: no iPXE option ROM, OVMF's VirtioNetDxe + PXE do the first stage.
        [[ "$firmware" == uefi* ]] && nic+=",romfile="
        bootindex=$((bootindex + 1))
    fi
    args+=(
        -netdev "tap,id=net0,ifname=$tap,script=no,downscript=no"
        -device "$nic"
    )
fi
if [[ -n "$cdrom" ]]; then
    args+=(
        -drive "if=none,id=cd0,media=cdrom,readonly=on,format=raw,file=$cdrom"
        -device "ide-cd,drive=cd0,bootindex=$bootindex"
    )
    bootindex=$((bootindex + 1))
fi
if [[ -n "$usb" ]]; then
    # shellcheck disable=SC2054  # commas are QEMU syntax
    args+=(
        -device qemu-xhci,id=xhci
        -drive "if=none,id=usb0,format=raw,file=$usb"
        -device "usb-storage,bus=xhci.0,drive=usb0,removable=on,bootindex=$bootindex"
    )
    bootindex=$((bootindex + 1))
fi
if [[ -n "$disk" ]]; then
    fmt=raw
    [[ "$disk" == *.qcow2 ]] && fmt=qcow2
    args+=(
        -drive "if=none,id=disk0,format=$fmt,file=$disk"
        -device "virtio-blk-pci,drive=disk0,bootindex=$bootindex"
    )
fi
if [[ -z "$smbios_uuid" ]]; then
    # A random version 4 UUID is never all zeros: QEMU's default is, and that is
    # the one case that real hardware never shows.
    smbios_uuid="$(cat /proc/sys/kernel/random/uuid)"
    log "no --smbios-uuid given: using random SMBIOS UUID $smbios_uuid"
fi
args+=(-smbios "type=1,uuid=$smbios_uuid")

runner=()
((no_net == 1)) || runner=(ip netns exec "$ns")

log "booting $firmware machine${mac:+ mac=$mac} uuid=$smbios_uuid${ns:+ in namespace $ns}, waiting up to ${timeout}s for /$expect/ in $serial_log"
start_ns="$(date +%s%N)"
# "ip netns exec" execs QEMU, so $! is QEMU's PID.
"${runner[@]}" "$QEMU" "${args[@]}" </dev/null >"$work/qemu.out" 2>&1 &
qemu_pid=$!

rc=0
wait_for_line "$serial_log" "$expect" "$timeout" "$qemu_pid" || rc=$?
elapsed="$(awk -v a="$start_ns" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')"

show_failure() {
    warn "$1"
    {
        echo "--- last 30 lines of $serial_log ---"
        # Drop terminal escape sequences and carriage returns for readability.
        sed -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1b[()][A-Za-z0-9]//g' -e 's/\r/\n/g' "$serial_log" |
            grep -av '^[[:space:]]*$' | tail -n 30 || true
        if [[ -s "$work/qemu.out" ]]; then
            echo "--- QEMU output ---"
            tail -n 20 "$work/qemu.out"
        fi
        echo "---"
    } >&2
}

case "$rc" in
0)
    log "matched /$expect/ after ${elapsed}s"
    echo "ok elapsed=$elapsed"
    exit 0
    ;;
1)
    show_failure "timeout: /$expect/ not seen within ${timeout}s"
    echo "fail elapsed=$elapsed reason=timeout"
    exit 1
    ;;
*)
    qemu_rc=0
    wait "$qemu_pid" || qemu_rc=$?
    qemu_pid=""
    show_failure "QEMU exited (status $qemu_rc) after ${elapsed}s before /$expect/ appeared"
    echo "fail elapsed=$elapsed reason=qemu-exited status=$qemu_rc"
    exit 1
    ;;
esac
