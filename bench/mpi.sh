#!/bin/sh
# mpi.sh [SECONDS] [DATA] - data-parallel training speed on this machine: each
# task's defaults (lstm train TASK with the corpora of ../shared/data or DATA, laid
# out as scripts/brown.sh and scripts/spam.sh write them), run for SECONDS
# (default 60; TASKS="lm tag" to choose) as 1 rank x 1 thread, 1 rank x 2 threads and 2 ranks x 1 thread
# (mpirun), and 2 ranks x 1 thread again with --no-overlap; prints tokens per
# second (the median of the log's training events after the first two) and, for 2
# ranks, the time per step spent summing gradients over the ranks: after the
# backward (--no-overlap), and what the backward leaves exposed when the sums run
# during it (the default); "hidden" is 1 - exposed / after. Needs a build with MPI
# and mpirun.
set -u
cd "$(dirname "$0")/.." || exit 1
SECS=${1:-60}
DATA=${2:-../shared/data}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN="mpirun --oversubscribe --mca btl_vader_single_copy_mechanism none --bind-to none"
tmp=$(mktemp -d /tmp/lstm-mpibench-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# median of the tokens_per_s of a log's train events, after the first two
tps() { grep '"train"' "$1" | sed 's/.*"tokens_per_s":\([0-9.e+]*\).*/\1/' | tail -n +3 | sort -g |
        awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2); else print "n/a" }'; }
# the last train event's step and comm_seconds, and the run's training seconds
comm() { grep '"train"' "$1" | tail -n 1 | sed 's/.*"step":\([0-9]*\).*"comm_seconds":\([0-9.e+-]*\).*/\1 \2/'; }
echo "# data-parallel speed, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $SECS s a run, load $(cut -d' ' -f1 /proc/loadavg)"
echo
echo "| task | 1 rank x 1 thread | 1 rank x 2 threads | 2 ranks x 1 thread | 2x1 / 1x1 | sums after the backward, per step | exposed when overlapped, per step | hidden |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
# milliseconds per step of comm_seconds in a log
msper() { set -- $(comm "$1"); awk -v c="${2:-0}" -v n="${1:-0}" 'BEGIN { if (n > 0) printf "%.2f", 1000 * c / n; else print "n/a" }'; }
# the lm validates on 100 kB of its valid text, so that a short run's time
# limit does not keep most of it in reserve for a 15 s validation
head -c 100000 "$DATA/brown-text/valid.txt" >"$tmp/lm-valid.txt"
for task in ${TASKS:-lm tag classify}; do
    case $task in
    lm) a="--train $DATA/brown-text/train.txt --valid $tmp/lm-valid.txt" ;;
    tag) a="--train $DATA/brown-pos/train.tsv --valid $DATA/brown-pos/valid.tsv" ;;
    classify) a="--train $DATA/spam/train.txt --valid $DATA/spam/valid.txt" ;;
    esac
    # shellcheck disable=SC2086 # a is a word list
    ./lstm train $task $a --time-limit "$SECS" --threads 1 --quiet --out "$tmp/m.st" --log "$tmp/11.log" --valid-every 100000
    # shellcheck disable=SC2086
    ./lstm train $task $a --time-limit "$SECS" --threads 2 --quiet --out "$tmp/m.st" --log "$tmp/12.log" --valid-every 100000
    # shellcheck disable=SC2086
    $MPIRUN -np 2 ./lstm train $task $a --time-limit "$SECS" --threads 1 --quiet --out "$tmp/m.st" --log "$tmp/21.log" --valid-every 100000
    # shellcheck disable=SC2086
    $MPIRUN -np 2 ./lstm train $task $a --time-limit "$SECS" --threads 1 --quiet --out "$tmp/m.st" --log "$tmp/21n.log" --valid-every 100000 --no-overlap
    t11=$(tps "$tmp/11.log") t12=$(tps "$tmp/12.log") t21=$(tps "$tmp/21.log")
    after=$(msper "$tmp/21n.log") exposed=$(msper "$tmp/21.log")
    echo "| $task | $t11 | $t12 | $t21 | $(awk -v a="$t21" -v b="$t11" 'BEGIN { if (a ~ /^[0-9.]+$/ && b + 0 > 0) printf "%.2f", a / b; else print "n/a" }') | $after ms | $exposed ms | $(awk -v a="$after" -v e="$exposed" 'BEGIN { if (a + 0 > 0 && e ~ /^[0-9.]+$/) printf "%.0f%%", 100 * (1 - e / a); else print "n/a" }') |"
done
