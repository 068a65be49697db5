#!/usr/bin/env bash
# embed.sh BUILD - the embeddable runtime through lstm export-c: trains a
# small model of each task (on tests/data), exports them and a PyTorch
# fixture's nn.LSTM as C, and checks that
#   - the runtime's object file needs nothing from libc but memcpy and
#     memset (nm; x86-64 and, when installed, ARM);
#   - the driver built from the exported C prints, byte for byte, what the
#     driver reading the same model files prints (export-c loses nothing);
#   - the same driver cross-compiled for ARM (gcc-arm-linux-gnueabihf,
#     -Os -mthumb, static) and run under qemu-arm prints the same bytes:
#     every output, as hex floats, bit for bit (float and int8 models);
#   - export-c refuses bad input with one clear line.
# The cross-build check says "ok skipping" without the ARM compiler or
# qemu-arm (scripts/install-deps.sh --embed installs them). Prints
# "N passed, N failed" last.
set -u
build=${1:-build}
. "$(dirname "$0")/lib/checks.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
bdir=$(cd "$root" && cd "$build" && pwd) || exit 2 # BUILD relative to the root, or absolute
L=$bdir/lstm
DRV=$bdir/tests/embed_driver
data=$root/tests/data
tmp=$(mktemp -d /tmp/lstm-embed-XXXXXX)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$tmp"' EXIT
EMBED_CFLAGS=(-std=c99 -pedantic -Wall -Wextra -Werror -ffp-contract=off -I"$root/include")

# ---- the runtime needs nothing but memcpy and memset ------------------------
# undefined symbols of an object file, one per line
undefined() { nm -u "$1" | awk '{print $2}' | sort | tr '\n' ' '; }
run "the runtime builds as C99 -pedantic -Werror" cc "${EMBED_CFLAGS[@]}" -O2 \
    -c "$root/src/embed/lstm_embed.c" -o "$tmp/rt.o"
u=$(undefined "$tmp/rt.o")
[ "$u" = "memcpy memset " ] && ok || bad "x86-64 runtime object needs: $u"

# ---- small trained models -------------------------------------------------
head -c 30000 "$data/brown-text-train.txt" >"$tmp/lm.txt"
awk 'NR <= 3000' "$data/brown-pos-train.tsv" >"$tmp/tag.tsv"
# classify: Brown lines, labelled by whether they mention "the"
awk 'NR <= 400 && length($0) > 20 { print (/ the / ? "__label__the " : "__label__none ") $0 }' \
    "$data/brown-text-train.txt" >"$tmp/cls.txt"
COMMON=(--epochs 1 --threads 2 --quiet --embedding 16)
run "train lm" "$L" train lm --train "$tmp/lm.txt" --out "$tmp/lm.st" --hidden 32 --layers 2 \
    --proj 16 --batch 8 --seq-len 32 "${COMMON[@]}"
run "train classify" "$L" train classify --train "$tmp/cls.txt" --out "$tmp/cls.st" --hidden 24 \
    --bidirectional 1 "${COMMON[@]}"
run "train tag" "$L" train tag --train "$tmp/tag.tsv" --out "$tmp/tag.st" --hidden 24 \
    --layers 2 --bidirectional 1 "${COMMON[@]}"
run "train tag with fewer affix tables" "$L" train tag --train "$tmp/tag.tsv" --out "$tmp/tagx.st" \
    --hidden 16 --suffixes 2 --prefixes 1 "${COMMON[@]}"
run "train tag with a CRF over its tags" "$L" train tag --train "$tmp/tag.tsv" \
    --out "$tmp/tagcrf.st" --hidden 16 --crf 1 "${COMMON[@]}"
cp "$root/tests/fixtures/lstm_layers2_bidir_proj_lengths_h0.safetensors" "$tmp/bare.st"
names=(lm cls tag tagx tagcrf bare)

# the int8 forms, when this build has lstm quantize
if "$L" quantize --help >/dev/null 2>&1; then
    for n in lm cls tag bare; do
        prefix=()
        [ $n = bare ] && prefix=(--prefix "") # the fixture also holds grad.weight_ih_l0 ...
        run "quantize $n" "$L" quantize "$tmp/$n.st" "$tmp/q$n.st" "${prefix[@]}"
        [ -f "$tmp/q$n.st" ] && names+=("q$n")
    done
else
    echo "ok skipping the int8 exports: this lstm has no quantize verb"
fi

# ---- export-c, and the driver from C against the driver from files ---------
: >"$tmp/models.inc"
srcs=()
args=()
for n in "${names[@]}"; do
    run "export-c $n" "$L" export-c "$tmp/$n.st" "$tmp/m_$n.c" --name "m_$n"
    echo "MODEL(m_$n)" >>"$tmp/models.inc"
    srcs+=("$tmp/m_$n.c")
    args+=("m_$n=$tmp/$n.st")
done
run "the exported C and the driver build (C99 -pedantic -Werror)" cc "${EMBED_CFLAGS[@]}" -O2 \
    -I"$tmp" -o "$tmp/drv" "$root/tests/embed/driver.c" "$root/src/embed/lstm_embed.c" "${srcs[@]}"
"$tmp/drv" >"$tmp/out.c.txt" 2>&1 && ok || bad "driver (exported C) exit $?"
"$DRV" "${args[@]}" >"$tmp/out.files.txt" 2>&1 && ok || bad "driver (model files) exit $?"
if [ -s "$tmp/out.c.txt" ] && cmp -s "$tmp/out.c.txt" "$tmp/out.files.txt"; then ok
else bad "the exported C and the model files give different outputs"
    diff "$tmp/out.c.txt" "$tmp/out.files.txt" | head -5 | cut -c1-200; fi
n_out=$(grep -c '' "$tmp/out.c.txt")
[ "$n_out" -ge $((${#names[@]} * 3)) ] && ok || bad "driver printed $n_out lines"

# ---- ARM (Thumb-2, hard float) under qemu-arm: the same bytes --------------
ARMCC=arm-linux-gnueabihf-gcc
if command -v $ARMCC >/dev/null && command -v qemu-arm >/dev/null; then
    run "the runtime for ARM (-Os -mthumb)" $ARMCC "${EMBED_CFLAGS[@]}" -Os -mthumb \
        -c "$root/src/embed/lstm_embed.c" -o "$tmp/rt-arm.o"
    u=$(undefined "$tmp/rt-arm.o")
    [ "$u" = "memcpy memset " ] && ok || bad "ARM runtime object needs: $u"
    run "the driver for ARM" $ARMCC "${EMBED_CFLAGS[@]}" -Os -mthumb -static -I"$tmp" \
        -o "$tmp/drv-arm" "$root/tests/embed/driver.c" "$root/src/embed/lstm_embed.c" "${srcs[@]}"
    qemu-arm "$tmp/drv-arm" >"$tmp/out.arm.txt" 2>&1 && ok || bad "driver under qemu-arm exit $?"
    if cmp -s "$tmp/out.c.txt" "$tmp/out.arm.txt"; then ok
    else bad "ARM outputs differ from x86-64's"
        diff "$tmp/out.c.txt" "$tmp/out.arm.txt" | head -5 | cut -c1-200; fi
else
    echo "ok skipping the ARM build: no $ARMCC or qemu-arm (scripts/install-deps.sh --embed)"
fi

# --lstm-only: the LSTM of a task model as a bare model that builds
run "export-c --lstm-only" "$L" export-c "$tmp/lm.st" "$tmp/lm_lstm.c" --name lm_lstm --lstm-only
grep -q "LSTM_EMBED_BARE" "$tmp/lm_lstm.c" && ! grep -q "decoder" "$tmp/lm_lstm.c" && ok ||
    bad "--lstm-only wrote a task model"
run "the --lstm-only C builds" cc "${EMBED_CFLAGS[@]}" -c "$tmp/lm_lstm.c" -o "$tmp/lm_lstm.o"

# ---- the README's embedding example, with the lm exported as `lm` ---------
awk '/^    #include "lstm_embed.h"/ { on = 1 } on && NF && !/^    / { exit }
     on { sub(/^    /, ""); print }' "$root/README.md" >"$tmp/app.c"
grep -q "next_byte" "$tmp/app.c" && ok || bad "the README has its embedding example"
printf '#include <stdio.h>\nint next_byte(const char *prime);\n%s\n' \
    'int main(void) { int b = next_byte("the "); printf("%d\n", b); return b < 0; }' >"$tmp/app_main.c"
lm_file=$tmp/qlm.st
[ -f "$lm_file" ] || lm_file=$tmp/lm.st
run "export-c --name lm" "$L" export-c "$lm_file" "$tmp/lm.c" --name lm
run "the README's embedding example builds" cc "${EMBED_CFLAGS[@]}" -o "$tmp/app" "$tmp/app.c" \
    "$tmp/app_main.c" "$tmp/lm.c" "$root/src/embed/lstm_embed.c"
run "the README's embedding example runs" "$tmp/app"

# ---- bad input ----------------------------------------------------------------
refuse "export-c of a file that is not there" "no-such" "$L" export-c "$tmp/no-such.st" "$tmp/x.c"
refuse "export-c with a bad --name" "not a C identifier" "$L" export-c "$tmp/lm.st" "$tmp/x.c" --name 9x
printf 'not a safetensors file at all' >"$tmp/junk.st"
refuse "export-c of junk" "junk.st" "$L" export-c "$tmp/junk.st" "$tmp/x.c"
[ ! -e "$tmp/x.c" ] && ok || bad "a refused export left $tmp/x.c"

finish
