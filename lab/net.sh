#!/usr/bin/env bash
# lab/net.sh - isolated lab network for netdeploy, inside network namespaces.
#
# Usage:
#   lab/net.sh up NAME          create the lab network NAME
#   lab/net.sh tap NAME TAP     create tap device TAP in NAME, attached to the bridge
#   lab/net.sh down NAME        remove everything (idempotent)
#   lab/net.sh status NAME      show namespaces, addresses and recorded processes
#   lab/net.sh --help
#
# Layout after "up NAME":
#   namespace NAME       ("server"): lo up, bridge ndbr0 with 10.77.0.1/24 and
#                        fd77::1/64, veth end ndveth0 enslaved to ndbr0, and an
#                        IPv6 router advertisement sender (dnsmasq, RA only: no
#                        DNS, no DHCPv4, no DHCPv6) on ndbr0, so that iPXE does
#                        not wait ~13 s for IPv6 autoconfiguration.
#   namespace NAME-peer  lo up, veth end ndveth1 with 10.77.0.2/24 (for a separate
#                        DHCP server, see dhcp-peer.sh).
# QEMU and servers run inside NAME with "ip netns exec NAME ...".
# Nothing is attached to the host's interfaces and no host route is added.
# State (PID files, logs): /run/netdeploy-lab/NAME/ (NETDEPLOY_LAB_STATE overrides
# /run/netdeploy-lab).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

ra_start() {
    local name="$1" state="$2"
    local pidfile="$state/ra.pid"
    if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        return 0
    fi
    rm -f "$pidfile"
    # RA only: --port=0 disables DNS; no IPv4 dhcp-range, so DHCPv4 stays off
    # (port 67 remains free for netdeploy); "ra-only" means no DHCPv6 either.
    ip netns exec "$name" dnsmasq \
        --conf-file=/dev/null --no-resolv --no-hosts --port=0 \
        --interface="$LAB_BRIDGE" --bind-interfaces \
        --enable-ra --dhcp-range="$LAB_IPV6_PREFIX,ra-only,64,1h" \
        --ra-param="$LAB_BRIDGE,10,0" \
        --pid-file="$pidfile" --log-facility="$state/ra.log" \
        --user=root --group=root ||
        die "cannot start the router advertisement sender (see $state/ra.log)"
    wait_until 5 test -s "$pidfile" || die "router advertisement sender wrote no PID file"
}

cmd_up() {
    local name="$1"
    check_lab_name "$name"
    need_root
    need_cmd ip dnsmasq
    local peer="$name-peer" state
    state="$(lab_state_dir "$name")"
    mkdir -p "$state"

    if ns_exists "$name"; then
        die "namespace $name already exists (run 'lab/net.sh down $name' first)"
    fi
    if ns_exists "$peer"; then
        die "namespace $peer already exists (run 'lab/net.sh down $name' first)"
    fi

    # Undo a half-finished setup on any failure below.
    UP_NAME="$name"
    trap up_failed EXIT

    ip netns add "$name"
    ip netns add "$peer"
    printf '%s\n' "$name" "$peer" >"$state/namespaces"

    local ns
    for ns in "$name" "$peer"; do
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 >/dev/null
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.accept_dad=0 >/dev/null
        ip -n "$ns" link set lo up
    done

    ip -n "$name" link add "$LAB_BRIDGE" type bridge stp_state 0 forward_delay 0 mcast_snooping 0
    ip -n "$name" addr add "$LAB_SERVER_IP/$LAB_PREFIX_LEN" dev "$LAB_BRIDGE"
    ip -n "$name" addr add "$LAB_SERVER_IP6/64" dev "$LAB_BRIDGE" nodad
    ip -n "$name" link set "$LAB_BRIDGE" up

    ip -n "$name" link add "$LAB_VETH_SERVER" type veth peer name "$LAB_VETH_PEER" netns "$peer"
    ip -n "$name" link set "$LAB_VETH_SERVER" master "$LAB_BRIDGE" up
    ip -n "$peer" addr add "$LAB_PEER_IP/$LAB_PREFIX_LEN" dev "$LAB_VETH_PEER"
    ip -n "$peer" link set "$LAB_VETH_PEER" up

    # The bridge has carrier once the veth is up; wait for its link-local
    # address, which the RA sender needs as source.
    wait_until 10 ip_has_ll "$name" ||
        die "bridge $LAB_BRIDGE got no IPv6 link-local address"
    ra_start "$name" "$state"

    trap - EXIT
    log "lab network $name is up: $name ($LAB_BRIDGE $LAB_SERVER_IP/$LAB_PREFIX_LEN), $peer ($LAB_VETH_PEER $LAB_PEER_IP/$LAB_PREFIX_LEN); state in $state"
}

up_failed() {
    local rc=$?
    warn "setup of $UP_NAME failed, cleaning up"
    cmd_down "$UP_NAME" >/dev/null 2>&1 || true
    exit $((rc == 0 ? 1 : rc))
}

ip_has_ll() {
    ip -n "$1" -6 addr show dev "$LAB_BRIDGE" scope link 2>/dev/null | grep -q 'inet6 fe80'
}

cmd_tap() {
    local name="$1" tap="$2"
    check_lab_name "$name"
    need_root
    need_cmd ip
    [[ "$tap" =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || die "invalid tap name '$tap' (1-15 characters)"
    ns_exists "$name" || die "namespace $name does not exist (run 'lab/net.sh up $name' first)"
    if ip -n "$name" link show dev "$tap" >/dev/null 2>&1; then
        die "device $tap already exists in namespace $name"
    fi
    # Created from inside the namespace, so the tap never exists on the host.
    ip netns exec "$name" ip tuntap add dev "$tap" mode tap
    ip -n "$name" link set "$tap" master "$LAB_BRIDGE" up
    local state
    state="$(lab_state_dir "$name")"
    mkdir -p "$state"
    printf '%s\n' "$tap" >>"$state/taps"
    log "tap $tap created in namespace $name on $LAB_BRIDGE"
}

cmd_down() {
    local name="$1"
    check_lab_name "$name"
    need_root
    local state peer="$name-peer" f
    state="$(lab_state_dir "$name")"
    # Every process recorded by PID in the state dir (RA sender, DHCP peer,
    # reference servers, ...).
    if [[ -d "$state" ]]; then
        for f in "$state"/*.pid; do
            [[ -e "$f" ]] || continue
            kill_pidfile "$f"
        done
    fi
    local ns pid
    for ns in "$name" "$peer"; do
        ns_exists "$ns" || continue
        # Anything still running inside the lab namespaces (a QEMU, a server
        # started by hand) would keep the namespace alive: stop it by PID.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            warn "process $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-60)) still runs in namespace $ns, stopping it"
            kill_pid "$pid" "pid $pid in $ns" || true
        done
        ip netns del "$ns" || warn "cannot delete namespace $ns"
    done
    if [[ -d "$state" ]]; then
        rm -f "$state/namespaces" "$state/taps"
    fi
    log "lab network $name is down"
}

cmd_status() {
    local name="$1"
    check_lab_name "$name"
    need_root
    local state ns f
    state="$(lab_state_dir "$name")"
    for ns in "$name" "$name-peer"; do
        if ns_exists "$ns"; then
            echo "== namespace $ns"
            ip -n "$ns" -br addr
        else
            echo "== namespace $ns: absent"
        fi
    done
    echo "== state $state"
    if [[ -d "$state" ]]; then
        for f in "$state"/*.pid; do
            [[ -e "$f" ]] || continue
            local pid
            pid="$(cat "$f")"
            if kill -0 "$pid" 2>/dev/null; then
                echo "$(basename "$f" .pid): pid $pid running"
            else
                echo "$(basename "$f" .pid): pid $pid not running"
            fi
        done
    fi
}

main() {
    local cmd="${1:-}"
    case "$cmd" in
    -h | --help | help)
        usage
        ;;
    up | down | status)
        (($# == 2)) || die "usage: lab/net.sh $cmd NAME (see --help)"
        "cmd_$cmd" "$2"
        ;;
    tap)
        (($# == 3)) || die "usage: lab/net.sh tap NAME TAPNAME (see --help)"
        cmd_tap "$2" "$3"
        ;;
    "")
        usage >&2
        exit 2
        ;;
    *)
        die "unknown command '$cmd' (see --help)"
        ;;
    esac
}

main "$@"
