#!/usr/bin/env bash
# options.sh BUILD - every option of the lstm program has an effect that a
# check here (or in another test, see tests/OPTIONS.md) would miss if it
# disappeared or inverted: shapes and metadata of the saved model, the
# learning rate and events of the --log JSON lines, the bytes of model files
# trained with and without an option, what eval, sample and bench print.
# Tiny models on a few kilobytes of tests/data and data made here, so the
# whole script takes a few seconds. Prints "N passed, N failed" last.
set -u
build=${1:-build}
. "$(dirname "$0")/lib/checks.sh"
bin=$(cd "$(dirname "$build/lstm")" && pwd)/lstm
# every run is bounded, so that an option that stops working (a time limit
# that never ends the run) fails the check instead of hanging the suite
bounded() { timeout 60 "$bin" "$@"; }
L=bounded
here=$(cd "$(dirname "$0")" && pwd)
data=$here/../data
tmp=$(mktemp -d /tmp/lstm-options-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 2

# close DESC GOT WANT TOL: |GOT - WANT| <= TOL
close() {
    if awk -v g="$2" -v w="$3" -v t="$4" 'BEGIN{d = g - w; if (d < 0) d = -d; exit !(g != "" && d <= t)}'
    then ok; else bad "$1: got '$2', want $3 (within $4)"; fi
}

# ---- reading model files and logs -------------------------------------------
# header FILE: the JSON header of a safetensors file
header() { tail -c +9 "$1" | head -c "$(od -A n -t u8 -N 8 "$1" | tr -d ' ')"; }
# shape FILE TENSOR: "d0,d1" (empty when the file has no such tensor)
shape() { header "$1" | grep -o "\"$2\":{\"dtype\":\"F32\",\"shape\":\[[0-9,]*\]" | sed 's/.*\[\(.*\)\]/\1/'; }
# weights FILE: the tensors' bytes, without the header (the metadata)
weights() { tail -c +$((9 + $(od -A n -t u8 -N 8 "$1" | tr -d ' '))) "$1"; }
# config FILE KEY: a value of the lstm.config metadata ("12", "true", "0.3")
config() { header "$1" | grep -o "\\\\\"$2\\\\\":[^,}]*" | sed 's/.*://'; }
# values FILE TENSOR: its floats, one per line
values() {
    local n off
    n=$(od -A n -t u8 -N 8 "$1" | tr -d ' ')
    off=$(header "$1" | grep -o "\"$2\":{[^}]*}" | sed 's/.*"data_offsets":\[\([0-9]*\),\([0-9]*\)\].*/\1 \2/')
    [ -n "$off" ] || return 0
    set -- "$1" $off
    od -A n -v -t f4 -j $((8 + n + $2)) -N $(($3 - $2)) "$1" | tr -s ' ' '\n' | grep -v '^$'
}
# field LINE KEY: a number or string of one JSON line
field() { printf '%s\n' "$1" | sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p"; }
# event LOG TYPE [STEP]: the last event of a type (at a step)
event() {
    if [ $# -eq 3 ]; then grep "\"event\":\"$2\"" "$1" | grep "\"step\":$3," | tail -n 1
    else grep "\"event\":\"$2\"" "$1" | tail -n 1; fi
}
lr_at() { field "$(event "$1" train "$2")" lr; }
# lr_is DESC LOG STEP WANT: the learning rate logged at a step, to the 7
# significant digits of the log (5e-7 relative) and a float's rounding
lr_is() {
    local got
    got=$(lr_at "$2" "$3")
    if awk -v g="$got" -v w="$4" 'BEGIN{d = g - w; if (d < 0) d = -d; exit !(g != "" && d <= 1e-6 * w)}'
    then ok; else bad "$1: lr $got at step $3, want $4"; fi
}
# eval_field MODEL FILE KEY [eval options]: a figure of lstm eval --json
eval_field() {
    local m=$1 f=$2 k=$3; shift 3
    field "$("$L" eval "$m" "$f" --json "$@" 2>/dev/null | tail -n 1)" "$k"
}

# ---- data ---------------------------------------------------------------------
# lm: 4004 bytes = 4 streams x (100 steps x 10 + 1): exactly 100 steps per epoch
head -c 4004 "$data/brown-text-train.txt" >lm-train.txt
head -c 2000 "$data/brown-text-valid.txt" >lm-valid.txt
LM0=(--train lm-train.txt --valid lm-valid.txt --hidden 8 --embedding 8 --layers 1 --batch 4
     --seq-len 10 --threads 1)
LM=("${LM0[@]}" --quiet)
mk_mail 200 1 >cls.txt
CL0=(--hidden 8 --embedding 8 --batch 16 --threads 1)
CL=("${CL0[@]}" --quiet)
awk 'NR <= 1500' "$data/brown-pos-train.tsv" >tag-train.tsv
TG=(--train tag-train.tsv --valid tag-train.tsv --hidden 8 --embedding 8 --epochs 1 --threads 1 --quiet)

# ---- train lm: the model's shape -----------------------------------------------
run "train lm, defaults of the shape" "$L" train lm "${LM[@]}" --epochs 1 --out base.st --log base.log
V=$(shape base.st decoder.bias)
equal "lm: --hidden 8 and --embedding 8: weight_ih_l0 is (4H, E)" "$(shape base.st lstm.weight_ih_l0)" 32,8
equal "lm: --layers 1: no second layer" "$(shape base.st lstm.weight_ih_l1)" ""
equal "lm: no projection without --proj" "$(shape base.st lstm.weight_hr_l0)" ""
run "train lm --hidden 12 --embedding 6 --layers 2 --proj 5" "$L" train lm "${LM[@]}" --epochs 1 \
    --hidden 12 --embedding 6 --layers 2 --proj 5 --out shape.st
equal "--embedding 6: the byte embedding is (V, 6)" "$(shape shape.st embedding.byte.weight)" "$V,6"
equal "--hidden 12: weight_ih_l0 is (4*12, 6)" "$(shape shape.st lstm.weight_ih_l0)" 48,6
equal "--proj 5: weight_hr_l0 is (5, 12)" "$(shape shape.st lstm.weight_hr_l0)" 5,12
equal "--proj 5: weight_hh_l0 is (48, 5)" "$(shape shape.st lstm.weight_hh_l0)" 48,5
equal "--layers 2: weight_ih_l1 is (48, 5)" "$(shape shape.st lstm.weight_ih_l1)" 48,5
equal "--layers 2: no third layer" "$(shape shape.st lstm.weight_ih_l2)" ""
equal "--proj 5: the decoder reads 5 values" "$(shape shape.st decoder.weight)" "$V,5"
equal "--layers 2 in the model's configuration" "$(config shape.st layers)" 2
equal "--proj 5 in the model's configuration" "$(config shape.st proj)" 5
run "eval a model with a projection" "$L" eval shape.st lm-valid.txt

# --dropout: recorded, and training with it differs from training without
run "train lm --dropout 0.3" "$L" train lm "${LM[@]}" --epochs 1 --dropout 0.3 --out drop.st
check "--dropout 0.3 in the model's configuration" grep -q '^0\.3' <(config drop.st dropout)
differ "--dropout 0.3 changes training (the weights)" <(weights base.st) <(weights drop.st)

# --forget-bias: with a learning rate of 1e-30 the weights stay where they
# started, so two runs that differ only in --forget-bias differ by exactly
# that in the forget gate's rows (H..2H) of every bias_ih and nowhere else
FB=("${LM[@]}" --epochs 1 --layers 2 --lr 1e-30 --warmup 0)
run "train lm --forget-bias 0" "$L" train lm "${FB[@]}" --forget-bias 0 --out fb0.st
run "train lm --forget-bias 2" "$L" train lm "${FB[@]}" --forget-bias 2 --out fb2.st
for t in lstm.bias_ih_l0 lstm.bias_ih_l1 lstm.bias_hh_l0; do
    want=0
    [[ $t == *bias_ih* ]] && want=2
    got=$(paste <(values fb0.st $t) <(values fb2.st $t) | awk -v w="$want" '
        { d = $2 - $1; g = (NR > 8 && NR <= 16) ? w : 0; e = d - g; if (e < 0) e = -e
          if (e > 1e-5) bad = bad " row " NR - 1 ": " d }
        END { print NR == 32 && bad == "" ? "ok" : NR " rows" bad }')
    equal "--forget-bias 2 adds $want to the forget rows of $t only" "$got" ok
done

# --peephole, --cell-clip, --input-forget (ONNX's cell options): the peephole
# tensors, the configuration, the metadata `lstm forward` reads, and what
# each does to training. With --input-forget the forget rows get no
# gradient: trained normally and with a learning rate of 1e-30 (weights
# where they started), those rows of weight_ih_l0 are the same floats, the
# others are not.
equal "lm: no peephole tensor without --peephole" "$(shape base.st lstm.weight_peephole_l0)" ""
run "train lm --layers 2 --peephole" "$L" train lm "${LM[@]}" --epochs 1 --layers 2 --peephole \
    --out peep.st
equal "--peephole: weight_peephole_l0 is (3H)" "$(shape peep.st lstm.weight_peephole_l0)" 24
equal "--peephole: weight_peephole_l1 is (3H)" "$(shape peep.st lstm.weight_peephole_l1)" 24
equal "--peephole in the model's configuration" "$(config peep.st peephole)" true
lacks "no cell_clip in a model without --cell-clip" "cell_clip" "$(header base.st)"
run "train lm --cell-clip 0.5" "$L" train lm "${LM[@]}" --epochs 1 --cell-clip 0.5 --out cc.st
check "--cell-clip 0.5 in the model's configuration" grep -q '^0\.5' <(config cc.st cell_clip)
has "--cell-clip 0.5: lstm.clip in the metadata" '"lstm.clip":"0.5"' "$(header cc.st)"
differ "--cell-clip 0.5 changes training (the weights)" <(weights base.st) <(weights cc.st)
run "train lm --input-forget" "$L" train lm "${LM[@]}" --epochs 1 --input-forget --out if1.st
run "train lm --input-forget --lr 1e-30" "$L" train lm "${LM[@]}" --epochs 1 --input-forget \
    --lr 1e-30 --warmup 0 --out if0.st
equal "--input-forget in the model's configuration" "$(config if1.st input_forget)" true
has "--input-forget: lstm.input_forget in the metadata" '"lstm.input_forget":"1"' "$(header if1.st)"
# weight_ih_l0 is (32, 8): the forget rows 8..15 are values 65..128
got=$(paste <(values if0.st lstm.weight_ih_l0) <(values if1.st lstm.weight_ih_l0) | awk '
    { f = NR > 64 && NR <= 128; if (f && $1 != $2) moved++; if (!f && $1 != $2) other++ }
    END { print (NR == 256 && moved == 0 && other > 0) ? "ok" : NR " values, " moved + 0 " forget, " other + 0 " others moved" }')
equal "--input-forget: the forget rows of weight_ih_l0 never move, the others do" "$got" ok

# ---- train lm: the loop, seen in the log ------------------------------------------
check "100 steps per epoch (4 streams, --seq-len 10, 4004 bytes)" \
    grep -q '"message":"lm model, [0-9]* parameters, 100 steps per epoch"' base.log
equal "--epochs 1 ends after 100 steps" "$(field "$(event base.log end)" step)" 100
run "train lm --epochs 2" "$L" train lm "${LM[@]}" --epochs 2 --out e2.st --log e2.log
equal "--epochs 2 ends after 200 steps" "$(field "$(event e2.log end)" step)" 200
equal "--epochs 2: the last training event is in epoch 2" "$(field "$(event e2.log train)" epoch)" 2
# --batch 8 --seq-len 5: 4004 / 8 = 500 bytes a stream, (500 - 1) / 5 = 99 steps
run "train lm --batch 8 --seq-len 5" "$L" train lm "${LM[@]}" --epochs 1 --batch 8 --seq-len 5 --log bs.log --out bs.st
check "--batch 8 --seq-len 5: 99 steps per epoch" grep -q '"message":"lm model, [0-9]* parameters, 99 steps per epoch"' bs.log

# the learning rate of each training event (every 50 steps)
LR=("${LM[@]}" --lr 0.004 --warmup 0)
run "--schedule constant" "$L" train lm "${LR[@]}" --epochs 3 --schedule constant --log const.log --out x.st
for s in 50 150 300; do lr_is "--schedule constant --lr 0.004: lr at step $s" const.log $s 0.004; done
run "--schedule cosine --lr-min 0.1" "$L" train lm "${LR[@]}" --epochs 3 --schedule cosine --lr-min 0.1 --log cos.log --out x.st
# 0.0004 + 0.0036 (1 + cos(pi s / 300)) / 2
lr_is "--schedule cosine: lr at step 100 of 300" cos.log 100 0.0031
lr_is "--lr-min 0.1: lr at the end is 0.1 x --lr" cos.log 300 0.0004
# (--decay 0.25: the default is 0.5)
run "--schedule step --decay 0.25" "$L" train lm "${LR[@]}" --epochs 3 --schedule step --decay 0.25 --log step.log --out x.st
lr_is "--schedule step: epoch 1 at --lr" step.log 100 0.004
lr_is "--decay 0.25: epoch 2 at a quarter" step.log 150 0.001
lr_is "--decay 0.25: epoch 3 at a sixteenth" step.log 250 0.00025
run "--schedule exponential --decay 0.25" "$L" train lm "${LR[@]}" --epochs 3 --schedule exponential --decay 0.25 --log exp.log --out x.st
# 0.004 * 0.25^(step / 100): by the step, not only at epochs
lr_is "--schedule exponential: lr at step 50 is 0.004 x 0.25^0.5" exp.log 50 0.002
lr_is "--schedule exponential: lr at step 250 is 0.004 x 0.25^2.5" exp.log 250 0.000125
run "--warmup 200" "$L" train lm "${LM[@]}" --lr 0.004 --epochs 3 --schedule constant --warmup 200 --log warm.log --out x.st
lr_is "--warmup 200: lr at step 50 is 51/200 of --lr" warm.log 50 0.00102
lr_is "--warmup 200: lr at step 150 is 151/200 of --lr" warm.log 150 0.00302
lr_is "--warmup 200: full --lr after it" warm.log 250 0.004
refuse "an unknown schedule" "unknown schedule 'linear'" "$L" train lm "${LM[@]}" --schedule linear --out x.st

# --valid-every 30 over 100 steps: validations at 30, 60, 90 and at the end
run "--valid-every 30" "$L" train lm "${LM[@]}" --epochs 1 --valid-every 30 --log ve.log --out x.st
equal "--valid-every 30: validation steps" "$(grep '"event":"valid"' ve.log | sed 's/.*"step":\([0-9]*\).*/\1/' | tr '\n' ' ')" "30 60 90 100 "

# --valid: the figure selected on is the model's on the --valid file, with
# the 64 streams of validation (and in float even when training in bfloat16);
# within the rounding of the log (7 digits) and of eval --json (6 decimals)
best=$(field "$(event base.log end)" best_value)
e64=$(eval_field base.st lm-valid.txt bpc --streams 64 --threads 1)
e1=$(eval_field base.st lm-valid.txt bpc)
close "--valid: the best validation figure is eval --streams 64 on the file" "$best" "$e64" 2e-6
# 1 stream carries the state through the whole text; 64 streams each start
# from a zero state, which costs 0.02-0.03 bits here (1e-3: far above rounding)
check "eval --streams: 1 stream ($e1) differs from 64 ($e64)" \
    awk -v a="$e1" -v b="$e64" 'BEGIN{d = a - b; exit !(a != "" && (d > 1e-3 || d < -1e-3))}'
equal "eval --threads 2 prints what --threads 1 does" "$(eval_field base.st lm-valid.txt bpc --threads 2)" "$e1"

# --valid-portion: without --valid, this share of the examples validates
run "--valid-portion 0.25" "$L" train classify --train cls.txt "${CL[@]}" --epochs 1 --valid-portion 0.25 --log vp.log --out x.st
check "classify --batch 16 over 150 examples: 10 steps per epoch" \
    grep -q '"message":"classify model, [0-9]* parameters, 10 steps per epoch"' vp.log
run "--valid-portion 0.25 (not quiet)" "$L" train classify --train cls.txt "${CL0[@]}" --epochs 1 --valid-portion 0.25 --out x.st
check "--valid-portion 0.25: 150 documents train, 50 validate" grep -q '(150 documents), validating on cls.txt (split: part) (50)' err
run "the default portion" "$L" train classify --train cls.txt "${CL0[@]}" --epochs 1 --out x.st
check "default --valid-portion 0.05: 190 train, 10 validate" grep -q '(190 documents), validating on cls.txt (split: part) (10)' err
refuse "--valid-portion 1" "--valid-portion must be between 0 and 1" "$L" train classify --train cls.txt --valid-portion 1 --out x.st

# --quiet, --threads, --precision: the lines on stderr
# (3 threads: the default is one per processor)
run "train without --quiet" "$L" train lm "${LM0[@]}" --epochs 1 --threads 3 --precision fp32 --out x.st
check "without --quiet, --threads 3: the start line" grep -q '^training lm on lm-train.txt (4004 bytes), validating on lm-valid.txt (2000), 3 thread(s), ' err
check "without --quiet: the end line" grep -q '^done after [0-9]* s, 100 steps: best valid bpc ' err
check "--precision fp32: float kernels" bash -c '! grep -q bf16 err'
run "train with --quiet" "$L" train lm "${LM[@]}" --epochs 1 --out x.st
check "--quiet: nothing on stderr" [ ! -s err ]
LSTM_KERNELS=reference "$L" train lm "${LM0[@]}" --epochs 1 --precision fp32 --out x.st 2>err
check "LSTM_KERNELS=reference: the reference kernels" grep -q ', 1 thread(s), reference kernels$' err
if "$L" train lm "${LM0[@]}" --epochs 1 --precision bf16 --out bf16.st 2>err; then
    check "--precision bf16: bfloat16 kernels, validation in float" grep -q 'avx512bf16 kernels (validation: ' err
    "$L" train lm "${LM[@]}" --epochs 1 --precision fp32 --out fp32.st 2>/dev/null
    differ "--precision bf16 trains another model than fp32" bf16.st fp32.st
else
    check "--precision bf16 refused for want of AVX-512 BF16" grep -q 'AVX-512 BF16' err
fi

# --seed: another seed, another model
run "train lm --seed 2" "$L" train lm "${LM[@]}" --epochs 1 --seed 2 --out seed2.st
differ "--seed 2 trains another model than --seed 1" base.st seed2.st

# --clip: a norm far above the gradients' leaves them alone (the same bytes as
# no clipping); one below them changes training, and so does its size
run "--clip 0" "$L" train lm "${LM[@]}" --epochs 1 --clip 0 --out clip0.st
run "--clip 1e6" "$L" train lm "${LM[@]}" --epochs 1 --clip 1e6 --out clipbig.st
run "--clip 0.05" "$L" train lm "${LM[@]}" --epochs 1 --clip 0.05 --out clip05.st
run "--clip 0.1" "$L" train lm "${LM[@]}" --epochs 1 --clip 0.1 --out clip1.st
same "--clip 1e6 (above every gradient norm) changes nothing" clip0.st clipbig.st
differ "--clip 0.05 changes training" clip0.st clip05.st
differ "--clip 0.05 and --clip 0.1 differ" clip05.st clip1.st

# --ema: the model validated, selected and saved is the moving average of the
# weights: another model than without it, whose figure on valid is the one
# logged as the best; the checkpoint holds the average (ema.*) beside the
# trained weights, and a run stopped by SIGTERM and resumed ends with the
# uninterrupted bytes; --ema 0 is off (the lm's default is 0.999); a decay
# of 1 or more is refused, and so is another --ema on resume; a checkpoint
# from before the option (no "ema" in lstm.train) resumes as one without it
run "--ema 0.9" "$L" train lm "${LM[@]}" --epochs 1 --ema 0.9 --out ema.st --log ema.log --checkpoint ema.ck
differ "--ema 0.9 changes the model saved" <(weights base.st) <(weights ema.st)
run "--ema 0" "$L" train lm "${LM[@]}" --epochs 1 --ema 0 --out ema0.st
differ "--ema 0 turns the lm's default average (0.999) off" <(weights base.st) <(weights ema0.st)
differ "--ema 0 and --ema 0.9 differ" <(weights ema0.st) <(weights ema.st)
run "eval the --ema model" "$L" eval ema.st lm-valid.txt --json --streams 64
close "--ema 0.9: the saved model's valid bpc is the best logged" "$(sed 's/.*"bpc":\([0-9.e+-]*\).*/\1/' out)" \
    "$(field "$(event ema.log end)" best_value)" 1e-4
equal "--ema 0.9: the checkpoint holds the average" "$(shape ema.ck ema.lstm.weight_ih_l0)" 32,8
refuse "--ema 1" "is not in [0, 1)" "$L" train lm "${LM[@]}" --epochs 1 --ema 1 --out x.st
refuse "--ema 2, before any data is read" "is not in [0, 1)" \
    "$L" train lm --train no-such-file.txt --epochs 1 --ema 2 --out x.st
refuse "--lr -1, before any data is read" "learning rate" \
    "$L" train lm --train no-such-file.txt --epochs 1 --lr -1 --out x.st
refuse "--resume with another --ema" "--ema (the checkpoint's: 0.9)" \
    "$L" train lm "${LM[@]}" --epochs 1 --ema 0.5 --resume ema.ck --out x.st
EM=("${LM[@]}" --epochs 200 --valid-every 50 --ema 0.95)
"$bin" train lm "${EM[@]}" --out emaw.st 2>/dev/null
"$bin" train lm "${EM[@]}" --out emas.st --checkpoint emas.ck --log emas.log 2>/dev/null &
ep=$!
for _ in $(seq 1000); do grep -q '"valid"' emas.log 2>/dev/null && break; sleep 0.01; done
kill -TERM $ep 2>/dev/null
wait $ep
equal "--ema: the run to resume was interrupted" "$(field "$(event emas.log end)" message)" interrupted
run "--ema: resume" "$L" train lm "${EM[@]}" --out emas.st --checkpoint emas.ck --resume emas.ck
same "--ema: stopped and resumed, the uninterrupted bytes" emaw.st emas.st
if command -v python3 >/dev/null; then
    run "a checkpoint without an average" "$L" train lm "${LM[@]}" --epochs 1 --ema 0 --out x.st --checkpoint old.ck
    equal "--ema 0: no average in the checkpoint" "$(shape old.ck ema.lstm.weight_ih_l0)" ""
    python3 - old.ck <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
t = json.loads(h["__metadata__"]["lstm.train"])
del t["ema"]  # as written before --ema existed
h["__metadata__"]["lstm.train"] = json.dumps(t, separators=(",", ":"), sort_keys=True)
s = json.dumps(h, separators=(",", ":")).encode()
s += b" " * (-len(s) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(s)) + s + b[8 + n:])
PY
    lacks "the old checkpoint has no ema field" '\"ema\"' "$(header old.ck)"
    run "a checkpoint from before --ema resumes" "$L" train lm "${LM[@]}" --epochs 1 --ema 0 --out x.st --resume old.ck
else
    bad "python3 is needed to write a checkpoint of the old form"
fi

# --optimizer: each trains another model; another than the task's (Adam) starts
# from its torch.optim default lr unless --lr, the task's own keeps its tuned lr
for o in sgd adam adamw rmsprop adadelta; do
    run "--optimizer $o" "$L" train lm "${LM[@]}" --epochs 1 --optimizer $o --schedule constant --warmup 0 \
        --out opt-$o.st --log opt-$o.log
done
lr_is "--optimizer sgd: lr 0.01" opt-sgd.log 50 0.01
lr_is "--optimizer adam, the lm's own: its lr 4.5e-3 kept" opt-adam.log 50 0.0045
lr_is "--optimizer adadelta: lr 1" opt-adadelta.log 50 1
opts=(sgd adam adamw rmsprop adadelta)
for i in 0 1 2 3; do
    for j in $(seq $((i + 1)) 4); do
        differ "--optimizer ${opts[i]} and ${opts[j]}" "opt-${opts[i]}.st" "opt-${opts[j]}.st"
    done
done
run "--lr before --optimizer" "$L" train lm "${LM[@]}" --epochs 1 --lr 0.3 --optimizer sgd --schedule constant --warmup 0 --log x.log --out x.st
lr_is "--lr 0.3 --optimizer sgd: lr 0.3" x.log 50 0.3
refuse "an unknown optimizer" "unknown optimizer 'lbfgs'" "$L" train lm "${LM[@]}" --optimizer lbfgs --out x.st
run "--momentum 0.9" "$L" train lm "${LM[@]}" --epochs 1 --optimizer sgd --schedule constant --warmup 0 --momentum 0.9 --out mom.st
differ "--momentum 0.9 changes sgd" opt-sgd.st mom.st
run "rmsprop --momentum 0.5" "$L" train lm "${LM[@]}" --epochs 1 --optimizer rmsprop --schedule constant --warmup 0 --momentum 0.5 --out rmom.st
differ "--momentum 0.5 changes rmsprop" opt-rmsprop.st rmom.st
run "--weight-decay 0.1" "$L" train lm "${LM[@]}" --epochs 1 --optimizer adam --schedule constant --warmup 0 --weight-decay 0.1 --out wd.st
differ "--weight-decay 0.1 changes adam" opt-adam.st wd.st
run "adamw --weight-decay 0" "$L" train lm "${LM[@]}" --epochs 1 --optimizer adamw --schedule constant --warmup 0 --weight-decay 0 --out wd0.st
differ "--weight-decay 0 changes adamw (default 0.01)" opt-adamw.st wd0.st
run "--beta2 0.9" "$L" train lm "${LM[@]}" --epochs 1 --optimizer adam --schedule constant --warmup 0 --beta2 0.9 --out b2.st
differ "--beta2 0.9 changes adam" opt-adam.st b2.st

# --time-limit: without --epochs it trains until the time is up, validation
# included; with --epochs it stops at whichever comes first. (1.2 s: the
# trainer keeps a second in reserve for the last validation, so it trains
# for about 0.2 s; with a limit of 1 s or less it would not train at all.)
run "--time-limit 1.2" "$L" train lm "${LM[@]}" --time-limit 1.2 --log tl.log --out x.st
end=$(event tl.log end)
equal "--time-limit 1.2: the run ends for the time" "$(field "$end" message)" "time limit reached"
check "--time-limit 1.2: within the limit (${end:0:90}...)" awk -v t="$(field "$end" time)" 'BEGIN{exit !(t != "" && t <= 1.2)}'
check "--time-limit 1.2: it trained (${end:0:50}...)" [ "$(field "$end" step)" -gt 0 ]
run "--time-limit 1.2 --epochs 100000" "$L" train lm "${LM[@]}" --time-limit 1.2 --epochs 100000 --log tl2.log --out x.st
equal "--time-limit with --epochs: the first to come" "$(field "$(event tl2.log end)" message)" "time limit reached"

# --checkpoint-every: a checkpoint before any validation (have_best false),
# which only the timer writes; the run is killed once it is there
"$bin" train lm "${LM[@]}" --epochs 1000 --valid-every 1000000 --checkpoint ck.st --checkpoint-every 0.2 \
    --out x.st >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 300); do [ -s ck.st ] && break; sleep 0.05; done
kill $pid 2>/dev/null
wait $pid 2>/dev/null
check "--checkpoint-every 0.2: a checkpoint within 15 s" [ -s ck.st ]
check "--checkpoint-every 0.2: written by the timer, before any validation" \
    grep -q 'have_best\\":false' <(header ck.st)

# ---- train classify: early stopping and the vocabulary ---------------------------
# validation data with every label swapped: the better the model fits the
# training data, the worse it does there, so the first validation is the best
mk_mail 100 3 >pv.txt
sed 's/__label__spam/__label__X/; s/__label__ham/__label__spam/; s/__label__X/__label__ham/' pv.txt >pv-flip.txt
PV=(--train pv.txt --valid pv-flip.txt "${CL[@]}" --lr 1e-2)
run "--patience 2" "$L" train classify "${PV[@]}" --epochs 30 --patience 2 --log pat.log --out x.st
equal "--patience 2: early stop" "$(field "$(event pat.log end)" message)" "early stop"
equal "--patience 2: two validations without a new best, then the stop" \
    "$(grep '"event":"valid"' pat.log | sed 's/.*"best":\([a-z]*\).*/\1/' | tail -n 3 | tr '\n' ' ')" "true false false "
check "--patience 2: long before 30 epochs" [ "$(grep -c '"event":"valid"' pat.log)" -le 10 ]
run "--patience 0" "$L" train classify "${PV[@]}" --epochs 8 --patience 0 --log pat0.log --out x.st
equal "--patience 0: never stops early" "$(field "$(event pat0.log end)" message)" "done"
equal "--patience 0: a validation each of 8 epochs" "$(grep -c '"event":"valid"' pat0.log)" 8

# the vocabulary: rare words, a size limit, bytes, the start of each text
{ cat cls.txt
  printf '__label__ham zebra\n__label__spam yak yak\n__label__ham xylo xylo xylo\n'; } >vocab.txt
vocab() { header "$1" | grep -o '"lstm\.vocab\.token":"[^]]*\]'; }
run "--min-count 3" "$L" train classify --train vocab.txt --valid vocab.txt "${CL[@]}" --epochs 1 --min-count 3 --out mc3.st
has "--min-count 3 keeps a word seen 3 times" '\"xylo\"' "$(vocab mc3.st)"
lacks "--min-count 3 drops a word seen twice" '\"yak\"' "$(vocab mc3.st)"
run "--min-count 1" "$L" train classify --train vocab.txt --valid vocab.txt "${CL[@]}" --epochs 1 --min-count 1 --out mc1.st
has "--min-count 1 keeps a word seen once" '\"zebra\"' "$(vocab mc1.st)"
run "--vocab-size 5" "$L" train classify --train vocab.txt --valid vocab.txt "${CL[@]}" --epochs 1 --vocab-size 5 --out vs5.st
equal "--vocab-size 5: 5 words, <pad> and <unk>" "$(shape vs5.st embedding.token.weight)" 7,8
run "--tokens byte" "$L" train classify --train cls.txt --valid cls.txt "${CL[@]}" --epochs 1 --tokens byte --out byte.st
equal "--tokens byte in the configuration" "$(config byte.st byte_tokens)" true
has "--tokens byte: letters are tokens" '\"m\"' "$(vocab byte.st)"
lacks "--tokens byte: words are not" money "$(vocab byte.st)"
run "classify, words" "$L" train classify --train cls.txt --valid cls.txt "${CL[@]}" --epochs 1 --out word.st
has "--tokens word (the default): words are tokens" '\"money\"' "$(vocab word.st)"
refuse "--tokens char" "--tokens must be word or byte" "$L" train classify --train cls.txt --tokens char --out x.st
# every text starts "the a of", then words of its label, of different lengths:
# cut to 3 tokens, every text reads the same, so every prediction is the same
awk '{ printf "%s the a of", $1; for (i = 2; i <= NF; i++) printf " %s", $i; print "" }' cls.txt >ml.txt
run "--max-length 3" "$L" train classify --train ml.txt --valid ml.txt "${CL[@]}" --epochs 1 --max-length 3 --out ml3.st
equal "--max-length 3 in the configuration" "$(config ml3.st max_length)" 3
equal "--max-length 3: only the first 3 tokens in the vocabulary" "$(shape ml3.st embedding.token.weight)" 5,8
run "predict with --max-length 3" "$L" predict ml3.st ml.txt
equal "--max-length 3: one prediction for every text" "$(sort -u out | wc -l)" 1
run "classify without --max-length" "$L" train classify --train ml.txt --valid ml.txt "${CL[@]}" --epochs 1 --out ml0.st
run "predict without --max-length" "$L" predict ml0.st ml.txt
check "without --max-length the texts differ" [ "$(sort -u out | wc -l)" -gt 1 ]
equal "classify is bidirectional by default" "$(shape word.st lstm.weight_ih_l0_reverse)" 32,8
run "--bidirectional 0" "$L" train classify --train cls.txt --valid cls.txt "${CL[@]}" --epochs 1 --bidirectional 0 --out uni.st
equal "--bidirectional 0: no reverse direction" "$(shape uni.st lstm.weight_ih_l0_reverse)" ""
equal "--bidirectional 0: the decoder reads H values" "$(shape uni.st decoder.weight)" 2,8
refuse "a bidirectional lm" "cannot be bidirectional" "$L" train lm "${LM[@]}" --bidirectional 1 --out x.st

# ---- train tag: the features --------------------------------------------------------
run "train tag" "$L" train tag "${TG[@]}" --out tag.st
for f in suffix1:8 suffix2:16 suffix3:32 suffix4:32 suffix5:32 shape:8 prefix1:8 prefix2:16 prefix3:32 prefix4:32; do
    check "tag: the ${f%:*} embedding is ${f#*:} wide" grep -q ",${f#*:}\$" <(shape tag.st "embedding.${f%:*}.weight")
done
equal "tag: the LSTM reads the word and its features (8 + 120 + 8 + 88)" "$(shape tag.st lstm.weight_ih_l0)" 32,224
run "train tag --no-char-features" "$L" train tag "${TG[@]}" --no-char-features --out nochar.st
equal "--no-char-features: no suffix embedding" "$(shape nochar.st embedding.suffix1.weight)" ""
equal "--no-char-features: no shape embedding" "$(shape nochar.st embedding.shape.weight)" ""
equal "--no-char-features: the LSTM reads the word only" "$(shape nochar.st lstm.weight_ih_l0)" 32,8
equal "--no-char-features in the configuration" "$(config nochar.st char_features)" false
# --suffixes N, --prefixes N: tables for the last and first 1..N letters,
# after the shape's (task_tag.c features); the runtime side is test_embed.c's
run "train tag --suffixes 4 --prefixes 2" "$L" train tag "${TG[@]}" --suffixes 4 --prefixes 2 --out affix.st
for f in suffix3:32 suffix4:32 shape:8 prefix1:8 prefix2:16; do
    check "--suffixes 4 --prefixes 2: the ${f%:*} embedding is ${f#*:} wide" grep -q ",${f#*:}\$" <(shape affix.st "embedding.${f%:*}.weight")
done
equal "--suffixes 4 --prefixes 2: no suffix5 or prefix3" "$(shape affix.st embedding.suffix5.weight)$(shape affix.st embedding.prefix3.weight)" ""
equal "--suffixes 4 --prefixes 2: the LSTM reads 8 + 64 + 32 + 24 values" "$(shape affix.st lstm.weight_ih_l0)" 32,128
# the keys: a word's first and last letters, lowercased ("The" -> "th")
has "prefix2's vocabulary holds the first two letters" '\"th\",' "$(header affix.st | grep -o 'lstm.vocab.prefix2":"[^]]*')"
has "suffix4's vocabulary holds the last four letters" '\"tion\",' "$(header affix.st | grep -o 'lstm.vocab.suffix4":"[^]]*')"
lacks "prefix2's vocabulary holds no word's last letters" '\"ng\",' "$(header affix.st | grep -o 'lstm.vocab.prefix2":"[^]]*')"
equal "--suffixes 4 in the configuration" "$(config affix.st suffixes)" 4
equal "--prefixes 2 in the configuration" "$(config affix.st prefixes)" 2
run "train tag --suffixes 3 --prefixes 0 (the features before the options)" "$L" train tag "${TG[@]}" --suffixes 3 --prefixes 0 --out affix30.st
equal "--suffixes 3 --prefixes 0: the LSTM reads 8 + 56 + 8 values" "$(shape affix30.st lstm.weight_ih_l0)" 32,72
lacks "--suffixes 3 --prefixes 0: the configuration names neither (the bytes of before)" "fixes" "$(header affix30.st)"
has "train tag --help names the affix defaults" "last 1 to 5 letters, its shape, its first 1 to 4" "$("$L" train tag --help)"
v=$("$L" --version)
has "--version names the kernels a default context chooses here" " kernels, " "$v"
has "--version names the matrix products a default context uses" " matrix products, " "$v"
has "--version tells whether bfloat16 training is available" "bfloat16 training " "$v"
run "train tag --suffixes 2" "$L" train tag "${TG[@]}" --suffixes 2 --out suf2.st
equal "--suffixes 2: no suffix3" "$(shape suf2.st embedding.suffix3.weight)" ""
printf 'The jury said .\nUnheard-of prices rose .\n' >affix.txt
run "predict with --suffixes 4 --prefixes 2" "$L" predict affix.st affix.txt
equal "--suffixes 4 --prefixes 2: a tag for every word" "$(wc -w <out)" 8
refuse "--suffixes 6" "--suffixes must be 1 to 5, not 6" "$L" train tag "${TG[@]}" --suffixes 6 --out x.st
refuse "--prefixes 5" "--prefixes must be 0 to 4, not 5" "$L" train tag "${TG[@]}" --prefixes 5 --out x.st
refuse "--prefixes with --no-char-features" "cannot go with --no-char-features" "$L" train tag "${TG[@]}" --no-char-features --prefixes 1 --out x.st
refuse "--prefixes for the classifier" "--prefixes is the tagger's" "$L" train classify "${CL[@]}" --train cls.txt --prefixes 1 --out x.st
run "tag --prefixes 1 with a checkpoint" "$L" train tag "${TG[@]}" --prefixes 1 --out p1.st --checkpoint p1.ck
refuse "--resume with another --prefixes" "--prefixes (the checkpoint's: 1)" \
    "$L" train tag "${TG[@]}" --epochs 2 --prefixes 2 --resume p1.ck --out x.st
refuse "--resume with another --suffixes" "--suffixes (the checkpoint's: 5)" \
    "$L" train tag "${TG[@]}" --epochs 2 --suffixes 3 --resume p1.ck --out x.st
# --crf: the tagger's alone, 0 or 1; a checkpoint records it
refuse "--crf for the lm" "--crf is the tagger's (lstm train tag), not lm's" \
    "$L" train lm --train tag-train.tsv --crf 1 --out x.st --quiet
refuse "--crf 2" "--crf must be 0 or 1, not 2" "$L" train tag "${TG[@]}" --crf 2 --out x.st
run "tag --crf 1 with a checkpoint" "$L" train tag "${TG[@]}" --crf 1 --out crf.st --checkpoint crf.ck
equal "--crf 1: crf.transitions is (tags, tags)" "$(shape crf.st crf.transitions)" \
    "$(shape crf.st decoder.bias | cut -d, -f1),$(shape crf.st decoder.bias | cut -d, -f1)"
equal "--crf 1: crf.start_transitions is (tags)" "$(shape crf.st crf.start_transitions)" \
    "$(shape crf.st decoder.bias)"
refuse "--resume with --crf 0" "--crf (the checkpoint's: 1)" \
    "$L" train tag "${TG[@]}" --epochs 2 --crf 0 --resume crf.ck --out x.st
equal "--crf 1: lstm.config says crf" "$(config crf.st crf)" true
equal "a tagger without --crf: no CRF tensor, no crf key (the bytes of before)" \
    "$(header p1.st | grep -c 'crf')" 0
run "train tag --vocab-size 10" "$L" train tag "${TG[@]}" --vocab-size 10 --out tv.st
equal "tag --vocab-size 10: 10 words, <pad> and <unk>" "$(shape tv.st embedding.word.weight | cut -d, -f1)" 12
printf 'The jury said .\n' >sent.txt
run "predict with the small vocabulary" "$L" predict tv.st sent.txt

# --lazy-adam 1 leaves the embedding rows a batch did not use as they are
# (test_optim.c checks the rule): another tagger than the default (0, Adam on
# every row); 0 is the default's bytes; the checkpoint records it and a resume
# that contradicts it is refused; only 0 or 1
run "tag --lazy-adam 1" "$L" train tag "${TG[@]}" --epochs 2 --batch 4 --lazy-adam 1 --out lazy.st --checkpoint lazy.ck
run "tag, dense by default" "$L" train tag "${TG[@]}" --epochs 2 --batch 4 --out dense.st
run "tag --lazy-adam 0" "$L" train tag "${TG[@]}" --epochs 2 --batch 4 --lazy-adam 0 --out dense0.st
differ "--lazy-adam 1 trains another tagger than the default" <(weights dense.st) <(weights lazy.st)
same "--lazy-adam 0 is the tagger's default" <(weights dense0.st) <(weights dense.st)
has "the checkpoint records lazy Adam" '\"lazy\":true' "$(header lazy.ck)"
refuse "--lazy-adam 2" "--lazy-adam must be 0 or 1" "$L" train tag "${TG[@]}" --lazy-adam 2 --out x.st
refuse "--resume with another --lazy-adam" "--lazy-adam (the checkpoint's: 1)" \
    "$L" train tag "${TG[@]}" --epochs 3 --batch 4 --lazy-adam 0 --resume lazy.ck --out x.st

# ---- sample -------------------------------------------------------------------------
# a model that has learnt something of the text: its distribution is peaked
run "train a model to sample" "$L" train lm "${LM[@]}" --epochs 3 --out samp.st
run "sample --length 300" "$L" sample samp.st --prime "The " --length 300 --seed 4
equal "--length 300: the prime, 300 bytes and a newline" "$(wc -c <out)" 305
sample() { "$L" sample samp.st --length 400 "$@" 2>/dev/null; }
sample --top-k 1 --seed 1 >k1a.txt
sample --top-k 1 --seed 2 >k1b.txt
same "--top-k 1 is greedy: two seeds draw the same text" k1a.txt k1b.txt
sample --seed 1 >a1.txt
sample --seed 2 >a2.txt
differ "--seed 2 samples another text than --seed 1" a1.txt a2.txt
# the model finds the text it draws at temperature 0.5 (its likeliest bytes,
# more often) more predictable than at 1, and that more than at 2; with
# only the 3 likeliest bytes allowed, more predictable than with all
sample --seed 5 --temperature 0.5 >t05.txt
sample --seed 5 >t1.txt
sample --seed 5 --temperature 2 >t2.txt
sample --seed 5 --top-k 3 >k3.txt
b05=$(eval_field samp.st t05.txt bpc) b1=$(eval_field samp.st t1.txt bpc)
b2=$(eval_field samp.st t2.txt bpc) bk3=$(eval_field samp.st k3.txt bpc)
less "--temperature 0.5 draws likelier text than 1" "$b05" "$b1"
less "--temperature 1 draws likelier text than 2" "$b1" "$b2"
less "--top-k 3 draws likelier text than all bytes" "$bk3" "$b1"
refuse "--temperature 0" "--temperature > 0" "$L" sample samp.st --temperature 0

# ---- bench: what it measures (a few microseconds of work) ---------------------------
B=(--input 4 --hidden 8 --batch 2 --steps 3 --repeat 1)
run "bench --mode infer" "$L" bench --mode infer "${B[@]}" --layers 2 --proj 4 --bidirectional --threads 1 --json
check "bench --json: mode, layers, proj, bidirectional, threads" \
    grep -q '"mode":"infer","input":4,"hidden":8,"layers":2,"bidirectional":1,"proj":4,"batch":2,"steps":3,"threads":1,' out
run "bench --mode stream --threads 2" "$L" bench --mode stream "${B[@]}" --threads 2
check "bench --mode stream: per step, on 2 threads" grep -q '^stream I=4 H=8 L=1 B=2 T=3 threads=2 .* ms per step' out
LSTM_BLAS=off "$L" bench "${B[@]}" >out 2>&1
check "bench, LSTM_BLAS=off: the built-in product" grep -q '^train .* gemm=builtin:' out
if ldd "$bin" 2>/dev/null | grep -q libopenblas; then # a build with OpenBLAS
    LSTM_BLAS=on "$L" bench "${B[@]}" >out 2>&1
    check "bench, LSTM_BLAS=on: the BLAS" grep -q '^train .* gemm=openblas:' out
fi
if "$L" bench "${B[@]}" --precision bf16 >out 2>&1; then
    check "bench --precision bf16: bfloat16 kernels" grep -q 'kernels=avx512bf16 ' out
fi
refuse "bench --mode stream --bidirectional" "stream is unidirectional" "$L" bench --mode stream --bidirectional "${B[@]}"
refuse "bench --mode fast" "--mode must be train, infer or stream" "$L" bench --mode fast

finish
