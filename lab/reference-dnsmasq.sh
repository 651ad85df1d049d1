#!/usr/bin/env bash
# lab/reference-dnsmasq.sh - reference PXE/iPXE boot server (dnsmasq + a
# python3 HTTP server) on the lab network, to check the lab without netdeploy.
#
# Usage:
#   lab/reference-dnsmasq.sh start NAME IMAGE_DIR [--mode full|proxy]
#   lab/reference-dnsmasq.sh stop NAME
#   lab/reference-dnsmasq.sh --help
#
# start runs inside namespace NAME (from lab/net.sh up NAME), on bridge ndbr0:
#   - dnsmasq as DHCP (full mode: range 10.77.0.50-10.77.0.99) or proxyDHCP
#     (proxy mode: another server, e.g. lab/dhcp-peer.sh, hands out addresses),
#     plus TFTP with undionly.kpxe and snponly.efi from /usr/lib/ipxe.
#     Firmware gets the NBP (client arch 0: undionly.kpxe, 7/9: snponly.efi);
#     iPXE (user class "iPXE") gets http://10.77.0.1:8080/boot.ipxe.
#   - python3 -m http.server on 10.77.0.1:8080 serving IMAGE_DIR/vmlinuz,
#     IMAGE_DIR/initrd.img (from boot/linux-image/build.sh) and boot.ipxe.
# The booted kernel command line holds "netdeploy.ref=1 netdeploy.mac=<mac>".
#
# Files in /run/netdeploy-lab/NAME/: ref-dnsmasq.{pid,log,leases},
# ref-http.{pid,log}, ref-root/ (TFTP and HTTP root).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

HTTP_PORT=8080
IPXE_DIR="${NETDEPLOY_IPXE_DIR:-/usr/lib/ipxe}"

cmd_stop() {
    local name="$1" state
    check_lab_name "$name"
    need_root
    state="$(lab_state_dir "$name")"
    kill_pidfile "$state/ref-dnsmasq.pid" "reference dnsmasq"
    kill_pidfile "$state/ref-http.pid" "reference HTTP server"
    log "reference boot server of $name stopped"
}

cmd_start() {
    local name="$1" image_dir="$2" mode="$3"
    check_lab_name "$name"
    need_root
    need_cmd ip dnsmasq python3 curl
    ns_exists "$name" || die "namespace $name does not exist (run 'lab/net.sh up $name' first)"
    [[ -f "$image_dir/vmlinuz" && -f "$image_dir/initrd.img" ]] ||
        die "$image_dir has no vmlinuz/initrd.img (run boot/linux-image/build.sh $image_dir)"
    local f
    for f in undionly.kpxe snponly.efi; do
        [[ -f "$IPXE_DIR/$f" ]] || die "$IPXE_DIR/$f not found (install the ipxe package)"
    done

    local state root url
    state="$(lab_state_dir "$name")"
    mkdir -p "$state"
    for f in ref-dnsmasq ref-http; do
        if [[ -f "$state/$f.pid" ]] && kill -0 "$(cat "$state/$f.pid")" 2>/dev/null; then
            die "$f already running (run 'lab/reference-dnsmasq.sh stop $name' first)"
        fi
        rm -f "$state/$f.pid"
    done

    root="$state/ref-root"
    rm -rf "$root"
    mkdir -p "$root"
    cp "$IPXE_DIR/undionly.kpxe" "$IPXE_DIR/snponly.efi" "$root/"
    cp "$image_dir/vmlinuz" "$image_dir/initrd.img" "$root/"
    url="http://$LAB_SERVER_IP:$HTTP_PORT"
    # initrd=initrd.img lets the kernel's EFI stub find the initrd that iPXE
    # (snponly.efi) exposes; BIOS ignores it.
    cat >"$root/boot.ipxe" <<EOF
#!ipxe
echo netdeploy reference: booting \${net0/mac} (\${platform})
kernel $url/vmlinuz initrd=initrd.img console=ttyS0 netdeploy.ref=1 netdeploy.mac=\${net0/mac}
initrd $url/initrd.img
boot
EOF
    chmod -R a+rX "$root"

    trap 'cmd_stop "$name" >/dev/null 2>&1 || true' EXIT

    # HTTP server; "ip netns exec" execs python, so $! is its PID.
    ip netns exec "$name" python3 -m http.server "$HTTP_PORT" \
        --bind "$LAB_SERVER_IP" --directory "$root" \
        </dev/null >"$state/ref-http.log" 2>&1 &
    echo $! >"$state/ref-http.pid"
    wait_until 10 ip netns exec "$name" curl -fs -o /dev/null --max-time 2 "$url/boot.ipxe" ||
        die "HTTP server did not come up (see $state/ref-http.log)"

    local dhcp_args=()
    if [[ "$mode" == full ]]; then
        # shellcheck disable=SC2054
        dhcp_args=(
            --dhcp-range=10.77.0.50,10.77.0.99,255.255.255.0,10m
            --dhcp-option=option:router
            --dhcp-authoritative
            # Option 60 "PXEClient" tells iPXE that this server also does
            # PXE, so it does not wait ~3 s for ProxyDHCP offers. Only for
            # iPXE: OVMF rejects an offer with "PXEClient" but without
            # option 43 (PXE-E16 No valid offer received).
            --dhcp-option-force=tag:ipxe,60,PXEClient
            --dhcp-boot=tag:ipxe,"$url/boot.ipxe"
            --dhcp-boot=tag:!ipxe,tag:efi64,snponly.efi
            --dhcp-boot=tag:!ipxe,tag:bios,undionly.kpxe
        )
    else
        # shellcheck disable=SC2054
        dhcp_args=(
            --dhcp-range="$LAB_SUBNET,proxy,255.255.255.0"
            --pxe-prompt=netdeploy,0
            "--pxe-service=tag:ipxe,x86PC,netdeploy iPXE,$url/boot.ipxe"
            "--pxe-service=tag:ipxe,x86-64_EFI,netdeploy iPXE,$url/boot.ipxe"
            "--pxe-service=tag:ipxe,BC_EFI,netdeploy iPXE,$url/boot.ipxe"
            "--pxe-service=tag:!ipxe,x86PC,netdeploy BIOS,undionly.kpxe"
            "--pxe-service=tag:!ipxe,x86-64_EFI,netdeploy UEFI,snponly.efi"
            "--pxe-service=tag:!ipxe,BC_EFI,netdeploy UEFI,snponly.efi"
        )
    fi

    : >"$state/ref-dnsmasq.log"
    : >"$state/ref-dnsmasq.leases"
    ip netns exec "$name" dnsmasq \
        --conf-file=/dev/null --no-resolv --no-hosts --port=0 \
        --interface="$LAB_BRIDGE" --bind-interfaces \
        --no-ping \
        --dhcp-leasefile="$state/ref-dnsmasq.leases" \
        --dhcp-match=set:bios,option:client-arch,0 \
        --dhcp-match=set:efi64,option:client-arch,7 \
        --dhcp-match=set:efi64,option:client-arch,9 \
        --dhcp-userclass=set:ipxe,iPXE \
        --dhcp-match=set:ipxe,175 \
        "${dhcp_args[@]}" \
        --enable-tftp --tftp-root="$root" \
        --log-dhcp --log-facility="$state/ref-dnsmasq.log" \
        --pid-file="$state/ref-dnsmasq.pid" --user=root --group=root ||
        die "dnsmasq failed to start (see $state/ref-dnsmasq.log)"
    wait_until 5 test -s "$state/ref-dnsmasq.pid" || die "dnsmasq wrote no PID file"

    trap - EXIT
    log "reference boot server ($mode) running in $name: dnsmasq pid $(cat "$state/ref-dnsmasq.pid"), HTTP $url pid $(cat "$state/ref-http.pid"); logs in $state"
}

case "${1:-}" in
-h | --help | help)
    usage
    ;;
start)
    shift
    pos=() mode=full
    while (($# > 0)); do
        case "$1" in
        --mode)
            [[ $# -ge 2 ]] || die "--mode needs full or proxy"
            mode="$2"
            shift
            ;;
        -*) die "unknown option '$1' (see --help)" ;;
        *) pos+=("$1") ;;
        esac
        shift
    done
    [[ "$mode" == full || "$mode" == proxy ]] || die "--mode must be full or proxy, not '$mode'"
    ((${#pos[@]} == 2)) || die "usage: lab/reference-dnsmasq.sh start NAME IMAGE_DIR [--mode full|proxy]"
    cmd_start "${pos[0]}" "${pos[1]}" "$mode"
    ;;
stop)
    (($# == 2)) || die "usage: lab/reference-dnsmasq.sh stop NAME"
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
