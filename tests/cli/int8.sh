#!/usr/bin/env bash
# int8.sh BUILD - quantized task models through the lstm program, on the
# small slices of tests/data: a small lm and tagger trained, quantized with
# `lstm quantize`, evaluated against their float selves within the issue's
# bounds (lm 0.02 bits per character, tag 0.2 points), sampled and asked to
# predict; the file's form; bad inputs refused with one line. Prints
# "N passed, N failed" last.
set -u
build=${1:-build}
. "$(dirname "$0")/lib/checks.sh"
L=$(cd "$(dirname "$build/lstm")" && pwd)/lstm
here=$(cd "$(dirname "$0")" && pwd)
data=$here/../data
tmp=$(mktemp -d /tmp/lstm-int8-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# ---- lm: two layers with a projection, so every matrix kind is there ----
run "train lm" "$L" train lm --train "$data/brown-text-train.txt" --valid "$data/brown-text-valid.txt" \
    --hidden 64 --embedding 16 --layers 2 --proj 32 --batch 16 --seq-len 50 --epochs 1 --lr 1e-2 \
    --valid-every 0 --threads 2 --quiet --out "$tmp/lm.st"
run "quantize lm" "$L" quantize "$tmp/lm.st" "$tmp/lmq.st"
run "eval lm" "$L" eval "$tmp/lm.st" "$data/brown-text-valid.txt" --json
cp "$tmp/out" "$tmp/lm.json"
run "eval int8 lm" "$L" eval "$tmp/lmq.st" "$data/brown-text-valid.txt" --json
cp "$tmp/out" "$tmp/lmq.json"
f=$(json_field "$tmp/lm.json" bpc) q=$(json_field "$tmp/lmq.json" bpc)
within "int8 lm bits per character against float" "$q" "$f" 0.02
# the file: I8 matrices with F32 scales, float embedding, the metadata
head -c 8 "$tmp/lmq.st" | od -An -tu8 | { read n; head -c $((8 + n)) "$tmp/lmq.st" | tail -c "$n"; } >"$tmp/hdr"
if grep -q '"lstm.weight_hr_l1.int8":{"dtype":"I8"' "$tmp/hdr" && grep -q '"lstm.weight_hr_l1.scale":{"dtype":"F32"' "$tmp/hdr" &&
   grep -q '"decoder.weight.int8"' "$tmp/hdr" && ! grep -q '"decoder.weight":' "$tmp/hdr" &&
   grep -q '"embedding.byte.weight":{"dtype":"F32"' "$tmp/hdr" &&
   grep -q '"lstm.quantization":"int8-rowwise"' "$tmp/hdr" && grep -q '"lstm.task":"lm"' "$tmp/hdr"; then ok
else bad "the int8 lm file's header: $(head -c 400 "$tmp/hdr")"; fi
size_f=$(stat -c %s "$tmp/lm.st") size_q=$(stat -c %s "$tmp/lmq.st")
[ "$size_q" -lt $((size_f / 2)) ] && ok || bad "int8 file $size_q bytes, float $size_f"
run "sample int8 lm" "$L" sample "$tmp/lmq.st" --length 200 --seed 5
[ "$(wc -c <"$tmp/out")" -ge 200 ] && ok || bad "sample wrote $(wc -c <"$tmp/out") bytes"
run "quantize twice" "$L" quantize "$tmp/lmq.st" "$tmp/lmq2.st"
cmp -s "$tmp/lmq.st" "$tmp/lmq2.st" && ok || bad "quantizing an int8 model again changed it"

# ---- tag: bidirectional ----
run "train tag" "$L" train tag --train "$data/brown-pos-train.tsv" --valid "$data/brown-pos-valid.tsv" \
    --hidden 32 --epochs 2 --threads 2 --quiet --out "$tmp/tag.st"
run "quantize tag" "$L" quantize "$tmp/tag.st" "$tmp/tagq.st"
"$L" eval "$tmp/tag.st" "$data/brown-pos-valid.tsv" --json >"$tmp/tag.json" 2>/dev/null
"$L" eval "$tmp/tagq.st" "$data/brown-pos-valid.tsv" --json >"$tmp/tagq.json" 2>/dev/null
f=$(json_field "$tmp/tag.json" accuracy) q=$(json_field "$tmp/tagq.json" accuracy)
[ -n "$f" ] && [ -n "$q" ] && ok || bad "tag eval figures: '$f' '$q'"
within "int8 tag accuracy against float" "$q" "$f" 0.002
echo "The jury said the election was fair ." >"$tmp/s.txt"
run "predict int8 tag" "$L" predict "$tmp/tagq.st" "$tmp/s.txt"
grep -q '^The/' "$tmp/out" && ok || bad "predict output: $(head -c 200 "$tmp/out")"

# ---- ONNX's cell options: the peephole vectors stay float, like the
# biases; the clip and the coupled gates act in the int8 forward too ----
run "train tag with the cell options" "$L" train tag --train "$data/brown-pos-train.tsv" \
    --valid "$data/brown-pos-valid.tsv" --hidden 32 --epochs 2 --threads 2 --quiet \
    --peephole --cell-clip 1.5 --input-forget --out "$tmp/tagp.st"
run "quantize tag with the cell options" "$L" quantize "$tmp/tagp.st" "$tmp/tagpq.st"
head -c 8 "$tmp/tagpq.st" | od -An -tu8 | { read n; head -c $((8 + n)) "$tmp/tagpq.st" | tail -c "$n"; } >"$tmp/hdr"
grep -q '"lstm.weight_peephole_l0":{"dtype":"F32"' "$tmp/hdr" && grep -q '"lstm.clip":"1.5"' "$tmp/hdr" &&
    grep -q '"lstm.weight_hh_l0.int8"' "$tmp/hdr" && ok ||
    bad "the int8 tagger with peepholes: $(head -c 400 "$tmp/hdr")"
"$L" eval "$tmp/tagp.st" "$data/brown-pos-valid.tsv" --json >"$tmp/tagp.json" 2>/dev/null
"$L" eval "$tmp/tagpq.st" "$data/brown-pos-valid.tsv" --json >"$tmp/tagpq.json" 2>/dev/null
f=$(json_field "$tmp/tagp.json" accuracy) q=$(json_field "$tmp/tagpq.json" accuracy)
[ -n "$f" ] && [ -n "$q" ] && ok || bad "tag with the cell options: eval figures '$f' '$q'"
within "int8 tag with peephole, clip and input_forget: accuracy against float" "$q" "$f" 0.002

# ---- bench --precision int8 ----
run "bench --precision int8" "$L" bench --mode stream --input 16 --hidden 32 --layers 2 --batch 1 \
    --steps 5 --repeat 1 --threads 1 --precision int8
grep -Eq 'kernels=(avx512vnni|avxvnni|avx2|reference) ' "$tmp/out" && ok || bad "bench int8 kernels: $(cat "$tmp/out")"
LSTM_KERNELS=reference "$L" bench --mode infer --input 16 --hidden 32 --steps 5 --repeat 1 --precision int8 >"$tmp/out" 2>&1
grep -q 'kernels=reference ' "$tmp/out" && ok || bad "LSTM_KERNELS=reference: $(cat "$tmp/out")"
refuse "bench --precision int8 --mode train" "inference only" "$L" bench --mode train --input 16 \
    --hidden 32 --steps 5 --repeat 1 --precision int8

# ---- bad inputs ----
refuse "quantize a missing file" "no-such" "$L" quantize "$tmp/no-such.st" "$tmp/y.st"
printf 'not a safetensors file' >"$tmp/junk.st"
refuse "quantize junk" "junk.st" "$L" quantize "$tmp/junk.st" "$tmp/y.st"
refuse "quantize without OUT" "expected MODEL OUT" "$L" quantize "$tmp/lm.st"
[ ! -e "$tmp/y.st" ] && ok || bad "a failed quantize left an output file"

finish
