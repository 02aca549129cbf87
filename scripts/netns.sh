#!/usr/bin/env bash
# The end-to-end topology: network namespaces with farmlb in two-arm NAT mode
# between one client and three servers (run as root).
#
#   scripts/netns.sh up        (re)creates the topology; on failure it tears down
#   scripts/netns.sh up pmtu   the same plus a router namespace and a fourth
#                              server behind a link with a 1280-byte route MTU
#   scripts/netns.sh up tap    the same without flb-lb's kernel address on br0:
#                              farmlb's control thread then reaches the servers
#                              only through farmlb's exception tap
#   scripts/netns.sh down      deletes everything `up` made (idempotent)
#
#   flb-client  eth0 198.18.10.2/24 (and .3, .4), default via 198.18.10.1 (farmlb)
#        |  veth
#   flb-lb      lbc   farmlb's client port (net_af_packet, 198.18.10.1 in farmlb)
#               lbs   farmlb's server port (net_af_packet, 198.18.20.1 in farmlb)
#                |  veth (lbs-br)
#               br0   bridge, with s1-br s2-br s3-br
#        |  veth
#   flb-s1..3   eth0 198.18.20.11-13/24, default via 198.18.20.1 (farmlb)
#
#   with `pmtu`, also on br0:
#   flb-r       eth0 198.18.20.9/24, default via 198.18.20.1; a router that
#               answers ARP for 198.18.20.14 (proxy ARP) and forwards to it
#               over `in` with route MTU 1280 (so a larger DF packet from the
#               client gets a real ICMP fragmentation needed from Linux)
#        |  veth (MTU 1500 both ends: only the route is narrow)
#   flb-s4      eth0 198.18.20.14/24, default via 198.18.20.1 (through flb-r)
#
# farmlb's ports own no kernel address in flb-lb: farmlb answers ARP for its
# addresses itself and resolves the client and the servers by ARP. The
# kernel of flb-lb has 198.18.20.2/24 on br0 for farmlb's control thread:
# health checks are ordinary sockets that reach the servers over the bridge,
# beside the data plane. Farm units live in
# 198.18.30.0/24 (reached through farmlb's client-side address). All addresses
# are in 198.18.0.0/15, the benchmarking range.
set -euo pipefail

LB_NS=flb-lb
CLIENT_NS=flb-client
SERVER_NS=(flb-s1 flb-s2 flb-s3)
CLIENT_ADDR=198.18.10.2/24
CLIENT_GW=198.18.10.1
# More client addresses, so probes and long-lived connections of the tests
# never share a reply tuple with ab's connections.
CLIENT_EXTRA="198.18.10.3/24 198.18.10.4/24"
SERVER_ADDRS=(198.18.20.11/24 198.18.20.12/24 198.18.20.13/24)
SERVER_GW=198.18.20.1
CONTROL_ADDR=198.18.20.2/24
ROUTER_NS=flb-r
PMTU_NS=flb-s4

all_ns() { echo "$CLIENT_NS" "${SERVER_NS[@]}" "$ROUTER_NS" "$PMTU_NS" "$LB_NS"; }

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
  for ns in "$CLIENT_NS" "${SERVER_NS[@]}" "$LB_NS"; do
    ip netns add "$ns"
    quiet_ns "$ns"
  done

  # Client arm.
  ip link add lbc netns "$LB_NS" type veth peer name eth0 netns "$CLIENT_NS"
  ip -n "$CLIENT_NS" addr add "$CLIENT_ADDR" dev eth0
  for a in $CLIENT_EXTRA; do
    ip -n "$CLIENT_NS" addr add "$a" dev eth0
  done
  ip -n "$CLIENT_NS" link set eth0 up
  ip -n "$CLIENT_NS" route add default via "$CLIENT_GW"
  ip -n "$LB_NS" link set lbc up
  no_offload "$CLIENT_NS" eth0
  no_offload "$LB_NS" lbc

  # Server arm: farmlb's port and the servers on one bridge.
  ip -n "$LB_NS" link add br0 type bridge stp_state 0 forward_delay 0
  ip -n "$LB_NS" link set br0 up
  if [[ ${1:-} != tap ]]; then
    ip -n "$LB_NS" addr add "$CONTROL_ADDR" dev br0
  fi
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

  if [[ ${1:-} == pmtu ]]; then
    pmtu_router
  fi

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

# flb-r between the bridge and flb-s4: proxy ARP makes 198.18.20.14 look
# on-link to farmlb; the route to it has MTU 1280.
pmtu_router() {
  local ns
  for ns in "$ROUTER_NS" "$PMTU_NS"; do
    ip netns add "$ns"
    quiet_ns "$ns"
  done
  ip link add r-br netns "$LB_NS" type veth peer name eth0 netns "$ROUTER_NS"
  ip -n "$LB_NS" link set r-br master br0
  ip -n "$LB_NS" link set r-br up
  no_offload "$LB_NS" r-br
  ip -n "$ROUTER_NS" addr add 198.18.20.9/24 dev eth0
  ip -n "$ROUTER_NS" link set eth0 up
  ip -n "$ROUTER_NS" route add default via "$SERVER_GW"
  no_offload "$ROUTER_NS" eth0
  ip link add in netns "$ROUTER_NS" type veth peer name eth0 netns "$PMTU_NS"
  ip -n "$ROUTER_NS" link set in up
  no_offload "$ROUTER_NS" in
  ip -n "$ROUTER_NS" route add 198.18.20.14/32 dev in mtu 1280
  ip netns exec "$ROUTER_NS" sysctl -qw net.ipv4.ip_forward=1 \
    net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
    net.ipv4.conf.eth0.rp_filter=0 net.ipv4.conf.in.rp_filter=0 \
    net.ipv4.conf.eth0.proxy_arp=1 net.ipv4.conf.in.proxy_arp=1 \
    net.ipv4.icmp_ratelimit=0 >/dev/null
  ip -n "$PMTU_NS" addr add 198.18.20.14/24 dev eth0
  ip -n "$PMTU_NS" link set eth0 up
  ip -n "$PMTU_NS" route add default via "$SERVER_GW"
  no_offload "$PMTU_NS" eth0
}

if [[ $(id -u) -ne 0 ]]; then
  echo "netns: must run as root" >&2
  exit 1
fi
case "${1:-}" in
  up) up "${2:-}" ;;
  down) down ;;
  *)
    echo "usage: $0 up|down" >&2
    exit 2
    ;;
esac
