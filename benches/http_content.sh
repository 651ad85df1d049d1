#!/usr/bin/env bash
# HTTP content throughput: netdeploy's /content/<sha256> against nginx serving the same file,
# in the same run, on loopback; and the agent's SHA-256 verify rate against `openssl dgst`.
# A benchmark, not a test: it prints MB/s and ratios and fails only if a tool is missing or a
# download is wrong.
#
#   benches/http_content.sh               # 300 MiB file, 3 repetitions
#   SIZE_MB=100 REPS=1 benches/http_content.sh
#
# Single stream (one curl) and 16 concurrent streams (16 curls at once, the total rate).
# Needs: cargo, curl, nginx (Debian package nginx-light), openssl. Kills only what it started.
set -euo pipefail
SIZE_MB=${SIZE_MB:-300}
REPS=${REPS:-3}
. "$(dirname "$0")/lib.sh"
need curl curl
need nginx nginx-light
need openssl openssl
need cargo cargo

bench_workdir http-bench

echo "building netdeploy and the agent (release)..."
(cd "$ROOT_DIR" && cargo build --release --locked -q --bin netdeploy)
have_agent=0
if (cd "$ROOT_DIR" && cargo build --release --locked -q -p netdeploy-agent 2>/dev/null); then
    have_agent=1
fi

echo "making a ${SIZE_MB} MiB file..."
mkdir -p "$WORK/pkg" "$WORK/www"
head -c "$((SIZE_MB * 1024 * 1024))" /dev/urandom > "$WORK/pkg/big.bin"
ln "$WORK/pkg/big.bin" "$WORK/www/big.bin"
"$ND" --data-dir "$WORK/data" package create --id big --from "$WORK/pkg" >/dev/null 2>&1
SHA=$(sha256sum "$WORK/pkg/big.bin" | cut -d' ' -f1)

serve_both big.bin

# Best of REPS, in MB/s (MiB counted as 1.048576 MB).
single() {
    local url=$1 best=0
    for _ in $(seq 1 "$REPS"); do
        r=$(curl -s --max-time 120 -o /dev/null -w '%{speed_download}' "$url")
        best=$(python3 -c "print(max($best, $r/1e6))")
    done
    echo "$best"
}
parallel() {
    local url=$1 best=0
    for _ in $(seq 1 "$REPS"); do
        start=$(date +%s.%N)
        seq 1 16 | xargs -P 16 -I{} curl -s --max-time 300 -o /dev/null "$url"
        end=$(date +%s.%N)
        r=$(python3 -c "print(16*$SIZE_MB*1.048576/($end-$start))")
        best=$(python3 -c "print(max($best, $r))")
    done
    echo "$best"
}

echo
echo "HTTP content, ${SIZE_MB} MiB, loopback, best of $REPS"
nd1=$(single "$ND_URL"); ng1=$(single "$NG_URL")
printf '  single stream : netdeploy %8.0f MB/s   nginx %8.0f MB/s   netdeploy/nginx %s\n' "$nd1" "$ng1" "$(ratio "$nd1" "$ng1")"
nd16=$(parallel "$ND_URL"); ng16=$(parallel "$NG_URL")
printf '  16 concurrent : netdeploy %8.0f MB/s   nginx %8.0f MB/s   netdeploy/nginx %s\n' "$nd16" "$ng16" "$(ratio "$nd16" "$ng16")"

echo
echo "SHA-256 verify rate, same file (page cache warm)"
cat "$WORK/pkg/big.bin" > /dev/null
t0=$(date +%s.%N); openssl dgst -sha256 "$WORK/pkg/big.bin" >/dev/null; t1=$(date +%s.%N)
ossl=$(python3 -c "print($SIZE_MB*1.048576/($t1-$t0))")
printf '  openssl dgst -sha256 : %8.0f MB/s\n' "$ossl"
if [[ $have_agent == 1 ]]; then
    t0=$(date +%s.%N); "$ROOT_DIR/target/release/netdeploy-agent" verify "$WORK/pkg/big.bin" "$SHA" >/dev/null; t1=$(date +%s.%N)
    agent=$(python3 -c "print($SIZE_MB*1.048576/($t1-$t0))")
    printf '  netdeploy-agent verify: %8.0f MB/s   agent/openssl %s\n' "$agent" "$(ratio "$agent" "$ossl")"
else
    echo "  netdeploy-agent is not built in this tree; verify rate not measured"
fi
