#!/usr/bin/env bash
# The NAT zoo: DCUtR hole punching through a relay, one cell per NAT behaviour and WAN (latency,
# jitter, loss), with this crate and with libp2p-tcp (and go-libp2p peers) on the same network,
# runs interleaved. Prints the table row by row and once more at the end.
#
#   sudo ./scripts/natzoo.sh                      # every cell at 0, 20 and 60 ms, 20 runs each
#   sudo ./scripts/natzoo.sh --runs 5 --cell rst  # cells whose name contains "rst"
#   sudo ./scripts/natzoo.sh --wan 20 --cell go   # the go-libp2p pairings at 20 ms
#   sudo ./scripts/natzoo.sh --runs 10 --wan asym # asymmetric paths (relay far, near, slow one way)
#
# Options: --runs N (per cell and transport, default 20), --cell NAME (repeatable, a substring of
# the cell's name), --wan WAN[,WAN...] (default 0,20,60: the uniform WANs by one-way delay, 0,
# 20, 60; or WANs whose relay paths differ from the path between the NATs, by name: relay-far,
# relay-near-a, relay-near-b, relay-jitter, relay-slow-to-a, relay-slow-to-b, or asym for all
# six; their RST cells also run this crate with refused-dial retries off, a third column). It
# runs
# `cargo test --test netns -- zoo ...` (tests/netns/zoo.rs) as root. Every run builds its network
# in fresh Linux network namespaces (prefix rpt<pid>) and removes them; if the run is interrupted
# (Ctrl-C, a failure), this script removes what is left. Traffic stays inside the namespaces.
# Needs root, ip (iproute2), nft (nftables), ping (iputils-ping), cargo; Go for the go-libp2p
# cells (without it those cells fail and say why). Environment: ZOO_VERBOSE=1 prints the logs of
# every run that did not punch (ZOO_VERBOSE=all of every run), with RUST_LOG for the rust
# nodes; ZOO_RST_RETRY_MS sets this crate's refused-dial retry window. The delay line runs the
# test binary again: rebuilding it (a change under tests/ or src/) while a zoo runs breaks that
# run, so run a second zoo beside one from another CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=20
wan=0,20,60
cells=()
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=${2:?--runs needs a number}; shift 2 ;;
        --cell) cells+=(--cell "${2:?--cell needs a name}"); shift 2 ;;
        --wan) wan=${2:?--wan needs WANs: delays in ms or names}; shift 2 ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

missing=()
[ "$(id -u)" = 0 ] || missing+=("root (network namespaces)")
for tool in ip:iproute2 nft:nftables ping:iputils-ping cargo:rustup; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool%%:*} (${tool#*:})")
done
if [ ${#missing[@]} -gt 0 ]; then
    printf 'natzoo needs: %s\n' "$(IFS=,; echo "${missing[*]}" | sed 's/,/, /g')" >&2
    exit 1
fi
command -v go >/dev/null 2>&1 || echo "natzoo: Go is not on PATH: the go-libp2p cells will fail" >&2

# Whether process $1 runs (a zombie does not).
alive() { [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

cleanup() {
    # Namespaces of runs whose process is gone (the suite removes its own when it ends normally;
    # after Ctrl-C its process may need a moment to die), and what still runs in them.
    for ns in $(ip netns list | awk '/^rpt[0-9]/ {print $1}'); do
        pid=${ns#rpt}
        pid=${pid%%n*}
        for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
        if ! alive "$pid"; then
            for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cargo build --quiet --example holepunch
LIBP2P_REUSEPORT_NETNS=1 cargo test --quiet --test netns -- zoo --runs "$runs" --wan "$wan" "${cells[@]}"
