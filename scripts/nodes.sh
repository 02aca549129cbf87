#!/usr/bin/env bash
# The several-nodes topology: three farmlb nodes behind a router that runs
# bird2 with ECMP, each node announcing its farm unit addresses over BGP from
# its own bird2 on farmlb's exception-path tap (run as root).
#
#   scripts/nodes.sh up [STATE_DIR]    (re)creates it; on failure it tears down
#   scripts/nodes.sh down [STATE_DIR]  deletes everything `up` made (idempotent)
#   FN_NODES=4 scripts/nodes.sh up     also a fourth node, fn-n4 (uplink
#                                      198.19.2.14, server link 198.19.3.4),
#                                      with its bird2 and the router's BGP peer
#                                      for it, but no farmlb (the flow-sync test,
#                                      tests/e2e_sync.rs, starts one there when
#                                      it adds the node); and 16 more client
#                                      addresses, 198.19.1.16-31
#
# STATE_DIR (default /run/farmlb-nodes) holds the bird configs, sockets, pid
# files, logs and the include files farmlb writes (vips-n1.conf ...).
#
#   fn-client  eth0 198.19.1.2/24 (and .3; with FN_NODES=4 also .16-.31),
#              default via 198.19.1.1
#        |  veth
#   fn-router  eth0 198.19.1.1/24; bridge rbr 198.19.2.1/24 with n1-r n2-r n3-r;
#              bird2 (AS 65000) peers with every node, `merge paths yes`,
#              net.ipv4.fib_multipath_hash_policy=1 (5-tuple ECMP)
#        |  veth up0 (farmlb's uplink port: net_af_packet, 198.19.2.1N in farmlb;
#        |  its tap flbup gives the node's kernel that address for BGP)
#   fn-n1..3   farmlb (started by the caller) and bird2 (AS 65001, started here),
#              peering with 198.19.2.1 over the tap: BGP hold time 3 s, BFD
#              (200 ms x 5), so a killed or hung node is noticed within about a
#              second (100 ms x 3 flapped on this busy 2-CPU machine)
#        |  veth dn0 (farmlb's server port: 198.19.3.N in farmlb,
#        |  also the FullNAT local address of the shop)
#   fn-sw      bridge sbr (no address) with the nodes' and the servers' links,
#        |     and the router's leg sw0 198.19.3.250/24: the operations path on
#        |     which `farmlb manager` (run in fn-router) reads the servers'
#        |     GET /load; it reaches the nodes' admin APIs on their uplink
#        |     addresses (198.19.2.1N:9190, through farmlb's exception path)
#        |  veth
#   fn-s1..3   eth0 198.19.3.11-13/24; default via 198.19.3.1 (s1, s2: node 1)
#              or 198.19.3.2 (s3: node 2), for the two-tier farm's NAT units
#
# Farm unit addresses: 198.19.100.0/24 (ECMP VIPs), 198.19.101.0/24 and
# 198.19.102.0/24 (the two-tier farm's subordinate nodes). Everything is in
# 198.18.0.0/15, the benchmarking range; names start with fn- so they never
# meet scripts/netns.sh's flb- namespaces.
set -euo pipefail

STATE=${2:-/run/farmlb-nodes}
CLIENT_NS=fn-client
ROUTER_NS=fn-router
SW_NS=fn-sw
FN_NODES=${FN_NODES:-3}
case "$FN_NODES" in
3) NODES=(fn-n1 fn-n2 fn-n3) ;;
4) NODES=(fn-n1 fn-n2 fn-n3 fn-n4) ;;
*)
  echo "nodes: FN_NODES is 3 (the default) or 4" >&2
  exit 2
  ;;
esac
SERVERS=(fn-s1 fn-s2 fn-s3)

all_ns() { echo "$CLIENT_NS" "${SERVERS[@]}" "${NODES[@]}" "$SW_NS" "$ROUTER_NS"; }

# Frames that leave a veth with checksum offload on reach af_packet with
# partial checksums, and TSO/GSO would hand farmlb frames above the MTU.
no_offload() {
  ip netns exec "$1" ethtool -K "$2" tx off tso off gso off gro off >/dev/null 2>&1 ||
    ip netns exec "$1" ethtool -K "$2" tx off >/dev/null
}

quiet_ns() {
  ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
    net.ipv6.conf.default.disable_ipv6=1 >/dev/null
  ip -n "$1" link set lo up
}

down() {
  local ns pid f
  # fn-n4 goes too when it exists, whatever FN_NODES says now.
  local -a NODES=(fn-n1 fn-n2 fn-n3 fn-n4)
  # The birds started here, by their pid files.
  for f in "$STATE"/bird-*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    rm -f "$f"
  done
  for ns in $(all_ns); do
    if ip netns list | grep -qw "^$ns"; then
      for pid in $(ip netns pids "$ns" 2>/dev/null); do
        kill "$pid" 2>/dev/null || true
      done
    fi
  done
  sleep 0.2
  for ns in $(all_ns); do
    if ip netns list | grep -qw "^$ns"; then
      for pid in $(ip netns pids "$ns" 2>/dev/null); do
        kill -9 "$pid" 2>/dev/null || true
      done
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
}

router_bird() {
  cat <<EOF
router id 198.19.2.1;
log "$STATE/bird-router.log" all;
protocol device { scan time 1; }
protocol kernel {
  ipv4 { export all; };
  merge paths yes;
}
protocol bfd {
  interface "rbr" { min rx interval 200 ms; min tx interval 200 ms; multiplier 5; };
}
template bgp node {
  local 198.19.2.1 as 65000;
  hold time 3;
  keepalive time 1;
  connect retry time 1;
  error wait time 1, 5;
  bfd on;
  ipv4 { import all; export none; };
}
EOF
  local n
  for n in $(seq 1 "${#NODES[@]}"); do
    echo "protocol bgp n$n from node { neighbor 198.19.2.1$n as 65001; }"
  done
}

node_bird() { # N
  cat <<EOF
router id 198.19.2.1$1;
log "$STATE/bird-n$1.log" all;
protocol device { scan time 1; }
# The farm unit addresses farmlb announces now (it writes this file and runs
# birdc configure).
protocol static vips {
  ipv4;
  include "$STATE/vips-n$1.conf";
}
protocol bfd {
  interface "flbup" { min rx interval 200 ms; min tx interval 200 ms; multiplier 5; };
}
protocol bgp uplink {
  local 198.19.2.1$1 as 65001;
  neighbor 198.19.2.1 as 65000;
  hold time 3;
  keepalive time 1;
  connect retry time 1;
  error wait time 1, 5;
  bfd on;
  ipv4 { import none; export where proto = "vips"; };
}
EOF
}

up() {
  down
  trap 'echo "nodes: setup failed, tearing down" >&2; down' ERR
  command -v bird >/dev/null || { echo "nodes: bird2 missing: run scripts/setup.sh" >&2; exit 1; }
  mkdir -p "$STATE"
  local ns i n
  for ns in $(all_ns); do
    ip netns add "$ns"
    quiet_ns "$ns"
  done

  # Client and router.
  ip link add eth0 netns "$CLIENT_NS" type veth peer name eth0 netns "$ROUTER_NS"
  ip -n "$CLIENT_NS" addr add 198.19.1.2/24 dev eth0
  ip -n "$CLIENT_NS" addr add 198.19.1.3/24 dev eth0
  if [ "${#NODES[@]}" -eq 4 ]; then
    # More source addresses for the flow-sync test's 10,000 connections
    # (secondary addresses of the connected /24: the router's route back
    # is the same).
    for i in $(seq 16 31); do
      ip -n "$CLIENT_NS" addr add "198.19.1.$i/24" dev eth0
    done
  fi
  ip -n "$CLIENT_NS" link set eth0 up
  ip -n "$CLIENT_NS" route add default via 198.19.1.1
  ip -n "$ROUTER_NS" addr add 198.19.1.1/24 dev eth0
  ip -n "$ROUTER_NS" link set eth0 up
  ip netns exec "$ROUTER_NS" sysctl -qw net.ipv4.ip_forward=1 \
    net.ipv4.fib_multipath_hash_policy=1 net.ipv4.conf.all.rp_filter=0 \
    net.ipv4.conf.default.rp_filter=0 net.ipv4.conf.all.send_redirects=0 \
    net.ipv4.conf.default.send_redirects=0 >/dev/null
  ip -n "$ROUTER_NS" link add rbr type bridge stp_state 0 forward_delay 0
  ip -n "$ROUTER_NS" addr add 198.19.2.1/24 dev rbr
  ip -n "$ROUTER_NS" link set rbr up
  ip -n "$SW_NS" link add sbr type bridge stp_state 0 forward_delay 0
  ip -n "$SW_NS" link set sbr up

  # Nodes: uplink to the router's bridge, server link to the switch.
  for i in $(seq 0 $((${#NODES[@]} - 1))); do
    n=$((i + 1))
    ns=${NODES[$i]}
    ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 \
      net.ipv4.conf.default.rp_filter=0 >/dev/null
    ip link add up0 netns "$ns" type veth peer name "n$n-r" netns "$ROUTER_NS"
    ip -n "$ROUTER_NS" link set "n$n-r" master rbr up
    ip -n "$ns" link set up0 up
    no_offload "$ns" up0
    no_offload "$ROUTER_NS" "n$n-r"
    ip link add dn0 netns "$ns" type veth peer name "n$n-s" netns "$SW_NS"
    ip -n "$SW_NS" link set "n$n-s" master sbr up
    ip -n "$ns" link set dn0 up
    no_offload "$ns" dn0
    no_offload "$SW_NS" "n$n-s"
  done

  # The router's leg on the servers' switch: the service manager in
  # fn-router reads the farm servers' load reports from 198.19.3.250.
  ip link add sw0 netns "$ROUTER_NS" type veth peer name r-s netns "$SW_NS"
  ip -n "$SW_NS" link set r-s master sbr up
  ip -n "$ROUTER_NS" addr add 198.19.3.250/24 dev sw0
  ip -n "$ROUTER_NS" link set sw0 up
  no_offload "$ROUTER_NS" sw0
  no_offload "$SW_NS" r-s

  # Servers.
  for i in 0 1 2; do
    n=$((i + 1))
    ns=${SERVERS[$i]}
    ip link add eth0 netns "$ns" type veth peer name "s$n-b" netns "$SW_NS"
    ip -n "$SW_NS" link set "s$n-b" master sbr up
    ip -n "$ns" addr add "198.19.3.1$n/24" dev eth0
    ip -n "$ns" link set eth0 up
    no_offload "$ns" eth0
    no_offload "$SW_NS" "s$n-b"
    if [ "$n" -le 2 ]; then
      ip -n "$ns" route add default via 198.19.3.1
    else
      ip -n "$ns" route add default via 198.19.3.2
    fi
  done

  # bird2: the router, and one per node (its include file empty until
  # farmlb writes it; its BGP session comes up once farmlb's tap exists).
  router_bird >"$STATE/bird-router.conf"
  ip netns exec "$ROUTER_NS" bird -c "$STATE/bird-router.conf" -s "$STATE/bird-router.ctl" \
    -P "$STATE/bird-router.pid"
  for n in $(seq 1 "${#NODES[@]}"); do
    echo "# empty until farmlb announces" >"$STATE/vips-n$n.conf"
    node_bird "$n" >"$STATE/bird-n$n.conf"
    ip netns exec "fn-n$n" bird -c "$STATE/bird-n$n.conf" -s "$STATE/bird-n$n.ctl" \
      -P "$STATE/bird-n$n.pid"
  done
  trap - ERR
  echo "nodes: up (state in $STATE)"
}

case "${1:-}" in
up) up ;;
down) down ;;
*)
  echo "usage: $0 up|down [STATE_DIR]" >&2
  exit 2
  ;;
esac
