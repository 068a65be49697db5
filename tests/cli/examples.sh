#!/usr/bin/env bash
# examples.sh BUILD - the example programs run and do what they claim, and the
# README's C example compiles with the README's command against an installed
# copy of the library (make install into a temporary prefix) and runs; the
# README states the license of LICENSE.
set -u
build=${1:-build}
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d /tmp/lstm-examples-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
check() { # description, command...
    local what=$1; shift
    if "$@" >"$tmp/out" 2>&1; then pass=$((pass + 1))
    else fail=$((fail + 1)); echo "FAIL $what"; tail -5 "$tmp/out"; fi
}
# the tutorial's toy problem: the loss falls 100-fold in 100 SGD steps
check "toy example fits its four targets" "$build/examples/toy"

# The README's example, as a user builds it: make install, then
# cc prog.c $(pkg-config --cflags --libs lstm). The sanitizer build's library
# needs its runtime first in the program, so this runs with the plain build.
if [ "$(basename "$build")" = build ]; then
    awk '/^```c$/{on=1; next} /^```$/{on=0} on' "$root/README.md" >"$tmp/prog.c"
    check "README has a C example" test -s "$tmp/prog.c"
    check "make install into a temporary prefix" \
        make -s -C "$root" install DESTDIR="$tmp/root" PREFIX=/usr
    export PKG_CONFIG_SYSROOT_DIR="$tmp/root" PKG_CONFIG_PATH="$tmp/root/usr/lib/pkgconfig"
    check "the README's C example compiles with the README's command" \
        sh -c "cc '$tmp/prog.c' -o '$tmp/prog' \$(pkg-config --cflags --libs lstm)"
    check "the README's C example runs" env LD_LIBRARY_PATH="$tmp/root/usr/lib" "$tmp/prog"
    grep -q '^y\[4\]\[0\]\[0\.\.3\] = ' "$tmp/out" && pass=$((pass + 1)) ||
        { fail=$((fail + 1)); echo "FAIL the README's example prints its output"; }
fi
# the README states the license the LICENSE file grants ("MIT License" on
# its first line), in a section of its own that points to the file
lic=$(head -n 1 "$root/LICENSE" | sed 's/ License$//')
awk '/^## /{ on = $0 == "## License" } on' "$root/README.md" >"$tmp/license.md"
check "LICENSE names its license" test -n "$lic"
check "the README's License section names the license of LICENSE ($lic)" grep -qw -- "$lic" "$tmp/license.md"
check "the README's License section points to LICENSE" grep -qF "(LICENSE)" "$tmp/license.md"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
