#!/usr/bin/env bash
# The farmlb demo (run as root on Debian 12): the session story of
# US 7,197,547 told step by step through a real farmlb.
#
# It installs what is missing (scripts/setup.sh --demo), builds the
# binaries (the `demo` profile: optimised, without the release profile's fat
# LTO), makes the namespaces (scripts/netns.sh), starts three farm
# servers (web1..3, one shared SQLite database) and farmlb with
# config/demo.toml, then plays a client: a first page through the main farm
# unit, follow-ups to the server's own sub-farm unit (cache hits), the
# server crashes (the health check takes it down, its sub-farm unit moves to
# the backup, the session goes on from the database), the server restarts
# as a new instance and the client returns to it (flush, reload, hit).
# Chapter 2 tells US 7,702,791: three farm servers with no database keep
# each session on a primary and a secondary named in the route cookie,
# farmlb's HTTP unit (config/replication.toml) reads it, and when the
# primary is killed a new primary (never the secondary) takes the session
# from the secondary. Chapter 3 tells US 7,437,461: a change in flight when
# its primary dies (config/moves.toml) is moved to a new primary on the same
# client connection, and the cart holds it once. Everything is torn down on
# exit.
#   scripts/demo.sh
#   FARMLB=path FARM_SERVER=path scripts/demo.sh    use these binaries, no build
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$(date +%s.%N)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
FARMLB=${FARMLB:-}
FARM_SERVER=${FARM_SERVER:-}
WORK=$(mktemp -d /tmp/farmlb-demo.XXXXXX)
JAR=$WORK/cookies.txt
declare -A PID

B=$'\033[1m' D=$'\033[2m' N=$'\033[0m'
[[ -t 1 ]] || B='' D='' N=''
say() { printf '\n%s== %s%s %s(%s s)%s\n' "$B" "$*" "$N" "$D" "$(elapsed)" "$N"; }
note() { printf '   %s\n' "$*"; }
elapsed() { echo "$(date +%s.%N) $START" | awk '{printf "%.1f", $1 - $2}'; }

cleanup() {
  local p
  for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; done
  "$ROOT"/scripts/netns.sh down || true
  echo "demo: torn down after $(elapsed) s (logs in $WORK)"
}
trap cleanup EXIT

if [[ $(id -u) -ne 0 ]]; then
  echo "demo: run as root (network namespaces)" >&2
  exit 1
fi

say "setup: Debian packages (scripts/setup.sh --demo)"
scripts/setup.sh --demo | sed 's/^/   /'
if [[ -z $FARMLB || -z $FARM_SERVER ]]; then
  say "building farmlb and farm-server (profile demo)"
  cargo build -q --profile demo -p farmlb -p farm-server
fi
FARMLB=${FARMLB:-$TARGET/demo/farmlb}
FARM_SERVER=${FARM_SERVER:-$TARGET/demo/farm-server}

in_client() { timeout -k 2 10 ip netns exec flb-client "$@"; }
admin() { timeout -k 2 5 ip netns exec flb-lb curl -sS -m 3 "$@" "http://127.0.0.1:9190${ADMIN_PATH}"; }

# The server status table (GET /status), formatted.
status_table() {
  ADMIN_PATH=/status admin | python3 -c '
import json, sys
s = json.load(sys.stdin)
print("   {:<6} {:<15} {:<6} {:>6} {:>6}  {}".format("server", "address", "state", "weight", "flows", "last check / last transition"))
for v in s["servers"]:
    if not v["name"].startswith("web"):
        continue
    h = v.get("health") or {}
    last = (v["history"] or [{}])[-1].get("cause", "")
    print("   {:<6} {:<15} {:<6} {:>6} {:>6}  {} / {}".format(v["name"], "%s:%d" % (v["address"], v["port"]), v["state"], v["effective_weight"], v["active_flows"], h.get("last_result") or "-", last or "-"))
for u in s["sub_farm_units"]:
    print("   sub-farm unit {} {}:{} -> {}{}".format(u["name"], u["address"], u["port"], u["active"], " (backup)" if u["promoted"] else ""))
'
}

# Per-server counters (farm-server GET /stats in each server's namespace).
counters() {
  local i
  printf '   %-6s %-17s %5s %5s %7s %8s %8s %8s\n' server instance hits miss flushes db_reads db_write requests
  for i in 1 2 3; do
    timeout -k 2 5 ip netns exec flb-s$i curl -s -m 2 http://127.0.0.1:8080/stats 2>/dev/null | python3 -c '
import json, sys
try:
    s = json.load(sys.stdin)
except ValueError:
    print("   web'$i'   (not running)")
    sys.exit()
print("   {:<6} {:<17} {:>5} {:>5} {:>7} {:>8} {:>8} {:>8}".format(s["server"], s["instance_id"], s["cache_hits"], s["cache_misses"], s["cache_flushes"], s["db_reads"], s["db_writes"], s["requests_total"]))' || true
  done
}

# One client request; prints what happened: method URL -> server, instance, X-Cache, cart.
LAST_SERVER='' LAST_CACHE=''
client() {
  local method=$1 url=$2 body=${3:-} accept=${ACCEPT:-application/json}
  local args=(-sS -m 5 -c "$JAR" -b "$JAR" -X "$method" -H "Accept: $accept" -D "$WORK/h" -o "$WORK/b")
  [[ -n $body ]] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
  in_client curl "${args[@]}" "$url"
  LAST_SERVER=$(grep -i '^x-farm-server:' "$WORK/h" | tr -d '\r' | awk '{print $2}')
  LAST_CACHE=$(grep -i '^x-cache:' "$WORK/h" | tr -d '\r' | awk '{print $2}')
  local inst cart=''
  inst=$(grep -i '^x-instance-id:' "$WORK/h" | tr -d '\r' | awk '{print $2}')
  if [[ $accept == application/json ]]; then
    cart=$(python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
print("cart: " + (", ".join("%d %s" % (l["quantity"], l["item"]) for l in c["items"]) or "empty"))' "$WORK/b")
  fi
  printf '   client: %-6s %-36s -> %s%s%s (instance %s), X-Cache: %s%s%s  %s\n' \
    "$method" "$url" "$B" "$LAST_SERVER" "$N" "$inst" "$B" "$LAST_CACHE" "$N" "$cart"
}

wait_state() { # server state timeout_s: prints how long it took
  local name=$1 want=$2 t0 now
  t0=$(date +%s.%N)
  for _ in $(seq 1 $(($3 * 20))); do
    now=$(ADMIN_PATH=/servers/$name admin | python3 -c 'import json,sys; d = json.load(sys.stdin); print(d.get("server", d)["state"])' 2>/dev/null || true)
    if [[ $now == "$want" ]]; then
      echo "$(date +%s.%N) $t0" | awk '{printf "%.2f", $1 - $2}'
      return 0
    fi
    sleep 0.05
  done
  echo "demo: $name did not become $want" >&2
  return 1
}

start_web() {
  local i=$1
  ip netns exec flb-s$i "$FARM_SERVER" --name web$i --listen 0.0.0.0:8080 \
    --sub-farm-url http://web$i.shop.farm.test/ --cookie-domain shop.farm.test \
    --db "sqlite:$WORK/farm.db" >>"$WORK/web$i.log" 2>&1 &
  PID[web$i]=$!
  for _ in $(seq 1 50); do
    timeout 2 ip netns exec flb-s$i curl -sf -m 1 -o /dev/null http://127.0.0.1:8080/health && return 0
    sleep 0.1
  done
  echo "demo: web$i did not start" >&2
  return 1
}

say "the network: namespaces flb-client -- farmlb (flb-lb) -- flb-s1..3"
scripts/netns.sh up
note "client 198.18.10.2; farmlb: clients port 198.18.10.1, servers port 198.18.20.1 (net_af_packet)"
note "main farm unit shop.farm.test = 198.18.30.100:80; sub-farm units web1..3.shop.farm.test = 198.18.30.101..103:80"

say "three farm servers (session cache, write-through to one SQLite database) and farmlb"
for i in 1 2 3; do start_web $i; done
ip netns exec flb-lb "$FARMLB" --log info run --config config/demo.toml --run-for 170s \
  >"$WORK/farmlb.log" 2>&1 &
PID[farmlb]=$!
for _ in $(seq 1 100); do
  in_client curl -sf -m 1 -o /dev/null http://198.18.30.100/health 2>/dev/null && break
  sleep 0.2
done
in_client curl -sf -m 2 -o /dev/null http://198.18.30.100/health ||
  { echo "farmlb does not answer; its log:"; cat "$WORK/farmlb.log"; exit 1; }
for i in 1 2 3; do wait_state web$i up 5 >/dev/null; done
note "farmlb health-checks every server: GET /health, expects \"farm-server ok\", every 500 ms (+ up to 100 ms jitter), down after 3 failures, up after 2 passes"
note "the status page while the demo runs: ip netns exec flb-lb curl -s http://127.0.0.1:9190/ (HTML); in a browser: ip netns exec flb-lb chromium --no-sandbox http://127.0.0.1:9190/,"
note "  or forward a host port to it: socat TCP-LISTEN:9190,bind=127.0.0.1,fork,reuseaddr SYSTEM:'exec ip netns exec flb-lb socat STDIO TCP\:127.0.0.1\:9190' and open http://127.0.0.1:9190/"
status_table

say "1. the client opens the shop: the main farm unit schedules it to a server"
ACCEPT=text/html client GET http://shop.farm.test/
S=$LAST_SERVER
n=${S#web}
OWN=http://web$n.shop.farm.test/
note "cookies: farm_session=$(awk '$6=="farm_session"{print $7}' "$JAR"), farm_instance=$(awk '$6=="farm_instance"{print $7}' "$JAR") (session ID and $S's instance ID)"
note "the page's links point to $S's own sub-farm unit: $(grep -o "http://web[0-9].shop.farm.test/" "$WORK/b" | head -1)"

say "2. the client follows the links: $S's sub-farm unit, no scheduling, $S's cache"
client POST "${OWN}cart/items" '{"item": "apple", "quantity": 3}'
client POST "${OWN}cart/items" '{"item": "coffee", "quantity": 1}'
client GET "${OWN}cart"
counters

say "3. $S crashes (kill -9)"
kill -9 "${PID[$S]}"
wait "${PID[$S]}" 2>/dev/null || true
unset "PID[$S]"
took=$(wait_state "$S" down 5)
note "farmlb's health check marked $S down ${took} s after the crash; its sub-farm unit moved to the backup:"
status_table

say "4. the client carries on: same URL, now answered by the backup"
client GET "${OWN}cart"
B_SRV=$LAST_SERVER
note "$B_SRV had never seen this session: a cache miss, loaded from the database, the cart intact"
client POST "${OWN}cart/items" '{"item": "bread", "quantity": 2}'
note "the change is written through to the database by $B_SRV"
counters

say "5. $S restarts: a new process, a new instance ID"
start_web "$n"
took=$(wait_state "$S" up 5)
note "up again ${took} s after it started listening (2 passing checks)"
status_table

say "6. the client's next request (a new connection) goes to $S again"
note "its instance-ID cookie is not $S's: $S flushes the session from its cache and reloads it"
client GET "${OWN}cart"
client GET "${OWN}cart"
note "miss (flushed, loaded from the database with $B_SRV's changes), then hit"
counters

say "farmlb: the transitions of $S (GET /servers/$S)"
ADMIN_PATH=/servers/$S admin | python3 -c '
import json, sys, time
d = json.load(sys.stdin)
for e in d.get("server", d)["history"]:
    t = time.strftime("%H:%M:%S", time.localtime(e["at_unix_ms"] / 1000)) + ".%03d" % (e["at_unix_ms"] % 1000)
    print("   {} {} -> {}: {}".format(t, e["old_state"], e["new_state"], e["cause"]))'

# ---------------------------------------------------------------- chapter 2
# US 7,702,791: sessions on a primary and a secondary farm server, named in
# the route cookie that farmlb's HTTP unit reads; no database.

say "chapter 2 (US 7,702,791): three replicating farm servers with no database behind an HTTP unit"
kill "${PID[farmlb]}" 2>/dev/null || true
wait "${PID[farmlb]}" 2>/dev/null || true
unset "PID[farmlb]"
for i in 1 2 3; do
  if [[ -n ${PID[web$i]:-} ]]; then
    kill "${PID[web$i]}" 2>/dev/null || true
    wait "${PID[web$i]}" 2>/dev/null || true
    unset "PID[web$i]"
  fi
done
printf 'web1 1 198.18.20.11:8080\nweb2 2 198.18.20.12:8080\nweb3 3 198.18.20.13:8080\n' >"$WORK/peers"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK/secret"
start_replica() {
  local i=$1
  ip netns exec flb-s$i "$FARM_SERVER" --name web$i --listen 0.0.0.0:8080 \
    --sub-farm-url http://web$i.shop.farm.test/ --cookie-domain shop.farm.test \
    --number $i --peers-file "$WORK/peers" --replication-secret-file "$WORK/secret" \
    >>"$WORK/web$i.log" 2>&1 &
  PID[web$i]=$!
  for _ in $(seq 1 50); do
    timeout 2 ip netns exec flb-s$i curl -sf -m 1 -o /dev/null http://127.0.0.1:8080/health && return 0
    sleep 0.1
  done
  echo "demo: web$i did not start" >&2
  return 1
}
for i in 1 2 3; do start_replica $i; done
ip netns exec flb-lb "$FARMLB" --log info run --config config/replication.toml --run-for 120s \
  >"$WORK/farmlb-replication.log" 2>&1 &
PID[farmlb]=$!
for _ in $(seq 1 100); do
  in_client curl -sf -m 1 -o /dev/null http://198.18.30.100/health 2>/dev/null && break
  sleep 0.2
done
for i in 1 2 3; do wait_state web$i up 10 >/dev/null; done
note "farm servers: --number 1..3 --peers-file (the other two) --replication-secret-file (signed replication); no --db"
note "farmlb (config/replication.toml): shop.farm.test is an HTTP unit with route_cookie = \"route\": it reads each request head and sends it to the primary the cookie names"
rm -f "$JAR"

route_of() { awk '$6=="route"{print $7}' "$JAR"; }
replication() {
  local i
  printf '   %-6s %8s %8s %6s %6s %9s %12s\n' server primary replicas sends acks takeovers secondaries+
  for i in 1 2 3; do
    timeout -k 2 5 ip netns exec flb-s$i curl -s -m 2 http://127.0.0.1:8080/stats 2>/dev/null | python3 -c '
import json, sys
try:
    s = json.load(sys.stdin)
except ValueError:
    print("   web'$i'   (not running)")
    sys.exit()
r = s["replication"]
print("   {:<6} {:>8} {:>8} {:>6} {:>6} {:>9} {:>12}".format(s["server"], r["primary_sessions"], r["replicas"], r["sends"], r["acks"], r["takeovers"], r["secondaries_replaced"]))' || true
  done
}

say "7. a new session: the server that creates it is its primary and picks a secondary"
ACCEPT=text/html client GET http://shop.farm.test/
R=$(route_of)
P=web$((R / 1000)) SEC=web$((R % 1000))
note "route cookie: route=$R (primary ${P#web} x 1000 + secondary ${SEC#web}): primary $P, secondary $SEC"
client POST http://shop.farm.test/cart/items '{"item": "apple", "quantity": 2}'
client POST http://shop.farm.test/cart/items '{"item": "tea", "quantity": 1}'
note "every change goes to $P (farmlb reads the cookie) and is copied to $SEC before the answer (version $(awk '$6=="farm_version"{print $7}' "$JAR"))"
replication

say "8. the primary $P crashes (kill -9): the session lives on $SEC"
kill -9 "${PID[$P]}"
wait "${PID[$P]}" 2>/dev/null || true
unset "PID[$P]"
client GET http://shop.farm.test/cart
R2=$(route_of)
note "farmlb's SYN to $P was refused, so it chose a new primary: never the secondary $SEC"
note "$LAST_SERVER took the session from $SEC (the cart intact) and named itself: route=$R2 (primary $((R2 / 1000)), secondary $((R2 % 1000)))"
client POST http://shop.farm.test/cart/items '{"item": "bread", "quantity": 1}'
replication

# ---------------------------------------------------------------- chapter 3
# US 7,437,461: the request in flight when its server dies is moved to
# another server on the same client connection.

say "chapter 3 (US 7,437,461): a request in flight moves to another server; the client's connection stays"
start_replica "${P#web}"
kill "${PID[farmlb]}" 2>/dev/null || true
wait "${PID[farmlb]}" 2>/dev/null || true
ip netns exec flb-lb "$FARMLB" --log debug run --config config/moves.toml --run-for 120s \
  >"$WORK/farmlb-moves.log" 2>&1 &
PID[farmlb]=$!
for _ in $(seq 1 100); do
  in_client curl -sf -m 1 -o /dev/null http://198.18.30.100/health 2>/dev/null && break
  sleep 0.2
done
for i in 1 2 3; do wait_state web$i up 10 >/dev/null; done
note "farmlb (config/moves.toml): the HTTP unit keeps a copy of each unanswered request; replay = \"all\" (the farm servers apply a replayed write once), response_timeout = \"3s\""
# One keep-alive connection: a session, a change, then (on go) a change
# whose server dies while it is in flight, and the cart, all on it.
cat >"$WORK/inflight.py" <<'PY'
import http.client, json, os, sys, time
work = sys.argv[1]
conn = http.client.HTTPConnection("198.18.30.100", 80, timeout=20, source_address=("198.18.10.2", 0))
jar = {}
def ask(method, path, body=None):
    headers = {"Host": "shop.farm.test", "Accept": "application/json"}
    if jar:
        headers["Cookie"] = "; ".join(k + "=" + v for k, v in jar.items())
    data = None
    if body is not None:
        data = json.dumps(body)
        headers["Content-Type"] = "application/json"
    t0 = time.time()
    conn.request(method, path, data, headers)
    r = conn.getresponse()
    payload = r.read()
    for k, v in r.getheaders():
        if k.lower() == "set-cookie":
            name, _, rest = v.partition("=")
            jar[name] = rest.split(";", 1)[0]
    cart = ""
    if path == "/cart":
        cart = "  cart: " + ", ".join("%d %s" % (l["quantity"], l["item"]) for l in json.loads(payload)["items"])
    print("   client: %-4s %-12s -> %s  %d, %s, %.0f ms, local port %d%s" % (method, path, r.getheader("X-Farm-Server"), r.status, r.getheader("X-Farm-Write") or "read", (time.time() - t0) * 1000, conn.sock.getsockname()[1], cart), flush=True)
ask("GET", "/")
ask("POST", "/cart/items", {"item": "apple", "quantity": 2})
print("route", jar.get("route", "0"), flush=True)
open(os.path.join(work, "ready"), "w").close()
while not os.path.exists(os.path.join(work, "go")):
    time.sleep(0.02)
ask("POST", "/cart/items", {"item": "coffee", "quantity": 1})
ask("GET", "/cart")
PY
rm -f "$WORK/ready" "$WORK/go"
timeout -k 2 40 ip netns exec flb-client python3 "$WORK/inflight.py" "$WORK" >"$WORK/inflight.out" 2>&1 &
CLIENT_PID=$!
for _ in $(seq 1 100); do [[ -e $WORK/ready ]] && break; sleep 0.05; done
say "9. one keep-alive connection: a new session and a change"
grep -v '^route' "$WORK/inflight.out" || true
R=$(awk '$1=="route"{print $2}' "$WORK/inflight.out")
P=web$((R / 1000)) SEC=web$((R % 1000))
note "route=$R: primary $P, secondary $SEC"
say "10. $P stops answering, the next change is sent on the same connection, then $P is killed (kill -9)"
kill -STOP "${PID[$P]}"
touch "$WORK/go"
sleep 0.7
note "the change is in flight: $P's kernel took it, $P never answers"
kill -9 "${PID[$P]}"
wait "${PID[$P]}" 2>/dev/null || true
unset "PID[$P]"
wait "$CLIENT_PID" || true
tail -n 2 "$WORK/inflight.out"
note "the same local port: the client's connection never broke and saw no RST; farmlb replayed the change to a new primary (never $SEC), which took the session from $SEC"
note "the cart holds the change once: the replay carried the version it was based on"
ADMIN_PATH=/metrics admin | awk '/^farmlb_worker_splice_(moves_|replays_|move_refused|moves_completed)/ && $2 != 0 {sub(/\{.*\}/, "", $1); print "   " $1 " " $2}'
grep -h 'request moved' "$WORK/farmlb-moves.log" | tail -n 1 | sed 's/^/   farmlb: /' || true

say "done"
