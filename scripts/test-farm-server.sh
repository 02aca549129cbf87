#!/usr/bin/env bash
# Runs the farm-server tests against SQLite and a throw-away PostgreSQL.
#
# As root on Debian 12: installs postgresql with apt if it is missing, creates a
# fresh cluster in a temporary directory (owned by the `postgres` user: the
# server refuses to run as root), starts it listening only on a Unix socket in
# that directory, creates a database, runs `cargo test -p farm-server` with
# FARM_SERVER_PG pointing at it, and always stops the server and removes the
# directory on exit. FARM_SERVER_REQUIRE_PG=1 makes the PostgreSQL tests fail
# rather than skip if the database is not there.
#
# Extra arguments go to `cargo test` (e.g. a test name filter).
# `scripts/test-farm-server.sh --with-pg CMD ARGS...` runs CMD instead of the
# tests, with the same throw-away database in FARM_SERVER_PG (e.g. the bench:
# `scripts/test-farm-server.sh --with-pg scripts/bench-farm-server.sh`).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[test-farm-server] %s\n' "$*"; }

find_pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  if [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
    echo "$dir"
  fi
}

PG_BIN=$(find_pg_bin)
if [[ -z "$PG_BIN" ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    say "PostgreSQL is not installed and installing it needs root (apt-get install postgresql)" >&2
    exit 1
  fi
  say "installing postgresql with apt"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  PG_BIN=$(find_pg_bin)
  if [[ -z "$PG_BIN" ]]; then
    say "postgresql was installed but no initdb/pg_ctl under /usr/lib/postgresql/*/bin" >&2
    exit 1
  fi
fi
say "PostgreSQL binaries: $PG_BIN"

# PostgreSQL refuses to run as root: run it as `postgres` (made by the package,
# or created here) when we are root, else as ourselves.
if [[ $(id -u) -eq 0 ]]; then
  PG_USER=postgres
  if ! id -u "$PG_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_USER"
  fi
  as_pg() { runuser -u "$PG_USER" -- "$@"; }
else
  PG_USER=$(id -un)
  as_pg() { "$@"; }
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/farm-server-pg.XXXXXX")
DATA="$WORK/data"
LOG="$WORK/postgres.log"

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -f "$DATA/postmaster.pid" ]]; then
    say "stopping PostgreSQL"
    as_pg "$PG_BIN/pg_ctl" -D "$DATA" -m fast -w -t 30 stop >/dev/null 2>&1 \
      || as_pg "$PG_BIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 \
      || true
  fi
  if [[ $status -ne 0 && -f "$LOG" ]]; then
    say "PostgreSQL log (last lines):"
    tail -n 30 "$LOG" >&2 || true
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ $(id -u) -eq 0 ]]; then
  chown "$PG_USER" "$WORK"
fi
chmod 700 "$WORK"

say "initdb in $DATA"
as_pg "$PG_BIN/initdb" -D "$DATA" --auth=trust --encoding=UTF8 --locale=C --no-sync >/dev/null

say "starting PostgreSQL on the Unix socket in $WORK (no TCP)"
as_pg "$PG_BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
  -o "-c listen_addresses='' -c unix_socket_directories='$WORK' -c fsync=off -c max_connections=200" \
  start >/dev/null

DB=farm_server_test
as_pg "$PG_BIN/createdb" -h "$WORK" "$DB"

export FARM_SERVER_PG="host=$WORK user=$PG_USER dbname=$DB"
export FARM_SERVER_REQUIRE_PG=1
say "FARM_SERVER_PG=$FARM_SERVER_PG"
if [[ "${1:-}" == "--with-pg" ]]; then
  shift
  say "running: $*"
  "$@"
  exit 0
fi
say "cargo test -p farm-server $*"
cargo test -p farm-server "$@"
say "farm-server tests passed on SQLite and PostgreSQL"
