#!/usr/bin/env bash
# examples.sh BUILD - the example programs run and do what they claim.
set -u
build=${1:-build}
pass=0 fail=0
check() { # description, command...
    local what=$1; shift
    if "$@" >/tmp/lstm-example.$$ 2>&1; then pass=$((pass + 1))
    else fail=$((fail + 1)); echo "FAIL $what"; tail -5 /tmp/lstm-example.$$; fi
}
# the tutorial's toy problem: the loss falls 100-fold in 100 SGD steps
check "toy example fits its four targets" "$build/examples/toy"
rm -f /tmp/lstm-example.$$
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
