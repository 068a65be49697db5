#!/usr/bin/env bash
# kill.sh BUILD - kill -9 a training run at random moments while it writes
# checkpoints and best models (a validation, so a best model and a
# checkpoint, every 5 steps), resuming after each kill: every time, the
# checkpoint left must load and resume, the best model must evaluate, and no
# temporary file of a killed save may stay behind once the next save has
# run. KILLS=50 for the full test (make test runs 8). Prints "N passed, N
# failed" last.
set -u
build=${1:-build}
. "$(dirname "$0")/lib/checks.sh"
L=$(cd "$(dirname "$build/lstm")" && pwd)/lstm
data=$(cd "$(dirname "$0")/../data" && pwd)
kills=${KILLS:-8}
tmp=$(mktemp -d /tmp/lstm-kill-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 2
head -c 40000 "$data/brown-text-train.txt" >t.txt
head -c 8000 "$data/brown-text-valid.txt" >v.txt
A=(--train t.txt --valid v.txt --hidden 24 --embedding 8 --batch 8 --seq-len 20 --epochs 8
   --valid-every 5 --out k.st --checkpoint k.ck --log k.log --threads 1 --quiet)
resumed=0 stale=0
for i in $(seq "$kills"); do
    resume=()
    [ -f k.ck ] && resume=(--resume k.ck)
    "$L" train lm "${A[@]}" "${resume[@]}" 2>/dev/null &
    pid=$!
    # a moment between 0.05 and 0.8 s: within a step, a validation or a save
    sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.3f", 0.05 + 0.75 * r / 32767 }')"
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    if [ -f k.ck ]; then
        "$L" eval k.ck v.txt >/dev/null 2>err || bad "kill $i: the checkpoint loads: $(cat err)"
        resumed=$((resumed + 1))
    fi
    if [ -f k.st ]; then
        "$L" eval k.st v.txt >/dev/null 2>err || bad "kill $i: the best model evaluates: $(cat err)"
    fi
    # temporaries of earlier kills are gone once a later save has run
    n=$(find . -name 'k.*.tmp.*' | wc -l)
    [ "$n" -le 2 ] || stale=$((stale + 1))
done
[ "$fail" -eq 0 ] && ok
[ "$resumed" -ge $((kills / 2)) ] && ok || bad "only $resumed of $kills kills had a checkpoint to resume"
# 8 epochs of 249 steps: the resumed run trains to step 1992
"$L" train lm "${A[@]}" --resume k.ck 2>err && ok ||
    bad "after $kills kills the run resumes to its end: $(cat err)"
ended=$(grep '"end"' k.log | tail -n 1 | sed 's/.*"step":\([0-9]*\).*/\1/')
[ "${ended:-0}" -eq 1992 ] && ok || bad "the resumed run ends at step 1992, not ${ended:-?}"
[ "$(find . -name 'k.*.tmp.*' | wc -l)" -eq 0 ] && ok ||
    bad "temporary files left after a clean save: $(find . -name 'k.*.tmp.*')"
[ "$stale" -eq 0 ] && ok || bad "$stale times more than two temporary files stood beside the outputs"
finish
