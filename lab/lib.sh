# shellcheck shell=bash disable=SC2034
# lab/lib.sh - shared helpers for the netdeploy lab scripts.
#
# Usage (from another lab script):
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Provides:
#   log MSG... / warn MSG... / die MSG...   messages on stderr, prefixed with the script name
#   need_root                               die unless running as root
#   need_cmd CMD...                         die unless every CMD is in PATH
#   check_lab_name NAME                     die unless NAME is a usable namespace name
#   lab_state_dir NAME                      print the state directory of lab NAME
#   wait_for_line FILE REGEX TIMEOUT [PID]  wait (bounded) until FILE has a line matching
#                                           the extended REGEX; returns 1 on timeout, 2 if
#                                           PID (optional) exited first
#   wait_until TIMEOUT CMD...               run CMD every 0.2 s until it succeeds (bounded)
#   kill_pid PID [NAME]                     TERM, wait up to 5 s, then KILL one process
#   kill_pidfile FILE [NAME]                kill_pid on the PID stored in FILE, remove FILE
#   qemu_accel_args                         print the QEMU accelerator arguments (TCG unless
#                                           NETDEPLOY_LAB_KVM=1)
#
# Environment:
#   NETDEPLOY_LAB_STATE   base directory for lab state (default /run/netdeploy-lab)
#   NETDEPLOY_LAB_KVM     set to 1 to use KVM instead of TCG

# Guard against double sourcing.
if [[ -n "${NETDEPLOY_LAB_LIB_LOADED:-}" ]]; then
    return 0
fi
NETDEPLOY_LAB_LIB_LOADED=1

LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAB_REPO_DIR="$(cd "$LAB_DIR/.." && pwd)"
LAB_PROG="$(basename "${0:-lab}")"

# Fixed addresses and device names of the lab network (see net.sh).
LAB_BRIDGE=ndbr0
LAB_SERVER_IP=10.77.0.1
LAB_PEER_IP=10.77.0.2
LAB_PREFIX_LEN=24
LAB_SUBNET=10.77.0.0
LAB_IPV6_PREFIX=fd77::
LAB_SERVER_IP6=fd77::1
LAB_VETH_SERVER=ndveth0
LAB_VETH_PEER=ndveth1

log() {
    printf '%s: %s\n' "$LAB_PROG" "$*" >&2
}

warn() {
    printf '%s: warning: %s\n' "$LAB_PROG" "$*" >&2
}

die() {
    printf '%s: error: %s\n' "$LAB_PROG" "$*" >&2
    exit 1
}

need_root() {
    if [[ "$(id -u)" -ne 0 ]]; then
        die "must be run as root (network namespaces, bridges and taps need CAP_NET_ADMIN)"
    fi
}

need_cmd() {
    local c missing=()
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || missing+=("$c")
    done
    if ((${#missing[@]} > 0)); then
        die "missing command(s): ${missing[*]} (install the packages listed in lab/packages.txt)"
    fi
}

# A lab name becomes a network namespace name and a directory name.
check_lab_name() {
    local name="${1:-}"
    [[ -n "$name" ]] || die "missing lab NAME"
    if [[ ! "$name" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,30}$ ]] || [[ "$name" == *-peer ]]; then
        die "invalid lab name '$name' (letters, digits, '_', '.', '-'; at most 31 characters; must not end in -peer)"
    fi
}

lab_state_dir() {
    printf '%s/%s\n' "${NETDEPLOY_LAB_STATE:-/run/netdeploy-lab}" "$1"
}

ns_exists() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -qxF -- "$1"
}

# wait_for_line FILE REGEX TIMEOUT [PID]
# Polls FILE (which may not exist yet) for a line matching the extended
# regular expression REGEX. Returns 0 on a match, 1 after TIMEOUT seconds,
# 2 when the optional PID is no longer running (the file is checked one
# last time first).
wait_for_line() {
    local file="$1" regex="$2" timeout="$3" pid="${4:-}"
    local deadline=$((SECONDS + timeout))
    while :; do
        if [[ -f "$file" ]] && grep -aqE -- "$regex" "$file"; then
            return 0
        fi
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            if [[ -f "$file" ]] && grep -aqE -- "$regex" "$file"; then
                return 0
            fi
            return 2
        fi
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.2
    done
}

# wait_until TIMEOUT CMD... : retry CMD every 0.2 s for at most TIMEOUT seconds.
wait_until() {
    local timeout="$1"
    shift
    local deadline=$((SECONDS + timeout))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.2
    done
}

# kill_pid PID [NAME]: terminate one process by PID, bounded.
kill_pid() {
    local pid="$1" name="${2:-process}" i
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    warn "$name (pid $pid) ignored SIGTERM, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    warn "$name (pid $pid) is still running"
    return 1
}

# kill_pidfile FILE [NAME]: kill the PID recorded in FILE, then remove FILE.
kill_pidfile() {
    local file="$1" name="${2:-$(basename "$1" .pid)}" pid=""
    [[ -f "$file" ]] || return 0
    read -r pid <"$file" || true
    if [[ -n "$pid" ]]; then
        kill_pid "$pid" "$name" || true
    fi
    rm -f "$file"
}

# qemu_accel_args: TCG by default (the nested KVM module here hangs iPXE and
# OVMF); NETDEPLOY_LAB_KVM=1 opts into KVM.
qemu_accel_args() {
    if [[ "${NETDEPLOY_LAB_KVM:-0}" == 1 ]]; then
        [[ -w /dev/kvm ]] || die "NETDEPLOY_LAB_KVM=1 but /dev/kvm is not usable"
        printf '%s\n' -accel kvm -cpu host
    else
        printf '%s\n' -accel tcg
    fi
}
