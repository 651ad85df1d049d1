#!/usr/bin/env bash
# lab/test.sh - run every netdeploy test: unit, property and integration tests, including the
# QEMU machines that PXE-boot in an isolated lab network. Needs root (network namespaces).
#
# Usage: lab/test.sh [extra arguments for cargo test]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --locked --all-targets
cargo test --locked --workspace "$@"
