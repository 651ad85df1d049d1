#!/usr/bin/env bash
# lab/winpe-check.sh - boot a real Windows PE against netdeploy in the lab, as root.
#
# Usage: lab/winpe-check.sh [options] WINPE [WIMBOOT]
#
#   WINPE                 your Windows PE, from the Windows ADK (CI has none, so this check is
#                         not in CI): the directory `copype amd64 DIR` made (media/ with
#                         bootmgr, Boot/BCD, Boot/boot.sdi, sources/boot.wim), or the ADK's
#                         "Windows Preinstallation Environment" directory (or its amd64/),
#                         whose amd64/en-us/winpe.wim is the boot.wim
#   WIMBOOT               iPXE's wimboot (https://ipxe.org/wimboot); default: WINPE/wimboot,
#                         else /usr/lib/ipxe/wimboot, else /usr/share/wimboot/wimboot
#   --firmware F          bios (SeaBIOS), uefi (OVMF) or both (default): one machine each,
#                         booted at the same time
#   --timeout SECONDS     how long to wait for each machine's status (default 1800: Windows
#                         PE under QEMU's TCG takes minutes)
#   --bin-dir DIR         netdeploy is DIR/netdeploy (default target/release, built when
#                         missing)
#   --windows-agent PATH  the Windows agent (default
#                         target/x86_64-pc-windows-gnu/release/netdeploy-agent.exe, built
#                         when missing)
#   --media               also build WinPE boot media with `netdeploy-media build --winpe`
#                         (WINPE must be copype output, with fwfiles/), after the PXE machines:
#                         boot the ISO from a CD under OVMF and, when fwfiles/etfsboot.com is
#                         there, under SeaBIOS; then the USB image from a USB stick under OVMF
#                         and SeaBIOS
#   --out DIR             logs, data directory and site file (default target/winpe-check)
#   -h, --help            this text
#
# What it does: makes the isolated lab network (lab/net.sh: a network namespace with a bridge;
# nothing touches the host's interfaces), applies a site with a `winpe` boot image made of
# WINPE's files and wimboot, a task sequence that runs inside Windows PE (set_variable,
# run_command `cmd /c echo`, write_file, a run_command that reads the file back, poweroff) and
# a required deployment of it to the lab machines; starts netdeploy (DHCP, TFTP with iPXE, HTTP)
# with the Windows agent, and PXE-boots one QEMU machine per firmware (TCG, 2 GiB, a random
# SMBIOS UUID each, lab/boot-vm.sh). netdeploy's iPXE script loads wimboot, which starts
# Windows PE with netdeploy-agent.exe, winpeshl.ini and netdeploy.ini injected; the agent runs
# the task sequence and reports to the server. The script waits (bounded) for each machine's
# state in `netdeploy status`, prints it with the agent's status messages as the server
# recorded them (the agent's result line), and tears everything down (processes by PID, the
# network namespaces). With --media, the media machines (their own devices, a NIC the firmware
# does not boot from) run the same deployment from the ISO and the USB image, with a medium key from
# `netdeploy media key`. Exit status 0 when every machine ended Compliant.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$LAB_REPO_DIR"

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

usage_error() {
    printf '%s: error: %s (see --help)\n' "$LAB_PROG" "$*" >&2
    exit 2
}

firmware=both timeout=1800 bin_dir="" agent="" out="$LAB_REPO_DIR/target/winpe-check" media_check=0
positional=()
while (($# > 0)); do
    case "$1" in
    -h | --help)
        usage
        exit 0
        ;;
    --firmware | --timeout | --bin-dir | --windows-agent | --out)
        [[ $# -ge 2 && -n "$2" ]] || usage_error "option $1 needs a value"
        case "$1" in
        --firmware) firmware="$2" ;;
        --timeout) timeout="$2" ;;
        --bin-dir) bin_dir="$2" ;;
        --windows-agent) agent="$2" ;;
        --out) out="$2" ;;
        esac
        shift 2
        ;;
    --media)
        media_check=1
        shift
        ;;
    -*) usage_error "unknown option '$1'" ;;
    *)
        positional+=("$1")
        shift
        ;;
    esac
done
((${#positional[@]} >= 1)) || usage_error "missing WINPE (the Windows ADK's Windows PE: copype output or the ADK's directory)"
((${#positional[@]} <= 2)) || usage_error "too many arguments: ${positional[*]:2}"
winpe="${positional[0]}"
wimboot="${positional[1]:-}"
case "$firmware" in
bios) fws=(bios) ;;
uefi) fws=(uefi) ;;
both) fws=(bios uefi) ;;
*) usage_error "--firmware is bios, uefi or both, not '$firmware'" ;;
esac
if [[ ! "$timeout" =~ ^[0-9]+$ ]] || ((timeout == 0)); then
    usage_error "--timeout must be a positive number of seconds"
fi

# The four Windows PE files wimboot needs, from copype output or from the ADK itself.
[[ -d "$winpe" ]] || die "WINPE $winpe is not a directory (give the output of the ADK's 'copype amd64 DIR', or the ADK's Windows Preinstallation Environment directory)"
winpe="$(realpath "$winpe")"
if [[ -f "$winpe/media/sources/boot.wim" ]]; then
    media="$winpe/media" boot_wim="$winpe/media/sources/boot.wim"
elif [[ -d "$winpe/amd64/Media" ]]; then
    media="$winpe/amd64/Media" boot_wim="$winpe/amd64/en-us/winpe.wim"
elif [[ -d "$winpe/Media" ]]; then
    media="$winpe/Media" boot_wim="$winpe/en-us/winpe.wim"
else
    die "no Windows PE in $winpe: looked for $winpe/media/sources/boot.wim (copype output), $winpe/amd64/Media and $winpe/Media (the ADK)"
fi
for f in "$media/bootmgr" "$media/Boot/BCD" "$media/Boot/boot.sdi" "$boot_wim"; do
    [[ -f "$f" ]] || die "no Windows PE in $winpe: $f is missing"
done
if [[ -z "$wimboot" ]]; then
    for w in "$winpe/wimboot" /usr/lib/ipxe/wimboot /usr/share/wimboot/wimboot; do
        if [[ -f "$w" ]]; then
            wimboot="$w"
            break
        fi
    done
    [[ -n "$wimboot" ]] || die "no wimboot: looked at $winpe/wimboot, /usr/lib/ipxe/wimboot and /usr/share/wimboot/wimboot (download it from https://ipxe.org/wimboot and give its path as WIMBOOT)"
fi
[[ -f "$wimboot" ]] || die "WIMBOOT $wimboot is not a file"
media_fws=()
if ((media_check)); then
    [[ -f "$winpe/media/sources/boot.wim" ]] ||
        die "--media needs the output of copype (media/ and fwfiles/), not $winpe"
    # FORMAT-FIRMWARE of each media machine, the ISO ones first.
    media_fws=(iso-uefi)
    if [[ -f "$winpe/fwfiles/etfsboot.com" ]]; then
        media_fws+=(iso-bios)
    else
        warn "no $winpe/fwfiles/etfsboot.com: the ISO boots UEFI only, so no SeaBIOS machine boots it"
    fi
    media_fws+=(usb-uefi usb-bios)
fi
wimboot="$(realpath "$wimboot")"

need_root
need_cmd ip dnsmasq qemu-system-x86_64 cargo
bin_dir="${bin_dir:-$LAB_REPO_DIR/target/release}"
if [[ ! -x "$bin_dir/netdeploy" || ! -x "$bin_dir/netdeploy-media" ]]; then
    log "building netdeploy and netdeploy-media into target/release"
    cargo build --release --locked -p netdeploy -p media-builder
    bin_dir="$LAB_REPO_DIR/target/release"
fi
if [[ -z "$agent" ]]; then
    agent="$LAB_REPO_DIR/target/x86_64-pc-windows-gnu/release/netdeploy-agent.exe"
    if [[ ! -f "$agent" ]]; then
        log "building the Windows agent"
        cargo build --release --locked --target x86_64-pc-windows-gnu -p netdeploy-agent
    fi
fi
[[ -f "$agent" ]] || die "--windows-agent $agent is not a file"
agent="$(realpath "$agent")"
netdeploy="$(realpath "$bin_dir/netdeploy")"

lab=ndwinpe
mkdir -p "$out"
out="$(realpath "$out")"
rm -rf "$out/data" "$out"/serial-*.log "$out"/boot-vm-*.log "$out"/*.iso "$out"/*.img
mkdir -p "$out/data"
server_pid=""
vm_pids=()
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local pid
    for pid in "${vm_pids[@]}"; do
        kill_pid "$pid" "boot-vm.sh" || true
    done
    if [[ -n "$server_pid" ]]; then
        kill_pid "$server_pid" netdeploy || true
    fi
    lab/net.sh down "$lab" >/dev/null 2>&1 || true
    log "lab $lab torn down"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One machine per firmware booted through PXE, then one per firmware from the media.
names=() macs=()
for i in "${!fws[@]}"; do
    names+=("winpe-${fws[$i]}")
    macs+=("52:54:00:3e:00:0$((i + 1))")
done
for i in "${!media_fws[@]}"; do
    names+=("winpe-${media_fws[$i]}")
    macs+=("52:54:00:3e:01:0$((i + 1))")
done
{
    echo 'site_code = "WPE"'
    for i in "${!names[@]}"; do
        printf '\n[[device]]\nname = "%s"\nmacs = ["%s"]\n' "${names[$i]}" "${macs[$i]}"
    done
    cat <<SITE

[[collection]]
id = "winpe-lab"
name = "Windows PE lab machines"
members = [$(for n in "${names[@]}"; do printf '"%s",' "$n"; done)]

[[boot_image]]
id = "winpe-x64"
arch = "x64"
kind = "winpe"
wimboot = "$wimboot"
bootmgr = "$media/bootmgr"
bcd = "$media/Boot/BCD"
boot_sdi = "$media/Boot/boot.sdi"
boot_wim = "$boot_wim"

[[task_sequence]]
id = "winpe-check"
name = "Windows PE check"
boot_image = "winpe-x64"
steps = [
  { name = "computer name", action = "set_variable", variable = "OSDComputerName", value = "WINPE-CHECK" },
  { name = "say", action = "run_command", command = 'cmd /c echo netdeploy runs in Windows PE as %OSDComputerName%' },
  { name = "note", action = "write_file", value = "written by netdeploy", target = 'X:\\Windows\\Temp\\netdeploy-check.txt' },
  { name = "read it back", action = "run_command", command = 'findstr /c:"written by netdeploy" X:\\Windows\\Temp\\netdeploy-check.txt' },
  { name = "off", action = "poweroff" },
]

[[deployment]]
id = "WPE00001"
task_sequence = "winpe-check"
collection = "winpe-lab"
purpose = "required"
available_to = "media_pxe"
SITE
} >"$out/site.toml"
log "site file $out/site.toml"
"$netdeploy" --data-dir "$out/data" site apply "$out/site.toml"

cat >"$out/netdeploy.toml" <<TOML
[server]
interfaces = ["$LAB_BRIDGE"]
data_dir = "$out/data"

[dhcp]
mode = "dhcp"
range = ["10.77.0.100", "10.77.0.199"]

[tftp]
root = "/usr/lib/ipxe"

[boot]
windows_agent = "$agent"
TOML

lab/net.sh down "$lab" >/dev/null 2>&1 || true
lab/net.sh up "$lab"
log "netdeploy serve (log: $out/netdeploy.log)"
ip netns exec "$lab" "$netdeploy" serve --config "$out/netdeploy.toml" \
    >"$out/ready.json" 2>"$out/netdeploy.log" &
server_pid=$!
if ! wait_for_line "$out/ready.json" '"ready"' 30 "$server_pid"; then
    tail -n 20 "$out/netdeploy.log" >&2 || true
    die "netdeploy did not start (see $out/netdeploy.log)"
fi

# boot INDEX FIRMWARE [boot-vm.sh options]: start machine INDEX in the background.
boot() {
    local i="$1" fw="$2" name="${names[$1]}" mac="${macs[$1]}" tap="ndwpe$1"
    shift 2
    lab/net.sh tap "$lab" "$tap"
    log "$name: $fw machine $mac boots Windows PE (serial log: $out/serial-$name.log)"
    # Windows PE writes nothing to the serial port; the state comes from the server. The
    # machine powers off at the end of the task sequence, which ends QEMU.
    lab/boot-vm.sh --ns "$lab" --firmware "$fw" --mac "$mac" --tap "$tap" \
        --memory 2048 --serial-log "$out/serial-$name.log" --timeout "$timeout" \
        --expect 'NETDEPLOY-WINPE-NEVER-PRINTED' "$@" >"$out/boot-vm-$name.log" 2>&1 &
    vm_pids[i]=$!
}

# The state of machine $1 in `netdeploy status --machines`: its line, or nothing.
machine_line() {
    "$netdeploy" --data-dir "$out/data" status --machines 2>/dev/null | grep -E "^ +$1 " || true
}

status=0
# await INDEX: wait (bounded) for machine INDEX to end, print its state and the server's lines.
await() {
    local i="$1" name="${names[$1]}" mac="${macs[$1]}" line=""
    local deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        line="$(machine_line "$name")"
        if [[ "$line" =~ (Compliant|Failed|Non-compliant) ]]; then
            break
        fi
        if ! kill -0 "${vm_pids[$i]}" 2>/dev/null; then
            # The machine powered off (the last step), or QEMU ended early: read once more.
            sleep 2
            line="$(machine_line "$name")"
            echo "  machine: QEMU ended: $(tail -n 1 "$out/boot-vm-$name.log")"
            break
        fi
        sleep 5
    done
    echo "== $name ($mac): ${line:-no status within ${timeout}s}"
    grep -a "$mac" "$out/netdeploy.log" |
        grep -E "reply=Ack|iPXE script|agent status" | sed 's/^/  netdeploy: /' || true
    [[ "$line" =~ Compliant ]] && [[ ! "$line" =~ Non-compliant ]] || status=1
}

for i in "${!fws[@]}"; do
    boot "$i" "${fws[$i]}"
done
for i in "${!fws[@]}"; do
    await "$i"
done

if ((${#media_fws[@]} > 0)); then
    key="$("$netdeploy" --data-dir "$out/data" media key 2>/dev/null)"
    for format in iso usb; do
        image="$out/winpe.$format"
        [[ "$format" == usb ]] && image="$out/winpe.img"
        log "building $image with netdeploy-media build --winpe --format $format"
        NETDEPLOY_MEDIUM_KEY="$key" "$bin_dir/netdeploy-media" build --winpe "$winpe" \
            --windows-agent "$agent" --server-url "http://$LAB_SERVER_IP:8080" \
            --preferred-deployment WPE00001 --format "$format" --output "$image"
        started=()
        for j in "${!media_fws[@]}"; do
            [[ "${media_fws[$j]}" == "$format"-* ]] || continue
            i=$((${#fws[@]} + j))
            # A CD is read-only; each USB stick is a copy of its own, as QEMU locks a disk
            # image it writes.
            attach=(--cdrom "$image")
            if [[ "$format" == usb ]]; then
                cp "$image" "$out/${names[$i]}.img"
                attach=(--usb "$out/${names[$i]}.img")
            fi
            boot "$i" "${media_fws[$j]#*-}" "${attach[@]}" --no-pxe
            started+=("$i")
        done
        for i in "${started[@]}"; do
            await "$i"
            rm -f "$out/${names[$i]}.img"
        done
        rm -f "$image"
    done
fi
echo "== netdeploy status --machines"
"$netdeploy" --data-dir "$out/data" status --machines || true
if ((status == 0)); then
    echo "== Windows PE check passed: every machine booted Windows PE, ran WPE00001 and is Compliant"
else
    echo "== Windows PE check FAILED: see $out/ (netdeploy.log, boot-vm-*.log, serial-*.log)"
fi
exit "$status"
