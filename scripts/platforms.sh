#!/usr/bin/env bash
# The crate beyond Linux. For each target rust-libp2p users run on: clippy (-D warnings) on the
# library without features, then on the library, the test suites and the examples with every
# feature (type-checking all of them); then the unit and integration tests built for
# x86_64-pc-windows-gnu and run under Wine.
#
#   scripts/platforms.sh                      # every target, then the Windows tests (.ci/run)
#   scripts/platforms.sh --targets "x86_64-apple-darwin aarch64-linux-android"
#   scripts/platforms.sh --no-wine            # only the checks
#   scripts/platforms.sh --wine-only          # only the Windows tests
#   scripts/platforms.sh --wine-only -- --test dial   # arguments after -- go to cargo test
#
# Rustup here has the Linux target only, and the machines have no internet but the package
# registries, so the standard library is built from source for each target (-Zbuild-std) by
# Debian's second toolchain (rustc-web, cargo-web, rust-web-src, rust-web-clippy: Rust with the
# standard library's source). Nothing is linked for the Apple, Android, FreeBSD and msvc
# targets (their linkers and SDKs are not on a Debian machine): their tests are type-checked,
# not run. ring, a dev-dependency through libp2p, compiles C in its build script: clang-22 with
# the flags in `cc_env` below builds it for the Apple, Android and msvc targets, with a
# stand-in for the Apple SDK's TargetConditionals.h (.ci/platforms/include). Windows programs
# run under Wine (.ci/wine/setup.sh). Debian packages are installed by name when missing (root).
#
# Prints one line per target and step, and a summary; exits non-zero if any step failed.
# Everything is built in target/platforms (CARGO_TARGET_DIR/platforms if set), one directory
# shared by all targets. A cold run takes about 25 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

targets="x86_64-pc-windows-gnu x86_64-pc-windows-msvc x86_64-apple-darwin aarch64-apple-darwin
aarch64-apple-ios aarch64-linux-android x86_64-unknown-freebsd"
check=1
wine=1
test_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --targets) targets="$2"; shift 2 ;;
        --no-wine) wine=0; shift ;;
        --wine-only) check=0; shift ;;
        --) shift; test_args=("$@"); break ;;
        *) echo "usage: $0 [--targets \"T...\"] [--no-wine | --wine-only] [-- cargo test args]" >&2; exit 2 ;;
    esac
done

# Debian's packages, by name, when a tool is missing. The checks for x86_64-pc-windows-gnu need
# mingw as the Wine tests do: its dlltool builds the standard library's raw-dylib imports, its
# gcc ring's C.
need=()
for package in rustc-web cargo-web rust-web-src rust-web-clippy clang-22 llvm-22 \
    gcc-mingw-w64-x86-64; do
    # Installed, not merely known (a removed package keeps its configuration files).
    [ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" = "install ok installed" ] \
        || need+=("$package")
done
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "platforms: missing Debian packages ${need[*]} (install them as root)" >&2
        exit 1
    fi
    echo "platforms: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Debian's toolchain first on PATH (rustup's proxies would otherwise answer `cargo clippy`).
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
for tool in cargo rustc rustdoc cargo-clippy clippy-driver; do
    ln -s "/usr/bin/$tool" "$bin/$tool"
done
export PATH="$bin:$PATH"
export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TERM_COLOR=never
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}/platforms"
build_std=(-Zbuild-std=std,panic_abort)

# The C compiler settings ring's build script needs for target $1 (see above), in the array
# `cc_env`.
set_cc_env() {
    local target=$1 var=${1//-/_}
    # No C library headers (-nostdlibinc, ring's own fallbacks), no hosted environment (clang's
    # x86 intrinsics headers then include no stdlib.h).
    local nostd="-nostdlibinc -ffreestanding -DRING_CORE_NOSTDLIBINC=1"
    cc_env=()
    case "$target" in
        *-apple-*)
            # cc-rs asks xcrun for the SDK unless SDKROOT names one: an empty directory will do,
            # nothing is included from it.
            cc_env=("CC_$var=clang-22" "AR_$var=llvm-ar-22" "SDKROOT=$root/.ci/platforms/include"
                "CFLAGS_$var=$nostd -I$root/.ci/platforms/include") ;;
        *-linux-android)
            cc_env=("CC_$var=clang-22" "AR_$var=llvm-ar-22" "CFLAGS_$var=$nostd") ;;
        x86_64-pc-windows-msvc)
            # Without the MSVC headers, ring's C is compiled in clang's GNU mode for the same
            # architecture (the last --target wins): the objects are never linked here.
            cc_env=("CC_$var=clang-22" "AR_$var=llvm-ar-22"
                "CFLAGS_$var=$nostd --target=x86_64-pc-windows-gnu") ;;
    esac
}

results=()
failed=0
run() {
    local label=$1 log
    shift
    log=$(mktemp)
    local started=$SECONDS
    if "$@" >"$log" 2>&1; then
        results+=("ok      $label ($((SECONDS - started)) s)")
        echo "platforms: ok      $label ($((SECONDS - started)) s)"
        # What the tests said: one line per test binary, what did not run, and the sums.
        grep -E '^test result:|NOT RUN|SKIPPED' "$log" || true
        if grep -q '^test result:' "$log"; then
            awk '/^test result:/ { p += $4; f += $6; i += $8 }
                 /NOT RUN under Wine/ { n++ }
                 END { printf "platforms: %d tests passed, %d failed, %d ignored; %d NOT RUN under Wine (a test, or the part of one, that needs a dial from a listening port)\n", p, f, i, n }' "$log"
        fi
    else
        results+=("FAILED  $label ($((SECONDS - started)) s)")
        echo "platforms: FAILED  $label ($((SECONDS - started)) s):"
        grep -E '^(error|warning)|^test .*FAILED|^---- |panicked|^test result:' -A12 "$log" \
            | head -200 || true
        tail -20 "$log"
        failed=1
    fi
    rm -f "$log"
}

if [ "$check" = 1 ]; then
    for target in $targets; do
        set_cc_env "$target"
        run "$target: clippy, library, default features" \
            env "${cc_env[@]}" cargo clippy "${build_std[@]}" --target "$target" --locked \
            --lib -- -D warnings
        run "$target: clippy, library, tests and examples, all features" \
            env "${cc_env[@]}" cargo clippy "${build_std[@]}" --target "$target" --locked \
            --lib --tests --examples --all-features -- -D warnings
    done
fi

if [ "$wine" = 1 ]; then
    target=x86_64-pc-windows-gnu
    # Prints the environment Wine needs (the prefix with the stand-in DLL, the runner).
    wine_env=$("$root/.ci/wine/setup.sh")
    eval "$wine_env"
    if [ ${#test_args[@]} -eq 0 ]; then
        # The unit tests, every integration test, the doc tests are host-only; the
        # network-namespace suite says it does not run there.
        test_args=(--lib --tests --features metrics)
    fi
    run "$target: tests under Wine (cargo test ${test_args[*]})" \
        cargo test "${build_std[@]}" --target "$target" --locked --no-fail-fast "${test_args[@]}" \
        -- --nocapture
fi

echo
echo "platforms: summary"
printf '  %s\n' "${results[@]}"
exit "$failed"
