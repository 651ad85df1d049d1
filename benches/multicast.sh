#!/usr/bin/env bash
# Multicast imaging (docs/multicast.md): one image to 1, 2, 4, 8 and 16 receivers at once,
# three ways, in the same run and on the same network:
#   netdeploy multicast   `netdeploy multicast serve` + `netdeploy-agent multicast-apply`
#   unicast HTTP          `netdeploy serve` + `netdeploy-agent apply-image` on every receiver
#   udpcast               udp-sender of the partclone+zstd stream (as FOG and Clonezilla send
#                         it) + udp-receiver | zstd -d | partclone.extfs -r on every receiver
# The network: a bridge inside a namespace this script creates, the server and each receiver
# in a namespace of their own, joined to the bridge by a veth pair; nothing touches a real
# interface. The image is an ext4 filesystem half full of files from /usr, captured with the
# agent. For each run it prints the time until the last receiver finished, the aggregate
# throughput (filesystem bytes written by all receivers per second), the server's egress
# (tx bytes of its veth, and for netdeploy multicast its own multicast_bytes_sent) against
# the compressed image, and whether every receiver's target has the source's SHA-256; for
# netdeploy it adds each receiver's mean CPU seconds, the datagrams the receivers' kernels
# dropped at full socket buffers and how busy the machine's CPUs were (with many receivers
# on few cores the time is CPU-bound). Then one run of 4 receivers where one receiver's
# bridge port loses 5% (netem).
#
#   benches/multicast.sh                     # 384 MiB filesystem, 1 2 4 8 16 receivers
#   SIZE_MB=256 COUNTS="1 4 16" benches/multicast.sh
#   UDPCAST=0 LOSS=0 COUNTS="1 16" benches/multicast.sh   # netdeploy and HTTP only, no loss run
#   LOG_DIR=/tmp/mc NETDEPLOY_LOG=netdeploy::multicast=trace benches/multicast.sh
#                                            # keeps each multicast run's sender and receiver logs
#
# Needs root, iproute2, udpcast, partclone, zstd, e2fsprogs, python3, time, cargo. Kills only what
# it started (by PID), deletes its namespaces and its work directories at exit. Receivers'
# targets live in /dev/shm, one run at a time.
set -euo pipefail
SIZE_MB=${SIZE_MB:-384}
COUNTS=${COUNTS:-"1 2 4 8 16"}
RATE_MBPS=${RATE_MBPS:-400}
UDPCAST=${UDPCAST:-1}
LOSS=${LOSS:-1}
. "$(dirname "$0")/lib.sh"
need ip iproute2
need tc iproute2
need udp-sender udpcast
need udp-receiver udpcast
need partclone.extfs partclone
need zstd zstd
need mkfs.ext4 e2fsprogs
need python3 python3
need cargo cargo
need /usr/bin/time time
[[ $(id -u) == 0 ]] || { echo "needs root (network namespaces)" >&2; exit 1; }

bench_workdir multicast-bench
SHM=$(mktemp -d /dev/shm/multicast-bench.XXXXXX)
NS_B="ndmcb$$"
NS_S="ndmcs$$"
MAX_RX=0
for n in $COUNTS; do ((n > MAX_RX)) && MAX_RX=$n; done
((MAX_RX >= 4)) || MAX_RX=4
rx_ns() { echo "ndmcr$$-$1"; }
cleanup() {
    bench_cleanup
    for i in $(seq 0 $((MAX_RX - 1))); do ip netns del "$(rx_ns "$i")" 2>/dev/null || true; done
    ip netns del "$NS_S" 2>/dev/null || true
    ip netns del "$NS_B" 2>/dev/null || true
    rm -rf "$SHM"
}
trap cleanup EXIT

echo "building netdeploy and the agent (release)..."
(cd "$ROOT_DIR" && cargo build --release -q -p netdeploy --bin netdeploy && cargo build --release -q -p netdeploy-agent)
AGENT="$ROOT_DIR/target/release/netdeploy-agent"

half_full_ext4 "$SIZE_MB"
FS_SIZE=$(stat -c %s "$FS")
# An applied target starts as zeros, as a fresh disk of the source's size: unused blocks of
# both are zeros, so a correct apply gives the source's bytes exactly.
WANT=$(sha256sum "$FS" | cut -d' ' -f1)

echo "capturing..."
read -r _ IDX_SHA IDX_SIZE < <("$AGENT" capture "$FS" "$WORK/pkg" 2>/dev/null)
"$ND" --data-dir "$WORK/data" package create --id disk --from "$WORK/pkg" >/dev/null 2>&1
IMG_BYTES=$(du -cb "$WORK/pkg"/* | tail -1 | cut -f1)
partclone.extfs -c -q -s "$FS" -o - -L "$WORK/partclone.log" 2>/dev/null | zstd -3 -q -o "$WORK/pc.img.zst"
PC_BYTES=$(stat -c %s "$WORK/pc.img.zst")

echo "network: a bridge in $NS_B, the server in $NS_S, $MAX_RX receivers..."
ip netns add "$NS_B"
ip -n "$NS_B" link add br0 type bridge mcast_snooping 0
ip -n "$NS_B" link set br0 up
ip netns add "$NS_S"
ip -n "$NS_S" link set lo up
ip link add s0 netns "$NS_S" type veth peer name ps netns "$NS_B"
ip -n "$NS_S" addr add 10.214.0.1/24 dev s0
ip -n "$NS_S" link set s0 up
ip -n "$NS_B" link set ps master br0 up
for i in $(seq 0 $((MAX_RX - 1))); do
    ns=$(rx_ns "$i")
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add r0 netns "$ns" type veth peer name "p$i" netns "$NS_B"
    ip -n "$ns" addr add "10.214.0.$((10 + i))/24" dev r0
    ip -n "$ns" link set r0 up
    ip -n "$NS_B" link set "p$i" master br0 up
    # udp-receiver and the multicast apply join on r0; the route makes it the default too.
    ip -n "$ns" route add 224.0.0.0/4 dev r0
done
ip -n "$NS_S" route add 224.0.0.0/4 dev s0

mkdir -p "$WORK/tftp"
cat > "$WORK/netdeploy.toml" <<TOML
[server]
interfaces = ["s0"]
address = "10.214.0.1"
data_dir = "$WORK/data"
[dhcp]
mode = "proxy"
port = 0
proxy_port = 0
[tftp]
root = "$WORK/tftp"
port = 0
[http]
port = 8080
[multicast]
max_rate_mbps = $RATE_MBPS
TOML
NETDEPLOY_LOG=warn ip netns exec "$NS_S" "$ND" serve --config "$WORK/netdeploy.toml" \
    > "$WORK/nd.out" 2> "$WORK/nd.err" &
pids+=($!)
for _ in $(seq 1 300); do [[ -s "$WORK/nd.out" ]] && break; sleep 0.1; done
[[ -s "$WORK/nd.out" ]] || { cat "$WORK/nd.err" >&2; exit 1; }
SERVER=http://10.214.0.1:8080

now() { date +%s.%N; }
egress() { ip netns exec "$NS_S" cat /sys/class/net/s0/statistics/tx_bytes; }
targets() {
    rm -f "$SHM"/t*
    for i in $(seq 0 $(($1 - 1))); do truncate -s "$FS_SIZE" "$SHM/t$i"; done
}
# verify N: how many of the N targets have the source's SHA-256; removes them.
verify() {
    local ok=0 i
    for i in $(seq 0 $(($1 - 1))); do
        [[ $(sha256sum "$SHM/t$i" | cut -d' ' -f1) == "$WANT" ]] && ok=$((ok + 1))
    done
    rm -f "$SHM"/t*
    echo "$ok/$1"
}
# wait_all PID...: waits for each; counts failures in FAILED.
wait_all() {
    FAILED=0
    local p
    for p in "$@"; do wait "$p" || FAILED=$((FAILED + 1)); done
}

# rcvbuf_drops N: datagrams the kernel dropped for a full socket receive buffer, summed over
# receivers 0..N-1 (UDP RcvbufErrors of their namespaces).
rcvbuf_drops() {
    local sum=0 i v
    for i in $(seq 0 $(($1 - 1))); do
        v=$(ip netns exec "$(rx_ns "$i")" awk '/^Udp:/ && $2 ~ /^[0-9]/ {print $6}' /proc/net/snmp)
        sum=$((sum + v))
    done
    echo "$sum"
}
# cpu PREFIX N: the mean CPU seconds (user + system) of receivers 0..N-1, from the files
# PREFIX0.cpu .. that /usr/bin/time wrote.
cpu() {
    local i
    for i in $(seq 0 $(($2 - 1))); do cat "$1$i.cpu"; done |
        python3 -c "import sys; v=[float(a)+float(b) for a,b in (l.split() for l in sys.stdin if l.strip())]; print(f'{sum(v)/len(v):.2f}' if v else 'n/a')"
}
# cpu_ticks: the machine's busy and idle clock ticks (all CPUs, /proc/stat), "busy softirq idle".
cpu_ticks() {
    awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $8, $5 + $6}' /proc/stat
}
# busy_share BEFORE AFTER: the share of the machine's CPU time that was busy between two
# cpu_ticks, and how much of it was softirq (the kernel delivering packets).
busy_share() {
    python3 -c "import sys; b0, s0, i0, b1, s1, i1 = map(int, sys.argv[1:]); t = (b1 - b0) + (i1 - i0); print(f'{(b1 - b0) / t:.0%} (softirq {(s1 - s0) / t:.0%})' if t else 'n/a')" $1 $2
}

RESULTS=()
# row METHOD N SECONDS EGRESS [SENT]
row() {
    local thr
    thr=$(python3 -c "print(f'{$2 * $FS_SIZE / 2**20 / $3:.0f}')")
    RESULTS+=("$(printf '%-20s %3s %9.2f %12s %16s %11s %9s' "$1" "$2" "$3" "$thr" \
        "$(python3 -c "print(f'{$4 / 2**20:.1f}')")" "$(ratio "$4" "$5")" "$6")")
}

run_multicast() { # N [label]
    local n=$1 label=${2:-netdeploy multicast} e0 e1 t0 t1 d0 rxp=() i sender line group port
    targets "$n"
    # The previous run's line must not pass for this one's before the shell truncates it.
    rm -f "$WORK/mc.out"
    ip netns exec "$NS_S" "$ND" --config "$WORK/netdeploy.toml" multicast serve disk \
        --receivers "$n" --timeout 600 > "$WORK/mc.out" 2> "$WORK/mc.err" &
    sender=$!
    pids+=("$sender")
    for _ in $(seq 1 600); do [[ -s "$WORK/mc.out" ]] && break; sleep 0.1; done
    [[ -s "$WORK/mc.out" ]] || { echo "netdeploy multicast serve did not start:" >&2; cat "$WORK/mc.err" >&2; exit 1; }
    line=$(head -1 "$WORK/mc.out")
    group=$(python3 -c "import json,sys; s=json.loads(sys.argv[1])['multicast_session']; print(f\"{s['group']}:{s['port']}\")" "$line")
    d0=$(rcvbuf_drops "$n")
    local busy0
    busy0=$(cpu_ticks)
    e0=$(egress); t0=$(now)
    for i in $(seq 0 $((n - 1))); do
        ip netns exec "$(rx_ns "$i")" timeout 600 /usr/bin/time -f '%U %S' -o "$WORK/mc-rx$i.cpu" "$AGENT" multicast-apply "$SERVER" "$IDX_SHA" "$IDX_SIZE" \
            "$SHM/t$i" "$group" "10.214.0.$((10 + i))" 2> "$WORK/mc-rx$i.err" &
        rxp+=($!)
        pids+=($!)
    done
    wait_all "${rxp[@]}"
    t1=$(now)
    local busy
    busy=$(busy_share "$busy0" "$(cpu_ticks)")
    wait "$sender" || true
    e1=$(egress)
    local sent
    grep -q multicast_report "$WORK/mc.out" || { echo "the session ended without its report:" >&2; tail -n 5 "$WORK/mc.err" >&2; exit 1; }
    sent=$(python3 -c "import json,sys; print(json.loads(sys.stdin.read().splitlines()[-1])['multicast_report']['bytes_sent'])" < "$WORK/mc.out")
    if [[ -n ${LOG_DIR:-} ]]; then
        mkdir -p "$LOG_DIR/$label-$n"
        cp "$WORK"/mc.err "$WORK"/mc-rx*.err "$LOG_DIR/$label-$n/"
    fi
    local paths
    paths=$(for i in $(seq 0 $((n - 1))); do grep -ho "path [a-z+]*" "$WORK/mc-rx$i.err"; done | sort | uniq -c | awk '{printf "%s%s x%s", sep, $3, $1; sep=", "}')
    row "$label" "$n" "$(python3 -c "print($t1 - $t0)")" "$((e1 - e0))" "$IMG_BYTES" "$(verify "$n")"
    RESULTS[-1]+="  sent by netdeploy $(python3 -c "print(f'{$sent / 2**20:.1f}')") MiB ($(ratio "$sent" "$IMG_BYTES")); $paths; CPU s per receiver $(cpu "$WORK/mc-rx" "$n"); datagrams dropped at full receive buffers $(($(rcvbuf_drops "$n") - d0)); machine's CPUs busy $busy"
}

run_http() { # N
    local n=$1 e0 e1 t0 t1 rxp=() i
    targets "$n"
    e0=$(egress); t0=$(now)
    for i in $(seq 0 $((n - 1))); do
        ip netns exec "$(rx_ns "$i")" timeout 600 /usr/bin/time -f '%U %S' -o "$WORK/http-rx$i.cpu" \
            "$AGENT" apply-image "$SERVER" "$IDX_SHA" "$IDX_SIZE" "$SHM/t$i" 2> "$WORK/http-rx$i.err" &
        rxp+=($!)
        pids+=($!)
    done
    wait_all "${rxp[@]}"
    t1=$(now)
    e1=$(egress)
    row "unicast HTTP" "$n" "$(python3 -c "print($t1 - $t0)")" "$((e1 - e0))" "$IMG_BYTES" "$(verify "$n")"
    RESULTS[-1]+="  CPU s per receiver $(cpu "$WORK/http-rx" "$n")"
}

run_udpcast() { # N [label]
    local n=$1 label=${2:-udpcast} e0 e1 t0 t1 rxp=() i sender
    targets "$n"
    e0=$(egress); t0=$(now)
    # The rendezvous on a 239/8 group: on the default 224.0.0.1 (all hosts) no receiver's
    # hello reaches the sender here.
    ip netns exec "$NS_S" timeout 660 udp-sender --file "$WORK/pc.img.zst" --interface s0 --min-receivers "$n" \
        --nokbd --max-wait 60 --mcast-rdv-address 239.255.99.1 2> "$WORK/us.err" &
    sender=$!
    pids+=("$sender")
    for i in $(seq 0 $((n - 1))); do
        ip netns exec "$(rx_ns "$i")" timeout 600 sh -c "udp-receiver --interface r0 --nokbd --mcast-rdv-address 239.255.99.1 2>'$WORK/ur$i.err' |
            zstd -d -q | partclone.extfs -r -q -s - -O '$SHM/t$i' -L '$WORK/pc$i.log' >/dev/null 2>&1" &
        rxp+=($!)
        pids+=($!)
    done
    wait_all "${rxp[@]}"
    t1=$(now)
    wait "$sender" || true
    e1=$(egress)
    row "$label" "$n" "$(python3 -c "print($t1 - $t0)")" "$((e1 - e0))" "$PC_BYTES" "$(verify "$n")"
}

for n in $COUNTS; do
    echo "$n receiver(s)..."
    run_multicast "$n"
    echo "  ${RESULTS[-1]}"
    run_http "$n"
    echo "  ${RESULTS[-1]}"
    if ((UDPCAST)); then
        run_udpcast "$n"
        echo "  ${RESULTS[-1]}"
    fi
done

if ((LOSS)); then
# 5% of what reaches receiver 0 is lost: netem on its bridge port, or where the kernel has
# no netem, an nftables drop rule at its veth's ingress.
if ip netns exec "$NS_B" tc qdisc add dev p0 root netem loss 5% 2>/dev/null; then
    LOSS_BY="netem loss 5% on receiver 0's bridge port"
else
    need nft nftables
    ip netns exec "$(rx_ns 0)" nft -f - <<EOF
table netdev loss {
    chain ingress {
        type filter hook ingress device "r0" priority 0; policy accept;
        numgen random mod 100 < 5 counter drop
    }
}
EOF
    LOSS_BY="nftables: 5% of receiver 0's incoming packets dropped"
fi
echo "4 receivers, $LOSS_BY..."
run_multicast 4 "multicast, 5% loss"
((UDPCAST)) && run_udpcast 4 "udpcast, 5% loss"
fi

echo
echo "ext4 of ${SIZE_MB} MiB ($FS_SIZE bytes), half full of files from /usr; netdeploy image $(python3 -c "print(f'{$IMG_BYTES / 2**20:.1f}')") MiB compressed, partclone+zstd $(python3 -c "print(f'{$PC_BYTES / 2**20:.1f}')") MiB; multicast at most $RATE_MBPS Mbit/s"
printf '%-20s %3s %9s %12s %16s %11s %9s\n' method rx "last s" "agg MiB/s" "egress MiB" "/ image" "same"
for r in "${RESULTS[@]}"; do echo "$r"; done
