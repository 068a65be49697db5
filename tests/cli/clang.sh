#!/usr/bin/env bash
# clang.sh BUILD - the project builds with clang as it does with gcc: the
# library, the program, the examples and every test program with no
# warning (-Werror); the clang build's kernel tests pass (choosing a SIMD
# set at run time is compiler code: clang 14 knows fewer names for
# __builtin_cpu_supports than gcc 12, and a name it does not know stops the
# build); and the libFuzzer targets (make fuzz) build and run their seed
# corpora under AddressSanitizer and UBSan. Runs once, with the plain build,
# where clang and libFuzzer are installed (scripts/install-deps.sh --fuzz).
# Prints "N passed, N failed" last.
set -u
build=${1:-build}
. "$(dirname "$0")/lib/checks.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
if [ "$(basename "$build")" != build ] || ! command -v clang >/dev/null; then
    echo "ok skipping: needs clang (scripts/install-deps.sh --fuzz), and runs with the plain build"
    echo "0 passed, 0 failed"
    exit 0
fi
tmp=$(mktemp -d /tmp/lstm-clang-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cd "$root" || exit 2
jobs=$(nproc 2>/dev/null || echo 2)

b=$tmp/build
run "clang builds the library, the program, the examples and the tests with -Werror" \
    make -s -j"$jobs" CC=clang BUILD="$b" CFLAGS="-O2 -g -Werror" lib test-bins
# no writable globals with clang either (tests/globals.sh)
if bash tests/globals.sh "$b" >"$tmp/out" 2>&1; then ok
else bad "clang build: writable globals: $(grep -m 3 FAIL "$tmp/out")"; fi
for t in test_kernels test_int8 test_crf_float test_embed; do
    if [ -x "$b/tests/$t" ]; then
        "$b/tests/$t" >"$tmp/out" 2>&1
        rc=$? last=$(tail -n 1 "$tmp/out")
        if [[ $rc -eq 0 && $last =~ ^[0-9]+\ passed,\ 0\ failed$ ]]; then ok
        else bad "clang build: $t: $(grep -m 3 FAIL "$tmp/out") $last"; fi
    else
        bad "clang build: no $t"
    fi
done

f=$tmp/fuzz
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return d && n; }\n' >"$tmp/probe.c"
if ! clang -fsanitize=fuzzer "$tmp/probe.c" -o "$tmp/probe" 2>/dev/null; then
    echo "ok skipping the fuzz targets: clang cannot link libFuzzer (Debian: libclang-rt-14-dev)"
elif make -s -j"$jobs" FUZZ_BUILD="$f" fuzz >"$tmp/out" 2>"$tmp/err"; then
    ok
    for src in fuzz/fuzz_*.c; do
        n=$(basename "$src" .c)
        corpus=fuzz/corpus/${n#fuzz_}
        # each file of the seed corpus once, under ASan and UBSan (a crash's
        # input goes to $tmp, not the working tree)
        run "$n runs its seed corpus ($corpus)" "$f/$n" -runs=0 -artifact_prefix="$tmp/" "$corpus"
    done
else
    bad "make fuzz: $(tail -3 "$tmp/err")"
fi
finish
