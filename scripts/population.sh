#!/usr/bin/env bash
# A population of NAT pairs: many pairs of peers, each pair's NATs, delays and IP family drawn
# from a stated distribution with a fixed seed, all punching through one relay at once, with
# this crate, with libp2p-tcp and with go-libp2p peers, each on a network built afresh from the
# same draw. Prints the distribution and its sources, the mix, the share of pairs whose NATs
# permit a punch, the share that got a direct connection with each, pair by pair, and what the
# run cost (descriptors, CPU) and left behind (namespaces, processes).
#
#   sudo ./scripts/population.sh                      # 50 pairs, seed 1
#   sudo ./scripts/population.sh --pairs 6            # the short version
#   sudo ./scripts/population.sh --pairs 10,50,100    # 10, then 50, then 100 pairs at once
#
# Options: --pairs N[,N...] (default 50; at most 250), --seed S (default 1), --release (the rust
# nodes built with optimisations, as go's are; by default cargo's debug profile). ZOO_VERBOSE=1
# prints the logs of every pair that did not punch, ZOO_VERBOSE=all of every pair. It runs
# `cargo test --test netns -- population ...` (tests/netns/population.rs) as root. The network
# is built in Linux network namespaces (prefix rpt<pid>) and removed after each population; if
# the run is interrupted (Ctrl-C, a failure), this script removes what is left. Traffic stays
# inside the namespaces. Needs root, ip (iproute2), nft (nftables), ping (iputils-ping), cargo;
# Go for the go-libp2p peers (without it their column is missing and the output says why).
set -euo pipefail
cd "$(dirname "$0")/.."

pairs=50
seed=1
profile=()
while [ $# -gt 0 ]; do
    case "$1" in
        --pairs) pairs=${2:?--pairs needs sizes}; shift 2 ;;
        --seed) seed=${2:?--seed needs a number}; shift 2 ;;
        --release) profile=(--release); shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

missing=()
[ "$(id -u)" = 0 ] || missing+=("root (network namespaces)")
for tool in ip:iproute2 nft:nftables ping:iputils-ping cargo:rustup; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool%%:*} (${tool#*:})")
done
if [ ${#missing[@]} -gt 0 ]; then
    printf 'population needs: %s\n' "$(IFS=,; echo "${missing[*]}" | sed 's/,/, /g')" >&2
    exit 1
fi
command -v go >/dev/null 2>&1 || echo "population: Go is not on PATH: no go-libp2p peers" >&2

# Whether process $1 runs (a zombie does not).
alive() { [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

# The run ids (pids) of namespaces already there: other runs', left alone.
ns_pids() { ip netns list | awk '/^rpt[0-9]/ {print $1}' | sed 's/^rpt//; s/n.*//' | sort -u; }
before=" $(ns_pids | tr '\n' ' ') "

cleanup() {
    # Namespaces of this run whose process is gone (the suite removes its own when it ends
    # normally; after Ctrl-C its process may need a moment to die), and what still runs in them.
    for pid in $(ns_pids); do
        case "$before" in *" $pid "*) continue ;; esac
        for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
        alive "$pid" && continue
        for ns in $(ip netns list | awk -v p="rpt${pid}n" 'index($1, p) == 1 {print $1}'); do
            for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
            ip netns del "$ns" 2>/dev/null || true
        done
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cargo build --quiet "${profile[@]}" --example holepunch
LIBP2P_REUSEPORT_NETNS=1 cargo test --quiet "${profile[@]}" --test netns -- population --pairs "$pairs" --seed "$seed"
