#!/usr/bin/env bash
# TFTP download throughput: netdeploy against tftpd-hpa. A benchmark, not a test: it prints
# MB/s and ratios ("failed" when a client gave up), and stops only if a file arrives
# corrupted or a tool is missing. Figures vary from run to run on a shared machine; compare
# the servers within one run.
#
#   benches/tftp_throughput.sh            # loopback, then a lossy link (needs root)
#   REPS=3 benches/tftp_throughput.sh     # fewer repetitions
#   LOSSY=0 benches/tftp_throughput.sh    # loopback only
#
# 1. Loopback, 64 MiB, blksize 1468, windowsize 1 and 16, with two clients: atftp (the
#    Debian package) and tftp_fetch (examples/tftp_fetch.rs, a lean RFC 7440 client, since
#    atftp's own CPU cost per block caps what it can show of a server). tftpd-hpa does not
#    implement windowsize, so it always runs lock-step. Then atftp with windows larger than
#    its socket buffer (8192 x 64, 8192 x 16, 65464 x 16) against netdeploy's own lock-step.
# 2. A lossy link: two network namespaces joined by a veth pair (MTU 1500) losing 1% of
#    packets each way (netem, or an nftables drop rule where the kernel has no netem);
#    blksize 8192 and 65464 are fragmented, so a block is lost when any of its fragments is.
#    Nothing touches a real interface.
#
# Every run has a time limit, every loop a bound; the script kills only the processes it
# started (by PID) and deletes the namespaces it created.
#
# Needs: cargo, atftp, tftpd-hpa (in.tftpd), iproute2; for part 2 root, and sch_netem or
# nftables.

set -euo pipefail
shopt -s inherit_errexit

REPS=${REPS:-5}
LOSSY=${LOSSY:-1}
SIZE_MB=64
LOSSY_SIZE_MB=${LOSSY_SIZE_MB:-8}   # blksize 1468 and 8192; 65464 uses 2 MiB
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)

need() {
    command -v "$1" >/dev/null || { echo "missing $1: install the Debian package $2" >&2; exit 1; }
}
need atftp atftp
need in.tftpd tftpd-hpa
need cargo cargo

WORK=$(mktemp -d /tmp/tftp-bench.XXXXXX)
chmod 755 "$WORK"
mkdir -m 755 "$WORK/root" "$WORK/out"
PIDS=()
NAMESPACES=()

cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    for ns in "${NAMESPACES[@]}"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "building the example server and client (release)..." >&2
(cd "$ROOT_DIR" && cargo build --release --quiet --example tftp_serve --example tftp_fetch)
SERVE="$ROOT_DIR/target/release/examples/tftp_serve"
FETCH="$ROOT_DIR/target/release/examples/tftp_fetch"

make_file() { # NAME MIB
    head -c $(($2 << 20)) /dev/urandom >"$WORK/root/$1"
    chmod 644 "$WORK/root/$1"
}

# Starts netdeploy's example server: NETNS ("" for none) ADDR [FRAGMENTED_WINDOWS 0|1];
# sets ND_ADDR.
start_netdeploy() {
    local netns=$1 addr=$2 log="$WORK/netdeploy-${#PIDS[@]}.log"
    export NETDEPLOY_TFTP_FRAGMENTED_WINDOWS=${3:-0}
    if [[ -n $netns ]]; then
        ip netns exec "$netns" "$SERVE" "$WORK/root" "$addr" >"$log.out" 2>"$log" &
    else
        "$SERVE" "$WORK/root" "$addr" >"$log.out" 2>"$log" &
    fi
    PIDS+=($!)
    for _ in $(seq 100); do
        ND_ADDR=$(sed -n 's/^tftp_listening=//p' "$log.out")
        [[ -n $ND_ADDR ]] && return 0
        sleep 0.05
    done
    echo "netdeploy did not start: $(cat "$log")" >&2
    exit 1
}

# Starts tftpd-hpa in the foreground: NETNS ADDR:PORT.
start_tftpd_hpa() {
    local netns=$1 addr=$2
    if [[ -n $netns ]]; then
        ip netns exec "$netns" in.tftpd -L -s "$WORK/root" -a "$addr" &
    else
        in.tftpd -L -s "$WORK/root" -a "$addr" &
    fi
    PIDS+=($!)
    sleep 0.3
    kill -0 "${PIDS[-1]}" 2>/dev/null || { echo "tftpd-hpa did not start on $addr" >&2; exit 1; }
}

free_port() {
    local port
    for _ in $(seq 50); do
        port=$((20000 + RANDOM % 30000))
        if ! ss -Hlun "sport = :$port" | grep -q .; then
            echo "$port"
            return
        fi
    done
    echo "no free UDP port found" >&2
    exit 1
}

# Waits (up to 40 s) until the namespace's IP reassembly memory is empty: fragments stranded
# by one run's losses stay 30 s and would blind the next run, whichever server it tests.
drain_reassembly() {
    local netns=$1
    for _ in $(seq 400); do
        # shellcheck disable=SC2016 # an awk program, not shell
        ip netns exec "$netns" awk '$1 == "FRAG:" && $5 != 0 { busy = 1 } END { exit busy }' \
            /proc/net/sockstat && return 0
        sleep 0.1
    done
    echo "reassembly memory of $netns did not drain" >&2
}

# One download; prints MB/s, or "failed" if the client gave up. A file that arrives but
# differs stops the benchmark. CLIENT NETNS HOST PORT FILE BLKSIZE WINDOWSIZE
download() {
    local client=$1 netns=$2 host=$3 port=$4 file=$5 blksize=$6 windowsize=$7
    local out="$WORK/out/$file" run=()
    if [[ -n $netns ]]; then
        run=(ip netns exec "$netns")
        drain_reassembly "$netns"
    fi
    rm -f "$out"
    local start end status=0
    start=$(date +%s.%N)
    case $client in
        atftp)
            timeout 600 "${run[@]}" atftp --option "blksize $blksize" \
                --option "windowsize $windowsize" -g -r "$file" -l "$out" "$host" "$port" \
                >/dev/null 2>&1 || status=$? ;;
        fetch)
            timeout 600 "${run[@]}" "$FETCH" "$host:$port" "$file" "$out" "$blksize" \
                "$windowsize" >/dev/null 2>&1 || status=$? ;;
    esac
    end=$(date +%s.%N)
    if [[ $status != 0 ]]; then
        echo failed
        return
    fi
    if ! cmp -s "$out" "$WORK/root/$file"; then
        echo "WRONG DOWNLOAD: $client $host:$port $file blksize $blksize windowsize $windowsize" >&2
        exit 1
    fi
    local bytes
    bytes=$(stat -c %s "$out")
    awk -v b="$bytes" -v s="$start" -v e="$end" 'BEGIN { printf "%.1f\n", b / 1e6 / (e - s) }'
}

# Median MB/s of REPS downloads, with the range. Same arguments as download, plus REPS first.
median() {
    local reps=$1
    shift
    local values=()
    for _ in $(seq "$reps"); do
        values+=("$(download "$@")")
    done
    printf '%s\n' "${values[@]}" | sort -n | awk '
        $1 == "failed" { failed++; next }
        { v[++n] = $1 }
        END { if (failed) { printf "failed %d of %d", failed, failed + n; exit }
              m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
              printf "%.1f (%s-%s)", m, v[1], v[n] }'
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || b == 0) print "n/a"
        else printf "%.1fx\n", a / b }'
}

# The median alone, from "MEDIAN (MIN-MAX)".
first() { echo "${1%% *}"; }

echo
echo "== loopback, ${SIZE_MB} MiB, blksize 1468, median of $REPS (min-max), MB/s"
make_file big.bin "$SIZE_MB"
start_netdeploy "" 127.0.0.1:0
ND_PORT=${ND_ADDR##*:}
HPA_PORT=$(free_port)
start_tftpd_hpa "" "127.0.0.1:$HPA_PORT"
printf '%-7s %-4s %-26s %-26s %s\n' client win netdeploy tftpd-hpa ratio
for client in atftp fetch; do
    for w in 1 16; do
        nd=$(median "$REPS" "$client" "" 127.0.0.1 "$ND_PORT" big.bin 1468 "$w")
        hpa=$(median "$REPS" "$client" "" 127.0.0.1 "$HPA_PORT" big.bin 1468 "$w")
        printf '%-7s %-4s %-26s %-26s %s\n' "$client" "$w" "$nd" "$hpa" \
            "$(ratio "$(first "$nd")" "$(first "$hpa")")"
    done
done

# A window larger than the client's socket buffer (atftp keeps the kernel's default, 208 KiB):
# netdeploy paces it in bursts; it must never fall below its own lock-step rate.
echo
echo "== loopback, ${SIZE_MB} MiB, atftp, windows larger than its socket buffer, median of $REPS (min-max), MB/s"
printf '%-8s %-4s %-26s %-26s %s\n' blksize win "netdeploy windowed" "netdeploy lock-step" ratio
for pair in "8192 64" "8192 16" "65464 16"; do
    read -r blksize w <<<"$pair"
    win=$(median "$REPS" atftp "" 127.0.0.1 "$ND_PORT" big.bin "$blksize" "$w")
    lock=$(median "$REPS" atftp "" 127.0.0.1 "$ND_PORT" big.bin "$blksize" 1)
    printf '%-8s %-4s %-26s %-26s %s\n' "$blksize" "$w" "$win" "$lock" \
        "$(ratio "$(first "$win")" "$(first "$lock")")"
done

if [[ $LOSSY != 1 ]]; then
    exit 0
fi
if [[ $(id -u) != 0 ]]; then
    echo "the lossy part needs root (network namespaces); skipped" >&2
    exit 0
fi

SERVER_NS="ndbench-s-$$"
CLIENT_NS="ndbench-c-$$"
ip netns add "$SERVER_NS"
NAMESPACES+=("$SERVER_NS")
ip netns add "$CLIENT_NS"
NAMESPACES+=("$CLIENT_NS")
ip link add ndb-s netns "$SERVER_NS" type veth peer name ndb-c netns "$CLIENT_NS"
ip -n "$SERVER_NS" addr add 10.213.0.1/24 dev ndb-s
ip -n "$CLIENT_NS" addr add 10.213.0.2/24 dev ndb-c
for ns in "$SERVER_NS" "$CLIENT_NS"; do
    ip -n "$ns" link set lo up
done
ip -n "$SERVER_NS" link set ndb-s up
ip -n "$CLIENT_NS" link set ndb-c up
# Lost packets are counted in the rules; shown at the end.
show_drops() {
    [[ $LOSS_BY == netem ]] && return
    for ns in "$SERVER_NS" "$CLIENT_NS"; do
        echo "$ns: $(ip netns exec "$ns" nft list ruleset | grep -o 'packets [0-9]*') dropped"
    done
}

# Loss per packet on the wire, so per IP fragment: netem on each sending end, or where the
# kernel lacks netem, an nftables rule at each receiving end's ingress hook, which runs before
# reassembly (the output hooks would see whole datagrams).
if ip netns exec "$SERVER_NS" tc qdisc add dev ndb-s root netem loss 1% 2>/dev/null; then
    ip netns exec "$CLIENT_NS" tc qdisc add dev ndb-c root netem loss 1%
    LOSS_BY=netem
else
    need nft nftables
    for end in "$SERVER_NS:ndb-s" "$CLIENT_NS:ndb-c"; do
        ip netns exec "${end%%:*}" nft -f - <<EOF
table netdev loss {
    chain ingress {
        type filter hook ingress device "${end##*:}" priority 0; policy accept;
        numgen random mod 1000 < 10 counter drop
    }
}
EOF
    done
    LOSS_BY="nftables ingress drop"
fi

start_netdeploy "$SERVER_NS" 10.213.0.1:6969
start_tftpd_hpa "$SERVER_NS" 10.213.0.1:6970
# The same server granting windows of fragmented blocks as asked (tftp.fragmented_windows).
start_netdeploy "$SERVER_NS" 10.213.0.1:6971 1
LOSSY_REPS=$(( REPS < 3 ? REPS : 3 ))

echo
echo "== veth, MTU 1500, 1% packet loss each way ($LOSS_BY), tftp_fetch client, MB/s"
echo "   windowsize 16 is the median of $LOSSY_REPS (min-max); slower runs once. Before each run"
echo "   the client's IP reassembly memory is left to drain, so that runs do not blind each other."
echo "   netdeploy grants a window blocks that fit the MTU (1468 bytes) whatever blksize is asked;"
echo "   'as asked' is the same server with fragmented_windows = true."
make_file lossy.bin "$LOSSY_SIZE_MB"
make_file lossy-small.bin 2
printf '%-8s %-6s %-24s %-16s %-16s %-12s %s\n' blksize MiB "netdeploy win 16" "netdeploy win 1" \
    "win 16 as asked" tftpd-hpa "win 16 / tftpd-hpa"
for blksize in 1468 8192 65464; do
    file=lossy.bin size=$LOSSY_SIZE_MB reps=$LOSSY_REPS
    # 64 KiB blocks are 45 fragments: 36% of them are lost, and every server crawls.
    [[ $blksize == 65464 ]] && file=lossy-small.bin size=2 reps=1
    nd16=$(median "$reps" fetch "$CLIENT_NS" 10.213.0.1 6969 "$file" "$blksize" 16)
    nd1=$(download fetch "$CLIENT_NS" 10.213.0.1 6969 "$file" "$blksize" 1)
    asked=$(download fetch "$CLIENT_NS" 10.213.0.1 6971 "$file" "$blksize" 16)
    hpa=$(download fetch "$CLIENT_NS" 10.213.0.1 6970 "$file" "$blksize" 16)
    printf '%-8s %-6s %-24s %-16s %-16s %-12s %s\n' "$blksize" "$size" "$nd16" "$nd1" "$asked" "$hpa" \
        "$(ratio "$(first "$nd16")" "$hpa")"
done

echo
echo "== the same link, atftp as the client, blksize 8192, ${LOSSY_SIZE_MB} MiB, one run each, MB/s"
nd=$(download atftp "$CLIENT_NS" 10.213.0.1 6969 lossy.bin 8192 16)
hpa=$(download atftp "$CLIENT_NS" 10.213.0.1 6970 lossy.bin 8192 16)
echo "netdeploy win 16: $nd   tftpd-hpa: $hpa   ratio $(ratio "$nd" "$hpa")"
show_drops
