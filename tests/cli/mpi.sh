#!/usr/bin/env bash
# mpi.sh BUILD - data-parallel training under mpirun -np 2 (Open MPI): two
# ranks train the model one process trains (each task, and the tagger with
# --crf 1; dropout off: every validation figure within 1e-3 relative, the
# float sums being taken in another order), the same job twice gives the
# same bytes, a checkpoint written by one process resumes under two ranks,
# a killed rank ends the job within seconds naming it, an error on the
# ranks ends the job, and summing the gradients during the backward changes
# no bit (--no-overlap). Runs
# when mpirun is there and the program was built with MPI (make MPI=1, or
# Open MPI found by pkg-config), in the plain build (MPI's own allocations
# are not LeakSanitizer's business). Prints "N passed, N failed" last.
set -u
build=${1:-build}
. "$(dirname "$0")/lib/checks.sh"
L=$(cd "$(dirname "$build/lstm")" && pwd)/lstm
data=$(cd "$(dirname "$0")/../data" && pwd)
if [ "$(basename "$build")" != build ] || ! command -v mpirun >/dev/null ||
    ! ldd "$L" 2>/dev/null | grep -q libmpi; then
    echo "ok skipping: needs mpirun and a plain build with MPI"
    echo "0 passed, 0 failed"
    exit 0
fi
tmp=$(mktemp -d /tmp/lstm-mpi-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 2
# as root, in a container, on two cores (Open MPI's own advice for each)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(mpirun --oversubscribe --mca btl_vader_single_copy_mechanism none)
figures() { grep '"valid"' "$1" | sed 's/.*"value":\([-0-9.e]*\).*/\1/' | tr '\n' ' '; }
# close A B: the same number of figures, each within 1e-3 relative
close() {
    awk -v a="$2" -v b="$3" 'BEGIN { n = split(a, x, " "); m = split(b, y, " ");
        if (n != m || n == 0) exit 1;
        for (i = 1; i <= n; i++) { d = x[i] - y[i]; if (d < 0) d = -d; if (d > 1e-3 * y[i]) exit 1 } }' &&
        ok || bad "$1: two ranks against one: $2 / $3"
}

head -c 80000 "$data/brown-text-train.txt" >lm.txt
head -c 20000 "$data/brown-text-valid.txt" >lmv.txt
head -n 4000 "$data/brown-pos-train.tsv" >tag.tsv
head -n 1200 "$data/brown-pos-valid.tsv" >tagv.tsv
awk 'NR % 2 { print "__label__a " $0 } !(NR % 2) { print "__label__b " toupper($0) }' lm.txt |
    head -n 289 >cls.txt # 18 batches of 16 and one of 1: a rank with an empty share
head -n 60 cls.txt >clsv.txt
LM=(lm --train lm.txt --valid lmv.txt --hidden 32 --embedding 8 --batch 8 --seq-len 25 --epochs 1
    --valid-every 60 --lr 1e-2)
TAG=(tag --train tag.tsv --valid tagv.tsv --hidden 16 --embedding 16 --batch 16 --epochs 2 --dropout 0)
TAGCRF=("${TAG[@]}" --crf 1) # each rank's sentences through the CRF, its gradient summed
CLS=(classify --train cls.txt --valid clsv.txt --hidden 16 --embedding 16 --batch 16 --epochs 3 --dropout 0)
for task in LM TAG TAGCRF CLS; do
    eval "args=(\"\${$task[@]}\")"
    "$L" train "${args[@]}" --threads 1 --quiet --out one.st --log one.log 2>err ||
        bad "$task: one process: $(cat err)"
    "${MPIRUN[@]}" -np 2 "$L" train "${args[@]}" --threads 1 --quiet --out two.st --log two.log \
        2>err || bad "$task: mpirun -np 2: $(tail -3 err)"
    close "$task" "$(figures two.log)" "$(figures one.log)"
    # the sums started during the backward (the default) or after it: the
    # same additions, the same bytes (classify has a rank with an empty share)
    "${MPIRUN[@]}" -np 2 "$L" train "${args[@]}" --threads 1 --quiet --out two-no.st --no-overlap \
        2>err || bad "$task: --no-overlap: $(tail -3 err)"
    cmp -s two.st two-no.st && ok || bad "$task: overlapped and --no-overlap sums give the same model"
done
# the same job again: the same bytes
"${MPIRUN[@]}" -np 2 "$L" train "${LM[@]}" --threads 1 --quiet --out again.st 2>/dev/null
"${MPIRUN[@]}" -np 2 "$L" train "${LM[@]}" --threads 1 --quiet --out again2.st 2>/dev/null
cmp -s again.st again2.st && ok || bad "mpirun -np 2 twice gives the same model file"
# only rank 0 writes the log: one start event
[ "$(grep -c '"start"' two.log)" -eq 1 ] && ok || bad "one log, written by rank 0 alone"

# resume under two ranks from a checkpoint one process wrote (SIGTERM
# midway), to where an uninterrupted two-rank run ends
LONG=(lm --train lm.txt --valid lmv.txt --hidden 32 --embedding 8 --batch 8 --seq-len 25 --epochs 3
      --valid-every 60 --lr 1e-2 --threads 1 --quiet)
"${MPIRUN[@]}" -np 2 "$L" train "${LONG[@]}" --out whole.st --log whole.log 2>/dev/null
"$L" train "${LONG[@]}" --out part.st --checkpoint part.ck --log part.log 2>/dev/null &
pid=$!
for _ in $(seq 200); do
    n=$(grep -c '"valid"' part.log 2>/dev/null)
    [ "${n:-0}" -ge 3 ] && break
    sleep 0.05
done
kill -TERM $pid
wait $pid
grep -q '"message":"interrupted' part.log && ok || bad "the one-process run was interrupted midway"
"${MPIRUN[@]}" -np 2 "$L" train "${LONG[@]}" --out part.st --checkpoint part.ck --resume part.ck \
    --log part.log 2>err && ok || bad "a one-process checkpoint resumes under two ranks: $(tail -3 err)"
# the resumed run trained: train events after the "(resumed)" start
awk '/resumed/ { r = 1 } r && /"train"/ { n++ } END { exit !(n > 0) }' part.log && ok ||
    bad "the resumed run trained"
"$L" eval whole.st lmv.txt --json >w.json 2>/dev/null
"$L" eval part.st lmv.txt --json >p.json 2>/dev/null
close "resume across rank counts: final bpc" "$(sed 's/.*"bpc":\([0-9.e-]*\).*/\1/' p.json)" \
    "$(sed 's/.*"bpc":\([0-9.e-]*\).*/\1/' w.json)"

# with dropout on (the tagger's default), a two-rank run stopped by SIGTERM
# to its ranks and resumed under two ranks ends with the bytes of an
# uninterrupted one: every step's masks come from the seed, step and rank.
# An epoch takes about 15 ms here; 60 of them leave the signal, sent at the
# first validation, a second to land on a busy machine.
TD=(tag --train tag.tsv --valid tagv.tsv --hidden 16 --embedding 16 --batch 16 --epochs 60
    --threads 1 --quiet)
"${MPIRUN[@]}" -np 2 "$L" train "${TD[@]}" --out td-whole.st 2>/dev/null
"${MPIRUN[@]}" -np 2 "$L" train "${TD[@]}" --out td.st --checkpoint td.ck --log td.log 2>/dev/null &
mp=$!
for _ in $(seq 1000); do grep -q '"valid"' td.log 2>/dev/null && break; sleep 0.01; done
pkill -TERM -f "^$L train tag.*--out td.st"
wait $mp
grep -q '"message":"interrupted' td.log && ok || bad "the two-rank tag run was interrupted"
"${MPIRUN[@]}" -np 2 "$L" train "${TD[@]}" --out td.st --checkpoint td.ck --resume td.ck 2>err ||
    bad "the two-rank checkpoint resumes: $(tail -3 err)"
cmp -s td.st td-whole.st && ok || bad "stopped and resumed under two ranks, with dropout: the uninterrupted bytes"

# a rank killed with kill -9 ends the whole job within seconds, naming it
"${MPIRUN[@]}" -np 2 "$L" train "${LONG[@]}" --epochs 50 --out k.st >out 2>err &
mp=$!
sleep 1.5
victim=$(pgrep -f "^$L train lm.*--out k.st" | tail -n 1) # a rank, not mpirun
t0=$(date +%s)
[ -n "$victim" ] && kill -9 "$victim"
for _ in $(seq 300); do kill -0 $mp 2>/dev/null || break; sleep 0.05; done
kill -0 $mp 2>/dev/null && { bad "the job still runs 15 s after a rank was killed"; kill -9 $mp; }
wait $mp
rc=$?
[ $rc -ne 0 ] && ok || bad "a job with a killed rank exits non-zero"
grep -qE "rank [0-9].*(signal 9|Killed)" err && ok || bad "mpirun names the killed rank: $(tail -5 err)"
[ $(($(date +%s) - t0)) -le 15 ] && ok || bad "the job took more than 15 s to end"
[ -z "$(pgrep -f "^$L train lm.*--out k.st")" ] && ok || bad "ranks left running after the job ended"

# an error on one rank only, midway (rank 0 cannot write --out: a folder
# took its name after the start) ends the whole job, naming the rank
mkdir -p od
"${MPIRUN[@]}" -np 2 "$L" train "${LONG[@]}" --epochs 50 --valid-every 300 --out od/m.st --log od.log \
    >out 2>err &
mp=$!
for _ in $(seq 200); do grep -q '"start"' od.log 2>/dev/null && break; sleep 0.05; done
mkdir od/m.st
for _ in $(seq 300); do kill -0 $mp 2>/dev/null || break; sleep 0.05; done
kill -0 $mp 2>/dev/null && { bad "the job still runs 15 s after rank 0 failed"; kill -9 $mp; }
wait $mp
rc=$?
[ $rc -ne 0 ] && grep -q "rank 0 of 2 failed" err && ok ||
    bad "a failure on rank 0 alone ends the job, naming the rank: exit $rc, $(head -4 err)"
[ -z "$(pgrep -f "^$L train lm.*--out od/m.st")" ] && ok || bad "ranks left running after rank 0 failed"

# an error on the ranks (here: 9 streams for 2 ranks) ends the job with it
"${MPIRUN[@]}" -np 2 "$L" train "${LM[@]}" --batch 9 --out x.st >out 2>err
rc=$?
[ $rc -ne 0 ] && grep -q "cannot be shared evenly by 2 ranks" err && ok ||
    bad "an error ends the job with its message: exit $rc, $(head -3 err)"
finish
