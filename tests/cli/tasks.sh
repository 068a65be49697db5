#!/usr/bin/env bash
# tasks.sh BUILD - the three tasks end to end through the lstm program, on
# small real slices (tests/data: Brown text and tags; a learning rate
# above the defaults, for budgets of a few hundred steps) and on classification
# data this script makes: training reaches a stated quality, the same seed
# gives the same bytes, a run killed and resumed ends where an uninterrupted
# one does, eval/predict/sample/plot work, and each kind of bad input gets
# exit status 1 and one clear line. Prints "N passed, N failed" last.
set -u
build=${1:-build}
. "$(dirname "$0")/lib/checks.sh"
L=$(cd "$(dirname "$build/lstm")" && pwd)/lstm
here=$(cd "$(dirname "$0")" && pwd)
data=$here/../data
tmp=$(mktemp -d /tmp/lstm-tasks-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# ---- language model on 150 kB of Brown text --------------------------------
LMOPT=(--train "$data/brown-text-train.txt" --valid "$data/brown-text-valid.txt"
       --hidden 64 --embedding 16 --layers 1 --batch 16 --seq-len 50 --epochs 2 --lr 1e-2
       --valid-every 0 --threads 2 --quiet)
run "train lm" "$L" train lm "${LMOPT[@]}" --out "$tmp/lm.st" --log "$tmp/lm.log"
run "eval lm --json" "$L" eval "$tmp/lm.st" "$data/brown-text-valid.txt" --json
bpc=$(json_field "$tmp/out" bpc)
# uniform over the ~70 bytes is 6.1 bits, unigram frequencies 4.4: it learns
at_most "lm valid bits per character after 2 epochs" "${bpc:-99}" 3.6
grep -q '"perplexity"' "$tmp/out" && ok || bad "eval lm --json has perplexity"
run "train lm again, same seed" "$L" train lm "${LMOPT[@]}" --out "$tmp/lm2.st"
cmp -s "$tmp/lm.st" "$tmp/lm2.st" && ok || bad "the same seed gives the same model file"

# bfloat16 products (the default where the processor has AVX-512 BF16) learn
# as well as float ones; elsewhere asking for them is refused with the reason
run "train lm --precision fp32" "$L" train lm "${LMOPT[@]}" --precision fp32 --out "$tmp/lm32.st"
run "eval the fp32 lm" "$L" eval "$tmp/lm32.st" "$data/brown-text-valid.txt" --json
bpc32=$(json_field "$tmp/out" bpc)
if "$L" train lm "${LMOPT[@]}" --precision bf16 --out "$tmp/lm16.st" >/dev/null 2>"$tmp/err"; then
    ok
    run "eval the bf16 lm" "$L" eval "$tmp/lm16.st" "$data/brown-text-valid.txt" --json
    bpc16=$(json_field "$tmp/out" bpc)
    at_most "bf16 valid bpc minus fp32 valid bpc" \
        "$(awk -v a="${bpc16:-99}" -v b="${bpc32:-0}" 'BEGIN{print a - b}')" 0.03
else
    grep -qF "AVX-512 BF16" "$tmp/err" && ok || bad "--precision bf16 refused without the reason"
fi
refuse "an unknown precision" "expected auto, fp32 or bf16" \
    "$L" train lm "${LMOPT[@]}" --precision fp64 --out "$tmp/x.st"

# killed after its first checkpoint, resumed: the same model as uninterrupted
"$L" train lm "${LMOPT[@]}" --epochs 3 --valid-every 20 --out "$tmp/full.st" >/dev/null 2>&1
"$L" train lm "${LMOPT[@]}" --epochs 3 --valid-every 20 --out "$tmp/part.st" \
    --checkpoint "$tmp/ck.st" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 600); do [ -s "$tmp/ck.st" ] && break; sleep 0.05; done
sleep 0.3
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
if [ -s "$tmp/ck.st" ]; then ok; else bad "a checkpoint was written before the kill"; fi
run "resume lm" "$L" train lm "${LMOPT[@]}" --epochs 3 --valid-every 20 --out "$tmp/resumed.st" \
    --resume "$tmp/ck.st" --checkpoint "$tmp/ck.st"
cmp -s "$tmp/full.st" "$tmp/resumed.st" && ok || bad "resumed run ends with the uninterrupted run's model"

run "sample" "$L" sample "$tmp/lm.st" --prime "The " --length 200 --seed 3
[ "$(head -c 4 "$tmp/out")" = "The " ] && [ "$(wc -c <"$tmp/out")" -ge 204 ] && ok ||
    bad "sample prints the prime and 200 more bytes"
"$L" sample "$tmp/lm.st" --prime "The " --length 200 --seed 3 >"$tmp/out2" 2>/dev/null
cmp -s "$tmp/out" "$tmp/out2" && ok || bad "the same seed samples the same text"
run "sample --top-k 1 --temperature 0.5" "$L" sample "$tmp/lm.st" --length 50 --top-k 1 --temperature 0.5
refuse "a prime the model cannot encode" "never occurs in the model's training text" \
    "$L" sample "$tmp/lm.st" --prime $'caf\xc3\xa9'
run "plot the lm log" "$L" plot "$tmp/lm.log" --out "$tmp/lm.svg"
grep -q "<polyline" "$tmp/lm.svg" && ok || bad "the plot has curves"

# ---- classifier on made-up mail ---------------------------------------------
mk_mail 400 1 >"$tmp/cls-train.txt"
mk_mail 100 2 >"$tmp/cls-valid.txt"
CLOPT=(--hidden 16 --embedding 16 --epochs 3 --batch 16 --lr 1e-2 --threads 2 --quiet)
run "train classify" "$L" train classify --train "$tmp/cls-train.txt" --valid "$tmp/cls-valid.txt" \
    "${CLOPT[@]}" --out "$tmp/cls.st"
run "eval classify --json" "$L" eval "$tmp/cls.st" "$tmp/cls-valid.txt" --json
acc=$(json_field "$tmp/out" accuracy)
at_least "classify valid accuracy" "${acc:-0}" 0.95
grep -q '"per_class"' "$tmp/out" && grep -q '"confusion"' "$tmp/out" && ok ||
    bad "eval classify --json has per-class figures and the confusion matrix"
run "predict classify" "$L" predict "$tmp/cls.st" "$tmp/cls-valid.txt"
[ "$(wc -l <"$tmp/out")" -eq 100 ] && ok || bad "one prediction per input line"
grep -qvE '^__label__(spam|ham) [01]\.[0-9]{6}$' "$tmp/out" && bad "prediction lines are __label__NAME PROB" || ok
printf 'free money offer click now winner\nmeeting agenda notes for the project review\n' |
    "$L" predict "$tmp/cls.st" >"$tmp/out" 2>"$tmp/err"
[ "$(cut -d' ' -f1 "$tmp/out" | tr '\n' ' ')" = "__label__spam __label__ham " ] && ok ||
    bad "predict from stdin: $(cat "$tmp/out" "$tmp/err")"
run "train classify without --valid (5% held out)" "$L" train classify --train "$tmp/cls-train.txt" \
    "${CLOPT[@]}" --epochs 1 --out "$tmp/cls2.st"

# the directory layout of the sentiment tutorial's corpus
mkdir -p "$tmp/imdb/pos" "$tmp/imdb/neg"
for i in $(seq 1 30); do
    echo "a wonderful great film, I loved it $i" >"$tmp/imdb/pos/$i.txt"
    echo "an awful boring film, I hated it $i" >"$tmp/imdb/neg/$i.txt"
done
run "train classify on DIR/LABEL/*.txt" "$L" train classify --train "$tmp/imdb" --valid "$tmp/imdb" \
    "${CLOPT[@]}" --epochs 5 --out "$tmp/imdb.st"
run "eval on DIR/LABEL/*.txt" "$L" eval "$tmp/imdb.st" "$tmp/imdb" --json
at_least "directory-layout accuracy" "$(json_field "$tmp/out" accuracy)" 0.9

# ---- tagger on 1500 Brown sentences -----------------------------------------
TGOPT=(--train "$data/brown-pos-train.tsv" --valid "$data/brown-pos-valid.tsv" --hidden 32
       --embedding 32 --epochs 3 --lr 1e-2 --threads 2 --quiet)
run "train tag" "$L" train tag "${TGOPT[@]}" --out "$tmp/tag.st"
run "eval tag --json" "$L" eval "$tmp/tag.st" "$data/brown-pos-valid.tsv" --json
at_least "tag valid accuracy (most-frequent-tag baseline on this slice is lower)" \
    "$(json_field "$tmp/out" accuracy)" 0.80
grep -q '"unseen_accuracy"' "$tmp/out" && ok || bad "eval tag --json has unseen_accuracy"
printf 'The jury said it did find that the election was conducted .\n\nHe ran .\n' >"$tmp/sent.txt"
run "predict tag" "$L" predict "$tmp/tag.st" "$tmp/sent.txt"
[ "$(wc -l <"$tmp/out")" -eq 3 ] && [ -z "$(sed -n 2p "$tmp/out")" ] && ok ||
    bad "one output line per input line, empty stays empty"
head -1 "$tmp/out" | grep -qE '^The/[^ ]+ jury/[^ ]+ said/' && ok || bad "tag output is word/tag: $(head -1 "$tmp/out")"
# the same tagger with a CRF over its tags learns the slice as well, and
# predicts each word's most probable tag under it
run "train tag --crf 1" "$L" train tag "${TGOPT[@]}" --crf 1 --out "$tmp/tagcrf.st"
run "eval tag --crf 1 --json" "$L" eval "$tmp/tagcrf.st" "$data/brown-pos-valid.tsv" --json
at_least "tag --crf 1 valid accuracy" "$(json_field "$tmp/out" accuracy)" 0.80
run "predict tag --crf 1" "$L" predict "$tmp/tagcrf.st" "$tmp/sent.txt"
[ "$(wc -l <"$tmp/out")" -eq 3 ] && head -1 "$tmp/out" | grep -qE '^The/at jury/[^ ]+ said/[^ ]+ ' && ok ||
    bad "a CRF tagger's output, word/tag: $(head -1 "$tmp/out")"
# bench/tag_errors.py (docs/QUALITY.md's table of errors) counts what eval
# counts (and the few words whose tag the model does not know, as errors)
run "bench/tag_errors.py" python3 "$here/../../bench/tag_errors.py" --lstm "$L" "$tmp/tag.st" \
    "$data/brown-pos-valid.tsv" "$data/brown-pos-train.tsv"
te=$(head -1 "$tmp/out" | sed -n 's/.*accuracy \([0-9.]*\)$/\1/p')
grep -q '^never seen ' "$tmp/out" && ok || bad "tag_errors.py prints the unseen words' line"
run "eval tag --json, again" "$L" eval "$tmp/tag.st" "$data/brown-pos-valid.tsv" --json
within "tag_errors.py's accuracy is eval's" "$te" "$(json_field "$tmp/out" accuracy)" 0.002

# ---- bad input ----------------------------------------------------------------
printf '__label__a hello\nno label here\n' >"$tmp/nolabel.txt"
refuse "a line without a label" "nolabel.txt: line 2: expected __label__NAME" \
    "$L" train classify --train "$tmp/nolabel.txt" --out "$tmp/x.st" --quiet
printf 'The\tat\njury nn\n' >"$tmp/notab.tsv"
refuse "a tag line without a tab" "notab.tsv: line 2: expected word<TAB>tag" \
    "$L" train tag --train "$tmp/notab.tsv" --out "$tmp/x.st" --quiet
: >"$tmp/empty.txt"
refuse "an empty text" "empty.txt: empty" \
    "$L" train lm --train "$tmp/empty.txt" --out "$tmp/x.st" --quiet
refuse "a tag model given plain text" "expected word<TAB>tag" \
    "$L" eval "$tmp/tag.st" "$data/brown-text-valid.txt"
refuse "a classify model asked to sample" "only a language model" "$L" sample "$tmp/cls.st"
refuse "an lm model asked to predict" "language model" "$L" predict "$tmp/lm.st" "$tmp/sent.txt"
refuse "a safetensors file that is not a model" "not an lstm model file" \
    "$L" eval "$here/../fixtures/lstm_basic.safetensors" "$tmp/sent.txt"
printf 'x' >"$tmp/garbage.st"
refuse "garbage as a model" "garbage.st" "$L" eval "$tmp/garbage.st" "$tmp/sent.txt"
refuse "resume with other data" "other training data" \
    "$L" train lm --train "$data/brown-text-valid.txt" --resume "$tmp/ck.st" --out "$tmp/x.st" --quiet
refuse "an unknown task" "unknown task 'translate'" "$L" train translate
[ ! -e "$tmp/x.st" ] && ok || bad "failed runs write no model"

finish
