#!/usr/bin/env bash
# onnx.sh BUILD - lstm convert and lstm export from the command line: errors
# are clear, and models that lstm export writes compute in ONNX Runtime what
# PyTorch computed (tests/fixtures/lstm_*.safetensors; for peephole, clip and
# input_forget, ONNX Runtime's own single-node results, onnx_lstm_*) and what
# lstm forward computes, also after converting them back. ONNX Runtime is the
# onnxruntime-node package at $LSTM_ORT or .ort/node_modules/onnxruntime-node
# (scripts/install-ort.sh); without it, or without node, that part skips.
set -u
build=${1:-build}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 2
lstm=$build/lstm
tmp=$(mktemp -d /tmp/lstm-onnx-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# ONNX Runtime leaves an empty mat-debug-PID.log in TMPDIR for each process
export TMPDIR=$tmp
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -f "$tmp/err" ] && tail -3 "$tmp/err"; }
expect_error() { # description, pattern, command...
    local what=$1 pat=$2; shift 2
    if "$@" >"$tmp/out" 2>"$tmp/err"; then bad "$what: succeeded"
    elif grep -q -- "$pat" "$tmp/err"; then ok "$what: $(head -1 "$tmp/err")"
    else bad "$what: message lacks '$pat'"; fi
}

if ! "$lstm" convert --help >/dev/null 2>"$tmp/err"; then
    if grep -q "lacks ONNX support" "$tmp/err"; then ok "convert says the build lacks ONNX support"
    else bad "convert --help fails without saying why"; fi
    echo "ok skipping: this build lacks ONNX support"
    echo "$pass passed, $fail failed"
    [ $fail -eq 0 ]; exit
fi

# errors name the file and what is wrong
printf 'not a protobuf' >"$tmp/junk.onnx"
expect_error "convert refuses a file that is not ONNX" "junk.onnx: not an ONNX model" \
    "$lstm" convert "$tmp/junk.onnx" "$tmp/out.safetensors"
expect_error "convert: a missing file" "cannot open" "$lstm" convert "$tmp/none.onnx" "$tmp/o.safetensors"
expect_error "export refuses proj_size" "proj_size 3" \
    "$lstm" export --prefix= tests/fixtures/lstm_proj.safetensors "$tmp/p.onnx"
[ ! -e "$tmp/p.onnx" ] && ok "no file left by a refused export" || bad "a refused export left a file"

# the three task models: tiny ones trained here, exported whole (and their
# LSTM alone with --prefix lstm.)
printf '%s\n' '__label__pos a good film , truly good' '__label__neg a bad film' \
    '__label__pos good acting and a good story' '__label__neg bad , bad , bad' \
    '__label__pos fine' '__label__neg not good at all , really' >"$tmp/classify.txt"
head -300 tests/data/brown-pos-train.tsv >"$tmp/tag.txt"
head -c 3000 tests/data/brown-text-train.txt >"$tmp/lm.txt"
# tag: the defaults, every suffix and prefix table (11 inputs); tag-few: two
# suffix tables and one prefix table (5 inputs); tag-crf: a CRF over the
# tags, trained until its transitions matter (from -2.2 to 1.5) and its
# scores are large, and checked on the three sentences of tests/data's
# sample of at least 68 words (68 to 83): there a forward-backward in logs
# that does not shift its sums as it goes is 1.6e-4 off at p = 0.93 in
# float, which this check sees (docs/DESIGN.md, "The tagger's CRF")
cp "$tmp/tag.txt" "$tmp/tag-few.txt"
cp "$tmp/tag.txt" "$tmp/tag-crf.txt"
awk 'BEGIN { RS = ""; ORS = "\n\n" } NF >= 136' tests/data/brown-pos-train.tsv >"$tmp/tag-crf.check.txt"
for task in classify tag tag-few tag-crf lm; do
    extra=(--epochs 1 --batch 4); [ $task = lm ] && extra=(--epochs 1 --batch 4 --seq-len 25)
    [ $task = tag-few ] && extra=(--epochs 1 --batch 4 --suffixes 2 --prefixes 1)
    [ $task = tag-crf ] && extra=(--epochs 40 --batch 4 --lr 0.05 --crf 1 --hidden 16)
    if ! "$lstm" train ${task%-*} --train "$tmp/$task.txt" --valid "$tmp/$task.txt" --hidden 8 --embedding 8 \
        --threads 1 "${extra[@]}" --out "$tmp/$task.safetensors" >/dev/null 2>"$tmp/err"; then
        bad "training a tiny $task model"; continue
    fi
    if "$lstm" export "$tmp/$task.safetensors" "$tmp/$task.onnx" 2>"$tmp/err"; then
        ok "export of a $task model"
    else bad "export of a $task model"; fi
done
if "$lstm" export --prefix lstm. "$tmp/tag.safetensors" "$tmp/tag.lstm.onnx" 2>"$tmp/err" &&
    "$lstm" convert "$tmp/tag.lstm.onnx" "$tmp/tag.lstm.safetensors" | grep -q "bidirectional=True"; then
    ok "a tagger's bidirectional LSTM alone exports with --prefix lstm. and converts back"
else bad "export --prefix lstm. of a tagger"; fi

# export's options shape the graph (what convert reads back from it)
fx=tests/fixtures/lstm_layers3_bidir_bf_lengths.safetensors
if "$lstm" export --prefix= --batch-first --state --lengths "$fx" "$tmp/all.onnx" 2>"$tmp/err" &&
    "$lstm" convert "$tmp/all.onnx" "$tmp/all.safetensors" >"$tmp/out" 2>"$tmp/err" &&
    grep -q "input  h0 .*initial h" "$tmp/out" && grep -q "input  c0 .*initial c" "$tmp/out" &&
    grep -q "input  lengths .*sequence lengths" "$tmp/out" && grep -q "batch-first" "$tmp/out"; then
    ok "export --batch-first --state --lengths: the graph takes (B, T, I), h0, c0, lengths"
else bad "export --batch-first --state --lengths"; fi
if "$lstm" export --prefix= "$fx" "$tmp/none.onnx" 2>"$tmp/err" &&
    "$lstm" convert "$tmp/none.onnx" "$tmp/none.safetensors" >"$tmp/out" 2>"$tmp/err" &&
    ! grep -q "h0\|lengths\|batch-first" "$tmp/out" && grep -q "input  input .*(T, B, I)" "$tmp/out"; then
    ok "export without options: the graph takes input (T, B, I) alone"
else bad "export without options"; fi
if "$lstm" convert --quiet "$tmp/none.onnx" "$tmp/none.safetensors" >"$tmp/out" 2>&1 && [ ! -s "$tmp/out" ]; then
    ok "convert --quiet prints nothing"
else bad "convert --quiet"; fi

# PyTorch's export converts; lstm forward runs the result
f=tests/fixtures/onnx/bi2_bf_state_opset14
if "$lstm" convert "$f/model.onnx" "$tmp/torch.safetensors" >"$tmp/out" 2>"$tmp/err" &&
    grep -q "batch-first" "$tmp/out"; then ok "convert of torch.onnx.export's 2-layer bidirectional batch-first LSTM"
else bad "convert of $f"; fi

# direction="reverse" (ONNX Runtime's fixtures, tests/gen_onnx_fixtures.py):
# convert says so, and export writes it back
f=tests/fixtures/onnx/ort_rev2_layout1_opset14
if "$lstm" convert "$f/model.onnx" "$tmp/rev.safetensors" >"$tmp/out" 2>"$tmp/err" &&
    grep -q "num_layers=2), reverse" "$tmp/out" && grep -q "batch-first" "$tmp/out"; then
    ok "convert of a 2-layer reverse LSTM in layout 1: $(head -1 "$tmp/out" | sed 's/.*: //')"
else bad "convert of $f"; fi
if "$lstm" export --prefix= "$tmp/rev.safetensors" "$tmp/rev.onnx" 2>"$tmp/err" &&
    grep -q "reverse" "$tmp/rev.onnx" &&
    "$lstm" convert "$tmp/rev.onnx" "$tmp/rev2.safetensors" >"$tmp/out" 2>"$tmp/err" &&
    grep -q "reverse" "$tmp/out"; then
    ok "export of a reverse state_dict writes direction=\"reverse\", and converts back"
else bad "export of a reverse state_dict"; fi

ort=${LSTM_ORT:-$root/.ort/node_modules/onnxruntime-node}
if ! command -v node >/dev/null 2>&1 || [ ! -d "$ort" ]; then
    echo "ok skipping: ONNX Runtime not found (set LSTM_ORT, or run scripts/install-ort.sh)"
else
    # name, export flags
    while read -r name flags; do
        fx=tests/fixtures/$name.safetensors
        if ! "$lstm" export --prefix= $flags "$fx" "$tmp/$name.onnx" 2>"$tmp/err"; then
            bad "export $name"; continue
        fi
        # back through convert and lstm forward: the same numbers again
        bf=; case $flags in *batch-first*) bf=--batch-first ;; esac
        if ! "$lstm" convert --quiet "$tmp/$name.onnx" "$tmp/$name.back.safetensors" 2>"$tmp/err" ||
            ! "$lstm" forward $bf --threads 1 "$tmp/$name.back.safetensors" "$fx" "$tmp/$name.out.safetensors" 2>"$tmp/err"; then
            bad "convert and forward of the exported $name"; continue
        fi
        # lstm forward reads the .onnx itself, the same numbers
        if "$lstm" forward --threads 1 "$tmp/$name.onnx" "$fx" "$tmp/$name.direct.safetensors" 2>"$tmp/err" &&
            cmp -s "$tmp/$name.out.safetensors" "$tmp/$name.direct.safetensors"; then
            ok "lstm forward on $name.onnx equals convert then forward"
        else bad "lstm forward on the exported $name.onnx"; fi
        if node tests/ort_run.js "$ort" "$tmp/$name.onnx" "$fx" "$tmp/$name.out.safetensors" >"$tmp/ort" 2>"$tmp/err"; then
            ok "ONNX Runtime computes $name ($flags) as the fixture (PyTorch; ONNX Runtime for onnx_lstm_*) and lstm forward do ($(tail -1 "$tmp/ort"))"
        else
            grep -v '^ok' "$tmp/ort" >"$tmp/err"; bad "ONNX Runtime on the exported $name"
        fi
    done <<'LIST'
lstm_basic
lstm_h0 --state
lstm_nobias --state
lstm_batch_first --batch-first --state
lstm_bidir
lstm_lengths --lengths
lstm_bidir_h0_lengths --state --lengths
lstm_layers2_bidir
lstm_layers3
lstm_layers3_bidir_bf_lengths --batch-first --lengths
lstm_layers2_bidir_t1_b1 --state
onnx_lstm_peephole --state
onnx_lstm_clip --lengths
onnx_lstm_input_forget --state
onnx_lstm_peephole_clip_input_forget --state --lengths
onnx_lstm_peephole_bidir_lengths --state --lengths
onnx_lstm_reverse
onnx_lstm_reverse_lengths_h0 --state --lengths
onnx_lstm_reverse_peephole_clip_input_forget --state --lengths
LIST
    # the task models: ONNX Runtime's probabilities are lstm's (test_onnx
    # --task-data writes a batch of ids and lstm's own probabilities)
    for task in classify tag tag-few tag-crf lm; do
        [ -f "$tmp/$task.onnx" ] || continue
        check=$tmp/$task.txt; [ -f "$tmp/$task.check.txt" ] && check=$tmp/$task.check.txt
        if "$build/tests/test_onnx" --task-data "$tmp/$task.safetensors" "$check" \
            "$tmp/$task.data.safetensors" >"$tmp/err" 2>&1 &&
            node tests/ort_run.js "$ort" "$tmp/$task.onnx" "$tmp/$task.data.safetensors" >"$tmp/ort" 2>"$tmp/err"; then
            ok "ONNX Runtime's probabilities from the exported $task model are lstm's"
        else
            grep -v '^ok' "$tmp/ort" >>"$tmp/err" 2>/dev/null; bad "ONNX Runtime on the exported $task model"
        fi
    done
fi

# ONNX's own checker (Debian's python3-onnx, ONNX 1.12), with its shape
# inference (full_check), on every model lstm export wrote above: the
# nn.LSTM exports, the task models and the CRF tagger's Scan bodies
if /usr/bin/python3 -c 'import onnx' 2>/dev/null; then
    models=()
    for f in "$tmp"/*.onnx; do [ "$(basename "$f")" = junk.onnx ] || models+=("$f"); done
    /usr/bin/python3 - "${models[@]}" >"$tmp/out" 2>&1 <<'PY'
import sys
import onnx
for path in sys.argv[1:]:
    try:
        onnx.checker.check_model(onnx.load(path), full_check=True)
        print("ok", path)
    except Exception as e:  # the checker's own exceptions, and a file it cannot parse
        print("FAIL", path, str(e).splitlines()[0] if str(e) else type(e).__name__)
PY
    n_ok=$(grep -c '^ok' "$tmp/out")
    if [ "$n_ok" -eq "${#models[@]}" ] && [ "$n_ok" -ge 9 ] && ! grep -q '^FAIL' "$tmp/out" && grep -q 'tag-crf.onnx' "$tmp/out"; then
        ok "ONNX's checker (full_check) passes all $n_ok models lstm export wrote"
    else bad "ONNX's checker: $n_ok passed; $(grep -v '^ok' "$tmp/out" | head -3)"; fi
else
    echo "ok skipping ONNX's checker: /usr/bin/python3 has no onnx (scripts/install-deps.sh --onnx)"
fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
