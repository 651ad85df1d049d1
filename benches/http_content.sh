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
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)

need() {
    command -v "$1" >/dev/null || { echo "missing $1: install the Debian package $2" >&2; exit 1; }
}
need curl curl
need nginx nginx-light
need openssl openssl
need cargo cargo

WORK=$(mktemp -d /tmp/http-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "building netdeploy and the agent (release)..."
(cd "$ROOT_DIR" && cargo build --release --locked -q --bin netdeploy)
have_agent=0
if (cd "$ROOT_DIR" && cargo build --release --locked -q -p netdeploy-agent 2>/dev/null); then
    have_agent=1
fi
ND="$ROOT_DIR/target/release/netdeploy"

echo "making a ${SIZE_MB} MiB file..."
mkdir -p "$WORK/pkg" "$WORK/www" "$WORK/tftp"
head -c "$((SIZE_MB * 1024 * 1024))" /dev/urandom > "$WORK/pkg/big.bin"
ln "$WORK/pkg/big.bin" "$WORK/www/big.bin"
"$ND" --data-dir "$WORK/data" package create --id big --from "$WORK/pkg" >/dev/null 2>&1
SHA=$(sha256sum "$WORK/pkg/big.bin" | cut -d' ' -f1)

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
    [[ -s "$WORK/nd.out" ]] && curl -s -o /dev/null "http://127.0.0.1:$NG_PORT/big.bin" -r 0-0 && break
    sleep 0.1
done

ND_URL="http://127.0.0.1:$ND_PORT/content/$SHA"
NG_URL="http://127.0.0.1:$NG_PORT/big.bin"
# Both serve the same bytes.
for url in "$ND_URL" "$NG_URL"; do
    got=$(curl -s --max-time 120 "$url" | sha256sum | cut -d' ' -f1)
    [[ "$got" == "$SHA" ]] || { echo "wrong bytes from $url" >&2; exit 1; }
done

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
ratio() { python3 -c "print(f'{$1/$2*100:.0f}%')"; }

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
