#!/usr/bin/env bash
# Benchmarks farm-server with wrk on one core (taskset), on a SQLite database
# (or PostgreSQL when FARM_SERVER_PG is set):
#   1. GET /cart with the server's own instance cookie   -> served from the cache
#   2. POST /cart/items                                   -> write-through to the database
#   3. GET /cart with another instance's cookie           -> flush + reload from the database
# then session replication (US 7,702,791) with no database: two servers, the
# primary web1 (number 1) on SERVER_CPU and its secondary web2 on SECONDARY_CPU,
#   4. POST /cart/items, replication acknowledged before the answer (--replication ack)
#   5. POST /cart/items, replication asynchronous (--replication async)
# then the in-process benches: hit/miss latency (benches/cache_hit_miss.rs) and
# a session takeover by a new primary (benches/takeover.rs).
#
# Environment: BENCH_SECONDS (default 10), BENCH_CONNECTIONS (default 8),
# SERVER_CPU (default 1), CLIENT_CPU (default 0), SECONDARY_CPU (default
# SERVER_CPU: on a 2-core machine the secondary shares the primary's core),
# SESSIONS (default 64), SKIP_INPROC=1 to skip the in-process benches,
# SKIP_REPLICATION=1 to skip runs 4 and 5.
# Installs wrk with apt when missing (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNECTIONS:-8}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
SESSIONS=${SESSIONS:-64}
SECONDARY_CPU=${SECONDARY_CPU:-$SERVER_CPU}

say() { printf '[bench-farm-server] %s\n' "$*"; }

for tool in wrk curl; do
  if ! command -v "$tool" >/dev/null; then
    say "installing $tool with apt"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
  fi
done

cargo build --release -p farm-server
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN="$TARGET_DIR/release/farm-server"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/farm-server-bench.XXXXXX")
SERVER_PID=
SECONDARY_PID=
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  for pid in "$SERVER_PID" "$SECONDARY_PID"; do
    if [[ -n "$pid" ]]; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

DB=${FARM_SERVER_PG:-sqlite:$WORK/bench.db}
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"

say "server pinned to CPU $SERVER_CPU, wrk to CPU $CLIENT_CPU, ${SECS}s per run, $CONNS connections"
say "database: ${DB%%password=*}"
RUST_LOG=warn taskset -c "$SERVER_CPU" "$BIN" --name bench --listen "127.0.0.1:$PORT" \
  --sub-farm-url http://198.18.1.101/ --db "$DB" --threads 1 &
SERVER_PID=$!
for _ in $(seq 100); do
  [[ "$(curl -s "$URL/health" || true)" == "farm-server ok" ]] && break
  sleep 0.1
done
[[ "$(curl -s "$URL/health")" == "farm-server ok" ]] || { say "server did not become healthy"; exit 1; }

# Sessions, each with a small cart, made through the real endpoints.
INSTANCE=$(curl -s -o /dev/null -D - "$URL/health" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-instance-id"{print $2}')
: > "$WORK/sessions.txt"
for _ in $(seq "$SESSIONS"); do
  sid=$(curl -s -o /dev/null -D - "$URL/cart" | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: farm_session=\([0-9a-f]*\);.*/\1/p')
  for item in apple bread tea; do
    curl -s -o /dev/null -H 'content-type: application/json' \
      -H "cookie: farm_session=$sid; farm_instance=$INSTANCE" \
      -d "{\"item\":\"$item\",\"quantity\":2}" "$URL/cart/items"
  done
  echo "$sid" >> "$WORK/sessions.txt"
done

lua_sessions() {
  local instance=$1
  echo "local cookies = {"
  while read -r sid; do
    echo "  \"farm_session=$sid; farm_instance=$instance\","
  done < "$WORK/sessions.txt"
  echo "}"
}

{ lua_sessions "$INSTANCE"; cat <<'LUA'
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/cart", { ["Cookie"] = cookies[(i % #cookies) + 1] })
end
LUA
} > "$WORK/get_hit.lua"

{ lua_sessions 0000000000000000; cat <<'LUA'
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/cart", { ["Cookie"] = cookies[(i % #cookies) + 1] })
end
LUA
} > "$WORK/get_miss.lua"

{ lua_sessions "$INSTANCE"; cat <<'LUA'
local items = { "apple", "bread", "cheese", "coffee", "eggs", "milk", "olive-oil", "tea" }
local i = 0
request = function()
  i = i + 1
  local body = '{"item":"' .. items[(math.floor(i / #cookies) % #items) + 1] .. '","quantity":1}'
  return wrk.format("POST", "/cart/items", {
    ["Cookie"] = cookies[(i % #cookies) + 1],
    ["Content-Type"] = "application/json",
  }, body)
end
LUA
} > "$WORK/post.lua"

stat() { curl -s "$URL/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

declare -A RPS
run() {
  local name=$1 script=$2 out
  local hits0 misses0 writes0
  hits0=$(stat cache_hits); misses0=$(stat cache_misses); writes0=$(stat db_writes)
  out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "$script" "$URL")
  if grep -q 'Non-2xx' <<<"$out"; then
    echo "$out"; say "$name: some requests failed"; exit 1
  fi
  RPS[$name]=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
  local lat
  lat=$(awk '/^    Latency/{print $2" avg, "$4" max"; exit}' <<<"$out")
  printf '%-34s %10s req/s   latency %s   (cache hits +%s, misses +%s, db writes +%s)\n' \
    "$name" "${RPS[$name]}" "$lat" \
    $(( $(stat cache_hits) - hits0 )) $(( $(stat cache_misses) - misses0 )) $(( $(stat db_writes) - writes0 ))
}

echo
run "GET /cart (cache hit)" "$WORK/get_hit.lua"
run "POST /cart/items (write-through)" "$WORK/post.lua"
run "GET /cart (stale instance: miss)" "$WORK/get_miss.lua"
python3 - "${RPS["GET /cart (cache hit)"]}" "${RPS["GET /cart (stale instance: miss)"]}" "${RPS["POST /cart/items (write-through)"]}" <<'PY'
import sys
hit, miss, post = map(float, sys.argv[1:])
print(f"hit/miss throughput ratio: {hit / miss:.2f}x   hit/write-through: {hit / post:.2f}x")
PY

kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Runs 4 and 5: web1 replicates to web2, no database.
replicated_writes() {
  local mode=$1 p1 p2 url1 url2 acks0 sends0 out rps lat
  p1=$(free_port); p2=$(free_port)
  url1="http://127.0.0.1:$p1"; url2="http://127.0.0.1:$p2"
  printf 'a bench secret of at least 16 bytes\n' > "$WORK/secret"
  RUST_LOG=warn taskset -c "$SERVER_CPU" "$BIN" --name web1 --listen "127.0.0.1:$p1" \
    --sub-farm-url http://198.18.1.101/ --number 1 --peer "web2=2@127.0.0.1:$p2" \
    --replication-secret-file "$WORK/secret" --replication "$mode" --threads 1 &
  SERVER_PID=$!
  RUST_LOG=warn taskset -c "$SECONDARY_CPU" "$BIN" --name web2 --listen "127.0.0.1:$p2" \
    --sub-farm-url http://198.18.1.102/ --number 2 --peer "web1=1@127.0.0.1:$p1" \
    --replication-secret-file "$WORK/secret" --replication "$mode" --threads 1 &
  SECONDARY_PID=$!
  for url in "$url1" "$url2"; do
    for _ in $(seq 100); do
      [[ "$(curl -s "$url/health" || true)" == "farm-server ok" ]] && break
      sleep 0.1
    done
  done
  # Sessions made on web1 (secondary web2: route=1002); no version cookie, so
  # every request is a new change on the current version.
  local instance
  instance=$(curl -s -o /dev/null -D - "$url1/health" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-instance-id"{print $2}')
  : > "$WORK/repl-sessions.txt"
  for _ in $(seq "$SESSIONS"); do
    curl -s -o /dev/null -D - "$url1/cart" | tr -d '\r' \
      | sed -n 's/^[Ss]et-[Cc]ookie: farm_session=\([0-9a-f]*\);.*/\1/p' >> "$WORK/repl-sessions.txt"
  done
  { echo "local cookies = {"
    while read -r sid; do echo "  \"farm_session=$sid; farm_instance=$instance; route=1002\","; done < "$WORK/repl-sessions.txt"
    echo "}"
    sed -n '/^local items/,$p' "$WORK/post.lua"
  } > "$WORK/repl-post.lua"
  rstat() { curl -s "$1/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['replication']['$2'])"; }
  acks0=$(rstat "$url1" acks); sends0=$(rstat "$url1" sends)
  out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "$WORK/repl-post.lua" "$url1")
  if grep -q 'Non-2xx' <<<"$out"; then
    echo "$out"; say "replicated writes ($mode): some requests failed"; exit 1
  fi
  # Asynchronous sends may still be on their way.
  for _ in $(seq 50); do [[ "$(rstat "$url1" pending)" == 0 ]] && break; sleep 0.1; done
  rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
  lat=$(awk '/^    Latency/{print $2" avg, "$4" max"; exit}' <<<"$out")
  RPS["POST /cart/items (replicated, $mode)"]=$rps
  printf '%-34s %10s req/s   latency %s   (sends +%s, acks +%s, failures %s, lag mean %s us max %s us, replicas on web2 %s)\n' \
    "POST /cart/items (repl. $mode)" "$rps" "$lat" \
    $(( $(rstat "$url1" sends) - sends0 )) $(( $(rstat "$url1" acks) - acks0 )) \
    "$(rstat "$url1" failures)" "$(rstat "$url1" lag_mean_us)" "$(rstat "$url1" lag_max_us)" "$(rstat "$url2" replicas)"
  [[ "$(rstat "$url1" failures)" == 0 ]] || { say "replication failures"; exit 1; }
  kill "$SERVER_PID" "$SECONDARY_PID"; wait "$SERVER_PID" "$SECONDARY_PID" 2>/dev/null || true
  SERVER_PID=; SECONDARY_PID=
}

if [[ "${SKIP_REPLICATION:-0}" != 1 ]]; then
  echo
  say "replication, no database: primary on CPU $SERVER_CPU, secondary on CPU $SECONDARY_CPU"
  replicated_writes ack
  replicated_writes async
  python3 - "${RPS["POST /cart/items (write-through)"]}" "${RPS["POST /cart/items (replicated, ack)"]}" "${RPS["POST /cart/items (replicated, async)"]}" <<'PY'
import sys
wt, ack, asy = map(float, sys.argv[1:])
print(f"writes/s: replicated ack / write-through {ack / wt:.2f}x   async / write-through {asy / wt:.2f}x")
PY
fi

if [[ "${SKIP_INPROC:-0}" != 1 ]]; then
  echo
  say "in-process hit vs miss latency (cargo bench -p farm-server --bench cache_hit_miss)"
  taskset -c "$SERVER_CPU" cargo bench -p farm-server --bench cache_hit_miss
  echo
  say "in-process session takeover (cargo bench -p farm-server --bench takeover)"
  taskset -c "$SERVER_CPU" cargo bench -p farm-server --bench takeover
fi
say "load average: $(cat /proc/loadavg)"
