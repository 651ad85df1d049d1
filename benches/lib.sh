# shellcheck shell=bash
# benches/lib.sh - what the HTTP benchmarks share: tool checks, a work directory that is removed
# with everything started in it, and one file served by netdeploy (/content/<sha256>) and by
# nginx on loopback, checked to be the same bytes. Sourced; sets ROOT_DIR, WORK, ND.

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

need() {
    command -v "$1" >/dev/null || { echo "missing $1: install the Debian package $2" >&2; exit 1; }
}

# bench_workdir PREFIX: a fresh work directory; every PID added to `pids` is killed at exit.
bench_workdir() {
    WORK=$(mktemp -d "/tmp/$1.XXXXXX")
    pids=()
    trap bench_cleanup EXIT
}
bench_cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}

ND="$ROOT_DIR/target/release/netdeploy"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ratio() { python3 -c "print(f'{$1/$2*100:.0f}%' if $2 else 'n/a')"; }

# serve_both NAME: netdeploy serves the content whose hash is $SHA (imported into $WORK/data by
# the caller), nginx serves $WORK/www/NAME. Sets ND_URL and NG_URL once both answer with the
# same bytes.
serve_both() {
    local url got
    start_both "$1"
    for url in "$ND_URL" "$NG_URL"; do
        got=$(curl -s --max-time 120 "$url" | sha256sum | cut -d' ' -f1)
        [[ "$got" == "$SHA" ]] || { echo "wrong bytes from $url" >&2; exit 1; }
    done
}

# start_both NAME: starts netdeploy on $WORK/data and nginx on $WORK/www; sets ND_URL
# (/content/$SHA) and NG_URL (/NAME) once both answer.
start_both() {
    local name=$1 nd_port ng_port
    mkdir -p "$WORK/tftp" "$WORK/nginx/logs"
    nd_port=$(free_port)
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
port = $nd_port
TOML
    NETDEPLOY_LOG=warn "$ND" serve --config "$WORK/netdeploy.toml" > "$WORK/nd.out" 2> "$WORK/nd.err" &
    pids+=($!)
    ng_port=$(free_port)
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
    server { listen 127.0.0.1:$ng_port; root $WORK/www; }
}
CONF
    nginx -c "$WORK/nginx.conf" -p "$WORK/nginx" -g 'daemon off;' &
    pids+=($!)
    for _ in $(seq 1 100); do
        [[ -s "$WORK/nd.out" ]] && curl -s -o /dev/null -r 0-0 "http://127.0.0.1:$ng_port/$name" && break
        sleep 0.1
    done
    ND_URL="http://127.0.0.1:$nd_port/content/$SHA"
    NG_URL="http://127.0.0.1:$ng_port/$name"
}

# pg_start: a throwaway PostgreSQL server (Debian's binaries) in $WORK/pg, reachable only by
# its Unix socket there, run as the postgres user when started by root, with its default
# durability (fsync on). Sets PG_URL (the database `netdeploy`); stopped by bench_cleanup.
pg_start() {
    local bin
    PG_AS=()
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [[ -x "$bin/initdb" ]] || { echo "missing PostgreSQL: install the Debian package postgresql" >&2; exit 1; }
    mkdir -p "$WORK/pg"
    if [[ $(id -u) -eq 0 ]]; then
        chmod o+x "$WORK"
        chown postgres: "$WORK/pg"
        PG_AS=(setpriv --reuid=postgres --regid=postgres --init-groups)
    fi
    "${PG_AS[@]}" "$bin/initdb" -D "$WORK/pg/data" -U netdeploy --auth=trust -E UTF8 >/dev/null
    "${PG_AS[@]}" "$bin/postgres" -D "$WORK/pg/data" -k "$WORK/pg" -c listen_addresses= \
        2>"$WORK/pg/server.log" &
    pids+=($!)
    for _ in $(seq 1 200); do
        [[ -S "$WORK/pg/.s.PGSQL.5432" ]] && break
        sleep 0.1
    done
    "${PG_AS[@]}" "$bin/createdb" -h "$WORK/pg" -U netdeploy netdeploy
    PG_URL="postgresql://netdeploy@${WORK//\//%2F}%2Fpg/netdeploy"
}

# half_full_ext4 SIZE_MB: $WORK/fs.img, an ext4 filesystem of SIZE_MB MiB half full of real
# files copied from /usr (the imaging benchmarks' source). Sets FS.
half_full_ext4() {
    local size_mb=$1
    echo "making a ${size_mb} MiB ext4 filesystem half full of files from /usr..."
    mkdir -p "$WORK/root"
    python3 - "$WORK/root" "$((size_mb * 1024 * 1024 / 2))" <<'PY'
import os, shutil, sys
dest, budget = sys.argv[1], int(sys.argv[2])
total = 0
for top in ("/usr/lib", "/usr/share", "/usr/bin"):
    for d, dirs, files in os.walk(top):
        dirs.sort()
        for f in sorted(files):
            src = os.path.join(d, f)
            if not os.path.isfile(src) or os.path.islink(src):
                continue
            size = os.path.getsize(src)
            if total + size > budget:
                continue
            out = os.path.join(dest, os.path.relpath(src, "/usr"))
            os.makedirs(os.path.dirname(out), exist_ok=True)
            try:
                shutil.copyfile(src, out)
            except OSError:
                continue
            total += size
        if total >= budget * 0.995:
            break
    if total >= budget * 0.995:
        break
print(f"{total / 2**20:.0f} MiB of files")
PY
    FS="$WORK/fs.img"
    mkfs.ext4 -q -F -b 4096 -d "$WORK/root" "$FS" "${size_mb}M"
    rm -rf "$WORK/root"
}
