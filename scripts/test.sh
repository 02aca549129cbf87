#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, then runs the
# format check, clippy, the unit tests with and without the `dpdk` feature,
# the pcap-vdev tests against the real binary, and the farm-server tests.
set -euo pipefail
cd "$(dirname "$0")/.."

section() { printf '\n==> %s\n' "$*"; }

section "setup"
scripts/setup.sh

section "format"
cargo fmt --all -- --check

section "clippy (dpdk)"
cargo clippy --workspace --all-targets -- -D warnings

section "clippy (pure core, no dpdk)"
cargo clippy -p farmlb --no-default-features --all-targets -- -D warnings

section "tests: pure core without DPDK"
cargo test -p farmlb --no-default-features

section "tests: everything with DPDK (unit, config files, pcap vdevs)"
# DPDK tests must run: a missing DPDK is a failure, never a skip.
export FARMLB_REQUIRE_DPDK=1
# The end-to-end tests run the farm server next to farmlb: build it first.
cargo build -p farm-server
# Each pcap/namespace test runs a busy-polling farmlb: two at a time on a
# two-core machine keeps their timing honest.
RUST_TEST_THREADS=2 cargo test --workspace --exclude farm-server

if [[ -x scripts/test-farm-server.sh ]]; then
  section "tests: farm-server (SQLite and PostgreSQL)"
  scripts/test-farm-server.sh
fi

section "all tests passed"
