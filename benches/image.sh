#!/usr/bin/env bash
# Imaging: capture and apply of an ext4 filesystem half full of real files (copied from /usr),
# in the same run, three ways, over HTTP on loopback:
#   raw dd            capture: dd of the whole filesystem; apply: curl | dd
#   partclone+zstd    capture: partclone.extfs -c | zstd -3; apply: curl | zstd -d | partclone.extfs -r
#   netdeploy         capture: netdeploy-agent capture; apply: netdeploy-agent apply-image from
#                     the netdeploy server (index and chunks by hash, each checked before it is written)
# Bytes on the wire are the bytes each apply downloads; every applied filesystem is checked
# with e2fsck -fn and one file is compared. A benchmark, not a test: it prints a table and
# ratios against partclone+zstd, and fails only if a tool is missing or an apply is wrong.
#
#   benches/image.sh              # 1024 MiB filesystem
#   SIZE_MB=256 benches/image.sh
#
# Needs: cargo, curl, nginx (nginx-light), partclone, zstd, e2fsprogs, python3. Kills only
# what it started; everything lives in one work directory under /tmp, removed at exit.
set -euo pipefail
SIZE_MB=${SIZE_MB:-1024}
. "$(dirname "$0")/lib.sh"
need curl curl
need nginx nginx-light
need partclone.extfs partclone
need zstd zstd
need mkfs.ext4 e2fsprogs
need python3 python3
need cargo cargo

bench_workdir image-bench

echo "building netdeploy and the agent (release)..."
(cd "$ROOT_DIR" && cargo build --release --locked -q -p netdeploy --bin netdeploy && cargo build --release --locked -q -p netdeploy-agent)
AGENT="$ROOT_DIR/target/release/netdeploy-agent"

half_full_ext4 "$SIZE_MB"
CHECK_FILE=$(debugfs -R "ls -p /lib" "$FS" 2>/dev/null | awk -F/ '$6 != "" && $3 ~ /^100/ {print "/lib/" $6; exit}')
WANT=$(debugfs -R "cat $CHECK_FILE" "$FS" 2>/dev/null | sha256sum | cut -d' ' -f1)

now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }
size_of() { stat -c %s "$1"; }

mkdir -p "$WORK/www"
echo "capturing..."
t0=$(now); dd if="$FS" of="$WORK/www/raw.img" bs=4M status=none; t1=$(now)
RAW_CAP=$(secs "$t0" "$t1")
t0=$(now)
partclone.extfs -c -q -s "$FS" -o - -L "$WORK/partclone.log" 2>/dev/null | zstd -3 -q -o "$WORK/www/pc.img.zst"
t1=$(now)
PC_CAP=$(secs "$t0" "$t1")
t0=$(now)
read -r _ IDX_SHA IDX_SIZE < <("$AGENT" capture "$FS" "$WORK/pkg" 2>/dev/null)
t1=$(now)
ND_CAP=$(secs "$t0" "$t1")
"$ND" --data-dir "$WORK/data" package create --id disk --from "$WORK/pkg" >/dev/null 2>&1
ND_BYTES=$(du -cb "$WORK/pkg"/* | tail -1 | cut -f1)

SHA=$IDX_SHA
start_both raw.img
NG_BASE=${NG_URL%/raw.img}
ND_BASE=${ND_URL%/content/*}

target() { rm -f "$1"; truncate -s "$(size_of "$FS")" "$1"; }
check() {
    e2fsck -fn "$1" >/dev/null 2>&1 || { echo "$2: e2fsck finds the applied filesystem damaged" >&2; exit 1; }
    got=$(debugfs -R "cat $CHECK_FILE" "$1" 2>/dev/null | sha256sum | cut -d' ' -f1)
    [[ "$got" == "$WANT" ]] || { echo "$2: $CHECK_FILE differs after apply" >&2; exit 1; }
}

echo "applying..."
target "$WORK/t-raw"
t0=$(now)
curl -s -w '%{stderr}%{size_download}' "$NG_BASE/raw.img" 2> "$WORK/raw.wire" |
    dd of="$WORK/t-raw" bs=4M conv=notrunc status=none
sync "$WORK/t-raw"; t1=$(now)
RAW_WIRE=$(cat "$WORK/raw.wire")
RAW_APPLY=$(secs "$t0" "$t1")
check "$WORK/t-raw" "raw dd"

target "$WORK/t-pc"
t0=$(now)
curl -s -w '%{stderr}%{size_download}' "$NG_BASE/pc.img.zst" 2> "$WORK/pc.wire" |
    zstd -d -q | partclone.extfs -r -q -s - -O "$WORK/t-pc" -L "$WORK/partclone.log" >/dev/null 2>&1
sync "$WORK/t-pc"; t1=$(now)
PC_WIRE=$(cat "$WORK/pc.wire")
PC_APPLY=$(secs "$t0" "$t1")
check "$WORK/t-pc" "partclone+zstd"

target "$WORK/t-nd"
t0=$(now)
"$AGENT" apply-image "$ND_BASE" "$IDX_SHA" "$IDX_SIZE" "$WORK/t-nd" 2>/dev/null
t1=$(now)
ND_APPLY=$(secs "$t0" "$t1")
ND_WIRE=$ND_BYTES
check "$WORK/t-nd" "netdeploy"

mib() { python3 -c "print(f'{$1 / 2**20:.1f}')"; }
echo
echo "ext4 of ${SIZE_MB} MiB, half full of files from /usr; apply over HTTP on loopback"
printf '%-16s %14s %12s %10s\n' method "wire MiB" "capture s" "apply s"
printf '%-16s %14s %12s %10s\n' "raw dd" "$(mib "$RAW_WIRE")" "$RAW_CAP" "$RAW_APPLY"
printf '%-16s %14s %12s %10s\n' "partclone+zstd" "$(mib "$PC_WIRE")" "$PC_CAP" "$PC_APPLY"
printf '%-16s %14s %12s %10s\n' "netdeploy" "$(mib "$ND_WIRE")" "$ND_CAP" "$ND_APPLY"
echo
echo "netdeploy / partclone+zstd: wire $(ratio "$ND_WIRE" "$PC_WIRE"), capture $(ratio "$ND_CAP" "$PC_CAP"), apply $(ratio "$ND_APPLY" "$PC_APPLY") (goals: wire <= 100%, apply <= 110%)"
