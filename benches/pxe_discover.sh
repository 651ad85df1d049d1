#!/usr/bin/env bash
# PXE DISCOVER load: netdeploy's proxy mode with catalogs of 1,000, 10,000 and 100,000 devices
# against dnsmasq's proxy mode, in one run. A benchmark, not a test: it prints a table and
# ratios; figures vary from run to run on a shared machine, so compare within one run.
#
#   benches/pxe_discover.sh                     # 1,000, 10,000 and 100,000 devices
#   SIZES="1000" STEP_SECONDS=3 benches/pxe_discover.sh
#
# `site apply` of 100,000 devices takes minutes today: the data directory of each catalog is
# kept in PXE_BENCH_CACHE (default /var/tmp/netdeploy-pxe-bench) with the SHA-256 of its site
# file, and copied for the next run while the site file is the same.
#
# perfdhcp (Debian's kea-admin) plays a relay agent in a network namespace and sends PXE
# DISCOVERs (option 60 PXEClient:Arch:00000:UNDI:002001, 93, 94, 97) from a list of MACs: half
# are catalog devices whose collection has a deployment (a PXE menu), half are unknown
# computers (a deployment for Unknown Computers), so every DISCOVER gets an offer after a real
# decision. perfdhcp sends one option 97 for all: netdeploy sees that UUID with many MACs, takes
# it for a duplicate and knows each machine by its MAC (docs/identity.md).
#
# The catalog: 100 devices per collection, one available deployment per two collections, made
# as a site file and applied with `netdeploy site apply`. The server (netdeploy, then dnsmasq
# with `dhcp-range=...,proxy` and a pxe-service) runs in a second namespace joined to the first
# by a veth pair; nothing touches a real interface.
#
# dnsmasq runs right before each catalog size. For each server: the rate goes up in steps (RATES, STEP_SECONDS each) while no DISCOVER is
# lost; the highest clean rate is kept. At half that rate tcpdump records both directions and
# the p99 offer latency is taken from the transaction ids. Then netdeploy's peak resident
# memory (VmHWM). Every run has a time limit; the script kills only what it started (by PID)
# and deletes the namespaces it created.
#
# Needs root, perfdhcp (kea-admin), dnsmasq (dnsmasq-base), tcpdump, iproute2, python3, cargo.

set -euo pipefail
shopt -s inherit_errexit

SIZES=${SIZES:-"1000 10000 100000"}
RATES=${RATES:-"1000 2000 4000 6000 8000 12000 16000 20000 24000 32000"}
STEP_SECONDS=${STEP_SECONDS:-4}
MACS=${MACS:-2000}   # distinct MACs perfdhcp picks from
CACHE=${PXE_BENCH_CACHE:-/var/tmp/netdeploy-pxe-bench}
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)

need() {
    command -v "$1" >/dev/null || { echo "missing $1: install the Debian package $2" >&2; exit 1; }
}
need perfdhcp kea-admin
need dnsmasq dnsmasq-base
need tcpdump tcpdump
need ip iproute2
need python3 python3
need cargo cargo
[[ $(id -u) == 0 ]] || { echo "needs root (network namespaces)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/pxe-bench.XXXXXX)
NS_S="ndpxe$$s"
NS_C="ndpxe$$c"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    ip netns del "$NS_S" 2>/dev/null || true
    ip netns del "$NS_C" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release --locked -p netdeploy --manifest-path "$ROOT_DIR/Cargo.toml" >&2
ND="$ROOT_DIR/target/release/netdeploy"

# Two namespaces and a veth pair: the server at 10.213.0.1, perfdhcp (the relay) at .2.
ip netns add "$NS_S"
ip netns add "$NS_C"
ip link add "vs$$" netns "$NS_S" type veth peer name "vc$$" netns "$NS_C"
ip -n "$NS_S" addr add 10.213.0.1/24 dev "vs$$"
ip -n "$NS_C" addr add 10.213.0.2/24 dev "vc$$"
for ns in "$NS_S" "$NS_C"; do
    ip -n "$ns" link set lo up
done
ip -n "$NS_S" link set "vs$$" up
ip -n "$NS_C" link set "vc$$" up

# A small boot image (in the cache, so that the site files stay the same from run to run) and
# the boot files proxy mode names.
mkdir -p "$WORK/tftp" "$CACHE"
printf 'kernel bytes' > "$CACHE/vmlinuz"
printf 'initrd bytes' > "$CACHE/initrd.img"
for f in undionly.kpxe snponly.efi ipxe.efi; do printf '%s stand-in' "$f" > "$WORK/tftp/$f"; done

# site SIZE: writes $WORK/site-SIZE.toml and the perfdhcp MAC list $WORK/macs-SIZE.
site() {
    python3 - "$1" "$WORK" "$MACS" "$CACHE" <<'PY'
import sys, random
n, work, macs, cache = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
per = 100
cols = n // per
out = [f'''site_code = "LAB"
[settings]
unknown_computers = true

[[boot_image]]
id = "linux-x64"
arch = "x64"
kernel = "{cache}/vmlinuz"
initrd = "{cache}/initrd.img"
cmdline = "console=ttyS0"

[[task_sequence]]
id = "hello"
name = "Say hello"
boot_image = "linux-x64"
steps = [{{ name = "hello", action = "run_command", command = "echo hello" }}]
''']
def mac(i):
    return "02:%02x:%02x:%02x:%02x:%02x" % (0x10, (i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255)
for i in range(n):
    out.append(f'[[device]]\nname = "pc{i:06d}"\nmacs = ["{mac(i)}"]\n')
for c in range(cols):
    members = ", ".join(f'"pc{i:06d}"' for i in range(c * per, (c + 1) * per))
    out.append(f'[[collection]]\nid = "col{c:05d}"\nmembers = [{members}]\n')
number = 1
for c in range(0, cols, 2):
    out.append(f'[[deployment]]\nid = "LAB{number:05X}"\ntask_sequence = "hello"\ncollection = "col{c:05d}"\n'
               'purpose = "available"\navailable_to = "media_pxe"\n')
    number += 1
out.append(f'[[deployment]]\nid = "LAB{number:05X}"\ntask_sequence = "hello"\ncollection = "unknown_computers"\n'
           'purpose = "available"\navailable_to = "media_pxe"\n')
open(f"{work}/site-{n}.toml", "w").write("\n".join(out))
# Half the MACs are devices of even collections (targeted), half unknown computers.
rnd = random.Random(n)
targeted = [i for i in range(n) if (i // per) % 2 == 0]
lines = [mac(rnd.choice(targeted)) for _ in range(macs // 2)]
lines += ["02:20:%02x:%02x:%02x:%02x" % tuple(rnd.randrange(256) for _ in range(4)) for _ in range(macs - macs // 2)]
open(f"{work}/macs-{n}", "w").write("\n".join(lines) + "\n")
PY
}

PXE_CLASS=$(printf 'PXEClient:Arch:00000:UNDI:002001' | od -An -tx1 | tr -d ' \n')
UUID_OPT=00$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')

# perfdhcp_run SIZE RATE SECONDS: one perfdhcp run from the relay namespace; prints
# "sent received avg_ms".
perfdhcp_run() {
    local out
    out=$(timeout $(($3 + 15)) ip netns exec "$NS_C" perfdhcp -4 -i -r "$2" -p "$3" -W 1000000 \
        -M "$WORK/macs-$1" -l 10.213.0.2 \
        -o "60,$PXE_CLASS" -o 93,0000 -o 94,010201 -o "97,$UUID_OPT" 10.213.0.1 2>&1 || true)
    echo "$out" > "$WORK/perfdhcp.last"
    python3 - "$WORK/perfdhcp.last" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
part = t.split("DISCOVER-OFFER:")[-1]
def num(key):
    m = re.search(key + r":\s*([0-9.]+)", part)
    return m.group(1) if m else "0"
print(num("sent packets"), num("received packets"), num("avg delay"))
PY
}

# clean_rate SIZE: sets RATE, the highest rate of RATES with every DISCOVER answered.
# (Functions that start processes set globals rather than print, so that they run in this
# shell and every PID they add is killed at exit.)
clean_rate() {
    local r sent recv avg
    RATE=0
    for r in $RATES; do
        read -r sent recv avg < <(perfdhcp_run "$1" "$r" "$STEP_SECONDS")
        echo "  $r/s: sent $sent, offers $recv, avg ${avg} ms" >&2
        if [[ $sent -gt 0 && $sent == "$recv" ]]; then RATE=$r; else break; fi
    done
}

# p99_at SIZE RATE: sets P99, the p99 offer latency in ms at RATE, from a capture on the
# server's side.
p99_at() {
    local cap="$WORK/cap.pcap" tpid
    ip netns exec "$NS_S" tcpdump -i "vs$$" -w "$cap" -s 400 -U udp port 67 2>/dev/null &
    tpid=$!
    PIDS+=("$tpid")
    sleep 1
    perfdhcp_run "$1" "$2" "$STEP_SECONDS" > /dev/null
    sleep 0.5
    kill "$tpid"; wait "$tpid" 2>/dev/null || true
    P99=$(python3 - "$cap" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
magic = struct.unpack("<I", data[:4])[0]
nano = magic == 0xa1b23c4d
off, sent, lat = 24, {}, []
while off + 16 <= len(data):
    sec, frac, incl, _ = struct.unpack("<IIII", data[off:off + 16])
    pkt = data[off + 16: off + 16 + incl]
    off += 16 + incl
    t = sec + frac / (1e9 if nano else 1e6)
    ip = pkt[14:]
    if len(ip) < 28 or ip[9] != 17:
        continue
    bootp = ip[(ip[0] & 15) * 4 + 8:]
    if len(bootp) < 8:
        continue
    op, xid = bootp[0], bootp[4:8]
    if op == 1:
        sent.setdefault(xid, t)
    elif op == 2 and xid in sent:
        lat.append((t - sent.pop(xid)) * 1000)
lat.sort()
print(f"{lat[int(len(lat) * 0.99) - 1]:.2f}" if lat else "n/a")
PY
)
}

run_netdeploy() {
    local n=$1 data="$WORK/data-$1" pid t0 t1 sha
    sha=$(sha256sum < "$WORK/site-$n.toml" | cut -c1-64)
    if [[ -d "$CACHE/data-$n" && $(cat "$CACHE/data-$n.sha256" 2>/dev/null) == "$sha" ]]; then
        cp -a "$CACHE/data-$n" "$data"
        echo "netdeploy, $n devices (catalog from $CACHE/data-$n):" >&2
    else
        t0=$(date +%s.%N)
        "$ND" --data-dir "$data" site apply "$WORK/site-$n.toml" > "$WORK/apply-$n.log" 2>&1 ||
            { cat "$WORK/apply-$n.log" >&2; exit 1; }
        t1=$(date +%s.%N)
        rm -rf "$CACHE/data-$n"
        cp -a "$data" "$CACHE/data-$n"
        echo "$sha" > "$CACHE/data-$n.sha256"
        echo "netdeploy, $n devices (site apply $(python3 -c "print(f'{$t1-$t0:.1f}')") s):" >&2
    fi
    cat > "$WORK/netdeploy-$n.toml" <<TOML
[server]
interfaces = ["vs$$"]
address = "10.213.0.1"
data_dir = "$data"
[dhcp]
mode = "proxy"
proxy_port = 0
[tftp]
root = "$WORK/tftp"
port = 0
[http]
port = 0
TOML
    NETDEPLOY_LOG=warn ip netns exec "$NS_S" "$ND" serve --config "$WORK/netdeploy-$n.toml" \
        > "$WORK/nd.out" 2> "$WORK/nd.err" &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 1 300); do [[ -s "$WORK/nd.out" ]] && break; sleep 0.1; done
    [[ -s "$WORK/nd.out" ]] || { cat "$WORK/nd.err" >&2; exit 1; }
    clean_rate "$n"
    P99=n/a
    [[ $RATE -gt 0 ]] && p99_at "$n" $((RATE / 2))
    ND_RESULT="$n $RATE $P99 $(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

run_dnsmasq() {
    local pid
    echo "dnsmasq proxy ($1 devices' MACs):" >&2
    ip netns exec "$NS_S" dnsmasq --keep-in-foreground --no-daemon --port=0 --no-resolv --no-hosts \
        --conf-file=/dev/null --interface="vs$$" --bind-interfaces --quiet-dhcp --log-facility=/dev/null \
        --pid-file="$WORK/dnsmasq.pid" --dhcp-range=10.213.0.0,proxy \
        --pxe-service=x86PC,"netboot",undionly.kpxe 2> "$WORK/dnsmasq.err" &
    pid=$!
    PIDS+=("$pid")
    sleep 1
    kill -0 "$pid" || { cat "$WORK/dnsmasq.err" >&2; exit 1; }
    clean_rate "$1"
    P99=n/a
    [[ $RATE -gt 0 ]] && p99_at "$1" $((RATE / 2))
    DM_RESULT="$RATE $P99"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

# dnsmasq runs right before each catalog size, with that size's MACs, so that both servers see
# the same load on a shared machine.
results=()
for n in $SIZES; do
    site "$n"
    run_dnsmasq "$n"
    run_netdeploy "$n"
    results+=("$ND_RESULT $DM_RESULT")
done

echo
echo "PXE DISCOVER -> proxy OFFER, perfdhcp in a namespace, ${STEP_SECONDS} s per step"
printf '%-9s %16s %16s %8s %22s %12s\n' devices "netdeploy clean/s" "dnsmasq clean/s" ratio \
    "p99 at half, nd / dm" "nd VmHWM MB"
for r in "${results[@]}"; do
    read -r n rate p99 hwm dm_rate dm_p99 <<< "$r"
    ratio=$(python3 -c "print(f'{$rate/$dm_rate*100:.0f}%' if $dm_rate else 'n/a')")
    printf '%-9s %16s %16s %8s %22s %12s\n' "$n" "$rate" "$dm_rate" "$ratio" "$p99 / $dm_p99 ms" "$hwm"
done
