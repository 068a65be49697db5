#!/usr/bin/env bash
# embed_sizes.sh [DATA_DIR] - the embeddable runtime's sizes, as the README
# reports them: the code (text + rodata of src/embed/lstm_embed.c, -Os
# -mthumb, for ARMv7-A hard float and for Cortex-M4F) and, for the three
# task models at lstm train's default sizes, for a 2 x 256 streaming LSTM
# and a 1 x 160 one (input 40), their constant data and the arena lstm_embed_arena_size asks for,
# float and (when this lstm has the quantize verb) int8. The models are
# trained for a few seconds only: their sizes are those of trained models,
# their weights are not. DATA_DIR holds brown-text/, brown-pos/, spam/ as in
# /work/shared/data (the default). Run under the shared lock:
#   flock /tmp/lstm-cpu.lock scripts/embed_sizes.sh
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
data=${1:-/work/shared/data}
L=$root/lstm
tmp=$(mktemp -d /tmp/lstm-sizes-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
[ -x "$L" ] || make -C "$root" -s lstm

echo "== code: src/embed/lstm_embed.c, gcc 12 -Os -mthumb (text + rodata; data and bss are 0)"
for target in "armv7-a (armhf)|" "cortex-m4f|-mcpu=cortex-m4 -mfpu=fpv4-sp-d16 -mfloat-abi=hard"; do
    name=${target%%|*} flags=${target#*|}
    # shellcheck disable=SC2086
    arm-linux-gnueabihf-gcc -std=c99 -pedantic -Os -mthumb $flags -ffp-contract=off \
        -I"$root/include" -c "$root/src/embed/lstm_embed.c" -o "$tmp/rt.o"
    arm-linux-gnueabihf-size -A "$tmp/rt.o" | awk -v n="$name" '
        $1 ~ /^\.text/ || $1 ~ /^\.rodata/ { s += $2 }
        $1 ~ /^\.data/ || $1 ~ /^\.bss/ { d += $2 }
        END { printf "  %-18s %6d bytes (data + bss %d)\n", n, s, d }'
done

train() { # NAME TASK ARGS...
    local n=$1; shift
    "$L" train "$@" --out "$tmp/$n.st" --time-limit 3 --threads 2 --quiet >/dev/null
}
train lm lm --train "$data/brown-text/train.txt"
train classify classify --train "$data/spam/train.txt"
train tag tag --train "$data/brown-pos/train.tsv"
train lm256 lm --train "$data/brown-text/train.txt" --hidden 256 --layers 2
# about the weight size of TensorFlow Lite Micro's LSTM example (< 125 kB int8)
train lm160 lm --train "$data/brown-text/train.txt" --hidden 160 --layers 1 --embedding 40

q=0
if "$L" quantize --help >/dev/null 2>&1; then q=1; fi
report() { # NAME FILE [export-c options]
    local n=$1 f=$2; shift 2
    "$L" export-c "$f" "$tmp/$n.c" --name m "$@"
    local what consts arena
    what=$(sed -n 's/^ \* \(LSTM_EMBED_[A-Z]*: .*\)\.$/\1/p' "$tmp/$n.c")
    consts=$(sed -n 's/^ \* Constant data.*: \([0-9]*\) bytes\.$/\1/p' "$tmp/$n.c")
    arena=$(sed -n 's/^ \* Arena[^:]*): \(.*\)$/\1/p' "$tmp/$n.c")
    printf '  %-22s %s\n  %-22s constant data %s bytes; arena %s\n' "$n" "$what" "" "$consts" "$arena"
}
echo "== models (lstm train's default sizes; lm256: --hidden 256 --layers 2)"
for n in lm classify tag; do
    report "$n" "$tmp/$n.st"
    if [ $q = 1 ]; then
        "$L" quantize "$tmp/$n.st" "$tmp/q$n.st" >/dev/null
        report "$n int8" "$tmp/q$n.st"
    fi
done
report "2 x 256 LSTM" "$tmp/lm256.st" --lstm-only
if [ $q = 1 ]; then
    "$L" quantize "$tmp/lm256.st" "$tmp/qlm256.st" >/dev/null
    report "2 x 256 LSTM int8" "$tmp/qlm256.st" --lstm-only
fi
report "1 x 160 LSTM, input 40" "$tmp/lm160.st" --lstm-only
if [ $q = 1 ]; then
    "$L" quantize "$tmp/lm160.st" "$tmp/qlm160.st" >/dev/null
    report "1 x 160 LSTM int8" "$tmp/qlm160.st" --lstm-only
fi
[ $q = 1 ] || echo "(no int8 figures: this lstm has no quantize verb)"
