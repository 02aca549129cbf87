#!/usr/bin/env bash
# farmlb end to end, narrated (run as root): builds farmlb and farm-server,
# makes the namespaces (scripts/netns.sh), starts three farm servers, iperf3
# servers and farmlb (config/demo.toml), sends real traffic from the client
# namespace and says what happened. Everything is torn down on exit.
#   scripts/e2e.sh            release build
#   PROFILE=debug scripts/e2e.sh
#   FARMLB=path FARM_SERVER=path scripts/e2e.sh    use these binaries, no build
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PROFILE=${PROFILE:-release}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/$PROFILE
FARMLB=${FARMLB:-}
FARM_SERVER=${FARM_SERVER:-}
WORK=$(mktemp -d /tmp/farmlb-e2e.XXXXXX)
VIP=198.18.30.100
PIDS=()

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
in_client() { timeout -k 2 "${T:-30}" ip netns exec flb-client "$@"; }

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  "$ROOT"/scripts/netns.sh down || true
  echo "e2e: torn down (logs in $WORK)"
}
trap cleanup EXIT

if [[ -z $FARMLB || -z $FARM_SERVER ]]; then
  say "building farmlb and farm-server ($PROFILE)"
  flag=()
  [[ $PROFILE == release ]] && flag=(--release)
  cargo build -q "${flag[@]}" -p farmlb -p farm-server
fi
FARMLB=${FARMLB:-$BIN/farmlb}
FARM_SERVER=${FARM_SERVER:-$BIN/farm-server}
"$FARMLB" check-config config/demo.toml

say "network namespaces: flb-client -- farmlb (flb-lb) -- flb-s1..3"
scripts/netns.sh up
ip netns list | sort | sed 's/^/  /'

say "starting farm servers web1..3 (weights 1,1,2) and iperf3 servers"
for i in 1 2 3; do
  ip netns exec flb-s$i "$FARM_SERVER" --name web$i --listen 0.0.0.0:8080 \
    --sub-farm-url http://web$i.shop.farm.test/ --cookie-domain shop.farm.test \
    --db "sqlite:$WORK/farm.db" >"$WORK/web$i.log" 2>&1 &
  PIDS+=($!)
  ip netns exec flb-s$i iperf3 -s -p 5201 >"$WORK/iperf$i.log" 2>&1 &
  PIDS+=($!)
done

say "starting farmlb: main farm unit $VIP:80, sub-farm units 198.18.30.101-103:80, iperf3 on $VIP:5201"
ip netns exec flb-lb "$FARMLB" --log info run --config config/demo.toml \
  --run-for 300s --stats-out "$WORK/stats.json" >"$WORK/farmlb.log" 2>&1 &
LB=$!
PIDS+=("$LB")
for _ in $(seq 1 50); do
  T=2 in_client curl -sf -m 1 -o /dev/null http://$VIP/health && break
  sleep 0.3
done
T=3 in_client curl -sf -m 2 -o /dev/null http://$VIP/health ||
  { echo "farmlb does not answer; its log:"; cat "$WORK/farmlb.log"; exit 1; }
echo "  the main farm unit answers"

say "2000 requests to the main farm unit, a new connection each (ab -c 8)"
declare -A before
for i in 1 2 3; do
  before[$i]=$(ip netns exec flb-s$i curl -s http://127.0.0.1:8080/stats | grep -o '"requests_total":[0-9]*' | cut -d: -f2)
done
T=60 in_client ab -q -n 2000 -c 8 http://$VIP/health >"$WORK/ab.txt"
grep -E "Complete requests|Failed requests|Requests per second|Time per request.*across" "$WORK/ab.txt" | sed 's/^/  /'
for i in 1 2 3; do
  now=$(ip netns exec flb-s$i curl -s http://127.0.0.1:8080/stats | grep -o '"requests_total":[0-9]*' | cut -d: -f2)
  n=$((now - before[$i] - 1))
  echo "  web$i served $n ($((n * 100 / 2000))%)"
done

say "500 requests to web2's sub-farm unit 198.18.30.102"
# Source ports apart from those ab just used: in NAT mode farmlb refuses a new
# flow whose reply tuple (server, client address and port) is still held by an
# older, even closed, flow (see tests/e2e.rs); the SYN would wait for it to expire.
ip netns exec flb-client sysctl -qw net.ipv4.ip_local_port_range="10000 19999"
T=60 in_client curl -s --no-progress-meter --parallel --parallel-max 8 -H 'Connection: close' \
  -w '\nR %header{x-farm-server}\n' "http://198.18.30.102/health?n=[1-500]" |
  grep '^R ' | sort | uniq -c | sed 's/^/  served by/'

say "a session: the first page comes through the main farm unit"
ip netns exec flb-client sysctl -qw net.ipv4.ip_local_port_range="20000 24999"
JAR=$WORK/cookies.txt
T=10 in_client curl -s -c "$JAR" -b "$JAR" -H 'Accept: text/html' -D "$WORK/h1" -o "$WORK/page.html" http://shop.farm.test/
first=$(grep -i '^x-farm-server:' "$WORK/h1" | tr -d '\r' | awk '{print $2}')
own=$(grep -o "http://web[0-9].shop.farm.test/" "$WORK/page.html" | head -1)
echo "  served by $first; its page links to $own"
for i in 1 2 3; do
  T=10 in_client curl -s -c "$JAR" -b "$JAR" -D "$WORK/h2" -o /dev/null "${own}cart"
  echo "  follow-up $i to $own: $(grep -iE '^x-(farm-server|cache):' "$WORK/h2" | tr -d '\r' | tr '\n' ' ')"
done

say "iperf3 TCP for 5 s through $VIP:5201"
T=30 in_client iperf3 -c $VIP -p 5201 -t 5 | grep -E "sender|receiver" | sed 's/^/  /'

say "stopping farmlb"
kill -TERM "$LB"
wait "$LB" || true
if command -v python3 >/dev/null && [[ -s $WORK/stats.json ]]; then
  python3 - "$WORK/stats.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
drops = {k: v for k, v in s.get("drops", {}).items() if v}
print("  farmlb drops:", drops or "none")
for p in s.get("ports", []):
    print("  port {}: rx {} tx {} packets".format(p.get("name"), p.get("rx_packets"), p.get("tx_packets")))
EOF
fi
