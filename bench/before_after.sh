#!/bin/sh
# before_after.sh OLD NEW [ROUNDS] [REPEAT] - the cases of bench/compare.sh timed with two
# lstm programs (before and after a change), interleaved round after round, best median
# of each kept; prints a table with NEW/OLD time ratios. For changes that must not
# change speed (a refactor): ratios within the machine's noise (a few percent here).
#
#   bench/before_after.sh /tmp/old-lstm ./lstm 3 10
set -u
cd "$(dirname "$0")/.." || exit 1
OLD=$1 NEW=$2 ROUNDS=${3:-3} REPEAT=${4:-10}
# the case list of compare.sh, the one place it is written
CASES=$(sed -n "/^CASES='/,/'\$/p" bench/compare.sh | sed "1s/^CASES='//; \$s/'\$//")
ms() { # PROG ARGS...: the median ms of one run, or nothing
    p=$1; shift
    "$p" bench "$@" --threads 2 --repeat "$REPEAT" --json 2>/dev/null | grep '^{' | tail -n 1 |
        sed -n 's/.*"ms":\([-0-9.e+]*\).*/\1/p'
}
min() { if [ -z "$1" ]; then echo "$2"; elif [ -z "$2" ]; then echo "$1"; else
        awk -v a="$1" -v b="$2" 'BEGIN { print (b < a ? b : a) }'; fi; }
echo "# $OLD (old) against $NEW (new), $(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1 /proc/loadavg); $ROUNDS rounds of $REPEAT runs, best median"
echo
echo "| case | old ms | new ms | new/old |"
echo "|---|---:|---:|---:|"
echo "$CASES" | while IFS='|' read -r name args; do
    o='' n='' r=0
    while [ $r -lt "$ROUNDS" ]; do
        # shellcheck disable=SC2086 # args is a word list
        o=$(min "$o" "$(ms "$OLD" $args)")
        # shellcheck disable=SC2086
        n=$(min "$n" "$(ms "$NEW" $args)")
        r=$((r + 1))
    done
    echo "| $name | $o | $n | $(awk -v a="$o" -v b="$n" 'BEGIN { if (a > 0 && b > 0) printf "%.3f", b / a; else print "n/a" }') |"
done
