#!/bin/sh
# compare.sh - lstm against oneDNN's LSTM primitive, PyTorch's nn.LSTM and (infer and
# stream cases) ONNX Runtime, same cases, interleaved, with the machine's sgemm rate
# measured in the same run.
#
#   bench/compare.sh                      # the full table: 3 rounds, 10 repeats (minutes)
#   bench/compare.sh --quick              # 1 round, 3 repeats: a smoke test
#   bench/compare.sh --cases 'stream|infer' --rounds 5
#
# Options: --quick, --rounds N, --repeat R, --cases REGEX (grep -E on the case names),
# --no-build (use the programs already in build/), --int8 (only the int8 table), --help.
# Needs: make and OpenBLAS for lstm; libdnnl-dev (oneDNN 2.6) for build/bench/onednn_lstm;
# Debian's /usr/bin/python3 with torch for bench/torch_lstm.py; node and onnxruntime-node
# (scripts/install-ort.sh, or LSTM_ORT) for bench/ort_lstm.js, which runs the model
# `lstm export` writes, intra-op threads = lstm's threads. A program that fails to
# build or run shows as n/a. Each case runs lstm, oneDNN and PyTorch in turn, round
# after round, and keeps the best median of each (every program prints the median of
# R timed runs after two warm-ups). Ratios are times: above 1, lstm is faster. A second
# table sets the three side by side in bfloat16: lstm --precision bf16 (bfloat16
# products, float sums and weights; n/a without AVX-512 BF16), onednn_lstm --bf16
# (bf16 activations and weights) and torch_lstm.py --bf16 (module in bfloat16); a
# third gives the peak memory of the training cases. "of peak": lstm's GFLOP/s over
# the two cores' multiply-add peak measured in the same run (bench/sgemm_rate.c).
# The int8 table: the infer and stream cases on 2 threads and on 1, lstm
# --precision int8 (int8 weights per row, activations quantized per row as they
# come) against lstm in float, oneDNN's int8 LSTM (onednn_lstm --int8: u8
# activations with static scales, s8 weights) and PyTorch's quantize_dynamic
# (torch_lstm.py --int8).
set -u

cd "$(dirname "$0")/.." || exit 1
ROUNDS=3
REPEAT=10
CASES_RE=.
BUILD=1
INT8_ONLY=0
THREADS=2
while [ $# -gt 0 ]; do
    case $1 in
    --quick) ROUNDS=1 REPEAT=3 ;;
    --rounds) ROUNDS=$2; shift ;;
    --repeat) REPEAT=$2; shift ;;
    --cases) CASES_RE=$2; shift ;;
    --no-build) BUILD=0 ;;
    --int8) INT8_ONLY=1 ;;
    --help | -h) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

mkdir -p build/bench
if [ $BUILD = 1 ]; then
    make -s lstm >&2 || echo "compare.sh: make lstm failed" >&2
    cc -O2 -fopenmp bench/onednn_lstm.c -o build/bench/onednn_lstm -ldnnl -lm ||
        echo "compare.sh: oneDNN program not built (libdnnl-dev missing?)" >&2
    # shellcheck disable=SC2046 # pkg-config prints a word list
    cc -O2 -pthread bench/sgemm_rate.c -o build/bench/sgemm_rate $(pkg-config --cflags --libs openblas) ||
        echo "compare.sh: sgemm_rate not built (OpenBLAS missing?)" >&2
fi

# name|arguments: the cases of the table, 2 threads each
CASES='train I=H=256 B=32 T=150|--mode train --input 256 --hidden 256 --batch 32 --steps 150
train I=H=512 B=64 T=25|--mode train --input 512 --hidden 512 --batch 64 --steps 25
train I=H=1024 B=32 T=25|--mode train --input 1024 --hidden 1024 --batch 32 --steps 25
train I=H=512 L=2 bidir B=32 T=50|--mode train --input 512 --hidden 512 --layers 2 --bidirectional --batch 32 --steps 50
infer I=H=1024 B=4 T=25|--mode infer --input 1024 --hidden 1024 --batch 4 --steps 25
infer I=H=256 B=1 T=150|--mode infer --input 256 --hidden 256 --batch 1 --steps 150
stream I=H=256 L=2 B=1|--mode stream --input 256 --hidden 256 --layers 2 --batch 1 --steps 100
stream I=H=512 L=2 B=1|--mode stream --input 512 --hidden 512 --layers 2 --batch 1 --steps 100'

# json_field FIELD: the number FIELD of the last JSON line on stdin, or nothing
json_field() {
    grep '^{' | tail -n 1 | sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p"
}

# run IMPL ARGS...: "ms gflops" of one run (medians of its timed runs), or nothing on failure
run() {
    impl=$1
    shift
    case $impl in
    lstm) set -- ./lstm bench "$@" ;;
    onednn) set -- build/bench/onednn_lstm "$@" ;;
    torch) set -- bench/torch_lstm.py "$@" ;;
    ort) case "$*" in *train*) return ;; esac; set -- env TMPDIR="$ORT_TMP" bench/ort_lstm.js "$@" ;;
    lstm-bf16) set -- ./lstm bench "$@" --precision bf16 ;;
    onednn-bf16) set -- build/bench/onednn_lstm "$@" --bf16 ;;
    torch-bf16) set -- bench/torch_lstm.py "$@" --bf16 ;;
    lstm-int8) set -- ./lstm bench "$@" --precision int8 ;;
    onednn-int8) set -- build/bench/onednn_lstm "$@" --int8 ;;
    torch-int8) set -- bench/torch_lstm.py "$@" --int8 ;;
    esac
    line=$(timeout 600 "$@" --threads "$THREADS" --repeat "$REPEAT" --json 2>/dev/null | grep '^{' | tail -n 1)
    ms=$(echo "$line" | sed -n 's/.*"ms":\([-0-9.e+]*\).*/\1/p')
    gf=$(echo "$line" | sed -n 's/.*"gflops":\([-0-9.e+]*\).*/\1/p')
    [ -n "$ms" ] && [ -n "$gf" ] && echo "$ms $gf"
}

# best OLD NEW: of two "ms gflops" pairs (either possibly empty), the one with fewer ms
best() {
    if [ -z "$1" ]; then echo "$2"; elif [ -z "$2" ]; then echo "$1"; else
        echo "$1 $2" | awk '{ print ($3 < $1 ? $3 " " $4 : $1 " " $2) }'; fi
}

# fmt "ms gflops" FIELD: the field, or n/a
fmt() {
    if [ -z "$1" ]; then echo n/a; else
        echo "$1" | awk -v f="$2" '{ printf ($f < 1 ? "%.4f" : f == 2 ? "%.1f" : "%.2f"), $f }'; fi
}

# share "ms gflops" PEAK: the run's GFLOP/s as a percentage of PEAK, or n/a
share() {
    if [ -z "$1" ] || [ -z "$2" ] || [ "$2" = 0.000 ]; then echo n/a; else
        echo "$1 $2" | awk '{ printf "%.0f%%", 100 * $2 / $3 }'; fi
}

# ratio OTHER LSTM: OTHER's ms over lstm's, or n/a
ratio() {
    if [ -z "$1" ] || [ -z "$2" ]; then echo n/a; else
        echo "$1 $2" | awk '{ printf "%.2f", $1 / $3 }'; fi
}

echo "# lstm vs oneDNN vs PyTorch vs ONNX Runtime, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -m), $(nproc) cores"
echo
grep -m1 'model name' /proc/cpuinfo | sed 's/.*: /CPU: /'
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}; $ROUNDS round(s) of $REPEAT timed runs, best median kept"
# oneDNN's OpenMP threads wait actively: another busy process on these cores makes it
# 100x slower, so a loaded machine gives meaningless oneDNN numbers
load=$(cut -d' ' -f1 /proc/loadavg)
echo "load average $load$(awk -v l="$load" 'BEGIN { if (l > 0.5) printf " (WARNING: the machine is busy; timings are unreliable)" }')"
PEAK='' PEAK_BF16=''
if [ -x build/bench/sgemm_rate ]; then
    rate=$(build/bench/sgemm_rate)
    echo "$rate" | grep -v '^{'
    PEAK=$(echo "$rate" | json_field peak_2)
    PEAK_BF16=$(echo "$rate" | json_field peak_bf16_2)
else
    echo "sgemm rate and multiply-add peak: n/a"
fi
echo
BF16_ROWS=$(mktemp)
# ONNX Runtime leaves an empty mat-debug-PID.log in TMPDIR for each process
ORT_TMP=$(mktemp -d)
trap 'rm -f "$BF16_ROWS"; rm -rf "$ORT_TMP"' EXIT

int8_table() {
    echo "int8 (the infer and stream cases; ratios are times, above 1 lstm int8 is faster):"
    echo
    echo "| case | threads | lstm fp32 ms | lstm int8 ms | oneDNN int8 ms | PyTorch int8 ms | lstm fp32/int8 | oneDNN int8/lstm int8 | PyTorch int8/lstm int8 |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for THREADS in 2 1; do
        echo "$CASES" | grep -E '^(infer|stream)' | while IFS='|' read -r name args; do
            echo "$name" | grep -Eq -- "$CASES_RE" || continue
            l='' li='' oi='' ti=''
            r=0
            while [ $r -lt "$ROUNDS" ]; do
                # shellcheck disable=SC2086 # args is a word list
                l=$(best "$l" "$(run lstm $args)")
                # shellcheck disable=SC2086
                li=$(best "$li" "$(run lstm-int8 $args)")
                # shellcheck disable=SC2086
                oi=$(best "$oi" "$(run onednn-int8 $args)")
                # shellcheck disable=SC2086
                ti=$(best "$ti" "$(run torch-int8 $args)")
                r=$((r + 1))
            done
            echo "| $name | $THREADS | $(fmt "$l" 1) | $(fmt "$li" 1) | $(fmt "$oi" 1) | $(fmt "$ti" 1) |" \
                "$(ratio "$l" "$li") | $(ratio "$oi" "$li") | $(ratio "$ti" "$li") |"
        done
    done
    THREADS=2
}
if [ "$INT8_ONLY" = 1 ]; then
    int8_table
    exit 0
fi

echo "| case | lstm ms | oneDNN ms | PyTorch ms | ORT ms | lstm GFLOP/s | of peak | oneDNN/lstm | PyTorch/lstm | ORT/lstm |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
echo "$CASES" | while IFS='|' read -r name args; do
    echo "$name" | grep -Eq -- "$CASES_RE" || continue
    l='' o='' t='' n='' lb='' ob='' tb=''
    r=0
    while [ $r -lt "$ROUNDS" ]; do
        # shellcheck disable=SC2086 # args is a word list
        l=$(best "$l" "$(run lstm $args)")
        # shellcheck disable=SC2086
        o=$(best "$o" "$(run onednn $args)")
        # shellcheck disable=SC2086
        t=$(best "$t" "$(run torch $args)")
        # shellcheck disable=SC2086
        n=$(best "$n" "$(run ort $args)")
        # shellcheck disable=SC2086
        lb=$(best "$lb" "$(run lstm-bf16 $args)")
        # shellcheck disable=SC2086
        ob=$(best "$ob" "$(run onednn-bf16 $args)")
        # shellcheck disable=SC2086
        tb=$(best "$tb" "$(run torch-bf16 $args)")
        r=$((r + 1))
    done
    echo "| $name | $(fmt "$l" 1) | $(fmt "$o" 1) | $(fmt "$t" 1) | $(fmt "$n" 1) | $(fmt "$l" 2) | $(share "$l" "$PEAK") |" \
        "$(ratio "$o" "$l") | $(ratio "$t" "$l") | $(ratio "$n" "$l") |"
    echo "| $name | $(fmt "$lb" 1) | $(fmt "$ob" 1) | $(fmt "$tb" 1) | $(fmt "$lb" 2) | $(share "$lb" "$PEAK_BF16") |" \
        "$(ratio "$ob" "$lb") | $(ratio "$tb" "$lb") | $(ratio "$o" "$lb") |" >>"$BF16_ROWS"
done

echo
echo "bfloat16, each in its own bf16 mode (same rounds, interleaved with the above):"
echo
echo "| case | lstm bf16 ms | oneDNN bf16 ms | PyTorch bf16 ms | lstm bf16 GFLOP/s | of peak | oneDNN bf16/lstm bf16 | PyTorch bf16/lstm bf16 | oneDNN fp32/lstm bf16 |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
cat "$BF16_ROWS"

echo
int8_table

# Peak memory of training: each process's peak resident memory, whole and above
# what it held before any model or data existed (for PyTorch: after `import torch`),
# which counts the weights, gradients, inputs and the training step's own memory
# on both sides; and what PyTorch grows by while it trains alone.
echo
echo "| train case | lstm peak RSS MiB | lstm above its start | PyTorch peak RSS MiB | PyTorch above its start | PyTorch growth while training |"
echo "|---|---:|---:|---:|---:|---:|"
echo "$CASES" | grep '^train' | while IFS='|' read -r name args; do
    echo "$name" | grep -Eq -- "$CASES_RE" || continue
    # shellcheck disable=SC2086 # args is a word list
    ll=$(./lstm bench $args --threads 2 --repeat 2 --json 2>/dev/null | grep '^{' | tail -n 1)
    # shellcheck disable=SC2086
    tl=$(bench/torch_lstm.py $args --threads 2 --repeat 2 --json 2>/dev/null | grep '^{' | tail -n 1)
    echo "| $name | $(echo "$ll" | json_field peak_rss_mib) | $(echo "$ll" | json_field peak_rss_over_start_mib) |" \
        "$(echo "$tl" | json_field peak_rss_mib) | $(echo "$tl" | json_field peak_rss_over_start_mib) |" \
        "$(echo "$tl" | json_field peak_rss_growth_mib) |"
done
