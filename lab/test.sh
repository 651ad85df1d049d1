#!/usr/bin/env bash
# lab/test.sh - run every netdeploy test: unit, property and integration tests, including the
# QEMU machines that PXE-boot in an isolated lab network. Needs root (network namespaces).
#
# Usage: lab/test.sh [extra arguments for cargo test]
# Ends with one line "tests: N passed, M failed" summed over every test binary.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --locked --workspace --all-targets
# The Windows PE agent, which tests/integration/winpe_wine.rs runs under Wine.
cargo build --locked --target x86_64-pc-windows-gnu -p netdeploy-agent
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked --workspace --lib --bins --tests "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i + 1) ~ /^passed/) p += $i; if ($(i + 1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
