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
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)

need() {
    command -v "$1" >/dev/null || { echo "missing $1: install the Debian package $2" >&2; exit 1; }
}
need curl curl
need nginx nginx-light
need wrk wrk
need cargo cargo

WORK=$(mktemp -d /tmp/http-small-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "building netdeploy (release)..."
(cd "$ROOT_DIR" && cargo build --release --locked -q --bin netdeploy)
ND="$ROOT_DIR/target/release/netdeploy"

mkdir -p "$WORK/pkg" "$WORK/www" "$WORK/tftp"
head -c "$SIZE" /dev/urandom > "$WORK/pkg/small.bin"
cp "$WORK/pkg/small.bin" "$WORK/www/small.bin"
"$ND" --data-dir "$WORK/data" package create --id small --from "$WORK/pkg" >/dev/null 2>&1
SHA=$(sha256sum "$WORK/pkg/small.bin" | cut -d' ' -f1)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ND_PORT=$(free_port)
cat > "$WORK/netdeploy.toml" <<TOML
[server]
interfaces = ["lo"]
address = "127.0.0.1"
data_dir = "$WORK/data"
[dhcp]
mode = "proxy"
port = 0
proxy_port = 0
[tftp]
root = "$WORK/tftp"
port = 0
[http]
port = $ND_PORT
TOML
NETDEPLOY_LOG=warn "$ND" serve --config "$WORK/netdeploy.toml" > "$WORK/nd.out" 2> "$WORK/nd.err" &
pids+=($!)

NG_PORT=$(free_port)
mkdir -p "$WORK/nginx/logs"
cat > "$WORK/nginx.conf" <<CONF
user root;
worker_processes 2;
error_log $WORK/nginx/logs/error.log warn;
pid $WORK/nginx/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path $WORK/nginx/tmp;
    proxy_temp_path $WORK/nginx/tmp;
    fastcgi_temp_path $WORK/nginx/tmp;
    uwsgi_temp_path $WORK/nginx/tmp;
    scgi_temp_path $WORK/nginx/tmp;
    server { listen 127.0.0.1:$NG_PORT; root $WORK/www; }
}
CONF
nginx -c "$WORK/nginx.conf" -p "$WORK/nginx" -g 'daemon off;' &
pids+=($!)

for _ in $(seq 1 100); do
    [[ -s "$WORK/nd.out" ]] && curl -s -o /dev/null "http://127.0.0.1:$NG_PORT/small.bin" && break
    sleep 0.1
done

ND_URL="http://127.0.0.1:$ND_PORT/content/$SHA"
NG_URL="http://127.0.0.1:$NG_PORT/small.bin"
# Both serve the same bytes.
for url in "$ND_URL" "$NG_URL"; do
    got=$(curl -s --max-time 10 "$url" | sha256sum | cut -d' ' -f1)
    [[ "$got" == "$SHA" ]] || { echo "wrong bytes from $url" >&2; exit 1; }
done

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
ratio() { python3 -c "print(f'{$1/$2*100:.0f}%' if $2 else 'n/a')"; }

echo
echo "HTTP small files, ${SIZE} bytes, loopback, keep-alive, ${SECONDS_PER_RUN} s per run, best of $REPS"
for conns in 16 1; do
    nd=$(rate "$ND_URL" "$conns"); ng=$(rate "$NG_URL" "$conns")
    printf '  %2d connection(s): netdeploy %9.0f req/s   nginx %9.0f req/s   netdeploy/nginx %s\n' \
        "$conns" "$nd" "$ng" "$(ratio "$nd" "$ng")"
done
