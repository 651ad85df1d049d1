#!/usr/bin/env bash
# `netdeploy site apply` at scale, on SQLite and on PostgreSQL (a throwaway server started here):
# a generated site file (benches/site_gen.rs: a
# hundred devices per collection, a deployment per two collections, devices by UUID, by MAC and
# by both) applied to an empty catalog, applied again unchanged, and applied with one device
# changed. A benchmark, not a test: it prints wall time, CPU time and peak memory per run, and
# fails only if an apply fails or prints something other than what it should.
#
#   benches/site_apply.sh                    # 10,000, 50,000 and 100,000 devices
#   SIZES="20000 40000 80000" benches/site_apply.sh
#   STORES=sqlite benches/site_apply.sh      # only one store
#
# Needs: cargo, python3, postgresql. Writes only below a temporary directory it removes.
set -euo pipefail
SIZES=${SIZES:-"10000 50000 100000"}
STORES=${STORES:-"sqlite postgresql"}
. "$(dirname "$0")/lib.sh"
need cargo cargo
need python3 python3

bench_workdir site-apply-bench

echo "building netdeploy and the site file generator (release)..."
(cd "$ROOT_DIR" && cargo build --release --locked -q --bin netdeploy --example site_gen)
GEN="$ROOT_DIR/target/release/examples/site_gen"

# run NAME ARGS...: runs netdeploy with ARGS, its stdout in $WORK/NAME.out; prints
# "wall_s cpu_s peak_MiB" (peak resident memory of the process).
run() {
    local name=$1
    shift
    python3 - "$WORK/$name.out" "$@" <<'PY'
import resource, subprocess, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
start = time.monotonic()
with open(out, "wb") as f:
    r = subprocess.run(cmd, stdout=f, stderr=subprocess.PIPE)
wall = time.monotonic() - start
if r.returncode != 0:
    sys.stderr.write(r.stderr.decode(errors="replace"))
    sys.exit(1)
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{wall:.2f} {u.ru_utime + u.ru_stime:.2f} {u.ru_maxrss / 1024:.0f}")
PY
}

# expect NAME WHAT LINES: the run's stdout has LINES lines starting with WHAT.
expect() {
    local got
    got=$(grep -c "^$2" "$WORK/$1.out" || true)
    [ "$got" = "$3" ] || { echo "$1: $got lines \"$2\", expected $3" >&2; exit 1; }
}

[[ " $STORES " == *" postgresql "* ]] && pg_start

rows=()
for n in $SIZES; do
    "$GEN" "$WORK/site-$n" "$n" >/dev/null
    "$GEN" "$WORK/one-$n" "$n" --one-change >/dev/null
    for store in $STORES; do
        data="$WORK/data-$n"
        conf=()
        if [[ $store == postgresql ]]; then
            # A new, empty database for each size.
            "${PG_AS[@]}" psql -q -h "$WORK/pg" -U netdeploy -d netdeploy \
                -c "DROP SCHEMA public CASCADE; CREATE SCHEMA public;" >/dev/null
            printf '[store]\nurl = "%s"\n' "$PG_URL" >"$WORK/store.toml"
            conf=(--config "$WORK/store.toml")
        fi
        echo "applying $n devices ($store)..."
        first=$(run "first-$n" "$ND" "${conf[@]}" --data-dir "$data" site apply "$WORK/site-$n/site.toml")
        expect "first-$n" "created  device " "$n"
        again=$(run "again-$n" "$ND" "${conf[@]}" --data-dir "$data" site apply "$WORK/site-$n/site.toml")
        expect "again-$n" "site BIG: no change" 1
        one=$(run "one-$n" "$ND" "${conf[@]}" --data-dir "$data" site apply "$WORK/one-$n/site.toml")
        expect "one-$n" "changed  device pc-0000001" 1
        rows+=("$n $store $first $again $one")
        rm -rf "$data"
    done
done

echo
echo "| devices | store | first apply | again, no change | one change | peak memory |"
echo "|---|---|---|---|---|---|"
for r in "${rows[@]}"; do
    read -r n store w1 c1 m1 w2 c2 m2 w3 c3 m3 <<<"$r"
    peak=$(printf '%s\n' "$m1" "$m2" "$m3" | sort -n | tail -1)
    printf '| %s | %s | %s s (CPU %s s) | %s s (CPU %s s) | %s s (CPU %s s) | %s MiB |\n' \
        "$n" "$store" "$w1" "$c1" "$w2" "$c2" "$w3" "$c3" "$peak"
done
echo
echo "(SQLite with synchronous = FULL, PostgreSQL with its defaults (fsync on), over a Unix"
echo "socket; each apply is one transaction; CPU is netdeploy's alone; budget 30 s for 100,000"
echo "devices)"
