# checks.sh - the checks the tests/cli scripts share (it sits in lib/ so
# that tests/run.sh, which runs tests/cli/*.sh, does not run it). Source it
# at the top of a script; the checks write to "$tmp", the script's scratch
# folder, when they run. Each check counts into pass or fail (a failure
# prints one "FAIL ..." line), and `finish` prints the "N passed, N failed"
# line that tests/run.sh reads and returns the verdict. A command's output
# goes to "$tmp/out" and "$tmp/err" (out and err in scripts that work in
# "$tmp").
pass=0 fail=0

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; }

# check DESC CMD...: the command succeeds (its output where it goes)
check() { local what=$1; shift; if "$@"; then ok; else bad "$what"; fi; }
# run DESC CMD...: the command succeeds; on failure, the end of its stderr
run() {
    local what=$1; shift
    if "$@" >"$tmp/out" 2>"$tmp/err"; then ok; else bad "$what (exit $?): $(tail -3 "$tmp/err")"; fi
}
# refuse DESC NEEDLE CMD...: exit status 1, one line on stderr containing NEEDLE
refuse() {
    local what=$1 needle=$2; shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ $rc -eq 1 ] && grep -qF -- "$needle" "$tmp/err" && [ "$(wc -l <"$tmp/err")" -eq 1 ]; then ok
    else bad "$what: exit $rc, stderr: $(head -c 300 "$tmp/err")"; fi
}

# same/differ DESC FILE1 FILE2: the same bytes, or not
same() { if cmp -s "$2" "$3"; then ok; else bad "$1: $2 and $3 differ"; fi; }
differ() { if cmp -s "$2" "$3"; then bad "$1: $2 and $3 are the same bytes"; else ok; fi; }
# equal DESC GOT WANT: the same string
equal() { if [ "$2" = "$3" ]; then ok; else bad "$1: got '$2', want '$3'"; fi; }
# has/lacks DESC NEEDLE TEXT: TEXT contains NEEDLE (a fixed string), or not
has() { if [[ $3 == *"$2"* ]]; then ok; else bad "$1: no '$2' in ${3:0:200}"; fi; }
lacks() { if [[ $3 == *"$2"* ]]; then bad "$1: '$2' in ${3:0:200}"; else ok; fi; }

# numbers (floating point, compared by awk; an empty one fails)
# less DESC A B: A < B
less() { if awk -v a="$2" -v b="$3" 'BEGIN{exit !(a != "" && b != "" && a + 0 < b + 0)}'; then ok
         else bad "$1: '$2' is not below '$3'"; fi; }
# at_least DESC VALUE MIN / at_most DESC VALUE MAX
at_least() { if awk -v v="$2" -v m="$3" 'BEGIN{exit !(v != "" && v + 0 >= m)}'; then ok; else bad "$1: '$2' < $3"; fi; }
at_most() { if awk -v v="$2" -v m="$3" 'BEGIN{exit !(v != "" && v + 0 <= m)}'; then ok; else bad "$1: '$2' > $3"; fi; }
# within DESC A B BOUND: |A - B| <= BOUND
within() {
    if awk -v a="$2" -v b="$3" -v m="$4" 'BEGIN{d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= m)}'
    then ok; else bad "$1: '$2' against '$3', more than $4 apart"; fi
}

# json_field FILE KEY: the number KEY of FILE's last line (lstm's --json)
json_field() { tail -n 1 "$1" | sed -n "s/.*\"$2\":\([-0-9.e]*\).*/\1/p"; }

# mk_mail N SEED: N fastText lines of made-up mail, spam mentioning money and
# ham meetings, among common words (awk's rand, so the same for a seed)
mk_mail() {
    awk -v n="$1" -v seed="$2" 'BEGIN {
        srand(seed)
        split("free money offer click now winner cash prize credit deal", spam, " ")
        split("meeting agenda notes project review schedule lunch team report draft", ham, " ")
        split("the a to of and in is for on with this that you we it", common, " ")
        for (i = 0; i < n; i++) {
            s = rand() < 0.4; line = s ? "__label__spam" : "__label__ham"
            len = 8 + int(rand() * 30)
            for (j = 0; j < len; j++) {
                r = rand()
                if (r < 0.25) w = s ? spam[1 + int(rand() * 10)] : ham[1 + int(rand() * 10)]
                else w = common[1 + int(rand() * 15)]
                line = line " " w
            }
            print line
        } }'
}
