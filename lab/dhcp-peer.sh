#!/usr/bin/env bash
# lab/dhcp-peer.sh - a separate, plain DHCP server on the lab network.
#
# Usage:
#   lab/dhcp-peer.sh start NAME   start dnsmasq in namespace NAME-peer
#   lab/dhcp-peer.sh stop NAME    stop it (idempotent)
#   lab/dhcp-peer.sh --help
#
# The server hands out addresses 10.77.0.100-10.77.0.199/24 from 10.77.0.2 and
# NO boot information: no next-server/filename, no PXE options, no TFTP, no DNS
# (port 0), no router option. It is the "existing DHCP server" next to which
# netdeploy runs in proxyDHCP mode. Needs "lab/net.sh up NAME" first.
#
# Files in /run/netdeploy-lab/NAME/: dhcp-peer.pid, dhcp-peer.log (dnsmasq log with
# --log-dhcp), dhcp-peer.leases.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

PEER_RANGE_START=10.77.0.100
PEER_RANGE_END=10.77.0.199

cmd_start() {
    local name="$1"
    check_lab_name "$name"
    need_root
    need_cmd ip dnsmasq
    local peer="$name-peer" state pidfile
    ns_exists "$peer" || die "namespace $peer does not exist (run 'lab/net.sh up $name' first)"
    state="$(lab_state_dir "$name")"
    mkdir -p "$state"
    pidfile="$state/dhcp-peer.pid"
    if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        die "DHCP peer already running (pid $(cat "$pidfile")); run 'lab/dhcp-peer.sh stop $name' first"
    fi
    rm -f "$pidfile"
    : >"$state/dhcp-peer.log"
    : >"$state/dhcp-peer.leases"

    # dnsmasq daemonizes itself and writes the PID file; bind errors are
    # reported before it detaches, so a failure shows up here.
    ip netns exec "$peer" dnsmasq \
        --conf-file=/dev/null --no-resolv --no-hosts --port=0 \
        --interface="$LAB_VETH_PEER" --bind-interfaces \
        --dhcp-range="$PEER_RANGE_START,$PEER_RANGE_END,255.255.255.0,10m" \
        --dhcp-option=option:router \
        --dhcp-leasefile="$state/dhcp-peer.leases" \
        --dhcp-authoritative --no-ping \
        --log-dhcp --log-facility="$state/dhcp-peer.log" \
        --pid-file="$pidfile" --user=root --group=root ||
        die "dnsmasq failed to start (see $state/dhcp-peer.log)"
    wait_until 5 test -s "$pidfile" || die "dnsmasq wrote no PID file (see $state/dhcp-peer.log)"
    log "DHCP peer running in $peer (pid $(cat "$pidfile")), range $PEER_RANGE_START-$PEER_RANGE_END, log $state/dhcp-peer.log"
}

cmd_stop() {
    local name="$1"
    check_lab_name "$name"
    need_root
    local state
    state="$(lab_state_dir "$name")"
    kill_pidfile "$state/dhcp-peer.pid" "DHCP peer"
    log "DHCP peer of $name stopped"
}

case "${1:-}" in
-h | --help | help)
    usage
    ;;
start | stop)
    (($# == 2)) || die "usage: lab/dhcp-peer.sh $1 NAME (see --help)"
    "cmd_$1" "$2"
    ;;
"")
    usage >&2
    exit 2
    ;;
*)
    die "unknown command '$1' (see --help)"
    ;;
esac
