#!/usr/bin/env bash
# old_files.sh BUILD - files written by the program before issue 11 reshaped
# the code (commit a55002a) still work: the checkpoints in
# tests/fixtures/ckpt (one per task, each stopped midway; README there) are
# evaluated to the figures the old program logged for the same weights,
# predicted from and sampled from, and resumed to the end of their runs.
# The lm's resumed run must end on the same bytes as an uninterrupted run of
# this program (the lm's training has not changed since; tag and classify
# draw word dropout differently since 04a49f4, so theirs cannot). Prints
# "N passed, N failed" last.
set -u
build=${1:-build}
. "$(dirname "$0")/lib/checks.sh"
bin=$(cd "$(dirname "$build/lstm")" && pwd)/lstm
L() { timeout 120 "$bin" "$@"; }
here=$(cd "$(dirname "$0")" && pwd)
data=$here/../data
fx=$here/../fixtures/ckpt
tmp=$(mktemp -d /tmp/lstm-old-files-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 2

# num JSON KEY: a number from a line of JSON
num() { sed -n "s/.*\"$2\":\([-0-9.e]*\).*/\1/p" <<<"$1"; }
# close DESC A B: A equals B to the 7 significant digits the log prints
close() {
    if awk -v a="$2" -v b="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b;
                                        exit !(a != "" && b != "" && d <= 1e-6 * (m > 1 ? m : 1)) }'
    then ok; else bad "$1: $2, the old program logged $3"; fi
}
# no_worse DESC METRIC NOW THEN: bpc no higher, accuracy no lower than THEN
no_worse() {
    if awk -v k="$2" -v a="$3" -v b="$4" 'BEGIN { exit !(a != "" && (k == "bpc" ? a <= b + 1e-6 : a >= b - 1e-6)) }'
    then ok; else bad "$1: $2 $3, the checkpoint's was $4"; fi
}

# the slices and options the checkpoints were made with (and the reference
# kernels in float on one thread, as then)
. "$fx/slices.sh"

for task in lm tag classify; do
    eval "opts=(\"\${opts_$task[@]}\")"
    train=$(ls $task-train.*) valid=$(ls $task-valid.*)
    ck=$fx/$task.ckpt
    want=$(sed -n "s/^$task //p" "$fx/expected.txt")
    metric=$(sed -n 's/.*"metric":"\([a-z]*\)".*/\1/p' <<<"$want")
    streams=(); [ $task = lm ] && streams=(--streams 64) # what training validates with

    # eval: the figures the old program logged for these weights
    run "$task: eval the old checkpoint" L eval "$ck" "$valid" --json --threads 1 "${streams[@]}"
    got=$(tail -n 1 out)
    close "$task: eval loss of the old checkpoint" "$(num "$got" loss)" "$(num "$want" loss)"
    close "$task: eval $metric of the old checkpoint" "$(num "$got" "$metric")" "$(num "$want" value)"

    # resume: the run continues from the checkpoint's step to the end
    run "$task: resume the old checkpoint" L train $task --train "$train" --valid "$valid" \
        "${common[@]}" "${opts[@]}" --resume "$ck" --out $task-resumed.st --log $task-resumed.log
    grep -q '"message":"[^"]*(resumed)' $task-resumed.log && ok || bad "$task: the log says the run resumed"
    first=$(grep -m1 '"event":"valid"' $task-resumed.log)
    last=$(grep '"event":"valid"' $task-resumed.log | tail -n 1)
    if [ "$(num "$first" step)" -gt "$(num "$want" step)" ] 2>/dev/null; then ok
    else bad "$task: the resumed run's first validation (step $(num "$first" step)) comes after the checkpoint's (step $(num "$want" step))"; fi
    [ "$(num "$last" epoch)" = 3 ] && ok || bad "$task: the resumed run ends in epoch 3 (epoch $(num "$last" epoch))"
    # the model it keeps is the best seen, the checkpoint's best included
    run "$task: eval the resumed model" L eval $task-resumed.st "$valid" --json --threads 1 "${streams[@]}"
    no_worse "$task: the resumed model on valid" "$metric" "$(num "$(tail -n 1 out)" "$metric")" "$(num "$want" value)"
done

# lm: resumed from the old file = uninterrupted with this program
if [ "$(uname -m)" = x86_64 ]; then
    eval "opts=(\"\${opts_lm[@]}\")"
    # --ema 0: the old program had no average, and its checkpoint resumes without one
    run "lm: train uninterrupted" L train lm --train lm-train.txt --valid lm-valid.txt "${common[@]}" \
        "${opts[@]}" --ema 0 --out lm-whole.st
    cmp -s lm-resumed.st lm-whole.st && ok || bad "lm: resumed from the old checkpoint, the model file differs from an uninterrupted run's"
else
    # the checkpoint's float bits come from x86-64; elsewhere the reference
    # kernels may round differently
    echo "ok skipping the lm's byte-for-byte resume: not x86-64"
fi

# predict and sample read the old checkpoints
sed 's/^__label__[a-z]* //' classify-valid.txt >texts.txt
run "classify: predict from the old checkpoint" L predict "$fx/classify.ckpt" texts.txt --threads 1
cp out pred.txt
run "classify: eval the old checkpoint" L eval "$fx/classify.ckpt" classify-valid.txt --json --threads 1
# as many of each predicted label as the confusion table's columns hold
conf=$(tail -n 1 out | sed -n 's/.*"confusion":\[\[\([0-9]*\),\([0-9]*\)\],\[\([0-9]*\),\([0-9]*\)\]\].*/\1 \2 \3 \4/p')
read -r c00 c01 c10 c11 <<<"$conf"
none=$(grep -c '^__label__none ' pred.txt) the=$(grep -c '^__label__the ' pred.txt)
[ "$(wc -l <pred.txt)" = "$(wc -l <texts.txt)" ] && [ -n "$conf" ] &&
    [ "$none" = $((c00 + c10)) ] && [ "$the" = $((c01 + c11)) ] && ok ||
    bad "classify: predict says none $none, the $the; eval's confusion: $conf"

# tag: the words predicted right are the accuracy eval gives
awk 'BEGIN { ORS = "" } /^$/ { if (n) print "\n"; n = 0; next } { print (n ? " " : "") $1; n++ }
     END { if (n) print "\n" }' tag-valid.tsv >sentences.txt
run "tag: predict from the old checkpoint" L predict "$fx/tag.ckpt" sentences.txt --threads 1
right=$(tr ' ' '\n' <out | sed 's|.*/||' | paste - <(awk 'NF { print $2 }' tag-valid.tsv) |
        awk -F'\t' '$1 == $2 { n++ } END { print n + 0 }')
run "tag: eval the old checkpoint" L eval "$fx/tag.ckpt" tag-valid.tsv --json --threads 1
acc=$(num "$(tail -n 1 out)" accuracy) words=$(num "$(tail -n 1 out)" words)
close "tag: predict's right words over eval's words" "$(awk -v r="$right" -v w="$words" 'BEGIN { print r / w }')" "$acc"

run "lm: sample from the old checkpoint" L sample "$fx/lm.ckpt" --prime "The " --length 40 --seed 2
[ "$(wc -c <out)" -ge 44 ] && ok || bad "lm: sample printed $(wc -c <out) bytes, not the prime and 40 more"

finish
