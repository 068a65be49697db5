#!/usr/bin/env bash
# run.sh BUILD... - for each build directory, runs every test program in
# BUILD/tests, the fuzz corpus replays, the CLI tests and the check that
# BUILD/liblstm.a holds no writable globals (globals.sh); prints each
# program's summary and, last, the total line "N passed, N failed". Exits
# non-zero when anything failed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root" || exit 2
total_pass=0
total_fail=0
failed_progs=()

run_one() { # name, command...
    local name=$1; shift
    local out rc last p f
    out=$("$@" 2>&1); rc=$?
    last=$(printf '%s\n' "$out" | tail -n 1)
    if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        p=${BASH_REMATCH[1]}; f=${BASH_REMATCH[2]}
    else
        p=0; f=1
        out="$out
(no summary line; exit status $rc)"
    fi
    if [[ $rc -ne 0 && $f -eq 0 ]]; then f=1; fi
    total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
    if [[ $f -ne 0 ]]; then
        failed_progs+=("$name")
        printf '%s\n' "$out" | grep -v '^ok ' | tail -n 40
    fi
    printf '%-36s %s\n' "$name" "$last"
}

for build in "${@:-build}"; do
    export LSTM_BIN="$(cd "$build" && pwd)/lstm"
    for t in "$build"/tests/test_*; do
        [[ -x $t ]] || continue
        run_one "$build/$(basename "$t")" "$t"
    done
    for r in "$build"/fuzz/replay_*; do
        [[ -x $r ]] || continue
        n=${r##*/replay_}
        run_one "$build/fuzz $n" "$r" "fuzz/corpus/$n"
    done
    run_one "$build/globals" bash tests/globals.sh "$build"
    for s in tests/cli/*.sh; do
        [[ -f $s ]] || continue
        run_one "$build/cli $(basename "$s" .sh)" bash "$s" "$build"
    done
    echo "== $build: $total_pass passed, $total_fail failed so far =="
done
[[ ${#failed_progs[@]} -eq 0 ]] || echo "failing: ${failed_progs[*]}"
echo "$total_pass passed, $total_fail failed"
[[ $total_fail -eq 0 ]]
