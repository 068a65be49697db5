#!/usr/bin/env bash
# unhappy.sh BUILD - the unhappy path through the lstm program, one check per
# kind of fault: numbers that are not finite, work lost to a bad path, a
# signal or a kill, data files that are fine elsewhere (a byte-order mark,
# spaces around a tag, labels the model does not know), --json that is not
# JSON, a progress line wider than the terminal, and samples that start with
# junk. Small models on tests/data; prints "N passed, N failed" last.
set -u
build=${1:-build}
. "$(dirname "$0")/lib/checks.sh"
L=$(cd "$(dirname "$build/lstm")" && pwd)/lstm
here=$(cd "$(dirname "$0")" && pwd)
data=$here/../data
tmp=$(mktemp -d /tmp/lstm-unhappy-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 2
# expect DESC STATUS NEEDLE CMD...: exit status STATUS and NEEDLE on stderr
expect() {
    local what=$1 want=$2 needle=$3; shift 3
    "$@" >out 2>err
    local rc=$?
    if [ $rc -eq "$want" ] && grep -qF -- "$needle" err; then ok
    else bad "$what: exit $rc (want $want), stderr: $(head -c 400 err)"; fi
}
json_num() { sed -n "s/.*\"$2\":\([-0-9.e]*\).*/\1/p" "$1" | head -n 1; }

head -c 60000 "$data/brown-text-train.txt" >lm.txt
head -c 20000 "$data/brown-text-valid.txt" >lmv.txt
LM=(--train lm.txt --valid lmv.txt --hidden 32 --embedding 8 --batch 8 --seq-len 25 --threads 2)

# ---- numbers that are not finite ---------------------------------------------
# SGD at 3e38 overflows the weights within a few steps: the run must stop with
# the step, exit non-zero, and leave no model with weights that are not finite
expect "a diverging run ends, naming the step" 1 "training diverged" \
    "$L" train lm "${LM[@]}" --optimizer sgd --lr 3e38 --clip 0 --epochs 1 --valid-every 1 \
    --out div.st --quiet
grep -q "step [0-9]" err && ok || bad "the divergence message names the step: $(cat err)"
if [ -f div.st ]; then # a best from before the divergence: finite, and usable
    "$L" eval div.st lmv.txt >/dev/null 2>err && ok || bad "the best model before divergence evaluates: $(cat err)"
    grep -q "best model so far is in div.st" <(cat err; "$L" train lm "${LM[@]}" --optimizer sgd \
        --lr 3e38 --clip 0 --epochs 1 --valid-every 1 --out div.st --quiet 2>&1) && ok ||
        bad "a diverged run says where the best model so far is"
else
    ok; ok
fi

# a small model for what follows
"$L" train lm "${LM[@]}" --epochs 2 --lr 1e-2 --valid-every 0 --out lm.st --quiet 2>err ||
    bad "train the small lm: $(cat err)"
# eval, predict and sample refuse a model whose weights are not finite, in
# one line naming the file: element 5 of lstm.weight_hh_l0 made NaN
# (0x7fc00000) or +Inf (0x7f800000), little-endian. A safetensors file is an
# 8-byte little-endian header length n, n bytes of JSON whose data_offsets
# count from the end of the header, then the data.
poison() { # MODEL OUT BYTES
    local n at
    n=$(od -An -t u1 -N 8 "$1" | awk '{ for (i = NF; i >= 1; i--) n = n * 256 + $i } END { print n }')
    at=$(head -c $((8 + n)) "$1" | tail -c "$n" | grep -o '"lstm.weight_hh_l0":{[^}]*}' |
         sed -n 's/.*"data_offsets":\[\([0-9]*\),.*/\1/p')
    cp "$1" "$2"
    [ -n "$at" ] && printf "$3" | dd of="$2" bs=1 seek=$((8 + n + at + 4 * 5)) conv=notrunc 2>/dev/null
}
# very small temperatures are the argmax: the same text as --top-k 1, whatever the seed
"$L" sample lm.st --prime "The " --length 40 --top-k 1 >greedy.txt 2>err
for t in 1e-30 1e-38 1e-45; do
    "$L" sample lm.st --prime "The " --length 40 --temperature $t --seed 7 >cold.txt 2>err
    cmp -s greedy.txt cold.txt && ok || bad "--temperature $t gives the argmax: $(head -c 80 cold.txt)"
done

# ---- work is never lost ------------------------------------------------------
# the paths a run writes are checked before its data is read (the data here
# does not even exist: the complaint must be about the path)
expect "--out in a folder that does not exist, before any data" 1 "--out nowhere/m.st" \
    "$L" train lm --train missing.txt --out nowhere/m.st
expect "--checkpoint in a folder that does not exist" 1 "--checkpoint nowhere/c.st" \
    "$L" train lm --train missing.txt --out m.st --checkpoint nowhere/c.st
expect "--log in a folder that does not exist" 1 "--log nowhere/l.log" \
    "$L" train lm --train missing.txt --out m.st --log nowhere/l.log
mkdir -p adir
expect "--out that is a folder" 1 "is a folder" "$L" train lm --train missing.txt --out adir

# SIGINT and SIGTERM: the run ends at the end of a step with exit 130/143, the
# best model so far evaluates and the checkpoint resumes
for sig in INT TERM; do
    rm -f sig.st sig.ck sig.log
    "$L" train lm "${LM[@]}" --epochs 3 --valid-every 20 --out sig.st --checkpoint sig.ck \
        --log sig.log --quiet 2>err &
    pid=$!
    for _ in $(seq 100); do grep -q '"valid"' sig.log 2>/dev/null && break; sleep 0.1; done
    kill -$sig $pid
    wait $pid
    rc=$?
    want=$([ $sig = INT ] && echo 130 || echo 143)
    [ $rc -eq "$want" ] && ok || bad "SIG$sig: exit $rc, want $want: $(cat err)"
    grep -q "best model so far is in sig.st" err && ok || bad "SIG$sig says where the best model is: $(cat err)"
    "$L" eval sig.st lmv.txt >/dev/null 2>&1 && ok || bad "SIG$sig: the best model evaluates"
    "$L" eval sig.ck lmv.txt >/dev/null 2>&1 && ok || bad "SIG$sig: eval accepts the checkpoint (its best weights)"
done
# SIGINT before the first validation: no model was chosen yet; the model so
# far is written, and the message does not call it the best
rm -f early.st early.log
"$L" train lm "${LM[@]}" --epochs 1000 --valid-every 1000000 --out early.st --log early.log --quiet 2>err &
pid=$!
for _ in $(seq 100); do grep -q '"start"' early.log 2>/dev/null && break; sleep 0.1; done
sleep 1
kill -INT $pid
wait $pid
rc=$?
[ $rc -eq 130 ] && ok || bad "SIGINT before a validation: exit $rc, want 130: $(cat err)"
grep -q "the model so far (no validation chose it) is in early.st" err && ! grep -q "best" err && ok ||
    bad "SIGINT before a validation says what early.st holds: $(cat err)"
"$L" eval early.st lmv.txt >/dev/null 2>&1 && ok || bad "SIGINT before a validation: the model evaluates"
# the checkpoint resumes and trains to the run's end (3 epochs of 299
# steps), validating where an uninterrupted run validates; the log of the
# resumed run is added to the interrupted one's
stopped=$(grep '"end"' sig.log | sed 's/.*"step":\([0-9]*\).*/\1/')
"$L" train lm "${LM[@]}" --epochs 3 --valid-every 20 --out res.st --resume sig.ck --log sig.log \
    --quiet 2>err && ok || bad "the checkpoint written at SIGTERM resumes: $(cat err)"
ended=$(grep '"end"' sig.log | tail -n 1 | sed 's/.*"step":\([0-9]*\).*/\1/')
[ "$(grep -c '"start"' sig.log)" -eq 2 ] && ok || bad "--resume adds to the log it resumes"
[ "${stopped:-0}" -gt 0 ] && [ "${ended:-0}" -eq 897 ] && ok ||
    bad "the resumed run trains from step ${stopped:-?} to the end (897): ended at ${ended:-?}"
grep '"valid"' sig.log | sed 's/.*"step":\([0-9]*\).*/\1/' |
    awk '$1 % 20 && $1 != 897 { bad = 1 } END { exit bad }' && ok ||
    bad "validations at multiples of --valid-every, before and after the resume"
# a seed of 2^63 or more (here -1: 2^64 - 1) is kept in a checkpoint that resumes
"$L" train lm "${LM[@]}" --epochs 1 --seed -1 --valid-every 100 --out s.st --checkpoint s.ck \
    --quiet 2>err && "$L" train lm "${LM[@]}" --epochs 1 --seed -1 --valid-every 100 --out s.st \
    --resume s.ck --quiet 2>err && ok || bad "a checkpoint with seed -1 resumes: $(cat err)"
"$L" sample sig.ck --length 5 >/dev/null 2>&1 && ok || bad "sample accepts a checkpoint"
expect "--resume with options that contradict the checkpoint names them" 1 "--hidden (the checkpoint's: 32), --lr" \
    "$L" train lm "${LM[@]}" --hidden 64 --lr 0.5 --epochs 3 --out res.st --resume sig.ck
# a run that ends before its first validation reports no figure
"$L" train lm "${LM[@]}" --time-limit 0.01 --out tl.st 2>err >/dev/null
grep -q "no figure was measured" err && ! grep -q "best valid" err && ok ||
    bad "a run without a validation says so: $(cat err)"
# --log starts a new file; --log-append adds a run
"$L" train lm "${LM[@]}" --epochs 1 --valid-every 0 --out l.st --log two.log --quiet
"$L" train lm "${LM[@]}" --epochs 1 --valid-every 0 --out l.st --log two.log --quiet
[ "$(grep -c '"start"' two.log)" -eq 1 ] && ok || bad "--log starts a new file"
"$L" train lm "${LM[@]}" --epochs 1 --valid-every 0 --out l.st --log two.log --log-append --quiet
[ "$(grep -c '"start"' two.log)" -eq 2 ] && ok || bad "--log-append adds to it"
"$L" plot two.log --out two.svg 2>/dev/null && grep -q "2 runs in this log" two.svg && ok ||
    bad "lstm plot draws two runs of one log apart"
# kill -9 during checkpoint writes: tests/cli/kill.sh

# ---- data files that are fine elsewhere --------------------------------------
printf '\xef\xbb\xbf__label__ham hello there friend\n__label__spam buy cheap pills now\n__label__ham see you at lunch\n__label__spam cheap offer now\n' >bom.txt
"$L" train classify --train bom.txt --valid bom.txt --hidden 8 --embedding 8 --epochs 2 \
    --out cls.st --quiet 2>err && ok || bad "a fastText file with a byte-order mark trains: $(cat err)"
printf '\xef\xbb\xbfThe\tat\ndog\tnn\n\n' >bom.tsv
"$L" train tag --train bom.tsv --valid bom.tsv --hidden 8 --embedding 8 --epochs 1 --out t.st \
    --quiet 2>err && ok || bad "a tag file with a byte-order mark trains: $(cat err)"
printf '\xef\xbb\xbfhello there\n' | "$L" predict cls.st >out 2>err && [ "$(wc -l <out)" -eq 1 ] &&
    ok || bad "predict input with a byte-order mark: $(cat err)"
# (the poisoned models: see poison above)
for k in nan inf; do
    if [ $k = nan ]; then bytes='\x00\x00\xc0\x7f' word=NaN; else bytes='\x00\x00\x80\x7f' word="an infinity"; fi
    poison lm.st lm-$k.st "$bytes" && poison cls.st cls-$k.st "$bytes" || bad "poison the models with $word"
    for v in "eval lm-$k.st lmv.txt" "sample lm-$k.st --length 5" "predict cls-$k.st bom.txt"; do
        set -- $v
        "$L" "$@" >out 2>err
        rc=$?
        [ $rc -ne 0 ] && [ ! -s out ] && [ "$(wc -l <err)" -eq 1 ] &&
            grep -q "^lstm $1: $2: tensor 'lstm.weight_hh_l0' holds $word at index 5: a model whose weights are not finite" err &&
            ok || bad "$1 refuses a model with $word in a weight: exit $rc, stdout $(head -c 80 out), stderr $(cat err)"
    done
done
# spaces around a tag are not part of it: "nn " and "nn" are one tag, so
# this file has only one and is refused as such
printf 'dog\tnn \ncat\t nn\n\n' >sp.tsv
expect "spaces around a tag are trimmed" 1 "only one tag (nn)" \
    "$L" train tag --train sp.tsv --valid sp.tsv --epochs 1 --out t.st
# labels the model does not know: every figure over the known ones, named
printf '__label__ham hello friend\n__label__HAM hi\n__label__junk buy\n__label__junk cheap\n' >unk.txt
"$L" eval cls.st unk.txt --json >out 2>err
grep -q 'warning: 3 documents .*HAM (1), junk (2)' err && ok || bad "eval warns with the unknown labels: $(cat err)"
[ "$(json_num out documents)" = 1 ] && [ "$(json_num out skipped)" = 3 ] && ok ||
    bad "eval counts only the known documents: $(cat out)"
# and tags a tagger does not know (ZZ, QQ): the same rule. Sentences whose
# every tag is unknown change no figure; a word with an unknown tag in a
# sentence with known ones leaves that word, and only it, out of every
# figure: against the same text with the word tagged nn, one word fewer,
# one unseen word fewer, and the correct and loss sums less that word's
head -n 3000 "$data/brown-pos-train.tsv" >tg.tsv
"$L" train tag --train tg.tsv --valid tg.tsv --hidden 8 --embedding 8 --epochs 5 --lr 1e-2 \
    --threads 1 --out tg.st --quiet 2>err || bad "train a small tagger: $(cat err)"
awk 'BEGIN { RS = "" } NR <= 20 { print; print "" }' tg.tsv >tk.tsv # known tags only
printf 'Zyzzyva\tZZ\nquux\tQQ\nfrobs\tZZ\n\n' | cat tk.tsv - >tu.tsv
printf 'The\tat\nZyzzyva\tZZ\n\n' | cat tk.tsv - >tz.tsv
printf 'The\tat\nZyzzyva\tnn\n\n' | cat tk.tsv - >tn.tsv
for f in tk tu tz tn; do "$L" eval tg.st $f.tsv --json >$f.json 2>$f.err || bad "eval $f.tsv: $(cat $f.err)"; done
grep -q 'warning: 3 words whose tag .*ZZ (2), QQ (1)' tu.err && [ "$(wc -l <tu.err)" -eq 1 ] && ok ||
    bad "eval of a tagger warns with the unknown tags: $(cat tu.err)"
grep -q 'warning: 1 word whose tag .*: ZZ (1)$' tz.err && ok || bad "one word with an unknown tag: $(cat tz.err)"
[ "$(json_num tu.json skipped)" = 3 ] && grep -q '"unknown_labels":{"ZZ":2,"QQ":1}' tu.json && ok ||
    bad "eval of a tagger --json lists the unknown tags: $(cat tu.json)"
[ ! -s tk.err ] && ok || bad "no warning when every tag is known: $(cat tk.err)"
same=1
for k in words unseen_words loss accuracy unseen_accuracy; do
    awk -v a="$(json_num tk.json $k)" -v b="$(json_num tu.json $k)" \
        'BEGIN { exit !(a == b || (a != "" && b != "" && (a - b) ^ 2 <= 1e-12 * a * a)) }' ||
        { same=0; bad "sentences with unknown tags only change $k: $(json_num tk.json $k) to $(json_num tu.json $k)"; }
done
[ $same = 1 ] && ok
# z: the word left out; n: the word counted (d: n's sums less z's)
awk -v zw="$(json_num tz.json words)" -v nw="$(json_num tn.json words)" \
    -v zu="$(json_num tz.json unseen_words)" -v nu="$(json_num tn.json unseen_words)" \
    -v za="$(json_num tz.json accuracy)" -v na="$(json_num tn.json accuracy)" \
    -v zua="$(json_num tz.json unseen_accuracy)" -v nua="$(json_num tn.json unseen_accuracy)" \
    -v zl="$(json_num tz.json loss)" -v nl="$(json_num tn.json loss)" 'BEGIN {
        dc = na * nw - za * zw; duc = nua * nu - zua * zu; dl = nl * nw - zl * zw
        exit !(zw != "" && nw == zw + 1 && nu == zu + 1 && (dc ^ 2 < 1e-6 || (dc - 1) ^ 2 < 1e-6) &&
               (duc - dc) ^ 2 < 1e-6 && dl > 0)
    }' && ok ||
    bad "a word with an unknown tag is left out of every figure, and only it: $(cat tz.json) against $(cat tn.json)"

# ---- --json means JSON -------------------------------------------------------
for m in lm.st cls.st; do
    f=$([ $m = lm.st ] && echo lmv.txt || echo bom.txt)
    "$L" eval $m $f --json >out 2>/dev/null
    if command -v python3 >/dev/null; then
        python3 -c 'import json,sys; json.load(open(sys.argv[1]))' out && ok ||
            bad "eval $m --json is one JSON document: $(head -c 200 out)"
    fi
    [ "$(grep -c . out)" -eq 1 ] && ok || bad "eval $m --json prints only the JSON"
done
# a figure over no example was not measured: NaN, which JSON lacks, is null
# (a text of one byte predicts no byte; documents whose every label is
# unknown leave none; no unseen word: no accuracy on unseen words), and
# the text prints -
printf 'T' >one.txt
printf '__label__junk hello\n__label__HAM buy\n' >allunk.txt
for c in "lm.st one.txt bpc perplexity loss accuracy" "cls.st allunk.txt loss accuracy" \
         "tg.st tk.tsv unseen_accuracy"; do
    set -- $c
    m=$1 f=$2; shift 2
    "$L" eval $m $f --json >out 2>/dev/null
    for k in "$@"; do
        grep -q "\"$k\":null" out && ok || bad "eval $m $f --json: $k over no example is null: $(cat out)"
    done
    if command -v python3 >/dev/null; then
        python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(any(d[k] is not None for k in sys.argv[2:]))' out "$@" && ok ||
            bad "eval $m $f --json with nulls is one JSON document: $(head -c 300 out)"
    fi
    [ "$(grep -c . out)" -eq 1 ] && ok || bad "eval $m $f --json prints only the JSON"
    "$L" eval $m $f >out 2>/dev/null
    grep -Eq ' -$' out && ! grep -qi nan out && ok || bad "eval $m $f: a figure not measured prints as -: $(cat out)"
done
"$L" eval cls.st allunk.txt --json 2>/dev/null | grep -q '"spam":{"precision":null,"recall":null,"f1":null' &&
    ok || bad "per-class figures of a class with no example nor prediction are null"
# and a training whose validation can measure nothing says so
expect "a validation whose every label is unknown is refused" 1 "allunk.txt: none of its labels occurs in the training data" \
    "$L" train classify --train bom.txt --valid allunk.txt --hidden 8 --embedding 8 --epochs 1 --out x.st --quiet

# ---- the terminal ------------------------------------------------------------
# under a 60-column terminal no line of the progress output is wider (a wider
# line wraps and leaves a copy behind at every refresh)
if command -v script >/dev/null; then
    script -qec "stty cols 60; '$L' train lm ${LM[*]} --epochs 1 --valid-every 40 --out tty.st" \
        /dev/null >tty.out 2>&1
    widest=$(tr '\r' '\n' <tty.out | sed 's/\x1b\[K//g' | grep '^epoch' |
             awk '{ if (length($0) > w) w = length($0) } END { print w + 0 }')
    [ "$widest" -le 60 ] && [ "$widest" -gt 20 ] && ok || bad "the progress line fits 60 columns: $widest"
    grep -q "loss -" tty.out && ok || bad "a figure not yet measured shows as -"
    grep -q "bpc\*" tty.out && ok || bad "a new best is marked"
fi

# tokens per second count training time only: 50 steps of 2 x 10 bytes
# (1000 bytes) between two train events, with a validation over 60 kB
# between them that takes 20-40 times as long as those steps; the rate
# reported must be at least twice the bytes over the events' wall-clock gap
# (which includes the validation; were it counted, the two would be equal)
head -c 4000 lm.txt >tps.txt
"$L" train lm --train tps.txt --valid lm.txt --hidden 8 --embedding 4 --batch 2 --seq-len 10 \
    --epochs 1 --valid-every 50 --threads 1 --out tps.st --log tps.log --quiet 2>err ||
    bad "train for tokens per second: $(cat err)"
grep '"train"' tps.log | sed 's/.*"time":\([-0-9.e]*\).*"tokens_per_s":\([-0-9.e]*\).*/\1 \2/' |
    awk 'NR > 1 { n++; wall = 1000 / ($1 - t); if (!($2 >= 2 * wall)) { bad++; printf "%g against %g; ", $2, wall } }
         { t = $1 } END { if (n < 2 || bad) { printf "(%d gaps)\n", n; exit 1 } }' >tps.out &&
    ok || bad "tokens per second leave validation out: reported against wall-clock: $(cat tps.out)"

# ---- samples are clean from the first byte -----------------------------------
# the first bytes of a primed sample are about as likely under the model as
# the rest: scored by lstm eval from a warm state (text the model knows, then
# the newline and prime the sampler starts from), the first 8 bytes' mean
# negative log likelihood is at most 1.25 times that of the next 32
head -c 3000 lmv.txt >ctx.txt
first=0 rest=0
for seed in 1 2 3 4 5 6 7 8 9 10; do
    "$L" sample lm.st --prime "The " --length 40 --seed $seed >s.txt 2>/dev/null
    g=$(tail -c +5 s.txt) # the drawn bytes, without the prime
    tot() { printf '%s\nThe %s' "$(cat ctx.txt)" "$1" >e.txt
            "$L" eval lm.st e.txt --json | awk -F'[:,]' '{for(i=1;i<NF;i++){if($i~/"bytes"/)b=$(i+1); if($i~/"loss"/)l=$(i+1)}} END{printf "%.6f", l*(b-1)}'; }
    t0=$(tot "") t8=$(tot "${g:0:8}") t40=$(tot "$g")
    first=$(awk -v a="$first" -v x="$t8" -v y="$t0" 'BEGIN{print a + x - y}')
    rest=$(awk -v a="$rest" -v x="$t40" -v y="$t8" 'BEGIN{print a + x - y}')
done
awk -v f="$first" -v r="$rest" 'BEGIN{exit !(f / 8 <= 1.25 * r / 32)}' && ok ||
    bad "the first bytes of a sample are as likely as the rest: $first/8 against $rest/32 nats"

# greedy decoding (--top-k 1) starts from that state too: every byte it
# draws is the model's most likely byte after a line start, the prime and
# the bytes drawn before it, as lstm eval scores them (from the zero state,
# the file's first byte a newline; its accuracy counts the bytes that are
# the argmax). One-letter primes, after which a start from the zero state
# alone would show most: the 32 bytes drawn after each of 16
argmaxes() { "$L" eval lm.st e.txt --json | sed -n 's/.*"bytes":\([0-9]*\).*"accuracy":\([-0-9.e]*\).*/\1 \2/p' |
             awk '{ printf "%.0f", $2 * ($1 - 1) }'; }
missed=0 drawn=0
for p in T H A I W S B M O t a w s h o i; do
    "$L" sample lm.st --prime "$p" --length 33 --top-k 1 >s.txt 2>/dev/null
    g=$(tail -c +2 s.txt | head -c 32)
    printf '\n%s' "$p" >e.txt
    c0=$(argmaxes)
    printf '\n%s%s' "$p" "$g" >e.txt
    c1=$(argmaxes)
    missed=$((missed + ${#g} - (c1 - c0))) drawn=$((drawn + ${#g}))
done
[ $missed -eq 0 ] && [ $drawn -ge 500 ] && ok ||
    bad "greedy bytes are the argmax after a line start and the prime: $missed of $drawn are not"
finish
