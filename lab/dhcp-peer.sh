#!/usr/bin/env bash
# lab/dhcp-peer.sh - a separate, plain DHCP server on the lab network.
#
# Usage:
#   lab/dhcp-peer.sh start NAME [--ipv6]   start dnsmasq in namespace NAME-peer
#   lab/dhcp-peer.sh stop NAME             stop it (idempotent)
#   lab/dhcp-peer.sh --help
#
# The server hands out addresses 10.77.0.100-10.77.0.199/24 from 10.77.0.2 and
# NO boot information: no next-server/filename, no PXE options, no TFTP, no DNS
# (port 0), no router option. It is the "existing DHCP server" next to which
# netdeploy runs in proxyDHCP mode. Needs "lab/net.sh up NAME" first.
#
# --ipv6 makes the site IPv6-only instead: no DHCPv4; a stateful DHCPv6 server
# (dnsmasq, fd77::100-fd77::1ff from fd77::2, no boot options) for UEFI's PXE,
# which always asks for an address; and radvd in place of the lab's flagless
# router advertisements, announcing fd77::/64 for SLAAC with the "other
# configuration" flag, so that iPXE takes its address from SLAAC and asks for
# the rest with an Information-Request. The site's DHCPv6 server ignores iPXE
# (user class "iPXE"), leaving its boot file URL to netdeploy, as a site that
# runs a boot server beside its DHCPv6 server is set up.
#
# Files in /run/netdeploy-lab/NAME/: dhcp-peer.pid, dhcp-peer.log (dnsmasq log with
# --log-dhcp), dhcp-peer.leases; with --ipv6 also radvd.pid, radvd.conf,
# radvd.log.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

PEER_RANGE_START=10.77.0.100
PEER_RANGE_END=10.77.0.199

cmd_start() {
    local name="$1" ipv6="${2:-}"
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

    if [[ "$ipv6" == --ipv6 ]]; then
        start_ipv6 "$name" "$peer" "$state" "$pidfile"
        return
    fi
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

PEER_IP6=fd77::2
PEER_RANGE6_START=fd77::100
PEER_RANGE6_END=fd77::1ff

start_ipv6() {
    local name="$1" peer="$2" state="$3" pidfile="$4"
    need_cmd radvd
    ip -n "$peer" addr replace "$PEER_IP6/64" dev "$LAB_VETH_PEER" nodad
    # The lab's own router advertisements carry no flags; two routers with
    # different flags would leave iPXE's choice to chance.
    kill_pidfile "$state/ra.pid" "router advertisement sender"
    cat >"$state/radvd.conf" <<CONF
interface $LAB_VETH_PEER {
    AdvSendAdvert on;
    MinRtrAdvInterval 3;
    MaxRtrAdvInterval 10;
    AdvManagedFlag off;
    AdvOtherConfigFlag on;
    AdvDefaultLifetime 0;
    prefix $LAB_IPV6_PREFIX/64 {
        AdvOnLink on;
        AdvAutonomous on;
    };
};
CONF
    ip netns exec "$peer" radvd --config="$state/radvd.conf" \
        --pidfile="$state/radvd.pid" --logmethod=logfile --logfile="$state/radvd.log" ||
        die "radvd failed to start (see $state/radvd.log)"
    wait_until 5 test -s "$state/radvd.pid" || die "radvd wrote no PID file (see $state/radvd.log)"
    ip netns exec "$peer" dnsmasq \
        --conf-file=/dev/null --no-resolv --no-hosts --port=0 \
        --interface="$LAB_VETH_PEER" --bind-interfaces \
        --dhcp-range="$PEER_RANGE6_START,$PEER_RANGE6_END,64,10m" \
        --dhcp-userclass=set:ipxe,iPXE --dhcp-ignore=tag:ipxe \
        --dhcp-leasefile="$state/dhcp-peer.leases" \
        --dhcp-authoritative \
        --log-dhcp --log-facility="$state/dhcp-peer.log" \
        --pid-file="$pidfile" --user=root --group=root ||
        die "dnsmasq failed to start (see $state/dhcp-peer.log)"
    wait_until 5 test -s "$pidfile" || die "dnsmasq wrote no PID file (see $state/dhcp-peer.log)"
    log "IPv6 site in $peer: DHCPv6 (pid $(cat "$pidfile")) $PEER_RANGE6_START-$PEER_RANGE6_END, radvd (pid $(cat "$state/radvd.pid")) with the O flag, log $state/dhcp-peer.log"
}

cmd_stop() {
    local name="$1"
    check_lab_name "$name"
    need_root
    local state
    state="$(lab_state_dir "$name")"
    kill_pidfile "$state/dhcp-peer.pid" "DHCP peer"
    kill_pidfile "$state/radvd.pid" "radvd"
    log "DHCP peer of $name stopped"
}

case "${1:-}" in
-h | --help | help)
    usage
    ;;
start)
    (($# == 2)) || { (($# == 3)) && [[ "$3" == --ipv6 ]]; } ||
        die "usage: lab/dhcp-peer.sh start NAME [--ipv6] (see --help)"
    cmd_start "$2" "${3:-}"
    ;;
stop)
    (($# == 2)) || die "usage: lab/dhcp-peer.sh stop NAME (see --help)"
    cmd_stop "$2"
    ;;
"")
    usage >&2
    exit 2
    ;;
*)
    die "unknown command '$1' (see --help)"
    ;;
esac
