#!/usr/bin/env bash
# Small files over HTTP: requests per second for a 4 KiB file from netdeploy's /content/<sha256>
# against nginx serving the same file, in the same run, on loopback, over keep-alive connections
# (wrk). A benchmark, not a test: it prints req/s and ratios and fails only if a tool is missing
# or a download is wrong.
#
#   benches/http_small_files.sh                       # 4 KiB, 16 and 1 connections, 5 s, best of 3
#   SIZE=65536 SECONDS_PER_RUN=3 REPS=1 benches/http_small_files.sh
#
# Needs: cargo, curl, nginx (Debian package nginx-light), wrk. Kills only what it started.
set -euo pipefail
SIZE=${SIZE:-4096}
REPS=${REPS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
. "$(dirname "$0")/lib.sh"
need curl curl
need nginx nginx-light
need wrk wrk
need cargo cargo

bench_workdir http-small-bench

echo "building netdeploy (release)..."
(cd "$ROOT_DIR" && cargo build --release --locked -q --bin netdeploy)

mkdir -p "$WORK/pkg" "$WORK/www"
head -c "$SIZE" /dev/urandom > "$WORK/pkg/small.bin"
cp "$WORK/pkg/small.bin" "$WORK/www/small.bin"
"$ND" --data-dir "$WORK/data" package create --id small --from "$WORK/pkg" >/dev/null 2>&1
SHA=$(sha256sum "$WORK/pkg/small.bin" | cut -d' ' -f1)

serve_both small.bin

# Best of REPS, in requests per second; wrk's own run time bounds each one. A run with socket
# errors or non-2xx answers counts as 0.
rate() {
    local url=$1 conns=$2 threads best=0 out r
    threads=$(( conns < 2 ? 1 : 2 ))
    for _ in $(seq 1 "$REPS"); do
        out=$(timeout $((SECONDS_PER_RUN + 30)) wrk -t"$threads" -c"$conns" -d"${SECONDS_PER_RUN}s" --timeout 5s "$url")
        r=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
        if grep -q -e 'Socket errors' -e 'Non-2xx' <<<"$out"; then
            echo "  (errors in a run against $url: $(grep -e 'Socket errors' -e 'Non-2xx' <<<"$out" | tr -s ' '))" >&2
            r=0
        fi
        best=$(python3 -c "print(max($best, ${r:-0}))")
    done
    echo "$best"
}

echo
echo "HTTP small files, ${SIZE} bytes, loopback, keep-alive, ${SECONDS_PER_RUN} s per run, best of $REPS"
for conns in 16 1; do
    nd=$(rate "$ND_URL" "$conns"); ng=$(rate "$NG_URL" "$conns")
    printf '  %2d connection(s): netdeploy %9.0f req/s   nginx %9.0f req/s   netdeploy/nginx %s\n' \
        "$conns" "$nd" "$ng" "$(ratio "$nd" "$ng")"
done
