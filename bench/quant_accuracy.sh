#!/usr/bin/env bash
# quant_accuracy.sh - each task's defaults model, quantized with `lstm quantize`,
# against the float model on the validation files: the issue's bounds are
# tag and classify within 0.2 points of accuracy, lm within 0.02 bits per
# character. Exits 1 when a bound is missed.
#
#   bench/quant_accuracy.sh [--time-limit S] [--threads N] [--data DIR] [--models DIR]
#
# MODELS/lm.st, tag.st, cls.st are used when they exist; otherwise each is
# trained there with the README's default command (`lstm train TASK
# --time-limit S`, 600 s by default, as the README's quality table; pass
# less on a busy machine and say so). DATA holds brown-text/, brown-pos/,
# spam/ as ../shared/data does. Run it under the shared CPU lock.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
L=${LSTM_BIN:-$here/../lstm}
limit=600 threads=2 data=$here/../../shared/data models=
while [ $# -gt 0 ]; do
    case $1 in
    --time-limit) limit=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    *) echo "usage: $0 [--time-limit S] [--threads N] [--data DIR] [--models DIR]" >&2; exit 2 ;;
    esac
done
[ -n "$models" ] || models=$(mktemp -d /tmp/lstm-quant-XXXXXX)
mkdir -p "$models"

# task model train valid metric bound (bigger is better for accuracy)
rows=("lm lm.st $data/brown-text/train.txt $data/brown-text/valid.txt bpc 0.02"
      "tag tag.st $data/brown-pos/train.tsv $data/brown-pos/valid.tsv accuracy 0.002"
      "classify cls.st $data/spam/train.txt $data/spam/valid.txt accuracy 0.002")
field() { sed -n "s/.*\"$2\":\([-0-9.e]*\).*/\1/p" "$1" | tail -n 1; }
fail=0
printf '| task | metric | float | int8 | difference | bound | size float -> int8 |\n|---|---|---:|---:|---:|---:|---:|\n' >"$models/table.md"
for row in "${rows[@]}"; do
    set -- $row
    task=$1 model=$models/$2 train=$3 valid=$4 metric=$5 bound=$6
    if [ ! -f "$model" ]; then
        echo "training $task for $limit s ..." >&2
        "$L" train "$task" --train "$train" --valid "$valid" --out "$model" \
            --time-limit "$limit" --threads "$threads" --quiet
    fi
    q=${model%.st}.int8.st
    "$L" quantize "$model" "$q"
    "$L" eval "$model" "$valid" --json 2>/dev/null >"$models/$task.float.json"
    "$L" eval "$q" "$valid" --json 2>/dev/null >"$models/$task.int8.json"
    f=$(field "$models/$task.float.json" "$metric") i=$(field "$models/$task.int8.json" "$metric")
    verdict=$(awk -v f="$f" -v i="$i" -v b="$bound" -v m="$metric" 'BEGIN {
        d = i - f; bad = (m == "bpc") ? (d > b) : (-d > b);
        printf "%+.4f %s", d, bad ? "MISSED" : "ok" }')
    sizes="$(($(stat -c %s "$model") / 1024)) -> $(($(stat -c %s "$q") / 1024)) KiB"
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$task" "$metric" "$f" "$i" \
        "${verdict% *}" "$bound" "$sizes" >>"$models/table.md"
    [ "${verdict#* }" = ok ] || fail=1
done
cat "$models/table.md"
echo "models in $models (threads $threads$([ -n "$limit" ] && echo ", trained $limit s where trained here"))"
[ $fail -eq 0 ] && echo "every bound met" || { echo "a bound was missed"; exit 1; }
