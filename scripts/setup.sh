#!/usr/bin/env bash
# Installs what farmlb needs to build and test on Debian 12 (run as root).
# Idempotent: installs only packages that are missing.
#   scripts/setup.sh            build + test dependencies
#   scripts/setup.sh --demo     also what the demo needs
set -euo pipefail

need=(dpdk dpdk-dev libdpdk-dev libclang-dev pkg-config
      python3-scapy tcpdump iproute2 ethtool curl
      # end-to-end test and demo (tests/e2e.rs, scripts/e2e.sh)
      apache2-utils iperf3 python3 iputils-ping nginx-light
      # packet loss for the spliced-connection test (tests/e2e_splice.rs)
      nftables
      # several nodes behind a BGP/ECMP router (tests/e2e_nodes.rs, scripts/nodes.sh)
      bird2
      # the status page in a headless browser (tests/status_page.rs)
      chromium chromium-driver fonts-liberation)
if [[ "${1:-}" == "--demo" ]]; then
  # socat: the demo's note on forwarding a host port to the status page
  need+=(nginx-light socat)
fi

missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing packages: ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found: install Rust (rustup) first" >&2
  exit 1
fi
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt

pkg-config --atleast-version=22.11 libdpdk || {
  echo "setup: libdpdk >= 22.11 not found by pkg-config after install" >&2
  exit 1
}
echo "setup: ok (DPDK $(pkg-config --modversion libdpdk))"
