#!/usr/bin/env bash
# plot.sh BUILD - lstm plot draws training logs as well-formed SVG (curves,
# best point, edge cases) and rejects broken logs with one line naming the
# line of the log.
set -u
build=${1:-build}
lstm=$build/lstm
[[ $lstm = /* ]] || lstm=$PWD/$lstm
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 2
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
check() { # description, command...
    local what=$1; shift
    if "$@"; then ok; else bad "$what"; fi
}
have_xmllint=0
if command -v xmllint >/dev/null 2>&1; then have_xmllint=1
else echo "note: xmllint not found (Debian: libxml2-utils); XML checked by grep only"; fi

# plot NAME ARGS...: runs lstm plot NAME.log --out NAME.svg ARGS, expecting success
plot() {
    local name=$1; shift
    if "$lstm" plot "$name.log" --out "$name.svg" "$@" 2>"$name.err" && [[ -s $name.svg ]]; then ok
    else bad "$name: lstm plot failed: $(cat "$name.err")"; return 1; fi
}
# well-formed SVG: xmllint when there is one, and always the outline by grep
well_formed() {
    local svg=$1
    if ((have_xmllint)); then
        check "$svg: xmllint" xmllint --noout "$svg"
    fi
    check "$svg: starts with the XML declaration" grep -q '^<?xml version="1.0"' <(head -n 1 "$svg")
    check "$svg: ends with </svg>" grep -qx '</svg>' <(tail -n 1 "$svg")
    check "$svg: has the svg element" grep -q '<svg xmlns="http://www.w3.org/2000/svg"' "$svg"
    # every coordinate is a number (no nan, no inf) and every point of every
    # curve lies inside the plot frames (x 84..872, y 62..530)
    check "$svg: coordinates are numbers" \
        bash -c "! grep -oE ' (points|x|y|cx|cy|x1|x2|y1|y2)=\"[^\"]*\"' '$svg' | grep -vqE '=\"[-0-9., ]*\"'"
    check "$svg: curves inside the frames" awk '
        /<polyline/ { match($0, /points="[^"]*"/); s = substr($0, RSTART + 8, RLENGTH - 9)
                      n = split(s, pt, " ")
                      for (i = 1; i <= n; i++) { split(pt[i], c, ",")
                          if (c[1] < 84 || c[1] > 872 || c[2] < 62 || c[2] > 530) bad = 1 } }
        END { exit bad }' "$svg"
}
count() { grep -c "$1" "$2"; }
has() { grep -qF -- "$1" "$2"; }
# the number of points of the polyline of class $1 in $2
npoints() { grep "<polyline class=\"$1\"" "$2" | sed 's/.*points="\([^"]*\)".*/\1/' | wc -w; }

# expect_error DESCRIPTION MESSAGE ARGS...: exit status 1 and exactly the
# one line MESSAGE on stderr ("..." at the end: MESSAGE is a prefix)
expect_error() {
    local what=$1 msg=$2; shift 2
    "$lstm" plot "$@" >/dev/null 2>err.txt
    local rc=$? got
    got=$(cat err.txt)
    if [[ $rc -ne 1 ]]; then bad "$what: exit status $rc, expected 1 ($got)"; return; fi
    if [[ $(wc -l <err.txt) -ne 1 ]]; then bad "$what: expected one line on stderr, got: $got"; return; fi
    if [[ $msg == *... ]]; then
        [[ $got == "${msg%...}"* ]] && ok || bad "$what: got '$got', expected '$msg'"
    else
        [[ $got == "$msg" ]] && ok || bad "$what: got '$got', expected '$msg'"
    fi
}

# ---- a small language-model run -------------------------------------------
cat >basic.log <<'EOF'
{"event":"start","task":"lm","time":0.0,"hidden":64,"layers":[1,2]}
{"event":"train","epoch":1,"step":100,"time":10.0,"loss":2.5,"lr":0.002,"tokens_per_s":15000.0}
{"event":"train","epoch":1,"step":200,"time":20.0,"loss":2.0,"lr":0.002,"tokens_per_s":15000.0}
{"event":"valid","epoch":1,"step":200,"time":21.0,"loss":2.1,"metric":"bpc","value":3.03,"best":true}
{"event":"checkpoint","path":"model.safetensors","time":22.0}
{"event":"train","epoch":1,"step":300,"time":30.0,"loss":1.7,"lr":0.002,"tokens_per_s":15000.0,"new_field":{"a":1}}
{"event":"valid","epoch":1,"step":300,"time":31.0,"loss":1.9,"metric":"bpc","value":2.741,"best":true}
{"event":"train","epoch":2,"step":400,"time":40.0,"loss":1.5,"lr":0.001,"tokens_per_s":15000.0}
{"event":"valid","epoch":2,"step":400,"time":41.0,"loss":1.85,"metric":"bpc","value":2.669,"best":true}
{"event":"train","epoch":2,"step":500,"time":50.0,"loss":1.4,"lr":0.001,"tokens_per_s":15000.0}
{"event":"valid","epoch":2,"step":500,"time":51.0,"loss":1.87,"metric":"bpc","value":2.7,"best":false}
{"event":"end","time":52.0,"best_metric":"bpc","best_value":2.669}
EOF
if plot basic; then
    well_formed basic.svg
    check "basic: three curves" [ "$(count '<polyline' basic.svg)" -eq 3 ]
    check "basic: training loss has its 5 points" [ "$(npoints train-loss basic.svg)" -eq 5 ]
    check "basic: validation loss has its 4 points" [ "$(npoints valid-loss basic.svg)" -eq 4 ]
    check "basic: best point labelled" has '>best 2.669 bpc at step 400</text>' basic.svg
    check "basic: best point marked" [ "$(count '<circle class="best"' basic.svg)" -eq 1 ]
    check "basic: default title is file and task" has 'basic.log — lm</text>' basic.svg
    check "basic: x axis title" has '>step</text>' basic.svg
    check "basic: legend" has '>validation</text>' basic.svg
    check "basic: nothing on stderr" [ ! -s basic.err ]
fi

# the same against time, with a title that needs escaping
cp basic.log timed.log
if plot timed --x time --title 'a<b> & "c" '\''d'\'''; then
    well_formed timed.svg
    check "time: best labelled in seconds" has '>best 2.669 bpc at 41.0 s</text>' timed.svg
    check "time: x axis title" has '>time (s)</text>' timed.svg
    check "title: escaped" has '>a&lt;b&gt; &amp; &quot;c&quot; &apos;d&apos;</text>' timed.svg
fi

# a title that is not UTF-8 still gives well-formed XML
cp basic.log latin1.log
if plot latin1 --title "$(printf 'caf\xe9 \x01')"; then
    well_formed latin1.svg
    check "title: bytes that are not UTF-8 replaced" has '>caf? ?</text>' latin1.svg
fi

# ---- edge cases -----------------------------------------------------------
cat >novalid.log <<'EOF'
{"event":"start","task":"lm","time":0.0}
{"event":"train","epoch":1,"step":100,"time":1.0,"loss":3.0}
{"event":"train","epoch":1,"step":200,"time":2.0,"loss":2.0}
EOF
if plot novalid; then
    well_formed novalid.svg
    check "no validation: one curve" [ "$(count '<polyline' novalid.svg)" -eq 1 ]
    check "no validation: said" has '>no validation</text>' novalid.svg
fi

cat >nometric.log <<'EOF'
{"event":"train","step":100,"loss":3.0}
{"event":"valid","step":100,"loss":3.1}
EOF
if plot nometric; then
    well_formed nometric.svg
    check "validation loss without a metric: two curves" [ "$(count '<polyline' nometric.svg)" -eq 2 ]
    check "validation loss without a metric: said" has '>no validation metric</text>' nometric.svg
fi

cat >single.log <<'EOF'
{"event":"start","task":"classify","time":0.0}
{"event":"valid","epoch":1,"step":0,"time":0.5,"loss":0.69,"metric":"accuracy","value":0.5,"best":true}
EOF
if plot single; then
    well_formed single.svg
    check "single point: two curves of one point" [ "$(count '<polyline' single.svg)" -eq 2 ]
    check "single point: labelled" has '>best 0.5 accuracy at step 0</text>' single.svg
fi

cat >constant.log <<'EOF'
{"event":"train","step":5,"loss":0}
{"event":"train","step":5,"loss":0}
{"event":"valid","step":5,"loss":0,"metric":"bpc","value":1.25}
{"event":"valid","step":5,"loss":0,"metric":"bpc","value":1.25}
EOF
if plot constant; then
    well_formed constant.svg
    check "constant values: labelled (first of equals)" has '>best 1.25 bpc at step 5</text>' constant.svg
fi

# accuracy: higher is better; a resumed run steps back and is drawn in file order
cat >resumed.log <<'EOF'
{"event":"start","task":"tag","time":0.0}
{"event":"train","step":100,"time":10,"loss":1.2}
{"event":"train","step":200,"time":20,"loss":0.8}
{"event":"valid","step":200,"time":21,"loss":0.9,"metric":"accuracy","value":0.71,"best":true}
{"event":"start","task":"tag","time":0.0,"resume":"ckpt"}
{"event":"train","step":150,"time":15,"loss":0.9}
{"event":"train","step":250,"time":25,"loss":0.6}
{"event":"valid","step":250,"time":26,"loss":0.7,"metric":"accuracy","value":0.93,"best":true}
{"event":"valid","step":300,"time":31,"loss":0.72,"metric":"accuracy","value":0.92,"best":false}
EOF
if plot resumed; then
    well_formed resumed.svg
    check "resumed: every training point, in file order" [ "$(npoints train-loss resumed.svg)" -eq 4 ]
    check "accuracy: the highest is best" has '>best 0.93 accuracy at step 250</text>' resumed.svg
    check "resumed: title from the start event" has 'resumed.log — tag</text>' resumed.svg
fi

# NaN, Infinity (Python), nan, -nan, inf (printf) and null: skipped, not errors
cat >nonfinite.log <<'EOF'
{"event":"train","step":1,"loss":NaN}
{"event":"train","step":2,"loss":2.0}
{"event":"train","step":3,"loss":Infinity,"note":"NaN inside a string stays"}
{"event":"train","step":4,"loss":-Infinity}
{"event":"train","step":5,"loss":nan}
{"event":"train","step":6,"loss":-nan}
{"event":"train","step":7,"loss":inf}
{"event":"train","step":8,"loss":null}
{"event":"train","step":9,"loss":1.0}
{"event":"valid","step":9,"loss":NaN,"metric":"perplexity","value":-Infinity}
{"event":"valid","step":10,"loss":1.1,"metric":"perplexity","value":3.0}
EOF
if plot nonfinite; then
    well_formed nonfinite.svg
    check "non-finite: only the finite training points" [ "$(npoints train-loss nonfinite.svg)" -eq 2 ]
    check "non-finite: best among the finite" has '>best 3 perplexity at step 10</text>' nonfinite.svg
fi

# blank lines are skipped; an incomplete last line (a run still writing) is ignored
{ printf '{"event":"train","step":1,"loss":2}\n\n  \n{"event":"train","step":2,"loss":1}\n'
  printf '{"event":"train","step":3,"lo'; } >partial.log
if plot partial; then
    well_formed partial.svg
    check "partial: the complete lines" [ "$(npoints train-loss partial.svg)" -eq 2 ]
    check "partial: a note on stderr" grep -qx 'lstm plot: partial.log: line 5: ignoring an incomplete last line' partial.err
fi

# a long run: 100k training events, thinned to at most 2000 points, spikes kept
awk 'BEGIN { print "{\"event\":\"start\",\"task\":\"lm\"}"
    for (i = 1; i <= 100000; i++) {
        printf "{\"event\":\"train\",\"step\":%d,\"time\":%d,\"loss\":%.4f,\"lr\":0.002}\n", i, i, (i == 54321 ? 50 : 1 + 3 * exp(-i / 20000) + (i % 7) * 0.01)
        if (i % 1000 == 0) printf "{\"event\":\"valid\",\"step\":%d,\"time\":%d,\"loss\":%.4f,\"metric\":\"bpc\",\"value\":%.4f}\n", i, i, 1 + 3 * exp(-i / 20000), (1 + 3 * exp(-i / 20000)) / log(2) } }' >huge.log
if plot huge; then
    well_formed huge.svg
    n=$(npoints train-loss huge.svg)
    check "huge: at most 2000 points ($n)" [ "$n" -le 2000 -a "$n" -ge 1000 ]
    check "huge: the spike survives thinning" awk '
        /class="train-loss"/ { match($0, /points="[^"]*"/); n = split(substr($0, RSTART + 8, RLENGTH - 9), pt, " ")
            for (i = 1; i <= n; i++) { split(pt[i], c, ","); if (c[2] < 75) found = 1 } }
        END { exit !found }' huge.svg
    check "huge: all 100 validations" [ "$(npoints metric huge.svg)" -eq 100 ]
fi

# standard input, and the file's mode
umask 022
if "$lstm" plot - --out stdin.svg <basic.log 2>/dev/null; then ok; else bad "plot from stdin"; fi
check "stdin: title" has '&lt;stdin&gt; — lm</text>' stdin.svg
check "output readable by all (umask 022)" [ "$(stat -c %a stdin.svg)" = 644 ]
# what is not a regular file is written in place (renaming would replace it);
# a symbolic link keeps pointing at the plot
check "--out /dev/stdout" bash -c "'$lstm' plot basic.log --out /dev/stdout | tail -n 1 | grep -qx '</svg>'"
echo old >target.svg && ln -s target.svg link.svg
"$lstm" plot basic.log --out link.svg 2>/dev/null
check "--out through a symbolic link" bash -c '[ -L link.svg ] && grep -qx "</svg>" target.svg'

# ---- errors ---------------------------------------------------------------
expect_error "no LOG" "lstm plot: expected a LOG file (see lstm plot --help)" --out x.svg
expect_error "no --out" "lstm plot: --out FILE.svg is required" basic.log
expect_error "bad --x" "lstm plot: --x must be step or time, not 'epoch'" basic.log --out x.svg --x epoch
expect_error "missing file" "lstm plot: nope.log: cannot open: No such file or directory" nope.log --out x.svg
mkdir -p adir
expect_error "a directory" "lstm plot: adir: cannot read: Is a directory" adir --out x.svg

printf '{"event":"train","step":1,"loss":2}\n\n{"event":"train","step":2,"loss":1}\n{"event":"train","step":3,\n{"event":"train","step":4,"loss":1}\n' >badjson.log
expect_error "invalid JSON, line 4 (blank lines count)" "lstm plot: badjson.log: line 4: not a JSON object: ..." badjson.log --out x.svg
printf '{"event":"train","step":1,"loss":2}\n[1, 2]\n' >array.log
expect_error "an array" "lstm plot: array.log: line 2: not a JSON object: found an array" array.log --out x.svg
printf '{"event":"start"}\n"train"\n' >string.log
expect_error "a string" "lstm plot: string.log: line 2: not a JSON object: found a string" string.log --out x.svg
printf '{"event":"train","step":1,"loss":2}\n{"event":"train","step":2,"loss":1} x\n' >trailing.log
expect_error "trailing garbage" "lstm plot: trailing.log: line 2: not a JSON object: ..." trailing.log --out x.svg
printf '{"event":"train","step":1,"loss":NaN}\n{"event":"train","step":2,"lr":NaN,"loss":1e999}\n' >overflow.log
expect_error "a number beyond double, after a NaN" "lstm plot: overflow.log: line 2: not a JSON object: real number overflow..." overflow.log --out x.svg
printf '{"event":"start","task":"lm"}\n{"event":"train","step":1,"loss":2}\n{"event":"train","step":2,"loss":1}\n{"event":"train","epoch":1,"loss":1}\n' >nostep.log
expect_error "train without step" 'lstm plot: nostep.log: line 4: train event without a numeric "step"' nostep.log --out x.svg
printf '{"event":"train","step":1,"loss":2}\n{"event":"valid","step":"2","loss":1}\n' >strstep.log
expect_error "valid with a string step" 'lstm plot: strstep.log: line 2: valid event without a numeric "step"' strstep.log --out x.svg
printf '{"event":"train","step":1,"time":1,"loss":2}\n{"event":"train","step":2,"loss":1}\n' >notime.log
expect_error "--x time without time" 'lstm plot: notime.log: line 2: train event without a numeric "time"' notime.log --out x.svg --x time
printf '{"event":"start","task":"lm"}\n{"event":"end","time":1.0}\n' >noevents.log
expect_error "no train or valid events" "lstm plot: noevents.log: no training events to plot" noevents.log --out x.svg
: >empty.log
expect_error "empty log" "lstm plot: empty.log: no training events to plot" empty.log --out x.svg
expect_error "--out a directory" "lstm plot: adir: cannot write: Is a directory" basic.log --out adir
expect_error "output directory missing" "lstm plot: no/such/dir/x.svg: cannot create a file there: No such file or directory" basic.log --out no/such/dir/x.svg

# a failed plot leaves an existing output alone, and no temporary files behind
echo old >keep.svg
"$lstm" plot nostep.log --out keep.svg 2>/dev/null
check "failure keeps the old output" [ "$(cat keep.svg)" = old ]
check "no temporary files left" bash -c '! ls *.svg.* >/dev/null 2>&1'
check "--help exits 0" "$lstm" plot --help >/dev/null

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
