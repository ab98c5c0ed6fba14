#!/usr/bin/env bash
# Watch a TCP hole punch through two NATs, on one Linux machine.
#
#   sudo ./scripts/holepunch-demo.sh            # IPv4, two port-preserving NATs
#   sudo ./scripts/holepunch-demo.sh --no-reuse # the same with port reuse off: no direct connection
#   sudo ./scripts/holepunch-demo.sh --symmetric # NAT A gives every connection a new port: no direct connection
#
# Builds network namespaces (a public segment with a relay, two NAT routers, a host behind
# each), runs `examples/holepunch.rs` as relay, listener (behind NAT A) and dialer (behind
# NAT B), prints every step, and removes the namespaces on exit. Needs root, ip and nft
# (apt-get install iproute2 nftables). Traffic stays inside the namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

reuse_flag=""
masquerade_a="masquerade"
for arg in "$@"; do
    case "$arg" in
        --no-reuse) reuse_flag="--no-reuse" ;;
        --symmetric) masquerade_a="masquerade fully-random" ;;
        *) echo "unknown argument $arg" >&2; exit 2 ;;
    esac
done
# Everything that is missing, in one message, before anything is built.
missing=()
[ "$(id -u)" = 0 ] || missing+=("root: it builds network namespaces (run it with sudo)")
command -v ip >/dev/null || missing+=("ip: apt-get install iproute2")
command -v nft >/dev/null || missing+=("nft: apt-get install nftables")
command -v cargo >/dev/null ||
    missing+=("cargo: not on this PATH (under sudo, try: sudo env \"PATH=\$PATH\" $0)")
if [ ${#missing[@]} -gt 0 ]; then
    { echo "holepunch-demo.sh needs:"; printf '  - %s\n' "${missing[@]}"; } >&2
    exit 1
fi

# Cargo says where it put the binary: CARGO_TARGET_DIR, a build.target-dir setting or target/.
bin=$(cargo build --quiet --example holepunch --message-format=json-render-diagnostics |
    sed -n '/"kind":\["example"\]/s/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
[ -x "$bin" ] || { echo "cargo built no holepunch example binary" >&2; exit 1; }

p="hpdemo$$-"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for ns in sw pub ra rb a b; do ip netns del "$p$ns" 2>/dev/null || true; done
    [ -n "${logs:-}" ] && rm -rf "$logs"
}
trap cleanup EXIT

step() { printf '\n### %s\n' "$*"; }

step "building the network: relay 203.0.113.10 | NAT A 203.0.113.1 -> 10.0.1.2 | NAT B 203.0.113.2 -> 10.0.2.2"
for ns in sw pub ra rb a b; do
    ip netns add "$p$ns"
    ip -n "$p$ns" link set lo up
done
ip -n "${p}sw" link add br0 type bridge
ip -n "${p}sw" link set br0 up
plug() { # namespace device switch-port
    ip link add "$2" netns "$p$1" type veth peer name "$3" netns "${p}sw"
    ip -n "${p}sw" link set "$3" master br0 up
    ip -n "$p$1" link set "$2" up
}
plug pub eth0 p-pub
plug ra wan p-ra
plug rb wan p-rb
ip -n "${p}pub" addr add 203.0.113.10/24 dev eth0
for n in 1 2; do
    r="${p}r$([ $n = 1 ] && echo a || echo b)"
    h="$p$([ $n = 1 ] && echo a || echo b)"
    ip link add lan netns "$r" type veth peer name eth0 netns "$h"
    ip -n "$r" link set lan up
    ip -n "$h" link set eth0 up
    ip -n "$r" addr add "203.0.113.$n/24" dev wan
    ip -n "$r" addr add "10.0.$n.1/24" dev lan
    ip -n "$h" addr add "10.0.$n.2/24" dev eth0
    ip -n "$h" route add default via "10.0.$n.1"
    ip netns exec "$r" sysctl -qw net.ipv4.ip_forward=1
    masq="masquerade"
    [ $n = 1 ] && masq="$masquerade_a"
    ip netns exec "$r" nft -f - <<EOF
table inet fw {
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "wan" ct state established,related accept
    iifname "wan" drop
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state invalid drop
    ct state established,related accept
    iifname "lan" oifname "wan" accept
  }
}
table ip nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" $masq
  }
}
EOF
done
echo "NAT A: $masquerade_a; NAT B: masquerade; unsolicited inbound packets are dropped"

logs=$(mktemp -d)
# Starts a role in a namespace, shows its output, and waits for a line matching $3.
start() { # namespace log pattern command...
    local ns=$1 log=$logs/$2 pattern=$3
    shift 3
    ip netns exec "$p$ns" "$bin" "$@" >"$log" 2>&1 &
    pids+=($!)
    tail -n +1 -f "$log" &
    pids+=($!)
    for _ in $(seq 100); do grep -q "$pattern" "$log" && return 0; sleep 0.1; done
    echo "no '$pattern' from $ns" >&2
    exit 1
}
peer_id() { sed -n 's/^[a-z]*: peer //p' "$logs/$1" | head -1; }

step "relay on the public host"
start pub relay "listening on" relay --listen /ip4/203.0.113.10/tcp/4001
relay="/ip4/203.0.113.10/tcp/4001/p2p/$(peer_id relay)"

step "listener behind NAT A: connects to the relay, learns its public address, reserves a slot"
start a listen "reservation accepted" listen --relay "$relay" $reuse_flag --timeout 20

step "dialer behind NAT B: reserves, opens a circuit to the listener through the relay, then DCUtR"
set +e
ip netns exec "${p}b" "$bin" dial --relay "$relay" --peer "$(peer_id listen)" $reuse_flag --timeout 20
status=$?
set -e
sleep 0.5

step "conntrack on NAT A (the mapping of port 4001)"
ip netns exec "${p}ra" cat /proc/net/nf_conntrack 2>/dev/null | grep -E "dport=4001|sport=4001" | head -5 \
    || echo "(conntrack table not readable here)"

if [ $status = 0 ]; then
    step "direct connection between 203.0.113.1:4001 and 203.0.113.2:4001, ping over it"
else
    step "no direct connection"
fi
exit $status
