#!/usr/bin/env bash
# What idle backoff costs in latency: one farmlb node of scripts/nodes.sh's
# topology (config/nodes.toml) run in turn spinning, with idle backoff at its
# default (idle_sleep_max 500us) and with idle_sleep_max 50us; for each, ping
# the farm unit address (farmlb answers it itself) and time whole HTTP
# requests on new connections from the client (run as root).
#
#   scripts/idle-latency.sh [ROUNDS]      (default 2 rounds of the three)
#
# Binaries from CARGO_TARGET_DIR (default target/): release farmlb if built,
# else debug; farm-server likewise. Prints one block per run with the load.
set -euo pipefail

ROUNDS=${1:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
pick() { if [ -x "$TARGET/release/$1" ]; then echo "$TARGET/release/$1"; else echo "$TARGET/debug/$1"; fi; }
LB=$(pick farmlb)
SRV=$(pick farm-server)
[ -x "$LB" ] && [ -x "$SRV" ] || { echo "idle-latency: build farmlb and farm-server first" >&2; exit 1; }

TMP=$(mktemp -d /tmp/farmlb-idle.XXXXXX)
STATE=$TMP/state
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  "$ROOT/scripts/nodes.sh" down "$STATE" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT

"$ROOT/scripts/nodes.sh" up "$STATE" >/dev/null
for n in 1 2 3; do
  ip netns exec "fn-s$n" "$SRV" --name "web$n" --listen 0.0.0.0:8080 \
    --sub-farm-url "http://198.19.100.1/" --db "sqlite:$TMP/farm.db" >"$TMP/s$n.log" 2>&1 &
  PIDS+=($!)
done

base=$(sed "s#/run/farmlb-nodes#$STATE#" "$ROOT/config/nodes.toml")
echo "$base" | sed 's/^idle_backoff = true/idle_backoff = false/' >"$TMP/spin.toml"
echo "$base" >"$TMP/idle500.toml"
echo "$base" | sed 's/^idle_backoff = true/idle_backoff = true\nidle_sleep_max = "50us"/' >"$TMP/idle50.toml"

# config/nodes.toml's admin API: node 1's uplink address, with its token.
ADMIN=http://198.19.2.11:9190
AUTH="Authorization: Bearer fn-nodes-admin-token"

run() { # NAME
  ip netns exec fn-n1 "$LB" --log warn run --config "$TMP/$1.toml" --run-for 120s >"$TMP/$1.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 100); do
    ip netns exec fn-n1 curl -sf -m 1 -o /dev/null -H "$AUTH" -X PUT -d '{"epoch": 1}' "$ADMIN/epoch" && break
    sleep 0.1
  done
  for _ in $(seq 1 100); do
    ip netns exec fn-client curl -sf -m 0.5 -o /dev/null http://198.19.100.1/health && break
    sleep 0.1
  done
  echo "== $1 (load $(cut -d' ' -f1-3 /proc/loadavg))"
  ip netns exec fn-client ping -q -c 100 -i 0.02 198.19.100.1 | tail -1
  for _ in $(seq 1 30); do
    ip netns exec fn-client curl -s -m 5 -o /dev/null -w "%{time_connect} %{time_total}\n" http://198.19.100.1/health
  done | awk '{c+=$1; t+=$2; if ($2>m) m=$2} END {printf "curl x30 (new connection each): connect %.3f ms, total %.3f ms mean, max %.3f ms\n", c/NR*1000, t/NR*1000, m*1000}'
  ip netns exec fn-n1 curl -s -H "$AUTH" "$ADMIN/metrics" | grep -E '^farmlb_worker_idle_sleep' | tr '\n' ' '
  echo
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

for _ in $(seq 1 "$ROUNDS"); do
  run spin
  run idle500
  run idle50
done
