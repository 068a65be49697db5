#!/usr/bin/env bash
# same_models.sh OLD_LSTM NEW_LSTM [DATA] - trains each task for a fixed number of
# epochs on a small slice with a fixed seed and thread count, once with each
# program, and compares the model files byte for byte (and, where they differ, the
# tensors and the metadata separately). For refactors that must not change
# behaviour. DATA: a folder laid out like ../shared/data (default: that folder).
# Prints one line per task and exits non-zero if any model differs.
set -u
old=$1 new=$2
data=${3:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data}
tmp=$(mktemp -d /tmp/same-models-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
head -c 300000 "$data/brown-text/train.txt" >"$tmp/lm-train.txt"
head -c 60000 "$data/brown-text/valid.txt" >"$tmp/lm-valid.txt"
head -n 6000 "$data/brown-pos/train.tsv" >"$tmp/tag-train.tsv"
head -n 1500 "$data/brown-pos/valid.tsv" >"$tmp/tag-valid.tsv"
head -n 300 "$data/spam/train.txt" >"$tmp/cls-train.txt"
head -n 80 "$data/spam/valid.txt" >"$tmp/cls-valid.txt"
common=(--epochs 2 --seed 7 --threads 2 --quiet)
args_lm=(--train "$tmp/lm-train.txt" --valid "$tmp/lm-valid.txt" --hidden 64 --embedding 16
         --batch 16 --seq-len 40 --valid-every 150 --log "$tmp/LOG")
args_tag=(--train "$tmp/tag-train.tsv" --valid "$tmp/tag-valid.tsv" --hidden 32 --embedding 32
          --log "$tmp/LOG")
args_classify=(--train "$tmp/cls-train.txt" --valid "$tmp/cls-valid.txt" --hidden 32
               --embedding 32 --max-length 200 --log "$tmp/LOG")
rc=0
for task in lm tag classify; do
    eval "args=(\"\${args_$task[@]}\")"
    for who in old new; do
        prog=$old; [ $who = new ] && prog=$new
        a=("${args[@]}"); a=("${a[@]/LOG/$task-$who.log}")
        "$prog" train "$task" "${a[@]}" "${common[@]}" --out "$tmp/$task-$who.st" \
            --checkpoint "$tmp/$task-$who.ckpt" 2>"$tmp/err" || { echo "$task: $who failed: $(tail -1 "$tmp/err")"; rc=1; }
    done
    if cmp -s "$tmp/$task-old.st" "$tmp/$task-new.st"; then
        echo "$task: model files identical ($(wc -c <"$tmp/$task-new.st") bytes)"
    else
        echo "$task: model files DIFFER"; rc=1
    fi
    # validation figures in the logs (elapsed times and speeds differ by nature)
    f() { grep '"valid"' "$1" | sed 's/.*"value":\([-0-9.e]*\).*/\1/' | tr '\n' ' '; }
    if [ "$(f "$tmp/$task-old.log")" = "$(f "$tmp/$task-new.log")" ]; then
        echo "$task: validation figures identical: $(f "$tmp/$task-new.log")"
    else
        echo "$task: validation figures DIFFER: $(f "$tmp/$task-old.log") / $(f "$tmp/$task-new.log")"; rc=1
    fi
done
exit $rc
