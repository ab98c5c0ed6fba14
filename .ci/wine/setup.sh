#!/usr/bin/env bash
# Prepares Wine to run this crate's Windows build (x86_64-pc-windows-gnu): the Debian packages,
# a 64-bit Wine prefix made without any window or download prompt, and the stand-in
# bcryptprimitives.dll (bcryptprimitives.c beside this script: Wine 8.0 has no ProcessPrng,
# which every Rust program since 1.78 imports). Idempotent; a second run only checks.
#
#   eval "$(bash .ci/wine/setup.sh)"     # exports the lines it prints, then e.g.
#   cargo test --target x86_64-pc-windows-gnu ...
# (with a toolchain that has that target's std; without one, a nightly-capable rustc that ships
# the std source can build it: RUSTC_BOOTSTRAP=1 cargo build -Zbuild-std=std,panic_abort ...;
# the linker is x86_64-w64-mingw32-gcc from gcc-mingw-w64-x86-64).
#
# Prints only the environment a caller should export; progress and errors go to stderr.
# Only wine64 is needed (no i386 multiarch, no wine32): the programs are 64-bit; Wine's launcher
# then prints a hint about wine32, which WINEDEBUG=-all silences.
#
# What Wine can and cannot tell about Windows: Winsock runs on the host's Linux TCP stack. Wine
# sets Linux SO_REUSEADDR on every TCP socket and never SO_REUSEPORT, and its wineserver checks
# binds against Windows' SO_REUSEADDR / SO_EXCLUSIVEADDRUSE rules without user accounts (all
# processes of a prefix count as one account). So Linux refuses any bind that overlaps a
# listening socket's address and port, whatever the Windows options: a dial from a listening
# port cannot be tested under Wine, only the Windows build's other paths.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
prefix="${WINEPREFIX:-$HOME/.wine-libp2p-reuseport}"
say() { printf 'wine setup: %s\n' "$*" >&2; }

# 1. Packages, by name, only when a tool is missing.
if ! command -v wine >/dev/null || ! command -v wineboot >/dev/null ||
    ! [ -x /usr/lib/wine/wine64 ] || ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
    say "installing wine, wine64 and gcc-mingw-w64-x86-64"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
        wine wine64 gcc-mingw-w64-x86-64 >/dev/null
fi

# Quiet Wine, no display: Wine's drivers fail fast without one instead of opening windows.
export WINEPREFIX="$prefix" WINEDEBUG=-all
unset DISPLAY WAYLAND_DISPLAY

# 2. The prefix. mscoree and mshtml disabled while it is made: otherwise wineboot offers to
# download Wine Mono and Gecko (a dialog, or a wait on the network). system.reg is written last.
if ! [ -f "$prefix/system.reg" ] || ! [ -d "$prefix/drive_c/windows/system32" ]; then
    say "creating the prefix $prefix"
    mkdir -p "$prefix"
    WINEARCH=win64 WINEDLLOVERRIDES="mscoree,mshtml=" timeout 600 wineboot -i >/dev/null 2>&1
    # wineboot returns before the server has written the registry to disk.
    timeout 120 wineserver -w
    [ -f "$prefix/system.reg" ] || { say "wineboot made no registry in $prefix"; exit 1; }
fi

# 3. The stand-in DLL, rebuilt only when its source changed (its hash is kept in the prefix).
dll="$prefix/drive_c/windows/system32/bcryptprimitives.dll"
stamp="$prefix/.bcryptprimitives.sha256"
sum="$(sha256sum "$here/bcryptprimitives.c" | cut -d' ' -f1)"
if ! [ -f "$dll" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
    say "building bcryptprimitives.dll into $dll"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    x86_64-w64-mingw32-gcc -shared -O2 -s -nostdlib -Wall -Wextra -Werror \
        -o "$tmp/bcryptprimitives.dll" "$here/bcryptprimitives.c" -ladvapi32
    cp "$tmp/bcryptprimitives.dll" "$dll"
    echo "$sum" >"$stamp"
fi

# 4. What a caller exports. No WINEDLLOVERRIDES: Wine 8.0 has no builtin bcryptprimitives, so
# the loader takes the one in system32.
cat <<EOF
export WINEPREFIX='$prefix'
export WINEDEBUG=-all
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
EOF
