#!/usr/bin/env bash
# The end-to-end topology: network namespaces with farmlb in two-arm NAT mode
# between one client and three servers (run as root).
#
#   scripts/netns.sh up      (re)creates the topology; on failure it tears down
#   scripts/netns.sh down    deletes everything `up` made (idempotent)
#
#   flb-client  eth0 198.18.10.2/24, default via 198.18.10.1 (farmlb)
#        |  veth
#   flb-lb      lbc   farmlb's client port (net_af_packet, 198.18.10.1 in farmlb)
#               lbs   farmlb's server port (net_af_packet, 198.18.20.1 in farmlb)
#                |  veth (lbs-br)
#               br0   bridge, with s1-br s2-br s3-br
#        |  veth
#   flb-s1..3   eth0 198.18.20.11-13/24, default via 198.18.20.1 (farmlb)
#
# The kernel owns no address in flb-lb: farmlb answers ARP for its addresses
# itself and resolves the client and the servers by ARP. Farm units live in
# 198.18.30.0/24 (reached through farmlb's client-side address). All addresses
# are in 198.18.0.0/15, the benchmarking range.
set -euo pipefail

LB_NS=flb-lb
CLIENT_NS=flb-client
SERVER_NS=(flb-s1 flb-s2 flb-s3)
CLIENT_ADDR=198.18.10.2/24
CLIENT_GW=198.18.10.1
SERVER_ADDRS=(198.18.20.11/24 198.18.20.12/24 198.18.20.13/24)
SERVER_GW=198.18.20.1

all_ns() { echo "$CLIENT_NS" "${SERVER_NS[@]}" "$LB_NS"; }

# Linux computes no checksums for frames that leave a veth with tx checksum
# offload on (they reach af_packet with partial checksums), and TSO/GSO would
# hand farmlb frames larger than the MTU: turn all of it off.
no_offload() {
  local ns=$1 ifc=$2
  ip netns exec "$ns" ethtool -K "$ifc" tx off tso off gso off gro off >/dev/null 2>&1 ||
    ip netns exec "$ns" ethtool -K "$ifc" tx off >/dev/null
}

quiet_ns() {
  # No IPv6 (no router/neighbour solicitations on the test links).
  ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
    net.ipv6.conf.default.disable_ipv6=1 >/dev/null
  ip -n "$1" link set lo up
}

down() {
  local ns pid
  for ns in $(all_ns); do
    if ip netns list | grep -qw "^$ns"; then
      # Processes left in our own namespaces (farmlb, servers, tools).
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
  rm -rf /etc/netns/"$CLIENT_NS"
}

up() {
  down
  trap 'echo "netns: setup failed, tearing down" >&2; down' ERR
  local ns i
  for ns in $(all_ns); do
    ip netns add "$ns"
    quiet_ns "$ns"
  done

  # Client arm.
  ip link add lbc netns "$LB_NS" type veth peer name eth0 netns "$CLIENT_NS"
  ip -n "$CLIENT_NS" addr add "$CLIENT_ADDR" dev eth0
  ip -n "$CLIENT_NS" link set eth0 up
  ip -n "$CLIENT_NS" route add default via "$CLIENT_GW"
  ip -n "$LB_NS" link set lbc up
  no_offload "$CLIENT_NS" eth0
  no_offload "$LB_NS" lbc

  # Server arm: farmlb's port and the servers on one bridge.
  ip -n "$LB_NS" link add br0 type bridge stp_state 0 forward_delay 0
  ip -n "$LB_NS" link set br0 up
  ip -n "$LB_NS" link add lbs type veth peer name lbs-br
  ip -n "$LB_NS" link set lbs-br master br0
  ip -n "$LB_NS" link set lbs-br up
  ip -n "$LB_NS" link set lbs up
  no_offload "$LB_NS" lbs
  no_offload "$LB_NS" lbs-br
  for i in 0 1 2; do
    ns=${SERVER_NS[$i]}
    ip link add "s$((i + 1))-br" netns "$LB_NS" type veth peer name eth0 netns "$ns"
    ip -n "$LB_NS" link set "s$((i + 1))-br" master br0
    ip -n "$LB_NS" link set "s$((i + 1))-br" up
    ip -n "$ns" addr add "${SERVER_ADDRS[$i]}" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "$SERVER_GW"
    no_offload "$LB_NS" "s$((i + 1))-br"
    no_offload "$ns" eth0
  done

  # Host names for the session story (cookies need a shared domain):
  # `ip netns exec flb-client` bind-mounts this file over /etc/hosts.
  mkdir -p /etc/netns/"$CLIENT_NS"
  cat >/etc/netns/"$CLIENT_NS"/hosts <<'EOF'
127.0.0.1 localhost
198.18.30.100 shop.farm.test
198.18.30.101 web1.shop.farm.test
198.18.30.102 web2.shop.farm.test
198.18.30.103 web3.shop.farm.test
EOF
  trap - ERR
}

if [[ $(id -u) -ne 0 ]]; then
  echo "netns: must run as root" >&2
  exit 1
fi
case "${1:-}" in
  up) up ;;
  down) down ;;
  *)
    echo "usage: $0 up|down" >&2
    exit 2
    ;;
esac
